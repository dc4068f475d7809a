//! Console sessions. Logging in checks a user name and password ([`auth::check_password`])
//! or an API token with the API's own [`auth::authenticate`]; the session carries the
//! user's role (a viewer may only read, an operator may also notify and act on rollouts;
//! every other form needs an admin, refused with 403 and logged). The session then lives in the Store
//! (`docs/operating.md#console-sessions`, shared by every replica on the database) under the
//! SHA-256 of a random id sent as an `Secure; HttpOnly; SameSite=Strict` cookie, with its own random
//! CSRF token that every form must carry back. The login form itself is protected by a
//! double-submit token. The one-shot flash message is kept in the session's row too: the
//! [`flash_layer`] writes it after the handler has answered, only when one was set or shown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cascade_repo::fsutil::sha256_hex;

use super::form::Form;
use super::view::{html, LoginPage};
use super::ConsoleError;
use crate::auth::{self, Actor, Principal};
use crate::error::ApiError;
use crate::lockout::Origin;
use crate::state::AppState;
use crate::store::{FlashKind, NewSession, Store};
use cascade_proto::UserRole;

const COOKIE_NAME: &str = "cascade_session";
const LOGIN_COOKIE: &str = "cascade_login";
/// The page asked for before login sent the browser to `/login` (a same-site path).
const NEXT_COOKIE: &str = "cascade_next";

/// `path` when it is a page of this console to come back to after login: a same-site
/// absolute path (not `//host`, not `/login`), of printable ASCII, at most 2,000 bytes.
fn safe_next(path: &str) -> Option<&str> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.starts_with("/login")
        && !path.starts_with("/logout")
        && !path.starts_with("/assets/")
        && path.len() <= 2000
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',');
    ok.then_some(path)
}
/// How long a session lasts after login.
const LIFETIME_SECS: i64 = 12 * 3600;

/// A one-shot message shown on the next page (after a redirect).
#[derive(Debug, Clone)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: &'static str,
    /// The text.
    pub text: String,
}

/// The flash message of one request: what the session's row held when it was read, what
/// the handler set, and whether a page showed it. [`flash_layer`] puts one in every console
/// request and stores the outcome after the handler.
#[derive(Default)]
struct FlashSlot {
    /// The session the request carried (set by the extractor).
    session: Option<(Store, String)>,
    /// The message the row held.
    loaded: Option<Flash>,
    /// A message set by this request, for the next page.
    set: Option<Flash>,
    /// The row's message changed (one was set, or shown): [`flash_layer`] stores `set`.
    changed: bool,
}

/// The request's [`FlashSlot`], shared by the extractor's [`Session`] and [`flash_layer`].
#[derive(Clone, Default)]
struct SharedFlash(Arc<Mutex<FlashSlot>>);

/// Extractor: the request's live session, or a redirect to the login page.
#[derive(Clone)]
pub struct Session {
    /// SHA-256 (hex) of the cookie value: the session's key in the Store.
    id_hash: String,
    /// `user:<name>`, the actor recorded with policy writes.
    pub actor: String,
    /// The token every form of this session carries.
    pub csrf: String,
    store: Store,
    flash: SharedFlash,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
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

    /// Leaves a message for the next page (stored with the session after the handler).
    pub fn flash(&self, kind: &'static str, text: impl Into<String>) {
        if let Ok(mut slot) = self.flash.0.lock() {
            slot.loaded = None;
            slot.set = Some(Flash {
                kind: flash_kind(kind).as_str(),
                text: text.into(),
            });
            slot.changed = true;
        }
    }

    /// Takes the waiting message, if any.
    pub fn take_flash(&self) -> Option<Flash> {
        let mut slot = self.flash.0.lock().ok()?;
        let f = slot.set.take().or_else(|| slot.loaded.take());
        slot.changed |= f.is_some();
        f
    }
}

/// The stored kind of a flash message: `ok`, anything else an error.
fn flash_kind(kind: &str) -> FlashKind {
    if kind == FlashKind::Ok.as_str() {
        FlashKind::Ok
    } else {
        FlashKind::Error
    }
}

