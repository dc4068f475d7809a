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
//!
//! The parts: [`statements`] (the plan: a batch's statements, their text and values),
//! [`pool`] (the writer task through the pool); the queue, the writer's start and stop and
//! the answers are here.

mod pool;
mod statements;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{AnyPool, ConnectOptions as _};
use tokio::sync::{mpsc, oneshot};

use super::check_in_thread;
use super::fleet_stats::Derived;
use super::StoreError;

use pool::run;
pub(super) use statements::{in_order, plan, select_stored, Value};

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
