//! The store: every SQL statement of the server and every policy write, behind one
//! [`Store`] value that handlers (through `State<Store>`), the console and background tasks
//! share. Callers get typed records and typed [`StoreError`]s; HTTP is not known here
//! (`crate::error` turns a `StoreError` into a response).
//!
//! The policy is one JSON document under a revision number. A write is one transaction that
//! reads the current revision, refuses a stale expected revision, applies a pure `core`
//! operation and stores the result only if it validates. The `UPDATE … WHERE revision =
//! $current` keeps replicas sharing one PostgreSQL honest too.

mod audit;
mod check_in_thread;
mod check_ins;
mod client_list;
mod clients;
mod fleet_stats;
mod lockouts;
mod notices;
mod policy;
mod rollouts;
mod search;
mod sessions;
mod tokens;
mod users;

use std::sync::Arc;

use cascade_core::{Policy, PolicyDoc, PolicyError};
use sqlx::{AnyPool, Row};

pub use audit::NewAudit;
pub use client_list::{ClientQuery, ClientSort};
pub use clients::{AgentRecord, CheckInRecord, ClientRecord, Enrollment, NewClient};
pub use fleet_stats::{
    derive, failed_categories, ip_key, ip_key_of, FleetSample, InstalledGroup, SourceTally,
    TrafficRow, SAMPLE_SECS, TRAFFIC_HOURS,
};
pub use lockouts::{FailureRule, LockState};
pub use notices::{NoticeRecord, NOTICE_CHANNEL};
pub use rollouts::{program_trouble_at, NewRolloutRecord, RingFacts, RolloutChange, RolloutRecord};
pub use search::{SearchFill, SearchIndex};
pub use sessions::{FlashKind, NewSession, SessionRecord, TOUCH_EVERY_SECS};
pub use tokens::TokenKind;
pub use users::TokenGrant;

use crate::error::ApiError;
use crate::settings::Clock;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write named a policy revision that is no longer current.
    #[error("policy revision {expected} is stale: the current revision is {current}")]
    Stale {
        /// The revision the caller named.
        expected: i64,
        /// The revision stored.
        current: i64,
    },
    /// The policy operation or its result is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Stored data does not decode (a bug or a hand-edited database).
    #[error("stored data: {0}")]
    Corrupt(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Stale { expected, current } => {
                ApiError::StaleRevision { expected, current }
            }
            StoreError::Policy(p) => ApiError::Policy(p),
            StoreError::Db(d) => ApiError::from(d),
            StoreError::Corrupt(m) => ApiError::Internal(m),
        }
    }
}

/// The server's storage: the pool, the clock writes are stamped with, and the policy write
/// lock. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    clock: Arc<dyn Clock>,
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Which clients search index is complete (`search.rs`).
    search: Arc<search::Ready>,
    /// The check-in writer (docs/operating.md#group-commit).
    check_ins: Arc<check_ins::CheckInWriter>,
    /// The policy and rollout revisions in memory
    /// (docs/operating.md#policy-revisions-in-memory).
    revisions: Arc<crate::revisions::Revisions>,
}

/// A policy and its revision.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Monotonic revision; 1 is the default policy of a fresh store.
    pub revision: i64,
    /// The policy.
    pub policy: Policy,
}

fn decode(doc: &str) -> Result<Policy, StoreError> {
    let doc: PolicyDoc = serde_json::from_str(doc)
        .map_err(|e| StoreError::Corrupt(format!("stored policy does not parse: {e}")))?;
    doc.into_policy()
        .map_err(|e| StoreError::Corrupt(format!("stored policy is invalid: {e}")))
}

fn encode(policy: &Policy) -> Result<String, StoreError> {
    serde_json::to_string(&PolicyDoc::from_policy(policy))
        .map_err(|e| StoreError::Corrupt(format!("policy does not serialize: {e}")))
}

