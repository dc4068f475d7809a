//! Rows of `rollouts` (`docs/operating.md#rollouts`): each rollout's rings and where it
//! stands, shared by every replica on the database. Every change sets the row's `revision`
//! from one counter (the highest revision plus one) and is conditional on the revision it
//! read, so two replicas promoting the same ring at once change it once; the highest
//! revision is the rollout revision clients fold into their policy revision.
//!
//! The evaluation of a rolling rollout reads only what it needs: each client's ring facts
//! ([`RingFacts`], no report) and the few clients whose last report may fail a rollout
//! ([`Store::rollout_failure_candidates`], by the `program_trouble_at` column kept at each
//! check-in, `migrations/0018_rollout_failures.sql`).

use std::collections::BTreeMap;

use cascade_core::report::{Outcome, UpdateReport};
use cascade_core::Category;
use cascade_proto::{RingSpec, RolloutState};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{to_json, ClientRecord, Store, StoreError};

/// One rollout as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRecord {
    /// Its id.
    pub id: i64,
    /// The program.
    pub program: String,
    /// The version rolled out.
    pub version: String,
    /// The version the clients outside the rings reached keep.
    pub previous_version: Option<String>,
    /// The rings, in order.
    pub rings: Vec<RingSpec>,
    /// Where it stands.
    pub state: RolloutState,
    /// The current ring, 0-based.
    pub ring: usize,
    /// Unix seconds when the current ring started soaking.
    pub ring_started_at: i64,
    /// Why it was halted, rolled back or promoted by hand.
    pub reason: Option<String>,
    /// Unix seconds when it started.
    pub created_at: i64,
    /// Who started it.
    pub created_by: String,
    /// Unix seconds of its last change.
    pub updated_at: i64,
    /// The rollout revision of its last change.
    pub revision: i64,
}

/// A change of a rollout's state (the new values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutChange {
    /// The new state.
    pub state: RolloutState,
    /// The new current ring, 0-based.
    pub ring: usize,
    /// When the current ring started soaking.
    pub ring_started_at: i64,
    /// Why.
    pub reason: Option<String>,
}

/// A rollout to start (checked by the caller).
#[derive(Debug, Clone)]
pub struct NewRolloutRecord<'a> {
    /// The program.
    pub program: &'a str,
    /// The version.
    pub version: &'a str,
    /// The version clients outside the rings keep.
    pub previous_version: Option<&'a str>,
    /// The rings.
    pub rings: &'a [RingSpec],
    /// Who starts it.
    pub created_by: &'a str,
}

const COLUMNS: &str = "id, program, version, previous_version, rings, state, ring, \
     ring_started_at, reason, created_at, created_by, updated_at, revision";

fn record(r: &AnyRow) -> Result<RolloutRecord, StoreError> {
    let rings: String = r.try_get("rings")?;
    let state: String = r.try_get("state")?;
    let ring: i64 = r.try_get("ring")?;
    Ok(RolloutRecord {
        id: r.try_get("id")?,
        program: r.try_get("program")?,
        version: r.try_get("version")?,
        previous_version: r.try_get("previous_version")?,
        rings: serde_json::from_str(&rings)
            .map_err(|e| StoreError::Corrupt(format!("rollout rings: {e}")))?,
        state: RolloutState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("rollout state `{state}`")))?,
        ring: usize::try_from(ring)
            .map_err(|_| StoreError::Corrupt(format!("rollout ring {ring}")))?,
        ring_started_at: r.try_get("ring_started_at")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        updated_at: r.try_get("updated_at")?,
        revision: r.try_get("revision")?,
    })
}

/// What decides a client's ring and whether it updated: no report, no relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingFacts {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The IP it reported.
    pub reported_ip: Option<String>,
    /// The IP its last check-in came from.
    pub peer_ip: Option<String>,
    /// The address it enrolled from.
    pub enrolled_from: String,
    /// Installed version per category.
    pub installed: BTreeMap<Category, String>,
}

