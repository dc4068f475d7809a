//! The web console (`docs/operating.md`): server-rendered pages (askama, one template per page
//! under `templates/`) at the server's root URL, for administrators. Every page is a view over the
//! same model and code paths as the admin API: reads come from `store::current` and the client
//! registry, and every write calls the API's own handler (with the page's policy revision as
//! `If-Match`), so a stale form is refused exactly like a stale API call.
//!
//! Login takes the admin token once and opens an in-memory session: an `HttpOnly`,
//! `SameSite=Strict` cookie plus a per-session CSRF token carried by every form.

mod agents;
mod audit;
mod clients;
mod dashboard;
mod domains;
mod entry;
mod form;
mod session;
mod sources;
mod view;
mod whatif;

use std::sync::Arc;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::error::ApiError;
use crate::state::AppState;

pub use session::Sessions;

/// The stylesheet, embedded in the binary (no external fetches).
const CSS: &str = include_str!("../../assets/console.css");
/// htmx 2.0.11 (0BSD, `assets/htmx.LICENSE`), vendored: it boosts links and forms into
/// in-page swaps; every page works the same without it.
const HTMX: &str = include_str!("../../assets/htmx.min.js");
/// Focus handling after in-page swaps.
const JS: &str = include_str!("../../assets/console.js");

/// Every console route, with a fresh in-memory session store.
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
        .route("/clients", get(clients::list))
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
        .route("/assets/console.css", get(css))
        .route("/assets/htmx.min.js", get(htmx))
        .route("/assets/console.js", get(js))
        .layer(Extension(Arc::new(Sessions::default())))
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
