//! The `cascade` command. `main` parses the command line, runs one subcommand and turns its
//! result into an exit status: 2 for bad input (a bad policy, a bad argument), 1 for any
//! other error, and subcommand-specific statuses where documented (`agent --once`). Each
//! subcommand group lives in its own module. The code is a library (`cascade_cli`) whose
//! [`main`] the `cascade` binary runs (`src/bin/cascade.rs`).

mod agent_cmd;
mod delegate_cmd;
mod demo;
mod demo_rollout;
mod demo_view;
mod domains_cmd;
mod local;
mod program_cmd;
mod progress;
mod repo_cmd;
mod rollouts_cmd;
mod server_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cascade: signed update distribution with relays, an ordered source list and a fallback chain.
#[derive(Debug, Parser)]
#[command(name = "cascade", version = VERSION, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system on this machine: upstream, server, update agents, a client fleet.
    Demo(demo::DemoArgs),
    /// Check and show policy files (`docs/architecture.md#policy`).
    #[command(subcommand)]
    Policy(local::PolicyCmd),
    /// Work with the customized update source list.
    #[command(subcommand)]
    Sources(local::SourcesCmd),
    /// Run the client daemon (`--relay` for an update agent), or roll an item back.
    Agent(Box<agent_cmd::AgentArgs>),
    /// Run one update cycle of an enrolled agent and exit (0 updated, 3 current, 4 failed).
    UpdateNow(agent_cmd::UpdateNowArgs),
    /// Run the server: policy, client registry, admin API, console, repository.
    Server(server_cmd::ServerArgs),
    /// Notify All Clients: tell every client to update now (update agents first).
    Notify(server_cmd::NotifyArgs),
    /// The server's client registry: versions, last update, failures.
    Clients(server_cmd::ClientsArgs),
    /// Registered update agents.
    #[command(subcommand)]
    Agents(server_cmd::AgentsCmd),
    /// Client domains: their ActiveUpdate privilege and settings (interval, windows, caps).
    #[command(subcommand)]
    Domains(domains_cmd::DomainsCmd),
    /// Progressive rollouts of program versions in rings: list, show, start, promote, halt,
    /// roll back.
    #[command(subcommand)]
    Rollouts(rollouts_cmd::RolloutsCmd),
    /// Health of every update agent and URL source (from clients' reports and check-ins).
    Health(server_cmd::Conn),
    /// Compliance by version per category: newest published, current, behind, failed.
    Compliance(server_cmd::Conn),
    /// Users and their roles on the server (admin only).
    #[command(subcommand)]
    Users(server_cmd::UsersCmd),
    /// API tokens on the server: list, create, revoke.
    #[command(subcommand)]
    Tokens(server_cmd::TokensCmd),
    /// Create and maintain a signed repository.
    #[command(subcommand)]
    Repo(repo_cmd::RepoCmd),
    /// Publish a new version of some content into a repository.
    Publish(repo_cmd::PublishArgs),
}

/// The version of this build (`CASCADE_BUILD_VERSION` at build time, else the package's):
/// what `--version` prints and the agent reports (`docs/operating.md#agent-self-update`).
pub const VERSION: &str = env!("CASCADE_VERSION");

/// An error caused by the user's input; exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Resolves on Ctrl-C or SIGTERM, for graceful shutdown of long-running commands.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn init_logging(quiet: bool) {
    // Quiet (the demo): its one process runs the server and every client on a small machine,
    // where sqlx's "slow acquire" warnings only say the CPU is busy.
    let default = if quiet {
        "warn,sqlx::pool::acquire=error"
    } else {
        "warn,cascade=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CASCADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the command line of this process and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo draws its own progress; its pieces' info logs would only scroll it away.
    init_logging(matches!(cli.command, Command::Demo(_)));
    let ok = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Demo(args) => demo::run_demo(&args),
        Command::Policy(cmd) => ok(local::run_policy(cmd)),
        Command::Sources(cmd) => ok(local::run_sources(cmd)),
        Command::Agent(args) => agent_cmd::run_agent(*args),
        Command::UpdateNow(args) => agent_cmd::run_update_now(&args),
        Command::Server(args) => ok(server_cmd::run_server(args)),
        Command::Notify(args) => ok(server_cmd::run_notify(args)),
        Command::Clients(args) => ok(server_cmd::run_clients(args)),
        Command::Agents(cmd) => ok(server_cmd::run_agents(cmd)),
        Command::Domains(cmd) => ok(domains_cmd::run_domains(cmd)),
        Command::Rollouts(cmd) => ok(rollouts_cmd::run_rollouts(cmd)),
        Command::Health(conn) => ok(server_cmd::run_health(conn)),
        Command::Compliance(conn) => ok(server_cmd::run_compliance(conn)),
        Command::Users(cmd) => ok(server_cmd::run_users(cmd)),
        Command::Tokens(cmd) => ok(server_cmd::run_tokens(cmd)),
        Command::Repo(cmd) => ok(repo_cmd::run_repo(cmd)),
        Command::Publish(args) => ok(repo_cmd::run_publish(&args)),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
