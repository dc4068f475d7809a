//! What one update report says about the fleet (`derive`: failed categories, problem
//! attempts, per-source outcome and bytes), the sortable key of a client's IP, and how a new
//! report's figures are stored at check-in (`record_report`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use cascade_core::report::{Outcome, UpdateReport};
use cascade_core::Category;
use sqlx::AnyConnection;

use super::as_i64;

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
pub(in crate::store) fn categories_text(c: &[Category]) -> String {
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
