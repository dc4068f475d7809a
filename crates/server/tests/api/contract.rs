//! The API's contract: one table of every operation (method, documented path, who may call
//! it, request body type, success status and body type), checked three ways. The table and
//! `/api/openapi.json` list the same operations, so a route registered without a table row,
//! or a row whose route is gone, fails; each operation's documented `requestBody` and
//! success schemas are the `cascade-proto` types the table names, its errors the error
//! schema, its path parameters and security declared; and each row is driven against a real
//! server with a body of its request type, whose answer must parse as the named response
//! type and serialize back to exactly the JSON received (no field the type lacks, none it
//! adds).

use std::collections::BTreeSet;

use cascade_proto as p;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::harness::{json, start, Sse, TestServer};

/// Which credential an operation takes (its documented security scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anyone,
    Admin,
    Enroll,
    Client,
}

impl Who {
    fn scheme(self) -> Option<&'static str> {
        match self {
            Who::Anyone => None,
            Who::Admin => Some("admin"),
            Who::Enroll => Some("enrollment"),
            Who::Client => Some("client"),
        }
    }
}

/// What the success answer is.
enum Answer {
    /// JSON of a proto type: its schema name and an exact round trip through it.
    Json(String, fn(&Value) -> Result<Value, String>),
    /// Not JSON of a named type (text, the document itself, repository files): the
    /// documented schema's `type`.
    Plain(&'static str),
}

struct Row {
    method: &'static str,
    /// As documented (`{name}` placeholders).
    path: &'static str,
    who: Who,
    /// The request body type's schema name and a sample of it.
    request: Option<(String, Value)>,
    /// The documented success status and body.
    success: u16,
    answer: Answer,
    /// The path driven (`CLIENT` stands for the enrolled client's id).
    drive: &'static str,
    /// The status the drive expects (the success, unless the set-up cannot reach it).
    expect: u16,
}

fn name<T: ToSchema>() -> String {
    T::name().into_owned()
}

fn exact<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

fn answer<T: ToSchema + DeserializeOwned + Serialize>() -> Answer {
    Answer::Json(name::<T>(), exact::<T>)
}

/// The request column of an upload: the body is the file's bytes, not JSON.
const RAW: &str = "application/octet-stream";

#[allow(clippy::unnecessary_wraps)] // reads as the `request` column of the table
fn raw(sample: &str) -> Option<(String, Value)> {
    Some((RAW.to_owned(), Value::String(sample.to_owned())))
}

#[allow(clippy::unnecessary_wraps)] // reads as the `request` column of the table
fn body<T: ToSchema + Serialize>(sample: &T) -> Option<(String, Value)> {
    Some((name::<T>(), serde_json::to_value(sample).unwrap()))
}

#[allow(clippy::too_many_arguments)]
fn row(
    method: &'static str,
    path: &'static str,
    who: Who,
    request: Option<(String, Value)>,
    success: u16,
    answer: Answer,
    drive: &'static str,
    expect: u16,
) -> Row {
    Row {
        method,
        path,
        who,
        request,
        success,
        answer,
        drive,
        expect,
    }
}

/// Every operation, in the order the drive runs them.
fn table() -> Vec<Row> {
    use Who::{Admin, Anyone, Client, Enroll};
    let policy = p::PolicyDoc {
        mode: p::Mode::Customized,
        agent: vec![p::AgentDoc {
            address: "10.0.0.5:8443".into(),
            capabilities: p::Category::ALL.to_vec(),
        }],
        sources: vec![
            p::EntryDoc {
                id: None,
                range: "10.0.0.0/24".into(),
                agent: Some("10.0.0.5:8443".into()),
                url: None,
            },
            p::EntryDoc {
                id: None,
                range: "10.0.1.0/24".into(),
                agent: None,
                url: Some("https://mirror.example/repo".into()),
            },
        ],
        ..p::PolicyDoc::default()
    };
    let entry = p::SourceBody {
        range: "10.0.2.0/24".into(),
        agent: None,
        url: Some("https://other.example/repo".into()),
    };
    let checkin = p::CheckIn {
        agent_version: None,
        ip: Some("10.0.0.7".into()),
        installed: [(p::Category::Components, "1.0.0".to_owned())].into(),
        last_update: Some(p::UpdateReport {
            finished_at: Some(1_700_000_000),
            outcome: p::Outcome::Ok,
            attempts: vec![p::Attempt {
                category: Some(p::Category::Components),
                step: 1,
                source: "server".into(),
                outcome: p::Outcome::Ok,
                reason: None,
                bytes: 10,
                millis: 5,
            }],
        }),
        relay: None,
    };
    vec![
        row(
            "get",
            "/healthz",
            Anyone,
            None,
            200,
            answer::<p::Health>(),
            "/healthz",
            200,
        ),
        row(
            "get",
            "/metrics",
            Anyone,
            None,
            200,
            Answer::Plain("string"),
            "/metrics",
            200,
        ),
        row(
            "get",
            "/api/openapi.json",
            Anyone,
            None,
            200,
            Answer::Plain("object"),
            "/api/openapi.json",
            200,
        ),
        row(
            "get",
            "/api/policy",
            Admin,
            None,
            200,
            answer::<p::PolicyResponse>(),
            "/api/policy",
            200,
        ),
        row(
            "put",
            "/api/policy",
            Admin,
            body(&policy),
            200,
            answer::<p::PolicyResponse>(),
            "/api/policy",
            200,
        ),
        row(
            "get",
            "/api/policy/settings",
            Admin,
            None,
            200,
            answer::<p::Settings>(),
            "/api/policy/settings",
            200,
        ),
        row(
            "patch",
            "/api/policy/settings",
            Admin,
            body(&p::SettingsPatch {
                activeupdate_url: Some(Some("https://au.example/repo".into())),
                ..Default::default()
            }),
            200,
            answer::<p::Settings>(),
            "/api/policy/settings",
            200,
        ),
        row(
            "put",
            "/api/policy/domains/{name}",
            Admin,
            body(&p::PrivilegeOverrides {
                download_from_activeupdate: Some(true),
            }),
            200,
            answer::<p::DomainUpdated>(),
            "/api/policy/domains/eng",
            200,
        ),
        row(
            "get",
            "/api/policy/domains",
            Admin,
            None,
            200,
            answer::<p::DomainsResponse>(),
            "/api/policy/domains",
            200,
        ),
        row(
            "delete",
            "/api/policy/domains/{name}",
            Admin,
            None,
            200,
            answer::<p::DomainDeleted>(),
            "/api/policy/domains/eng",
            200,
        ),
        row(
            "put",
            "/api/policy/domain-settings/{name}",
            Admin,
            body(&p::DomainSettings {
                interval_secs: 600,
                ..p::DomainSettings::default()
            }),
            200,
            answer::<p::DomainSettingsView>(),
            "/api/policy/domain-settings/eng",
            200,
        ),
        row(
            "get",
            "/api/policy/domain-settings/{name}",
            Admin,
            None,
            200,
            answer::<p::DomainSettingsView>(),
            "/api/policy/domain-settings/eng",
            200,
        ),
        row(
            "get",
            "/api/policy/domain-settings",
            Admin,
            None,
            200,
            answer::<p::DomainSettingsList>(),
            "/api/policy/domain-settings",
            200,
        ),
        row(
            "post",
            "/api/agents",
            Admin,
            body(&p::AgentDoc {
                address: "10.0.0.6:8443".into(),
                capabilities: vec![p::Category::Programs],
            }),
            201,
            answer::<p::AgentAdded>(),
            "/api/agents",
            201,
        ),
        row(
            "get",
            "/api/agents",
            Admin,
            None,
            200,
            answer::<p::AgentsResponse>(),
            "/api/agents",
            200,
        ),
        row(
            "delete",
            "/api/agents/{address}",
            Admin,
            None,
            200,
            answer::<p::AgentRemoved>(),
            "/api/agents/10.0.0.6:8443",
            200,
        ),
        row(
            "get",
            "/api/sources",
            Admin,
            None,
            200,
            answer::<p::SourcesResponse>(),
            "/api/sources",
            200,
        ),
        row(
            "post",
            "/api/sources",
            Admin,
            body(&entry),
            201,
            answer::<p::SourcesResponse>(),
            "/api/sources",
            201,
        ),
        row(
            "put",
            "/api/sources/{id}",
            Admin,
            body(&entry),
            200,
            answer::<p::SourcesResponse>(),
            "/api/sources/3",
            200,
        ),
        row(
            "post",
            "/api/sources/{id}/move",
            Admin,
            body(&p::MoveSource {
                direction: p::Direction::Down,
            }),
            200,
            answer::<p::SourcesResponse>(),
            "/api/sources/1/move",
            200,
        ),
        row(
            "post",
            "/api/sources/delete",
            Admin,
            body(&p::DeleteSources { ids: vec![3] }),
            200,
            answer::<p::SourcesResponse>(),
            "/api/sources/delete",
            200,
        ),
        row(
            "get",
            "/api/resolve",
            Admin,
            None,
            200,
            answer::<p::ResolveResponse>(),
            "/api/resolve?ip=10.0.0.7&domain=eng",
            200,
        ),
        row(
            "post",
            "/api/client/enroll",
            Enroll,
            body(&p::EnrollRequest {
                name: "pc-1".into(),
                domain: Some("eng".into()),
                agent_address: None,
            }),
            201,
            answer::<p::Enrolled>(),
            "/api/client/enroll",
            201,
        ),
        row(
            "get",
            "/api/client/policy",
            Client,
            None,
            200,
            answer::<p::ClientPolicy>(),
            "/api/client/policy",
            200,
        ),
        row(
            "post",
            "/api/client/checkin",
            Client,
            body(&checkin),
            200,
            answer::<p::CheckInResponse>(),
            "/api/client/checkin",
            200,
        ),
        row(
            "get",
            "/api/client/status",
            Client,
            None,
            200,
            answer::<p::ClientView>(),
            "/api/client/status",
            200,
        ),
        row(
            "get",
            "/api/client/events",
            Client,
            None,
            200,
            answer::<p::StreamEvent>(),
            "/api/client/events",
            200,
        ),
        row(
            "post",
            "/api/notify",
            Admin,
            body(&p::NotifyRequest {
                categories: vec![p::Category::Components],
            }),
            200,
            answer::<p::NotifyResponse>(),
            "/api/notify",
            200,
        ),
        row(
            "get",
            "/api/clients",
            Admin,
            None,
            200,
            answer::<p::ClientsResponse>(),
            "/api/clients?stale=0",
            200,
        ),
        row(
            "get",
            "/api/fleet/health",
            Admin,
            None,
            200,
            answer::<p::FleetHealth>(),
            "/api/fleet/health",
            200,
        ),
        row(
            "get",
            "/api/fleet/compliance",
            Admin,
            None,
            200,
            answer::<p::ComplianceResponse>(),
            "/api/fleet/compliance",
            200,
        ),
        row(
            "get",
            "/api/clients/{id}",
            Admin,
            None,
            200,
            answer::<p::ClientView>(),
            "/api/clients/CLIENT",
            200,
        ),
        row(
            "get",
            "/api/enrollment-token",
            Admin,
            None,
            200,
            answer::<p::EnrollmentTokenInfo>(),
            "/api/enrollment-token",
            200,
        ),
        row(
            "post",
            "/api/enrollment-token/rotate",
            Admin,
            None,
            201,
            answer::<p::EnrollmentToken>(),
            "/api/enrollment-token/rotate",
            201,
        ),
        row(
            "get",
            "/api/repo/mirror",
            Admin,
            None,
            200,
            answer::<p::MirrorState>(),
            "/api/repo/mirror",
            200,
        ),
        // Mirroring is not configured here (the mirror tests drive it): the refusal is driven.
        row(
            "post",
            "/api/repo/mirror",
            Admin,
            None,
            200,
            answer::<p::MirrorStatus>(),
            "/api/repo/mirror",
            400,
        ),
        row(
            "get",
            "/api/audit",
            Admin,
            None,
            200,
            answer::<p::AuditResponse>(),
            "/api/audit",
            200,
        ),
        // The history holds revision 1 (the default policy): restoring it is a new revision.
        row(
            "post",
            "/api/policy/restore",
            Admin,
            body(&p::RestoreRequest { revision: 1 }),
            200,
            answer::<p::PolicyResponse>(),
            "/api/policy/restore",
            200,
        ),
        row(
            "post",
            "/api/enrollment-tokens",
            Admin,
            body(&p::NewEnrollmentToken {
                name: "batch".into(),
                expires_in_secs: Some(3600),
                max_uses: Some(10),
                agent: false,
            }),
            201,
            answer::<p::IssuedEnrollmentToken>(),
            "/api/enrollment-tokens",
            201,
        ),
        row(
            "get",
            "/api/enrollment-tokens",
            Admin,
            None,
            200,
            answer::<p::EnrollmentTokensResponse>(),
            "/api/enrollment-tokens",
            200,
        ),
        // Token ids are random: the refusal of an unknown one is driven.
        row(
            "delete",
            "/api/enrollment-tokens/{id}",
            Admin,
            None,
            200,
            answer::<p::TokenRevoked>(),
            "/api/enrollment-tokens/00ff00ff",
            404,
        ),
        // The enrolled client has no agent address: the refusal is driven.
        row(
            "post",
            "/api/clients/{id}/approve-agent",
            Admin,
            None,
            200,
            answer::<p::ClientView>(),
            "/api/clients/CLIENT/approve-agent",
            409,
        ),
        row(
            "post",
            "/api/users",
            Admin,
            body(&p::NewUser {
                name: "vera".into(),
                role: p::UserRole::Viewer,
                password: "vera-password-long".into(),
            }),
            201,
            answer::<p::UserView>(),
            "/api/users",
            201,
        ),
        row(
            "get",
            "/api/users",
            Admin,
            None,
            200,
            answer::<p::UsersResponse>(),
            "/api/users",
            200,
        ),
        row(
            "patch",
            "/api/users/{name}",
            Admin,
            body(&p::UserPatch {
                role: Some(p::UserRole::Operator),
                password: None,
            }),
            200,
            answer::<p::UserView>(),
            "/api/users/vera",
            200,
        ),
        row(
            "post",
            "/api/tokens",
            Admin,
            body(&p::NewToken {
                label: "ci".into(),
                user: Some("vera".into()),
                expires_in_secs: Some(3600),
            }),
            201,
            answer::<p::IssuedToken>(),
            "/api/tokens",
            201,
        ),
        row(
            "get",
            "/api/tokens",
            Admin,
            None,
            200,
            answer::<p::TokensResponse>(),
            "/api/tokens",
            200,
        ),
        // Token ids are random: the refusal of an unknown one is driven.
        row(
            "delete",
            "/api/tokens/{id}",
            Admin,
            None,
            200,
            answer::<p::TokenRevoked>(),
            "/api/tokens/00ff00ff",
            404,
        ),
        row(
            "delete",
            "/api/users/{name}",
            Admin,
            None,
            200,
            answer::<p::UserDeleted>(),
            "/api/users/vera",
            200,
        ),
        row(
            "delete",
            "/api/clients/{id}",
            Admin,
            None,
            200,
            answer::<p::ClientDeleted>(),
            "/api/clients/CLIENT",
            200,
        ),
        row(
            "get",
            "/api/programs",
            Admin,
            None,
            200,
            answer::<p::ProgramsResponse>(),
            "/api/programs",
            200,
        ),
        // The body (here the JSON text `"build"`) is published as the file's bytes.
        row(
            "post",
            "/api/programs/{name}/{version}",
            Admin,
            raw("build"),
            201,
            answer::<p::ProgramView>(),
            "/api/programs/cascade-agent-linux-x86_64/1?file=cascade",
            201,
        ),
        // The body (the JSON text `"build"`) is staged as content with that SHA-256.
        row(
            "put",
            "/api/delegations/{role}/files/{sha256}",
            Admin,
            raw("build"),
            201,
            answer::<p::DelegatedFile>(),
            "/api/delegations/build-team/files/e99adbe058517220ccf009fde7ac217b5e4d41a23615e5f358aabdda5b696e87",
            201,
        ),
        // The test server's site repository delegates to no role: the drive is refused.
        row(
            "post",
            "/api/delegations/{role}",
            Admin,
            body(&p::DelegatedMetadata {
                signed: json!({"_type": "targets", "version": 1}),
                signatures: Vec::new(),
            }),
            201,
            answer::<p::DelegatedPublished>(),
            "/api/delegations/build-team",
            404,
        ),
        // After the row above, which needs the role not delegated yet.
        row(
            "put",
            "/api/delegations/{role}",
            Admin,
            body(&p::NewDelegation {
                keys: vec![json!({
                    "keytype": "ed25519",
                    "scheme": "ed25519",
                    "keyval": {"public": "d7f1b7a8c0e4f5a6b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0"}
                })],
                threshold: 1,
                paths: vec!["programs/scanner/*/*".into()],
            }),
            201,
            answer::<p::Delegated>(),
            "/api/delegations/build-team",
            201,
        ),
        row(
            "post",
            "/api/rollouts",
            Admin,
            body(&p::NewRollout {
                program: "cascade-agent-linux-x86_64".into(),
                version: "2".into(),
                previous_version: None,
                rings: vec![
                    p::RingSpec {
                        name: "canary".into(),
                        clients: vec!["CLIENT".into()],
                        ip_ranges: vec!["10.0.0.0/24".into()],
                        percent: Some(1.5),
                        soak_secs: 3600,
                        max_failures: 0,
                    },
                    p::RingSpec {
                        name: "everyone".into(),
                        percent: Some(100.0),
                        ..p::RingSpec::default()
                    },
                ],
            }),
            201,
            answer::<p::RolloutView>(),
            "/api/rollouts",
            201,
        ),
        row(
            "get",
            "/api/rollouts",
            Admin,
            None,
            200,
            answer::<p::RolloutsResponse>(),
            "/api/rollouts",
            200,
        ),
        row(
            "get",
            "/api/rollouts/{id}",
            Admin,
            None,
            200,
            answer::<p::RolloutView>(),
            "/api/rollouts/1",
            200,
        ),
        row(
            "post",
            "/api/rollouts/{id}/halt",
            Admin,
            body(&p::RolloutAction {
                reason: Some("checking a report".into()),
            }),
            200,
            answer::<p::RolloutView>(),
            "/api/rollouts/1/halt",
            200,
        ),
        row(
            "post",
            "/api/rollouts/{id}/promote",
            Admin,
            body(&p::RolloutAction { reason: None }),
            200,
            answer::<p::RolloutView>(),
            "/api/rollouts/1/promote",
            200,
        ),
        row(
            "post",
            "/api/rollouts/{id}/rollback",
            Admin,
            body(&p::RolloutAction::default()),
            200,
            answer::<p::RolloutView>(),
            "/api/rollouts/1/rollback",
            200,
        ),
        row(
            "get",
            "/repo/{path}",
            Anyone,
            None,
            200,
            Answer::Plain("string"),
            "/repo/missing.json",
            404,
        ),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error_ref() -> Value {
    schema_ref(&name::<p::ErrorBody>())
}

// The table and the document list the same operations.
#[test]
fn every_operation_is_in_the_table_and_the_document() {
    let doc = cascade_server::openapi::document();
    let documented: BTreeSet<(String, String)> =
        cascade_server::openapi::operations().into_iter().collect();
    let tabled: BTreeSet<(String, String)> = table()
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(table().len(), tabled.len(), "a row is in the table twice");
    let missing: Vec<_> = documented.difference(&tabled).collect();
    assert!(
        missing.is_empty(),
        "routes without a table row: {missing:?}"
    );
    let gone: Vec<_> = tabled.difference(&documented).collect();
    assert!(gone.is_empty(), "table rows the document lacks: {gone:?}");
    assert_eq!(doc["openapi"], "3.1.0");
}

// Each operation's documented bodies, errors, parameters and security are the table's.
#[test]
fn the_document_describes_each_operation_with_its_types() {
    let doc = cascade_server::openapi::document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for r in table() {
        let what = format!("{} {}", r.method, r.path);
        let op = &doc["paths"][r.path][r.method];
        assert!(op.is_object(), "{what}: not documented");
        // Request body.
        let req = &op["requestBody"]["content"]["application/json"]["schema"];
        match &r.request {
            Some((n, _)) if n == RAW => assert!(
                op["requestBody"]["content"][RAW]["schema"].is_object(),
                "{what}: requestBody is not {RAW}"
            ),
            Some((n, _)) => assert_eq!(req, &schema_ref(n), "{what}: requestBody"),
            None => assert!(op.get("requestBody").is_none(), "{what}: has a requestBody"),
        }
        // Success body.
        let content = op["responses"][r.success.to_string()]["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no {} response with content", r.success));
        let (_, media) = content.iter().next().unwrap();
        match &r.answer {
            Answer::Json(n, _) => assert_eq!(media["schema"], schema_ref(n), "{what}: response"),
            Answer::Plain(t) => assert_eq!(media["schema"]["type"], *t, "{what}: response"),
        }
        // Errors: every documented JSON error answer is the error body.
        for (status, resp) in op["responses"].as_object().unwrap() {
            let code: u16 = status.parse().unwrap();
            // `/healthz` answers 503 with its own body; `/repo/` errors are bare statuses.
            if code >= 400 && !matches!(r.path, "/repo/{path}" | "/healthz") {
                let schema = &resp["content"]["application/json"]["schema"];
                assert_eq!(
                    schema,
                    &error_ref(),
                    "{what}: {status} is not the error body"
                );
            }
        }
        if r.who != Who::Anyone {
            for code in ["400", "401", "403", "500"] {
                assert!(
                    op["responses"].get(code).is_some(),
                    "{what}: {code} not documented"
                );
            }
        }
        // A body may be too large (413); a policy write needs `If-Match` (428).
        if r.request.is_some() {
            assert!(
                op["responses"].get("413").is_some(),
                "{what}: 413 not documented"
            );
        }
        let if_match = op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "If-Match"));
        if if_match {
            assert!(
                op["responses"].get("428").is_some(),
                "{what}: 428 not documented"
            );
        }
        // Path parameters.
        let named: BTreeSet<&str> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(named, declared, "{what}: path parameters");
        // Security.
        match r.who.scheme() {
            Some(s) => assert_eq!(op["security"], json!([{ s: [] }]), "{what}: security"),
            None => assert!(op.get("security").is_none(), "{what}: security"),
        }
    }
    // The notify body may be left out; every other body is required.
    for r in table().iter().filter(|r| r.request.is_some()) {
        let required = doc["paths"][r.path][r.method]["requestBody"]["required"].as_bool();
        let optional = r.path == "/api/notify";
        assert_eq!(
            required,
            Some(!optional),
            "{} {}: requestBody.required",
            r.method,
            r.path
        );
    }
    // Query parameters of the routes that take them.
    for (path, names) in [
        ("/api/resolve", vec!["agent", "category", "domain", "ip"]),
        ("/api/clients", vec!["stale"]),
    ] {
        let mut declared: Vec<&str> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        declared.sort_unstable();
        assert_eq!(declared, names, "{path}: query parameters");
    }
    // Every reference resolves.
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let n = &part[..part.find('"').unwrap()];
        assert!(schemas.contains_key(n), "{n} is referenced but not defined");
    }
    for s in ["admin", "enrollment", "client"] {
        assert_eq!(doc["components"]["securitySchemes"][s]["scheme"], "bearer");
    }
}

