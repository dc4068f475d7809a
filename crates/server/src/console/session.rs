//! Console sessions. Logging in checks a user name and password ([`auth::check_password`])
//! or an API token with the API's own [`auth::authenticate`]; the session carries the
//! user's role (a viewer may only read, an operator may also notify; every other form needs
//! an admin, refused with 403 and logged). The session then lives in memory (per process) under a random id
//! sent as a `Secure; HttpOnly; SameSite=Strict` cookie, with its own random CSRF token that every
//! form must carry back. The login form itself is protected by a double-submit token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::form::Form;
use super::view::{html, LoginPage};
use super::ConsoleError;
use crate::auth::{self, Actor, Principal};
use crate::error::ApiError;
use crate::lockout::Origin;
use crate::state::AppState;
use cascade_proto::UserRole;

const COOKIE_NAME: &str = "cascade_session";
const LOGIN_COOKIE: &str = "cascade_login";
/// How long a session lasts after login.
const LIFETIME_SECS: i64 = 12 * 3600;

/// One logged-in administrator.
#[derive(Debug, Clone)]
struct Data {
    actor: String,
    role: UserRole,
    csrf: String,
    expires_at: i64,
    flash: Option<Flash>,
}

/// A one-shot message shown on the next page (after a redirect).
#[derive(Debug, Clone)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: &'static str,
    /// The text.
    pub text: String,
}

/// The session store of one console router.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, Data>>);

/// Extractor: the request's live session, or a redirect to the login page.
#[derive(Debug, Clone)]
pub struct Session {
    id: String,
    /// `user:<name>`, the actor recorded with policy writes.
    pub actor: String,
    /// The token every form of this session carries.
    pub csrf: String,
    store: Arc<Sessions>,
}

impl Session {
    /// Parses a form body and checks its CSRF token.
    ///
    /// # Errors
    /// [`ConsoleError::Csrf`] when the token is missing or wrong.
    pub fn form(&self, body: &[u8]) -> Result<Form, ConsoleError> {
        let form = Form::parse(body);
        if same(form.get("csrf"), &self.csrf) {
            Ok(form)
        } else {
            Err(ConsoleError::Csrf)
        }
    }

    /// Leaves a message for the next page.
    pub fn flash(&self, kind: &'static str, text: impl Into<String>) {
        if let Ok(mut map) = self.store.0.lock() {
            if let Some(d) = map.get_mut(&self.id) {
                d.flash = Some(Flash {
                    kind,
                    text: text.into(),
                });
            }
        }
    }

    /// Takes the waiting message, if any.
    pub fn take_flash(&self) -> Option<Flash> {
        self.store
            .0
            .lock()
            .ok()
            .and_then(|mut map| map.get_mut(&self.id).and_then(|d| d.flash.take()))
    }
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age: i64) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A 303 to `to`.
pub fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let Some(store) = parts.extensions.get::<Arc<Sessions>>().cloned() else {
            return Err(
                ConsoleError::Api(ApiError::Internal("no session store".into())).into_response(),
            );
        };
        let now = st.clock.now();
        let found = cookie(&parts.headers, COOKIE_NAME).and_then(|id| {
            let mut map = store.0.lock().ok()?;
            match map.get(id) {
                Some(d) if d.expires_at > now => Some((id.to_owned(), d.clone())),
                Some(_) => {
                    map.remove(id);
                    None
                }
                None => None,
            }
        });
        match found {
            Some((id, d)) => {
                if let Some(slot) = parts.extensions.get::<crate::audit::AuditSlot>() {
                    slot.set(d.actor.clone());
                }
                let needed = needed_role(&parts.method, parts.uri.path());
                if !d.role.allows(needed) {
                    tracing::warn!(
                        actor = %d.actor,
                        role = d.role.as_str(),
                        needed = needed.as_str(),
                        path = parts.uri.path(),
                        "console refused: the user's role does not allow this"
                    );
                    return Err(ConsoleError::Api(ApiError::Forbidden(
                        "your role does not allow this change",
                    ))
                    .into_response());
                }
                Ok(Session {
                    id,
                    actor: d.actor,
                    csrf: d.csrf,
                    store,
                })
            }
            None => Err(see_other("/login")),
        }
    }
}

/// The role a console request needs: reading and logging out any, Notify All Clients an
/// operator, the audit log and every other form an admin.
fn needed_role(method: &axum::http::Method, path: &str) -> UserRole {
    if path == "/audit" {
        UserRole::Admin
    } else if method == axum::http::Method::GET
        || method == axum::http::Method::HEAD
        || path == "/logout"
    {
        UserRole::Viewer
    } else if path == "/notify" {
        UserRole::Operator
    } else {
        UserRole::Admin
    }
}

