//! Fetching the newest version: full files, deltas, fallback, up to date.

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
