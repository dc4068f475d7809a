//! The console spoken over plain HTTP, shared by the tests that need no browser: logging in
//! through the form (the session cookie pair back), and pages read and forms posted with it.

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::Response;

use crate::harness::{csrf_in, TestServer};

/// The content type of a console form post.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// `form` as a form post's body.
pub fn encode(form: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

/// Every `Set-Cookie` of `resp`, whole.
pub fn cookies(resp: &Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `name=value` of a `Set-Cookie`.
pub fn cookie_pair(set: &str) -> String {
    set.split(';').next().unwrap().to_owned()
}

/// Logs in through the form with an API token; returns the session cookie pair.
pub async fn login(s: &TestServer, token: &str) -> Result<String, (u16, String)> {
    login_with(s, &[("token", token)]).await
}

/// Logs in through the form with `fields`; returns the session cookie pair.
pub async fn login_with(s: &TestServer, fields: &[(&str, &str)]) -> Result<String, (u16, String)> {
    let page = s.http.get(format!("{}/login", s.url)).send().await.unwrap();
    let login_cookie = cookie_pair(&cookies(&page)[0]);
    let csrf = csrf_in(&page.text().await.unwrap());
    let resp = s
        .http
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
    if resp.status() != 303 {
        return Err((resp.status().as_u16(), resp.text().await.unwrap()));
    }
    let set = cookies(&resp);
    let session = set
        .iter()
        .find(|c| c.starts_with("cascade_session="))
        .expect("a session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(
        session.contains("; Secure;"),
        "the session cookie is Secure: {session}"
    );
    assert!(session.contains("SameSite=Strict"), "{session}");
    Ok(cookie_pair(session))
}

/// `GET path` with the session `cookie`: the status and the page.
pub async fn get(s: &TestServer, cookie: &str, path: &str) -> (u16, String) {
    let r = s
        .http
        .get(format!("{}{path}", s.url))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Posts `form` to `path` with the session `cookie`.
pub async fn post(s: &TestServer, cookie: &str, path: &str, form: &[(&str, &str)]) -> Response {
    s.http
        .post(format!("{}{path}", s.url))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, FORM)
        .body(encode(form))
        .send()
        .await
        .unwrap()
}