fn login_form(st: &AppState, status: StatusCode, message: &str) -> Result<Response, ConsoleError> {
    let token = auth::random_hex(&st.random, 16)?;
    let page = LoginPage {
        csrf: token.clone(),
        message: message.to_owned(),
    };
    let mut resp = html(status, page.render()?);
    resp.headers_mut()
        .insert(SET_COOKIE, set_cookie(LOGIN_COOKIE, &token, 3600)?);
    Ok(resp)
}

/// `GET /login`.
pub async fn login_page(State(st): State<AppState>) -> Result<Response, ConsoleError> {
    login_form(&st, StatusCode::OK, "")
}

/// `POST /login` with `user` and `password`, or with an API `token`.
pub async fn login(
    State(st): State<AppState>,
    Extension(store): Extension<Arc<Sessions>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let origin = Origin {
        source: peer.map(|Extension(ConnectInfo(a))| a.ip()),
        method: "POST".to_owned(),
        path: "/login".to_owned(),
    };
    let form = Form::parse(&body);
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same(c, form.get("csrf"))) {
        return login_form(
            &st,
            StatusCode::FORBIDDEN,
            "The login form expired or came from elsewhere; please try again.",
        );
    }
    let user = form.get("user").trim();
    let actor = if user.is_empty() {
        match token_login(&st, form.get("token").trim(), &origin).await? {
            Ok(actor) => actor,
            Err(page) => return page,
        }
    } else {
        match auth::check_password(&st.auth, user, form.get("password"), &origin).await {
            Err(ApiError::LockedOut { retry_after, .. }) => return locked_out(&st, retry_after),
            Err(e) => return Err(e.into()),
            Ok(Some(actor)) => actor,
            Ok(None) => {
                return login_form(
                    &st,
                    StatusCode::UNAUTHORIZED,
                    "Unknown user or wrong password.",
                )
            }
        }
    };
    let id = auth::random_hex(&st.random, 32)?;
    let csrf = auth::random_hex(&st.random, 32)?;
    let now = st.clock.now();
    if let Ok(mut map) = store.0.lock() {
        map.retain(|_, d| d.expires_at > now);
        map.insert(
            id.clone(),
            Data {
                actor: actor.label(),
                role: actor.role,
                csrf,
                expires_at: now + LIFETIME_SECS,
                flash: None,
            },
        );
    }
    tracing::info!(user = %actor.user, role = actor.role.as_str(), "console login");
    let mut resp = see_other("/");
    let h = resp.headers_mut();
    h.append(SET_COOKIE, set_cookie(COOKIE_NAME, &id, LIFETIME_SECS)?);
    h.append(SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0)?);
    Ok(resp)
}

/// Checks an API token as the API checks a bearer token: the user it acts as, or the
/// login page to answer with.
async fn token_login(
    st: &AppState,
    token: &str,
    origin: &Origin,
) -> Result<Result<Actor, Result<Response, ConsoleError>>, ConsoleError> {
    let mut req = Request::builder()
        .method("POST")
        .uri(&origin.path)
        .header(AUTHORIZATION, format!("Bearer {token}"));
    if let Some(ip) = origin.source {
        req = req.extension(ConnectInfo(SocketAddr::new(ip, 0)));
    }
    let (parts, ()) = req
        .body(())
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .into_parts();
    Ok(match auth::authenticate(&st.auth, &parts).await {
        Err(ApiError::LockedOut { retry_after, .. }) => Err(locked_out(st, retry_after)),
        Ok(Principal::User(actor)) => Ok(actor),
        Ok(_) => Err(login_form(
            st,
            StatusCode::FORBIDDEN,
            "That is not an admin token (client and enrollment tokens cannot log in).",
        )),
        Err(ApiError::Unauthorized(_)) => Err(login_form(
            st,
            StatusCode::UNAUTHORIZED,
            "The token is not valid (unknown, revoked or mistyped).",
        )),
        Err(e) => return Err(e.into()),
    })
}

/// The login form answered 429 with `Retry-After` while the name, token or address is locked
/// out (`docs/operating.md#rate-limits-and-lockout`).
fn locked_out(st: &AppState, retry_after: u64) -> Result<Response, ConsoleError> {
    let minutes = retry_after.div_ceil(60);
    let mut resp = login_form(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Too many failed logins: try again in {minutes} minute(s)."),
    )?;
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    Ok(resp)
}

/// `POST /logout`: ends the session.
pub async fn logout(session: Session, body: Bytes) -> Result<Response, ConsoleError> {
    session.form(&body)?;
    if let Ok(mut map) = session.store.0.lock() {
        map.remove(&session.id);
    }
    let mut resp = see_other("/login");
    resp.headers_mut()
        .insert(SET_COOKIE, set_cookie(COOKIE_NAME, "", 0)?);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tokens compare equal only when identical and non-empty.
    #[test]
    fn token_comparison() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", ""));
    }

    // The session cookie is found among several cookies and headers.
    #[test]
    fn cookie_lookup() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; cascade_session=xyz"));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, COOKIE_NAME), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
