//! The HTTP routes and the small helpers they share (revision headers, JSON with `ETag`).
//! Every JSON API route is registered through [`api`], which takes each handler's
//! `#[utoipa::path]` description with it, so the router and `/api/openapi.json` cannot
//! drift apart. Handlers take and return `cascade-proto` types.
//! Handlers' errors are the API's error responses (`crate::error`), listed per route in the
//! OpenAPI document, so they carry no `# Errors` sections.
#![allow(clippy::missing_errors_doc)]

pub mod accounts;
pub mod admin;
pub mod client;
pub mod delegations;
pub mod domains;
pub mod fleet;
pub mod ops;
pub mod policy;
pub mod programs;
pub mod rollouts;
pub mod sources;

use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// Every JSON API route with its OpenAPI description (the document's `paths`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(policy::get_policy, policy::put_policy))
        .routes(routes!(policy::restore_policy))
        .routes(routes!(accounts::audit))
        .routes(routes!(policy::get_settings, policy::patch_settings))
        .routes(routes!(policy::list_domains))
        .routes(routes!(policy::put_domain, policy::delete_domain))
        .routes(routes!(domains::list))
        .routes(routes!(domains::get_one, domains::put_one))
        .routes(routes!(policy::list_agents, policy::add_agent))
        .routes(routes!(policy::remove_agent))
        .routes(routes!(sources::list, sources::add))
        .routes(routes!(sources::delete_set))
        .routes(routes!(sources::edit))
        .routes(routes!(sources::move_one))
        .routes(routes!(sources::resolve))
        .routes(routes!(ops::mirror_status, ops::mirror_now))
        .routes(routes!(admin::notify))
        .routes(routes!(admin::list_clients))
        .routes(routes!(fleet::health))
        .routes(routes!(fleet::compliance))
        .routes(routes!(admin::get_client, admin::delete_client))
        .routes(routes!(admin::enrollment_token))
        .routes(routes!(admin::rotate_enrollment_token))
        .routes(routes!(
            admin::list_enrollment_tokens,
            admin::create_enrollment_token
        ))
        .routes(routes!(admin::revoke_enrollment_token))
        .routes(routes!(admin::approve_agent))
        .routes(routes!(accounts::list_users, accounts::create_user))
        .routes(routes!(accounts::patch_user, accounts::delete_user))
        .routes(routes!(accounts::list_tokens, accounts::create_token))
        .routes(routes!(accounts::revoke_token))
        .routes(routes!(programs::list))
        .routes(routes!(programs::upload))
        .routes(routes!(delegations::stage_file))
        .routes(routes!(delegations::publish, delegations::delegate))
        .routes(routes!(rollouts::list, rollouts::start))
        .routes(routes!(rollouts::get_one))
        .routes(routes!(rollouts::promote))
        .routes(routes!(rollouts::halt))
        .routes(routes!(rollouts::rollback))
        .routes(routes!(client::enroll))
        .routes(routes!(client::policy))
        .routes(routes!(client::status))
        .routes(routes!(client::checkin))
        .routes(routes!(client::events))
}

/// Every route of the server: the JSON API, the repository and the console.
pub fn router(state: AppState) -> Router {
    let (api, _) = api().split_for_parts();
    api.layer(axum::middleware::from_fn(crate::limits::no_store))
        .route("/ca.pem", get(crate::tls::serve_ca))
        .route(
            "/repo/{*path}",
            get(crate::repo::serve).head(crate::repo::serve),
        )
        .merge(crate::console::router())
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .layer(from_fn_with_state(state.clone(), crate::audit::record))
        .layer(from_fn_with_state(state.clone(), crate::limits::guard))
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .with_state(state)
}

/// When a new token expires: `now + expires_in_secs`, or never when absent.
///
/// # Errors
/// 400 naming `expires_in_secs` when it is not a positive number of seconds.
pub fn expiry(now: i64, expires_in_secs: Option<i64>) -> Result<Option<i64>, ApiError> {
    match expires_in_secs {
        None => Ok(None),
        Some(s) if s > 0 => Ok(Some(now.saturating_add(s))),
        Some(s) => Err(ApiError::bad(
            "request.expires_in_secs",
            "expires_in_secs",
            format!("expires_in_secs: `{s}` must be a positive number of seconds"),
        )),
    }
}

/// The revision named by `If-Match` (`"7"`, `7`), or `None` for `*` (write whatever the
/// current revision is, said on purpose). Every policy write needs the header
/// (`docs/api.md#limits`): without it a write from a stale read would silently drop another
/// administrator's change.
///
/// # Errors
/// 428 when there is no `If-Match`; 400 naming `If-Match` when it is not a revision number.
pub fn expected_revision(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(IF_MATCH) else {
        return Err(ApiError::PreconditionRequired(
            "policy writes need `If-Match: \"REVISION\"` (the revision you read, from GET \
             /api/policy or its ETag; `*` to overwrite whatever is current)",
        ));
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
            format!(
                "If-Match: `{}` is not a policy revision (expected e.g. \"7\")",
                cascade_proto::limits::cut(text)
            ),
        )
    })
}

/// A JSON answer carrying the policy revision it was read at or written as, sent as `ETag`.
#[derive(Debug)]
pub struct Revisioned<T> {
    /// The HTTP status (200, or 201 for a creation).
    pub status: StatusCode,
    /// The policy revision.
    pub revision: i64,
    /// The body.
    pub body: T,
}

impl<T> Revisioned<T> {
    /// A 200 answer.
    pub fn ok(revision: i64, body: T) -> Self {
        Revisioned {
            status: StatusCode::OK,
            revision,
            body,
        }
    }

    /// A 201 answer.
    pub fn created(revision: i64, body: T) -> Self {
        Revisioned {
            status: StatusCode::CREATED,
            revision,
            body,
        }
    }
}

impl<T: Serialize> IntoResponse for Revisioned<T> {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", self.revision)) {
            resp.headers_mut().insert(ETAG, v);
        }
        resp
    }
}
