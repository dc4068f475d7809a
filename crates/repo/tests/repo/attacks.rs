//! One misbehaving relay or mirror per test; each is refused with a specific error and
//! nothing is written outside the staging directory.

use std::time::Duration;

use cascade_core::Category;
use cascade_repo::meta::{commit, RepoDirs, State};
use cascade_repo::{Expiries, PublishOptions};
use tough::schema::Target;
use tough::TargetName;

use crate::common::{
    content, fast_limits, fetch_engine, files_under, only_code, serve, Fixture, Lie, SourceOf,
};

// A mirror serving a tampered blob is refused with a hash mismatch and leaves no file behind.
#[tokio::test]
async fn tampered_blob_refused() {
    let fx = Fixture::new().await;
    fx.publish("1", &content(50_000, 4)).await;
    let server = serve(&fx.public()).await;
    let path = fx.blob_path("1");
    let mut bad = fx.served(path.trim_start_matches('/'));
    bad[100] ^= 0x55;
    server.lie(&path, Lie::Bytes(bad));
    let out = fx.staging("out");
    let r = fetch_engine(
        &fx.client(fast_limits()),
        &[server.source("mirror")],
        None,
        &out,
    )
    .await;
    assert_eq!(
        only_code(&r),
        vec![("mirror".to_owned(), "tuf.hash_mismatch")]
    );
    assert!(files_under(&out).is_empty(), "{:?}", files_under(&out));
}

// A relay serving a timestamp.json altered after signing is refused with a signature failure.
#[tokio::test]
async fn tampered_metadata_refused() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let server = serve(&fx.public()).await;
    let mut ts: serde_json::Value =
        serde_json::from_slice(&fx.served("metadata/timestamp.json")).unwrap();
    ts["signed"]["version"] = serde_json::json!(999);
    server.lie(
        "/metadata/timestamp.json",
        Lie::Bytes(serde_json::to_vec(&ts).unwrap()),
    );
    let out = fx.staging("out");
    let r = fetch_engine(
        &fx.client(fast_limits()),
        &[server.source("relay")],
        None,
        &out,
    )
    .await;
    assert_eq!(
        only_code(&r),
        vec![("relay".to_owned(), "tuf.bad_signature")]
    );
    assert!(files_under(&out).is_empty());
}

// A stale relay with an older (rolled back) repository copy is refused once the client knows newer metadata; the next source wins.
#[tokio::test]
async fn rolled_back_relay_refused_next_source_wins() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let old = fx.snapshot_public("old-relay");
    fx.publish("2", b"two").await;
    let live = serve(&fx.public()).await;
    let stale = serve(&old).await;
    let client = fx.client(fast_limits());
    let out = fx.staging("a");
    fetch_engine(&client, &[live.source("live")], None, &out)
        .await
        .unwrap();
    let out = fx.staging("b");
    let r = fetch_engine(&client, &[stale.source("stale")], None, &out).await;
    assert_eq!(only_code(&r), vec![("stale".to_owned(), "tuf.rollback")]);
    assert!(files_under(&out).is_empty());
    let got = fetch_engine(
        &client,
        &[stale.source("stale"), live.source("live")],
        None,
        &out,
    )
    .await
    .unwrap();
    assert_eq!((got.source.as_str(), got.version.as_str()), ("live", "2"));
}

// A server whose timestamp was last signed two days ago (one-day lifetime) is refused as expired.
#[tokio::test]
async fn expired_timestamp_refused() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let two_days_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48);
    fx.publisher.refresh_timestamp(two_days_ago).await.unwrap();
    let server = serve(&fx.public()).await;
    let out = fx.staging("out");
    let r = fetch_engine(
        &fx.client(fast_limits()),
        &[server.source("origin")],
        None,
        &out,
    )
    .await;
    assert_eq!(only_code(&r), vec![("origin".to_owned(), "tuf.expired")]);
}