/// Layer over the console routes: gives each request a flash slot and, after the handler,
/// stores a message it set (or clears one a page showed) in the session's row. A failed
/// write loses only the message, and is logged.
pub async fn flash_layer(mut req: axum::extract::Request, next: Next) -> Response {
    let shared = SharedFlash::default();
    req.extensions_mut().insert(shared.clone());
    let resp = next.run(req).await;
    let (session, write) = {
        let Ok(mut slot) = shared.0.lock() else {
            return resp;
        };
        let write = slot.changed.then(|| slot.set.take());
        (slot.session.take(), write)
    };
    if let (Some((store, id_hash)), Some(flash)) = (session, write) {
        let flash = flash
            .as_ref()
            .map(|f| (flash_kind(f.kind), f.text.as_str()));
        if let Err(e) = store.set_session_flash(&id_hash, flash).await {
            tracing::warn!(error = %e, "console: the flash message was not stored");
        }
    }
    resp
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
        let Some(flash) = parts.extensions.get::<SharedFlash>().cloned() else {
            return Err(
                ConsoleError::Api(ApiError::Internal("no flash slot".into())).into_response(),
            );
        };
        let now = st.clock.now();
        let found = match cookie(&parts.headers, COOKIE_NAME) {
            Some(id) if !id.is_empty() => {
                let id_hash = sha256_hex(id.as_bytes());
                match st.store.live_session(&id_hash, now).await {
                    Ok(rec) => rec.map(|r| (id_hash, r)),
                    Err(e) => return Err(ConsoleError::Api(e.into()).into_response()),
                }
            }
            _ => None,
        };
        let Some((id_hash, d)) = found else {
            // Come back here after login (pages only: a form's body is gone anyway).
            let mut resp = see_other("/login");
            let next = parts
                .uri
                .path_and_query()
                .map_or("/", axum::http::uri::PathAndQuery::as_str);
            if parts.method == axum::http::Method::GET {
                if let Some(v) = safe_next(next).and_then(|n| set_cookie(NEXT_COOKIE, n, 3600).ok())
                {
                    resp.headers_mut().append(SET_COOKIE, v);
                }
            }
            return Err(resp);
        };
        let actor = Actor {
            user: d.user,
            token: d.token.unwrap_or_default(),
            role: d.role,
        }
        .label();
        if let Some(slot) = parts.extensions.get::<crate::audit::AuditSlot>() {
            slot.set(actor.clone());
        }
        let needed = needed_role(&parts.method, parts.uri.path());
        if !d.role.allows(needed) {
            tracing::warn!(
                actor = %actor,
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
        if let Ok(mut slot) = flash.0.lock() {
            slot.session = Some((st.store.clone(), id_hash.clone()));
            slot.loaded = d.flash.map(|(kind, text)| Flash {
                kind: kind.as_str(),
                text,
            });
        }
        Ok(Session {
            id_hash,
            actor,
            csrf: d.csrf,
            store: st.store.clone(),
            flash,
        })
    }
}

/// The role a console request needs: reading and logging out any, Notify All Clients and
/// promoting, halting or rolling back a rollout an operator (as in the API), the audit log
/// and every other form an admin.
fn needed_role(method: &axum::http::Method, path: &str) -> UserRole {
    if path == "/audit" {
        UserRole::Admin
    } else if method == axum::http::Method::GET
        || method == axum::http::Method::HEAD
        || path == "/logout"
    {
        UserRole::Viewer
    } else if path == "/notify" || path.starts_with("/programs/rollouts/") {
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
    st.store
        .create_session(NewSession {
            id_hash: &sha256_hex(id.as_bytes()),
            user: &actor.user,
            token: Some(actor.token.as_str()).filter(|t| !t.is_empty()),
            role: actor.role,
            csrf: &csrf,
            expires_at: now + LIFETIME_SECS,
        })
        .await
        .map_err(ApiError::from)?;
    tracing::info!(user = %actor.user, role = actor.role.as_str(), "console login");
    let next = cookie(&headers, NEXT_COOKIE)
        .and_then(safe_next)
        .unwrap_or("/")
        .to_owned();
    let mut resp = see_other(&next);
    let h = resp.headers_mut();
    h.append(SET_COOKIE, set_cookie(NEXT_COOKIE, "", 0)?);
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

/// `POST /logout`: ends the session (its row is deleted: on every replica at once).
pub async fn logout(session: Session, body: Bytes) -> Result<Response, ConsoleError> {
    session.form(&body)?;
    session
        .store
        .end_session(&session.id_hash)
        .await
        .map_err(ApiError::from)?;
    if let Ok(mut slot) = session.flash.0.lock() {
        slot.session = None;
    }
    let mut resp = see_other("/login");
    resp.headers_mut()
        .insert(SET_COOKIE, set_cookie(COOKIE_NAME, "", 0)?);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only same-site console pages are returned to after login.
    #[test]
    fn next_pages() {
        assert_eq!(
            safe_next("/clients?show=failed"),
            Some("/clients?show=failed")
        );
        assert_eq!(safe_next("/"), Some("/"));
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/login",
            "/a b",
            "/x;y",
            "",
            "/\\evil",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
    }

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
