//! The Update agents page: each registered agent with its address, capabilities, health (from
//! the fleet health service: clients' reports and the agent's own check-ins), what its relay reports serving
//! (clients, bytes, upstream fetches and the share of bytes it saved the upstream; before its
//! first report, the clients and bytes are counted from clients' last update reports), and
//! forms to register and unregister agents through the API's own handlers; below, every
//! agent's and URL source's health with the clients whose last attempt at it failed.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::doc::parse_agent_address;
use cascade_core::report::RelayReport;
use cascade_core::{Agent, AgentDoc, Category};

use std::collections::{BTreeMap, HashMap};

use super::chart::{grouped_bars, BarSeries};
use super::clients::ClientRow;
use super::form::{self, FieldErrors};
use crate::routes::admin::client_view;
use crate::store::TrafficRow;
use cascade_proto::{HealthLevel, SourceHealth, SourceKind};

use super::session::{see_other, Session};
use super::view::{bytes, html, maybe_time, Chrome};
use super::ConsoleError;
use crate::error::ApiError;
use crate::state::AppState;

/// One agent.
#[derive(Debug, Clone)]
pub struct AgentRow {
    address: String,
    capabilities: String,
    health: String,
    health_class: String,
    last_seen: String,
    served: u64,
    bytes: String,
    bytes_n: u64,
    /// `reported` when the figures are the relay's own, `estimated` from clients' reports.
    basis: &'static str,
    upstream: String,
    installed: String,
}

/// `GET /agents`.
#[derive(Template)]
#[template(path = "agents.html")]
pub struct AgentsPage {
    chrome: Chrome,
    revision: i64,
    agents: Vec<AgentRow>,
    /// Every update agent's and URL source's health, with the affected clients.
    health: Vec<SourceHealth>,
    /// The load chart (SVG), `""` without agents.
    load: String,
    /// Bytes per hour per agent (SVG), `""` without traffic through agents.
    bytes_hourly: String,
    /// Clients per hour per agent (SVG), `""` without traffic through agents.
    clients_hourly: String,
    /// The health window, for people (`2 h`).
    window: String,
    categories: Vec<&'static str>,
    address: String,
    checked: Vec<&'static str>,
    errors: FieldErrors,
}

impl AgentsPage {
    /// A Unix time for people (askama passes template values by reference).
    #[allow(clippy::unused_self, clippy::trivially_copy_pass_by_ref)]
    pub fn time(&self, secs: &i64) -> String {
        maybe_time(Some(*secs))
    }

    /// An optional Unix time for people.
    #[allow(clippy::unused_self, clippy::ref_option)]
    pub fn maybe(&self, secs: &Option<i64>) -> String {
        maybe_time(*secs)
    }

    /// Whether capability `c` is checked in the add form.
    pub fn has(&self, c: &str) -> bool {
        self.checked.contains(&c)
    }
}

/// "N fetches, X (Y % saved)": what the relay took from its upstreams against what it sent.
fn upstream(r: &RelayReport) -> String {
    let saved = if r.bytes_served > 0 {
        let share = u128::from(r.upstream_bytes) * 100 / u128::from(r.bytes_served);
        format!(" ({} % saved)", 100 - share.min(100))
    } else {
        String::new()
    };
    format!(
        "{} fetches, {}{saved}",
        r.upstream_fetches,
        bytes(r.upstream_bytes)
    )
}

