//! `cascade policy export|apply` over the admin API: the server's whole policy as TOML,
//! checked locally before it is sent.

use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use cascade_core::{Policy, PolicyDoc};
use clap::Subcommand;

use super::api::{ask, print_json, runtime, Conn, Revision};
use crate::BadInput;

/// `cascade policy …` subcommands over the API (merge into the local `policy` group).
#[derive(Debug, Subcommand)]
pub enum PolicyRemote {
    /// Write the server's whole policy as TOML (to stdout or `--output`).
    Export {
        /// File to write (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace the server's whole policy with a TOML file (checked locally first).
    Apply {
        /// The policy file.
        file: PathBuf,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs `cascade policy export|apply`.
pub fn run_policy_remote(cmd: PolicyRemote) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            PolicyRemote::Export { output, conn } => {
                let v = ask(&conn, "GET /api/policy", |api| async move { api.policy().await })
                    .await?;
                if conn.json {
                    print_json(&v);
                    return Ok(());
                }
                let policy = v
                    .policy
                    .into_policy()
                    .map_err(|e| anyhow!("the server's policy does not validate: {e}"))?;
                let text = format!(
                    "# cascade policy, server revision {} (apply with --revision {} to refuse if it changed since)\n{}",
                    v.revision,
                    v.revision,
                    policy.to_toml().map_err(|e| anyhow!("{e}"))?
                );
                match output {
                    Some(path) => std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => print!("{text}"),
                }
            }
            PolicyRemote::Apply { file, at, conn } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read policy file {}", file.display()))?;
                let policy = Policy::from_toml(&text).map_err(|e| {
                    BadInput(format!("{}: [{}] {e}", file.display(), e.code()))
                })?;
                let doc = PolicyDoc::from_policy(&policy);
                let v = ask(&conn, "PUT /api/policy", |api| async move {
                    api.put_policy(&doc, at.revision).await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("applied {}: server policy revision {}", file.display(), v.revision);
                }
            }
        }
        Ok(())
    })
}
