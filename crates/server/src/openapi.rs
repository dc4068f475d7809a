//! The OpenAPI 3.1 document served at `/api/openapi.json`. Hand-written from one table of
//! operations that mirrors `routes::router`; request and response bodies are described in
//! words (with the shared error schema) rather than full JSON schemas.

use serde_json::{json, Map, Value};

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Auth {
    None,
    Admin,
    Enroll,
    Client,
}

/// (method, path, auth, summary)
const OPERATIONS: &[(&str, &str, Auth, &str)] = &[
    ("get", "/healthz", Auth::None, "Liveness: 200 with the policy revision when the database answers"),
    ("get", "/metrics", Auth::None, "Prometheus text metrics"),
    ("get", "/api/openapi.json", Auth::None, "This document"),
    ("get", "/api/policy", Auth::Admin, "The whole policy: {revision, policy}; ETag is the revision"),
    ("put", "/api/policy", Auth::Admin, "Replace the whole policy (body: policy document); If-Match: revision"),
    ("get", "/api/policy/settings", Auth::Admin, "Mode, activeupdate_url, activeupdate_fallback, fallback options, default privileges, agents_source"),
    ("patch", "/api/policy/settings", Auth::Admin, "Change any of the settings (absent = unchanged, activeupdate_url null clears)"),
    ("get", "/api/policy/domains", Auth::Admin, "Default privileges and per-domain overrides with effective values"),
    ("put", "/api/policy/domains/{name}", Auth::Admin, "Set a domain's privilege overrides {download_from_activeupdate: bool|null}"),
    ("delete", "/api/policy/domains/{name}", Auth::Admin, "Remove a domain"),
    ("get", "/api/agents", Auth::Admin, "Registered update agents, their capabilities and enrolled clients"),
    ("post", "/api/agents", Auth::Admin, "Register an update agent {address, capabilities}"),
    ("delete", "/api/agents/{address}", Auth::Admin, "Unregister an agent (refused while a source entry uses it)"),
    ("get", "/api/sources", Auth::Admin, "The customized source list in order"),
    ("post", "/api/sources", Auth::Admin, "Append an entry {range, agent|url}; returns its id"),
    ("post", "/api/sources/delete", Auth::Admin, "Delete a set of entries {ids} (all or nothing)"),
    ("put", "/api/sources/{id}", Auth::Admin, "Edit an entry {range, agent|url} in place"),
    ("post", "/api/sources/{id}/move", Auth::Admin, "Move an entry one place {direction: up|down}"),
    ("get", "/api/resolve", Auth::Admin, "What-if: plans for ?ip=&category=&domain= or ?agent=IP:PORT"),
    ("get", "/api/repo/mirror", Auth::Admin, "Whether mirroring is configured and the last run's result"),
    ("post", "/api/repo/mirror", Auth::Admin, "Mirror the upstream (activeupdate_url) into /repo/upstream/ now; 502 with the reason on failure"),
    ("post", "/api/notify", Auth::Admin, "Notify All Clients {categories?}: agents first, then clients with a jitter hint"),
    ("get", "/api/clients", Auth::Admin, "Enrolled clients with state; ?stale[=SECONDS] keeps only stale/never-seen ones"),
    ("get", "/api/clients/{id}", Auth::Admin, "One client with its last update report"),
    ("delete", "/api/clients/{id}", Auth::Admin, "Forget a client; its credential stops working at once"),
    ("get", "/api/enrollment-token", Auth::Admin, "Metadata of the current enrollment token"),
    ("post", "/api/enrollment-token/rotate", Auth::Admin, "Revoke the enrollment token and return a new one (shown once)"),
    ("post", "/api/client/enroll", Auth::Enroll, "Enroll {name, domain?, agent_address?}: returns {client_id, credential}"),
    ("get", "/api/client/policy", Auth::Client, "The policy document and revision for local resolution; If-None-Match gives 304"),
    ("get", "/api/client/status", Auth::Client, "The caller's own record"),
    ("post", "/api/client/checkin", Auth::Client, "Report {ip, installed, last_update: {outcome, attempts[{step, source, outcome, reason}]}}"),
    ("get", "/api/client/events", Auth::Client, "Server-sent events: hello, then notify {id, categories, stage, jitter_ms}"),
    ("get", "/repo/{path}", Auth::None, "Repository files with Range, ETag/If-None-Match, Content-Length"),
];

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, auth, summary) in OPERATIONS {
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": {"description": "success"},
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        let scheme = match auth {
            Auth::None => None,
            Auth::Admin => Some("admin"),
            Auth::Enroll => Some("enrollment"),
            Auth::Client => Some("client"),
        };
        if let Some(s) = scheme {
            op["security"] = json!([{ s: [] }]);
        }
        if path.contains('{') {
            let params: Vec<Value> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            op["parameters"] = Value::Array(params);
        }
        if let Some(entry) = paths
            .entry((*path).to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            entry.insert((*method).to_owned(), op);
        }
    }
    let bearer = |what: &str| json!({"type": "http", "scheme": "bearer", "description": what});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "cascade server", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "admin": bearer("admin token cascade_adm_…"),
                "enrollment": bearer("enrollment token cascade_enr_…"),
                "client": bearer("client credential cascade_cli_…"),
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "object", "properties": {
                        "code": {"type": "string"},
                        "field": {"type": ["string", "null"]},
                        "message": {"type": "string"}
                    }}}
                }
            }
        }
    })
}

/// Every `(method, path)` the document lists (tests compare it with the router).
pub fn operations() -> impl Iterator<Item = (&'static str, &'static str)> {
    OPERATIONS.iter().map(|(m, p, _, _)| (*m, *p))
}
