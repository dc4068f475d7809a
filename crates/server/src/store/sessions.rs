//! Console sessions (`docs/operating.md#console-sessions`): one row per logged-in browser,
//! keyed by the SHA-256 of the random cookie value (the cookie alone holds the secret), so
//! every replica on the database knows every session and a delete ends it everywhere at once.
//! A console request reads one row by primary key; `last_seen` is written at most once a
//! [`TOUCH_EVERY_SECS`]; expired rows are purged at each login.

use cascade_proto::UserRole;
use sqlx::Row;

use super::{Store, StoreError};

/// How often, at most, a session's `last_seen` is written (seconds).
pub const TOUCH_EVERY_SECS: i64 = 60;

/// The kind of a one-shot message shown on the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    /// The change was made.
    Ok,
    /// The change was refused.
    Error,
}

impl FlashKind {
    /// The stored (and rendered) name.
    pub fn as_str(self) -> &'static str {
        match self {
            FlashKind::Ok => "ok",
            FlashKind::Error => "error",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "ok" => Ok(FlashKind::Ok),
            "error" => Ok(FlashKind::Error),
            other => Err(StoreError::Corrupt(format!(
                "console_sessions.flash_kind: unknown kind `{other}`"
            ))),
        }
    }
}

/// A session as a console request needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The user it acts as.
    pub user: String,
    /// The API token it logged in with (`None`: a password login).
    pub token: Option<String>,
    /// The user's role at login.
    pub role: UserRole,
    /// The token every form of this session carries.
    pub csrf: String,
    /// Unix seconds of the last recorded use.
    pub last_seen: i64,
    /// Unix seconds after which the session is refused.
    pub expires_at: i64,
    /// The message waiting for the next page.
    pub flash: Option<(FlashKind, String)>,
}

/// A session to store at login.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// SHA-256 (hex) of the cookie value.
    pub id_hash: &'a str,
    /// The user it acts as.
    pub user: &'a str,
    /// The API token it logged in with, if any.
    pub token: Option<&'a str>,
    /// The user's role.
    pub role: UserRole,
    /// The session's CSRF token.
    pub csrf: &'a str,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

