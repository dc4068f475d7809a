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
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use cascade_core::report::{Attempt, Outcome, RelayReport, ServedClient, UpdateReport};
    use cascade_core::Category;
    use sqlx::{AnyPool, Connection as _, Row as _};

    use crate::settings::TestClock;
    use crate::store::{CheckInRecord, Store, StoreError};

    /// A store on a fresh database: SQLite in `dir`, or the PostgreSQL `url`.
    struct Fixture {
        store: Store,
        pool: AnyPool,
        clock: Arc<TestClock>,
        /// A URL to open a connection of its own (not the store's pool).
        url: String,
    }

    async fn fixture(dir: &std::path::Path, pg: Option<&str>) -> Fixture {
        let db = crate::db::open(dir, pg).await.unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(1_800_000)));
        let store = Store::new(db.pool.clone(), clock.clone());
        store.initialize(("admin", "x"), &[]).await.unwrap();
        let url = pg.map_or_else(
            || format!("sqlite://{}", dir.join("cascade.db").display()),
            str::to_owned,
        );
        Fixture {
            store,
            pool: db.pool,
            clock,
            url,
        }
    }

    const CLIENTS: usize = 12;

    fn client_id(i: usize) -> String {
        format!("c{i:02}")
    }

    /// Forgets every client's check-ins and figures: the clients as enrolled, c00..c03 the
    /// approved update agents at their addresses.
    async fn reset(pool: &AnyPool) {
        for table in ["client_sources", "traffic", "clients"] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(pool)
                .await
                .unwrap();
        }
        for i in 0..CLIENTS {
            let agent = (i < 4).then(|| format!("10.0.0.{i}:8080"));
            sqlx::query(
                "INSERT INTO clients (id, name, credential_hash, enrolled_at, enrolled_from, \
                 installed, agent_address, agent_approved_at) \
                 VALUES ($1, $2, 'x', 1, '127.0.0.1', '{}', $3, $4)",
            )
            .bind(client_id(i))
            .bind(format!("pc-{i}"))
            .bind(agent.clone())
            .bind(agent.map(|_| 1_i64))
            .execute(pool)
            .await
            .unwrap();
        }
    }

    fn attempt(category: Category, source: &str, outcome: Outcome, bytes: u64) -> Attempt {
        Attempt {
            category: Some(category),
            step: 1,
            source: source.to_owned(),
            outcome,
            reason: (outcome == Outcome::Failed).then(|| "connect".into()),
            bytes,
            millis: 0,
        }
    }

    fn report(i: usize, k: u64) -> UpdateReport {
        let i64_i = i64::try_from(i).unwrap();
        let n = u64::try_from(i).unwrap();
        UpdateReport {
            finished_at: (!i.is_multiple_of(4)).then_some(1_799_000 + i64_i),
            outcome: if i.is_multiple_of(5) {
                Outcome::Failed
            } else {
                Outcome::Ok
            },
            attempts: vec![
                attempt(
                    Category::Components,
                    "agent:10.0.0.1:8080",
                    Outcome::Failed,
                    n * 10,
                ),
                attempt(Category::Components, "server", Outcome::Ok, 1000 * k + n),
                attempt(
                    Category::Programs,
                    "url:http://m.example/",
                    if i.is_multiple_of(2) {
                        Outcome::Quit
                    } else {
                        Outcome::Ok
                    },
                    if i.is_multiple_of(3) { 0 } else { 50 * k },
                ),
            ],
        }
    }

    /// One planned check-in: when, who, what.
    #[derive(Clone)]
    struct Planned {
        now: i64,
        id: String,
        reported_ip: Option<String>,
        report: Option<UpdateReport>,
        relay: Option<RelayReport>,
        agent_version: Option<String>,
        installed: BTreeMap<Category, String>,
    }

    /// Waves of check-ins (each wave at most 30, sent at once): new reports, the same
    /// report again, none, clients twice in a wave, a client that is not there, relay
    /// reports from agents and from a client that is not one, an hour boundary crossed.
    fn waves() -> Vec<Vec<Planned>> {
        let plan = |now: i64, i: usize, report: Option<UpdateReport>| Planned {
            now,
            id: client_id(i),
            reported_ip: (!i.is_multiple_of(3)).then(|| format!("10.1.0.{i}")),
            report,
            relay: (i < 5).then(|| RelayReport {
                since: Some(1),
                requests: 10 + u64::try_from(i).unwrap(),
                bytes_served: 100,
                upstream_fetches: 1,
                upstream_bytes: 10,
                refused: 0,
                client_count: 1,
                clients: vec![ServedClient {
                    ip: "10.2.0.1".into(),
                    requests: 1,
                    bytes: 100,
                }],
            }),
            agent_version: (i.is_multiple_of(2)).then(|| format!("1.{i}")),
            installed: BTreeMap::from([(Category::Components, format!("patterns {i}"))]),
        };
        let hour = 500 * 3600;
        let mut one = Vec::new();
        for i in 0..CLIENTS {
            one.push(plan(
                hour - 6 + i64::try_from(i).unwrap(),
                i,
                Some(report(i, 1)),
            ));
        }
        for i in 0..6 {
            one.push(plan(hour + 7, i, Some(report(i, 1))));
        }
        for i in 6..9 {
            one.push(plan(hour + 8, i, Some(report(i, 2))));
        }
        let mut gone = plan(hour + 9, 0, Some(report(0, 9)));
        gone.id = "gone".into();
        one.push(gone);
        let mut two = Vec::new();
        for i in 0..CLIENTS {
            let r = match i % 3 {
                0 => None,
                1 => Some(report(i, if (6..9).contains(&i) { 2 } else { 1 })),
                _ => Some(report(i, 3)),
            };
            two.push(plan(hour + 60, i, r));
        }
        for i in 0..4 {
            two.push(plan(hour + 61, i, Some(report(i, 4))));
        }
        let three = (0..CLIENTS)
            .map(|i| plan(hour + 3600, i, Some(report(i, 5))))
            .collect();
        vec![one, two, three]
    }

    async fn check_in(f: &Fixture, p: &Planned) -> Result<(i64, i64), StoreError> {
        f.clock.0.store(p.now, Ordering::SeqCst);
        f.store
            .check_in(
                &p.id,
                &CheckInRecord {
                    reported_ip: p.reported_ip.clone(),
                    peer_ip: "127.0.0.1".into(),
                    installed: &p.installed,
                    last_update: p.report.as_ref(),
                    relay: p.relay.as_ref(),
                    agent_version: p.agent_version.as_deref(),
                },
            )
            .await
    }

    /// Every stored fact a check-in writes: the clients' rows, their per-source rows, the
    /// traffic.
    async fn stored(pool: &AnyPool) -> Vec<String> {
        let mut out = Vec::new();
        for (sql, texts, ints) in [
            (
                "SELECT * FROM clients ORDER BY id",
                &[
                    "id",
                    "reported_ip",
                    "peer_ip",
                    "installed",
                    "last_update",
                    "last_outcome",
                    "relay_report",
                    "agent_version",
                    "failed_categories",
                    "ip_key",
                ][..],
                &[
                    "last_seen",
                    "program_trouble_at",
                    "report_at",
                    "failed_attempts",
                    "problem_attempts",
                    "derived",
                ][..],
            ),
            (
                "SELECT * FROM client_sources ORDER BY client_id, source",
                &["client_id", "source", "reason", "served_by"][..],
                &["ok", "seen", "at", "bytes"][..],
            ),
            (
                "SELECT * FROM traffic ORDER BY hour, source",
                &["source"][..],
                &["hour", "bytes", "clients"][..],
            ),
        ] {
            for r in sqlx::query(sql).fetch_all(pool).await.unwrap() {
                let mut line = Vec::new();
                for c in texts {
                    line.push(format!(
                        "{c}={:?}",
                        r.try_get::<Option<String>, _>(*c).unwrap()
                    ));
                }
                for c in ints {
                    line.push(format!(
                        "{c}={:?}",
                        r.try_get::<Option<i64>, _>(*c).unwrap()
                    ));
                }
                out.push(line.join(" "));
            }
        }
        out
    }

    /// The same check-ins one at a time and all at once (in batches): the same rows, the
    /// same fleet figures, and the concurrent ones took fewer transactions than check-ins.
    async fn batched_equals_sequential(f: &Fixture) {
        reset(&f.pool).await;
        for wave in waves() {
            for p in &wave {
                check_in(f, p).await.unwrap();
            }
        }
        let one_by_one = stored(&f.pool).await;
        assert!(
            one_by_one
                .iter()
                .any(|l| l.starts_with("source=Some(\"server\")")),
            "traffic was stored: {one_by_one:#?}"
        );
        reset(&f.pool).await;
        let before = f.store.check_ins.batches();
        let mut sent = 0;
        for wave in waves() {
            sent += wave.len();
            let answers = futures::future::join_all(wave.iter().map(|p| check_in(f, p))).await;
            for (p, a) in wave.iter().zip(answers) {
                assert_eq!(a.unwrap(), (1, 0), "check-in of {}", p.id);
            }
        }
        let batches = f.store.check_ins.batches() - before;
        assert!(
            batches < u64::try_from(sent).unwrap(),
            "{sent} check-ins took {batches} transactions"
        );
        assert_eq!(stored(&f.pool).await, one_by_one);
    }

    /// Each check-in, once answered, is there for a connection of its own.
    async fn answered_after_commit(f: &Fixture) {
        reset(&f.pool).await;
        let wave = &waves()[0];
        let calls = wave.iter().filter(|p| p.id != "gone").map(|p| async move {
            check_in(f, p).await.unwrap();
            let mut own = sqlx::AnyConnection::connect(&f.url).await.unwrap();
            let seen: Option<i64> = sqlx::query("SELECT last_seen FROM clients WHERE id = $1")
                .bind(&p.id)
                .fetch_one(&mut own)
                .await
                .unwrap()
                .try_get("last_seen")
                .unwrap();
            own.close().await.unwrap();
            assert!(
                seen >= Some(p.now),
                "{} answered but its check-in is not readable",
                p.id
            );
        });
        futures::future::join_all(calls).await;
    }

    /// A check-in the database refuses fails alone: the others sent with it are stored.
    async fn one_refused_check_in_loses_no_other(f: &Fixture, refuse: &[&str]) {
        reset(&f.pool).await;
        for sql in refuse {
            sqlx::query(sql).execute(&f.pool).await.unwrap();
        }
        let wave: Vec<Planned> = waves()[2].clone();
        let answers = futures::future::join_all(wave.iter().map(|p| check_in(f, p))).await;
        let now = wave[0].now;
        for (p, a) in wave.iter().zip(answers) {
            let seen: Option<i64> = sqlx::query("SELECT last_seen FROM clients WHERE id = $1")
                .bind(&p.id)
                .fetch_one(&f.pool)
                .await
                .unwrap()
                .try_get("last_seen")
                .unwrap();
            let sources: i64 =
                sqlx::query("SELECT COUNT(*) AS n FROM client_sources WHERE client_id = $1")
                    .bind(&p.id)
                    .fetch_one(&f.pool)
                    .await
                    .unwrap()
                    .try_get("n")
                    .unwrap();
            if p.id == "c05" {
                assert!(a.is_err(), "the refused check-in is answered with an error");
                assert_eq!((seen, sources), (None, 0), "nothing of it is stored");
            } else {
                assert_eq!(a.unwrap(), (1, 0), "{}", p.id);
                assert_eq!((seen, sources), (Some(now), 3), "{} is stored", p.id);
            }
        }
    }

    /// The writer and the pool see each other's writes: an approval, a policy write and a
    /// deletion made through the pool count for the next check-in, and each check-in is
    /// there for the pool once answered.
    async fn writer_and_pool_see_each_other(f: &Fixture) {
        reset(&f.pool).await;
        let mut p = waves()[0].iter().find(|p| p.id == "c04").unwrap().clone();
        let relay_report = |pool: AnyPool| async move {
            sqlx::query("SELECT relay_report, last_seen FROM clients WHERE id = 'c04'")
                .fetch_optional(&pool)
                .await
                .unwrap()
                .map(|r| {
                    (
                        r.try_get::<Option<String>, _>("relay_report").unwrap(),
                        r.try_get::<Option<i64>, _>("last_seen").unwrap(),
                    )
                })
        };
        assert!(p.relay.is_some());
        assert_eq!(check_in(f, &p).await.unwrap(), (1, 0));
        assert_eq!(
            relay_report(f.pool.clone()).await,
            Some((None, Some(p.now))),
            "not an approved agent: its relay report is not kept"
        );
        sqlx::query("UPDATE clients SET agent_approved_at = 1 WHERE id = 'c04'")
            .execute(&f.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE policy SET revision = 2 WHERE id = 1")
            .execute(&f.pool)
            .await
            .unwrap();
        p.now += 1;
        assert_eq!(
            check_in(f, &p).await.unwrap(),
            (2, 0),
            "the policy written through the pool"
        );
        let (relay, seen) = relay_report(f.pool.clone()).await.unwrap();
        assert!(relay.is_some(), "approved through the pool: kept");
        assert_eq!(seen, Some(p.now));
        assert!(f.store.delete_client("c04").await.unwrap());
        p.now += 1;
        assert_eq!(check_in(f, &p).await.unwrap(), (2, 0));
        assert_eq!(
            relay_report(f.pool.clone()).await,
            None,
            "deleted through the pool: nothing stored"
        );
        sqlx::query("UPDATE policy SET revision = 1 WHERE id = 1")
            .execute(&f.pool)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn sqlite_batched_check_ins_store_what_sequential_ones_do() {
        let dir = tempfile::tempdir().unwrap();
        batched_equals_sequential(&fixture(dir.path(), None).await).await;
    }

    #[tokio::test]
    async fn sqlite_check_in_is_answered_after_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        answered_after_commit(&fixture(dir.path(), None).await).await;
    }

    #[tokio::test]
    async fn sqlite_writer_thread_and_pool_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(dir.path(), None).await;
        assert!(
            f.store.check_ins.on_own_thread(),
            "SQLite file: its own thread"
        );
        writer_and_pool_see_each_other(&f).await;
    }

    // Check-ins that wait for the writer's thread go in together: while another connection
    // holds the write lock, none is stored, and once it is released they take fewer
    // transactions than check-ins.
    #[tokio::test]
    async fn sqlite_writer_thread_stores_a_batch_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(dir.path(), None).await;
        reset(&f.pool).await;
        let wave = waves()[2].clone();
        // The first check-in starts the writer; it then waits for the lock held here.
        check_in(&f, &wave[0]).await.unwrap();
        let mut lock = sqlx::AnyConnection::connect(&f.url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut lock)
            .await
            .unwrap();
        let before = f.store.check_ins.batches();
        let release = async {
            // Wait (bounded) until the writer has taken a batch: it waits for the lock.
            for _ in 0..300 {
                if f.store.check_ins.batches() > before {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let seen: i64 = sqlx::query("SELECT COUNT(*) AS n FROM clients WHERE last_seen = $1")
                .bind(wave[1].now)
                .fetch_one(&mut lock)
                .await
                .unwrap()
                .try_get("n")
                .unwrap();
            assert_eq!(
                seen, 1,
                "only the first check-in is stored while the lock is held"
            );
            sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
        };
        let (answers, ()) = tokio::join!(
            futures::future::join_all(wave.iter().skip(1).map(|p| check_in(&f, p))),
            release
        );
        for a in answers {
            assert_eq!(a.unwrap(), (1, 0));
        }
        let batches = f.store.check_ins.batches() - before;
        assert!(
            batches < u64::try_from(wave.len() - 1).unwrap(),
            "{} check-ins took {batches} transactions",
            wave.len() - 1
        );
        let seen: i64 = sqlx::query("SELECT COUNT(*) AS n FROM clients WHERE last_seen = $1")
            .bind(wave[1].now)
            .fetch_one(&f.pool)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(seen, i64::try_from(wave.len()).unwrap());
    }

    #[tokio::test]
    async fn sqlite_refused_check_in_loses_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(dir.path(), None).await;
        one_refused_check_in_loses_no_other(
            &f,
            &[
                "CREATE TRIGGER refuse_c05 BEFORE UPDATE ON clients WHEN NEW.id = 'c05' \
               BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            ],
        )
        .await;
    }

    // The same on PostgreSQL (one database for the three: crates/testkit's postgres).
    #[tokio::test]
    async fn postgres_batched_check_ins() {
        let pg = cascade_testkit::postgres::Database::new()
            .await
            .expect("PostgreSQL for the test");
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(dir.path(), Some(&pg.url)).await;
        batched_equals_sequential(&f).await;
        assert!(
            !f.store.check_ins.on_own_thread(),
            "PostgreSQL: through the pool"
        );
        answered_after_commit(&f).await;
        writer_and_pool_see_each_other(&f).await;
        one_refused_check_in_loses_no_other(
            &f,
            &[
                "CREATE FUNCTION refuse_c05() RETURNS trigger AS $$ BEGIN \
                 RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse_c05 BEFORE UPDATE ON clients FOR EACH ROW \
                 WHEN (NEW.id = 'c05') EXECUTE FUNCTION refuse_c05()",
            ],
        )
        .await;
        f.store.stop_check_ins().await;
        f.pool.close().await;
        pg.drop_db().await.expect("dropping the test database");
    }

    // Stopping stores what is queued, then refuses.
    #[tokio::test]
    async fn stop_stores_queued_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(dir.path(), None).await;
        reset(&f.pool).await;
        let wave = &waves()[2];
        let (answers, ()) = tokio::join!(
            futures::future::join_all(wave.iter().map(|p| check_in(&f, p))),
            f.store.stop_check_ins()
        );
        for (p, a) in wave.iter().zip(answers) {
            a.unwrap_or_else(|e| panic!("{} queued before the stop: {e}", p.id));
        }
        let late = check_in(&f, &wave[0]).await;
        assert!(
            matches!(late, Err(StoreError::Db(sqlx::Error::PoolClosed))),
            "{late:?}"
        );
    }
}
