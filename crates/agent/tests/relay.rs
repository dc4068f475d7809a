//! The relay as a real HTTP server on 127.0.0.1 in front of a real upstream: one upstream
//! fetch however many clients ask at once, hash-checked blobs, fallback between upstreams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::time::Duration;

use cascade_agent::relay::{Relay, RelayConfig};
use cascade_repo::{SourceTransport, TransportLimits};
use cascade_testkit::{ManualClock, StaticServer};
use url::Url;

/// A static upstream serving `dir`, and its count of requests.
async fn upstream(dir: &Path) -> (StaticServer, Arc<AtomicU64>) {
    let server = StaticServer::start(dir, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hits = Arc::clone(&server.requests);
    (server, hits)
}

async fn relay(cache: &Path, upstreams: Vec<Url>, max_cache_bytes: u64) -> (Arc<Relay>, Url) {
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    relay_timed(cache, upstreams, max_cache_bytes, clock).await
}

/// [`relay`], its reuse windows measured by `clock`.
async fn relay_timed(
    cache: &Path,
    upstreams: Vec<Url>,
    max_cache_bytes: u64,
    clock: Arc<ManualClock>,
) -> (Arc<Relay>, Url) {
    let transport = SourceTransport::new(TransportLimits::default()).unwrap();
    let relay = Relay::new(
        RelayConfig {
            cache_dir: cache.to_owned(),
            max_concurrent_fetches: 4,
            max_cache_bytes,
            clock,
        },
        transport,
        1_700_000_000,
    );
    relay.set_upstreams(upstreams);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Arc::clone(&relay).serve(listener, std::future::pending()));
    (relay, format!("http://{addr}/repo/").parse().unwrap())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// Writes a content-addressed blob under `root/targets/components/p/1/` and returns its path.
fn blob(root: &Path, body: &[u8]) -> String {
    let rel = format!("targets/components/p/1/{}.data.bin", sha256_hex(body));
    let path = root.join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    rel
}

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

// timestamp.json is fetched afresh each time, and served from cache when the upstream is gone.
#[tokio::test]
async fn timestamp_is_refreshed_and_survives_upstream_loss() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
    std::fs::write(dir.path().join("metadata/timestamp.json"), "v1").unwrap();
    let (up, _) = upstream(dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    let (relay, base) = relay_timed(cache.path(), vec![up.url()], u64::MAX, clock.clone()).await;
    let url = base.join("metadata/timestamp.json").unwrap();
    assert_eq!(
        reqwest::get(url.clone())
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "v1"
    );
    std::fs::write(dir.path().join("metadata/timestamp.json"), "v2").unwrap();
    clock.advance_by(Duration::from_millis(600));
    assert_eq!(
        reqwest::get(url.clone())
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "v2"
    );
    relay.set_upstreams(vec![Url::parse("http://127.0.0.1:9/repo/").unwrap()]);
    clock.advance_by(Duration::from_millis(600));
    assert_eq!(reqwest::get(url).await.unwrap().text().await.unwrap(), "v2");
}

// With a byte budget, the oldest blobs are evicted and the newest kept.
#[tokio::test]
async fn cache_budget_evicts_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let rels: Vec<String> = (0..4u8).map(|i| blob(dir.path(), &vec![i; 1000])).collect();
    let (up, _) = upstream(dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (_relay, base) = relay(cache.path(), vec![up.url()], 2500).await;
    for rel in &rels {
        assert_eq!(
            reqwest::get(base.join(rel).unwrap())
                .await
                .unwrap()
                .status(),
            200
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kept: Vec<bool> = rels.iter().map(|r| cache.path().join(r).exists()).collect();
    assert_eq!(kept, [false, false, true, true]);
}

// Seeding the cache from a local copy: a copy whose bytes do not match the hash in the name is
// refused and not cached; the right one is cached and then served with no upstream fetch.
#[tokio::test]
async fn seed_checks_the_hash_and_saves_a_fetch() {
    let up_dir = tempfile::tempdir().unwrap();
    let rel = blob(up_dir.path(), b"installed pattern file");
    let (up, hits) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let local = tempfile::tempdir().unwrap();
    let wrong = local.path().join("wrong");
    std::fs::write(&wrong, b"something else").unwrap();
    assert!(relay.seed(&rel, &wrong).is_err());
    assert!(!cache.path().join(&rel).exists());
    let right = local.path().join("right");
    std::fs::write(&right, b"installed pattern file").unwrap();
    assert!(relay.seed(&rel, &right).unwrap());
    assert!(!relay.seed(&rel, &right).unwrap(), "already cached");
    // Only content-addressed blobs can be seeded.
    assert!(!relay.seed("metadata/timestamp.json", &right).unwrap());
    let got = reqwest::get(base.join(&rel).unwrap()).await.unwrap();
    assert_eq!(&got.bytes().await.unwrap()[..], b"installed pattern file");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

// Pruning removes the cached blobs below a prefix that the current metadata no longer names,
// and nothing else: named blobs, metadata and other prefixes stay.
#[tokio::test]
async fn prune_removes_only_unnamed_blobs() {
    let up_dir = tempfile::tempdir().unwrap();
    let old = blob(up_dir.path(), b"version one");
    let new = blob(up_dir.path(), b"version two");
    let (up, _) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, _) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    for rel in [&old, &new] {
        relay.obtain(rel).await.unwrap();
    }
    let meta = cache.path().join("targets/components/p/1/notes.json");
    std::fs::write(&meta, b"{}").unwrap();
    let keep: std::collections::BTreeSet<String> = [new.clone()].into();
    assert_eq!(relay.prune_unnamed("elsewhere/targets/", &keep).unwrap(), 0);
    assert!(cache.path().join(&old).exists());
    assert_eq!(relay.prune_unnamed("targets/", &keep).unwrap(), 1);
    assert!(!cache.path().join(&old).exists());
    assert!(cache.path().join(&new).exists());
    assert!(meta.exists());
    assert!(relay.prune_unnamed("../", &keep).is_err());
}

// A timestamp fetched a moment ago is reused for a burst of requests, but not after
// `revalidate` (the agent's warm-up after a publish must see the new one at once).
#[tokio::test]
async fn revalidate_skips_the_reuse_window() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
    std::fs::write(dir.path().join("metadata/timestamp.json"), "v1").unwrap();
    let (up, hits) = upstream(dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let url = base.join("metadata/timestamp.json").unwrap();
    let get = || async {
        reqwest::get(url.clone())
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(get().await, "v1");
    std::fs::write(dir.path().join("metadata/timestamp.json"), "v2").unwrap();
    relay.revalidate();
    assert_eq!(get().await, "v2");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

// A timestamp is reused only within its window by the relay's clock: not after the window,
// and not when the clock was set back (a time ahead of the clock counts as long ago).
#[tokio::test]
async fn reuse_window_follows_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
    std::fs::write(dir.path().join("metadata/timestamp.json"), "v1").unwrap();
    let (up, hits) = upstream(dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    let (_relay, base) = relay_timed(cache.path(), vec![up.url()], u64::MAX, clock.clone()).await;
    let url = base.join("metadata/timestamp.json").unwrap();
    let get = || async {
        reqwest::get(url.clone())
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(get().await, "v1");
    std::fs::write(dir.path().join("metadata/timestamp.json"), "v2").unwrap();
    clock.advance_by(Duration::from_millis(400));
    assert_eq!(get().await, "v1", "reused within the window");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    clock.advance_by(Duration::from_millis(200));
    assert_eq!(get().await, "v2", "fetched again after the window");
    std::fs::write(dir.path().join("metadata/timestamp.json"), "v3").unwrap();
    clock.advance(-3600);
    assert_eq!(
        get().await,
        "v3",
        "fetched again after the clock was set back"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

// A cached blob altered after it was cached (bytes flipped, or cut short) is never served: the
// relay checks it against the hash in its name, drops it, counts it as refused and fetches
// it again (`docs/operating.md#relay-self-healing`); the client gets the genuine bytes.
#[tokio::test]
async fn corrupted_cached_blob_is_dropped_and_fetched_again() {
    let up_dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let rel = blob(up_dir.path(), &body);
    let (up, hits) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let url = base.join(&rel).unwrap();
    let get = || async {
        let resp = reqwest::get(url.clone()).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap().to_vec()
    };
    assert_eq!(get().await, body);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let cached = cache.path().join(&rel);

    // 16 flipped bytes, written as a new file (as an editor or a copy would).
    let mut bad = std::fs::read(&cached).unwrap();
    for b in &mut bad[1000..1016] {
        *b ^= 0xff;
    }
    let tmp = cache.path().join("flipped");
    std::fs::write(&tmp, &bad).unwrap();
    std::fs::rename(&tmp, &cached).unwrap();
    assert_eq!(get().await, body, "flipped bytes were served");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the bad copy was not fetched again"
    );
    assert_eq!(relay.report().refused, 1);
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        body,
        "the cache was not repaired"
    );

    // Cut short in place.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap()
        .set_len(100_000)
        .unwrap();
    assert_eq!(get().await, body, "a truncated copy was served");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(relay.report().refused, 2);

    // Bytes flipped in place, however the file's times look: the check after warming finds it.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(5)).unwrap();
    std::io::Write::write_all(&mut f, b"garbage").unwrap();
    drop(f);
    assert_eq!(relay.check_cache(), 1);
    assert!(!cached.exists());
    assert_eq!(relay.report().refused, 3);
    assert_eq!(get().await, body);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

// The temporary files of fetches a killed relay left in its cache are removed when a relay
// starts on that cache; cached blobs stay.
#[tokio::test]
async fn killed_fetch_debris_removed_at_start() {
    let up_dir = tempfile::tempdir().unwrap();
    let body = b"blob body".to_vec();
    let rel = blob(up_dir.path(), &body);
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("targets/components/p/1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(cache.path().join(&rel), &body).unwrap();
    std::fs::write(dir.join(".fetch-abc123"), b"half a blob").unwrap();
    std::fs::write(dir.join(".seed-def456"), b"half a copy").unwrap();
    let (up, _) = upstream(up_dir.path()).await;
    let (_relay, _) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec![rel.rsplit('/').next().unwrap().to_owned()]);
}

// Domain settings shrink the cache budget: the oldest blobs are evicted at once, and the new
// budget holds for what is fetched next (`docs/operating.md#domains-and-their-settings`).
#[tokio::test]
async fn applied_cache_budget_evicts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rels: Vec<String> = (0..4u8)
        .map(|i| blob(dir.path(), &vec![i + 10; 1000]))
        .collect();
    let (up, _) = upstream(dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], 1 << 20).await;
    for rel in &rels[..3] {
        let r = reqwest::get(base.join(rel).unwrap()).await.unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kept = |rels: &[String]| -> Vec<bool> {
        rels.iter().map(|r| cache.path().join(r).exists()).collect()
    };
    assert_eq!(kept(&rels[..3]), [true, true, true]);
    relay.apply_limits(1500, 0, 0);
    assert_eq!(relay.cache_budget(), 1500);
    assert_eq!(kept(&rels[..3]), [false, false, true]);
    let r = reqwest::get(base.join(&rels[3]).unwrap()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(kept(&rels), [false, false, false, true]);
}

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

/// Writes `upstream/metadata/timestamp.json` of `version` under `root`.
fn timestamp(root: &Path, version: u64) {
    let dir = root.join("upstream/metadata");
    std::fs::create_dir_all(&dir).unwrap();
    let body = format!("{{\"signed\":{{\"_type\":\"timestamp\",\"version\":{version}}}}}");
    std::fs::write(dir.join("timestamp.json"), body).unwrap();
}

/// The `signed.version` of a timestamp answer.
fn version_of(text: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

/// `GET base/upstream/metadata/timestamp.json`, with the floor header when given; the version.
async fn timestamp_version(client: &reqwest::Client, base: &Url, floor: Option<&str>) -> u64 {
    let url = base.join("upstream/metadata/timestamp.json").unwrap();
    let mut req = client.get(url);
    if let Some(f) = floor {
        req = req.header("cascade-repo-versions", f);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    version_of(&resp.text().await.unwrap())
}

// The client's version floor (`cascade-repo-versions`, as the server announced it) decides
// whether the relay's cached timestamp will do (`docs/operating.md#relays-serve-all-metadata`):
// at least as new, it is served however old the fetch (no upstream request); older, it is
// fetched again once for all the clients asking together; a floor the upstream cannot meet
// yet costs one fetch per half second, never one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_floor_decides_when_the_timestamp_is_fetched_again() {
    let up_dir = tempfile::tempdir().unwrap();
    timestamp(up_dir.path(), 1);
    let (up, hits) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    let (relay, base) = relay_timed(cache.path(), vec![up.url()], u64::MAX, clock.clone()).await;
    let client = reqwest::Client::new();
    assert_eq!(timestamp_version(&client, &base, None).await, 1);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Published upstream; the cached copy meets a floor of 1 long after the reuse window.
    timestamp(up_dir.path(), 2);
    clock.advance(3600);
    for _ in 0..5 {
        let v = timestamp_version(&client, &base, Some("upstream=1, site=9")).await;
        assert_eq!(v, 1);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a floor met is no upstream fetch"
    );

    // A floor of 2: fetched again, once for 50 clients asking together.
    let wave = |floor: &'static str| {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move { timestamp_version(&client, &base, Some(floor)).await })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };
    assert!(wave("upstream=2").await.iter().all(|v| *v == 2));
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // A floor upstream has not reached: the newest there is served (the client refuses it),
    // after one fetch for that floor; asked again for it once the half-second window passed.
    let before = relay.stats.upstream_fetches.load(Ordering::SeqCst);
    let got = wave("upstream=3").await;
    assert!(got.iter().all(|v| *v == 2), "{got:?}");
    assert_eq!(
        timestamp_version(&client, &base, Some("upstream=3")).await,
        2
    );
    let fetches = relay.stats.upstream_fetches.load(Ordering::SeqCst) - before;
    assert_eq!(
        fetches, 1,
        "upstream fetches for 51 requests of an unmet floor"
    );
    timestamp(up_dir.path(), 3);
    clock.advance_by(Duration::from_millis(600));
    assert_eq!(
        timestamp_version(&client, &base, Some("upstream=3")).await,
        3
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

// A relay passes the floor on when it fetches: a relay behind another one gets the new
// timestamp through it, though the first fetched its old one a moment ago.
#[tokio::test]
async fn floor_is_passed_upstream_through_a_chain_of_relays() {
    let up_dir = tempfile::tempdir().unwrap();
    timestamp(up_dir.path(), 1);
    let (up, hits) = upstream(up_dir.path()).await;
    let (cache_a, cache_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_a, base_a) = relay(cache_a.path(), vec![up.url()], u64::MAX).await;
    let (_b, base_b) = relay(cache_b.path(), vec![base_a], u64::MAX).await;
    let client = reqwest::Client::new();
    assert_eq!(timestamp_version(&client, &base_b, None).await, 1);
    timestamp(up_dir.path(), 2);
    // Within the reuse window of both relays' clocks (they do not move).
    assert_eq!(timestamp_version(&client, &base_b, None).await, 1);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        timestamp_version(&client, &base_b, Some("upstream=2")).await,
        2
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
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