async fn drive(s: &TestServer, r: &Row, client: &mut Option<(String, String)>) {
    let path = match client {
        Some((id, _)) => r.drive.replace("CLIENT", id),
        None => r.drive.to_owned(),
    };
    let token = match r.who {
        Who::Anyone => None,
        Who::Admin => Some(s.admin.clone()),
        Who::Enroll => Some(s.enroll.clone()),
        Who::Client => client.as_ref().map(|c| c.1.clone()),
    };
    let what = format!("{} {path}", r.method);
    if r.path == "/api/client/events" {
        let mut sse = Sse::connect(&s.http, &s.url, token.as_deref().unwrap())
            .await
            .unwrap();
        let (event, data) = sse.next().await.unwrap();
        assert_eq!(event, "hello");
        let Answer::Json(_, round_trip) = &r.answer else {
            unreachable!()
        };
        assert_eq!(round_trip(&data).unwrap(), data, "{what}: hello");
        assert_eq!(exact::<p::Hello>(&data).unwrap(), data, "{what}: hello");
        return;
    }
    let method: Method = r.method.to_uppercase().parse().unwrap();
    // Admin writes are sent at the current revision (policy writes need `If-Match`).
    let tag = if r.who == Who::Admin && method != Method::GET {
        Some(format!("\"{}\"", s.revision().await))
    } else {
        None
    };
    let headers: Vec<(&str, &str)> = tag.iter().map(|t| ("if-match", t.as_str())).collect();
    let reply = s
        .call(
            method,
            &path,
            token.as_deref(),
            &headers,
            r.request.as_ref().and_then(|b| json(&b.1)),
        )
        .await;
    let got = reply.expect(r.expect);
    if r.expect >= 400 && r.path != "/repo/{path}" {
        assert_eq!(
            exact::<p::ErrorBody>(&got).unwrap(),
            got,
            "{what}: error body"
        );
        return;
    }
    if let Answer::Json(n, round_trip) = &r.answer {
        let typed = round_trip(&got).unwrap_or_else(|e| panic!("{what}: not a {n}: {e}\n{got}"));
        assert_eq!(typed, got, "{what}: the answer is not exactly a {n}");
    }
    if r.path == "/api/client/enroll" {
        *client = Some((
            got["client_id"].as_str().unwrap().to_owned(),
            got["credential"].as_str().unwrap().to_owned(),
        ));
    }
}

// Each operation, called with a body of its request type, answers with exactly its
// response type.
#[tokio::test]
async fn each_operation_speaks_its_types() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let mut client = None;
    for r in table() {
        drive(&s, &r, &mut client).await;
    }
}
