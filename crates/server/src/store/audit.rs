//! The audit log (`docs/operating.md#audit-log`): one row per change or refused admin
//! action, written by the audit middleware (`crate::audit`), newest read first; and the
//! policy history that restoring reads.

use cascade_core::PolicyDoc;
use cascade_proto::AuditEntry;
use sqlx::Row;

use super::{Store, StoreError};

/// One record to append.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    /// `user:<name>` or `-`.
    pub actor: &'a str,
    /// The peer IP.
    pub source: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Answer status.
    pub status: u16,
    /// The policy's changed parts before, as JSON text.
    pub before: Option<String>,
    /// The same parts after.
    pub after: Option<String>,
}

impl Store {
    /// Appends an audit record.
    ///
    /// # Errors
    /// Database errors.
    pub async fn append_audit(&self, a: &NewAudit<'_>) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS n FROM audit")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        sqlx::query(
            "INSERT INTO audit (id, at, actor, source, method, path, status, before_doc, after_doc) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(next)
        .bind(self.clock.now())
        .bind(a.actor)
        .bind(a.source)
        .bind(a.method)
        .bind(a.path)
        .bind(i64::from(a.status))
        .bind(a.before.as_deref())
        .bind(a.after.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` audit records, newest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, source, method, path, status, before_doc, after_doc \
             FROM audit ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let json = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    source: r.try_get("source")?,
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(0),
                    before: json(r.try_get("before_doc")?),
                    after: json(r.try_get("after_doc")?),
                })
            })
            .collect()
    }

    /// The policy document of an earlier revision, from the history.
    ///
    /// # Errors
    /// Database errors; a corrupt row is [`StoreError::Corrupt`].
    pub async fn policy_at(&self, revision: i64) -> Result<Option<PolicyDoc>, StoreError> {
        let row = sqlx::query("SELECT doc FROM policy_history WHERE revision = $1")
            .bind(revision)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let doc: String = r.try_get("doc")?;
            serde_json::from_str(&doc)
                .map_err(|e| StoreError::Corrupt(format!("policy revision {revision}: {e}")))
        })
        .transpose()
    }
}
