//! Authentication and authorization refusals.

use cascade_client::proto::EnrollRequest;
use reqwest::Method;

use crate::harness::{json, raw, start, start_tuned};

fn admin_operations() -> Vec<(Method, String)> {
    let doc = cascade_server::openapi::document();
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if op["security"][0].get("admin").is_some() {
                let path = path
                    .replace("{name}", "eng")
                    .replace("{address}", "10.0.0.5:8443")
                    .replace("{id}", "1");
                out.push((method.to_uppercase().parse().unwrap(), path));
            }
        }
    }
    out
}

// Every admin route refuses a missing or forged token (401) and a client or enrollment token (403).
#[tokio::test]
async fn admin_routes_need_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    // A forged token on every route is far more wrong secrets than the lockout allows
    // (`api/lockout.rs` tests that).
    let s = start_tuned(dir.path(), None, None, |set| {
        set.lockout.max_failures = u32::MAX;
        set.lockout.max_address_failures = u32::MAX;
    })
    .await;
    let (_, client) = s.enroll_client("pc-1", None).await;
    let ops = admin_operations();
    assert!(ops.len() >= 20, "{ops:?}");
    // Change the last character to a different one (appending "0" would be the real token
    // whenever it already ends in "0").
    let (head, last) = s.admin.split_at(s.admin.len() - 1);
    let forged = format!("{head}{}", if last == "0" { "1" } else { "0" });
    assert_ne!(forged, s.admin);
    for (method, path) in ops {
        s.call(method.clone(), &path, None, &[], raw("{}"))
            .await
            .expect_error(401, "auth.unauthorized", "Authorization");
        s.call(method.clone(), &path, Some(&forged), &[], raw("{}"))
            .await
            .expect_error(401, "auth.unauthorized", "Authorization");
        s.call(method.clone(), &path, Some(&client), &[], raw("{}"))
            .await
            .expect_error(403, "auth.forbidden", "Authorization");
        s.call(method, &path, Some(&s.enroll), &[], raw("{}"))
            .await
            .expect_error(403, "auth.forbidden", "Authorization");
    }
    assert_eq!(s.revision().await, 1);
    s.stop().await;
}

// A client sees only its own record and policy; other clients' data and admin views are refused.
#[tokio::test]
async fn a_client_cannot_read_another() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (a_id, a) = s.enroll_client("pc-a", None).await;
    let (b_id, _) = s.enroll_client("pc-b", None).await;
    s.call(
        Method::GET,
        &format!("/api/clients/{b_id}"),
        Some(&a),
        &[],
        None,
    )
    .await
    .expect_error(403, "auth.forbidden", "Authorization");
    s.call(Method::GET, "/api/clients", Some(&a), &[], None)
        .await
        .expect_error(403, "auth.forbidden", "Authorization");
    let me = s
        .call(Method::GET, "/api/client/status", Some(&a), &[], None)
        .await
        .expect(200);
    assert_eq!(me["id"], a_id.as_str());
    // A credential with another client's id but this client's secret is refused.
    let secret = a.rsplit('_').next().unwrap();
    let spoof = format!("cascade_cli_{b_id}_{secret}");
    s.call(Method::GET, "/api/client/status", Some(&spoof), &[], None)
        .await
        .expect_error(401, "auth.unauthorized", "Authorization");
    // The admin token is not a client credential.
    s.call(Method::GET, "/api/client/policy", Some(&s.admin), &[], None)
        .await
        .expect_error(403, "auth.forbidden", "Authorization");
    s.call(Method::GET, "/api/client/policy", None, &[], None)
        .await
        .expect_error(401, "auth.unauthorized", "Authorization");
    s.stop().await;
}

// Enrollment needs the current enrollment token; rotation revokes the old one.
#[tokio::test]
async fn enrollment_token_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let body = EnrollRequest {
        name: "pc".into(),
        ..EnrollRequest::default()
    };
    s.call(
        Method::POST,
        "/api/client/enroll",
        Some(&s.admin),
        &[],
        json(&body),
    )
    .await
    .expect_error(403, "auth.forbidden", "Authorization");
    s.call(Method::POST, "/api/client/enroll", None, &[], json(&body))
        .await
        .expect_error(401, "auth.unauthorized", "Authorization");
    let (_, old_client) = s.enroll_client("before", None).await;
    let meta = s
        .admin(Method::GET, "/api/enrollment-token", None)
        .await
        .expect(200);
    let rotated = s
        .admin(Method::POST, "/api/enrollment-token/rotate", None)
        .await
        .expect(201);
    let new = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(meta["id"], rotated["id"]);
    s.call(
        Method::POST,
        "/api/client/enroll",
        Some(&s.enroll),
        &[],
        json(&body),
    )
    .await
    .expect_error(401, "auth.unauthorized", "Authorization");
    s.call(
        Method::POST,
        "/api/client/enroll",
        Some(&new),
        &[],
        json(&body),
    )
    .await
    .expect(201);
    // Clients enrolled before keep working.
    s.call(
        Method::GET,
        "/api/client/status",
        Some(&old_client),
        &[],
        None,
    )
    .await
    .expect(200);
    let meta = s
        .admin(Method::GET, "/api/enrollment-token", None)
        .await
        .expect(200);
    assert_eq!(meta["id"], rotated["id"]);
    s.stop().await;
}

// Deleting a client revokes its credential at once, even after it was used (and cached).
#[tokio::test]
async fn deleted_client_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (id, cred) = s.enroll_client("gone", None).await;
    let (_, other) = s.enroll_client("stays", None).await;
    s.call(Method::GET, "/api/client/status", Some(&cred), &[], None)
        .await
        .expect(200);
    s.admin(Method::DELETE, &format!("/api/clients/{id}"), None)
        .await
        .expect(200);
    s.call(Method::GET, "/api/client/policy", Some(&cred), &[], None)
        .await
        .expect_error(401, "auth.unauthorized", "Authorization");
    s.call(Method::GET, "/api/client/status", Some(&other), &[], None)
        .await
        .expect(200);
    s.admin(Method::DELETE, &format!("/api/clients/{id}"), None)
        .await
        .expect_error(404, "not_found", "id");
    s.stop().await;
}

// Another replica sharing the database stops accepting a deleted client's credential once its
// cache of verified tokens expires (one minute).
#[tokio::test]
async fn deletion_reaches_other_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path()).await;
    let tokens = (a.admin.clone(), a.enroll.clone(), a.clock.clone());
    let b = crate::harness::start_with(dir.path(), None, Some(tokens)).await;
    let (id, cred) = a.enroll_client("pc", None).await;
    b.call(Method::GET, "/api/client/status", Some(&cred), &[], None)
        .await
        .expect(200);
    a.admin(Method::DELETE, &format!("/api/clients/{id}"), None)
        .await
        .expect(200);
    a.clock.advance(61);
    b.call(Method::GET, "/api/client/status", Some(&cred), &[], None)
        .await
        .expect_error(401, "auth.unauthorized", "Authorization");
    b.stop().await;
    a.stop().await;
}