fn agent_row(
    address: String,
    capabilities: &[Category],
    clients: &[ClientRow],
    totals: &HashMap<String, (u64, u64)>,
    health: Option<&SourceHealth>,
) -> AgentRow {
    // The most recently seen client enrolled at this address speaks for the agent.
    let own = clients
        .iter()
        .filter(|c| c.agent.as_deref() == Some(address.as_str()))
        .max_by_key(|c| c.last_seen);
    let (served, total, basis, up) = if let Some(r) = own.and_then(|c| c.relay.as_ref()) {
        (r.client_count, r.bytes_served, "reported", upstream(r))
    } else {
        // Counted from the clients' last update reports until the relay reports its own.
        let (n, b) = totals
            .get(&format!("agent:{address}"))
            .copied()
            .unwrap_or_default();
        (n, b, "estimated", String::new())
    };
    let level = health.map_or(HealthLevel::Unknown, |h| h.level);
    let (health, health_class, last_seen, installed) = match own {
        Some(c) => (
            level.as_str().to_owned(),
            level.as_str().to_owned(),
            c.seen(),
            Category::ALL
                .iter()
                .zip(&c.versions)
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        None => (
            format!("{} (not enrolled)", level.as_str()),
            level.as_str().to_owned(),
            maybe_time(None),
            String::new(),
        ),
    };
    AgentRow {
        capabilities: capabilities
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        address,
        health,
        health_class,
        last_seen,
        served,
        bytes: bytes(total),
        bytes_n: total,
        basis,
        upstream: up,
        installed,
    }
}

async fn render(
    st: &AppState,
    session: &Session,
    address: String,
    checked: Vec<&'static str>,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let cur = st.store.current().await?;
    let now = st.clock.now();
    // Aggregates only: the health, the clients enrolled as agents, and per-source totals.
    // The health is computed afresh once and shown both here and in the banner (which
    // reuses the last result when that is expensive: this one is stored for it too).
    let fleet = crate::fleet::refresh(st).await?;
    let stale = crate::routes::admin::stale_secs(st);
    let clients: Vec<ClientRow> = st
        .store
        .agent_address_clients()
        .await?
        .into_iter()
        .map(|r| ClientRow::from_view(client_view(r, &cur.policy, now, stale, true)))
        .collect();
    let totals = st.store.source_totals().await?;
    let agents: Vec<AgentRow> = cur
        .policy
        .agent
        .iter()
        .map(|a| {
            let caps: Vec<Category> = a.capabilities.iter().copied().collect();
            let address = a.address.to_string();
            let h = fleet
                .sources
                .iter()
                .find(|s| s.kind == SourceKind::Agent && s.address == address);
            agent_row(address, &caps, &clients, &totals, h)
        })
        .collect();
    let traffic = st.store.traffic_since(now.div_euclid(3600) - 23).await?;
    let (bytes_hourly, clients_hourly) = hourly_load(&traffic, &agents);
    let load = super::chart::hbars(
        "agent-load",
        "Bytes each update agent served (its relay's report, else estimated from clients' reports)",
        &agents
            .iter()
            .map(|a: &AgentRow| super::chart::Bar {
                label: a.address.clone(),
                value: a.bytes_n,
                text: format!(
                    "{} to {} clients{}",
                    a.bytes,
                    a.served,
                    if a.basis == "estimated" {
                        " (estimated)"
                    } else {
                        ""
                    }
                ),
                good: true,
            })
            .collect::<Vec<_>>(),
    );
    let page = AgentsPage {
        load,
        bytes_hourly,
        clients_hourly,
        chrome: Chrome::with_health(st, session, "agents", &fleet),
        revision: cur.revision,
        agents,
        window: super::view::duration(crate::fleet::window_secs(st)),
        health: fleet.sources,
        categories: Category::ALL.iter().map(|c| c.as_str()).collect(),
        address,
        checked,
        errors,
    };
    Ok(html(status, page.render()?))
}

/// Colours of the agents' lines, in order of bytes served.
const AGENT_COLORS: [&str; 8] = [
    "#1f5fbf", "#c0504d", "#2e7d32", "#8064a2", "#9a6700", "#00838f", "#ad1457", "#5b6573",
];

/// Each registered agent's bytes and clients per hour over the last 24 hours of `traffic`
/// (what clients reported getting from it), as two line charts; the eight busiest agents.
fn hourly_load(traffic: &[TrafficRow], agents: &[AgentRow]) -> (String, String) {
    let mut per: HashMap<&str, BTreeMap<i64, (u64, u64)>> = HashMap::new();
    for t in traffic {
        if let Some(addr) = t.source.strip_prefix("agent:") {
            if agents.iter().any(|a| a.address == addr) {
                let e = per.entry(addr).or_default().entry(t.hour).or_default();
                e.0 += t.bytes;
                e.1 += t.clients;
            }
        }
    }
    let hours: Vec<i64> = per.values().flat_map(|m| m.keys().copied()).collect();
    let (Some(&first), Some(&last)) = (hours.iter().min(), hours.iter().max()) else {
        return (String::new(), String::new());
    };
    let mut busiest: Vec<(&str, u64)> = per
        .iter()
        .map(|(a, m)| (*a, m.values().map(|v| v.0).sum()))
        .collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    busiest.truncate(AGENT_COLORS.len());
    let hours: Vec<i64> = (first..=last).collect();
    let series = |pick: fn((u64, u64)) -> u64| -> Vec<BarSeries> {
        busiest
            .iter()
            .zip(AGENT_COLORS)
            .map(|((addr, _), color)| BarSeries {
                name: (*addr).to_owned(),
                color,
                values: hours
                    .iter()
                    .map(|h| {
                        pick(
                            per.get(addr)
                                .and_then(|m| m.get(h))
                                .copied()
                                .unwrap_or_default(),
                        )
                    })
                    .collect(),
            })
            .collect()
    };
    let labels: Vec<String> = hours
        .iter()
        .map(|h| maybe_time(Some(h * 3600))[11..16].to_owned())
        .collect();
    let b = grouped_bars(
        "agent-bytes",
        "Bytes per hour each update agent served (UTC, from clients' reports)",
        "bytes per hour",
        &labels,
        &series(|v| v.0),
        &bytes,
    );
    let c = grouped_bars(
        "agent-clients",
        "Clients per hour each update agent served (UTC, from clients' reports)",
        "clients per hour",
        &labels,
        &series(|v| v.1),
        &|v| v.to_string(),
    );
    (b, c)
}

/// `GET /agents`.
pub async fn page(session: Session, State(st): State<AppState>) -> Result<Response, ConsoleError> {
    let all = Category::ALL.iter().map(|c| c.as_str()).collect();
    render(
        &st,
        &session,
        String::new(),
        all,
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// `POST /agents`: register an agent (address and capabilities).
pub async fn add(
    session: Session,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let f = session.form(&body)?;
    let capabilities: Vec<Category> = Category::ALL
        .into_iter()
        .filter(|c| f.checked(&format!("cap-{}", c.as_str())))
        .collect();
    let doc = AgentDoc {
        address: f.get("address").trim().to_owned(),
        capabilities: capabilities.clone(),
    };
    let result = async {
        let expected = form::expected(&f)?;
        let address = parse_agent_address("address", &doc.address)?;
        let agent = Agent {
            address,
            capabilities: doc.capabilities.iter().copied().collect(),
        };
        let stored = st.store.add_agent(expected, &session.actor, agent).await?;
        Ok::<_, ApiError>((address, stored.revision))
    }
    .await;
    match result {
        Ok((address, revision)) => {
            session.flash(
                "ok",
                format!("Registered update agent {address} (policy revision {revision})."),
            );
            Ok(see_other("/agents"))
        }
        Err(e) if form::is_refusal(&e) => {
            let errors = FieldErrors::from_api(&e, &["address", "capabilities", "form"]);
            let checked = capabilities.iter().map(|c| c.as_str()).collect();
            render(
                &st,
                &session,
                f.get("address").to_owned(),
                checked,
                errors,
                e.status(),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /agents/remove` with `address`: unregister (refused while the list uses it).
pub async fn remove(
    session: Session,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let f = session.form(&body)?;
    let address = f.get("address").to_owned();
    let done: Result<_, ApiError> = async {
        let expected = form::expected(&f)?;
        let addr = parse_agent_address("address", &address)?;
        Ok(st
            .store
            .remove_agent(expected, &session.actor, addr)
            .await?)
    }
    .await;
    match done {
        Ok(stored) => session.flash(
            "ok",
            format!(
                "Removed update agent {address} (policy revision {}).",
                stored.revision
            ),
        ),
        Err(e) if form::is_refusal(&e) => session.flash("error", form::refusal(&e)),
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/agents"))
}
