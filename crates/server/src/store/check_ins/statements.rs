//! The plan of a batch (docs/operating.md#group-commit): the statements that store its
//! check-ins, their text (`$1`, `$2`, …) and the values bound to them, the same for the
//! SQLite thread and the pool.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use super::{Job, ROWS_PER_STATEMENT};
use crate::store::fleet_stats::{as_i64, categories_text, Derived};

/// `$first, $first+1, …` for `n` values.
fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, …, $cols), (…)` for `rows` rows.
fn rows(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", params(r * cols + 1, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value bound to a planned statement; both writers bind the same ones.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::store) enum Value<'a> {
    /// An integer or NULL.
    Int(Option<i64>),
    /// A text or NULL.
    Text(Option<Cow<'a, str>>),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::Text(v.map(Cow::Borrowed))
    }
}

impl From<Option<String>> for Value<'_> {
    fn from(v: Option<String>) -> Self {
        Value::Text(v.map(Cow::Owned))
    }
}

/// One statement of a batch: its text (`$1`, `$2`, … numbered in order of first use, so a
/// value's place in `params` is its number on both databases) and its values.
#[derive(Debug)]
pub(in crate::store) struct Statement<'a> {
    /// The SQL.
    pub sql: Cow<'static, str>,
    /// `$1`, `$2`, …
    pub params: Vec<Value<'a>>,
}

/// The stored report of each of `n` clients (a deleted client has no row: its check-in
/// stores nothing). Columns: `id`, `last_update`.
pub(in crate::store) fn select_stored(n: usize) -> String {
    format!(
        "SELECT id, last_update FROM clients WHERE id IN ({})",
        params(1, n)
    )
}

/// A check-in's update of its client's row.
const UPDATE_CLIENT: &str = "UPDATE clients SET last_seen = $1, reported_ip = $2, peer_ip = $3, \
     installed = $4, last_update = COALESCE($5, last_update), \
     last_outcome = COALESCE($6, last_outcome), \
     relay_report = CASE WHEN agent_approved_at IS NULL THEN relay_report \
     ELSE COALESCE($7, relay_report) END, agent_version = COALESCE($8, agent_version), \
     program_trouble_at = COALESCE($9, program_trouble_at), ip_key = $10, \
     report_at = CASE WHEN $11 = 1 THEN $12 ELSE report_at END, \
     failed_categories = CASE WHEN $11 = 1 THEN $13 ELSE failed_categories END, \
     failed_attempts = CASE WHEN $11 = 1 THEN $14 ELSE failed_attempts END, \
     problem_attempts = CASE WHEN $11 = 1 THEN $15 ELSE problem_attempts END, \
     derived = CASE WHEN $11 = 1 THEN 1 ELSE derived END WHERE id = $16";

/// The check-ins of a batch in the order they are stored: by client (so concurrent writers on
/// PostgreSQL take row locks in one order), in arrival order for each; and their clients,
/// each once.
pub(in crate::store) fn in_order<'a>(jobs: &[&'a Job]) -> (Vec<&'a Job>, Vec<&'a str>) {
    let mut order: Vec<&Job> = jobs.to_vec();
    order.sort_by(|a, b| a.id.cmp(&b.id));
    let mut ids: Vec<&str> = order.iter().map(|j| j.id.as_str()).collect();
    ids.dedup();
    (order, ids)
}

/// What a client's check-ins in the batch leave in `client_sources`.
struct SourcesAfter<'a> {
    /// The rows of its last new report, and when that report's check-in came.
    report: Option<(&'a Derived, i64)>,
    /// Its last check-in in the batch (`seen`).
    seen: i64,
}

/// The statements that store `order` (from [`in_order`]), given each client's stored report
/// (`stored`: clients without a row are left out).
pub(in crate::store) fn plan<'a>(
    order: &[&'a Job],
    stored: &'a HashMap<String, Option<String>>,
) -> Vec<Statement<'a>> {
    let mut out = Vec::new();
    // Each client's report as the batch goes on.
    let mut last: HashMap<&str, Option<&str>> = HashMap::new();
    let mut sources: BTreeMap<&str, SourcesAfter<'_>> = BTreeMap::new();
    let mut traffic: BTreeMap<(i64, &str), (i64, i64)> = BTreeMap::new();
    for &job in order {
        let Some(stored_report) = stored.get(&job.id) else {
            continue;
        };
        let last_update = last
            .entry(job.id.as_str())
            .or_insert_with(|| stored_report.as_deref());
        // A report is new when it is not the one stored (docs/operating.md#fleet-charts).
        let new = job
            .report
            .as_ref()
            .filter(|r| *last_update != Some(r.text.as_str()));
        let d = new.map(|r| &r.derived);
        out.push(Statement {
            sql: Cow::Borrowed(UPDATE_CLIENT),
            params: vec![
                job.now.into(),
                job.reported_ip.as_deref().into(),
                job.peer_ip.as_str().into(),
                job.installed.as_str().into(),
                job.report.as_ref().map(|r| r.text.as_str()).into(),
                job.report
                    .as_ref()
                    .and_then(|r| r.outcome.as_deref())
                    .into(),
                job.relay.as_deref().into(),
                job.agent_version.as_deref().into(),
                job.report.as_ref().map(|r| r.trouble_at).into(),
                job.ip_key.as_deref().into(),
                i64::from(d.is_some()).into(),
                d.and_then(|d| d.finished_at).into(),
                d.map(|d| categories_text(&d.failed)).into(),
                d.map(|d| d.failed_attempts).into(),
                d.map(|d| d.problem_attempts).into(),
                job.id.as_str().into(),
            ],
        });
        if let Some(r) = &job.report {
            *last_update = Some(r.text.as_str());
        }
        let after = sources.entry(job.id.as_str()).or_insert(SourcesAfter {
            report: None,
            seen: job.now,
        });
        after.seen = job.now;
        if let Some(d) = d {
            after.report = Some((d, job.now));
            for s in d.sources.iter().filter(|s| s.bytes > 0) {
                let t = traffic
                    .entry((job.now.div_euclid(3600), s.source.as_str()))
                    .or_insert((0, 0));
                t.0 = t.0.saturating_add(as_i64(s.bytes));
                t.1 += 1;
            }
        }
    }
    plan_sources(&mut out, &sources);
    plan_traffic(&mut out, &traffic);
    out
}

/// The per-source rows: replaced for a client with a new report, else only `seen` moves.
fn plan_sources<'a>(out: &mut Vec<Statement<'a>>, sources: &BTreeMap<&'a str, SourcesAfter<'a>>) {
    let replaced: Vec<&str> = sources
        .iter()
        .filter(|(_, a)| a.report.is_some())
        .map(|(id, _)| *id)
        .collect();
    for chunk in replaced.chunks(ROWS_PER_STATEMENT) {
        out.push(Statement {
            sql: Cow::Owned(format!(
                "DELETE FROM client_sources WHERE client_id IN ({})",
                params(1, chunk.len())
            )),
            params: chunk.iter().map(|id| (*id).into()).collect(),
        });
    }
    let mut new_rows = Vec::new();
    for (id, a) in sources {
        if let Some((d, at_check_in)) = a.report {
            for s in &d.sources {
                new_rows.push((*id, s, d, at_check_in, a.seen));
            }
        }
    }
    for chunk in new_rows.chunks(ROWS_PER_STATEMENT) {
        let mut values = Vec::with_capacity(chunk.len() * 8);
        for (id, s, d, at_check_in, seen) in chunk {
            values.extend([
                (*id).into(),
                s.source.as_str().into(),
                s.ok.map_or(-1_i64, i64::from).into(),
                (*seen).into(),
                d.finished_at.unwrap_or(*at_check_in).into(),
                s.reason.as_deref().into(),
                d.served_by.as_deref().into(),
                as_i64(s.bytes).into(),
            ]);
        }
        out.push(Statement {
            sql: Cow::Owned(format!(
                "INSERT INTO client_sources (client_id, source, ok, seen, at, reason, \
                 served_by, bytes) VALUES {}",
                rows(chunk.len(), 8)
            )),
            params: values,
        });
    }
    // Still seen: the source health counts clients by their last check-in.
    let mut seen_only: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (id, a) in sources {
        if a.report.is_none() {
            seen_only.entry(a.seen).or_default().push(id);
        }
    }
    for (seen, ids) in &seen_only {
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut values = vec![(*seen).into()];
            values.extend(chunk.iter().map(|id| (*id).into()));
            out.push(Statement {
                sql: Cow::Owned(format!(
                    "UPDATE client_sources SET seen = $1 WHERE client_id IN ({})",
                    params(2, chunk.len())
                )),
                params: values,
            });
        }
    }
}

/// The batch's bytes per hour and source added to `traffic`, each key once.
fn plan_traffic<'a>(out: &mut Vec<Statement<'a>>, traffic: &BTreeMap<(i64, &'a str), (i64, i64)>) {
    let all: Vec<_> = traffic.iter().collect();
    for chunk in all.chunks(ROWS_PER_STATEMENT) {
        let mut values = Vec::with_capacity(chunk.len() * 4);
        for ((hour, source), (bytes, clients)) in chunk {
            values.extend([
                (*hour).into(),
                (*source).into(),
                (*bytes).into(),
                (*clients).into(),
            ]);
        }
        out.push(Statement {
            sql: Cow::Owned(format!(
                "INSERT INTO traffic (hour, source, bytes, clients) VALUES {} \
                 ON CONFLICT (hour, source) DO UPDATE SET bytes = traffic.bytes + \
                 excluded.bytes, clients = traffic.clients + excluded.clients",
                rows(chunk.len(), 4)
            )),
            params: values,
        });
    }
}
