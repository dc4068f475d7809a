//! `cascade rollouts list|show|start|promote|halt|rollback`: progressive rollouts of program
//! versions in rings over the admin API (`docs/operating.md#rollouts`).

use std::path::PathBuf;

use anyhow::Context as _;
use cascade_client::proto::{NewRollout, RingSpec, RolloutAction, RolloutView};
use clap::{Args, Subcommand};

use crate::server_cmd::{ask, print_json, runtime, table, Conn};
use crate::BadInput;

/// `cascade rollouts …`.
#[derive(Debug, Subcommand)]
pub enum RolloutsCmd {
    /// Every rollout, newest first: program, version, state, current ring.
    List(Conn),
    /// One rollout with each ring's clients, updated and failing counts.
    Show {
        /// The rollout's id.
        id: i64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Roll PROGRAM VERSION out in rings (start it before uploading the version: no client
    /// outside ring 1 then ever takes it for its own).
    Start(StartArgs),
    /// Promote a rollout to its next ring now (or complete it); resumes a halted one.
    Promote(ActionArgs),
    /// Halt a rollout in its current ring.
    Halt(ActionArgs),
    /// Roll a rollout back: every client is pinned to the previous version.
    Rollback(ActionArgs),
}

/// `cascade rollouts start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The program (`programs/PROGRAM/...`).
    pub program: String,
    /// The version rolled out.
    #[arg(value_name = "VERSION")]
    pub program_version: String,
    /// A ring, in order: `NAME [percent=P] [clients=ID,NAME,…] [ips=RANGE,…] [soak=SECS]
    /// [max-failures=N]`, e.g. `--ring 'canary percent=1 soak=600'`. Repeat for each ring.
    #[arg(long = "ring", value_parser = parse_ring)]
    pub rings: Vec<RingSpec>,
    /// The rings as a JSON list of ring objects (`name`, `clients`, `ip_ranges`, `percent`,
    /// `soak_secs`, `max_failures`), instead of `--ring`.
    #[arg(long, conflicts_with = "rings")]
    pub rings_file: Option<PathBuf>,
    /// The version clients outside the rings keep (default: what the last rollout of the
    /// program left them on, else the newest published version before this one).
    #[arg(long)]
    pub previous: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `cascade rollouts promote|halt|rollback`.
#[derive(Debug, Args)]
pub struct ActionArgs {
    /// The rollout's id.
    pub id: i64,
    /// Why (kept with the rollout and in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// Parses `NAME key=value …` (see `--ring`).
fn parse_ring(text: &str) -> Result<RingSpec, String> {
    let mut words = text.split_whitespace();
    let name = words
        .next()
        .ok_or_else(|| "a ring needs a name: `NAME [percent=P] …`".to_owned())?;
    let mut ring = RingSpec {
        name: name.to_owned(),
        ..RingSpec::default()
    };
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("ring `{name}`: `{word}` is not KEY=VALUE"))?;
        let number = |what: &str| -> Result<u64, String> {
            value
                .parse()
                .map_err(|_| format!("ring `{name}`: {what}=`{value}` is not a whole number"))
        };
        match key {
            "percent" => {
                let p: f64 = value
                    .trim_end_matches('%')
                    .parse()
                    .map_err(|_| format!("ring `{name}`: percent=`{value}` is not a number"))?;
                ring.percent = Some(p);
            }
            "clients" => ring.clients.extend(list(value)),
            "ips" | "ip_ranges" => ring.ip_ranges.extend(list(value)),
            "soak" | "soak_secs" => ring.soak_secs = number("soak")?,
            "max-failures" | "max_failures" => ring.max_failures = number("max-failures")?,
            other => {
                return Err(format!(
                "ring `{name}`: unknown key `{other}` (percent, clients, ips, soak, max-failures)"
            ))
            }
        }
    }
    Ok(ring)
}

/// Runs `cascade rollouts …`.
pub fn run_rollouts(cmd: RolloutsCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            RolloutsCmd::List(conn) => {
                let v = ask(&conn, "GET /api/rollouts", |api| async move {
                    api.rollouts().await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                    return Ok(());
                }
                let mut t = table(&[
                    "id", "program", "version", "previous", "state", "ring", "failures",
                ]);
                for r in &v.rollouts {
                    let ring = r
                        .rings
                        .get((r.ring as usize).saturating_sub(1))
                        .map_or_else(String::new, |g| g.spec.name.clone());
                    t.add_row(vec![
                        r.id.to_string(),
                        r.program.clone(),
                        r.version.clone(),
                        r.previous_version.clone().unwrap_or_else(|| "-".into()),
                        r.state.to_string(),
                        format!("{}/{} {ring}", r.ring, r.rings.len()),
                        r.rings.iter().map(|g| g.failures).sum::<u64>().to_string(),
                    ]);
                }
                println!("{t}");
                Ok(())
            }
            RolloutsCmd::Show { id, conn } => {
                let v = ask(
                    &conn,
                    &format!("GET /api/rollouts/{id}"),
                    |api| async move { api.rollout(id).await },
                )
                .await?;
                show(&v, conn.json);
                Ok(())
            }
            RolloutsCmd::Start(args) => start(args).await,
            RolloutsCmd::Promote(a) => act(a, "promote").await,
            RolloutsCmd::Halt(a) => act(a, "halt").await,
            RolloutsCmd::Rollback(a) => act(a, "rollback").await,
        }
    })
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    let rings = match &args.rings_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str::<Vec<RingSpec>>(&text).map_err(|e| {
                BadInput(format!("{}: not a JSON list of rings: {e}", path.display()))
            })?
        }
        None => args.rings.clone(),
    };
    if rings.is_empty() {
        return Err(
            BadInput("rollouts start: give the rings (--ring or --rings-file)".into()).into(),
        );
    }
    let body = NewRollout {
        program: args.program.clone(),
        version: args.program_version.clone(),
        previous_version: args.previous.clone(),
        rings,
    };
    let v = ask(&args.conn, "POST /api/rollouts", |api| async move {
        api.start_rollout(&body).await
    })
    .await?;
    if !args.conn.json {
        println!(
            "rollout {} started: {} {} to ring 1 of {}",
            v.id,
            v.program,
            v.version,
            v.rings.len()
        );
    }
    show(&v, args.conn.json);
    Ok(())
}

