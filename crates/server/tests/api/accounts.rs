//! Users, roles and per-user API tokens (`docs/operating.md#users-roles-and-tokens`).

use cascade_client::proto::{ClientsQuery, NewToken, NewUser, NotifyRequest, UserPatch, UserRole};
use cascade_client::ClientError;
use reqwest::Method;

use crate::harness::{json, start};

fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> u16 {
    r.expect_err("refused").status().unwrap()
}

async fn user_token(
    s: &crate::harness::TestServer,
    name: &str,
    role: UserRole,
) -> (String, String) {
    s.api()
        .create_user(&NewUser {
            name: name.into(),
            role,
            password: format!("{name}-password-long"),
        })
        .await
        .unwrap();
    let t = s
        .api()
        .create_token(&NewToken {
            label: format!("{name}'s laptop"),
            user: Some(name.into()),
            expires_in_secs: None,
        })
        .await
        .unwrap();
    assert_eq!(t.info.user, name);
    (t.info.id, t.token)
}

// The first start makes the `admin` user; its first token is the bootstrap admin token.
#[tokio::test]
async fn bootstrap_admin_is_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let users = s.api().users().await.unwrap().users;
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0].name, "admin");
    assert_eq!(users[0].role, UserRole::Admin);
    assert!(s.admin_password.as_deref().is_some_and(|p| p.len() >= 12));
    let tokens = s.api().tokens().await.unwrap().tokens;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].user, "admin");
    assert!(s.admin.contains(&tokens[0].id));
    s.stop().await;
}

// A viewer reads only; an operator also notifies and runs what-if; neither writes the
// policy or manages users (403), and nothing changes.
#[tokio::test]
async fn roles_limit_what_a_token_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (_, viewer) = user_token(&s, "vera", UserRole::Viewer).await;
    let (_, operator) = user_token(&s, "otto", UserRole::Operator).await;
    let v = s.client.admin(viewer.as_str());
    let o = s.client.admin(operator.as_str());
    let rev = s.revision().await;

    // Reads: both.
    for c in [&v, &o] {
        c.policy().await.unwrap();
        c.sources().await.unwrap();
        c.clients(&ClientsQuery::default()).await.unwrap();
    }
    // Notify and what-if: operator only.
    assert_eq!(status(v.notify(&NotifyRequest::default()).await), 403);
    o.notify(&NotifyRequest::default()).await.unwrap();
    s.call(
        Method::GET,
        "/api/resolve?ip=10.0.0.9",
        Some(&viewer),
        &[],
        None,
    )
    .await
    .expect_error(403, "auth.forbidden", "Authorization");
    s.call(
        Method::GET,
        "/api/resolve?ip=10.0.0.9",
        Some(&operator),
        &[],
        None,
    )
    .await
    .expect(200);
    // Writes: neither.
    for token in [&viewer, &operator] {
        s.call(
            Method::PUT,
            "/api/policy/domains/eng",
            Some(token),
            &[],
            json(&serde_json::json!({})),
        )
        .await
        .expect_error(403, "auth.forbidden", "Authorization");
        s.call(
            Method::POST,
            "/api/users",
            Some(token),
            &[],
            json(&NewUser {
                name: "mallory".into(),
                role: UserRole::Admin,
                password: "mallory-password".into(),
            }),
        )
        .await
        .expect_error(403, "auth.forbidden", "Authorization");
        s.call(Method::GET, "/api/users", Some(token), &[], None)
            .await
            .expect_error(403, "auth.forbidden", "Authorization");
        // Nor a token for someone else.
        s.call(
            Method::POST,
            "/api/tokens",
            Some(token),
            &[],
            json(&NewToken {
                label: "x".into(),
                user: Some("admin".into()),
                expires_in_secs: None,
            }),
        )
        .await
        .expect_error(403, "auth.forbidden", "Authorization");
    }
    assert_eq!(s.revision().await, rev);
    assert_eq!(s.api().users().await.unwrap().users.len(), 3);
    // Promoted, the viewer's same token may write at once.
    s.api()
        .patch_user(
            "vera",
            &UserPatch {
                role: Some(UserRole::Admin),
                password: None,
            },
        )
        .await
        .unwrap();
    v.users().await.unwrap();
    s.stop().await;
}

// Tokens expire, are listed per user and revoked at once; a deleted user's tokens stop
// working; the last admin cannot be deleted or demoted.
#[tokio::test]
async fn tokens_expire_and_are_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (_, viewer) = user_token(&s, "vera", UserRole::Viewer).await;
    let v = s.client.admin(viewer.as_str());
    let short = v
        .create_token(&NewToken {
            label: "ci".into(),
            user: None,
            expires_in_secs: Some(600),
        })
        .await
        .unwrap();
    assert_eq!(short.info.expires_at, Some(s.clock.unix_secs() + 600));
    let st = s.client.admin(short.token.as_str());
    st.policy().await.unwrap();
    // A viewer lists only its own tokens; the admin lists all four.
    let mine = v.tokens().await.unwrap().tokens;
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(mine.iter().all(|t| t.user == "vera"));
    assert_eq!(s.api().tokens().await.unwrap().tokens.len(), 3);
    // Expired: refused (also from the verified-token cache).
    s.clock.advance(601);
    assert_eq!(status(st.policy().await), 401);
    // A viewer cannot revoke the admin's token (it is not shown to them).
    let admin_id = s
        .api()
        .tokens()
        .await
        .unwrap()
        .tokens
        .into_iter()
        .find(|t| t.user == "admin")
        .unwrap()
        .id;
    assert_eq!(status(v.revoke_token(&admin_id).await), 404);
    s.api().policy().await.unwrap();
    // Revoked: refused at once.
    let long = mine
        .iter()
        .find(|t| t.expires_at.is_none())
        .unwrap()
        .id
        .clone();
    s.api().revoke_token(&long).await.unwrap();
    assert_eq!(status(v.policy().await), 401);
    let listed = s.api().tokens().await.unwrap().tokens;
    assert!(listed
        .iter()
        .any(|t| t.id == long && t.revoked_at.is_some()));
    // A deleted user's tokens stop working.
    let (_, otto) = user_token(&s, "otto", UserRole::Operator).await;
    let o = s.client.admin(otto.as_str());
    o.policy().await.unwrap();
    s.api().delete_user("otto").await.unwrap();
    assert_eq!(status(o.policy().await), 401);
    // The last admin stays.
    assert_eq!(status(s.api().delete_user("admin").await), 403);
    assert_eq!(
        status(
            s.api()
                .patch_user(
                    "admin",
                    &UserPatch {
                        role: Some(UserRole::Viewer),
                        password: None
                    }
                )
                .await
        ),
        403
    );
    // Names and passwords are checked.
    let bad = s
        .api()
        .create_user(&NewUser {
            name: "a b".into(),
            role: UserRole::Viewer,
            password: "long-enough-password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.server_error().unwrap().field.as_deref(), Some("name"));
    let short_pw = s
        .api()
        .create_user(&NewUser {
            name: "ann".into(),
            role: UserRole::Viewer,
            password: "short".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        short_pw.server_error().unwrap().field.as_deref(),
        Some("password")
    );
    let taken = s
        .api()
        .create_user(&NewUser {
            name: "vera".into(),
            role: UserRole::Viewer,
            password: "long-enough-password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.status(), Some(409));
    s.stop().await;
}
