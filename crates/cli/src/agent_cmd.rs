//! `cascade agent` (the client daemon, `--relay` for an update agent), `cascade agent
//! rollback`, and `cascade update-now` (one cycle, then exit with a status that says what
//! happened). The daemon updates itself: when a new build of it must take over (or an old
//! one come back), the process executes that build with the same arguments
//! (`docs/operating.md#agent-self-update`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cascade_agent::daemon::{self, AgentConfig};
use cascade_agent::install::Installer;
use cascade_agent::selfupdate::SelfUpdate;
use cascade_core::report::{Outcome, UpdateReport};
use cascade_core::Category;
use cascade_repo::TransportLimits;
use clap::{Args, Subcommand};
use url::Url;

use crate::BadInput;

/// Exit status of one cycle when content was installed.
pub const EXIT_UPDATED: u8 = 0;
/// Exit status of one cycle when everything was already current.
pub const EXIT_CURRENT: u8 = 3;
/// Exit status of one cycle when, for some category, every source failed.
pub const EXIT_FAILED: u8 = 4;

/// `cascade agent …`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    action: Option<AgentAction>,
    #[command(flatten)]
    run: RunArgs,
}

/// Subcommands of `cascade agent`.
#[derive(Debug, Subcommand)]
pub enum AgentAction {
    /// Switch one item back to the version installed before the current one.
    Rollback {
        /// The agent's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The category of the item.
        #[arg(long, value_parser = crate::local::parse_category)]
        category: Category,
        /// The item's name (e.g. `patterns`).
        #[arg(long)]
        name: String,
    },
    /// Re-hash every installed file against verified metadata and repair damaged ones from
    /// the plan's sources: 0 all intact (or repaired), 4 something could not be repaired.
    Verify {
        /// The agent's data directory.
        #[arg(long, default_value = "cascade-agent")]
        data_dir: PathBuf,
        /// Make every outgoing connection from this address.
        #[arg(long)]
        bind_ip: Option<IpAddr>,
    },
}

/// How to run the agent.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server's URL (needed to enroll; stored afterwards). Repeat it (or separate URLs
    /// with commas) for replicas of one server: the next is asked while one is down
    /// (docs/operating.md#replicas).
    #[arg(long, value_delimiter = ',')]
    server: Vec<Url>,
    /// Enrollment token from the server (first start only).
    #[arg(long, env = "CASCADE_ENROLL_TOKEN", hide_env_values = true)]
    enroll_token: Option<String>,
    /// Where the agent keeps its credential, policy, trust state and installed content.
    #[arg(long, default_value = "cascade-agent")]
    data_dir: PathBuf,
    /// Make every outgoing connection from this address (play many clients on 127.x.y.z).
    #[arg(long)]
    bind_ip: Option<IpAddr>,
    /// Name shown in the console (default: the bind address or `agent`).
    #[arg(long)]
    name: Option<String>,
    /// Client domain whose privileges apply.
    #[arg(long)]
    domain: Option<String>,
    /// Act as an update agent: relay the repository to neighbouring clients.
    #[arg(long, requires = "listen")]
    relay: bool,
    /// Where the update agent serves (with --relay), e.g. 127.0.0.2:8443.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Relay cache budget in MiB.
    #[arg(long, default_value_t = 4096)]
    relay_cache_mib: u64,
    /// Seconds between scheduled updates (± 10 % jitter).
    #[arg(long, default_value_t = 3600)]
    interval: u64,
    /// With --relay: seconds between reports of what the relay served (sent only when it
    /// served something since the last one; every check-in after a cycle carries it too).
    #[arg(long, default_value_t = 60)]
    relay_report_every: u64,
    /// Give up a source that sends fewer bytes per second than this over a 10 s window.
    #[arg(long, default_value_t = 4096)]
    min_rate: u64,
    /// Trusted root of the upstream (components) repository; default: the server's, on first contact.
    #[arg(long)]
    upstream_root: Option<PathBuf>,
    /// Trusted root of the server's own repository; default: the server's, on first contact.
    #[arg(long)]
    site_root: Option<PathBuf>,
    /// Seconds between re-checks of the installed files (and repairs) by the daemon; 0: never.
    #[arg(long, default_value_t = 86_400)]
    verify_every: u64,
    /// Run one update cycle and exit: 0 updated, 3 already current, 4 every source failed.
    #[arg(long)]
    once: bool,
    /// With --once: print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Whether the daemon updates its own binary from its `programs` target.
    #[arg(long, value_enum, default_value_t = SelfUpdating::On)]
    self_update: SelfUpdating,
    /// Seconds a new build of the agent has to check in before it is rolled back.
    #[arg(long, default_value_t = 300)]
    self_update_trial: u64,
}

