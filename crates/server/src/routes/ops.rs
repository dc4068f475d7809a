//! Operations: `/healthz` (the database answers), `/metrics` (Prometheus text) and the
//! OpenAPI document.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sqlx::Row;

use super::admin::{client_state, STATES};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::notify::Role;
use crate::state::AppState;

/// `GET /healthz`: 200 `{status: ok, revision}` when the database answers, else 503.
pub async fn healthz(State(st): State<AppState>) -> Response {
    match sqlx::query("SELECT revision FROM policy WHERE id = 1")
        .fetch_one(&st.db.pool)
        .await
        .and_then(|r| r.try_get::<i64, _>("revision"))
    {
        Ok(rev) => Json(json!({"status": "ok", "revision": rev})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": e.to_string()})),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let rows = sqlx::query("SELECT last_seen, last_outcome FROM clients")
        .fetch_all(&st.db.pool)
        .await?;
    let now = st.clock.now();
    let stale = i64::try_from(st.stale_after.as_secs()).unwrap_or(i64::MAX);
    let mut counts = [0u64; STATES.len()];
    for r in rows {
        let seen: Option<i64> = r.try_get("last_seen")?;
        let outcome: Option<String> = r.try_get("last_outcome")?;
        let s = client_state(seen, outcome.as_deref(), now, stale);
        if let Some(i) = STATES.iter().position(|x| *x == s) {
            counts[i] += 1;
        }
    }
    let clients: Vec<(&str, u64)> = STATES.iter().copied().zip(counts).collect();
    let streams = [
        (Role::Agent, st.notifier.connected(Role::Agent)),
        (Role::Client, st.notifier.connected(Role::Client)),
    ];
    let text = st.metrics.render(&clients, &streams);
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `GET /api/repo/mirror`: the last mirror run (`null` before the first).
pub async fn mirror_status(_: Admin, State(st): State<AppState>) -> Response {
    let last = st.mirror.last.lock().ok().and_then(|l| l.clone());
    Json(json!({"configured": st.mirror.settings.is_some(), "last": last})).into_response()
}

/// `POST /api/repo/mirror`: mirror the upstream now; 502 naming the reason when it fails.
pub async fn mirror_now(_: Admin, State(st): State<AppState>) -> Result<Response, ApiError> {
    let status = crate::mirror::run_once(&st).await?;
    match status.error {
        Some((code, message)) => Err(ApiError::Upstream { code, message }),
        None => Ok(Json(status).into_response()),
    }
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}