impl Store {
    /// Stores a new session and purges every expired one.
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_session(&self, s: NewSession<'_>) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, user_name, token_id, role, csrf, \
             created_at, last_seen, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(s.id_hash)
        .bind(s.user)
        .bind(s.token)
        .bind(s.role.as_str())
        .bind(s.csrf)
        .bind(now)
        .bind(s.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session under `id_hash` at `now`: one read by primary key. An expired row is
    /// deleted on the way; `last_seen` is written when older than [`TOUCH_EVERY_SECS`].
    ///
    /// # Errors
    /// Database errors; a row that does not decode is [`StoreError::Corrupt`].
    pub async fn live_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT user_name, token_id, role, csrf, last_seen, expires_at, flash_kind, \
             flash_text FROM console_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let expires_at: i64 = r.try_get("expires_at")?;
        if expires_at <= now {
            self.end_session(id_hash).await?;
            return Ok(None);
        }
        let role_text: String = r.try_get("role")?;
        let role = UserRole::parse(&role_text).ok_or_else(|| {
            StoreError::Corrupt(format!("console_sessions.role: unknown role `{role_text}`"))
        })?;
        let flash_kind: Option<String> = r.try_get("flash_kind")?;
        let flash_text: Option<String> = r.try_get("flash_text")?;
        let flash = match (flash_kind, flash_text) {
            (Some(k), Some(t)) => Some((FlashKind::parse(&k)?, t)),
            _ => None,
        };
        let mut last_seen: i64 = r.try_get("last_seen")?;
        if now.saturating_sub(last_seen) >= TOUCH_EVERY_SECS {
            sqlx::query("UPDATE console_sessions SET last_seen = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(id_hash)
                .execute(&self.pool)
                .await?;
            last_seen = now;
        }
        Ok(Some(SessionRecord {
            user: r.try_get("user_name")?,
            token: r.try_get("token_id")?,
            role,
            csrf: r.try_get("csrf")?,
            last_seen,
            expires_at,
            flash,
        }))
    }

    /// Sets (`Some`) or clears (`None`) the message waiting for the session's next page.
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_session_flash(
        &self,
        id_hash: &str,
        flash: Option<(FlashKind, &str)>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_sessions SET flash_kind = $1, flash_text = $2 WHERE id_hash = $3",
        )
        .bind(flash.map(|(k, _)| k.as_str()))
        .bind(flash.map(|(_, t)| t))
        .bind(id_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends one session (logout); `false` when there was none.
    ///
    /// # Errors
    /// Database errors.
    pub async fn end_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::settings::TestClock;

    async fn store(dir: &std::path::Path) -> (Store, Arc<TestClock>) {
        let db = crate::db::open(dir, None).await.unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(1_000)));
        (Store::new(db.pool, clock.clone()), clock)
    }

    async fn stored_last_seen(store: &Store, id_hash: &str) -> Option<i64> {
        sqlx::query("SELECT last_seen FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .fetch_optional(&store.pool)
            .await
            .unwrap()
            .map(|r| r.try_get("last_seen").unwrap())
    }

    fn new_session(id_hash: &str, expires_at: i64) -> NewSession<'_> {
        NewSession {
            id_hash,
            user: "admin",
            token: None,
            role: UserRole::Operator,
            csrf: "c5",
            expires_at,
        }
    }

    // `last_seen` is written at most once a minute; reads in between write nothing.
    #[tokio::test]
    async fn last_seen_is_written_at_most_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(dir.path()).await;
        store
            .create_session(new_session("h1", 5_000))
            .await
            .unwrap();
        let s = store.live_session("h1", 1_059).await.unwrap().unwrap();
        assert_eq!(
            (s.last_seen, s.role, s.csrf.as_str()),
            (1_000, UserRole::Operator, "c5")
        );
        assert_eq!(stored_last_seen(&store, "h1").await, Some(1_000));
        let s = store.live_session("h1", 1_060).await.unwrap().unwrap();
        assert_eq!(s.last_seen, 1_060);
        assert_eq!(stored_last_seen(&store, "h1").await, Some(1_060));
        store.live_session("h1", 1_100).await.unwrap().unwrap();
        assert_eq!(stored_last_seen(&store, "h1").await, Some(1_060));
    }

    // An expired session is refused and its row removed; a login purges every expired row.
    #[tokio::test]
    async fn expired_sessions_are_refused_and_purged() {
        let dir = tempfile::tempdir().unwrap();
        let (store, clock) = store(dir.path()).await;
        store
            .create_session(new_session("old", 2_000))
            .await
            .unwrap();
        store
            .create_session(new_session("older", 1_500))
            .await
            .unwrap();
        assert!(store.live_session("old", 1_999).await.unwrap().is_some());
        assert!(store.live_session("old", 2_000).await.unwrap().is_none());
        assert_eq!(
            stored_last_seen(&store, "old").await,
            None,
            "removed on read"
        );
        assert_eq!(stored_last_seen(&store, "older").await, Some(1_000));
        clock.0.store(1_500, Ordering::SeqCst);
        store
            .create_session(new_session("new", 9_000))
            .await
            .unwrap();
        assert_eq!(
            stored_last_seen(&store, "older").await,
            None,
            "purged at login"
        );
        assert_eq!(stored_last_seen(&store, "new").await, Some(1_500));
        assert!(store
            .live_session("unknown", 1_500)
            .await
            .unwrap()
            .is_none());
    }

    // The flash message is stored with the session and cleared; logout removes the row.
    #[tokio::test]
    async fn flash_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(dir.path()).await;
        store.create_session(new_session("h", 5_000)).await.unwrap();
        store
            .set_session_flash("h", Some((FlashKind::Error, "refused")))
            .await
            .unwrap();
        let s = store.live_session("h", 1_001).await.unwrap().unwrap();
        assert_eq!(s.flash, Some((FlashKind::Error, "refused".to_owned())));
        store.set_session_flash("h", None).await.unwrap();
        let s = store.live_session("h", 1_002).await.unwrap().unwrap();
        assert_eq!(s.flash, None);
        assert!(store.end_session("h").await.unwrap());
        assert!(!store.end_session("h").await.unwrap());
        assert!(store.live_session("h", 1_003).await.unwrap().is_none());
    }
}
