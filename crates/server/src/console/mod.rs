//! The web console (`docs/operating.md`): server-rendered pages (askama, one template per page
//! under `templates/`) at the server's root URL, for administrators. Every page is a view over the
//! same model and code paths as the admin API: reads come from `store::current` and the client
//! registry, and every write calls the API's own handler (with the page's policy revision as
//! `If-Match`), so a stale form is refused exactly like a stale API call.
//!
//! Login takes the admin token once and opens a session kept in the Store (shared by every
//! replica, `docs/operating.md#console-sessions`): an `HttpOnly`, `SameSite=Strict` cookie
//! plus a per-session CSRF token carried by every form.

mod agents;
mod audit;
mod chart;
mod clients;
mod compliance;
mod dashboard;
mod domains;
mod entry;
mod form;
mod programs;
mod session;
mod sources;
mod view;
mod whatif;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// The stylesheet, embedded in the binary (no external fetches).
const CSS: &str = include_str!("../../assets/console.css");
/// htmx 2.0.11 (0BSD, `assets/htmx.LICENSE`), vendored: it boosts links and forms into
/// in-page swaps; every page works the same without it.
const HTMX: &str = include_str!("../../assets/htmx.min.js");
/// Focus handling after in-page swaps.
const JS: &str = include_str!("../../assets/console.js");

/// Every console route; sessions live in the Store.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/sources", get(sources::page))
        .route("/sources/settings", post(sources::save_settings))
        .route("/sources/delete", post(sources::delete))
        .route("/sources/add", get(entry::add_page).post(entry::add))
        .route("/sources/{id}", get(entry::edit_page).post(entry::edit))
        .route("/sources/{id}/up", post(sources::move_up))
        .route("/sources/{id}/down", post(sources::move_down))
        .route("/notify", post(sources::notify))
        .route("/whatif", get(whatif::page))
        .route("/compliance", get(compliance::page))
        .route("/clients", get(clients::list))
        .route("/clients.csv", get(clients::csv))
        .route("/clients/{id}", get(clients::detail))
        .route("/agents", get(agents::page).post(agents::add))
        .route("/agents/remove", post(agents::remove))
        .route("/audit", get(audit::page))
        .route("/domains", get(domains::page))
        .route(
            "/domains/{name}",
            get(domains::edit_page).post(domains::save),
        )
        .route("/domain-privilege", post(domains::set_privilege))
        .route("/domain-open", get(domains::open))
        .route("/programs", get(programs::page))
        .route("/programs/rollouts/{id}/{action}", post(programs::act))
        .route("/assets/console.css", get(css))
        .route("/assets/htmx.min.js", get(htmx))
        .route("/assets/console.js", get(js))
        .layer(axum::middleware::from_fn(session::flash_layer))
        .layer(axum::middleware::map_response(too_large_page))
}

/// The console's 413 page for a request to `path` over the body limit `max`, or `None`
/// when `path` is not the console's (the API answers its JSON error).
pub fn too_large(path: &str, max: usize) -> Option<Response> {
    let api = ["/api/", "/repo/", "/metrics", "/healthz"]
        .iter()
        .any(|p| path.starts_with(p));
    if api {
        return None;
    }
    let page = view::ErrorPage {
        status: 413,
        message: format!(
            "The form was too large to accept (more than {} KiB; a field holds far more text \
             than any setting takes). Nothing was saved: go back, shorten the field and try \
             again.",
            max / 1024
        ),
    };
    askama::Template::render(&page)
        .ok()
        .map(|body| view::html(StatusCode::PAYLOAD_TOO_LARGE, body))
}

/// A body over the limit without a declared length is refused by the body extractor, as
/// plain text; the console answers its own error page instead, in plain words.
async fn too_large_page(resp: Response) -> Response {
    let is_html = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if resp.status() != StatusCode::PAYLOAD_TOO_LARGE || is_html {
        return resp;
    }
    let page = view::ErrorPage {
        status: 413,
        message: "The form was too large to accept (a field holds far more text than any \
                  setting takes). Nothing was saved: go back, shorten the field and try again."
            .to_owned(),
    };
    match askama::Template::render(&page) {
        Ok(body) => view::html(StatusCode::PAYLOAD_TOO_LARGE, body),
        Err(_) => resp,
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("max-age=3600")),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn htmx() -> Response {
    asset("text/javascript; charset=utf-8", HTMX)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// Why a console request failed as a whole (form errors are shown on the form instead).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The API refused or failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A template failed to render.
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    /// A form without the session's CSRF token.
    #[error("the form's CSRF token is missing or does not match this session; reload the page and try again")]
    Csrf,
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            ConsoleError::Api(e) => e.status(),
            ConsoleError::Template(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ConsoleError::Csrf => StatusCode::FORBIDDEN,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "console request failed");
        }
        let page = view::ErrorPage {
            status: status.as_u16(),
            message: self.to_string(),
        };
        match askama::Template::render(&page) {
            Ok(body) => view::html(status, body),
            Err(_) => (status, self.to_string()).into_response(),
        }
    }
}
