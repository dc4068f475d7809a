//! The customized source list over the admin API, and the what-if resolution.

use std::net::IpAddr;

use cascade_client::proto::{
    AgentDoc, DeleteSources, Direction, FallbackPatch, Mode, MoveSource, SettingsPatch, SourceBody,
};
use cascade_core::{resolve, Category, PolicyDoc};
use reqwest::Method;
use serde_json::Value;

use crate::harness::{json, start, TestServer};

fn entry(range: &str, agent: Option<&str>, url: Option<&str>) -> SourceBody {
    SourceBody {
        range: range.to_owned(),
        agent: agent.map(str::to_owned),
        url: url.map(str::to_owned),
    }
}

fn move_to(direction: Direction) -> Option<crate::harness::Body> {
    json(&MoveSource { direction })
}

fn ids(v: &Value) -> Vec<u64> {
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect()
}

async fn add(s: &TestServer, body: SourceBody) -> Value {
    s.admin(Method::POST, "/api/sources", json(&body))
        .await
        .expect(201)
}

// Add appends with fresh ids, edit keeps the place, move swaps one place, delete removes a set.
#[tokio::test]
async fn list_operations_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let a = add(&s, entry("10.0.0.0/24", None, Some("http://a.example/"))).await;
    assert_eq!(a["id"], 1);
    add(&s, entry("10.0.1.0/24", None, Some("http://b.example/"))).await;
    let c = add(&s, entry("10.0.2.1", None, Some("http://c.example/"))).await;
    assert_eq!(ids(&c), vec![1, 2, 3]);

    let e = s
        .admin(
            Method::PUT,
            "/api/sources/2",
            json(&entry(
                "192.168.0.0-192.168.0.255",
                None,
                Some("https://b2.example/x"),
            )),
        )
        .await
        .expect(200);
    assert_eq!(ids(&e), vec![1, 2, 3]);
    assert_eq!(e["sources"][1]["url"], "https://b2.example/x");
    assert_eq!(e["sources"][1]["range"], "192.168.0.0-192.168.0.255");

    let m = s
        .admin(Method::POST, "/api/sources/3/move", move_to(Direction::Up))
        .await
        .expect(200);
    assert_eq!(ids(&m), vec![1, 3, 2]);
    let m = s
        .admin(
            Method::POST,
            "/api/sources/1/move",
            move_to(Direction::Down),
        )
        .await
        .expect(200);
    assert_eq!(ids(&m), vec![3, 1, 2]);

    let d = s
        .admin(
            Method::POST,
            "/api/sources/delete",
            json(&DeleteSources { ids: vec![3, 2] }),
        )
        .await
        .expect(200);
    assert_eq!(ids(&d), vec![1]);
    let l = s.admin(Method::GET, "/api/sources", None).await.expect(200);
    assert_eq!(l["sources"], d["sources"]);
    assert_eq!(l["revision"], 8);
    s.stop().await;
}