/// JSON text of a stored column, or a [`StoreError::Corrupt`] naming it.
fn to_json<T: serde::Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl Store {
    /// A store over `pool`, stamping writes with `clock`.
    pub fn new(pool: AnyPool, clock: Arc<dyn Clock>) -> Self {
        Store {
            clock,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            search: Arc::default(),
            check_ins: check_ins::CheckInWriter::new(pool.clone()),
            revisions: Arc::default(),
            pool,
        }
    }

    /// This store with revisions read from the database answering for `max_age`
    /// (docs/operating.md#policy-revisions-in-memory).
    #[must_use]
    pub fn with_revisions_max_age(mut self, max_age: std::time::Duration) -> Self {
        self.revisions = Arc::new(crate::revisions::Revisions::new(max_age));
        self
    }

    /// The policy and rollout revisions held in memory.
    pub fn revisions(&self) -> &crate::revisions::Revisions {
        &self.revisions
    }

    /// Stops the check-in writer (docs/operating.md#group-commit): the check-ins queued are
    /// stored or answered with an error before this returns, later ones are refused (503).
    pub async fn stop_check_ins(&self) {
        self.check_ins.stop().await;
    }

    /// Now, by the injected clock (unix seconds).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The current policy.
    ///
    /// # Errors
    /// Database errors; a missing or corrupt row is [`StoreError::Corrupt`].
    pub async fn current(&self) -> Result<Stored, StoreError> {
        let row = sqlx::query("SELECT revision, doc FROM policy WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Corrupt("no policy row".into()))?;
        let revision: i64 = row.try_get("revision")?;
        let doc: String = row.try_get("doc")?;
        self.revisions.saw_policy(revision);
        Ok(Stored {
            revision,
            policy: decode(&doc)?,
        })
    }

    /// The current policy revision alone (the liveness probe).
    ///
    /// # Errors
    /// Database errors.
    pub async fn revision(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT revision FROM policy WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get::<i64, _>("revision"))
    }

    /// Applies `op` to the current policy in one transaction. `expected` is the revision the
    /// caller read (from `If-Match`); `None` applies to whatever is current. An `op` that
    /// returns an equal policy stores nothing and keeps the revision.
    ///
    /// # Errors
    /// [`StoreError::Stale`], the op's [`PolicyError`], database errors.
    pub async fn write<F>(
        &self,
        expected: Option<i64>,
        actor: &str,
        op: F,
    ) -> Result<Stored, StoreError>
    where
        F: FnOnce(&Policy) -> Result<Policy, PolicyError>,
    {
        // One writer per process; the conditional UPDATE guards against other processes.
        let _guard = self.write_lock.lock().await;
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let row = sqlx::query("SELECT revision, doc FROM policy WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::Corrupt("no policy row".into()))?;
        let current: i64 = row.try_get("revision")?;
        if let Some(expected) = expected {
            if expected != current {
                return Err(StoreError::Stale { expected, current });
            }
        }
        let doc: String = row.try_get("doc")?;
        let old = decode(&doc)?;
        let new = op(&old)?;
        new.validate()?;
        if new == old {
            return Ok(Stored {
                revision: current,
                policy: old,
            });
        }
        let text = encode(&new)?;
        let now = self.clock.now();
        let next = current + 1;
        let done = sqlx::query(
            "UPDATE policy SET revision = $1, doc = $2, updated_at = $3, updated_by = $4 \
             WHERE id = 1 AND revision = $5",
        )
        .bind(next)
        .bind(&text)
        .bind(now)
        .bind(actor)
        .bind(current)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Stale {
                expected: current,
                current: current + 1,
            });
        }
        sqlx::query(
            "INSERT INTO policy_history (revision, doc, updated_at, updated_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(next)
        .bind(&text)
        .bind(now)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.revisions.saw_policy(next);
        tracing::info!(revision = next, actor, "policy written");
        Ok(Stored {
            revision: next,
            policy: new,
        })
    }

    /// Whether the store holds no policy yet (a first start).
    ///
    /// # Errors
    /// Database errors.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM policy")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? == 0)
    }

    /// On an empty store: the default policy at revision 1, the bootstrap admin user
    /// (`(name, password hash)`) and the first tokens (`(id, kind, hash, label)`; admin
    /// tokens act as that user), in one transaction. `false` when the store was not empty.
    ///
    /// # Errors
    /// Database errors.
    pub async fn initialize(
        &self,
        admin: (&str, &str),
        tokens: &[(&str, TokenKind, &str, &str)],
    ) -> Result<bool, StoreError> {
        if !self.is_empty().await? {
            return Ok(false);
        }
        let now = self.clock.now();
        let doc = encode(&Policy::default())?;
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        for sql in [
            "INSERT INTO policy (id, revision, doc, updated_at, updated_by) VALUES (1, 1, $1, $2, 'first-start')",
            "INSERT INTO policy_history (revision, doc, updated_at, updated_by) VALUES (1, $1, $2, 'first-start')",
        ] {
            sqlx::query(sql).bind(&doc).bind(now).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, 'admin', $2, $3)",
        )
        .bind(admin.0)
        .bind(admin.1)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (id, kind, hash, label) in tokens {
            let user = (*kind == TokenKind::Admin).then_some(admin.0);
            sqlx::query(
                "INSERT INTO tokens (id, kind, hash, label, created_at, user_name) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(*id)
            .bind(kind.as_str())
            .bind(*hash)
            .bind(*label)
            .bind(now)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
