//! A client as the console's pages show it ([`ClientRow`]), made from the API's own view of
//! it so states match `GET /api/clients`.

use axum::extract::FromRef;
use cascade_core::report::{Outcome, RelayReport, UpdateReport};
use cascade_core::Category;
use cascade_proto::ClientView;

use crate::console::view::maybe_time;
use crate::error::ApiError;
use crate::routes::admin::Registry;
use crate::state::AppState;

/// A client as the console shows it.
#[derive(Debug, Clone)]
pub struct ClientRow {
    /// Client id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Domain or `""`.
    pub domain: String,
    /// The IP it reported (or connected from), or `""`.
    pub ip: String,
    /// Installed version per category, in `Category::ALL` order (`""` when none).
    pub versions: Vec<String>,
    /// Unix seconds of the last check-in.
    pub last_seen: Option<i64>,
    /// `ok`, `failed`, `stale` or `never`.
    pub state: String,
    /// The update-agent address it serves at, when it is a registered agent.
    pub agent: Option<String>,
    /// The last update report, when it sent one.
    pub report: Option<UpdateReport>,
    /// What its relay served, when it is an update agent that reported it.
    pub relay: Option<RelayReport>,
}

impl ClientRow {
    /// The row of a client as the API sees it.
    pub fn from_view(v: ClientView) -> ClientRow {
        let ip = v.reported_ip.or(v.peer_ip).unwrap_or_default();
        ClientRow {
            versions: Category::ALL
                .iter()
                .map(|c| v.installed.get(c).cloned().unwrap_or_default())
                .collect(),
            id: v.id,
            name: v.name,
            domain: v.domain.unwrap_or_default(),
            ip,
            last_seen: v.last_seen,
            state: v.state.as_str().to_owned(),
            agent: if v.is_agent {
                Some(v.agent_address.unwrap_or_default())
            } else {
                None
            },
            report: v.last_update,
            relay: v.relay,
        }
    }

    /// The sources that delivered in the last update (`""` when none did).
    pub fn served_by(&self) -> String {
        let mut out: Vec<&str> = Vec::new();
        for a in self.report.iter().flat_map(|r| &r.attempts) {
            if matches!(a.outcome, Outcome::Ok | Outcome::UpToDate)
                && !out.contains(&a.source.as_str())
            {
                out.push(&a.source);
            }
        }
        out.join(", ")
    }

    /// Failed attempts in the last update.
    pub fn failures(&self) -> usize {
        self.report
            .iter()
            .flat_map(|r| &r.attempts)
            .filter(|a| a.outcome == Outcome::Failed)
            .count()
    }

    /// Why the last update failed: the first failed attempt's reason (`agent.disk_full: …`),
    /// `""` when nothing failed.
    pub fn failure_reason(&self) -> String {
        self.report
            .iter()
            .flat_map(|r| &r.attempts)
            .find(|a| a.outcome == Outcome::Failed)
            .and_then(|a| a.reason.as_ref())
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The last check-in, formatted.
    pub fn seen(&self) -> String {
        maybe_time(self.last_seen)
    }
}

/// Every client, by name.
///
/// # Errors
/// Database errors.
pub async fn load(st: &AppState) -> Result<Vec<ClientRow>, ApiError> {
    let all = Registry::from_ref(st).all(true).await?;
    Ok(all.into_iter().map(ClientRow::from_view).collect())
}
