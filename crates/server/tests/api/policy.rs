//! The whole policy, its settings, domains and agents over the admin API; revisions.

use cascade_client::proto::{
    ActiveUpdateFallback, AgentDoc, AgentSource, AgentsResponse, Category, DeleteSources,
    FallbackPatch, Mode, PrivilegeOverrides, SettingsPatch, SourceBody,
};
use cascade_core::{Policy, PolicyDoc};
use reqwest::Method;
use serde_json::Value;

use crate::harness::{customized, json, raw, start};

const POLICY: &str = r#"
mode = "customized"
activeupdate_url = "https://updates.example.net/repo"
activeupdate_fallback = "all"
[fallback]
components_from_server = false
domain_settings_from_server = true
programs_from_server = false
[privileges]
download_from_activeupdate = true
[domains.eng.privileges]
download_from_activeupdate = false
[[agent]]
address = "10.0.0.5:8443"
capabilities = ["components"]
[[sources]]
range = "10.0.0.0/24"
agent = "10.0.0.5:8443"
[[sources]]
range = "10.0.0.0-10.0.255.255"
url = "http://mirror.branch.example/cascade"
"#;

fn doc(toml: &str) -> PolicyDoc {
    PolicyDoc::from_policy(&Policy::from_toml(toml).unwrap())
}

fn mirror_entry() -> SourceBody {
    SourceBody {
        range: "10.0.0.0/8".into(),
        agent: None,
        url: Some("http://m.example/".into()),
    }
}

// A fresh server holds the default policy at revision 1; PUT of a whole policy round-trips.
#[tokio::test]
async fn whole_policy_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let first = s.policy().await;
    assert_eq!(first["revision"], 1);
    let default = serde_json::to_value(PolicyDoc::from_policy(&Policy::default())).unwrap();
    assert_eq!(first["policy"], default);

    let doc = doc(POLICY);
    let put = s.admin(Method::PUT, "/api/policy", json(&doc)).await;
    assert_eq!(put.headers["etag"], "\"2\"");
    let put = put.expect(200);
    assert_eq!(put["revision"], 2);
    let got = s.policy().await;
    assert_eq!(got["policy"], serde_json::to_value(&doc).unwrap());
    let back: PolicyDoc = serde_json::from_value(got["policy"].clone()).unwrap();
    assert_eq!(
        back.into_policy().unwrap(),
        Policy::from_toml(POLICY).unwrap()
    );

    // Writing the same policy again changes nothing, not even the revision.
    let again = s
        .admin(Method::PUT, "/api/policy", json(&doc))
        .await
        .expect(200);
    assert_eq!(again["revision"], 2);
    s.stop().await;
}

// A bad policy document is refused with the field and value named, and nothing changes.
#[tokio::test]
async fn bad_whole_policy_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let mut bad = doc(POLICY);
    bad.sources[1].range = "10.0.9.0-10.0.1.0".into();
    let msg = s
        .admin(Method::PUT, "/api/policy", json(&bad))
        .await
        .expect_error(422, "range.reversed", "sources[1].range");
    assert!(msg.contains("10.0.9.0"), "{msg}");
    let mut bad = doc(POLICY);
    bad.sources[0].agent = Some("10.0.0.99:8443".into());
    s.admin(Method::PUT, "/api/policy", json(&bad))
        .await
        .expect_error(422, "policy.unknown_agent", "sources[0].agent");
    let unknown_key = r#"{"mode": "standard", "colour": "blue"}"#;
    s.admin(Method::PUT, "/api/policy", raw(unknown_key))
        .await
        .expect_error(400, "request.json", "body");
    assert_eq!(s.revision().await, 1);
    s.stop().await;
}

// PATCH settings changes exactly the named settings; null clears the upstream URL.
#[tokio::test]
async fn settings_patch() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let patch = SettingsPatch {
        mode: Some(Mode::Customized),
        activeupdate_url: Some(Some("https://up.example/repo".into())),
        activeupdate_fallback: Some(ActiveUpdateFallback::Never),
        fallback: Some(FallbackPatch {
            programs_from_server: Some(false),
            ..FallbackPatch::default()
        }),
        privileges: Some(PrivilegeOverrides {
            download_from_activeupdate: Some(true),
        }),
        agents_source: Some(AgentSource::Customized),
    };
    let v = s
        .admin(Method::PATCH, "/api/policy/settings", json(&patch))
        .await
        .expect(200);
    assert_eq!(v["revision"], 2);
    let got = s
        .admin(Method::GET, "/api/policy/settings", None)
        .await
        .expect(200);
    assert_eq!(got["mode"], "customized");
    assert_eq!(got["activeupdate_url"], "https://up.example/repo");
    assert_eq!(got["activeupdate_fallback"], "never");
    assert_eq!(got["fallback"]["programs_from_server"], false);
    assert_eq!(got["fallback"]["components_from_server"], true);
    assert_eq!(got["privileges"]["download_from_activeupdate"], true);
    assert_eq!(got["agents_source"], "customized");

    let clear = SettingsPatch {
        activeupdate_url: Some(None),
        ..SettingsPatch::default()
    };
    let v = s
        .admin(Method::PATCH, "/api/policy/settings", json(&clear))
        .await
        .expect(200);
    assert_eq!(v["activeupdate_url"], Value::Null);
    assert_eq!(v["mode"], "customized");
    assert_eq!(v["revision"], 3);
    s.stop().await;
}