// Bad ranges, URLs, sources and ids are refused naming the field and value; nothing changes.
#[tokio::test]
async fn bad_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    add(&s, entry("10.0.0.0/24", None, Some("http://a.example/"))).await;
    let before = s.admin(Method::GET, "/api/sources", None).await.expect(200);

    let msg = s
        .admin(
            Method::POST,
            "/api/sources",
            json(&entry("10.0.0.9-10.0.0.1", None, Some("http://a.example/"))),
        )
        .await
        .expect_error(422, "range.reversed", "range");
    assert!(msg.contains("10.0.0.9-10.0.0.1"), "{msg}");
    s.admin(
        Method::POST,
        "/api/sources",
        json(&entry("10.0.0.1-fd00::1", None, Some("http://a.example/"))),
    )
    .await
    .expect_error(422, "range.mixed_families", "range");
    let msg = s
        .admin(
            Method::POST,
            "/api/sources",
            json(&entry("10.0.0.0/8", None, Some("mirror.example/repo"))),
        )
        .await
        .expect_error(422, "policy.invalid", "url");
    assert!(msg.contains("mirror.example/repo"), "{msg}");
    s.admin(
        Method::POST,
        "/api/sources",
        json(&entry("10.0.0.0/8", Some("10.0.0.5:1"), Some("http://a/"))),
    )
    .await
    .expect_error(422, "policy.invalid", "agent|url");
    s.admin(
        Method::POST,
        "/api/sources",
        json(&entry("10.0.0.0/8", Some("10.0.0.5:8443"), None)),
    )
    .await
    .expect_error(422, "policy.unknown_agent", "sources[1].agent");
    s.admin(
        Method::PUT,
        "/api/sources/abc",
        json(&entry("10.0.0.0/8", None, Some("http://a/"))),
    )
    .await
    .expect_error(400, "request.id", "id");
    s.admin(
        Method::PUT,
        "/api/sources/42",
        json(&entry("10.0.0.0/8", None, Some("http://a/"))),
    )
    .await
    .expect_error(422, "list.unknown_id", "sources");
    s.admin(Method::POST, "/api/sources/1/move", move_to(Direction::Up))
        .await
        .expect_error(422, "list.cannot_move", "sources");
    s.admin(
        Method::POST,
        "/api/sources/delete",
        json(&DeleteSources { ids: vec![1, 42] }),
    )
    .await
    .expect_error(422, "list.unknown_id", "sources");
    s.admin(
        Method::POST,
        "/api/sources/delete",
        json(&DeleteSources { ids: vec![] }),
    )
    .await
    .expect_error(422, "list.nothing_selected", "sources");
    let after = s.admin(Method::GET, "/api/sources", None).await.expect(200);
    assert_eq!(before, after);
    s.stop().await;
}

// The what-if answers exactly what core::resolve computes for the stored policy.
#[tokio::test]
async fn resolve_matches_core() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.admin(
        Method::PATCH,
        "/api/policy/settings",
        json(&SettingsPatch {
            mode: Some(Mode::Customized),
            activeupdate_url: Some(Some("https://up.example/repo".into())),
            fallback: Some(FallbackPatch {
                components_from_server: Some(false),
                domain_settings_from_server: None,
                programs_from_server: Some(false),
            }),
            ..SettingsPatch::default()
        }),
    )
    .await
    .expect(200);
    s.admin(
        Method::POST,
        "/api/agents",
        json(&AgentDoc {
            address: "10.0.0.5:8443".into(),
            capabilities: vec![Category::Components],
        }),
    )
    .await
    .expect(201);
    add(&s, entry("10.0.0.0/24", Some("10.0.0.5:8443"), None)).await;
    add(
        &s,
        entry("10.0.0.0-10.0.255.255", None, Some("http://m.example/c")),
    )
    .await;

    let stored = s.policy().await;
    let policy = serde_json::from_value::<PolicyDoc>(stored["policy"].clone())
        .unwrap()
        .into_policy()
        .unwrap();
    for ip in ["10.0.0.7", "10.0.3.1", "192.168.1.1"] {
        for cat in Category::ALL {
            let v = s
                .admin(
                    Method::GET,
                    &format!("/api/resolve?ip={ip}&category={cat}"),
                    None,
                )
                .await
                .expect(200);
            let want = resolve(&policy, ip.parse::<IpAddr>().unwrap(), None, cat);
            assert_eq!(
                v["plans"][0]["steps"],
                serde_json::to_value(&want.steps).unwrap()
            );
            assert_eq!(
                v["plans"][0]["skipped"],
                serde_json::to_value(&want.skipped).unwrap()
            );
        }
    }
    let all = s
        .admin(Method::GET, "/api/resolve?ip=10.0.0.7", None)
        .await
        .expect(200);
    assert_eq!(all["plans"].as_array().unwrap().len(), 3);
    let agent = s
        .admin(
            Method::GET,
            "/api/resolve?agent=10.0.0.5:8443&category=components",
            None,
        )
        .await
        .expect(200);
    assert_eq!(agent["plans"][0]["steps"][0]["source"], "server");

    s.admin(
        Method::GET,
        "/api/resolve?ip=10.0.0.300&category=components",
        None,
    )
    .await
    .expect_error(400, "request.ip", "ip");
    s.admin(
        Method::GET,
        "/api/resolve?ip=10.0.0.1&category=patterns",
        None,
    )
    .await
    .expect_error(400, "request.category", "category");
    s.admin(Method::GET, "/api/resolve?agent=10.9.9.9:1", None)
        .await
        .expect_error(422, "agent.unknown", "agent");
    s.stop().await;
}
