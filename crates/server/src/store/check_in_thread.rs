//! The check-in writer on SQLite (docs/operating.md#group-commit): an OS thread of its own
//! that owns a connection of its own to the database file, so a batch of check-ins costs one
//! hand-off from the runtime (the queue) and one answer per check-in after the commit,
//! whatever the number of statements. Through the pool, each statement was a round trip to
//! the connection's worker thread.
//!
//! The connection is set up as the pool's are (docs/operating.md#durability): WAL (the
//! database's mode), the same busy timeout, foreign keys on, and `synchronous = NORMAL`, the
//! level a check-in always ran at, for good (it writes nothing else). Transactions begin
//! `IMMEDIATE`, as the pool's writes do. A connection left inside a transaction by a failure
//! is closed and a new one opened for the next batch, never reused (the rule of
//! `crate::db`). The statements and their values are those the pool's writer runs
//! (`check_ins::plan`), prepared once and kept.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::check_ins::{
    answer, in_order, plan, select_stored, take, Job, Message, Value, MAX_BATCH,
};
use super::StoreError;

/// Prepared statements kept on the connection: a batch's multi-row statements differ by
/// their number of rows.
const STATEMENT_CACHE: usize = 64;

/// A failure SQLite reported, as the pool's errors carry it: its extended result code (what
/// [`crate::db::is_unavailable`] reads) and its message.
#[derive(Debug)]
struct SqliteFailure {
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        // SQLITE_CONSTRAINT_CHECK, _FOREIGNKEY, _NOTNULL, _PRIMARYKEY, _UNIQUE.
        match self.code {
            275 => ErrorKind::CheckViolation,
            787 => ErrorKind::ForeignKeyViolation,
            1299 => ErrorKind::NotNullViolation,
            1555 | 2067 => ErrorKind::UniqueViolation,
            _ => ErrorKind::Other,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(match e {
            rusqlite::Error::SqliteFailure(failure, message) => {
                sqlx::Error::Database(Box::new(SqliteFailure {
                    code: failure.extended_code,
                    message: message.unwrap_or_else(|| failure.to_string()),
                }))
            }
            other => sqlx::Error::Protocol(other.to_string()),
        })
    }
}

/// Opens the writer's connection to `file` (which the pool has created and migrated).
fn open(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_millis(crate::db::BUSY_TIMEOUT_MS))?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Opens the connection and starts the writer's thread on `rx`; `ended` is dropped when the
/// thread ends.
///
/// # Errors
/// The database cannot be opened, or no thread can be started.
pub(super) fn start(
    file: PathBuf,
    batches: Arc<AtomicU64>,
    rx: mpsc::Receiver<Message>,
    ended: oneshot::Sender<()>,
) -> Result<(), StoreError> {
    let conn = open(&file)?;
    std::thread::Builder::new()
        .name("check-ins".into())
        .spawn(move || {
            run(&file, conn, &batches, rx);
            drop(ended);
        })
        .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
    Ok(())
}

/// The thread: a batch at a time (what is waiting, at most [`MAX_BATCH`]) until stopped
/// (then what is queued) or every sender is gone.
fn run(file: &Path, conn: Connection, batches: &AtomicU64, mut rx: mpsc::Receiver<Message>) {
    let mut conn = Some(conn);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut open = take(&mut batch, first);
        while open && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => open = take(&mut batch, m),
                Err(_) => break,
            }
        }
        if !open {
            // No new check-ins; those queued are still stored.
            rx.close();
        }
        if batch.is_empty() {
            continue;
        }
        batches.fetch_add(1, Ordering::Relaxed);
        let jobs: Vec<&Job> = batch.iter().map(|(j, _)| j).collect();
        let result = write_on(file, &mut conn, &jobs);
        if let Some(redo) = answer(&mut batch, result) {
            for (job, reply) in redo {
                let _ = reply.send(write_on(file, &mut conn, &[&job]));
            }
        }
    }
}