// A relay frozen on yesterday's repository (same timestamp served forever) is refused as expired, and a live source behind it wins.
#[tokio::test]
async fn frozen_relay_refused() {
    let fx = Fixture::new().await;
    let yesterday = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(30);
    let src = fx.tmp.path().join("f");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.bin"), b"frozen").unwrap();
    fx.publisher
        .publish(
            Category::Components,
            "engine",
            "1",
            &[src.join("data.bin")],
            PublishOptions::default(),
            yesterday,
        )
        .await
        .unwrap();
    let frozen = serve(&fx.snapshot_public("frozen")).await;
    fx.publisher
        .refresh_timestamp(jiff::Timestamp::now())
        .await
        .unwrap();
    let live = serve(&fx.public()).await;
    let out = fx.staging("out");
    let client = fx.client(fast_limits());
    let r = fetch_engine(&client, &[frozen.source("frozen")], None, &out).await;
    assert_eq!(only_code(&r), vec![("frozen".to_owned(), "tuf.expired")]);
    let got = fetch_engine(
        &client,
        &[frozen.source("frozen"), live.source("live")],
        None,
        &out,
    )
    .await
    .unwrap();
    assert_eq!(got.source, "live");
}

// A relay mixing snapshots (serving an older snapshot under the name the timestamp lists) is refused.
#[tokio::test]
async fn mix_and_match_refused() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let older = fx.snapshot_version();
    let older_bytes = fx.served(&format!("metadata/{older}.snapshot.json"));
    fx.publish("2", b"two").await;
    let current = fx.snapshot_version();
    let server = serve(&fx.public()).await;
    server.lie(
        &format!("/metadata/{current}.snapshot.json"),
        Lie::Bytes(older_bytes),
    );
    let out = fx.staging("out");
    let r = fetch_engine(
        &fx.client(fast_limits()),
        &[server.source("relay")],
        None,
        &out,
    )
    .await;
    assert_eq!(
        only_code(&r),
        vec![("relay".to_owned(), "tuf.hash_mismatch")]
    );
}

// An endless timestamp.json and an endless blob are both cut off at their size caps.
#[tokio::test]
async fn endless_responses_refused() {
    let fx = Fixture::new().await;
    fx.publish("1", &content(10_000, 5)).await;
    let server = serve(&fx.public()).await;
    server.lie("/metadata/timestamp.json", Lie::Endless);
    let out = fx.staging("out");
    let r = fetch_engine(
        &fx.client(fast_limits()),
        &[server.source("relay")],
        None,
        &out,
    )
    .await;
    assert_eq!(only_code(&r), vec![("relay".to_owned(), "tuf.too_large")]);

    let server = serve(&fx.public()).await;
    server.lie(&fx.blob_path("1"), Lie::Endless);
    let r = fetch_engine(
        &fx.client(fast_limits()),
        &[server.source("mirror")],
        None,
        &out,
    )
    .await;
    assert_eq!(only_code(&r), vec![("mirror".to_owned(), "tuf.too_large")]);
    assert!(files_under(&out).is_empty());
}

// A blob trickled below the throughput floor is abandoned as too slow long before it would finish; what arrived is kept only as a .partial file, which a good source then completes with a range request.
#[tokio::test]
async fn trickle_below_floor_refused_then_resumed() {
    let fx = Fixture::new().await;
    let data = content(200_000, 6);
    fx.publish("1", &data).await;
    let server = serve(&fx.public()).await;
    let every = Duration::from_millis(100);
    let blob = fx.blob_path("1");
    server.lie(&blob, Lie::Trickle { chunk: 500, every });
    let out = fx.staging("out");
    let started = std::time::Instant::now();
    let client = fx.client(fast_limits());
    let r = fetch_engine(&client, &[server.source("slow")], None, &out).await;
    assert_eq!(only_code(&r), vec![("slow".to_owned(), "source.too_slow")]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let left = files_under(&out);
    assert!(
        left.len() == 1 && left[0].starts_with(".partial-"),
        "{left:?}"
    );
    let kept = std::fs::metadata(out.join(&left[0])).unwrap().len();
    assert!(kept > 0 && kept < 200_000, "{kept}");

    let good = serve(&fx.public()).await;
    let got = fetch_engine(&client, &[good.source("good")], None, &out)
        .await
        .unwrap();
    assert_eq!(got.version, "1");
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), data);
    assert_eq!(files_under(&out), vec!["data.bin".to_owned()]);
    let asked: Vec<_> = good
        .requests()
        .iter()
        .filter(|(p, _)| *p == blob)
        .cloned()
        .collect();
    assert_eq!(asked, vec![(blob.clone(), Some(kept))]);
}

