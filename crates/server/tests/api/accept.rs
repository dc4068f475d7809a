//! Per-thread accept (`docs/operating.md#accept-per-thread`): four threads, each with its own
//! `SO_REUSEPORT` listener and runtime. Connections land on more than one of them and every
//! one is answered (the front's `/repo/` answers on the thread, routed requests and the
//! database on the server's runtime); stop drains the connections of every thread;
//! `--max-connections` counts connections on all threads together; TLS and held event
//! streams work through it. Real sockets on 127.0.0.1.

use std::num::NonZeroUsize;
use std::time::Duration;

use cascade_client::proto::NotifyRequest;
use cascade_server::{Accept, Settings};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::front::{answer, random_bytes, read_until};
use crate::harness::{json, start_tuned, Sse, TestServer};

const THREADS: usize = 4;

fn per_thread(st: &mut Settings) {
    st.accept = Accept::PerThread {
        threads: NonZeroUsize::new(THREADS).unwrap(),
    };
}

fn plain_per_thread(st: &mut Settings) {
    per_thread(st);
    st.tls = cascade_server::TlsMode::InsecurePlainHttp;
}

/// Connections accepted so far by each listener (`/metrics`).
async fn accepted(s: &TestServer) -> Vec<u64> {
    let text = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut by_listener: Vec<(usize, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("cascade_accepted_connections_total{listener=\""))
        .map(|l| {
            let (i, n) = l.split_once("\"} ").unwrap();
            (i.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    by_listener.sort_unstable();
    by_listener.into_iter().map(|(_, n)| n).collect()
}

/// A small repository file, its bytes.
fn small_file(s: &TestServer) -> Vec<u8> {
    let dir = s.data_dir.join("repo/t");
    std::fs::create_dir_all(&dir).unwrap();
    let small = random_bytes(4096);
    std::fs::write(dir.join("small.json"), &small).unwrap();
    small
}

/// A plain connection that got one `/repo/` answer from the front, then, handed over to hyper
/// on the same connection, one from the router (`/healthz`) and the file again.
async fn answered_connection(s: &TestServer, small: &[u8]) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let mut pending = Vec::new();
    tcp.write_all(
        b"GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let got = answer(&mut tcp, &mut pending, false).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, small);
    let health = answer(&mut tcp, &mut pending, false).await;
    assert_eq!(
        health.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&health.body)
    );
    // Handed over: the router answers the rest of the connection's requests.
    tcp.write_all(b"GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let again = answer(&mut tcp, &mut pending, false).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, small);
    tcp
}

// 64 connections, each answered by the front and by the router; the kernel spread them over
// more than one of the four listeners; the API (database writes, on the server's runtime)
// answers through the same listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_land_on_several_threads_and_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, plain_per_thread).await;
    let small = small_file(&s);
    let before: u64 = accepted(&s).await.iter().sum();
    let mut conns = Vec::new();
    for _ in 0..64 {
        conns.push(answered_connection(&s, &small).await);
    }
    let counts = accepted(&s).await;
    assert_eq!(counts.len(), THREADS, "{counts:?}");
    assert!(counts.iter().sum::<u64>() >= before + 64, "{counts:?}");
    assert!(
        counts.iter().filter(|n| **n > 0).count() > 1,
        "every connection on one thread: {counts:?}"
    );
    // Routed writes and reads (the database) from connections of the accepting threads.
    let (id, _) = s.enroll_client("pc-1", None).await;
    let got = s
        .admin(Method::GET, &format!("/api/clients/{id}"), None)
        .await
        .expect(200);
    assert_eq!(got["name"], "pc-1", "{got}");
}

// Kept-alive connections on every thread (each answered, then idle) and held event streams:
// when the server stops, every one of them is closed and the server's stop completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_the_connections_of_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        plain_per_thread(st);
        st.limits.header_read_timeout = Duration::from_secs(600);
    })
    .await;
    let small = small_file(&s);
    let (_, credential) = s.enroll_client("pc-1", None).await;
    let mut conns = Vec::new();
    for _ in 0..64 {
        conns.push((answered_connection(&s, &small).await, Vec::new()));
    }
    for _ in 0..8 {
        let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        let req = format!(
            "GET /api/client/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut pending = Vec::new();
        read_until(&mut tcp, &mut pending, b"event: hello").await;
        conns.push((tcp, pending));
    }
    let counts = accepted(&s).await;
    assert!(
        counts.iter().all(|n| *n > 0),
        "a thread without connections: {counts:?}"
    );
    let stopped = tokio::spawn(s.stop());
    for (mut tcp, _) in conns {
        let mut tail = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut tail))
            .await
            .expect("closed when the server stops")
            .ok();
        // A held stream may still end with its last chunk; nothing else comes.
        assert!(
            tail.is_empty() || tail.ends_with(b"0\r\n\r\n"),
            "{:?}",
            String::from_utf8_lossy(&tail)
        );
    }
    stopped.await.unwrap();
}

