//! The HTTP routes and the small helpers they share (revision headers, JSON with `ETag`).
//! Handlers' errors are the API's error responses (`crate::error`), listed per route in the
//! OpenAPI document, so they carry no `# Errors` sections.
#![allow(clippy::missing_errors_doc)]

pub mod admin;
pub mod client;
pub mod ops;
pub mod policy;
pub mod sources;

use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/api/openapi.json", get(ops::openapi))
        .route(
            "/api/policy",
            get(policy::get_policy).put(policy::put_policy),
        )
        .route(
            "/api/policy/settings",
            get(policy::get_settings).patch(policy::patch_settings),
        )
        .route("/api/policy/domains", get(policy::list_domains))
        .route(
            "/api/policy/domains/{name}",
            put(policy::put_domain).delete(policy::delete_domain),
        )
        .route(
            "/api/agents",
            get(policy::list_agents).post(policy::add_agent),
        )
        .route("/api/agents/{address}", delete(policy::remove_agent))
        .route("/api/sources", get(sources::list).post(sources::add))
        .route("/api/sources/delete", post(sources::delete_set))
        .route("/api/sources/{id}", put(sources::edit))
        .route("/api/sources/{id}/move", post(sources::move_one))
        .route("/api/resolve", get(sources::resolve))
        .route(
            "/api/repo/mirror",
            get(ops::mirror_status).post(ops::mirror_now),
        )
        .route("/api/notify", post(admin::notify))
        .route("/api/clients", get(admin::list_clients))
        .route(
            "/api/clients/{id}",
            get(admin::get_client).delete(admin::delete_client),
        )
        .route("/api/enrollment-token", get(admin::enrollment_token))
        .route(
            "/api/enrollment-token/rotate",
            post(admin::rotate_enrollment_token),
        )
        .route("/api/client/enroll", post(client::enroll))
        .route("/api/client/policy", get(client::policy))
        .route("/api/client/status", get(client::status))
        .route("/api/client/checkin", post(client::checkin))
        .route("/api/client/events", get(client::events))
        .route(
            "/repo/{*path}",
            get(crate::repo::serve).head(crate::repo::serve),
        )
        .merge(crate::console::router())
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .with_state(state)
}

/// The revision named by `If-Match` (`"7"`, `7` or `*`), if any.
///
/// # Errors
/// 400 naming `If-Match` when it is not a revision number.
pub fn expected_revision(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad(
            "request.if_match",
            "If-Match",
            format!("If-Match: `{text}` is not a policy revision (expected e.g. \"7\")"),
        )
    })
}

/// JSON with the policy revision as `ETag`.
pub fn with_revision<T: Serialize>(status: StatusCode, revision: i64, body: &T) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        resp.headers_mut().insert(ETAG, v);
    }
    resp
}
