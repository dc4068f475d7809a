//! Notify All Clients over the event stream.

use std::time::{Duration, Instant};

use cascade_client::proto::{AgentDoc, Category, NotifyRequest};
use reqwest::Method;
use serde_json::json;

use crate::harness::{json, raw, start, start_with, Sse};

// Notify reaches every connected stream; the update agent hears it before any client.
#[tokio::test]
async fn notify_reaches_everyone_agents_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.admin(
        Method::POST,
        "/api/agents",
        json(&AgentDoc {
            address: "10.0.0.5:8443".into(),
            capabilities: Category::ALL.to_vec(),
        }),
    )
    .await
    .expect(201);
    let (_, agent) = s.enroll_client("relay", Some("10.0.0.5:8443")).await;
    let mut streams = vec![(
        "agent",
        Sse::connect(&s.http, &s.url, &agent).await.unwrap(),
    )];
    for i in 0..4 {
        let (_, c) = s.enroll_client(&format!("pc-{i}"), None).await;
        streams.push(("client", Sse::connect(&s.http, &s.url, &c).await.unwrap()));
    }
    for (role, sse) in &mut streams {
        let (event, data) = sse.next().await.unwrap();
        assert_eq!(event, "hello");
        assert_eq!(data["role"], *role);
    }
    let sent = Instant::now();
    let v = s
        .admin(
            Method::POST,
            "/api/notify",
            json(&NotifyRequest {
                categories: vec![Category::Components],
            }),
        )
        .await
        .expect(200);
    assert_eq!(v["fan_out"]["agents"], 1);
    assert_eq!(v["fan_out"]["clients"], 4);
    let id = v["id"].clone();

    let mut arrivals = Vec::new();
    for (role, sse) in &mut streams {
        let (event, data) = tokio::time::timeout(Duration::from_secs(5), sse.next())
            .await
            .expect("notice within 5 s")
            .unwrap();
        assert_eq!(event, "notify");
        assert_eq!(data["id"], id);
        assert_eq!(data["categories"], json!(["components"]));
        assert_eq!(
            data["stage"],
            if *role == "agent" {
                "agents"
            } else {
                "clients"
            }
        );
        arrivals.push((*role, sent.elapsed()));
    }
    let agent_at = arrivals[0].1;
    assert!(
        agent_at < Duration::from_secs(1),
        "the agent hears it before the head start ends: {arrivals:?}"
    );
    for (_, at) in &arrivals[1..] {
        assert!(
            *at >= Duration::from_secs(1),
            "clients wait for the head start: {arrivals:?}"
        );
        assert!(*at > agent_at, "{arrivals:?}");
    }
    let metrics = s
        .call(Method::GET, "/metrics", None, &[], None)
        .await
        .expect(200);
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("cascade_notify_deliveries_total{role=\"client\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("cascade_notify_deliveries_total{role=\"agent\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("cascade_event_streams{role=\"client\"} 4"),
        "{text}"
    );

    // A second notify without categories means all three, and ids increase.
    let v2 = s.admin(Method::POST, "/api/notify", None).await.expect(200);
    assert_eq!(v2["id"], id.as_i64().unwrap() + 1);
    let (_, data) = streams[1].1.next().await.unwrap();
    assert_eq!(
        data["categories"],
        json!(["components", "domain-settings", "programs"])
    );
    // Shutdown ends open streams instead of hanging.
    s.stop().await;
}

// With no agent connected, clients are told at once, with a jitter hint.
#[tokio::test]
async fn notify_without_agents_is_immediate() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (_, c) = s.enroll_client("pc", None).await;
    let mut sse = Sse::connect(&s.http, &s.url, &c).await.unwrap();
    assert_eq!(sse.next().await.unwrap().0, "hello");
    let v = s.admin(Method::POST, "/api/notify", None).await.expect(200);
    assert_eq!(v["fan_out"]["clients_after_ms"], 0);
    let (event, data) = sse.next().await.unwrap();
    assert_eq!(event, "notify");
    assert_eq!(data["jitter_ms"], v["fan_out"]["jitter_ms"]);
    assert!(data["jitter_ms"].as_u64().unwrap() > 0);
    s.admin(
        Method::POST,
        "/api/notify",
        raw(r#"{"categories": ["patterns"]}"#),
    )
    .await
    .expect_error(400, "request.json", "body");
    s.stop().await;
}

// Two replicas on one database: a notify issued on one reaches the streams held by the other, once.
#[tokio::test]
async fn notify_crosses_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path()).await;
    let tokens = (a.admin.clone(), a.enroll.clone(), a.clock.clone());
    let b = start_with(dir.path(), None, Some(tokens)).await;
    assert!(!b.first_start_seen, "the second replica reuses the store");
    let (_, c) = a.enroll_client("pc", None).await;
    let mut sse = Sse::connect(&b.http, &b.url, &c).await.unwrap();
    assert_eq!(sse.next().await.unwrap().0, "hello");

    let v = a.admin(Method::POST, "/api/notify", None).await.expect(200);
    assert_eq!(v["fan_out"]["clients"], 0, "no stream is held by replica a");
    let (event, data) = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .expect("notice from the other replica within 5 s")
        .unwrap();
    assert_eq!(event, "notify");
    assert_eq!(data["id"], v["id"]);

    let w = b.admin(Method::POST, "/api/notify", None).await.expect(200);
    assert_eq!(w["fan_out"]["clients"], 1);
    let (_, data) = sse.next().await.unwrap();
    assert_eq!(data["id"], w["id"]);
    let again = tokio::time::timeout(Duration::from_millis(600), sse.next()).await;
    assert!(
        again.is_err(),
        "a replica's own notify is not sent twice: {again:?}"
    );
    b.stop().await;
    a.stop().await;
}

