//! When the relay fetches the timestamp again: afresh each time but reused within its window
//! by the relay's clock, at once after `revalidate`, and whenever a client's version floor
//! asks for a newer one, passed on through a chain of relays.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cascade_testkit::ManualClock;
use url::Url;

use super::{relay, relay_timed, upstream};

/// The body of `GET url`.
async fn text_of(url: &Url) -> String {
    reqwest::get(url.clone())
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
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
    assert_eq!(text_of(&url).await, "v1");
    std::fs::write(dir.path().join("metadata/timestamp.json"), "v2").unwrap();
    clock.advance_by(Duration::from_millis(600));
    assert_eq!(text_of(&url).await, "v2");
    relay.set_upstreams(vec![Url::parse("http://127.0.0.1:9/repo/").unwrap()]);
    clock.advance_by(Duration::from_millis(600));
    assert_eq!(text_of(&url).await, "v2");
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
    let get = || text_of(&url);
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
    let get = || text_of(&url);
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
