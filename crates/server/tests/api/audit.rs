//! The audit log and restoring a policy revision (`docs/operating.md#audit-log`).

use cascade_client::proto::{NewEnrollmentToken, NewToken, NewUser, NotifyRequest, UserRole};
use reqwest::Method;
use serde_json::json;

use crate::harness::{customized, start};

// Every change and every refused admin action is recorded with actor, time, source address
// and status; a policy change carries the changed parts before and after; secrets never.
#[tokio::test]
async fn changes_and_refusals_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let api = s.api();
    api.patch_settings(&customized(), None).await.unwrap();
    api.create_user(&NewUser {
        name: "vera".into(),
        role: UserRole::Viewer,
        password: "vera-password-long".into(),
    })
    .await
    .unwrap();
    let vera = api
        .create_token(&NewToken {
            label: "t".into(),
            user: Some("vera".into()),
            expires_in_secs: None,
        })
        .await
        .unwrap()
        .token;
    api.create_enrollment_token(&NewEnrollmentToken {
        name: "batch".into(),
        ..NewEnrollmentToken::default()
    })
    .await
    .unwrap();
    api.notify(&NotifyRequest::default()).await.unwrap();
    let refused = s
        .client
        .admin(vera.as_str())
        .notify(&NotifyRequest::default())
        .await;
    assert_eq!(refused.unwrap_err().status(), Some(403));
    s.enroll_client("pc-1", None).await; // the client API is not audited

    let log = api.audit().await.unwrap().entries;
    let paths: Vec<(&str, &str, u16, &str)> = log
        .iter()
        .rev()
        .map(|e| {
            (
                e.method.as_str(),
                e.path.as_str(),
                e.status,
                e.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("PATCH", "/api/policy/settings", 200, "user:admin"),
            ("POST", "/api/users", 201, "user:admin"),
            ("POST", "/api/tokens", 201, "user:admin"),
            ("POST", "/api/enrollment-tokens", 201, "user:admin"),
            ("POST", "/api/notify", 200, "user:admin"),
            ("POST", "/api/notify", 403, "user:vera"),
        ]
    );
    assert!(log
        .iter()
        .all(|e| e.source == "127.0.0.1" && e.at == 1_700_000_000));
    let settings = log.last().unwrap();
    assert_eq!(settings.before, Some(json!({"mode": "standard"})));
    assert_eq!(settings.after, Some(json!({"mode": "customized"})));
    assert!(log[0].before.is_none());
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("vera-password-long"), "{text}");
    s.stop().await;
}

// An earlier revision is restored as a new revision; an unknown one is 404 and changes nothing.
#[tokio::test]
async fn an_earlier_revision_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let api = s.api();
    let first = api.policy().await.unwrap();
    api.patch_settings(&customized(), None).await.unwrap();
    let back = api.restore_policy(1, Some(2)).await.unwrap();
    assert_eq!(back.revision, 3);
    assert_eq!(back.policy, first.policy);
    assert_eq!(
        api.restore_policy(99, None).await.unwrap_err().status(),
        Some(404)
    );
    assert_eq!(
        api.restore_policy(2, Some(2)).await.unwrap_err().status(),
        Some(409)
    );
    assert_eq!(s.revision().await, 3);
    let log = api.audit().await.unwrap().entries;
    assert_eq!(log[2].path, "/api/policy/restore");
    assert_eq!(log[2].after, Some(json!({"mode": "standard"})));
    s.call(
        Method::POST,
        "/api/policy/restore",
        Some(&s.admin),
        &[],
        crate::harness::raw("{\"revision\":\"x\"}"),
    )
    .await
    .expect(400);
    s.stop().await;
}
