//! The `cascade` command. `main` parses the command line, runs one subcommand and turns its
//! error into an exit status: 2 for bad input (a bad policy, a bad argument), 1 for anything
//! else. Each subcommand group lives in its own module.

mod local;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cascade: signed update distribution with relays, an ordered source list and a fallback chain.
#[derive(Debug, Parser)]
#[command(name = "cascade", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check and show policy files (DESIGN.md §3).
    #[command(subcommand)]
    Policy(local::PolicyCmd),
    /// Work with the customized update source list.
    #[command(subcommand)]
    Sources(local::SourcesCmd),
}

/// An error caused by the user's input; exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(cmd) => local::run_policy(cmd),
        Command::Sources(cmd) => local::run_sources(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