// A bad upstream URL or an unknown mode is refused naming the field and value; nothing changes.
#[tokio::test]
async fn settings_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let msg = s
        .admin(
            Method::PATCH,
            "/api/policy/settings",
            json(&SettingsPatch {
                mode: Some(Mode::Customized),
                activeupdate_url: Some(Some("ftp://up.example/repo".into())),
                ..SettingsPatch::default()
            }),
        )
        .await
        .expect_error(422, "policy.invalid", "activeupdate_url");
    assert!(msg.contains("ftp://up.example/repo"), "{msg}");
    s.admin(
        Method::PATCH,
        "/api/policy/settings",
        raw(r#"{"mode": "sometimes"}"#),
    )
    .await
    .expect_error(400, "request.json", "body");
    let got = s
        .admin(Method::GET, "/api/policy/settings", None)
        .await
        .expect(200);
    assert_eq!(got["mode"], "standard");
    assert_eq!(got["revision"], 1);
    s.stop().await;
}

// A write naming a stale revision gets 409 and the first writer's change stands.
#[tokio::test]
async fn stale_revision_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let rev = s.revision().await;
    s.admin_at(
        rev,
        Method::PATCH,
        "/api/policy/settings",
        json(&customized()),
    )
    .await
    .expect(200);
    let body = s
        .admin_at(rev, Method::POST, "/api/sources", json(&mirror_entry()))
        .await
        .expect(409);
    assert_eq!(body["error"]["code"], "policy.stale_revision");
    assert_eq!(body["error"]["current_revision"], rev + 1);
    let p = s.policy().await;
    assert_eq!(p["revision"], rev + 1);
    assert_eq!(p["policy"]["mode"], "customized");
    assert!(p["policy"].get("sources").is_none(), "{p}");
    // The right revision goes through; a malformed If-Match is a 400.
    s.admin_at(rev + 1, Method::POST, "/api/sources", json(&mirror_entry()))
        .await
        .expect(201);
    s.call(
        Method::PATCH,
        "/api/policy/settings",
        Some(&s.admin),
        &[("if-match", "yesterday")],
        json(&SettingsPatch::default()),
    )
    .await
    .expect_error(400, "request.if_match", "If-Match");
    s.stop().await;
}

// Domains: set overrides, see effective privileges, delete, and deleting an unknown one fails.
#[tokio::test]
async fn domain_privileges() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.admin(
        Method::PUT,
        "/api/policy/domains/eng",
        json(&PrivilegeOverrides {
            download_from_activeupdate: Some(true),
        }),
    )
    .await
    .expect(200);
    s.admin(
        Method::PUT,
        "/api/policy/domains/ops",
        json(&PrivilegeOverrides::default()),
    )
    .await
    .expect(200);
    let v = s
        .admin(Method::GET, "/api/policy/domains", None)
        .await
        .expect(200);
    assert_eq!(v["privileges"]["download_from_activeupdate"], false);
    assert_eq!(
        v["domains"]["eng"]["effective"]["download_from_activeupdate"],
        true
    );
    assert_eq!(
        v["domains"]["ops"]["effective"]["download_from_activeupdate"],
        false
    );
    s.admin(Method::DELETE, "/api/policy/domains/eng", None)
        .await
        .expect(200);
    s.admin(Method::DELETE, "/api/policy/domains/eng", None)
        .await
        .expect_error(422, "domain.unknown", "domain");
    s.admin(
        Method::PUT,
        "/api/policy/domains/%20eng",
        json(&PrivilegeOverrides::default()),
    )
    .await
    .expect_error(422, "policy.invalid", "domains");
    let v = s
        .admin(Method::GET, "/api/policy/domains", None)
        .await
        .expect(200);
    assert_eq!(v["domains"].as_object().unwrap().len(), 1);
    s.stop().await;
}

// Agents: add, list, refuse duplicates and bad addresses, refuse removal while in use.
#[tokio::test]
async fn agents_add_list_remove() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let a = AgentDoc {
        address: "10.0.0.5:8443".into(),
        capabilities: vec![Category::Components, Category::Programs],
    };
    s.admin(Method::POST, "/api/agents", json(&a))
        .await
        .expect(201);
    s.admin(Method::POST, "/api/agents", json(&a))
        .await
        .expect_error(422, "policy.duplicate", "address");
    let msg = s
        .admin(
            Method::POST,
            "/api/agents",
            json(&AgentDoc {
                address: "10.0.0.5".into(),
                capabilities: Category::ALL.to_vec(),
            }),
        )
        .await
        .expect_error(422, "policy.invalid", "address");
    assert!(msg.contains("10.0.0.5"), "{msg}");
    s.admin(
        Method::POST,
        "/api/sources",
        json(&SourceBody {
            range: "10.0.0.0/24".into(),
            agent: Some("10.0.0.5:8443".into()),
            url: None,
        }),
    )
    .await
    .expect(201);
    let v: AgentsResponse = s.admin(Method::GET, "/api/agents", None).await.typed(200);
    assert_eq!(v.agents[0].address, "10.0.0.5:8443");
    assert_eq!(
        v.agents[0].capabilities,
        vec![Category::Components, Category::Programs]
    );
    s.admin(Method::DELETE, "/api/agents/10.0.0.5:8443", None)
        .await
        .expect_error(422, "policy.agent_in_use", "agent");
    s.admin(
        Method::POST,
        "/api/sources/delete",
        json(&DeleteSources { ids: vec![1] }),
    )
    .await
    .expect(200);
    s.admin(Method::DELETE, "/api/agents/10.0.0.5:8443", None)
        .await
        .expect(200);
    s.admin(Method::DELETE, "/api/agents/10.0.0.5:8443", None)
        .await
        .expect_error(422, "agent.unknown", "agent");
    let v: AgentsResponse = s.admin(Method::GET, "/api/agents", None).await.typed(200);
    assert_eq!(v.agents, vec![]);
    s.stop().await;
}
