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
use cascade_core::report::{Outcome, RelayReport};
use cascade_core::{Agent, AgentDoc, Category};

use super::clients::ClientRow;
use super::form::{self, FieldErrors};
use crate::routes::admin::Registry;
use axum::extract::FromRef;
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

/// Clients served and bytes sent by the agent at `address`, counted from clients' last
/// update reports (used until the agent's relay reports its own figures).
fn estimate(address: &str, clients: &[ClientRow]) -> (u64, u64) {
    let source = format!("agent:{address}");
    let mut served = 0;
    let mut total = 0u64;
    for c in clients {
        let attempts: Vec<_> = c
            .report
            .iter()
            .flat_map(|r| &r.attempts)
            .filter(|a| a.source == source)
            .collect();
        total += attempts.iter().map(|a| a.bytes).sum::<u64>();
        if attempts
            .iter()
            .any(|a| matches!(a.outcome, Outcome::Ok | Outcome::UpToDate))
        {
            served += 1;
        }
    }
    (served, total)
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
        let (n, b) = estimate(&address, clients);
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
    // One read of the registry for the table and the health below it.
    let views = Registry::from_ref(st).all(true).await?;
    let fleet = crate::fleet::assess(
        &cur.policy,
        &views,
        st.clock.now(),
        crate::fleet::window_secs(st),
    );
    let clients: Vec<ClientRow> = views.into_iter().map(ClientRow::from_view).collect();
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
            agent_row(address, &caps, &clients, h)
        })
        .collect();
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
        chrome: Chrome::load(st, session, "agents").await,
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
