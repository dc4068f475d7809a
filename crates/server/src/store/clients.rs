//! The client registry: enrollment, check-ins, reading and forgetting clients.

use std::collections::BTreeMap;

use cascade_core::report::{Outcome, RelayReport, UpdateReport};
use cascade_core::Category;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{to_json, Store, StoreError};

/// One enrolled client as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// Its id.
    pub id: String,
    /// The name it enrolled with.
    pub name: String,
    /// Its domain.
    pub domain: Option<String>,
    /// The `IP:PORT` it serves at, when it enrolled as an update agent.
    pub agent_address: Option<String>,
    /// Unix seconds when it enrolled.
    pub enrolled_at: i64,
    /// The address it enrolled from.
    pub enrolled_from: String,
    /// Unix seconds of its last check-in.
    pub last_seen: Option<i64>,
    /// The IP it reported.
    pub reported_ip: Option<String>,
    /// The IP its last check-in came from.
    pub peer_ip: Option<String>,
    /// Installed version per category.
    pub installed: BTreeMap<Category, String>,
    /// How its last update ended.
    pub last_outcome: Option<Outcome>,
    /// Its last update report.
    pub last_update: Option<UpdateReport>,
    /// Its relay's last report.
    pub relay: Option<RelayReport>,
    /// Unix seconds when it was approved as the update agent at `agent_address`.
    pub agent_approved_at: Option<i64>,
    /// The agent program version its last check-in carried.
    pub agent_version: Option<String>,
}

pub(super) const COLUMNS: &str = "id, name, domain, agent_address, enrolled_at, enrolled_from, \
     last_seen, reported_ip, peer_ip, installed, last_outcome, last_update, relay_report, \
     agent_approved_at, agent_version";

/// A stored outcome (its wire name) as the enum; `None` for a name this server does not know.
fn outcome(text: Option<&str>) -> Option<Outcome> {
    text.and_then(|t| serde_json::from_value(serde_json::Value::String(t.to_owned())).ok())
}

pub(super) fn record(r: &AnyRow) -> Result<ClientRecord, sqlx::Error> {
    let installed: String = r.try_get("installed")?;
    let last_outcome: Option<String> = r.try_get("last_outcome")?;
    let last_update: Option<String> = r.try_get("last_update")?;
    let relay: Option<String> = r.try_get("relay_report")?;
    Ok(ClientRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        domain: r.try_get("domain")?,
        agent_address: r.try_get("agent_address")?,
        enrolled_at: r.try_get("enrolled_at")?,
        enrolled_from: r.try_get("enrolled_from")?,
        last_seen: r.try_get("last_seen")?,
        reported_ip: r.try_get("reported_ip")?,
        peer_ip: r.try_get("peer_ip")?,
        installed: serde_json::from_str(&installed).unwrap_or_default(),
        last_outcome: outcome(last_outcome.as_deref()),
        last_update: last_update.and_then(|t| serde_json::from_str(&t).ok()),
        relay: relay.and_then(|t| serde_json::from_str(&t).ok()),
        agent_approved_at: r.try_get("agent_approved_at")?,
        agent_version: r.try_get("agent_version")?,
    })
}

/// How an enrollment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrollment {
    /// Enrolled; `agent` when it is an approved update agent (agent enrollment token).
    Enrolled {
        /// Approved as an update agent.
        agent: bool,
    },
    /// The enrollment token is revoked, expired or used up; nothing was stored.
    TokenRefused,
    /// Another client is the approved update agent at that address; nothing was stored.
    AddressTaken,
}

/// A client to enroll (checked by the caller).
#[derive(Debug, Clone)]
pub struct NewClient<'a> {
    /// New id.
    pub id: &'a str,
    /// Name, trimmed.
    pub name: &'a str,
    /// Domain, if any.
    pub domain: Option<&'a str>,
    /// `IP:PORT` for an update agent.
    pub agent_address: Option<&'a str>,
    /// The credential's hash.
    pub credential_hash: &'a str,
    /// Where it enrolled from.
    pub enrolled_from: &'a str,
}

