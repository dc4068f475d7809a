//! Filling in the fleet figures of clients stored before them
//! (`docs/operating.md#filling-in-after-an-upgrade`), a batch at a time.

use cascade_core::report::UpdateReport;
use sqlx::Row;

use super::report::{ip_key_of, record_report};
use super::{as_u64, TRAFFIC_HOURS};
use crate::store::{Store, StoreError};

impl Store {
    /// How many clients have no fleet figures yet (`migrations/0015_fleet_stats.sql`): clients
    /// from before them, seeded straight into the database, or enrolled and without a report.
    ///
    /// # Errors
    /// Database errors.
    pub async fn clients_to_derive(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM clients WHERE derived IS NULL")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(as_u64(n))
    }

    /// Fills the fleet figures of at most `limit` clients that have none yet, in one
    /// transaction (docs/operating.md#filling-in-after-an-upgrade); returns how many clients it
    /// looked at (fewer than `limit`: none are left). A client is marked derived in the same
    /// transaction that adds its bytes to `traffic`, and only if it is still unmarked, so a
    /// batch cut short is done again from the start and a client whose check-in stored a newer
    /// report meanwhile (or that another replica derived) is skipped: nothing counts twice.
    ///
    /// # Errors
    /// Database errors.
    pub async fn derive_batch(&self, limit: u32) -> Result<u64, StoreError> {
        let oldest_hour = self.clock.now().div_euclid(3600) - TRAFFIC_HOURS;
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let rows = sqlx::query(&format!(
            "SELECT id, last_seen, reported_ip, peer_ip, last_update FROM clients \
             WHERE derived IS NULL ORDER BY id LIMIT {limit}"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for r in &rows {
            let id: String = r.try_get("id")?;
            let seen: Option<i64> = r.try_get("last_seen")?;
            let reported: Option<String> = r.try_get("reported_ip")?;
            let peer: Option<String> = r.try_get("peer_ip")?;
            let report: Option<String> = r.try_get("last_update")?;
            let report: Option<UpdateReport> = report.and_then(|t| serde_json::from_str(&t).ok());
            let marked = sqlx::query(
                "UPDATE clients SET ip_key = $1, derived = 1 WHERE id = $2 AND derived IS NULL",
            )
            .bind(ip_key_of(reported.as_deref(), peer.as_deref()))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() == 0 {
                continue;
            }
            if let Some(mut report) = report {
                if seen.unwrap_or(0).div_euclid(3600) < oldest_hour {
                    // Older than the traffic kept: the client's figures only.
                    for a in &mut report.attempts {
                        a.bytes = 0;
                    }
                }
                record_report(&mut tx, &id, &report, seen.unwrap_or(0)).await?;
            }
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}
