//! Console sessions in the Store (`docs/operating.md#console-sessions`): replicas on one
//! database share them; logout, deleting the user, changing its role and revoking the token a
//! session logged in with end it on every replica at once; a session survives a restart.
//! [`shared_by_replicas`] runs on SQLite here and on PostgreSQL in `postgres`.

use cascade_client::proto::{NewToken, NewUser, UserPatch, UserRole};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};

use crate::harness::{start, start_with, TestServer};

const FORM: &str = "application/x-www-form-urlencoded";

/// The value of `name="csrf"` in a page.
fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// The `name=value` pair of the `Set-Cookie` for `name` in `resp`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("a {name} cookie in {:?}", resp.headers()))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

fn encode(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Logs in on `s` through the form with `fields`; returns the session cookie pair.
pub async fn login(s: &TestServer, fields: &[(&str, &str)]) -> String {
    let http = s.console_http();
    let page = http.get(format!("{}/login", s.url)).send().await.unwrap();
    let login_cookie = set_cookie(&page, "cascade_login");
    let csrf = csrf_in(&page.text().await.unwrap());
    let resp = http
        .post(format!("{}/login", s.url))
        .header(COOKIE, login_cookie)
        .header(CONTENT_TYPE, FORM)
        .body(encode(
            &[("csrf", csrf.as_str())]
                .into_iter()
                .chain(fields.iter().copied())
                .collect::<Vec<_>>(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "login on {} with {fields:?}", s.url);
    set_cookie(&resp, "cascade_session")
}

/// `GET path` on `s` with the session `cookie`: the status and the page (for a 303, its
/// `Location`).
pub async fn get(s: &TestServer, cookie: &str, path: &str) -> (u16, String) {
    let resp = s
        .console_http()
        .get(format!("{}{path}", s.url))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status == 303 {
        let to = resp.headers()[LOCATION].to_str().unwrap().to_owned();
        return (status, to);
    }
    (status, resp.text().await.unwrap())
}

/// `POST path` on `s` with the session `cookie`, the page's CSRF token (read from `/` on
/// `s`) and `fields`: the status and `Location`.
pub async fn post(
    s: &TestServer,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let (status, page) = get(s, cookie, "/").await;
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_in(&page);
    let resp = s
        .console_http()
        .post(format!("{}{path}", s.url))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, FORM)
        .body(encode(
            &[("csrf", csrf.as_str())]
                .into_iter()
                .chain(fields.iter().copied())
                .collect::<Vec<_>>(),
        ))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let to = resp
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, to)
}

/// Asserts that `cookie` is refused on `s` (a redirect to the login page).
async fn refused(s: &TestServer, cookie: &str, why: &str) {
    assert_eq!(
        get(s, cookie, "/sources").await,
        (303, "/login".to_owned()),
        "{why}"
    );
}

/// Asserts that `cookie` is a live session on `s`.
async fn accepted(s: &TestServer, cookie: &str, why: &str) {
    let (status, page) = get(s, cookie, "/sources").await;
    assert_eq!(status, 200, "{why}: {page}");
}

async fn make_user(s: &TestServer, name: &str, role: UserRole) -> String {
    let password = format!("{name}-password-long");
    s.api()
        .create_user(&NewUser {
            name: name.into(),
            role,
            password: password.clone(),
        })
        .await
        .unwrap();
    password
}

/// The whole story on two replicas `a` and `b` of one database.
pub async fn shared_by_replicas(a: &TestServer, b: &TestServer) {
    let admin_password = a
        .admin_password
        .clone()
        .expect("a is the first start, with the admin's password");

    // A login on A is a session on B, and so is its flash message.
    let admin = login(a, &[("user", "admin"), ("password", &admin_password)]).await;
    accepted(a, &admin, "the session on the replica that made it").await;
    accepted(b, &admin, "the session made on A, on B").await;
    assert_eq!(
        post(a, &admin, "/notify", &[]).await,
        (303, "/sources".to_owned())
    );
    let (status, page) = get(b, &admin, "/sources").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Notify All Clients #"),
        "the flash set on A is shown on B: {page}"
    );
    let (_, page) = get(a, &admin, "/sources").await;
    assert!(
        !page.contains("Notify All Clients #"),
        "a flash message is shown once: {page}"
    );

    // Logging out on B ends the session on A.
    assert_eq!(
        post(b, &admin, "/logout", &[]).await,
        (303, "/login".to_owned())
    );
    refused(a, &admin, "logged out on B, refused on A").await;
    refused(b, &admin, "logged out on B, refused on B").await;

    // Deleting a user on A ends its sessions on B; another user's session stays.
    let other = login(b, &[("user", "admin"), ("password", &admin_password)]).await;
    let password = make_user(a, "ops", UserRole::Operator).await;
    let ops = login(b, &[("user", "ops"), ("password", &password)]).await;
    accepted(b, &ops, "the operator's session").await;
    a.api().delete_user("ops").await.unwrap();
    refused(b, &ops, "the user was deleted on A").await;
    refused(a, &ops, "the user was deleted on A").await;
    accepted(b, &other, "the admin's session is not touched").await;

    // Changing a user's role on B ends its sessions on A (its role is read at login).
    let password = make_user(a, "lee", UserRole::Admin).await;
    let lee = login(a, &[("user", "lee"), ("password", &password)]).await;
    b.api()
        .patch_user(
            "lee",
            &UserPatch {
                role: Some(UserRole::Admin),
                password: None,
            },
        )
        .await
        .unwrap();
    accepted(a, &lee, "setting the role it already has ends nothing").await;
    b.api()
        .patch_user(
            "lee",
            &UserPatch {
                role: Some(UserRole::Viewer),
                password: None,
            },
        )
        .await
        .unwrap();
    refused(a, &lee, "the user's role was changed on B").await;
    let lee = login(a, &[("user", "lee"), ("password", &password)]).await;
    accepted(b, &lee, "a new login has the new role").await;
    assert_eq!(
        post(b, &lee, "/notify", &[]).await.0,
        403,
        "the viewer's new session may not notify"
    );

    // Revoking the token a session logged in with, on A, ends that session on B.
    let token = a
        .api()
        .create_token(&NewToken {
            label: "console".into(),
            user: Some("admin".into()),
            expires_in_secs: None,
        })
        .await
        .unwrap();
    let by_token = login(b, &[("token", &token.token)]).await;
    accepted(a, &by_token, "the token's session").await;
    a.api().revoke_token(&token.info.id).await.unwrap();
    refused(b, &by_token, "its token was revoked on A").await;
    accepted(a, &other, "the password session of the same user stays").await;
}

// Two replicas on one SQLite file share console sessions (`docs/operating.md#console-sessions`).
#[tokio::test]
async fn console_sessions_are_shared_by_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path()).await;
    let tokens = (a.admin.clone(), a.enroll.clone(), a.clock.clone());
    let b = start_with(dir.path(), None, Some(tokens)).await;
    shared_by_replicas(&a, &b).await;
    b.stop().await;
    a.stop().await;
}

// A console session survives a restart of the server, and still ends 12 hours after login.
#[tokio::test]
async fn console_session_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let password = s.admin_password.clone().unwrap();
    let cookie = login(&s, &[("user", "admin"), ("password", &password)]).await;
    accepted(&s, &cookie, "before the restart").await;
    let prev = s.stop().await;
    let clock = prev.2.clone();
    let s = start_with(dir.path(), None, Some(prev)).await;
    accepted(&s, &cookie, "the same cookie after the restart").await;
    clock.advance(12 * 3600 - 1);
    accepted(&s, &cookie, "a second before its end").await;
    clock.advance(1);
    refused(&s, &cookie, "12 hours after login").await;
    refused(&s, "cascade_session=", "an empty cookie").await;
    refused(&s, "cascade_session=00ff", "an unknown cookie").await;
    s.stop().await;
}
