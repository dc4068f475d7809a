//! The SQL store: SQLite in the data directory by default (WAL mode), PostgreSQL for a
//! `postgres://` URL. One `sqlx::AnyPool` over either, runtime queries only, `$n`
//! placeholders (both backends accept them) and the same checked-in migrations.
//!
//! Durability (docs/operating.md#durability): a write the server acknowledged is committed.
//! SQLite runs in WAL mode with `synchronous = FULL` (every commit is synced to disk before it
//! returns); the one high-rate write, a client's check-in, is telemetry the client sends again
//! at its next cycle, and runs with `NORMAL`: it survives a crash or kill of the server, and at
//! most the last moments of check-ins are lost on a power cut. On a SQLite file the check-in
//! writer has a connection of its own at that level (`store/check_in_thread.rs`,
//! docs/operating.md#group-commit); elsewhere it takes a pooled one with [`relaxed_sync`]. A connection
//! that comes back to the pool still inside a transaction is closed rather than reused. That
//! last rule matters on a full disk: SQLite may roll a transaction back by itself on
//! `SQLITE_FULL`, the pool's own `ROLLBACK` then fails, and a reused connection would run every later "transaction" as a savepoint inside one that never
//! commits (acknowledged writes lost at the next restart, other writers "database is locked").
//! Errors that mean "the storage cannot take this now" are told apart by [`is_unavailable`].

use std::path::Path;

use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Database, TransactionManager as _};

use crate::ServerError;

/// How long a SQLite connection waits for another writer before it fails with "database is
/// locked" (every connection: the pool's and the check-in writer's).
pub(crate) const BUSY_TIMEOUT_MS: u64 = 5000;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The connection pool and its backend.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool.
    pub pool: AnyPool,
    /// The backend.
    pub backend: Backend,
}

/// Opens (creating if needed) the database and applies the migrations.
///
/// # Errors
/// A URL that is neither SQLite nor PostgreSQL, a database that cannot be opened, or a
/// failed migration.
pub async fn open(data_dir: &Path, url: Option<&str>) -> Result<Db, ServerError> {
    sqlx::any::install_default_drivers();
    let (url, backend) = match url {
        None => {
            private_dir(data_dir)?;
            let path = data_dir.join("cascade.db");
            private_file(&path)?;
            for side in ["cascade.db-wal", "cascade.db-shm"] {
                let side = data_dir.join(side);
                if side.exists() {
                    private_file(&side)?;
                }
            }
            (
                format!("sqlite://{}?mode=rwc", path.display()),
                Backend::Sqlite,
            )
        }
        Some(u) if u.starts_with("sqlite:") => (u.to_owned(), Backend::Sqlite),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            (u.to_owned(), Backend::Postgres)
        }
        Some(u) => {
            let scheme = u.split(':').next().unwrap_or_default();
            return Err(ServerError::DatabaseUrl(scheme.to_owned()));
        }
    };
    let max = if backend == Backend::Sqlite { 4 } else { 10 };
    let pool = AnyPoolOptions::new()
        .max_connections(max)
        // A pooled SQLite connection is a file handle that cannot go stale; pinging it before
        // each use cost every query a round trip to its worker thread. PostgreSQL
        // connections can die with the network, so they are still checked.
        .test_before_acquire(backend != Backend::Sqlite)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Per connection: sync the WAL on every commit (NORMAL may lose the last
                    // commits on power loss), and wait for a busy writer instead of failing.
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"))
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .after_release(move |conn, _| {
            Box::pin(async move {
                // SQLite runs a dropped transaction's ROLLBACK on its worker thread, and
                // counts the transaction as open until it has run: when one is pending, let
                // it run first (PostgreSQL counts it as done when queued). Then keep the
                // connection only if it is really out of every transaction. A connection out
                // of every transaction goes back at once: a statement here would cost every
                // query a round trip to the worker thread. (A check-in's relaxed sync level
                // is put back by [`Relaxed::restore`], or its connection closed.)
                let depth = |c: &sqlx::AnyConnection| {
                    <Any as Database>::TransactionManager::get_transaction_depth(c)
                };
                if backend == Backend::Sqlite && depth(conn) > 0 {
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(depth(conn) == 0)
            })
        })
        .connect(&url)
        .await?;
    if backend == Backend::Sqlite {
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await?;
    }
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(Db { pool, backend })
}

/// A connection for a write that may use SQLite's `synchronous = NORMAL` (WAL still makes it
/// atomic and crash-safe; a power cut may lose it). [`Relaxed::restore`] puts `FULL` back
/// before the connection returns to the pool; a connection dropped without it (an error, a
/// cancelled request) is closed, never reused at the relaxed level. On PostgreSQL it is a
/// plain connection.
///
/// # Errors
/// The pool's errors.
pub async fn relaxed_sync(pool: &AnyPool) -> Result<Relaxed, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let sqlite = conn.backend_name() == "SQLite";
    if sqlite {
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
    }
    Ok(Relaxed {
        conn,
        restored: !sqlite,
    })
}

