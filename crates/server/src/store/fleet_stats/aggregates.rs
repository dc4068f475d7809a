//! The fleet counted in SQL for the console's dashboard, agents and compliance pages and the
//! source health: clients per state, per installed versions, per source, per agent address.

use std::collections::{BTreeMap, HashMap};

use cascade_core::Category;
use cascade_proto::AffectedClient;
use sqlx::Row;

use super::as_u64;
use super::report::parse_categories;
use crate::store::clients::{record, COLUMNS};
use crate::store::{ClientRecord, Store, StoreError};

/// Clients with the same installed versions and failed categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledGroup {
    /// Installed version per category, as stored (JSON).
    pub installed_text: String,
    /// Installed version per category.
    pub installed: BTreeMap<Category, String>,
    /// Categories whose last update failed, as stored.
    pub failed_text: String,
    /// Categories whose last update failed.
    pub failed: Vec<Category>,
    /// How many clients.
    pub clients: u64,
}

/// What clients' last reports say about one source (for its health).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTally {
    /// Clients whose last attempt there succeeded.
    pub served: u64,
    /// The newest of those successes.
    pub last_ok: Option<i64>,
    /// Clients whose last attempt there failed.
    pub failed: u64,
    /// The oldest of those failures.
    pub first_failure: Option<i64>,
    /// The failed clients, by name (at most the limit asked for).
    pub affected: Vec<AffectedClient>,
}

impl Store {
    /// Clients per state at `now` (`stale_after` seconds without a check-in is stale): ok,
    /// failed, stale, never.
    ///
    /// # Errors
    /// Database errors.
    pub async fn state_counts(&self, now: i64, stale_after: i64) -> Result<[u64; 4], StoreError> {
        let r = sqlx::query(
            "SELECT \
             CAST(COALESCE(SUM(CASE WHEN last_seen >= $1 AND (last_outcome IS NULL OR last_outcome NOT IN ('failed', 'quit')) THEN 1 ELSE 0 END), 0) AS BIGINT) AS ok, \
             CAST(COALESCE(SUM(CASE WHEN last_seen >= $1 AND last_outcome IN ('failed', 'quit') THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed, \
             CAST(COALESCE(SUM(CASE WHEN last_seen < $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS stale, \
             CAST(COALESCE(SUM(CASE WHEN last_seen IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS never \
             FROM clients",
        )
        .bind(now.saturating_sub(stale_after))
        .fetch_one(&self.pool)
        .await?;
        Ok([
            as_u64(r.try_get("ok")?),
            as_u64(r.try_get("failed")?),
            as_u64(r.try_get("stale")?),
            as_u64(r.try_get("never")?),
        ])
    }

    /// Clients grouped by installed versions and failed categories.
    ///
    /// # Errors
    /// Database errors.
    pub async fn installed_groups(&self) -> Result<Vec<InstalledGroup>, StoreError> {
        let rows = sqlx::query(
            "SELECT installed, failed_categories, COUNT(*) AS n \
             FROM clients GROUP BY installed, failed_categories",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let installed_text: String = r.try_get("installed")?;
                let failed_text: String = r
                    .try_get::<Option<String>, _>("failed_categories")?
                    .unwrap_or_default();
                Ok(InstalledGroup {
                    installed: serde_json::from_str(&installed_text).unwrap_or_default(),
                    installed_text,
                    failed: parse_categories(&failed_text),
                    failed_text,
                    clients: as_u64(r.try_get("n")?),
                })
            })
            .collect()
    }

    /// What the reports of clients seen at or after `since` say about each source, with at
    /// most `max_affected` failed clients listed per source.
    ///
    /// # Errors
    /// Database errors.
    pub async fn source_tallies(
        &self,
        since: i64,
        max_affected: i64,
    ) -> Result<HashMap<String, SourceTally>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, ok, COUNT(*) AS n, MAX(at) AS newest, MIN(at) AS oldest \
             FROM client_sources WHERE seen >= $1 AND ok >= 0 GROUP BY source, ok",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, SourceTally> = HashMap::new();
        for r in &rows {
            let t = out.entry(r.try_get("source")?).or_default();
            let n = as_u64(r.try_get("n")?);
            if r.try_get::<i64, _>("ok")? == 1 {
                t.served = n;
                t.last_ok = r.try_get("newest")?;
            } else {
                t.failed = n;
                t.first_failure = r.try_get("oldest")?;
            }
        }
        for (source, t) in &mut out {
            if t.failed == 0 {
                continue;
            }
            let rows = sqlx::query(&format!(
                "SELECT c.id AS id, c.name AS name, s.at AS at, s.reason AS reason, \
                 s.served_by AS served_by FROM client_sources s JOIN clients c \
                 ON c.id = s.client_id WHERE s.source = $1 AND s.ok = 0 AND s.seen >= $2 \
                 ORDER BY c.name, c.id LIMIT {}",
                max_affected.max(0)
            ))
            .bind(source.as_str())
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                t.affected.push(AffectedClient {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    failed_at: r.try_get("at")?,
                    reason: r.try_get("reason")?,
                    served_by: r.try_get("served_by")?,
                });
            }
        }
        Ok(out)
    }

    /// The newest check-in of the approved clients enrolled at each agent address.
    ///
    /// # Errors
    /// Database errors.
    pub async fn agent_check_ins(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent_address, MAX(last_seen) AS seen FROM clients \
             WHERE agent_address IS NOT NULL AND agent_approved_at IS NOT NULL \
             GROUP BY agent_address",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::new();
        for r in &rows {
            if let Some(seen) = r.try_get::<Option<i64>, _>("seen")? {
                out.insert(r.try_get("agent_address")?, seen);
            }
        }
        Ok(out)
    }

    /// Per source of the clients' last reports: clients it served and the bytes they got there.
    ///
    /// # Errors
    /// Database errors.
    pub async fn source_totals(&self) -> Result<HashMap<String, (u64, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, CAST(COALESCE(SUM(CASE WHEN ok = 1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS served, \
             CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS bytes FROM client_sources GROUP BY source",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::new();
        for r in &rows {
            out.insert(
                r.try_get("source")?,
                (as_u64(r.try_get("served")?), as_u64(r.try_get("bytes")?)),
            );
        }
        Ok(out)
    }

    /// The clients enrolled with an agent address.
    ///
    /// # Errors
    /// Database errors.
    pub async fn agent_address_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM clients WHERE agent_address IS NOT NULL ORDER BY name, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    /// The `limit` clients whose last report has a failed or quit attempt, newest report first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn recent_problem_clients(
        &self,
        limit: i64,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM clients WHERE problem_attempts > 0 \
             ORDER BY COALESCE(report_at, 0) DESC, id LIMIT {}",
            limit.max(0)
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    /// Failed attempts in last reports that still ended well, and by how many clients.
    ///
    /// # Errors
    /// Database errors.
    pub async fn recovered_attempts(&self) -> Result<(u64, u64), StoreError> {
        let r = sqlx::query(
            "SELECT CAST(COALESCE(SUM(failed_attempts), 0) AS BIGINT) AS attempts, COUNT(*) AS n \
             FROM clients WHERE failed_attempts > 0 AND last_outcome IN ('ok', 'up-to-date')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((as_u64(r.try_get("attempts")?), as_u64(r.try_get("n")?)))
    }
}
