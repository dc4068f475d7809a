//! Fetching the newest version: full files, deltas, fallback, up to date.

use cascade_core::Category;
use cascade_repo::{Installed, TransportLimits};

use crate::common::{
    content, fast_limits, fetch_engine, files_under, only_code, serve, v2_of, Fixture, Lie,
    SourceOf,
};

// A client with nothing installed gets the newest version in full; with v1 installed it rebuilds v2 from a delta.
#[tokio::test]
async fn fetch_full_then_delta() {
    let fx = Fixture::new().await;
    let v1 = content(300_000, 1);
    let v2 = v2_of(&v1);
    fx.publish("1.0.0", &v1).await;
    fx.publish("1.0.1", &v2).await;
    let server = serve(&fx.public()).await;
    let client = fx.client(fast_limits());

    let out = fx.staging("full");
    let got = fetch_engine(&client, &[server.source("origin")], None, &out)
        .await
        .unwrap();
    assert_eq!(got.version, "1.0.1");
    assert!(!got.files[0].via_delta);
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), v2);

    let installed = fx.staging("installed");
    std::fs::write(installed.join("data.bin"), &v1).unwrap();
    let out = fx.staging("delta");
    let inst = Installed {
        version: "1.0.0",
        dir: &installed,
    };
    let got = fetch_engine(&client, &[server.source("origin")], Some(inst), &out)
        .await
        .unwrap();
    assert!(got.files[0].via_delta, "expected a delta: {got:?}");
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), v2);
    assert_eq!(files_under(&out), vec!["data.bin".to_owned()]);
}

// A delta that does not reproduce the signed hash (installed copy corrupted) falls back to the full file.
#[tokio::test]
async fn bad_delta_falls_back_to_full() {
    let fx = Fixture::new().await;
    let v1 = content(200_000, 2);
    fx.publish("1", &v1).await;
    fx.publish("2", &v2_of(&v1)).await;
    let server = serve(&fx.public()).await;
    let installed = fx.staging("installed");
    std::fs::write(installed.join("data.bin"), content(200_000, 3)).unwrap();
    let out = fx.staging("out");
    let inst = Installed {
        version: "1",
        dir: &installed,
    };
    let got = fetch_engine(
        &fx.client(fast_limits()),
        &[server.source("origin")],
        Some(inst),
        &out,
    )
    .await
    .unwrap();
    assert!(!got.files[0].via_delta);
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), v2_of(&v1));
}

// The installed version being the newest is reported as up to date and nothing is downloaded.
#[tokio::test]
async fn up_to_date_downloads_nothing() {
    let fx = Fixture::new().await;
    fx.publish("7", b"seven").await;
    let server = serve(&fx.public()).await;
    let out = fx.staging("out");
    let inst = Installed {
        version: "7",
        dir: &out,
    };
    let got = fetch_engine(
        &fx.client(fast_limits()),
        &[server.source("o")],
        Some(inst),
        &out,
    )
    .await
    .unwrap();
    assert!(got.up_to_date && got.files.is_empty());
    assert!(files_under(&out).is_empty());
}

// A source's own limits replace the client's: a slow link refused under the default floor succeeds with a lower one.
#[tokio::test]
async fn per_source_limits_apply() {
    let fx = Fixture::new().await;
    let data = content(5_000, 11);
    fx.publish("1", &data).await;
    let server = serve(&fx.public()).await;
    let every = std::time::Duration::from_millis(100);
    server.lie(&fx.blob_path("1"), Lie::Trickle { chunk: 500, every });
    let client = fx.client(fast_limits());
    let out = fx.staging("out");
    let r = fetch_engine(&client, &[server.source("wan")], None, &out).await;
    assert_eq!(only_code(&r), vec![("wan".to_owned(), "source.too_slow")]);
    let lenient = TransportLimits {
        min_bytes_per_sec: 1_000,
        ..fast_limits()
    };
    let src = server.source("wan");
    let client = client.with_source_limits(&src.base, lenient).unwrap();
    let got = fetch_engine(&client, &[src], None, &out).await.unwrap();
    assert_eq!(got.version, "1");
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), data);
}

// A trust-state file truncated by a crash is set aside instead of blocking every later update.
#[tokio::test]
async fn truncated_trust_state_recovers() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let server = serve(&fx.public()).await;
    let client = fx.client(fast_limits());
    let out = fx.staging("out");
    fetch_engine(&client, &[server.source("o")], None, &out)
        .await
        .unwrap();
    let state = fx.tmp.path().join("state");
    std::fs::write(state.join("timestamp.json"), b"{\"signed\": {\"vers").unwrap();
    fx.publish("2", b"two").await;
    let got = fetch_engine(&client, &[server.source("o")], None, &out)
        .await
        .unwrap();
    assert_eq!(got.version, "2");
    assert!(state.join("timestamp.json.unreadable").exists());
}