/// The `program_trouble_at` of a client whose last report is `report`: its finish time when
/// a programs step quit or carries a failure (a failed install, an agent build rolled back),
/// else 0. A rollout counts a client as failing only on such a report
/// (`crate::rollout::failed`), so the clients whose value is before a ring's start cannot be
/// failing in it.
pub fn program_trouble_at(report: &UpdateReport) -> i64 {
    let trouble = report.attempts.iter().any(|a| {
        a.category == Some(Category::Programs)
            && (a.outcome == Outcome::Quit
                || a.reason.as_ref().is_some_and(|r| r.failure().is_some()))
    });
    match report.finished_at {
        Some(at) if trouble => at,
        _ => 0,
    }
}

/// Rows not derived yet (`program_trouble_at` NULL) read and derived per batch.
const DERIVE_BATCH: i64 = 5_000;
/// Ids per `UPDATE … WHERE id IN (…)` of the derivation.
const DERIVE_IDS: usize = 500;

fn ring_number(ring: usize) -> i64 {
    i64::try_from(ring).unwrap_or(i64::MAX)
}

impl Store {
    /// The rollout revision: the highest revision of any rollout's change, 0 when none.
    ///
    /// # Errors
    /// Database errors.
    pub async fn rollout_revision(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(revision), 0) AS n FROM rollouts")
            .fetch_one(&self.pool)
            .await?;
        let n = row.try_get("n")?;
        self.revisions.saw_rollouts(n);
        Ok(n)
    }

    /// Every rollout, newest first.
    ///
    /// # Errors
    /// Database errors, undecodable rows.
    pub async fn rollouts(&self) -> Result<Vec<RolloutRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM rollouts ORDER BY id DESC"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }

    /// One rollout.
    ///
    /// # Errors
    /// Database errors, an undecodable row.
    pub async fn rollout(&self, id: i64) -> Result<Option<RolloutRecord>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM rollouts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    /// The newest rollout of each program (the one that decides its clients' versions).
    ///
    /// # Errors
    /// Database errors, undecodable rows.
    pub async fn governing_rollouts(&self) -> Result<Vec<RolloutRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rollouts r WHERE id = \
             (SELECT MAX(id) FROM rollouts o WHERE o.program = r.program) ORDER BY program"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// Starts a rollout at its first ring, now; returns it.
    ///
    /// # Errors
    /// Database errors (a concurrent change: try again).
    pub async fn start_rollout(
        &self,
        n: &NewRolloutRecord<'_>,
    ) -> Result<RolloutRecord, StoreError> {
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let row = sqlx::query(
            "SELECT COALESCE(MAX(id), 0) + 1 AS id, COALESCE(MAX(revision), 0) + 1 AS rev \
             FROM rollouts",
        )
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        let rev: i64 = row.try_get("rev")?;
        sqlx::query(
            "INSERT INTO rollouts (id, program, version, previous_version, rings, state, ring, \
             ring_started_at, reason, created_at, created_by, updated_at, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, NULL, $7, $8, $7, $9)",
        )
        .bind(id)
        .bind(n.program)
        .bind(n.version)
        .bind(n.previous_version)
        .bind(to_json("rings", &n.rings)?)
        .bind(RolloutState::Rolling.as_str())
        .bind(now)
        .bind(n.created_by)
        .bind(rev)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.revisions.saw_rollouts(rev);
        self.rollout(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("rollout {id} not found after insert")))
    }

    /// Changes rollout `id` to `change` if its revision is still `seen`; the changed rollout,
    /// or `None` when it changed meanwhile (another replica or request got there first).
    ///
    /// # Errors
    /// Database errors.
    pub async fn change_rollout(
        &self,
        id: i64,
        seen: i64,
        change: &RolloutChange,
    ) -> Result<Option<RolloutRecord>, StoreError> {
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let rev: i64 = sqlx::query("SELECT COALESCE(MAX(revision), 0) + 1 AS rev FROM rollouts")
            .fetch_one(&mut *tx)
            .await?
            .try_get("rev")?;
        let done = sqlx::query(
            "UPDATE rollouts SET state = $1, ring = $2, ring_started_at = $3, reason = $4, \
             updated_at = $5, revision = $6 WHERE id = $7 AND revision = $8",
        )
        .bind(change.state.as_str())
        .bind(ring_number(change.ring))
        .bind(change.ring_started_at)
        .bind(change.reason.as_deref())
        .bind(now)
        .bind(rev)
        .bind(id)
        .bind(seen)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        tx.commit().await?;
        self.revisions.saw_rollouts(rev);
        self.rollout(id).await
    }

    /// Restarts the soak of rollout `id`'s current ring at `now` if its revision is still
    /// `seen`, without a new revision (no client's pin changes).
    ///
    /// # Errors
    /// Database errors.
    pub async fn restart_soak(&self, id: i64, seen: i64, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE rollouts SET ring_started_at = $1 WHERE id = $2 AND revision = $3")
            .bind(now)
            .bind(id)
            .bind(seen)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every client's ring facts (no reports: the cheap read for counting rings).
    ///
    /// # Errors
    /// Database errors.
    pub async fn ring_facts(&self) -> Result<Vec<RingFacts>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, reported_ip, peer_ip, enrolled_from, installed FROM clients",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let installed: String = r.try_get("installed")?;
                Ok(RingFacts {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    reported_ip: r.try_get("reported_ip")?,
                    peer_ip: r.try_get("peer_ip")?,
                    enrolled_from: r.try_get("enrolled_from")?,
                    installed: serde_json::from_str(&installed).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The clients whose last report may fail a rollout since `since` (their report finished
    /// at or after it with a programs step that quit or failed), by name then id: a superset
    /// of the failing clients, which `crate::rollout::failed` picks out. Reports stored
    /// before `program_trouble_at` existed, and clients enrolled since the last call, are
    /// derived first ([`Store::derive_program_trouble`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn rollout_failure_candidates(
        &self,
        since: i64,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        self.derive_program_trouble().await?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM clients WHERE program_trouble_at >= $1 ORDER BY name, id",
            super::clients::COLUMNS
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(super::clients::record)
            .collect::<Result<_, _>>()?)
    }

    /// Derives `program_trouble_at` where it is NULL (reports stored before it existed,
    /// clients enrolled since): nothing but one indexed look when there is none. Rows without
    /// a report, or whose report has no reason and no `quit` (so no failure), are set to 0 in
    /// one statement; the rest are read (id and report only) and derived in batches. A
    /// check-in meanwhile writes its own value, which is kept.
    ///
    /// # Errors
    /// Database errors.
    pub async fn derive_program_trouble(&self) -> Result<(), StoreError> {
        let missing =
            sqlx::query("SELECT id FROM clients WHERE program_trouble_at IS NULL LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        if missing.is_none() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE clients SET program_trouble_at = 0 WHERE program_trouble_at IS NULL \
             AND (last_update IS NULL \
             OR (last_update NOT LIKE '%quit%' AND last_update NOT LIKE '%reason%'))",
        )
        .execute(&self.pool)
        .await?;
        let mut derived = 0usize;
        loop {
            let rows = sqlx::query(
                "SELECT id, last_update FROM clients WHERE program_trouble_at IS NULL LIMIT $1",
            )
            .bind(DERIVE_BATCH)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            let mut none: Vec<String> = Vec::new();
            let mut some: Vec<(String, i64)> = Vec::new();
            for r in &rows {
                let id: String = r.try_get("id")?;
                let report: Option<String> = r.try_get("last_update")?;
                let at = report
                    .and_then(|t| serde_json::from_str::<UpdateReport>(&t).ok())
                    .map_or(0, |u| program_trouble_at(&u));
                if at == 0 {
                    none.push(id);
                } else {
                    some.push((id, at));
                }
            }
            derived += rows.len();
            self.store_derived(&none, &some).await?;
        }
        tracing::info!(
            clients = derived,
            "derived the rollout failure column of reports stored before it"
        );
        Ok(())
    }

    /// Stores derived values: 0 for `none`, each value of `some`; rows a check-in wrote
    /// meanwhile are left as it wrote them.
    async fn store_derived(
        &self,
        none: &[String],
        some: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        for ids in none.chunks(DERIVE_IDS) {
            let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "UPDATE clients SET program_trouble_at = 0 \
                 WHERE program_trouble_at IS NULL AND id IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in ids {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        for (id, at) in some {
            sqlx::query(
                "UPDATE clients SET program_trouble_at = $1 \
                 WHERE id = $2 AND program_trouble_at IS NULL",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
