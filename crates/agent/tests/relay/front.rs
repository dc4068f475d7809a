//! The relay's front door: paced sends under bandwidth caps, no new threads for 200
//! downloads, and enough HTTP/1.1 (keep-alive, pipelining, HTTP/1.0, bodies refused).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::{blob, relay, upstream};

// With bandwidth caps in force the front door sends files in paced steps
// (`docs/operating.md#domains-and-their-settings`): whole files and ranges still arrive whole
// and exact, the bytes counted as served.
#[tokio::test]
async fn capped_relay_sends_whole_files_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let rel = blob(dir.path(), &body);
    let (up, _) = upstream(dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], 1 << 30).await;
    // Caps high enough not to slow the test: what is checked is that paced steps add up.
    relay.apply_limits(1 << 30, 256 << 20, 512 << 20);
    let url = base.join(&rel).unwrap();
    let r = reqwest::get(url.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), body);
    let r = reqwest::Client::new()
        .get(url)
        .header("range", "bytes=1000-200999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        "bytes 1000-200999/300000"
    );
    assert_eq!(r.bytes().await.unwrap(), body[1000..201_000]);
    assert_eq!(relay.report().bytes_served, 500_000);
}

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

// 200 clients downloading one blob at once add no threads to the relay's process: files go
// out with sendfile from the connection's task, not through tokio's blocking pool (which
// grew to over a hundred threads with 64 KiB file reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_downloads_add_no_threads() {
    let up_dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 239) as u8).collect();
    let rel = blob(up_dir.path(), &body);
    let (up, _) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (_relay, base) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let url = base.join(&rel).unwrap();
    // Cached first, so that the downloads below are all that runs.
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(url.clone())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        body.len()
    );
    let before = threads();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::SeqCst) {
                peak = peak.max(threads());
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let resp = client.get(url).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.bytes().await.unwrap().len()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), body.len());
    }
    done.store(true, Ordering::SeqCst);
    // The sampler thread itself is one more.
    let peak = sampler.join().unwrap();
    assert!(
        peak <= before + 1,
        "threads: {before} before, {peak} at the peak of 200 downloads"
    );
}

/// Sends `request` on a fresh connection to the relay at `base` and reads until it closes.
async fn raw(base: &Url, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = format!(
        "{}:{}",
        base.host_str().unwrap(),
        base.port_or_known_default().unwrap()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

// The front door speaks enough HTTP/1.1: pipelined requests on one connection answered in
// order (a range among them), HTTP/1.0 closing after one answer, `/relay/stats` through the
// router, and a request with a body refused with 400 before anything is read from it.
#[tokio::test]
async fn front_door_keeps_alive_pipelines_and_refuses_bodies() {
    let up_dir = tempfile::tempdir().unwrap();
    let body = b"0123456789abcdefghij".repeat(5000);
    let rel = blob(up_dir.path(), &body);
    let (up, _) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (_relay, base) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let path = format!("/repo/{rel}");

    let out = raw(
        &base,
        &format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nrange: bytes=10-19\r\n\r\n\
             HEAD {path} HTTP/1.1\r\nhost: x\r\n\r\n\
             GET /relay/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        ),
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{out}");
    assert!(answers[0].starts_with("206"), "{}", answers[0]);
    assert!(answers[0].contains("content-range: bytes 10-19/100000"));
    assert!(answers[0].ends_with("\r\n\r\nabcdefghij"), "{}", answers[0]);
    assert!(answers[1].starts_with("200"), "{}", answers[1]);
    assert!(answers[1].contains("content-length: 100000\r\n"));
    assert!(answers[1].ends_with("\r\n\r\n"), "HEAD sends no body");
    assert!(answers[2].starts_with("200"), "{}", answers[2]);
    assert!(answers[2].contains("\"requests\":2"), "{}", answers[2]);

    let out = raw(&base, &format!("GET {path} HTTP/1.0\r\n\r\n")).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("0123456789abcdefghij"));

    let out = raw(
        &base,
        &format!("GET {path} HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    let out = raw(
        &base,
        &format!("GET {path} HTTP/1.1\r\nrange: bytes=100000-\r\nconnection: close\r\n\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 416"), "{out}");
}
