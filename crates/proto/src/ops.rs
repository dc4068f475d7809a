//! Bodies of the operations routes: liveness (`/healthz`) and mirroring the upstream
//! (`/api/repo/mirror`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether the server can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The database answers.
    Ok,
    /// It does not (503).
    Unavailable,
}

/// `GET /healthz` answer: `{status: ok, revision}` or (503) `{status: unavailable, error}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: HealthStatus,
    /// The policy revision (when `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Why the database does not answer (when `unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a mirror run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MirrorOutcome {
    /// The upstream was copied and verified.
    Ok,
    /// It failed; the served copy is unchanged.
    Failed,
}

/// What a mirror run fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MirrorReport {
    /// Targets fetched in this run.
    pub fetched: usize,
    /// Targets already present with the right hash.
    pub present: usize,
    /// Bytes fetched.
    pub bytes: u64,
    /// Snapshot version now served by the mirror.
    pub snapshot_version: u64,
}

/// One mirror run (`POST /api/repo/mirror` answer, and `last` of `GET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MirrorStatus {
    /// Unix seconds when it finished.
    pub finished_at: i64,
    /// The upstream URL used.
    pub upstream: String,
    /// `ok` or `failed`.
    pub outcome: MirrorOutcome,
    /// What was fetched (on success).
    pub report: Option<MirrorReport>,
    /// `[code, message]` (on failure).
    #[schema(value_type = Option<Vec<String>>)]
    pub error: Option<(String, String)>,
}

/// `GET /api/repo/mirror` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MirrorState {
    /// Whether the server was started with an upstream root to mirror against.
    pub configured: bool,
    /// The last run; `null` before the first.
    pub last: Option<MirrorStatus>,
}