/// What one check-in records (checked by the caller).
#[derive(Debug, Clone)]
pub struct CheckInRecord<'a> {
    /// The IP the client reported.
    pub reported_ip: Option<String>,
    /// The IP the check-in came from.
    pub peer_ip: String,
    /// Installed version per category.
    pub installed: &'a BTreeMap<Category, String>,
    /// The last update's report; kept from before when absent.
    pub last_update: Option<&'a UpdateReport>,
    /// The relay's report; kept from before when absent.
    pub relay: Option<&'a RelayReport>,
    /// The agent program's version; kept from before when absent.
    pub agent_version: Option<&'a str>,
}

/// An enrolled client that registered an agent address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The client's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The address it serves at.
    pub agent_address: String,
    /// Unix seconds of its last check-in.
    pub last_seen: Option<i64>,
    /// Its relay's last report.
    pub relay: Option<RelayReport>,
}

impl Store {
    /// Every client, by name then id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM clients ORDER BY name, id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    /// One client.
    ///
    /// # Errors
    /// Database errors.
    pub async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM clients WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(record).transpose()?)
    }

    /// Clients that registered an agent address, seen last first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn agent_clients(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, agent_address, last_seen, relay_report FROM clients \
             WHERE agent_address IS NOT NULL ORDER BY COALESCE(last_seen, 0) DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let relay: Option<String> = r.try_get("relay_report")?;
            out.push(AgentRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                agent_address: r.try_get("agent_address")?,
                last_seen: r.try_get("last_seen")?,
                relay: relay.and_then(|t| serde_json::from_str(&t).ok()),
            });
        }
        Ok(out)
    }

    /// Every client's last check-in time and outcome (for the state counts).
    ///
    /// # Errors
    /// Database errors.
    pub async fn client_activity(&self) -> Result<Vec<(Option<i64>, Option<Outcome>)>, StoreError> {
        let rows = sqlx::query("SELECT last_seen, last_outcome FROM clients")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let last: Option<String> = r.try_get("last_outcome")?;
                Ok((r.try_get("last_seen")?, outcome(last.as_deref())))
            })
            .collect()
    }

    /// Enrolls a client with enrollment token `token`, in one transaction: the token must
    /// be live, unexpired and not used up (its use is counted), and no other client may be
    /// the approved update agent at the address claimed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enroll(&self, token: &str, c: &NewClient<'_>) -> Result<Enrollment, StoreError> {
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let used = sqlx::query(
            "UPDATE tokens SET uses = uses + 1 WHERE id = $1 AND kind = 'enroll' \
             AND revoked_at IS NULL AND (max_uses IS NULL OR uses < max_uses) \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(token)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Ok(Enrollment::TokenRefused);
        }
        let agent_token = sqlx::query("SELECT agent FROM tokens WHERE id = $1")
            .bind(token)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("agent")?
            != 0;
        if let Some(address) = c.agent_address {
            let claimed = sqlx::query(
                "SELECT id FROM clients WHERE agent_address = $1 AND agent_approved_at IS NOT NULL",
            )
            .bind(address)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if claimed {
                return Ok(Enrollment::AddressTaken);
            }
        }
        let agent = agent_token && c.agent_address.is_some();
        sqlx::query(
            "INSERT INTO clients (id, name, domain, agent_address, credential_hash, enrolled_at, \
             enrolled_from, installed, agent_approved_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, '{}', $8)",
        )
        .bind(c.id)
        .bind(c.name)
        .bind(c.domain)
        .bind(c.agent_address)
        .bind(c.credential_hash)
        .bind(now)
        .bind(c.enrolled_from)
        .bind(agent.then_some(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Enrollment::Enrolled { agent })
    }

    /// Approves client `id` as the update agent at its enrolled address; `None` when there
    /// is no such client, `Some(false)` when it has no agent address or another client is
    /// the approved agent there.
    ///
    /// # Errors
    /// Database errors.
    pub async fn approve_agent(&self, id: &str) -> Result<Option<bool>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let Some(row) = sqlx::query("SELECT agent_address FROM clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let Some(address) = row.try_get::<Option<String>, _>("agent_address")? else {
            return Ok(Some(false));
        };
        let other = sqlx::query(
            "SELECT id FROM clients WHERE agent_address = $1 AND agent_approved_at IS NOT NULL \
             AND id <> $2",
        )
        .bind(&address)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if other {
            return Ok(Some(false));
        }
        sqlx::query(
            "UPDATE clients SET agent_approved_at = COALESCE(agent_approved_at, $1) WHERE id = $2",
        )
        .bind(self.clock.now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(true))
    }

    /// Records a check-in of `id` and returns the policy and rollout revisions after it
    /// ([`Store::client_revisions`]), read in the same transaction. The check-in writer stores
    /// it with the others waiting, in one transaction with SQLite's relaxed sync, and this
    /// returns after that commit (docs/operating.md#group-commit,
    /// docs/operating.md#durability): check-ins are the high-rate write, and the client sends
    /// the same facts again.
    ///
    /// # Errors
    /// Database errors; 503-class errors while the server stops.
    pub async fn check_in(
        &self,
        id: &str,
        c: &CheckInRecord<'_>,
    ) -> Result<(i64, i64), StoreError> {
        let installed = to_json("installed", c.installed)?;
        let report = c
            .last_update
            .map(|r| {
                Ok::<_, StoreError>(super::check_ins::ReportFacts {
                    text: to_json("last_update", r)?,
                    outcome: serde_json::to_value(r.outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned)),
                    // The console's fleet figures (docs/operating.md#fleet-charts).
                    derived: super::fleet_stats::derive(r),
                    // What a rollout's evaluation reads (docs/operating.md#rollouts).
                    trouble_at: super::rollouts::program_trouble_at(r),
                })
            })
            .transpose()?;
        let relay = c.relay.map(|r| to_json("relay", r)).transpose()?;
        self.check_ins
            .submit(super::check_ins::Job {
                id: id.to_owned(),
                now: self.clock.now(),
                ip_key: super::fleet_stats::ip_key_of(c.reported_ip.as_deref(), Some(&c.peer_ip)),
                reported_ip: c.reported_ip.clone(),
                peer_ip: c.peer_ip.clone(),
                installed,
                report,
                relay,
                agent_version: c.agent_version.map(str::to_owned),
            })
            .await
            .inspect(|&(policy, rollouts)| self.revisions.saw(policy, rollouts))
    }

    /// The policy revision and the rollout revision (what a client's policy `ETag` and its
    /// check-in answer are made of): from memory while fresh, else in one statement, without
    /// decoding the stored policy (docs/operating.md#policy-revisions-in-memory).
    ///
    /// # Errors
    /// Database errors, a missing policy row.
    pub async fn client_revisions(&self) -> Result<(i64, i64), StoreError> {
        if let Some(held) = self.revisions.fresh() {
            return Ok(held);
        }
        let reading = self.revisions.begin_read();
        let (policy, rollouts) = revisions(&mut *self.pool.acquire().await?).await?;
        Ok(self.revisions.end_read(reading, policy, rollouts))
    }

    /// Forgets a client; `false` when there was none.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM clients WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// The policy and rollout revisions (columns `policy`, `rollouts`), one statement.
pub(super) const REVISIONS: &str = "SELECT (SELECT revision FROM policy WHERE id = 1) AS policy, \
     (SELECT COALESCE(MAX(revision), 0) FROM rollouts) AS rollouts";

/// The policy and rollout revisions, one statement on `conn`.
pub(super) async fn revisions(conn: &mut sqlx::AnyConnection) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query(REVISIONS).fetch_one(conn).await?;
    let policy: Option<i64> = row.try_get("policy")?;
    let policy = policy.ok_or_else(|| StoreError::Corrupt("no policy row".into()))?;
    Ok((policy, row.try_get("rollouts")?))
}