/// Whether the daemon updates itself (`docs/operating.md#agent-self-update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SelfUpdating {
    /// New builds of the agent published for this platform are tried, and rolled back when
    /// they do not check in within `--self-update-trial` seconds.
    On,
    /// The binary is never replaced (another tool installs the agent).
    Off,
}

/// `cascade update-now`: one cycle of an enrolled agent.
#[derive(Debug, Args)]
pub struct UpdateNowArgs {
    /// The agent's data directory.
    #[arg(long, default_value = "cascade-agent")]
    data_dir: PathBuf,
    /// Make every outgoing connection from this address.
    #[arg(long)]
    bind_ip: Option<IpAddr>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    fn config(&self) -> AgentConfig {
        let mut pinned = Vec::new();
        if let Some(p) = &self.upstream_root {
            pinned.push((cascade_core::TrustDomain::Upstream, p.clone()));
        }
        if let Some(p) = &self.site_root {
            pinned.push((cascade_core::TrustDomain::Site, p.clone()));
        }
        AgentConfig {
            server: self.server.first().cloned(),
            more_servers: self.server.iter().skip(1).cloned().collect(),
            enroll_token: self.enroll_token.clone(),
            data_dir: self.data_dir.clone(),
            bind_ip: self.bind_ip,
            name: self.name.clone().unwrap_or_else(|| {
                self.bind_ip
                    .map_or_else(|| "agent".to_owned(), |ip| ip.to_string())
            }),
            domain: self.domain.clone(),
            relay_listen: if self.relay { self.listen } else { None },
            relay_cache_bytes: self.relay_cache_mib.saturating_mul(1 << 20),
            interval: Duration::from_secs(self.interval.max(1)),
            relay_report_interval: Duration::from_secs(self.relay_report_every.max(1)),
            limits: TransportLimits {
                min_bytes_per_sec: self.min_rate,
                ..TransportLimits::default()
            },
            verify_interval: (self.verify_every > 0)
                .then(|| Duration::from_secs(self.verify_every)),
            pinned_roots: pinned,
            self_update: self.self_update(),
        }
    }