/// A pooled connection at SQLite's relaxed sync level ([`relaxed_sync`]).
#[derive(Debug)]
pub struct Relaxed {
    conn: PoolConnection<Any>,
    /// `FULL` again (or never changed): the connection may go back to the pool.
    restored: bool,
}

impl Relaxed {
    /// Puts `synchronous = FULL` back, so the connection returns to the pool as it left it.
    ///
    /// # Errors
    /// The database's errors (the connection is then closed, not reused).
    pub async fn restore(mut self) -> Result<(), sqlx::Error> {
        if !self.restored {
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut *self.conn)
                .await?;
            self.restored = true;
        }
        Ok(())
    }
}

impl std::ops::Deref for Relaxed {
    type Target = PoolConnection<Any>;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Relaxed {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl Drop for Relaxed {
    fn drop(&mut self) {
        if !self.restored {
            self.conn.close_on_drop();
        }
    }
}

/// A transaction that will write, on `conn`: on SQLite `BEGIN IMMEDIATE`, so it takes the
/// write lock at the start and waits for it (`busy_timeout`) instead of failing at once with
/// "database is locked" when it reads first and another connection commits before its first
/// write (a deferred transaction cannot become a writer then); on PostgreSQL a plain `BEGIN`.
///
/// # Errors
/// The database's errors.
pub async fn begin_write(
    conn: &mut PoolConnection<Any>,
) -> Result<sqlx::Transaction<'_, Any>, sqlx::Error> {
    if conn.backend_name() == "SQLite" {
        sqlx::Connection::begin_with(&mut **conn, "BEGIN IMMEDIATE").await
    } else {
        sqlx::Connection::begin(&mut **conn).await
    }
}

/// Creates `dir` if needed and makes it `0700` whatever the umask
/// (`docs/operating.md#limits`): it holds the database and the repository keys.
///
/// # Errors
/// When the directory cannot be created or its mode set.
pub fn private_dir(dir: &Path) -> Result<(), ServerError> {
    let io = |source| ServerError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Creates `path` empty if it is missing and makes it `0600` whatever the umask. SQLite gives
/// its `-wal` and `-shm` files the mode of the database file.
fn private_file(path: &Path) -> Result<(), ServerError> {
    let io = |source| ServerError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut open = std::fs::OpenOptions::new();
    open.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        open.mode(0o600);
        open.open(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    open.open(path).map_err(io)?;
    Ok(())
}

/// Whether `e` means the storage cannot take the request now (disk full, I/O error, the
/// database busy past its timeout or unreachable), as opposed to a bug or bad data. Such
/// errors answer 503 and change nothing.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let backend = if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                Backend::Postgres
            } else {
                Backend::Sqlite
            };
            db.code().is_some_and(|c| unavailable_code(backend, &c))
        }
        _ => false,
    }
}

