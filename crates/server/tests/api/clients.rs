//! Enrollment, policy fetch, check-in and the admin's client registry; restart persistence.

use cascade_client::proto::{
    ActiveUpdateFallback, AgentDoc, AgentsResponse, Attempt, Category, CheckIn, ClientView,
    ClientsResponse, EnrollRequest, FallbackPatch, Mode, Outcome, PrivilegeOverrides, RelayReport,
    ServedClient, SettingsPatch, SourceBody, UpdateReport,
};
use reqwest::Method;
use serde_json::Value;

use crate::harness::{customized, json, start, start_with};

fn agent(address: &str) -> AgentDoc {
    AgentDoc {
        address: address.to_owned(),
        capabilities: Category::ALL.to_vec(),
    }
}

fn source(range: &str, agent: Option<&str>, url: Option<&str>) -> SourceBody {
    SourceBody {
        range: range.to_owned(),
        agent: agent.map(str::to_owned),
        url: url.map(str::to_owned),
    }
}

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
    s.admin(Method::PATCH, "/api/policy/settings", json(&customized()))
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
    let report = CheckIn {
        agent_version: None,
        ip: Some("10.0.0.7".into()),
        installed: [
            (Category::Components, "2026.11.25.1".to_owned()),
            (Category::Programs, "1.4.0".to_owned()),
        ]
        .into(),
        last_update: Some(UpdateReport {
            finished_at: None,
            outcome: Outcome::Ok,
            attempts: vec![
                Attempt {
                    category: Some(Category::Components),
                    step: 1,
                    source: "agent:10.0.0.5:8443".into(),
                    outcome: Outcome::Failed,
                    reason: Some("connect: refused".into()),
                    bytes: 0,
                    millis: 5000,
                },
                Attempt {
                    category: Some(Category::Components),
                    step: 2,
                    source: "server".into(),
                    outcome: Outcome::Ok,
                    reason: None,
                    bytes: 0,
                    millis: 0,
                },
            ],
        }),
        relay: None,
    };
    let v = s
        .call(
            Method::POST,
            "/api/client/checkin",
            Some(&good),
            &[],
            json(&report),
        )
        .await
        .expect(200);
    assert_eq!(v["policy_revision"], 1);
    let failed = CheckIn {
        agent_version: None,
        ip: Some("10.0.3.9".into()),
        last_update: Some(UpdateReport {
            finished_at: None,
            outcome: Outcome::Quit,
            attempts: vec![Attempt {
                category: None,
                step: 1,
                source: "url:http://m.example/".into(),
                outcome: Outcome::Failed,
                reason: Some("HTTP 404".into()),
                bytes: 0,
                millis: 0,
            }],
        }),
        ..CheckIn::default()
    };
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&bad),
        &[],
        json(&failed),
    )
    .await
    .expect(200);
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&bad),
        &[],
        json(&CheckIn {
            agent_version: None,
            ip: Some("10.0.3".into()),
            ..CheckIn::default()
        }),
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
    let detail: ClientView = s
        .admin(Method::GET, &format!("/api/clients/{good_id}"), None)
        .await
        .typed(200);
    assert_eq!(detail.last_update, report.last_update);
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
        json(&EnrollRequest {
            name: "  ".into(),
            ..EnrollRequest::default()
        }),
    )
    .await
    .expect_error(400, "request.name", "name");
    let msg = s
        .call(
            Method::POST,
            "/api/client/enroll",
            Some(&s.enroll),
            &[],
            json(&EnrollRequest {
                name: "relay".into(),
                domain: None,
                agent_address: Some("10.0.0.5".into()),
            }),
        )
        .await
        .expect_error(422, "policy.invalid", "agent_address");
    assert!(msg.contains("10.0.0.5"), "{msg}");
    let list: ClientsResponse = s.admin(Method::GET, "/api/clients", None).await.typed(200);
    assert_eq!(list.clients, vec![]);
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
        json(&SettingsPatch {
            mode: Some(Mode::Customized),
            activeupdate_url: Some(Some("https://up.example/".into())),
            activeupdate_fallback: Some(ActiveUpdateFallback::All),
            fallback: Some(FallbackPatch {
                domain_settings_from_server: Some(false),
                ..FallbackPatch::default()
            }),
            privileges: Some(PrivilegeOverrides {
                download_from_activeupdate: Some(true),
            }),
            agents_source: None,
        }),
    )
    .await
    .expect(200);
    s.admin(
        Method::PUT,
        "/api/policy/domains/eng",
        json(&PrivilegeOverrides {
            download_from_activeupdate: Some(false),
        }),
    )
    .await
    .expect(200);
    s.admin(Method::POST, "/api/agents", json(&agent("10.0.0.5:8443")))
        .await
        .expect(201);
    s.admin(
        Method::POST,
        "/api/sources",
        json(&source("10.0.0.0/24", Some("10.0.0.5:8443"), None)),
    )
    .await
    .expect(201);
    s.admin(
        Method::POST,
        "/api/sources",
        json(&source("10.0.0.0/16", None, Some("http://m.example/"))),
    )
    .await
    .expect(201);
    let (id, cred) = s.enroll_client("pc-1", Some("10.0.0.5:8443")).await;
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&cred),
        &[],
        json(&CheckIn {
            agent_version: None,
            ip: Some("10.0.0.5".into()),
            installed: [(Category::Components, "7".to_owned())].into(),
            ..CheckIn::default()
        }),
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
    s.admin(Method::POST, "/api/agents", json(&agent("10.0.0.5:8443")))
        .await
        .expect(201);
    let (id, cred) = s.enroll_client("relay-1", Some("10.0.0.5:8443")).await;
    let checkin = |body: CheckIn| {
        let cred = cred.clone();
        let s = &s;
        async move {
            s.call(
                Method::POST,
                "/api/client/checkin",
                Some(&cred),
                &[],
                json(&body),
            )
            .await
        }
    };
    let agents = |v: Value| serde_json::from_value::<AgentsResponse>(v).unwrap();
    let list = agents(s.admin(Method::GET, "/api/agents", None).await.expect(200));
    assert_eq!(list.agents[0].relay, None);

    let served = |ip: &str, requests: u64, bytes: u64| ServedClient {
        ip: ip.to_owned(),
        requests,
        bytes,
    };
    let report = RelayReport {
        since: Some(1_764_000_000),
        requests: 12,
        bytes_served: 81_920,
        upstream_fetches: 3,
        upstream_bytes: 20_480,
        refused: 0,
        client_count: 2,
        clients: vec![served("10.0.1.7", 8, 61_440), served("10.0.1.9", 4, 20_480)],
    };
    let with_relay = |ip: Option<&str>, relay: RelayReport| CheckIn {
        agent_version: None,
        ip: ip.map(str::to_owned),
        relay: Some(relay),
        ..CheckIn::default()
    };
    checkin(with_relay(Some("10.0.0.5"), report.clone()))
        .await
        .expect(200);
    let list = agents(s.admin(Method::GET, "/api/agents", None).await.expect(200));
    assert_eq!(list.agents[0].relay.as_ref(), Some(&report));
    let me: ClientView = s
        .admin(Method::GET, &format!("/api/clients/{id}"), None)
        .await
        .typed(200);
    assert_eq!(me.relay.as_ref(), Some(&report));

    // A check-in without a relay report (after an update cycle that failed to reach the
    // relay's counters, say) keeps the last one.
    checkin(CheckIn {
        agent_version: None,
        ip: Some("10.0.0.5".into()),
        ..CheckIn::default()
    })
    .await
    .expect(200);
    // Malformed reports are refused, naming the field; the stored one is unchanged.
    let mut bad_ip = report.clone();
    bad_ip.clients[1].ip = "10.0.1".into();
    checkin(with_relay(None, bad_ip)).await.expect_error(
        400,
        "request.relay.ip",
        "relay.clients.ip",
    );
    let mut too_many = report.clone();
    too_many.clients = (0..=cascade_core::report::MAX_REPORTED_CLIENTS)
        .map(|i| served(&format!("10.1.{}.{}", i / 256, i % 256), 1, 1))
        .collect();
    checkin(with_relay(None, too_many)).await.expect_error(
        400,
        "request.relay.clients",
        "relay.clients",
    );
    let list = agents(s.admin(Method::GET, "/api/agents", None).await.expect(200));
    assert_eq!(list.agents[0].relay, Some(report));
}
