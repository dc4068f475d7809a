//! Fleet statistics (`docs/operating.md#fleet-charts`): what each new update report says,
//! kept at check-in in columns of `clients` and in the small tables of
//! `migrations/0015_fleet_stats.sql`, so the console's dashboard, agents and compliance pages
//! and the source health aggregate in SQL instead of reading every client's report (JSON);
//! bytes per hour and source (`traffic`) and the fleet over time (`fleet_samples`), both with
//! bounded retention.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use cascade_core::report::{Outcome, UpdateReport};
use cascade_core::Category;
use cascade_proto::AffectedClient;
use sqlx::{AnyConnection, Row};

use super::clients::{record, COLUMNS};
use super::{ClientRecord, Store, StoreError};

/// Hours of `traffic` kept.
pub const TRAFFIC_HOURS: i64 = 14 * 24;
/// Seconds of `fleet_samples` kept.
pub const SAMPLE_SECS: i64 = 7 * 86_400;

/// The sortable key of an IP (`4` and 8 hex digits, `6` and 32): numeric order as text
/// order, one family after the other. An IPv4-mapped IPv6 address is keyed as its IPv4.
pub fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => format!("4{:08x}", u32::from(a)),
        IpAddr::V6(a) => format!("6{:032x}", u128::from(a)),
    }
}

/// The key of a client's IP as stored (reported, else connecting), `None` when neither parses.
pub fn ip_key_of(reported: Option<&str>, peer: Option<&str>) -> Option<String> {
    reported
        .or(peer)
        .and_then(|t| t.parse::<IpAddr>().ok())
        .map(ip_key)
}

/// The categories whose attempts in `report` failed (or quit) with none succeeding.
pub fn failed_categories(report: &UpdateReport) -> Vec<Category> {
    Category::ALL
        .into_iter()
        .filter(|c| {
            let mine = || {
                report
                    .attempts
                    .iter()
                    .filter(move |a| a.category == Some(*c))
            };
            mine().any(|a| matches!(a.outcome, Outcome::Failed | Outcome::Quit))
                && !mine().any(|a| matches!(a.outcome, Outcome::Ok | Outcome::UpToDate))
        })
        .collect()
}

/// `components,programs`, as stored.
pub(super) fn categories_text(c: &[Category]) -> String {
    c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
}

/// `components,programs` back to categories (unknown names are skipped).
pub fn parse_categories(text: &str) -> Vec<Category> {
    text.split(',')
        .filter_map(|n| Category::ALL.into_iter().find(|c| c.as_str() == n))
        .collect()
}

/// How a client's last attempt at one source ended, from its last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// `agent:…`, `url:…`, `server`, `activeupdate:…`.
    pub source: String,
    /// `Some(true)`: ok or up to date; `Some(false)`: failed; `None`: only skipped or quit.
    pub ok: Option<bool>,
    /// Reason of the deciding failure.
    pub reason: Option<String>,
    /// Bytes of every attempt there.
    pub bytes: u64,
}

/// What one report says, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// The report's finish time.
    pub finished_at: Option<i64>,
    /// Categories that failed.
    pub failed: Vec<Category>,
    /// Failed attempts.
    pub failed_attempts: i64,
    /// Failed or quit attempts.
    pub problem_attempts: i64,
    /// The source of the first successful attempt.
    pub served_by: Option<String>,
    /// Per source.
    pub sources: Vec<SourceRow>,
}

/// Derives the stored figures of `report`.
pub fn derive(report: &UpdateReport) -> Derived {
    let mut by: BTreeMap<&str, SourceRow> = BTreeMap::new();
    for a in &report.attempts {
        let row = by.entry(a.source.as_str()).or_insert_with(|| SourceRow {
            source: a.source.clone(),
            ok: None,
            reason: None,
            bytes: 0,
        });
        row.bytes += a.bytes;
        // The last attempt at each source decides (docs/operating.md#health).
        match a.outcome {
            Outcome::Ok | Outcome::UpToDate => {
                row.ok = Some(true);
                row.reason = None;
            }
            Outcome::Failed => {
                row.ok = Some(false);
                row.reason = a.reason.as_ref().map(ToString::to_string);
            }
            Outcome::Quit | Outcome::Skipped => {}
        }
    }
    let count = |f: fn(Outcome) -> bool| {
        i64::try_from(report.attempts.iter().filter(|a| f(a.outcome)).count()).unwrap_or(0)
    };
    Derived {
        finished_at: report.finished_at,
        failed: failed_categories(report),
        failed_attempts: count(|o| o == Outcome::Failed),
        problem_attempts: count(|o| matches!(o, Outcome::Failed | Outcome::Quit)),
        served_by: report
            .attempts
            .iter()
            .find(|a| matches!(a.outcome, Outcome::Ok | Outcome::UpToDate))
            .map(|a| a.source.clone()),
        sources: by.into_values().collect(),
    }
}

