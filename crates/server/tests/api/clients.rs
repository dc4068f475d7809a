//! Enrollment, policy fetch, check-in and the admin's client registry; restart persistence.

use cascade_core::report::UpdateReport;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{start, start_with};

// A client fetches the policy with its revision; If-None-Match on the same revision gives 304.
#[tokio::test]
async fn client_fetches_policy() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (id, cred) = s.enroll_client("pc-1", None).await;
    let v = s
        .call(Method::GET, "/api/client/policy", Some(&cred), &[], None)
        .await
        .expect(200);
    assert_eq!(v["revision"], 1);
    assert_eq!(v["client"]["id"], id.as_str());
    assert_eq!(v["policy"], s.policy().await["policy"]);
    s.call(
        Method::GET,
        "/api/client/policy",
        Some(&cred),
        &[("if-none-match", "\"1\"")],
        None,
    )
    .await
    .expect(304);
    s.admin(
        Method::PATCH,
        "/api/policy/settings",
        Some(&json!({"mode": "customized"})),
    )
    .await
    .expect(200);
    let v = s
        .call(
            Method::GET,
            "/api/client/policy",
            Some(&cred),
            &[("if-none-match", "\"1\"")],
            None,
        )
        .await
        .expect(200);
    assert_eq!(v["revision"], 2);
    assert_eq!(v["policy"]["mode"], "customized");
    s.stop().await;
}

// Check-in records versions, reported and peer IPs and the attempts; the registry shows states.
#[tokio::test]
async fn checkin_and_registry() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (good_id, good) = s.enroll_client("pc-good", None).await;
    let (bad_id, bad) = s.enroll_client("pc-bad", None).await;
    let (never_id, _) = s.enroll_client("pc-never", None).await;
    let report = json!({
        "ip": "10.0.0.7",
        "installed": {"components": "2026.11.25.1", "programs": "1.4.0"},
        "last_update": {"outcome": "ok", "attempts": [
            {"category": "components", "step": 1, "source": "agent:10.0.0.5:8443", "outcome": "failed", "reason": "connect: refused", "bytes": 0, "millis": 5000},
            {"category": "components", "step": 2, "source": "server", "outcome": "ok"}
        ]}
    });
    let v = s
        .call(
            Method::POST,
            "/api/client/checkin",
            Some(&good),
            &[],
            Some(&report),
        )
        .await
        .expect(200);
    assert_eq!(v["policy_revision"], 1);
    let failed = json!({"ip": "10.0.3.9", "last_update": {"outcome": "quit", "attempts": [
        {"step": 1, "source": "url:http://m.example/", "outcome": "failed", "reason": "HTTP 404"}]}});
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&bad),
        &[],
        Some(&failed),
    )
    .await
    .expect(200);
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&bad),
        &[],
        Some(&json!({"ip": "10.0.3"})),
    )
    .await
    .expect_error(400, "request.ip", "ip");

    let list = s.admin(Method::GET, "/api/clients", None).await.expect(200);
    let by_id = |id: &str| -> Value {
        list["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    };
    let g = by_id(&good_id);
    assert_eq!(g["state"], "ok");
    assert_eq!(g["reported_ip"], "10.0.0.7");
    assert_eq!(g["peer_ip"], "127.0.0.1");
    assert_eq!(g["installed"]["components"], "2026.11.25.1");
    assert_eq!(g["last_seen"], s.clock.unix_secs());
    assert_eq!(by_id(&bad_id)["state"], "failed");
    assert_eq!(by_id(&never_id)["state"], "never");
    let detail = s
        .admin(Method::GET, &format!("/api/clients/{good_id}"), None)
        .await
        .expect(200);
    let parse = |v: &Value| serde_json::from_value::<UpdateReport>(v.clone()).unwrap();
    assert_eq!(parse(&detail["last_update"]), parse(&report["last_update"]));
    s.admin(Method::GET, "/api/clients/nope", None)
        .await
        .expect_error(404, "not_found", "id");

    // Only never-seen clients are stale now; after two hours without check-in, all are.
    let stale = s
        .admin(Method::GET, "/api/clients?stale", None)
        .await
        .expect(200);
    let names: Vec<&str> = stale["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["pc-never"]);
    s.clock.advance(2 * 3600);
    let stale = s
        .admin(Method::GET, "/api/clients?stale", None)
        .await
        .expect(200);
    assert_eq!(stale["clients"].as_array().unwrap().len(), 3);
    let recent = s
        .admin(Method::GET, "/api/clients?stale=86400", None)
        .await
        .expect(200);
    assert_eq!(recent["clients"].as_array().unwrap().len(), 1);
    assert_eq!(by_id(&good_id)["state"], "ok");
    let now = s.admin(Method::GET, "/api/clients", None).await.expect(200);
    assert!(now["clients"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["state"] != "ok"));
    s.admin(Method::GET, "/api/clients?stale=soon", None)
        .await
        .expect_error(400, "request.stale", "stale");
    s.stop().await;
}

// Enrollment refuses an empty name and a malformed agent address, naming the field.
#[tokio::test]
async fn enroll_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.call(
        Method::POST,
        "/api/client/enroll",
        Some(&s.enroll),
        &[],
        Some(&json!({"name": "  "})),
    )
    .await
    .expect_error(400, "request.name", "name");
    let msg = s
        .call(
            Method::POST,
            "/api/client/enroll",
            Some(&s.enroll),
            &[],
            Some(&json!({"name": "relay", "agent_address": "10.0.0.5"})),
        )
        .await
        .expect_error(422, "policy.invalid", "agent_address");
    assert!(msg.contains("10.0.0.5"), "{msg}");
    let list = s.admin(Method::GET, "/api/clients", None).await.expect(200);
    assert_eq!(list["clients"], json!([]));
    s.stop().await;
}

// A restart on the same data directory keeps the policy, every setting, tokens and clients.
#[tokio::test]
async fn restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    assert!(s.first_start_seen);
    s.admin(
        Method::PATCH,
        "/api/policy/settings",
        Some(&json!({"mode": "customized", "activeupdate_url": "https://up.example/",
                     "activeupdate_fallback": "all", "fallback": {"domain_settings_from_server": false},
                     "privileges": {"download_from_activeupdate": true}})),
    )
    .await
    .expect(200);
    s.admin(
        Method::PUT,
        "/api/policy/domains/eng",
        Some(&json!({"download_from_activeupdate": false})),
    )
    .await
    .expect(200);
    s.admin(
        Method::POST,
        "/api/agents",
        Some(&json!({"address": "10.0.0.5:8443"})),
    )
    .await
    .expect(201);
    s.admin(
        Method::POST,
        "/api/sources",
        Some(&json!({"range": "10.0.0.0/24", "agent": "10.0.0.5:8443"})),
    )
    .await
    .expect(201);
    s.admin(
        Method::POST,
        "/api/sources",
        Some(&json!({"range": "10.0.0.0/16", "url": "http://m.example/"})),
    )
    .await
    .expect(201);
    let (id, cred) = s.enroll_client("pc-1", Some("10.0.0.5:8443")).await;
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&cred),
        &[],
        Some(&json!({"ip": "10.0.0.5", "installed": {"components": "7"}})),
    )
    .await
    .expect(200);
    let policy = s.policy().await;
    let clients = s.admin(Method::GET, "/api/clients", None).await.expect(200);
    let prev = s.stop().await;

    let s = start_with(dir.path(), None, Some(prev)).await;
    assert!(
        !s.first_start_seen,
        "the second start must not create new tokens"
    );
    assert_eq!(s.policy().await, policy);
    assert_eq!(
        s.admin(Method::GET, "/api/clients", None).await.expect(200),
        clients
    );
    let me = s
        .call(Method::GET, "/api/client/status", Some(&cred), &[], None)
        .await
        .expect(200);
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["is_agent"], true);
    s.enroll_client("pc-2", None).await;
    s.stop().await;
}

