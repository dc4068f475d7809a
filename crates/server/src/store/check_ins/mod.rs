//! Group commit of check-ins (docs/operating.md#group-commit): one writer owns the check-in
//! write path. It takes the check-ins waiting in a bounded queue (at most [`MAX_BATCH`] at a
//! time), stores them in one transaction (one `BEGIN`/`COMMIT`, one read of the stored
//! reports, one read of the revisions, multi-row statements for the per-source rows and the
//! traffic) and answers each request only after the commit: an acknowledged check-in is
//! durable as before (docs/operating.md#durability).
//!
//! On SQLite the writer is an OS thread of its own with its own connection
//! (`check_in_thread.rs`): a batch is one hand-off from the runtime, its statements run as
//! direct calls. On PostgreSQL it is a task on the runtime that writes through the pool. Both
//! run the same statements, planned once here ([`plan`]) from the same text and values.
//!
//! A batch that fails for a reason of one check-in (not the storage being unavailable) is
//! rolled back and its check-ins are stored again one by one, each in its own transaction,
//! so one bad check-in does not lose the others. When the storage is unavailable, every
//! request of the batch is answered with that error. Sending waits while the queue is full;
//! [`CheckInWriter::stop`] stores or refuses what is queued before it returns, so nothing is
//! dropped unanswered.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{AnyPool, ConnectOptions as _, Row};
use tokio::sync::{mpsc, oneshot};

use super::check_in_thread;
use super::fleet_stats::{as_i64, categories_text, Derived};
use super::StoreError;

/// The most check-ins stored in one transaction.
pub const MAX_BATCH: usize = 256;
/// Check-ins that may wait for the writer; more senders wait (backpressure).
const QUEUE: usize = 4 * MAX_BATCH;
/// Rows per multi-row statement (8 parameters a row stays far under both databases' limits).
pub(super) const ROWS_PER_STATEMENT: usize = 200;

/// What a new update report adds, worked out before it is queued.
#[derive(Debug)]
pub(super) struct ReportFacts {
    /// The report as stored (JSON); compared with the stored one to tell a new report.
    pub text: String,
    /// Its outcome's wire name.
    pub outcome: Option<String>,
    /// Its fleet figures (docs/operating.md#fleet-charts).
    pub derived: Derived,
    /// What a rollout's evaluation reads (docs/operating.md#rollouts).
    pub trouble_at: i64,
}

/// One check-in, owned, as the writer stores it.
#[derive(Debug)]
pub(super) struct Job {
    /// The client.
    pub id: String,
    /// When it checked in (the server's clock at the request).
    pub now: i64,
    /// The IP it reported.
    pub reported_ip: Option<String>,
    /// The IP it came from.
    pub peer_ip: String,
    /// The key of its IP (docs/operating.md#fleet-charts).
    pub ip_key: Option<String>,
    /// Installed versions (JSON).
    pub installed: String,
    /// Its last update's report, if it sent one.
    pub report: Option<ReportFacts>,
    /// Its relay's report (JSON).
    pub relay: Option<String>,
    /// Its agent program's version.
    pub agent_version: Option<String>,
}

/// Where a check-in's answer goes: the revisions after its commit, or why it failed.
pub(super) type Reply = oneshot::Sender<Result<(i64, i64), StoreError>>;

/// What the writer's queue carries.
// Nearly every message is a check-in: boxing it would cost each one an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Message {
    /// A check-in to store.
    CheckIn(Job, Reply),
    /// Store what is queued, refuse the rest, end.
    Stop,
}

/// Where the writer writes.
enum Target {
    /// Through the pool, from a task (PostgreSQL; SQLite in memory).
    Pool(AnyPool),
    /// Through a connection of its own to this SQLite file, on a thread of its own.
    SqliteFile(PathBuf),
}

/// The writer while it runs.
struct Running {
    queue: mpsc::Sender<Message>,
    /// Resolves (with an error: its sender is dropped) when the writer has ended.
    ended: oneshot::Receiver<()>,
}