async fn act(a: ActionArgs, action: &'static str) -> anyhow::Result<()> {
    let body = RolloutAction { reason: a.reason };
    let id = a.id;
    let v = ask(
        &a.conn,
        &format!("POST /api/rollouts/{id}/{action}"),
        |api| async move { api.rollout_action(id, action, &body).await },
    )
    .await?;
    if !a.conn.json {
        println!(
            "rollout {id}: {}, ring {}/{}",
            v.state,
            v.ring,
            v.rings.len()
        );
    }
    show(&v, a.conn.json);
    Ok(())
}

fn show(v: &RolloutView, json: bool) {
    if json {
        print_json(v);
        return;
    }
    println!(
        "rollout {}: {} {} (others keep {}), {}, ring {}/{}",
        v.id,
        v.program,
        v.version,
        v.previous_version.as_deref().unwrap_or("nothing"),
        v.state,
        v.ring,
        v.rings.len()
    );
    if let Some(r) = &v.reason {
        println!("  {r}");
    }
    let mut t = table(&[
        "#",
        "ring",
        "selects",
        "soak",
        "max failures",
        "state",
        "clients",
        "updated",
        "failing",
    ]);
    for g in &v.rings {
        let mut selects = Vec::new();
        if let Some(p) = g.spec.percent {
            selects.push(format!("{p}%"));
        }
        if !g.spec.clients.is_empty() {
            selects.push(format!("clients {}", g.spec.clients.join(",")));
        }
        if !g.spec.ip_ranges.is_empty() {
            selects.push(format!("ips {}", g.spec.ip_ranges.join(",")));
        }
        t.add_row(vec![
            g.number.to_string(),
            g.spec.name.clone(),
            selects.join("; "),
            format!("{} s", g.spec.soak_secs),
            g.spec.max_failures.to_string(),
            format!("{:?}", g.state).to_lowercase(),
            g.clients.to_string(),
            g.updated.to_string(),
            g.failures.to_string(),
        ]);
    }
    println!("{t}");
}
