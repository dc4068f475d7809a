//! The Clients pages: every enrolled client with its IP, domain, installed version per
//! category, last check-in, the source that served its last update and its failures, with
//! stale/failed filters; and one client's last update, attempt by attempt. The rows come
//! from the registry through the API's own `client_view`, so states match `GET /api/clients`.

use askama::Template;
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::report::{Outcome, RelayReport, UpdateReport};
use cascade_core::Category;
use cascade_proto::ClientView;

use super::form::Form;
use super::session::Session;
use super::view::{bytes, html, maybe_time, Chrome};
use super::ConsoleError;
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
    fn from_view(v: ClientView) -> ClientRow {
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

/// `GET /clients`.
#[derive(Template)]
#[template(path = "clients.html")]
pub struct ClientsPage {
    chrome: Chrome,
    show: String,
    total: usize,
    clients: Vec<ClientRow>,
    categories: Vec<&'static str>,
    stale_after: String,
}

/// `GET /clients[?show=all|stale|failed]`.
pub async fn list(
    session: Session,
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ConsoleError> {
    let q = Form::parse(q.unwrap_or_default().as_bytes());
    let show = match q.get("show") {
        s @ ("stale" | "failed") => s.to_owned(),
        _ => "all".to_owned(),
    };
    let all = load(&st).await?;
    let total = all.len();
    let clients = all
        .into_iter()
        .filter(|c| match show.as_str() {
            "stale" => matches!(c.state.as_str(), "stale" | "never"),
            "failed" => c.state == "failed",
            _ => true,
        })
        .collect();
    let page = ClientsPage {
        chrome: Chrome::new(&session, "clients"),
        show,
        total,
        clients,
        categories: Category::ALL.iter().map(|c| c.as_str()).collect(),
        stale_after: format!("{} s", st.stale_after.as_secs()),
    };
    Ok(html(StatusCode::OK, page.render()?))
}

/// One attempt, formatted.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    step: u32,
    category: String,
    source: String,
    outcome: String,
    reason: String,
    bytes: String,
    millis: u64,
}

/// `GET /clients/{id}`.
#[derive(Template)]
#[template(path = "client.html")]
pub struct ClientPage {
    chrome: Chrome,
    client: ClientRow,
    versions: Vec<(&'static str, String)>,
    finished: String,
    outcome: String,
    attempts: Vec<AttemptRow>,
}

/// An outcome as the report writes it (`up-to-date`).
pub fn outcome_text(o: Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `GET /clients/{id}`: the client and its last update, step by step.
pub async fn detail(
    session: Session,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let client = load(&st)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or(ApiError::NotFound { what: "client", id })?;
    let attempts = client
        .report
        .iter()
        .flat_map(|r| &r.attempts)
        .map(|a| AttemptRow {
            step: a.step,
            category: a
                .category
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            source: a.source.clone(),
            outcome: outcome_text(a.outcome),
            reason: a
                .reason
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            bytes: bytes(a.bytes),
            millis: a.millis,
        })
        .collect();
    let page = ClientPage {
        chrome: Chrome::new(&session, "clients"),
        finished: maybe_time(client.report.as_ref().and_then(|r| r.finished_at)),
        outcome: client
            .report
            .as_ref()
            .map(|r| outcome_text(r.outcome))
            .unwrap_or_default(),
        versions: Category::ALL
            .iter()
            .map(|c| c.as_str())
            .zip(client.versions.iter().cloned())
            .collect(),
        client,
        attempts,
    };
    Ok(html(StatusCode::OK, page.render()?))
}
