//! Serving blobs: one upstream fetch for 200 clients, the report's per-client bytes, a
//! tampered blob refused for the next upstream, and not found, dead upstreams and bad paths.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cascade_testkit::ManualClock;
use url::Url;

use super::{blob, relay, relay_timed, upstream};

// 200 clients asking the relay for the same new blob at once cause exactly one upstream fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_for_200_clients() {
    let up_dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let rel = blob(up_dir.path(), &body);
    let (up, hits) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let client = reqwest::Client::new();
    let url = base.join(&rel).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(
                async move { client.get(url).send().await.unwrap().bytes().await.unwrap() },
            )
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().len(), body.len());
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(relay.stats.upstream_fetches.load(Ordering::SeqCst), 1);
    assert_eq!(relay.stats.requests.load(Ordering::SeqCst), 200);
}

/// A client whose connections leave from `ip`.
fn client_at(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

// The relay's report counts each client address with the body bytes it was really sent: a
// whole file, a range's length, nothing for HEAD; and what it fetched upstream.
#[tokio::test]
async fn report_counts_clients_and_bytes() {
    let up_dir = tempfile::tempdir().unwrap();
    let body = vec![7u8; 10_000];
    let rel = blob(up_dir.path(), &body);
    let (up, _) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let url = base.join(&rel).unwrap();

    let a = client_at("127.0.3.1");
    for _ in 0..2 {
        let got = a.get(url.clone()).send().await.unwrap();
        assert_eq!(got.bytes().await.unwrap().len(), 10_000);
    }
    let b = client_at("127.0.3.2");
    let part = b
        .get(url.clone())
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().len(), 100);
    let head = b.head(url.clone()).send().await.unwrap();
    assert_eq!(head.status(), 200);

    let r = relay.report();
    assert_eq!(r.since, Some(1_700_000_000));
    assert_eq!(r.requests, 4);
    assert_eq!(r.bytes_served, 20_100);
    assert_eq!(r.upstream_fetches, 1);
    assert_eq!(r.upstream_bytes, 10_000);
    assert_eq!(r.client_count, 2);
    let by: Vec<_> = r
        .clients
        .iter()
        .map(|c| (c.ip.as_str(), c.requests, c.bytes))
        .collect();
    assert_eq!(by, [("127.0.3.1", 2, 20_000), ("127.0.3.2", 2, 100)]);

    // `/relay/stats` is the same report.
    let stats: cascade_core::report::RelayReport = reqwest::get(base.join("/relay/stats").unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, relay.report());
}

// A blob whose content does not match the hash in its name is refused and not cached; the
// relay then serves it from the next upstream, which has the right bytes.
#[tokio::test]
async fn tampered_blob_refused_then_next_upstream() {
    let good_dir = tempfile::tempdir().unwrap();
    let rel = blob(good_dir.path(), b"the real pattern file");
    let bad_dir = tempfile::tempdir().unwrap();
    let bad_path = bad_dir.path().join(&rel);
    std::fs::create_dir_all(bad_path.parent().unwrap()).unwrap();
    std::fs::write(&bad_path, b"the evil pattern file").unwrap();
    let (bad, _) = upstream(bad_dir.path()).await;
    let (good, _) = upstream(good_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();

    let (relay_only_bad, base) = relay(cache.path(), vec![bad.url()], u64::MAX).await;
    let resp = reqwest::get(base.join(&rel).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.unwrap().contains("hash mismatch"));
    assert!(!cache.path().join(&rel).exists());
    assert_eq!(relay_only_bad.stats.refused.load(Ordering::SeqCst), 1);

    let (_relay, base) = relay(cache.path(), vec![bad.url(), good.url()], u64::MAX).await;
    let got = reqwest::get(base.join(&rel).unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], b"the real pattern file");
}

// Not found everywhere gives 404 (remembered briefly for a root probe); a dead upstream (nothing listening) gives 502; path tricks 400.
#[tokio::test]
async fn not_found_dead_and_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (up, hits) = upstream(dir.path()).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        Url::parse(&format!("http://{a}/repo/")).unwrap()
    };
    let cache = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    let (_r, base) = relay_timed(cache.path(), vec![up.url()], u64::MAX, clock.clone()).await;
    // "Not found" is remembered for a while: the next root probe costs no upstream fetch.
    for _ in 0..3 {
        let probe = reqwest::get(base.join("metadata/2.root.json").unwrap())
            .await
            .unwrap();
        assert_eq!(probe.status(), 404);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Other paths are asked afresh (a mirror may be half-way through a sync).
    for _ in 0..2 {
        let missing = reqwest::get(base.join("metadata/9.snapshot.json").unwrap())
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // The root probe's "not found" lasts five seconds: then it goes upstream again.
    clock.advance(5);
    let probe = reqwest::get(base.join("metadata/2.root.json").unwrap())
        .await
        .unwrap();
    assert_eq!(probe.status(), 404);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    let (_r, base) = relay(cache.path(), vec![dead], u64::MAX).await;
    assert_eq!(
        reqwest::get(base.join("metadata/9.snapshot.json").unwrap())
            .await
            .unwrap()
            .status(),
        502
    );
    for bad in [
        "metadata/.hidden",
        "metadata//x",
        "metadata/..%2f..%2fetc%2fpasswd",
        "metadata/x%00y",
    ] {
        let resp = reqwest::get(format!("{base}{bad}")).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
}
