//! Mirroring the upstream repository (the policy's `activeupdate_url`) into
//! `<repo-dir>/upstream/`, verified against the upstream root the operator trusts, on a
//! schedule and on demand (`POST /api/repo/mirror`). `cascade-repo`'s `mirror` fetches targets
//! first, metadata exactly as signed and `timestamp.json` last, so what `/repo/upstream/`
//! serves is always a consistent, verified copy; a failed run leaves it unchanged.
//!
//! On PostgreSQL (replicas, `docs/operating.md#shared-repository-and-one-writer`) a run takes
//! the database's mirror writer lock (waiting for a run of another replica to end), brings
//! `upstream/` to the newest stored tree version first, and stores a successful run's result
//! as the next version, which every other replica materializes. The scheduled runs are the
//! mirror leader's alone (`crate::shared::lead_mirror`); a run asked for on any replica
//! (`POST /api/repo/mirror`) goes through the same lock.

use std::path::Path;
use std::sync::Mutex;

use cascade_proto::{MirrorOutcome, MirrorReport, MirrorStatus};
use cascade_repo::mirror::mirror;
use cascade_repo::{RepoClient, RepoSource};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::settings::Clock;
pub use crate::settings::MirrorSettings;
use crate::store::{Store, StoreError};

/// Mirror state kept in the server state.
#[derive(Debug, Default)]
pub struct Mirror {
    /// Configuration; `None` when no upstream root was given.
    pub settings: Option<MirrorSettings>,
    /// One run at a time.
    pub running: tokio::sync::Mutex<()>,
    /// The last run.
    pub last: Mutex<Option<MirrorStatus>>,
}

/// What one mirror run uses.
pub struct Job<'a> {
    /// Configuration, the run lock and the last result.
    pub mirror: &'a Mirror,
    /// Where the policy (its `activeupdate_url`) is read.
    pub store: &'a Store,
    /// Stamps the result.
    pub clock: &'a dyn Clock,
    /// Counts runs.
    pub metrics: &'a Metrics,
    /// Holds the mirror's trust state (`mirror-state/`).
    pub data_dir: &'a Path,
    /// The repository directory (the copy lands in `upstream/`).
    pub repo_dir: &'a Path,
    /// The replicas' shared repository, on PostgreSQL.
    pub shared: Option<&'a crate::shared::Shared>,
}

/// Why a mirror run could not start. (An upstream that fails is not an error of the run:
/// it is the run's result, [`MirrorOutcome::Failed`].)
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The server was started without an upstream root to verify against.
    #[error("mirroring is off: start the server with --upstream-root ROOT.json")]
    NotConfigured,
    /// The policy has no `activeupdate_url`.
    #[error("activeupdate_url: the policy names no upstream to mirror")]
    NoUpstream,
    /// The trusted root file could not be read.
    #[error("{path}: {source}")]
    TrustedRoot {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The policy could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The replicas' shared repository could not be locked or read.
    #[error(transparent)]
    Shared(#[from] crate::shared::SharedError),
}

impl From<MirrorError> for ApiError {
    fn from(e: MirrorError) -> Self {
        match e {
            MirrorError::NotConfigured => {
                ApiError::bad("mirror.not_configured", "upstream_root", e.to_string())
            }
            MirrorError::NoUpstream => {
                ApiError::bad("mirror.no_upstream", "activeupdate_url", e.to_string())
            }
            MirrorError::TrustedRoot { .. } => ApiError::Internal(e.to_string()),
            MirrorError::Store(s) => s.into(),
            MirrorError::Shared(e) => ApiError::Internal(format!("[{}] {e}", e.code())),
        }
    }
}

/// Mirrors once now.
///
/// # Errors
/// [`MirrorError`] when the run cannot start; an upstream failure is the result's
/// `outcome` (the served copy is unchanged then).
pub async fn run_once(st: &Job<'_>) -> Result<MirrorStatus, MirrorError> {
    let Some(cfg) = st.mirror.settings.clone() else {
        return Err(MirrorError::NotConfigured);
    };
    let policy = st.store.current().await?.policy;
    let Some(url) = policy.activeupdate_url else {
        return Err(MirrorError::NoUpstream);
    };
    let _one = st.mirror.running.lock().await;
    let root = tokio::fs::read(&cfg.trusted_root)
        .await
        .map_err(|e| MirrorError::TrustedRoot {
            path: cfg.trusted_root.display().to_string(),
            source: e,
        })?;
    let datastore = st.data_dir.join("mirror-state");
    let dest = st.repo_dir.join("upstream");
    let lock = match st.shared {
        Some(sh) => {
            let lock = sh.lock(crate::shared::Writer::Mirror, None).await?;
            sh.materialize(crate::shared::Tree::Upstream, &dest).await?;
            lock
        }
        None => None,
    };
    let result = match RepoClient::new(root, &datastore, cfg.limits) {
        Ok(client) => mirror(&client, &RepoSource::new(url.clone()), &dest).await,
        Err(e) => Err(e),
    };
    let stored = match (&result, st.shared) {
        (Ok(_), Some(sh)) => sh
            .publish_tree(crate::shared::Tree::Upstream, &dest, "mirror")
            .await
            .map(Some),
        _ => Ok(None),
    };
    if let Some(lock) = lock {
        lock.release().await;
    }
    let status = match (result, stored) {
        (Ok(_), Err(e)) => {
            tracing::warn!(upstream = %url, error = %e, "mirrored, but not stored for the other replicas");
            failed(st.clock.now(), &url, e.code(), e.to_string())
        }
        (Ok(report), _) => {
            tracing::info!(upstream = %url, fetched = report.fetched, "mirrored upstream");
            MirrorStatus {
                finished_at: st.clock.now(),
                upstream: url.to_string(),
                outcome: MirrorOutcome::Ok,
                report: Some(MirrorReport {
                    fetched: report.fetched,
                    present: report.present,
                    bytes: report.bytes,
                    snapshot_version: report.snapshot_version,
                }),
                error: None,
            }
        }
        (Err(e), _) => {
            tracing::warn!(upstream = %url, error = %e, "mirroring the upstream failed");
            failed(st.clock.now(), &url, e.code(), e.to_string())
        }
    };
    st.metrics.mirrored(status.outcome == MirrorOutcome::Ok);
    if let Ok(mut last) = st.mirror.last.lock() {
        *last = Some(status.clone());
    }
    Ok(status)
}

/// The status of a mirror run of `upstream` that failed with `code` and `message`.
fn failed(
    finished_at: i64,
    upstream: &impl std::fmt::Display,
    code: &str,
    message: String,
) -> MirrorStatus {
    MirrorStatus {
        finished_at,
        upstream: upstream.to_string(),
        outcome: MirrorOutcome::Failed,
        report: None,
        error: Some((code.to_owned(), message)),
    }
}
