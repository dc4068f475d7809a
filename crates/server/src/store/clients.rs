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
}

const COLUMNS: &str = "id, name, domain, agent_address, enrolled_at, enrolled_from, \
     last_seen, reported_ip, peer_ip, installed, last_outcome, last_update, relay_report";

/// A stored outcome (its wire name) as the enum; `None` for a name this server does not know.
fn outcome(text: Option<&str>) -> Option<Outcome> {
    text.and_then(|t| serde_json::from_value(serde_json::Value::String(t.to_owned())).ok())
}

fn record(r: &AnyRow) -> Result<ClientRecord, sqlx::Error> {
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
    })
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

    /// Enrolls a client.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enroll(&self, c: &NewClient<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO clients (id, name, domain, agent_address, credential_hash, enrolled_at, \
             enrolled_from, installed) VALUES ($1, $2, $3, $4, $5, $6, $7, '{}')",
        )
        .bind(c.id)
        .bind(c.name)
        .bind(c.domain)
        .bind(c.agent_address)
        .bind(c.credential_hash)
        .bind(self.clock.now())
        .bind(c.enrolled_from)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a check-in of `id`, with SQLite's relaxed sync (docs/operating.md#durability):
    /// check-ins are the high-rate write, and the client sends the same facts again.
    ///
    /// # Errors
    /// Database errors.
    pub async fn check_in(&self, id: &str, c: &CheckInRecord<'_>) -> Result<(), StoreError> {
        let installed = to_json("installed", c.installed)?;
        let report = c
            .last_update
            .map(|r| to_json("last_update", r))
            .transpose()?;
        let outcome = c
            .last_update
            .and_then(|r| serde_json::to_value(r.outcome).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        let relay = c.relay.map(|r| to_json("relay", r)).transpose()?;
        sqlx::query(
            "UPDATE clients SET last_seen = $1, reported_ip = $2, peer_ip = $3, installed = $4, \
             last_update = COALESCE($5, last_update), last_outcome = COALESCE($6, last_outcome), \
             relay_report = COALESCE($7, relay_report) WHERE id = $8",
        )
        .bind(self.clock.now())
        .bind(c.reported_ip.as_deref())
        .bind(&c.peer_ip)
        .bind(installed)
        .bind(report)
        .bind(outcome)
        .bind(relay)
        .bind(id)
        .execute(&mut *crate::db::relaxed_sync(&self.pool).await?)
        .await?;
        Ok(())
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