/// A count as stored (saturating).
pub(super) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn as_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Stores what a new `report` of client `id`, checked in at `seen`, says: its columns, its
/// per-source rows (replaced) and its bytes added to `traffic` in the hour it arrived (the
/// server's clock: clients' clocks differ).
pub(super) async fn record_report(
    conn: &mut AnyConnection,
    id: &str,
    report: &UpdateReport,
    seen: i64,
) -> Result<(), sqlx::Error> {
    let d = derive(report);
    let at = d.finished_at.unwrap_or(seen);
    sqlx::query(
        "UPDATE clients SET report_at = $1, failed_categories = $2, failed_attempts = $3, \
         problem_attempts = $4, derived = 1 WHERE id = $5",
    )
    .bind(d.finished_at)
    .bind(categories_text(&d.failed))
    .bind(d.failed_attempts)
    .bind(d.problem_attempts)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM client_sources WHERE client_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for s in &d.sources {
        sqlx::query(
            "INSERT INTO client_sources (client_id, source, ok, seen, at, reason, served_by, \
             bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(&s.source)
        .bind(s.ok.map_or(-1_i64, i64::from))
        .bind(seen)
        .bind(at)
        .bind(s.reason.as_deref())
        .bind(d.served_by.as_deref())
        .bind(as_i64(s.bytes))
        .execute(&mut *conn)
        .await?;
        if s.bytes > 0 {
            sqlx::query(
                "INSERT INTO traffic (hour, source, bytes, clients) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (hour, source) DO UPDATE SET bytes = traffic.bytes + excluded.bytes, \
                 clients = traffic.clients + 1",
            )
            .bind(seen.div_euclid(3600))
            .bind(&s.source)
            .bind(as_i64(s.bytes))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

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

/// One hour of one source's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficRow {
    /// Unix hour.
    pub hour: i64,
    /// The source.
    pub source: String,
    /// Bytes clients got there.
    pub bytes: u64,
    /// Reports that got bytes there.
    pub clients: u64,
}

/// One sample of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSample {
    /// Unix seconds.
    pub at: i64,
    /// Clients in all.
    pub total: u64,
    /// Clients current in every published category.
    pub current: u64,
    /// Clients whose last update failed.
    pub failed: u64,
}

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

    /// Traffic from Unix hour `from` on, by hour then source.
    ///
    /// # Errors
    /// Database errors.
    pub async fn traffic_since(&self, from: i64) -> Result<Vec<TrafficRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT hour, source, bytes, clients FROM traffic WHERE hour >= $1 ORDER BY hour, source",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TrafficRow {
                    hour: r.try_get("hour")?,
                    source: r.try_get("source")?,
                    bytes: as_u64(r.try_get("bytes")?),
                    clients: as_u64(r.try_get("clients")?),
                })
            })
            .collect()
    }

    /// Records a sample and drops samples and traffic older than their retention.
    ///
    /// # Errors
    /// Database errors.
    pub async fn record_sample(&self, s: FleetSample) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        sqlx::query(
            "INSERT INTO fleet_samples (at, total, current, failed) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (at) DO UPDATE SET total = excluded.total, current = excluded.current, \
             failed = excluded.failed",
        )
        .bind(s.at)
        .bind(as_i64(s.total))
        .bind(as_i64(s.current))
        .bind(as_i64(s.failed))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM fleet_samples WHERE at < $1")
            .bind(s.at - SAMPLE_SECS)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM traffic WHERE hour < $1")
            .bind(s.at.div_euclid(3600) - TRAFFIC_HOURS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Samples from `from` on, oldest first, led by the last one before `from` (moved to
    /// `from`: its figures held until the next sample).
    ///
    /// # Errors
    /// Database errors.
    pub async fn samples_since(&self, from: i64) -> Result<Vec<FleetSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, total, current, failed FROM fleet_samples WHERE at >= $1 ORDER BY at",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        let before = sqlx::query(
            "SELECT at, total, current, failed FROM fleet_samples WHERE at < $1 \
             ORDER BY at DESC LIMIT 1",
        )
        .bind(from)
        .fetch_optional(&self.pool)
        .await?;
        let sample = |r: &sqlx::any::AnyRow| {
            Ok::<_, StoreError>(FleetSample {
                at: r.try_get("at")?,
                total: as_u64(r.try_get("total")?),
                current: as_u64(r.try_get("current")?),
                failed: as_u64(r.try_get("failed")?),
            })
        };
        let mut out = Vec::with_capacity(rows.len() + 1);
        if let Some(b) = &before {
            out.push(FleetSample {
                at: from,
                ..sample(b)?
            });
        }
        for r in &rows {
            out.push(sample(r)?);
        }
        Ok(out)
    }

    /// The newest sample and the newest notify's time, if any.
    ///
    /// # Errors
    /// Database errors.
    pub async fn last_sample_and_notice(
        &self,
    ) -> Result<(Option<FleetSample>, Option<i64>), StoreError> {
        let sample = sqlx::query(
            "SELECT at, total, current, failed FROM fleet_samples ORDER BY at DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok::<_, sqlx::Error>(FleetSample {
                at: r.try_get("at")?,
                total: as_u64(r.try_get("total")?),
                current: as_u64(r.try_get("current")?),
                failed: as_u64(r.try_get("failed")?),
            })
        })
        .transpose()?;
        let notice: Option<i64> = sqlx::query("SELECT MAX(issued_at) AS t FROM notifications")
            .fetch_one(&self.pool)
            .await?
            .try_get("t")?;
        Ok((sample, notice))
    }

    /// The notifies issued from `from` on: (id, time), oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn notices_since(&self, from: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, issued_at FROM notifications WHERE issued_at >= $1 ORDER BY issued_at, id",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("issued_at")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_core::report::Attempt;

    fn attempt(cat: Category, source: &str, outcome: Outcome, bytes: u64) -> Attempt {
        Attempt {
            category: Some(cat),
            step: 1,
            source: source.to_owned(),
            outcome,
            reason: None,
            bytes,
            millis: 0,
        }
    }

    // IP keys sort numerically: 127.0.0.9 before 127.0.0.10, IPv4 before IPv6, and a mapped
    // address keys as its IPv4.
    #[test]
    fn ip_keys_sort_numerically() {
        let k = |s: &str| ip_key(s.parse().unwrap());
        assert!(k("127.0.0.9") < k("127.0.0.10"));
        assert!(k("10.255.255.255") < k("11.0.0.0"));
        assert!(k("255.255.255.255") < k("::1"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_eq!(ip_key_of(Some("x"), Some("10.0.0.1")), None);
        assert_eq!(ip_key_of(None, Some("10.0.0.1")), Some(k("10.0.0.1")));
    }

    // The last attempt at a source decides it; bytes add up; a category fails only when
    // nothing of it succeeded.
    #[test]
    fn derive_report() {
        let r = UpdateReport {
            finished_at: Some(7200),
            outcome: Outcome::Ok,
            attempts: vec![
                attempt(Category::Components, "agent:a", Outcome::Failed, 10),
                attempt(Category::Components, "server", Outcome::Ok, 100),
                attempt(Category::Programs, "agent:a", Outcome::Failed, 0),
                attempt(Category::Programs, "server", Outcome::Quit, 0),
                attempt(Category::DomainSettings, "agent:a", Outcome::Ok, 5),
            ],
        };
        let d = derive(&r);
        assert_eq!(d.failed, vec![Category::Programs]);
        assert_eq!((d.failed_attempts, d.problem_attempts), (2, 3));
        assert_eq!(d.served_by.as_deref(), Some("server"));
        let a = d.sources.iter().find(|s| s.source == "agent:a").unwrap();
        assert_eq!((a.ok, a.bytes), (Some(true), 15));
        assert_eq!(
            parse_categories("programs,nonsense"),
            vec![Category::Programs]
        );
    }
}
