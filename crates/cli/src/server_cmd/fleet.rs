//! What the fleet is doing, over the admin API: `cascade notify` (Notify All Clients),
//! `cascade clients` (the client registry), `cascade health` (each source's health) and
//! `cascade compliance` (versions installed per category).

use cascade_client::proto::{ClientsQuery, FleetHealth, HealthLevel, NotifyRequest};
use cascade_core::Category;
use clap::Args;

use super::api::{ask, or_dash, print_json, runtime, table, unix_now, when, Conn};

/// `cascade notify`: Notify All Clients.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// Only these categories (default: all).
    #[arg(long = "category", value_parser = parse_category)]
    pub categories: Vec<Category>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `cascade clients`: the client registry.
#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// Only clients not seen recently: `--stale` uses the server's window, `--stale=SECS` yours.
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    pub stale: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// A `--category`/`--capability` value.
pub(crate) fn parse_category(s: &str) -> Result<Category, String> {
    s.parse()
        .map_err(|e: cascade_core::category::UnknownCategory| e.to_string())
}

/// Runs `cascade notify`.
pub fn run_notify(args: NotifyArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let body = NotifyRequest {
            categories: args.categories,
        };
        let v = ask(&args.conn, "POST /api/notify", |api| async move {
            api.notify(&body).await
        })
        .await?;
        if args.conn.json {
            print_json(&v);
        } else {
            let f = &v.fan_out;
            println!(
                "notify {}: {} update agents now, {} clients after {} ms (jitter hint {} ms); others at their next poll",
                v.id, f.agents, f.clients, f.clients_after_ms, f.jitter_ms
            );
        }
        Ok(())
    })
}

/// Runs `cascade clients [--stale[=SECS]]`.
pub fn run_clients(args: ClientsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let query = ClientsQuery { stale: args.stale };
        let v = ask(&args.conn, "GET /api/clients", |api| async move {
            api.clients(&query).await
        })
        .await?;
        if args.conn.json {
            print_json(&v);
            return Ok(());
        }
        let now = unix_now();
        let mut t = table(&[
            "name",
            "id",
            "state",
            "last seen",
            "reported ip",
            "peer ip",
            "installed",
            "agent",
        ]);
        for c in &v.clients {
            let installed = c
                .installed
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            let agent = if c.is_agent {
                or_dash(c.agent_address.as_deref())
            } else {
                "-".into()
            };
            t.add_row(vec![
                c.name.clone(),
                c.id.clone(),
                c.state.as_str().to_owned(),
                c.last_seen
                    .map_or_else(|| "never".to_owned(), |t| when(t, now)),
                or_dash(c.reported_ip.as_deref()),
                or_dash(c.peer_ip.as_deref()),
                installed,
                agent,
            ]);
        }
        println!("{t}\n{} clients", v.clients.len());
        Ok(())
    })
}

fn print_health(v: &FleetHealth) {
    let now = unix_now();
    let mut t = table(&[
        "source",
        "health",
        "served",
        "failed",
        "own last check-in",
        "since",
    ]);
    for h in &v.sources {
        t.add_row(vec![
            h.source.clone(),
            h.level.as_str().to_owned(),
            h.served.to_string(),
            h.failed.to_string(),
            h.last_check_in
                .map_or_else(|| "-".to_owned(), |c| when(c, now)),
            h.since.map_or_else(|| "-".to_owned(), |c| when(c, now)),
        ]);
    }
    println!(
        "{t}\nreports of the last {} counted",
        cascade_server::human::duration(v.window_s)
    );
    for h in v
        .sources
        .iter()
        .filter(|h| matches!(h.level, HealthLevel::Down | HealthLevel::Degraded))
    {
        println!("\n{}", h.summary);
        for c in h.affected.iter().take(20) {
            println!(
                "  {} ({}): {}{}",
                c.name,
                c.id,
                c.reason.as_deref().unwrap_or("failed"),
                c.served_by
                    .as_deref()
                    .map(|s| format!("; served by {s}"))
                    .unwrap_or_default()
            );
        }
        if h.affected.len() > 20 {
            println!(
                "  … and {} more (--json lists them all)",
                h.affected.len() - 20
            );
        }
    }
}

/// Runs `cascade health`: every update agent's and URL source's health.
pub fn run_health(conn: Conn) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let v = ask(&conn, "GET /api/fleet/health", |api| async move {
            api.fleet_health().await
        })
        .await?;
        if conn.json {
            print_json(&v);
        } else {
            print_health(&v);
        }
        Ok(())
    })
}

/// Runs `cascade compliance`: compliance by version per category.
pub fn run_compliance(conn: Conn) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let v = ask(&conn, "GET /api/fleet/compliance", |api| async move {
            api.compliance().await
        })
        .await?;
        if conn.json {
            print_json(&v);
            return Ok(());
        }
        let mut t = table(&[
            "category",
            "newest published",
            "current",
            "behind",
            "never installed",
            "failed",
            "clients",
        ]);
        for c in &v.categories {
            let (cur, behind, never, failed) = if c.newest.is_empty() {
                ("-".into(), "-".into(), "-".into(), "-".into())
            } else {
                (
                    c.current.to_string(),
                    c.behind.to_string(),
                    c.never_installed.to_string(),
                    c.failed.to_string(),
                )
            };
            t.add_row(vec![
                c.category.as_str().to_owned(),
                if c.newest.is_empty() {
                    "nothing published".to_owned()
                } else {
                    c.newest.join(", ")
                },
                cur,
                behind,
                never,
                failed,
                c.total.to_string(),
            ]);
        }
        println!("{t}");
        for c in &v.categories {
            let dist: Vec<String> = c
                .distribution
                .iter()
                .map(|d| {
                    format!(
                        "{} × {}{}",
                        d.version,
                        d.clients,
                        if d.newest { " (newest)" } else { "" }
                    )
                })
                .collect();
            println!("{}: {}", c.category.as_str(), dist.join(", "));
        }
        Ok(())
    })
}