/// The check-in writer of one store: started at the first check-in (a task on the runtime of
/// that check-in, or its thread).
pub(super) struct CheckInWriter {
    target: Target,
    /// Transactions the writer committed or tried (tests see the check-ins batched).
    batches: Arc<AtomicU64>,
    running: std::sync::Mutex<Option<Running>>,
    stopped: AtomicBool,
}

/// Why a check-in could not be handed to the writer: it is stopped (the server is shutting
/// down). Answered 503, nothing stored.
fn stopped() -> StoreError {
    StoreError::Db(sqlx::Error::PoolClosed)
}

/// The SQLite file behind `pool`, when it is one (not in memory): the check-in thread opens
/// its own connection to it.
fn sqlite_file(pool: &AnyPool) -> Option<PathBuf> {
    let options = pool.connect_options();
    let url = &options.database_url;
    if !url.scheme().starts_with("sqlite") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_url(url).ok()?;
    let file = options.get_filename();
    (file.as_os_str() != ":memory:" && !file.as_os_str().is_empty()).then(|| file.to_owned())
}

impl CheckInWriter {
    pub(super) fn new(pool: AnyPool) -> Arc<Self> {
        let target = match sqlite_file(&pool) {
            Some(file) => Target::SqliteFile(file),
            None => Target::Pool(pool),
        };
        Arc::new(CheckInWriter {
            target,
            batches: Arc::default(),
            running: std::sync::Mutex::new(None),
            stopped: AtomicBool::new(false),
        })
    }

    /// The writer's queue, starting the writer when it is not running.
    fn queue(&self) -> Result<mpsc::Sender<Message>, StoreError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(stopped());
        }
        let mut running = self
            .running
            .lock()
            .map_err(|_| StoreError::Corrupt("check-in writer lock poisoned".into()))?;
        if let Some(r) = running.as_ref() {
            return Ok(r.queue.clone());
        }
        let (queue, rx) = mpsc::channel(QUEUE);
        let (ended_tx, ended) = oneshot::channel();
        match &self.target {
            Target::Pool(pool) => {
                let (pool, batches) = (pool.clone(), self.batches.clone());
                tokio::spawn(async move {
                    run(pool, batches, rx).await;
                    drop(ended_tx);
                });
            }
            Target::SqliteFile(file) => {
                check_in_thread::start(file.clone(), self.batches.clone(), rx, ended_tx)?;
            }
        }
        *running = Some(Running {
            queue: queue.clone(),
            ended,
        });
        Ok(queue)
    }

    /// Queues `job` (waiting while the queue is full) and waits for its commit: the policy
    /// and rollout revisions after it.
    pub(super) async fn submit(&self, job: Job) -> Result<(i64, i64), StoreError> {
        let queue = self.queue()?;
        let (reply, answer) = oneshot::channel();
        queue
            .send(Message::CheckIn(job, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Batches taken so far.
    #[cfg(test)]
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Whether the writer runs on a thread with a connection of its own (SQLite).
    #[cfg(test)]
    pub(super) fn on_own_thread(&self) -> bool {
        matches!(self.target, Target::SqliteFile(_))
    }

    /// Stops the writer: what is queued is stored (or refused with an error) before this
    /// returns; later check-ins are refused.
    pub(super) async fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = running {
            // Behind what is queued; a writer that has already ended does not take it.
            let _ = r.queue.send(Message::Stop).await;
            drop(r.queue);
            // Its sender is dropped when the writer ends, panicked or not.
            let _ = r.ended.await;
        }
    }
}

/// Adds `message` to `batch`; `false` for [`Message::Stop`] (the queue is then to be closed).
pub(super) fn take(batch: &mut Vec<(Job, Reply)>, message: Message) -> bool {
    match message {
        Message::CheckIn(job, reply) => {
            batch.push((job, reply));
            true
        }
        Message::Stop => false,
    }
}

/// The writer task (through the pool): a batch at a time until stopped (then what is
/// queued) or every sender is gone.
async fn run(pool: AnyPool, batches: Arc<AtomicU64>, mut rx: mpsc::Receiver<Message>) {
    let mut messages = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.recv_many(&mut messages, MAX_BATCH).await == 0 {
            return;
        }
        for m in messages.drain(..) {
            if !take(&mut batch, m) {
                // No new check-ins; those queued are still stored.
                rx.close();
            }
        }
        if batch.is_empty() {
            continue;
        }
        batches.fetch_add(1, Ordering::Relaxed);
        let jobs: Vec<&Job> = batch.iter().map(|(j, _)| j).collect();
        let first = write_pool(&pool, &jobs).await;
        if let Some(redo) = answer(&mut batch, first) {
            for (job, reply) in redo {
                let _ = reply.send(write_pool(&pool, &[&job]).await);
            }
        }
    }
}

