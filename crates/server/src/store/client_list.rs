//! The clients list as a query (`docs/operating.md#clients-list`): search, state, source,
//! IP-range and compliance filters, a sort and a page, done in SQL (`LIMIT`/`OFFSET` over the
//! indexes of `migrations/0012_client_indexes.sql` and `0015_fleet_stats.sql`), so a page of
//! 100,000 clients reads one page of rows. IPs sort and match ranges by their numeric key
//! (`ip_key`: 127.0.0.9 before 127.0.0.10).

use cascade_proto::ClientState;
use sqlx::Row;

use super::clients::{record, COLUMNS};
use super::search::{fts_phrase, PG_TEXT};
use super::SearchIndex;
use super::{ClientRecord, Store, StoreError};

/// What the list is sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientSort {
    /// Name, then id.
    #[default]
    Name,
    /// The reported (else connecting) IP, numerically (IPv4 before IPv6).
    Ip,
    /// Last check-in (never-seen first when ascending).
    LastSeen,
}

/// One query over the clients.
#[derive(Debug, Clone, Default)]
pub struct ClientQuery {
    /// Part of the name, IP, domain or installed versions (case-insensitive for ASCII).
    pub search: Option<String>,
    /// Only clients in one of these states (all when empty).
    pub states: Vec<ClientState>,
    /// Only clients whose last update tried this source (`agent:…`, `url:…`, `server`).
    pub source: Option<String>,
    /// Only clients whose IP key (`crate::store::ip_key`) lies in this inclusive range.
    pub ip_keys: Option<(String, String)>,
    /// Only clients with one of these (installed, failed categories) pairs, as stored
    /// (`Some(empty)` matches none).
    pub installed: Option<Vec<(String, String)>>,
    /// The order.
    pub sort: ClientSort,
    /// Reverse the order.
    pub descending: bool,
}

/// `%text%` for `LIKE … ESCAPE '\'`, with the pattern characters of `text` escaped.
fn like(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl ClientQuery {
    /// The `WHERE` clause (placeholders from `$1`) and its arguments, for `now` and the
    /// stale window; a search goes through `index` when it can (`search.rs`).
    fn clause(&self, now: i64, stale_after: i64, index: SearchIndex) -> (String, Vec<Arg>) {
        let mut parts: Vec<String> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        let next = |args: &mut Vec<Arg>, a: Arg| {
            args.push(a);
            format!("${}", args.len())
        };
        if let Some(s) = self.search.as_deref().filter(|s| !s.is_empty()) {
            let lower = s.to_lowercase();
            match index {
                // A trigram index finds substrings of three characters or more.
                SearchIndex::SqliteTrigram if s.chars().count() >= 3 => {
                    let p = next(&mut args, Arg::Text(fts_phrase(s)));
                    parts.push(format!(
                        "rowid IN (SELECT rowid FROM client_search WHERE client_search MATCH {p})"
                    ));
                }
                SearchIndex::PostgresTrigram => {
                    // `\` is PostgreSQL's default LIKE escape.
                    let p = next(&mut args, Arg::Text(like(&lower)));
                    parts.push(format!("{PG_TEXT} LIKE {p}"));
                }
                _ => {
                    let p = next(&mut args, Arg::Text(like(&lower)));
                    parts.push(format!(
                        "(LOWER(name) LIKE {p} ESCAPE '\\' OR COALESCE(reported_ip, '') LIKE {p} ESCAPE '\\' \
                         OR COALESCE(peer_ip, '') LIKE {p} ESCAPE '\\' OR LOWER(COALESCE(domain, '')) LIKE {p} ESCAPE '\\' \
                         OR LOWER(installed) LIKE {p} ESCAPE '\\')"
                    ));
                }
            }
        }
        if !self.states.is_empty() {
            let cut = next(&mut args, Arg::Int(now.saturating_sub(stale_after)));
            let failed = "last_outcome IN ('failed', 'quit')";
            let one: Vec<String> = self
                .states
                .iter()
                .map(|s| match s {
                    ClientState::Never => "last_seen IS NULL".to_owned(),
                    ClientState::Stale => format!("last_seen < {cut}"),
                    ClientState::Failed => format!("(last_seen >= {cut} AND {failed})"),
                    ClientState::Ok => {
                        format!("(last_seen >= {cut} AND (last_outcome IS NULL OR NOT {failed}))")
                    }
                })
                .collect();
            parts.push(format!("({})", one.join(" OR ")));
        }
        if let Some(src) = self.source.as_deref().filter(|s| !s.is_empty()) {
            // The report is stored as JSON; an attempt at the source writes this exactly.
            let needle = serde_json::to_string(src).unwrap_or_default();
            let p = next(&mut args, Arg::Text(like(&format!("\"source\":{needle}"))));
            parts.push(format!("COALESCE(last_update, '') LIKE {p} ESCAPE '\\'"));
        }
        if let Some((lo, hi)) = &self.ip_keys {
            let lo = next(&mut args, Arg::Text(lo.clone()));
            let hi = next(&mut args, Arg::Text(hi.clone()));
            parts.push(format!("(ip_key >= {lo} AND ip_key <= {hi})"));
        }
        if let Some(groups) = &self.installed {
            let one: Vec<String> = groups
                .iter()
                .map(|(installed, failed)| {
                    let i = next(&mut args, Arg::Text(installed.clone()));
                    let f = next(&mut args, Arg::Text(failed.clone()));
                    format!("(installed = {i} AND COALESCE(failed_categories, '') = {f})")
                })
                .collect();
            if one.is_empty() {
                parts.push("1 = 0".to_owned());
            } else {
                parts.push(format!("({})", one.join(" OR ")));
            }
        }
        let clause = if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        };
        (clause, args)
    }

    fn order(&self) -> &'static str {
        match (self.sort, self.descending) {
            (ClientSort::Name, false) => " ORDER BY name, id",
            (ClientSort::Name, true) => " ORDER BY name DESC, id DESC",
            (ClientSort::Ip, false) => " ORDER BY ip_key, id",
            (ClientSort::Ip, true) => " ORDER BY ip_key DESC, id DESC",
            (ClientSort::LastSeen, false) => " ORDER BY COALESCE(last_seen, -1), id",
            (ClientSort::LastSeen, true) => " ORDER BY COALESCE(last_seen, -1) DESC, id DESC",
        }
    }
}