// A .partial file that does not match the signed hash is discarded and the file fetched whole, without blaming the source.
#[tokio::test]
async fn poisoned_partial_discarded() {
    let fx = Fixture::new().await;
    let data = content(50_000, 13);
    fx.publish("1", &data).await;
    let server = serve(&fx.public()).await;
    let out = fx.staging("out");
    let sha = fx
        .blob_path("1")
        .rsplit('/')
        .next()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(out.join(format!(".partial-{sha}")), vec![0u8; 10_000]).unwrap();
    let got = fetch_engine(&fx.client(fast_limits()), &[server.source("o")], None, &out)
        .await
        .unwrap();
    assert_eq!(got.source, "o");
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), data);
    assert_eq!(files_under(&out), vec!["data.bin".to_owned()]);
}

/// Sign a targets list holding one extra target called `name` (a compromised publisher).
async fn sign_extra_target(fx: &Fixture, name: &str) {
    let dirs = RepoDirs {
        dir: fx.tmp.path().join("repo"),
    };
    let keys = dirs.key_paths(&fx.tmp.path().join("keys"));
    let state = State::load(&dirs).unwrap();
    let mut targets = state.targets.signed.clone();
    let any: Target = targets.targets.values().next().unwrap().clone();
    targets.targets.insert(TargetName::new(name).unwrap(), any);
    commit(
        &dirs,
        &keys,
        &state,
        Some(targets),
        true,
        &Expiries::default(),
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
}

// Signed metadata naming a target `../../etc/x` or `/etc/x` is refused and nothing is written anywhere.
#[tokio::test]
async fn traversal_target_names_refused() {
    for name in ["../../etc/x", "/etc/x", "components/engine/1/../../../../x"] {
        let fx = Fixture::new().await;
        fx.publish("1", b"one").await;
        sign_extra_target(&fx, name).await;
        let server = serve(&fx.public()).await;
        let out = fx.staging("deep/out");
        let r = fetch_engine(
            &fx.client(fast_limits()),
            &[server.source("evil")],
            None,
            &out,
        )
        .await;
        assert_eq!(
            only_code(&r),
            vec![("evil".to_owned(), "repo.unsafe_name")],
            "{name}"
        );
        assert!(files_under(&fx.tmp.path().join("staging")).is_empty());
        assert!(!fx.tmp.path().join("etc").exists() && !fx.tmp.path().join("x").exists());
    }
}

// A stale relay the client has never seen past is refused once the server announces a newer timestamp version.
#[tokio::test]
async fn stale_relay_refused_below_announced_version() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let stale = serve(&fx.snapshot_public("stale")).await;
    fx.publish("2", b"two").await;
    let announced: serde_json::Value =
        serde_json::from_slice(&fx.served("metadata/timestamp.json")).unwrap();
    let announced = announced["signed"]["version"].as_u64().unwrap();
    let live = serve(&fx.public()).await;
    let out = fx.staging("out");
    let client = fx
        .client(fast_limits())
        .with_min_timestamp_version(announced);
    let r = fetch_engine(&client, &[stale.source("stale")], None, &out).await;
    assert_eq!(only_code(&r), vec![("stale".to_owned(), "tuf.rollback")]);
    let got = fetch_engine(
        &client,
        &[stale.source("stale"), live.source("live")],
        None,
        &out,
    )
    .await
    .unwrap();
    assert_eq!((got.source.as_str(), got.version.as_str()), ("live", "2"));
}