/// Answers each request of `batch` with the outcome of its transaction (`result`) and
/// empties it; when that transaction failed for a reason of one check-in, answers none and
/// returns them all, to be stored one by one.
pub(super) fn answer(
    batch: &mut Vec<(Job, Reply)>,
    result: Result<(i64, i64), StoreError>,
) -> Option<Vec<(Job, Reply)>> {
    match result {
        Ok(revisions) => {
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Ok(revisions));
            }
            None
        }
        Err(e)
            if batch.len() == 1
                || matches!(&e, StoreError::Db(d) if crate::db::is_unavailable(d)) =>
        {
            tracing::warn!(error = %e, check_ins = batch.len(), "check-ins not stored");
            let text = e.to_string();
            let mut first = Some(e);
            for (_, reply) in batch.drain(..) {
                let e = first
                    .take()
                    .unwrap_or_else(|| StoreError::Db(same_error(&text)));
                let _ = reply.send(Err(e));
            }
            None
        }
        Err(e) => {
            // One check-in's fault fails the whole transaction: store each on its own.
            tracing::debug!(error = %e, check_ins = batch.len(), "check-in batch failed, storing one by one");
            Some(std::mem::take(batch))
        }
    }
}

/// An error like the storage's error `text` for another request of the same batch
/// (`sqlx::Error` is not `Clone`): still "storage unavailable" (503).
fn same_error(text: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(text.to_owned()))
}

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
pub(super) enum Value<'a> {
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
pub(super) struct Statement<'a> {
    /// The SQL.
    pub sql: Cow<'static, str>,
    /// `$1`, `$2`, …
    pub params: Vec<Value<'a>>,
}

/// The stored report of each of `n` clients (a deleted client has no row: its check-in
/// stores nothing). Columns: `id`, `last_update`.
pub(super) fn select_stored(n: usize) -> String {
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
pub(super) fn in_order<'a>(jobs: &[&'a Job]) -> (Vec<&'a Job>, Vec<&'a str>) {
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
pub(super) fn plan<'a>(
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

/// `statement` with `values` bound, for the pool.
fn bind_pool<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    values: &'q [Value<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for v in values {
        q = match v {
            Value::Int(i) => q.bind(*i),
            Value::Text(t) => q.bind(t.as_deref()),
        };
    }
    q
}

/// Stores `jobs` in one transaction through the pool; the revisions after them.
async fn write_pool(pool: &AnyPool, jobs: &[&Job]) -> Result<(i64, i64), StoreError> {
    let (order, ids) = in_order(jobs);
    let mut conn = crate::db::relaxed_sync(pool).await?;
    let mut tx = crate::db::begin_write(&mut conn).await?;
    let mut stored: HashMap<String, Option<String>> = HashMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = select_stored(chunk.len());
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *tx).await? {
            stored.insert(r.try_get("id")?, r.try_get("last_update")?);
        }
    }
    for s in plan(&order, &stored) {
        bind_pool(sqlx::query(&s.sql), &s.params)
            .execute(&mut *tx)
            .await?;
    }
    let revisions = super::clients::revisions(&mut tx).await?;
    tx.commit().await?;
    conn.restore().await?;
    Ok(revisions)
}

#[cfg(test)]
mod tests;