/// A bound argument.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &[Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(t) => q.bind(t.clone()),
            Arg::Int(n) => q.bind(*n),
        };
    }
    q
}

impl Store {
    /// One page of the clients matching `q` (`limit` rows from `offset`) and how many match
    /// in all, with the state computed at `now` for the window `stale_after` seconds.
    ///
    /// # Errors
    /// Database errors.
    pub async fn clients_page(
        &self,
        q: &ClientQuery,
        now: i64,
        stale_after: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ClientRecord>, u64), StoreError> {
        let (clause, args) = q.clause(now, stale_after, self.search_index());
        let count_sql = format!("SELECT COUNT(*) AS n FROM clients{clause}");
        let total: i64 = bind(sqlx::query(&count_sql), &args)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let sql = format!(
            "SELECT {COLUMNS} FROM clients{clause}{} LIMIT {} OFFSET {}",
            q.order(),
            limit.max(0),
            offset.max(0)
        );
        let rows = bind(sqlx::query(&sql), &args).fetch_all(&self.pool).await?;
        let records = rows.iter().map(record).collect::<Result<_, _>>()?;
        Ok((records, u64::try_from(total).unwrap_or(0)))
    }

    /// Every client matching `q`, in its order (for filters done outside SQL and exports).
    ///
    /// # Errors
    /// Database errors.
    pub async fn clients_matching(
        &self,
        q: &ClientQuery,
        now: i64,
        stale_after: i64,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        let (clause, args) = q.clause(now, stale_after, self.search_index());
        let sql = format!("SELECT {COLUMNS} FROM clients{clause}{}", q.order());
        let rows = bind(sqlx::query(&sql), &args).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pattern characters typed in a search match themselves.
    #[test]
    fn like_escapes() {
        assert_eq!(like("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    // Filters become one clause with numbered placeholders.
    #[test]
    fn clause_numbers_placeholders() {
        let q = ClientQuery {
            search: Some("PC".into()),
            states: vec![ClientState::Failed],
            source: Some("agent:10.0.0.5:8443".into()),
            ..ClientQuery::default()
        };
        let (clause, args) = q.clause(100, 10, SearchIndex::Scan);
        assert!(
            clause.contains("$1") && clause.contains("$2") && clause.contains("$3"),
            "{clause}"
        );
        assert_eq!(args.len(), 3);
        assert!(matches!(&args[0], Arg::Text(t) if t == "%pc%"));
        assert!(matches!(&args[1], Arg::Int(90)));
    }
}
