//! The policy store: the whole policy as one JSON document under a revision number. A write
//! is one transaction that reads the current revision, refuses a stale expected revision
//! (409), applies a pure `core` operation and stores the result only if it validates. The
//! `UPDATE … WHERE revision = $current` keeps replicas sharing one PostgreSQL honest too.

use cascade_core::{Policy, PolicyDoc, PolicyError};
use sqlx::Row;

use crate::error::ApiError;
use crate::state::AppState;

/// A policy and its revision.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Monotonic revision; 1 is the default policy of a fresh store.
    pub revision: i64,
    /// The policy.
    pub policy: Policy,
}

fn decode(doc: &str) -> Result<Policy, ApiError> {
    let doc: PolicyDoc = serde_json::from_str(doc)
        .map_err(|e| ApiError::Internal(format!("stored policy does not parse: {e}")))?;
    doc.into_policy()
        .map_err(|e| ApiError::Internal(format!("stored policy is invalid: {e}")))
}

/// The stored policy as JSON text.
///
/// # Errors
/// Only if serialization fails.
pub fn encode(policy: &Policy) -> Result<String, ApiError> {
    serde_json::to_string(&PolicyDoc::from_policy(policy))
        .map_err(|e| ApiError::Internal(format!("policy does not serialize: {e}")))
}

/// The current policy.
///
/// # Errors
/// Database errors; a missing or corrupt row is an internal error.
pub async fn current(state: &AppState) -> Result<Stored, ApiError> {
    let row = sqlx::query("SELECT revision, doc FROM policy WHERE id = 1")
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::Internal("no policy row".into()))?;
    let revision: i64 = row.try_get("revision")?;
    let doc: String = row.try_get("doc")?;
    Ok(Stored {
        revision,
        policy: decode(&doc)?,
    })
}

/// Applies `op` to the current policy in one transaction. `expected` is the revision the
/// caller read (from `If-Match`); `None` applies to whatever is current. An `op` that
/// returns an equal policy stores nothing and keeps the revision.
///
/// # Errors
/// [`ApiError::StaleRevision`] (409), the op's [`PolicyError`] (422), database errors.
pub async fn write<F>(
    state: &AppState,
    expected: Option<i64>,
    actor: &str,
    op: F,
) -> Result<Stored, ApiError>
where
    F: FnOnce(&Policy) -> Result<Policy, PolicyError>,
{
    // One writer per process; the conditional UPDATE guards against other processes.
    let _guard = state.write_lock.lock().await;
    let mut tx = state.db.pool.begin().await?;
    let row = sqlx::query("SELECT revision, doc FROM policy WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::Internal("no policy row".into()))?;
    let current: i64 = row.try_get("revision")?;
    if let Some(expected) = expected {
        if expected != current {
            return Err(ApiError::StaleRevision { expected, current });
        }
    }
    let doc: String = row.try_get("doc")?;
    let old = decode(&doc)?;
    let new = op(&old)?;
    new.validate()?;
    if new == old {
        return Ok(Stored {
            revision: current,
            policy: old,
        });
    }
    let text = encode(&new)?;
    let now = state.clock.now();
    let next = current + 1;
    let done = sqlx::query(
        "UPDATE policy SET revision = $1, doc = $2, updated_at = $3, updated_by = $4 \
         WHERE id = 1 AND revision = $5",
    )
    .bind(next)
    .bind(&text)
    .bind(now)
    .bind(actor)
    .bind(current)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(ApiError::StaleRevision {
            expected: current,
            current: current + 1,
        });
    }
    sqlx::query(
        "INSERT INTO policy_history (revision, doc, updated_at, updated_by) VALUES ($1, $2, $3, $4)",
    )
    .bind(next)
    .bind(&text)
    .bind(now)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(revision = next, actor, "policy written");
    Ok(Stored {
        revision: next,
        policy: new,
    })
}