// A deleted client's open event stream ends at once: it never hears the next notify,
// while another client's stream does.
#[tokio::test]
async fn a_deleted_clients_stream_closes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (gone_id, gone) = s.enroll_client("gone", None).await;
    let (_, stays) = s.enroll_client("stays", None).await;
    let mut gone_sse = Sse::connect(&s.http, &s.url, &gone).await.unwrap();
    let mut stays_sse = Sse::connect(&s.http, &s.url, &stays).await.unwrap();
    assert_eq!(gone_sse.next().await.unwrap().0, "hello");
    assert_eq!(stays_sse.next().await.unwrap().0, "hello");
    s.admin(Method::DELETE, &format!("/api/clients/{gone_id}"), None)
        .await
        .expect(200);
    let ended = tokio::time::timeout(Duration::from_secs(5), gone_sse.next())
        .await
        .expect("the deleted client's stream ends within 5 s");
    assert!(ended.is_none(), "the stream ended, got {ended:?}");
    s.admin(Method::POST, "/api/notify", None).await.expect(200);
    let (event, _) = tokio::time::timeout(Duration::from_secs(5), stays_sse.next())
        .await
        .expect("notice within 5 s")
        .unwrap();
    assert_eq!(event, "notify");
    s.stop().await;
}

// A stream that (re)connects hears, right after `hello`, the newest notice it missed
// (`docs/architecture.md#notify-across-restarts`): not one older than the `Last-Event-ID` it
// sends, not one older than its last check-in, not one outside the replay window; a
// `Last-Event-ID` that is not a notice id is refused.
#[tokio::test]
async fn reconnecting_stream_hears_the_newest_missed_notice() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (_, c) = s.enroll_client("pc", None).await;
    let notify = || async { s.admin(Method::POST, "/api/notify", None).await.expect(200) };
    let first = notify().await;
    let second = notify().await;
    assert_eq!(first["fan_out"]["clients"], 0);
    assert_eq!(second["fan_out"]["replay_window_s"], 3600);
    let second = second["id"].as_i64().unwrap();

    // Not connected for either: the newest is sent after hello, as a client's notice.
    let mut sse = Sse::connect(&s.http, &s.url, &c).await.unwrap();
    hello_first(&mut sse).await;
    assert_eq!(next_notice_id(&mut sse).await, second);
    drop(sse);

    // Naming the last id heard: nothing old; the next event is the next notice.
    let mut sse = Sse::connect_after(&s.http, &s.url, &c, Some(second))
        .await
        .unwrap();
    hello_first(&mut sse).await;
    let third = notify().await["id"].as_i64().unwrap();
    assert_eq!(next_notice_id(&mut sse).await, third);
    drop(sse);

    // A check-in after the notice: the client acted on it, nothing is replayed.
    s.clock.advance(1);
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&c),
        &[],
        raw("{}"),
    )
    .await
    .expect(200);
    let mut sse = Sse::connect(&s.http, &s.url, &c).await.unwrap();
    hello_first(&mut sse).await;
    let fourth = notify().await["id"].as_i64().unwrap();
    assert_eq!(next_notice_id(&mut sse).await, fourth);
    drop(sse);

    // Outside the replay window: nothing is replayed.
    s.clock.advance(3601);
    let mut sse = Sse::connect_after(&s.http, &s.url, &c, Some(third))
        .await
        .unwrap();
    hello_first(&mut sse).await;
    let fifth = notify().await["id"].as_i64().unwrap();
    assert_eq!(next_notice_id(&mut sse).await, fifth);
    drop(sse);

    s.call(
        Method::GET,
        "/api/client/events",
        Some(&c),
        &[("Last-Event-ID", "twelve")],
        None,
    )
    .await
    .expect_error(400, "request.last_event_id", "Last-Event-ID");
}

