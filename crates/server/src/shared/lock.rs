//! One writer at a time: what an advisory lock guards ([`Writer`]), taking it on a
//! connection of its own, and the held lock ([`WriterLock`]).

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::Connection as _;

use super::{Shared, SharedError};

/// What an advisory lock guards (each a fixed 64-bit key: `"cascade"` then a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// A replica's start: creating or loading the CA, the site keys and the first policy.
    Startup,
    /// One publish to the site repository.
    Site,
    /// One mirror run.
    Mirror,
    /// The replica that runs the scheduled mirror (held for as long as it lives).
    MirrorLeader,
}

impl Writer {
    fn key(self) -> i64 {
        const BASE: i64 = 0x6361_7363_6164_0000;
        BASE + match self {
            Writer::Startup => 1,
            Writer::Site => 2,
            Writer::Mirror => 3,
            Writer::MirrorLeader => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Writer::Startup => "startup",
            Writer::Site => "site publish",
            Writer::Mirror => "mirror run",
            Writer::MirrorLeader => "mirror leader",
        }
    }
}

/// A held advisory lock: released by [`WriterLock::release`], or by PostgreSQL when its
/// connection closes (the value dropped, the process killed).
pub struct WriterLock {
    conn: PgConnection,
    writer: Writer,
}

impl std::fmt::Debug for WriterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterLock")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl WriterLock {
    /// Releases the lock and closes its connection.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.writer.key())
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }

    /// Whether the lock's connection still answers (else the lock is gone with it).
    pub async fn alive(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }
}

impl Shared {
    /// Takes `writer`'s lock on a connection of its own: waits up to `wait` (`None`: as long
    /// as it takes); `Ok(None)` when another replica still held it then.
    ///
    /// # Errors
    /// Database errors.
    pub async fn lock(
        &self,
        writer: Writer,
        wait: Option<Duration>,
    ) -> Result<Option<WriterLock>, SharedError> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let Some(wait) = wait else {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(writer.key())
                .execute(&mut conn)
                .await?;
            return Ok(Some(WriterLock { conn, writer }));
        };
        let until = tokio::time::Instant::now() + wait;
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(writer.key())
                .fetch_one(&mut conn)
                .await?;
            if got {
                return Ok(Some(WriterLock { conn, writer }));
            }
            if tokio::time::Instant::now() >= until {
                tracing::debug!(lock = writer.name(), "held by another replica");
                let _ = conn.close().await;
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
