//! Subcommands that work on a policy file on disk, with no server: `policy check`,
//! `policy show` and `sources resolve` (the what-if).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cascade_core::{resolve, Category, Fallback, Plan, Policy, PolicyError, Source};
use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;

use crate::BadInput;

/// `cascade policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Validate a policy file; errors name the field and the value (exit status 2).
    Check {
        /// The policy file (TOML).
        file: PathBuf,
    },
    /// Show a policy file: settings, agents and the source list as a table, in order.
    Show {
        /// The policy file (TOML).
        file: PathBuf,
    },
    #[command(flatten)]
    Remote(crate::server_cmd::PolicyRemote),
}

/// `cascade sources …`
#[derive(Debug, Subcommand)]
pub enum SourcesCmd {
    /// Which sources a client at IP tries, in order, and why (`docs/architecture.md#resolution`).
    Resolve(ResolveArgs),
    #[command(flatten)]
    Remote(crate::server_cmd::SourcesRemote),
}

/// Arguments of `cascade sources resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The policy file (TOML).
    #[arg(long)]
    policy: PathBuf,
    /// The client's IP address (IPv4 or IPv6).
    #[arg(long)]
    ip: IpAddr,
    /// The client's domain, whose privilege overrides apply (default: `[privileges]`).
    #[arg(long)]
    domain: Option<String>,
    /// Resolve one category only (default: all three).
    #[arg(long, value_parser = parse_category)]
    category: Option<Category>,
    /// Print JSON: {"ip":…,"plans":[{"category":…,"steps":[{"source":…,"why":…}]}]}.
    #[arg(long)]
    json: bool,
}

pub(crate) fn parse_category(s: &str) -> Result<Category, String> {
    s.parse()
        .map_err(|e: cascade_core::category::UnknownCategory| e.to_string())
}

/// Runs `cascade policy …`.
pub fn run_policy(cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Check { file } => {
            let p = load(&file)?;
            println!(
                "{}: ok ({} mode, {} agents, {} source entries)",
                file.display(),
                match p.mode {
                    cascade_core::Mode::Standard => "standard",
                    cascade_core::Mode::Customized => "customized",
                },
                p.agent.len(),
                p.sources.len()
            );
        }
        PolicyCmd::Show { file } => print!("{}", show(&load(&file)?)),
        PolicyCmd::Remote(cmd) => crate::server_cmd::run_policy_remote(cmd)?,
    }
    Ok(())
}

/// Runs `cascade sources …`.
pub fn run_sources(cmd: SourcesCmd) -> anyhow::Result<()> {
    match cmd {
        SourcesCmd::Resolve(args) => resolve_cmd(&args),
        SourcesCmd::Remote(cmd) => crate::server_cmd::run_sources_remote(cmd),
    }
}

/// Reads and validates a policy file; a bad policy is [`BadInput`].
fn load(file: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read policy file {}", file.display()))?;
    Policy::from_toml(&text).map_err(|e| bad_policy(file, &e))
}

fn bad_policy(file: &Path, e: &PolicyError) -> anyhow::Error {
    BadInput(format!("{}: [{}] {e}", file.display(), e.code())).into()
}

fn show(p: &Policy) -> String {
    let on = |b: bool| if b { "on" } else { "off" };
    let mut out = String::new();
    let mode = match p.mode {
        cascade_core::Mode::Standard => "standard",
        cascade_core::Mode::Customized => "customized",
    };
    let _ = writeln!(out, "mode: {mode}");
    let up = p
        .activeupdate_url
        .as_ref()
        .map_or_else(|| "(none)".to_owned(), ToString::to_string);
    let _ = writeln!(
        out,
        "activeupdate_url: {up} (fallback rule: {})",
        p.activeupdate_fallback
    );
    for c in Category::ALL {
        let _ = writeln!(
            out,
            "{}: {}",
            Fallback::option_name(c),
            on(p.fallback.from_server(c))
        );
    }
    let _ = writeln!(
        out,
        "privileges.download_from_activeupdate: {}",
        on(p.privileges.download_from_activeupdate)
    );
    for (name, d) in &p.domains {
        if let Some(v) = d.privileges.download_from_activeupdate {
            let _ = writeln!(
                out,
                "domains.{name}.privileges.download_from_activeupdate: {}",
                on(v)
            );
        }
    }
    let mut agents = Table::new();
    agents
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["update agent", "capabilities"]);
    for a in &p.agent {
        let caps: Vec<&str> = a.capabilities.iter().map(|c| c.as_str()).collect();
        agents.add_row([a.address.to_string(), caps.join(", ")]);
    }
    let _ = writeln!(out, "\nupdate agents ({}):\n{agents}", p.agent.len());
    let mut list = Table::new();
    list.load_preset(UTF8_FULL_CONDENSED)
        .set_header(["#", "id", "IP range", "source"]);
    for (i, e) in p.sources.iter().enumerate() {
        let source = match &e.source {
            Source::Agent(a) => format!("update agent {a}"),
            Source::Url(u) => format!("URL {u}"),
        };
        list.add_row([
            (i + 1).to_string(),
            e.id.to_string(),
            e.range.to_string(),
            source,
        ]);
    }
    let _ = writeln!(
        out,
        "\ncustomized update source list ({} entries, first match first):\n{list}",
        p.sources.len()
    );
    out
}

#[derive(Serialize)]
struct ResolveJson<'a> {
    ip: String,
    plans: &'a [Plan],
}

fn resolve_cmd(args: &ResolveArgs) -> anyhow::Result<()> {
    let policy = load(&args.policy)?;
    if let Some(d) = &args.domain {
        if !policy.domains.contains_key(d) {
            let known: Vec<&str> = policy.domains.keys().map(String::as_str).collect();
            return Err(BadInput(format!(
                "--domain: `{d}` is not defined in {} (defined: {})",
                args.policy.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
            .into());
        }
    }
    let categories = args.category.map_or(Category::ALL.to_vec(), |c| vec![c]);
    let plans: Vec<Plan> = categories
        .into_iter()
        .map(|c| resolve(&policy, args.ip, args.domain.as_deref(), c))
        .collect();
    if args.json {
        let doc = ResolveJson {
            ip: args.ip.to_string(),
            plans: &plans,
        };
        println!("{}", serde_json::to_string(&doc)?);
    } else {
        print!("{}", show_plans(args.ip, &plans));
    }
    Ok(())
}

fn show_plans(ip: IpAddr, plans: &[Plan]) -> String {
    let mut out = String::new();
    for plan in plans {
        let _ = writeln!(out, "{} for {ip}:", plan.category);
        let width = plan
            .steps
            .iter()
            .map(|s| s.source.to_string().len())
            .max()
            .unwrap_or(0);
        for (n, step) in plan.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {:width$}  {}",
                n + 1,
                step.source.to_string(),
                step.why
            );
        }
        let _ = writeln!(
            out,
            "  {}",
            if plan.steps.is_empty() {
                "no source: quit"
            } else {
                "then quit"
            }
        );
        for s in &plan.skipped {
            let _ = writeln!(out, "  skipped: {s}");
        }
    }
    out
}