/// SQLite result codes (extended codes carry the primary code in the low byte) and
/// PostgreSQL SQLSTATEs that mean "storage unavailable".
fn unavailable_code(backend: Backend, code: &str) -> bool {
    if backend == Backend::Sqlite {
        // SQLITE_BUSY 5, SQLITE_LOCKED 6, SQLITE_NOMEM 7, SQLITE_IOERR 10, SQLITE_FULL 13,
        // SQLITE_CANTOPEN 14.
        return code
            .parse::<u32>()
            .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 7 | 10 | 13 | 14));
    }
    // 53xxx insufficient resources (53100 disk full), 58xxx system errors (58030 I/O),
    // 08xxx connection exceptions, 57P0x operator intervention (shutdown).
    code.starts_with("53")
        || code.starts_with("58")
        || code.starts_with("08")
        || code.starts_with("57P0")
}

#[cfg(test)]
mod tests {
    use super::{open, relaxed_sync, unavailable_code, Backend};

    async fn sync_level(conn: &mut sqlx::AnyConnection) -> i64 {
        use sqlx::Row as _;
        let row = sqlx::query("PRAGMA synchronous")
            .fetch_one(conn)
            .await
            .unwrap();
        // The Any driver reads SQLite's integer column as i64.
        row.try_get::<i64, _>(0).unwrap()
    }

    // A check-in's relaxed sync level ends with its connection: every pooled connection is
    // FULL (2) again afterwards, while the relaxed one was NORMAL (1).
    #[tokio::test]
    async fn relaxed_sync_is_put_back_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), None).await.unwrap();
        let mut relaxed = relaxed_sync(&db.pool).await.unwrap();
        assert_eq!(sync_level(&mut relaxed).await, 1);
        drop(relaxed);
        let mut all = Vec::new();
        for _ in 0..4 {
            all.push(db.pool.acquire().await.unwrap());
        }
        for conn in &mut all {
            assert_eq!(sync_level(conn).await, 2);
        }
    }

    // A restored relaxed connection goes back to the pool (no new connection is opened for
    // it) and at FULL; a query's connection returns without a statement run on release.
    #[tokio::test]
    async fn restored_relaxed_connection_is_reused_at_full() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), None).await.unwrap();
        let mut relaxed = relaxed_sync(&db.pool).await.unwrap();
        assert_eq!(sync_level(&mut relaxed).await, 1);
        let open = db.pool.size();
        relaxed.restore().await.unwrap();
        // Connections go back (or are closed) in a task of their own: wait for it, bounded.
        for _ in 0..500 {
            if usize::try_from(db.pool.size()).ok() == Some(db.pool.num_idle()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(db.pool.size(), open, "the restored connection is kept");
        assert_eq!(
            usize::try_from(open).ok(),
            Some(db.pool.num_idle()),
            "and is idle in the pool"
        );
        // Not restored: closed, not reused.
        let relaxed = relaxed_sync(&db.pool).await.unwrap();
        drop(relaxed);
        for _ in 0..500 {
            if db.pool.size() < open {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(db.pool.size(), open - 1, "the relaxed connection is closed");
        let mut again = db.pool.acquire().await.unwrap();
        assert_eq!(sync_level(&mut again).await, 2);
        drop(again);
        // A dropped transaction is rolled back before the connection is reused.
        let mut conn = db.pool.acquire().await.unwrap();
        let mut tx = super::begin_write(&mut conn).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);
        drop(conn);
        let mut conn = db.pool.acquire().await.unwrap();
        let gone = sqlx::query("SELECT name FROM sqlite_master WHERE name = 't'")
            .fetch_optional(&mut *conn)
            .await
            .unwrap();
        assert!(
            gone.is_none(),
            "the dropped transaction's table is not there"
        );
        assert_eq!(sync_level(&mut conn).await, 2);
    }

    #[test]
    fn storage_codes() {
        for c in ["13", "5", "778", "3338", "14"] {
            assert!(unavailable_code(Backend::Sqlite, c), "sqlite {c}");
        }
        for c in ["19", "2067", "1", "11", "53100"] {
            assert!(!unavailable_code(Backend::Sqlite, c), "sqlite {c}");
        }
        for c in ["53100", "58030", "08006", "57P01"] {
            assert!(unavailable_code(Backend::Postgres, c), "postgres {c}");
        }
        for c in ["23505", "42P01", "22001", "13"] {
            assert!(!unavailable_code(Backend::Postgres, c), "postgres {c}");
        }
    }
}
