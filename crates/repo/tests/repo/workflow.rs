//! The TUF client workflow as cascade's client runs it against a real repository served on
//! 127.0.0.1: what it fetches in each situation (`docs/architecture.md#trust-model`).

use crate::common::{fast_limits, serve, Fixture, SourceOf};

/// The metadata paths a server was asked for, in order.
fn metadata_requests(server: &cascade_testkit::HostileServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with("/metadata/"))
        .collect()
}

// When the timestamp has not changed, the client asks for the next root and the timestamp only:
// snapshot and targets are read back from its own trust state, not fetched again.
#[tokio::test]
async fn unchanged_timestamp_fetches_nothing_else() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let server = serve(&fx.public()).await;
    let client = fx.client(fast_limits());
    let first = client.open(&server.source("o")).await.unwrap();
    let fetched = metadata_requests(&server);
    assert!(
        fetched.iter().any(|p| p.ends_with(".snapshot.json"))
            && fetched.iter().any(|p| p.ends_with(".targets.json")),
        "{fetched:?}"
    );
    let server = serve(&fx.public()).await;
    let again = client.open(&server.source("o")).await.unwrap();
    assert_eq!(
        metadata_requests(&server),
        vec![
            "/metadata/2.root.json".to_owned(),
            "/metadata/timestamp.json".to_owned()
        ]
    );
    let signed = |l: &cascade_repo::Loaded| -> Vec<(String, Vec<u8>)> {
        l.files()
            .iter()
            .map(|f| (f.path.to_string(), f.sha256.clone()))
            .collect()
    };
    assert_eq!(signed(&again), signed(&first));

    // A new publish changes the timestamp: snapshot and targets are fetched again.
    fx.publish("2", b"two").await;
    let server = serve(&fx.public()).await;
    let newer = client.open(&server.source("o")).await.unwrap();
    let fetched = metadata_requests(&server);
    assert!(
        fetched.iter().any(|p| p.ends_with(".snapshot.json"))
            && fetched.iter().any(|p| p.ends_with(".targets.json")),
        "{fetched:?}"
    );
    assert!(newer.timestamp_version() > again.timestamp_version());
}

// A renewed root (version 2) is fetched as `2.root.json`, checked against root 1 and itself,
// and trusted from then on; the rotation stops at the first missing version.
#[tokio::test]
async fn root_rotation_follows_new_versions() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let server = serve(&fx.public()).await;
    let client = fx.client(fast_limits());
    client.open(&server.source("o")).await.unwrap();
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    assert_eq!(fx.publisher.renew(later).await.unwrap(), 2);
    let server = serve(&fx.public()).await;
    client.open(&server.source("o")).await.unwrap();
    let fetched = metadata_requests(&server);
    assert_eq!(
        fetched[..2],
        [
            "/metadata/2.root.json".to_owned(),
            "/metadata/3.root.json".to_owned()
        ]
    );
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.tmp.path().join("state/root.json")).unwrap())
            .unwrap();
    assert_eq!(stored["signed"]["version"], 2);
}

// A root version that the trusted root's keys did not sign is refused, and nothing the client
// stored changes.
#[tokio::test]
async fn root_not_signed_by_trusted_keys_refused() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let server = serve(&fx.public()).await;
    let client = fx.client(fast_limits());
    client.open(&server.source("o")).await.unwrap();
    let state = fx.tmp.path().join("state");
    let before = std::fs::read(state.join("root.json")).unwrap();
    let mut forged: serde_json::Value = serde_json::from_slice(&before).unwrap();
    forged["signed"]["version"] = serde_json::json!(2);
    server.lie(
        "/metadata/2.root.json",
        cascade_testkit::Lie::Bytes(serde_json::to_vec(&forged).unwrap()),
    );
    let err = client.open(&server.source("o")).await.unwrap_err();
    assert_eq!(err.code(), "tuf.bad_signature");
    assert_eq!(std::fs::read(state.join("root.json")).unwrap(), before);
}