// One open loads the metadata once; the newest version of every name then comes from it, and
// saving them fetches only their files (no second timestamp, snapshot or targets request).
#[tokio::test]
async fn open_loads_metadata_once_for_every_name() {
    let fx = Fixture::new().await;
    fx.publish("1.0.0", b"engine one").await;
    fx.publish("1.0.1", b"engine two").await;
    let src = fx.tmp.path().join("src/scanner");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("rules.txt"), b"scanner rules").unwrap();
    fx.publisher
        .publish(
            Category::Components,
            "scanner",
            "7",
            &[src.join("rules.txt")],
            cascade_repo::PublishOptions::default(),
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
    let server = serve(&fx.public()).await;
    let loaded = fx
        .client(fast_limits())
        .open(&server.source("origin"))
        .await
        .unwrap();
    let newest = loaded.newest(Category::Components);
    let found: Vec<(&str, &str)> = newest
        .iter()
        .map(|n| (n.name.as_str(), n.version.as_str()))
        .collect();
    assert_eq!(found, vec![("engine", "1.0.1"), ("scanner", "7")]);
    assert!(loaded.newest(Category::Programs).is_empty());
    for n in &newest {
        let out = fx.staging(&n.name);
        let got = loaded.save_into(n, None, &out).await.unwrap();
        assert_eq!((got.source.as_str(), got.up_to_date), ("origin", false));
        assert_eq!(files_under(&out).len(), 1);
    }
    assert_eq!(
        std::fs::read(fx.tmp.path().join("staging/scanner/rules.txt")).unwrap(),
        b"scanner rules"
    );
    let metadata_requests: Vec<String> = server
        .requests()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with("/metadata/") && !p.ends_with(".root.json"))
        .collect();
    assert_eq!(metadata_requests.len(), 3, "{metadata_requests:?}");
}

/// A clock set by the test.
#[derive(Debug)]
struct FixedClock(std::time::SystemTime);

impl cascade_repo::TrustClock for FixedClock {
    fn now(&self) -> std::time::SystemTime {
        self.0
    }
}

// One cycle with a clock 30 days ahead fails (expired metadata) and stores nothing; the next
// cycle on the right clock works, and so does one after a cycle 2 hours ahead that succeeded
// (docs/operating.md#agent-self-repair).
#[tokio::test]
async fn a_clock_ahead_once_does_not_lock_the_client_out() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let server = serve(&fx.public()).await;
    let out = fx.staging("out");
    let day = std::time::Duration::from_secs(86_400);
    let ahead = fx
        .client(fast_limits())
        .with_clock(std::sync::Arc::new(FixedClock(
            std::time::SystemTime::now() + day * 30,
        )));
    let r = fetch_engine(&ahead, &[server.source("o")], None, &out).await;
    assert_eq!(only_code(&r), vec![("o".to_owned(), "tuf.expired")]);
    let state = fx.tmp.path().join("state");
    assert!(!state.join("trust-floor.json").exists());
    assert!(!state.join("latest_known_time.json").exists());

    let client = fx.client(fast_limits());
    let got = fetch_engine(&client, &[server.source("o")], None, &out)
        .await
        .unwrap();
    assert_eq!(got.version, "1");

    let two_hours = std::time::Duration::from_secs(7_200);
    let slightly_ahead = fx
        .client(fast_limits())
        .with_clock(std::sync::Arc::new(FixedClock(
            std::time::SystemTime::now() + two_hours,
        )));
    fetch_engine(&slightly_ahead, &[server.source("o")], None, &out)
        .await
        .unwrap();
    fx.publish("2", b"two").await;
    let got = fetch_engine(&client, &[server.source("o")], None, &out)
        .await
        .unwrap();
    assert_eq!(got.version, "2");
}

// Role files that no longer parse are set aside, but the versions the client trusted stay a
// floor: an old copy of the repository is still refused as a rollback.
#[tokio::test]
async fn unreadable_trust_state_keeps_rollback_protection() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let old = fx.snapshot_public("old");
    fx.publish("2", b"two").await;
    let server = serve(&fx.public()).await;
    let old_server = serve(&old).await;
    let client = fx.client(fast_limits());
    let out = fx.staging("out");
    let got = fetch_engine(&client, &[server.source("o")], None, &out)
        .await
        .unwrap();
    assert_eq!(got.version, "2");
    let state = fx.tmp.path().join("state");
    for role in ["timestamp", "snapshot", "targets"] {
        std::fs::write(state.join(format!("{role}.json")), b"").unwrap();
    }
    let r = fetch_engine(&client, &[old_server.source("old")], None, &out).await;
    assert_eq!(only_code(&r), vec![("old".to_owned(), "tuf.rollback")]);
    let got = fetch_engine(&client, &[server.source("o")], None, &out)
        .await
        .unwrap();
    assert_eq!(got.version, "2");
    for role in ["timestamp", "snapshot", "targets"] {
        let bytes = std::fs::read(state.join(format!("{role}.json"))).unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
            "{role}"
        );
    }
}
