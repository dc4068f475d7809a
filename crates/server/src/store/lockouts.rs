//! Failed credential attempts and lockouts (`docs/operating.md#rate-limits-and-lockout`):
//! counted per key in a window, a lock set when the count reaches the limit. Only failures
//! write; a success removes its name's or id's row, and only when there is one, so the
//! success path of a check-in reads at most and never writes.

use sqlx::Row;

use super::{Store, StoreError};

/// What the rows of some keys say now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockState {
    /// The latest time (unix seconds) until which one of the keys is locked, if any is.
    pub locked_until: Option<i64>,
    /// The keys that have a row (failures counted, or a lock).
    pub counted: Vec<String>,
}

/// How failures turn into a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRule {
    /// Failures within the window that lock the key.
    pub max_failures: u32,
    /// The window, in seconds, counted from the first failure in it.
    pub window_secs: i64,
    /// How long the lock lasts, in seconds.
    pub lock_secs: i64,
}

impl Store {
    /// The lock and counted state of `keys` at `now`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn lock_state(&self, keys: &[&str], now: i64) -> Result<LockState, StoreError> {
        let mut state = LockState::default();
        for key in keys {
            let row = sqlx::query("SELECT locked_until FROM auth_failures WHERE subject = $1")
                .bind(*key)
                .fetch_optional(&self.pool)
                .await?;
            let Some(row) = row else { continue };
            state.counted.push((*key).to_owned());
            let until: Option<i64> = row.try_get("locked_until")?;
            if let Some(u) = until.filter(|u| *u > now) {
                state.locked_until = Some(state.locked_until.map_or(u, |l| l.max(u)));
            }
        }
        Ok(state)
    }

    /// Counts one failure of `key` at `now` under `rule`; returns the end of the lock when this
    /// failure set one. Rows whose window and lock are both over are removed on the way.
    ///
    /// # Errors
    /// Database errors.
    pub async fn record_failure(
        &self,
        key: &str,
        now: i64,
        rule: FailureRule,
    ) -> Result<Option<i64>, StoreError> {
        let window_over = now.saturating_sub(rule.window_secs);
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let failures: i64 = sqlx::query(
            "INSERT INTO auth_failures (subject, failures, window_start, locked_until) \
             VALUES ($1, 1, $2, NULL) \
             ON CONFLICT (subject) DO UPDATE SET \
               failures = CASE WHEN auth_failures.window_start <= $3 THEN 1 \
                          ELSE auth_failures.failures + 1 END, \
               window_start = CASE WHEN auth_failures.window_start <= $3 THEN $2 \
                              ELSE auth_failures.window_start END \
             RETURNING failures",
        )
        .bind(key)
        .bind(now)
        .bind(window_over)
        .fetch_one(&mut *tx)
        .await?
        .try_get("failures")?;
        let locked = if failures >= i64::from(rule.max_failures.max(1)) {
            let until = now.saturating_add(rule.lock_secs);
            sqlx::query(
                "UPDATE auth_failures SET locked_until = $2, failures = 0, window_start = $3 \
                 WHERE subject = $1",
            )
            .bind(key)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Some(until)
        } else {
            None
        };
        sqlx::query(
            "DELETE FROM auth_failures WHERE window_start <= $1 \
             AND (locked_until IS NULL OR locked_until <= $2) AND subject <> $3",
        )
        .bind(window_over)
        .bind(now)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(locked)
    }

    /// Forgets the failures of `key` (after a success).
    ///
    /// # Errors
    /// Database errors.
    pub async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM auth_failures WHERE subject = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
