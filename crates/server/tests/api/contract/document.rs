//! The API's operations checked against `/api/openapi.json`: the same ones, each
//! documented with the table's types, errors, parameters and security.

use std::collections::BTreeSet;

use cascade_proto as p;
use serde_json::{json, Value};

use super::row::{name, Answer, Who, RAW};
use super::table::table;

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