// `--max-connections 2` with four threads: two connections served hold both places, four more
// (on whichever threads the kernel puts them) are not answered while they do; once those two
// close, the others are answered, two at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_counts_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        plain_per_thread(st);
        st.limits.max_connections = 2;
    })
    .await;
    let small = small_file(&s);
    let a = answered_connection(&s, &small).await;
    let b = answered_connection(&s, &small).await;
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        tcp.write_all(b"GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        waiting.push(tcp);
    }
    for tcp in &mut waiting {
        let mut b = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut b)).await;
        assert!(
            early.is_err(),
            "answered beyond --max-connections: {early:?}"
        );
    }
    drop((a, b));
    let reads: Vec<_> = waiting
        .into_iter()
        .map(|mut tcp| {
            let small = small.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let got = answer(&mut tcp, &mut pending, false).await;
                assert_eq!(got.status, 200);
                assert_eq!(got.body, small);
                // Closed: its place goes to the next one.
            })
        })
        .collect();
    for r in reads {
        r.await.unwrap();
    }
}

// Over TLS (the private CA): 16 raw connections handshake with the accepting threads and get
// a repository file each, then, handed over to the router on the same session, a routed
// answer and the file again; a large file read in user space arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_through_per_thread_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, per_thread).await;
    let small = small_file(&s);
    let large = random_bytes(2 * 1024 * 1024 + 3);
    std::fs::write(s.data_dir.join("repo/large.bin"), &large).unwrap();
    let mut conns = Vec::new();
    for _ in 0..16 {
        let mut tls = s.raw_connect().await;
        tls.write_all(b"GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut pending = Vec::new();
        let got = answer(&mut tls, &mut pending, false).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, small);
        // Handed over to hyper (the connection moves to the server's runtime): a routed
        // request, then the file again, on the same TLS session.
        tls.write_all(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        let health = answer(&mut tls, &mut pending, false).await;
        assert_eq!(health.status, 200);
        let again = answer(&mut tls, &mut pending, false).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.body, small);
        conns.push(tls);
    }
    let counts = accepted(&s).await;
    assert!(
        counts.iter().filter(|n| **n > 0).count() > 1,
        "every connection on one thread: {counts:?}"
    );
    let resp = s
        .http
        .get(format!("{}/repo/large.bin", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().as_ref() == large.as_slice());
}

// Event streams held through per-thread accept (TLS, written by the front on the accepting
// thread, the stream's state from the server's runtime) each get their hello and the notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_event_streams_are_notified() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, per_thread).await;
    let mut streams = Vec::new();
    for i in 0..6 {
        let (_, credential) = s.enroll_client(&format!("pc-{i}"), None).await;
        // A client of its own per stream: a connection of its own.
        let http = s.http.clone();
        let mut sse = Sse::connect(&http, &s.url, &credential).await.unwrap();
        let (event, data) = sse.next().await.unwrap();
        assert_eq!(event, "hello");
        assert_eq!(data["role"], "client");
        streams.push(sse);
    }
    s.admin(Method::POST, "/api/notify", json(&NotifyRequest::default()))
        .await
        .expect(200);
    for sse in &mut streams {
        let (event, _) = tokio::time::timeout(Duration::from_secs(20), sse.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event, "notify");
    }
}
