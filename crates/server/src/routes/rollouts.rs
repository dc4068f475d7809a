//! The rollout routes (`docs/operating.md#rollouts`): list and read rollouts, start one,
//! and promote, halt or roll back one by hand. The logic is `crate::rollout`; the audit
//! middleware records every write, refused or not.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use cascade_proto::{NewRollout, RolloutAction, RolloutView, RolloutsResponse};
use utoipa::IntoResponses;

use crate::auth::{Operator, Viewer};
use crate::error::{ApiError, ApiJson};
use crate::openapi::{NotFound, Refusals, TooLarge};
use crate::rollout::{self, Action};
use crate::state::AppState;

/// What a rollout write may answer besides [`Refusals`].
#[derive(IntoResponses)]
#[allow(dead_code)] // a description for the document, never built
pub enum RolloutConflict {
    /// Its state does not allow this, another rollout of the program is rolling or newer, or
    /// it changed meanwhile.
    #[response(
        status = 409,
        description = "`rollout.state`, `rollout.active`, `rollout.superseded` or `rollout.changed`"
    )]
    Conflict(cascade_proto::ErrorBody),
}

/// `GET /api/rollouts`: every rollout, newest first, with each ring's counts.
#[utoipa::path(get, path = "/api/rollouts", tag = "programs",
    summary = "Rollouts, newest first, with each ring's state, clients, updated and failing counts",
    security(("admin" = [])),
    responses((status = 200, description = "The rollouts", body = RolloutsResponse), Refusals))]
pub async fn list(
    Viewer(_): Viewer,
    State(st): State<AppState>,
) -> Result<Json<RolloutsResponse>, ApiError> {
    Ok(Json(rollout::list(&st.store).await?))
}

/// `POST /api/rollouts`: start rolling a program version out in rings.
#[utoipa::path(post, path = "/api/rollouts", tag = "programs",
    summary = "Start a rollout: the version goes to ring 1; clients outside it keep the previous version",
    security(("admin" = [])),
    request_body = NewRollout,
    responses((status = 201, description = "Started; ring 1 is notified", body = RolloutView),
        Refusals, TooLarge, RolloutConflict))]
pub async fn start(
    Operator(actor): Operator,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<NewRollout>,
) -> Result<(StatusCode, Json<RolloutView>), ApiError> {
    let view = rollout::start(&st, &body, &actor).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/rollouts/{id}`: one rollout.
#[utoipa::path(get, path = "/api/rollouts/{id}", tag = "programs",
    summary = "One rollout with each ring's counts",
    security(("admin" = [])),
    params(("id" = i64, Path, description = "The rollout's id")),
    responses((status = 200, description = "The rollout", body = RolloutView), Refusals, NotFound))]
pub async fn get_one(
    Viewer(_): Viewer,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, ApiError> {
    Ok(Json(rollout::one(&st.store, parse_id(&id)?).await?))
}

/// `POST /api/rollouts/{id}/promote`: to the next ring now (completed after the last);
/// resumes a halted rollout.
#[utoipa::path(post, path = "/api/rollouts/{id}/promote", tag = "programs",
    summary = "Promote a rollout to its next ring now (or complete it); resumes a halted one",
    security(("admin" = [])),
    params(("id" = i64, Path, description = "The rollout's id")),
    request_body(content = RolloutAction, description = "Optional: why"),
    responses((status = 200, description = "Promoted", body = RolloutView),
        Refusals, NotFound, TooLarge, RolloutConflict))]
pub async fn promote(
    Operator(actor): Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RolloutView>, ApiError> {
    act(&st, &id, Action::Promote, &actor, &body).await
}

/// `POST /api/rollouts/{id}/halt`: stop where it is.
#[utoipa::path(post, path = "/api/rollouts/{id}/halt", tag = "programs",
    summary = "Halt a rollout in its current ring",
    security(("admin" = [])),
    params(("id" = i64, Path, description = "The rollout's id")),
    request_body(content = RolloutAction, description = "Optional: why"),
    responses((status = 200, description = "Halted", body = RolloutView),
        Refusals, NotFound, TooLarge, RolloutConflict))]
pub async fn halt(
    Operator(actor): Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RolloutView>, ApiError> {
    act(&st, &id, Action::Halt, &actor, &body).await
}

/// `POST /api/rollouts/{id}/rollback`: every client back to the previous version.
#[utoipa::path(post, path = "/api/rollouts/{id}/rollback", tag = "programs",
    summary = "Roll a rollout back: every client is pinned to the previous version",
    security(("admin" = [])),
    params(("id" = i64, Path, description = "The rollout's id")),
    request_body(content = RolloutAction, description = "Optional: why"),
    responses((status = 200, description = "Rolled back; every client is notified", body = RolloutView),
        Refusals, NotFound, TooLarge, RolloutConflict))]
pub async fn rollback(
    Operator(actor): Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RolloutView>, ApiError> {
    act(&st, &id, Action::RollBack, &actor, &body).await
}

async fn act(
    st: &AppState,
    id: &str,
    action: Action,
    actor: &str,
    body: &[u8],
) -> Result<Json<RolloutView>, ApiError> {
    let id = parse_id(id)?;
    let body: RolloutAction = if body.iter().all(u8::is_ascii_whitespace) {
        RolloutAction::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad("request.json", "body", e.to_string()))?
    };
    let reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    Ok(Json(rollout::act(st, id, action, actor, reason).await?))
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad(
            "request.id",
            "id",
            format!(
                "id: `{}` is not a rollout id (a positive number)",
                cascade_proto::limits::cut(text)
            ),
        )
    })
}
