//! The fleet views (`docs/operating.md#health`): the health of every update agent and URL
//! source, and compliance by version per category, computed by `crate::fleet` (the same
//! calls the console and the CLI use).

use axum::extract::State;
use axum::Json;
use cascade_proto::{ComplianceResponse, FleetHealth};

use crate::auth::Viewer;
use crate::error::ApiError;
use crate::openapi::Refusals;
use crate::state::AppState;

/// `GET /api/fleet/health`.
#[utoipa::path(get, path = "/api/fleet/health", tag = "clients",
    summary = "Health of every update agent and URL source: healthy, degraded, down or unknown, from clients' reports and the agents' check-ins",
    security(("admin" = [])),
    responses((status = 200, description = "Every source's health", body = FleetHealth), Refusals))]
pub async fn health(_: Viewer, State(st): State<AppState>) -> Result<Json<FleetHealth>, ApiError> {
    Ok(Json(crate::fleet::health(&st).await?))
}

/// `GET /api/fleet/compliance`.
#[utoipa::path(get, path = "/api/fleet/compliance", tag = "clients",
    summary = "Compliance by version per category: the newest published version and how many clients have it, are behind, never installed or failed",
    security(("admin" = [])),
    responses((status = 200, description = "Compliance per category", body = ComplianceResponse), Refusals))]
pub async fn compliance(
    _: Viewer,
    State(st): State<AppState>,
) -> Result<Json<ComplianceResponse>, ApiError> {
    Ok(Json(crate::fleet::compliance(&st).await?))
}