/// [`write`] on the connection, opened again first when a failure closed it.
fn write_on(
    file: &Path,
    conn: &mut Option<Connection>,
    jobs: &[&Job],
) -> Result<(i64, i64), StoreError> {
    if conn.is_none() {
        *conn = Some(open(file)?);
    }
    let Some(c) = conn.as_mut() else {
        return Err(StoreError::Corrupt("check-in connection not open".into()));
    };
    let result = write(c, jobs);
    if result.is_err() && !c.is_autocommit() {
        // Still inside a transaction (its rollback failed): never reused.
        *conn = None;
    }
    result
}

/// Binds `values` to `statement` (numbered in order of first use: `check_ins::Statement`).
fn bind(statement: &mut rusqlite::Statement<'_>, values: &[Value<'_>]) -> rusqlite::Result<()> {
    if statement.parameter_count() != values.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            values.len(),
            statement.parameter_count(),
        ));
    }
    debug_assert!(
        (1..=values.len()).all(|i| statement.parameter_name(i) == Some(format!("${i}").as_str())),
        "parameters numbered in order of first use"
    );
    for (i, v) in values.iter().enumerate() {
        match v {
            Value::Int(n) => statement.raw_bind_parameter(i + 1, n)?,
            Value::Text(t) => statement.raw_bind_parameter(i + 1, t.as_deref())?,
        }
    }
    Ok(())
}

/// Stores `jobs` in one transaction on `conn`; the revisions after them.
fn write(conn: &mut Connection, jobs: &[&Job]) -> Result<(i64, i64), StoreError> {
    let (order, ids) = in_order(jobs);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut stored: HashMap<String, Option<String>> = HashMap::new();
    for chunk in ids.chunks(super::check_ins::ROWS_PER_STATEMENT) {
        let mut select = tx.prepare_cached(&select_stored(chunk.len()))?;
        let values: Vec<Value<'_>> = chunk.iter().map(|id| (*id).into()).collect();
        bind(&mut select, &values)?;
        let mut rows = select.raw_query();
        while let Some(r) = rows.next()? {
            stored.insert(r.get(0)?, r.get(1)?);
        }
    }
    for s in plan(&order, &stored) {
        let mut statement = tx.prepare_cached(&s.sql)?;
        bind(&mut statement, &s.params)?;
        statement.raw_execute()?;
    }
    let (policy, rollouts): (Option<i64>, i64) = tx
        .prepare_cached(super::clients::REVISIONS)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let policy = policy.ok_or_else(|| StoreError::Corrupt("no policy row".into()))?;
    tx.commit()?;
    Ok((policy, rollouts))
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    fn failure(code: i32) -> sqlx::Error {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            Some("from the test".into()),
        );
        match StoreError::from(e) {
            StoreError::Db(e) => e,
            other => panic!("{other:?}"),
        }
    }

    // SQLite's failures on the writer's connection answer as the pool's do: the storage
    // codes are "unavailable" (503), the others are not, and the code and kind are kept.
    #[test]
    fn sqlite_failures_keep_their_codes() {
        for (code, unavailable) in [
            (13, true),
            (5, true),
            (778, true),
            (14, true),
            (2067, false),
            (1811, false),
            (1, false),
        ] {
            assert_eq!(
                crate::db::is_unavailable(&failure(code)),
                unavailable,
                "code {code}"
            );
        }
        let sqlx::Error::Database(d) = failure(2067) else {
            panic!("a database error");
        };
        assert!(d.is_unique_violation());
        assert_eq!(d.code().as_deref(), Some("2067"));
        assert_eq!(d.message(), "from the test");
        let other = StoreError::from(rusqlite::Error::InvalidParameterCount(1, 2));
        assert!(
            matches!(&other, StoreError::Db(e) if !crate::db::is_unavailable(e)),
            "{other:?}"
        );
    }
}
