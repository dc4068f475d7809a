//! The policy and rollout revisions a server holds in memory for the clients' policy 304
//! (`docs/operating.md#policy-revisions-in-memory`). Each test sets their time to live to an
//! hour, so only what must end a 304 (a write on this server, a notify) can end it: a policy
//! write, a rollout started, and a change this server did not make followed by a notify. The
//! same across replicas on PostgreSQL is in `postgres.rs`.

use std::time::Duration;

use cascade_client::proto::{ClientPolicy, NewRollout, RingSpec};
use reqwest::Method;

use crate::harness::{customized, json, raw, start_tuned, TestServer};

/// Revisions read from the database answer for an hour: only a write or a notify renews them.
pub fn held_an_hour(s: &mut cascade_server::Settings) {
    s.revisions_max_age = Duration::from_secs(3600);
}

/// `GET /api/client/policy` with `If-None-Match` of `held` (when given): `None` for a 304,
/// else the policy.
pub async fn fetch(s: &TestServer, cred: &str, held: Option<i64>) -> Option<ClientPolicy> {
    let tag = held.map(|r| format!("\"{r}\""));
    let headers: Vec<(&str, &str)> = tag.iter().map(|t| ("if-none-match", t.as_str())).collect();
    let reply = s
        .call(
            Method::GET,
            "/api/client/policy",
            Some(cred),
            &headers,
            None,
        )
        .await;
    if held.is_some() && reply.status.as_u16() == 304 {
        return None;
    }
    Some(reply.typed(200))
}

// A policy write on this server ends the 304 at once, and the new revision is 304 again.
#[tokio::test]
async fn a_policy_write_ends_the_304() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, held_an_hour).await;
    let (_, cred) = s.enroll_client("pc-1", None).await;
    let first = fetch(&s, &cred, None).await.unwrap();
    assert_eq!(fetch(&s, &cred, Some(first.revision)).await, None);
    s.admin(Method::PATCH, "/api/policy/settings", json(&customized()))
        .await
        .expect(200);
    let next = fetch(&s, &cred, Some(first.revision))
        .await
        .expect("a 200 after the policy write, not a 304");
    assert_eq!(next.revision, first.revision + 1);
    assert_eq!(fetch(&s, &cred, Some(next.revision)).await, None);
    s.stop().await;
}

// A rollout started on this server ends the 304 at once (its revision is folded in).
#[tokio::test]
async fn a_rollout_ends_the_304() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, held_an_hour).await;
    for version in ["1", "2"] {
        s.admin(
            Method::POST,
            &format!("/api/programs/app/{version}?file=app.bin"),
            raw(&format!("build {version}")),
        )
        .await
        .expect(201);
    }
    let (_, cred) = s.enroll_client("pc-1", None).await;
    let first = fetch(&s, &cred, None).await.unwrap();
    assert_eq!(first.rollout_revision, 0);
    assert_eq!(fetch(&s, &cred, Some(first.revision)).await, None);
    s.admin(
        Method::POST,
        "/api/rollouts",
        json(&NewRollout {
            program: "app".into(),
            version: "2".into(),
            previous_version: None,
            rings: vec![RingSpec {
                name: "everyone".into(),
                percent: Some(100.0),
                soak_secs: 0,
                ..RingSpec::default()
            }],
        }),
    )
    .await
    .expect(201);
    let next = fetch(&s, &cred, Some(first.revision))
        .await
        .expect("a 200 after the rollout started, not a 304");
    assert!(next.rollout_revision > 0, "{next:?}");
    assert_eq!(next.revision, first.revision + next.rollout_revision);
    assert_eq!(fetch(&s, &cred, Some(next.revision)).await, None);
    s.stop().await;
}

// A policy change this server did not make (another process writing the database, as another
// replica does on a shared PostgreSQL) is not seen while the revisions are held; a notify makes
// the server read them again before any stream hears it, so the next policy request gets it.
#[tokio::test]
async fn a_notify_ends_the_304_of_a_change_made_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, held_an_hour).await;
    let (_, cred) = s.enroll_client("pc-1", None).await;
    let first = fetch(&s, &cred, None).await.unwrap();
    assert_eq!(fetch(&s, &cred, Some(first.revision)).await, None);
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&format!(
        "sqlite://{}",
        s.data_dir.join("cascade.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE policy SET revision = revision + 1 WHERE id = 1")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(
        fetch(&s, &cred, Some(first.revision)).await,
        None,
        "held for an hour: the change made elsewhere is not read yet"
    );
    s.admin(Method::POST, "/api/notify", None).await.expect(200);
    let next = fetch(&s, &cred, Some(first.revision))
        .await
        .expect("a 200 after the notify, not a 304");
    assert_eq!(next.revision, first.revision + 1);
    s.stop().await;
}