// An update agent's check-in carries what its relay served; the server keeps the latest
// report, shows it on the agent (`/api/agents`) and the client record, keeps it through
// check-ins without one, and refuses a malformed one without changing what is stored.
#[tokio::test]
async fn relay_report_is_stored_and_shown_on_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.admin(
        Method::POST,
        "/api/agents",
        Some(&json!({"address": "10.0.0.5:8443"})),
    )
    .await
    .expect(201);
    let (id, cred) = s.enroll_client("relay-1", Some("10.0.0.5:8443")).await;
    let checkin = |body: Value| {
        let cred = cred.clone();
        let s = &s;
        async move {
            s.call(
                Method::POST,
                "/api/client/checkin",
                Some(&cred),
                &[],
                Some(&body),
            )
            .await
        }
    };
    let agents = s.admin(Method::GET, "/api/agents", None).await.expect(200);
    assert_eq!(agents["agents"][0]["relay"], Value::Null);

    let report = json!({
        "since": 1_764_000_000, "requests": 12, "bytes_served": 81_920,
        "upstream_fetches": 3, "upstream_bytes": 20_480, "refused": 0, "client_count": 2,
        "clients": [
            {"ip": "10.0.1.7", "requests": 8, "bytes": 61_440},
            {"ip": "10.0.1.9", "requests": 4, "bytes": 20_480}
        ]
    });
    checkin(json!({"ip": "10.0.0.5", "relay": report}))
        .await
        .expect(200);
    let agents = s.admin(Method::GET, "/api/agents", None).await.expect(200);
    assert_eq!(agents["agents"][0]["relay"], report);
    let me = s
        .admin(Method::GET, &format!("/api/clients/{id}"), None)
        .await
        .expect(200);
    assert_eq!(me["relay"], report);

    // A check-in without a relay report (after an update cycle that failed to reach the
    // relay's counters, say) keeps the last one.
    checkin(json!({"ip": "10.0.0.5"})).await.expect(200);
    // Malformed reports are refused, naming the field; the stored one is unchanged.
    let mut bad_ip = report.clone();
    bad_ip["clients"][1]["ip"] = json!("10.0.1");
    checkin(json!({"relay": bad_ip})).await.expect_error(
        400,
        "request.relay.ip",
        "relay.clients.ip",
    );
    let mut too_many = report.clone();
    too_many["clients"] = Value::Array(
        (0..=cascade_core::report::MAX_REPORTED_CLIENTS)
            .map(|i| json!({"ip": format!("10.1.{}.{}", i / 256, i % 256), "requests": 1, "bytes": 1}))
            .collect(),
    );
    checkin(json!({"relay": too_many})).await.expect_error(
        400,
        "request.relay.clients",
        "relay.clients",
    );
    let agents = s.admin(Method::GET, "/api/agents", None).await.expect(200);
    assert_eq!(agents["agents"][0]["relay"], report);
}