    /// How the daemon updates itself: not for one cycle (`--once`), nor with
    /// `--no-self-update`, nor when this process cannot tell its own binary.
    fn self_update(&self) -> Option<SelfUpdate> {
        if self.once || self.self_update == SelfUpdating::Off {
            return None;
        }
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => {
                eprintln!("warning: self-update off: cannot tell this program's path: {e}");
                return None;
            }
        };
        Some(SelfUpdate {
            version: crate::VERSION.to_owned(),
            exe,
            args: std::env::args_os().skip(1).collect(),
            trial: Duration::from_secs(self.self_update_trial.max(1)),
        })
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `cascade agent …`; the exit code matters for `--once`.
pub fn run_agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if let Some(AgentAction::Rollback {
        data_dir,
        category,
        name,
    }) = args.action
    {
        let inst = Installer::new(data_dir.join("installed"));
        let version = inst
            .rollback(category, &name)
            .map_err(|e| BadInput(format!("[{}] {e}", e.code())))?;
        println!("{category}/{name}: now at version {version}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(AgentAction::Verify { data_dir, bind_ip }) = args.action {
        let cfg = RunArgs::enrolled(data_dir, bind_ip, false).config();
        let found = runtime()?
            .block_on(daemon::verify(cfg))
            .map_err(agent_error)?;
        for d in &found.damaged {
            let state = if d.repaired {
                "repaired"
            } else {
                "NOT repaired"
            };
            println!("{:16} {} damaged ({}): {state}", d.category, d.what, d.why);
        }
        for (c, why) in &found.unchecked {
            println!("{c:16} not checked: {why}");
        }
        println!(
            "{} files checked, {} damaged",
            found.checked,
            found.damaged.len()
        );
        return Ok(ExitCode::from(if found.is_intact() {
            0
        } else {
            EXIT_FAILED
        }));
    }
    let cfg = args.run.config();
    let rt = runtime()?;
    if args.run.once {
        return once(&rt, cfg, args.run.json);
    }
    let self_update = cfg.self_update.clone();
    let ended = rt
        .block_on(daemon::run_self_updating(cfg, crate::shutdown_signal()))
        .map_err(agent_error)?;
    rt.shutdown_timeout(Duration::from_secs(5));
    match (ended, self_update) {
        (daemon::Ended::Exec(binary), Some(su)) => Err(exec_build(&binary, &su)),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Replaces this process with `binary`, same arguments; returns only when that failed (then
/// it tries the service's own binary, which rolls a trial back at start).
fn exec_build(binary: &std::path::Path, su: &SelfUpdate) -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    eprintln!("starting another build of the agent: {}", binary.display());
    let err = std::process::Command::new(binary).args(&su.args).exec();
    eprintln!(
        "error: [selfupdate.exec] cannot start {}: {err}",
        binary.display()
    );
    if binary != su.exe {
        let again = std::process::Command::new(&su.exe).args(&su.args).exec();
        eprintln!(
            "error: [selfupdate.exec] cannot start {}: {again}",
            su.exe.display()
        );
    }
    anyhow::anyhow!("[selfupdate.exec] cannot start {}: {err}", binary.display())
}

/// One cycle with a progress line per step on a terminal; the report, and the exit status
/// that says what happened.
fn once(rt: &tokio::runtime::Runtime, cfg: AgentConfig, json: bool) -> anyhow::Result<ExitCode> {
    let report = rt
        .block_on(async move {
            let progress = crate::progress::CycleProgress::start(!json);
            let observer = progress
                .as_ref()
                .map(crate::progress::CycleProgress::observer);
            daemon::once_observed(cfg, observer).await
        })
        .map_err(agent_error)?;
    Ok(print_report(&report, json))
}

/// Runs `cascade update-now`.
pub fn run_update_now(args: &UpdateNowArgs) -> anyhow::Result<ExitCode> {
    let run = RunArgs::enrolled(args.data_dir.clone(), args.bind_ip, args.json);
    once(&runtime()?, run.config(), args.json)
}

impl RunArgs {
    /// The arguments of one run of an enrolled agent (everything else from its data directory).
    fn enrolled(data_dir: PathBuf, bind_ip: Option<IpAddr>, json: bool) -> RunArgs {
        RunArgs {
            server: Vec::new(),
            enroll_token: None,
            data_dir,
            bind_ip,
            name: None,
            domain: None,
            relay: false,
            listen: None,
            relay_cache_mib: 0,
            interval: 1,
            relay_report_every: 60,
            min_rate: 4096,
            upstream_root: None,
            site_root: None,
            verify_every: 0,
            once: true,
            json,
            self_update: SelfUpdating::Off,
            self_update_trial: 300,
        }
    }
}

fn agent_error(e: daemon::AgentError) -> anyhow::Error {
    match e {
        daemon::AgentError::NotEnrolled | daemon::AgentError::BadPolicy(_) => {
            BadInput(format!("[{}] {e}", e.code())).into()
        }
        other => anyhow::anyhow!("[{}] {other}", other.code()),
    }
}

fn print_report(report: &UpdateReport, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
    } else {
        for a in &report.attempts {
            let cat = a.category.map_or("-", Category::as_str);
            let reason = a
                .reason
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            println!(
                "{cat:16} {}. {:40} {:?} {reason}",
                a.step, a.source, a.outcome
            );
        }
        println!("outcome: {:?}", report.outcome);
    }
    ExitCode::from(match report.outcome {
        Outcome::Ok => EXIT_UPDATED,
        Outcome::UpToDate | Outcome::Skipped => EXIT_CURRENT,
        Outcome::Failed | Outcome::Quit => EXIT_FAILED,
    })
}