/// Replaces `dir/repo/upstream/metadata/timestamp.json` (atomically) with one of `version`.
fn serve_timestamp(dir: &std::path::Path, version: u64) {
    let meta = dir.join("repo/upstream/metadata");
    std::fs::create_dir_all(&meta).unwrap();
    let tmp = meta.join(".timestamp.tmp");
    std::fs::write(&tmp, format!(r#"{{"signed":{{"version":{version}}}}}"#)).unwrap();
    std::fs::rename(tmp, meta.join("timestamp.json")).unwrap();
}

// The repository versions served now come with every policy answer, 200 and 304, and with
// every notice: the clients' floor, so they need not read `timestamp.json` from the server
// (`docs/architecture.md#run-time`).
#[tokio::test]
async fn repo_versions_come_with_policy_answers_and_notices() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (_, c) = s.enroll_client("pc", None).await;
    serve_timestamp(&s.data_dir, 7);
    let first = s.client.policy(&c, None).await.unwrap();
    assert_eq!(first.versions.upstream, Some(7));
    // The server's own site repository, created at first start, is at its first timestamp.
    assert_eq!(first.versions.site, Some(1));
    let revision = first.policy.unwrap().revision;
    serve_timestamp(&s.data_dir, 8);
    let unchanged = s.client.policy(&c, Some(revision)).await.unwrap();
    assert!(unchanged.policy.is_none(), "a 304");
    assert_eq!(unchanged.versions.upstream, Some(8));
    let mut sse = Sse::connect(&s.http, &s.url, &c).await.unwrap();
    hello_first(&mut sse).await;
    serve_timestamp(&s.data_dir, 9);
    s.admin(Method::POST, "/api/notify", None).await.expect(200);
    let (event, data) = sse.next().await.unwrap();
    assert_eq!(event, "notify");
    assert_eq!(
        data["versions"],
        serde_json::json!({"upstream": 9, "site": 1}),
        "{data}"
    );
    s.stop().await;
}

/// The next event, a notice: its id.
async fn next_notice_id(sse: &mut Sse) -> i64 {
    let (event, data) = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .expect("an event within 5 s")
        .unwrap();
    assert_eq!(event, "notify", "{data}");
    data["id"].as_i64().unwrap()
}

/// The next event is `hello`.
async fn hello_first(sse: &mut Sse) {
    assert_eq!(sse.next().await.unwrap().0, "hello");
}

/// Replicas `dirs.len()` on `database_url` (none: the SQLite file of `dirs[0]`, which every
/// replica then shares): a rollout's ring notice issued on the first reaches the ring's client
/// on the second and no other client there; a third replica started after it replays it to
/// the ring's client only (it reads the notice's scope from the database). The other client's
/// next notice is the plain notify issued afterwards.
pub async fn ring_notice_scenario(dirs: [&std::path::Path; 3], database_url: Option<String>) {
    use cascade_client::proto::{NewRollout, RingSpec};
    let a = start_with(dirs[0], database_url.clone(), None).await;
    let tokens = || Some((a.admin.clone(), a.enroll.clone(), a.clock.clone()));
    let b = start_with(dirs[1], database_url.clone(), tokens()).await;
    let (_, ring_client) = a.enroll_client("pc-ring", None).await;
    let (_, other_client) = a.enroll_client("pc-other", None).await;
    a.admin(
        Method::POST,
        "/api/programs/app/1?file=app.bin",
        raw("build 1"),
    )
    .await
    .expect(201);
    let mut in_ring = Sse::connect(&b.http, &b.url, &ring_client).await.unwrap();
    let mut outside = Sse::connect(&b.http, &b.url, &other_client).await.unwrap();
    hello_first(&mut in_ring).await;
    hello_first(&mut outside).await;

    let ring = |name: &str| RingSpec {
        name: name.into(),
        soak_secs: 600,
        ..RingSpec::default()
    };
    a.admin(
        Method::POST,
        "/api/rollouts",
        json(&NewRollout {
            program: "app".into(),
            version: "2".into(),
            previous_version: Some("1".into()),
            rings: vec![
                RingSpec {
                    clients: vec!["pc-ring".into()],
                    ..ring("canary")
                },
                RingSpec {
                    percent: Some(100.0),
                    ..ring("everyone")
                },
            ],
        }),
    )
    .await
    .expect(201);
    let ring_notice = next_notice_id(&mut in_ring).await;

    // A replica started now knows nothing of the notice but what the database says.
    let c = start_with(dirs[2], database_url.clone(), tokens()).await;
    let mut in_ring_c = Sse::connect(&c.http, &c.url, &ring_client).await.unwrap();
    let mut outside_c = Sse::connect(&c.http, &c.url, &other_client).await.unwrap();
    hello_first(&mut in_ring_c).await;
    hello_first(&mut outside_c).await;
    assert_eq!(
        next_notice_id(&mut in_ring_c).await,
        ring_notice,
        "the ring's client hears the ring notice replayed"
    );

    let plain = a.admin(Method::POST, "/api/notify", None).await.expect(200)["id"]
        .as_i64()
        .unwrap();
    assert!(plain > ring_notice);
    for (sse, who) in [
        (&mut outside, "replica 2"),
        (&mut outside_c, "replica 3 (replayed)"),
    ] {
        assert_eq!(
            next_notice_id(sse).await,
            plain,
            "the client outside the ring heard the ring notice on {who}"
        );
    }
    for sse in [&mut in_ring, &mut in_ring_c] {
        assert_eq!(next_notice_id(sse).await, plain);
    }
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

// Two replicas on one SQLite file (and a third started later): a ring's notice reaches the
// ring only, on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_notice_reaches_the_ring_only_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    ring_notice_scenario([dir.path(); 3], None).await;
}
