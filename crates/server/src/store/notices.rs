//! Rows of `notifications`: every Notify All Clients, so replicas sharing the database
//! relay each other's, with the clients a rollout's ring notice is for (`scope`, migration
//! 0016), so every replica delivers it to those clients only. On PostgreSQL each new row is also signalled on [`NOTICE_CHANNEL`]
//! (`pg_notify`), so the other replicas hear of it at once instead of at their next poll.

use std::collections::HashSet;

use cascade_core::Category;
use sqlx::Row;

use super::{to_json, Store, StoreError};

/// The PostgreSQL channel a replica signals after recording a notice: the payload is its id.
pub const NOTICE_CHANNEL: &str = "cascade_notices";

/// A recorded notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRecord {
    /// Its id (increasing).
    pub id: i64,
    /// Unix seconds when the admin asked.
    pub issued_at: i64,
    /// What to update.
    pub categories: Vec<Category>,
}

impl Store {
    /// The highest notification id (0 when none).
    ///
    /// # Errors
    /// Database errors.
    pub async fn last_notice(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS n FROM notifications")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Records a notification with the next id; `reached` is (agents, clients) connected;
    /// `only` the ids of the clients it is for (`None`: every client).
    ///
    /// # Errors
    /// Database errors.
    pub async fn record_notice(
        &self,
        actor: &str,
        categories: &[Category],
        issued_at: i64,
        reached: (i64, i64),
        only: Option<&[String]>,
    ) -> Result<i64, StoreError> {
        let id = self.last_notice().await? + 1;
        let only = only.map(|ids| to_json("scope", &ids)).transpose()?;
        // `clients` is the column of those reached (a count); `only` goes to `scope`.
        sqlx::query(
            "INSERT INTO notifications \
             (id, issued_at, issued_by, categories, agents, clients, scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(issued_at)
        .bind(actor)
        .bind(to_json("categories", &categories)?)
        .bind(reached.0)
        .bind(reached.1)
        .bind(only)
        .execute(&self.pool)
        .await?;
        if self.postgres_url().is_some() {
            // Wakes every replica's listener (`crate::notify::follow`); they read the row.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTICE_CHANNEL)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        }
        Ok(id)
    }

    /// The database URL when the store is on PostgreSQL (replicas `LISTEN` on it for
    /// [`NOTICE_CHANNEL`]); `None` on SQLite.
    pub fn postgres_url(&self) -> Option<String> {
        let url = &self.pool.connect_options().database_url;
        matches!(url.scheme(), "postgres" | "postgresql").then(|| url.to_string())
    }

    /// The newest notification with an id above `after` issued at `since` or later.
    ///
    /// # Errors
    /// Database errors.
    pub async fn newest_notice(
        &self,
        after: i64,
        since: i64,
    ) -> Result<Option<NoticeRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, issued_at, categories FROM notifications \
             WHERE id > $1 AND issued_at >= $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(after)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// The clients notification `id` is for: `None` for every client (or no such notice).
    ///
    /// # Errors
    /// Database errors.
    pub async fn notice_scope(&self, id: i64) -> Result<Option<HashSet<String>>, StoreError> {
        let scope: Option<Option<String>> =
            sqlx::query_scalar("SELECT scope FROM notifications WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        // A scope that does not parse (a hand-edited row) reaches everyone: the pins still
        // keep clients outside the ring on their version.
        Ok(scope
            .flatten()
            .and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Notifications after `id`, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn notices_after(&self, id: i64) -> Result<Vec<NoticeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, issued_at, categories FROM notifications WHERE id > $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }
}

/// A row of `SELECT id, issued_at, categories`.
fn record(r: &sqlx::any::AnyRow) -> Result<NoticeRecord, StoreError> {
    let text: String = r.try_get("categories")?;
    Ok(NoticeRecord {
        id: r.try_get("id")?,
        issued_at: r.try_get("issued_at")?,
        categories: serde_json::from_str(&text).unwrap_or_default(),
    })
}
