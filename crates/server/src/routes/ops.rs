//! Operations: `/healthz` (the database answers), `/metrics` (Prometheus text), the
//! OpenAPI document and mirroring the upstream.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_proto::{ClientState, Health, HealthStatus, MirrorState, MirrorStatus};

use super::admin::{client_state, stale_secs};
use crate::auth::{Admin, Viewer};
use crate::error::ApiError;
use crate::notify::Role;
use crate::openapi::{Refusals, UpstreamFailed};
use crate::state::AppState;
use crate::store::Store;

/// `GET /healthz`: 200 `{status: ok, revision}` when the database answers, else 503.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    summary = "Liveness: 200 with the policy revision when the database answers",
    responses((status = 200, description = "The database answers", body = Health),
        (status = 503, description = "The database does not answer", body = Health)))]
pub async fn healthz(State(store): State<Store>) -> (StatusCode, Json<Health>) {
    match store.revision().await {
        Ok(rev) => (
            StatusCode::OK,
            Json(Health {
                status: HealthStatus::Ok,
                revision: Some(rev),
                error: None,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthStatus::Unavailable,
                revision: None,
                error: Some(e.to_string()),
            }),
        ),
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    summary = "Prometheus text metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "A metrics token is configured (`--metrics-token`) and was not given", body = cascade_proto::ErrorBody),
        (status = 500, description = "The database failed", body = cascade_proto::ErrorBody)))]
pub async fn metrics(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if !crate::limits::metrics_allowed(st.metrics_token.as_deref(), &headers) {
        return Err(ApiError::Unauthorized(
            "/metrics needs `Authorization: Bearer <metrics token>` (--metrics-token)",
        ));
    }
    let now = st.clock.now();
    let stale = stale_secs(&st);
    let mut counts = [0u64; ClientState::ALL.len()];
    for (seen, last) in st.store.client_activity().await? {
        let s = client_state(seen, last, now, stale);
        if let Some(i) = ClientState::ALL.iter().position(|x| *x == s) {
            counts[i] += 1;
        }
    }
    let clients: Vec<(&str, u64)> = ClientState::ALL
        .iter()
        .map(|s| s.as_str())
        .zip(counts)
        .collect();
    let streams = [
        (Role::Agent, st.notifier.connected(Role::Agent)),
        (Role::Client, st.notifier.connected(Role::Client)),
    ];
    let text = st.metrics.render(&clients, &streams);
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `GET /api/repo/mirror`: the last mirror run (`null` before the first).
#[utoipa::path(get, path = "/api/repo/mirror", tag = "ops",
    summary = "Whether mirroring is configured and the last run's result",
    security(("admin" = [])),
    responses((status = 200, description = "Mirroring's state", body = MirrorState), Refusals))]
pub async fn mirror_status(_: Viewer, State(st): State<AppState>) -> Json<MirrorState> {
    let last = st.mirror.last.lock().ok().and_then(|l| l.clone());
    Json(MirrorState {
        configured: st.mirror.settings.is_some(),
        last,
    })
}

/// `POST /api/repo/mirror`: mirror the upstream now; 502 naming the reason when it fails.
#[utoipa::path(post, path = "/api/repo/mirror", tag = "ops",
    summary = "Mirror the upstream (activeupdate_url) into /repo/upstream/ now",
    security(("admin" = [])),
    responses((status = 200, description = "The run", body = MirrorStatus), Refusals, UpstreamFailed))]
pub async fn mirror_now(
    _: Admin,
    State(st): State<AppState>,
) -> Result<Json<MirrorStatus>, ApiError> {
    let status = crate::mirror::run_once(&st.mirror_job()).await?;
    match status.error {
        Some((code, message)) => Err(ApiError::Upstream { code, message }),
        None => Ok(Json(status)),
    }
}

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "ops",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}
