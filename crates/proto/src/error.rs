//! The one error body every failed API request answers with:
//! `{"error":{"code":…,"field":…,"message":…}}`. `code` is stable for scripts, `field`
//! names the request field at fault (dotted path, 1-based indexes where a person counts)
//! and `message` repeats the value.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every 4xx/5xx answer of the JSON API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for scripts (`code`, `field`) and people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `policy.range`, `request.json`, `auth.unauthorized`.
    pub code: String,
    /// The request field at fault (e.g. `sources[3].range`, `If-Match`), when there is one.
    pub field: Option<String>,
    /// What is wrong, naming the value.
    pub message: String,
    /// On `policy.stale_revision` (409): the revision now stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<i64>,
    /// On `mirror.upstream_failed` (502): the upstream failure's stable code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
