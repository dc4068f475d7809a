//! `cascade agents list|add|rm` over the admin API: registered update agents, listed with
//! each one's health and what its relay last reported serving.

use cascade_client::proto::{AgentDoc, AgentsResponse, FleetHealth, HealthLevel, SourceKind};
use cascade_core::Category;
use clap::Subcommand;

use super::api::{ask, print_json, runtime, table, Conn, Revision};
use super::fleet::parse_category;

/// `cascade agents …`: registered update agents.
#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// List agents, capabilities, the enrolled clients serving at each and what their relays
    /// last reported serving (clients, bytes, upstream fetches).
    List(Conn),
    /// Register an update agent.
    Add {
        /// `IP:PORT` where it serves.
        address: String,
        /// Categories it relays (default: all).
        #[arg(long = "capability", value_parser = parse_category)]
        capabilities: Vec<Category>,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
    /// Unregister an update agent (refused while a source entry uses it).
    Rm {
        /// `IP:PORT`.
        address: String,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
}

/// The agents table with each agent's health, then a line per agent that is down.
fn print_agents(v: &AgentsResponse, health: &FleetHealth) {
    let mut t = table(&[
        "address",
        "health",
        "capabilities",
        "enrolled as",
        "clients served",
        "bytes served",
        "upstream fetches",
    ]);
    for a in &v.agents {
        let caps = a
            .capabilities
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let clients = a
            .clients
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let (served, sent, fetches) = match &a.relay {
            Some(relay) => (
                relay.client_count.to_string(),
                indicatif::HumanBytes(relay.bytes_served).to_string(),
                relay.upstream_fetches.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let level = health
            .sources
            .iter()
            .find(|h| h.kind == SourceKind::Agent && h.address == a.address)
            .map_or(HealthLevel::Unknown, |h| h.level);
        t.add_row(vec![
            a.address.clone(),
            level.as_str().to_owned(),
            caps,
            clients,
            served,
            sent,
            fetches,
        ]);
    }
    println!("{t}\nrevision {}", v.revision);
    for h in health
        .sources
        .iter()
        .filter(|h| h.level == HealthLevel::Down)
    {
        println!("{}", h.summary);
    }
}

/// Runs `cascade agents list|add|rm`.
pub fn run_agents(cmd: AgentsCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            AgentsCmd::List(conn) => {
                let v = ask(
                    &conn,
                    "GET /api/agents",
                    |api| async move { api.agents().await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                    return Ok(());
                }
                let health = ask(&conn, "GET /api/fleet/health", |api| async move {
                    api.fleet_health().await
                })
                .await?;
                print_agents(&v, &health);
            }
            AgentsCmd::Add {
                address,
                capabilities,
                at,
                conn,
            } => {
                let body = AgentDoc {
                    address,
                    capabilities: if capabilities.is_empty() {
                        Category::ALL.to_vec()
                    } else {
                        capabilities
                    },
                };
                let v = ask(&conn, "POST /api/agents", |api| async move {
                    api.add_agent(&body, at.revision).await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("ok: policy revision {}", v.revision);
                }
            }
            AgentsCmd::Rm { address, at, conn } => {
                let what = format!("DELETE /api/agents/{address}");
                let v = ask(&conn, &what, |api| async move {
                    api.remove_agent(&address, at.revision).await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("ok: policy revision {}", v.revision);
                }
            }
        }
        Ok(())
    })
}
