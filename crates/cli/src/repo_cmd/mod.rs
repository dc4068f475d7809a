//! `cascade repo …` and `cascade publish`: thin glue over `cascade-repo` (create a repository,
//! publish versions, re-sign the timestamp, prune, verify a served repository).
//!
//! - `args`: the commands' arguments (clap definitions);
//! - `init`: `cascade repo init`, which keeps the offline keys off the repository directory;
//! - `publish`: `cascade publish` into a repository (or on to a server);
//! - here: the other `cascade repo` subcommands and what they share (opening a publisher).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cascade_core::Category;
use cascade_repo::verify::{verify, VerifyReport};
use cascade_repo::{Passphrase, Publisher, RepoSource, TransportLimits};

use crate::BadInput;

mod args;
mod init;
mod publish;

use init::run_init;

pub use args::{PublishArgs, RepoCmd};
pub use publish::run_publish;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn keys_dir(repo: &Path, keys: Option<PathBuf>) -> PathBuf {
    keys.unwrap_or_else(|| repo.join("offline-keys"))
}

/// The passphrase from `--key-passphrase-file` or the environment, as bad input when unusable.
fn passphrase(file: Option<&Path>) -> Result<Option<Passphrase>> {
    Passphrase::from_file_or_env(file).map_err(|e| BadInput(format!("{e} [{}]", e.code())).into())
}

/// The publisher of `repo` with its keys, after a warning for each key file left unencrypted.
fn open(repo: &Path, keys: Option<PathBuf>, passphrase_file: Option<&Path>) -> Result<Publisher> {
    let p =
        Publisher::open(repo, &keys_dir(repo, keys)).with_passphrase(passphrase(passphrase_file)?);
    for path in p.unencrypted_keys() {
        eprintln!(
            "warning: key file {} is not encrypted (docs/operating.md#keys-and-their-ceremony)",
            path.display()
        );
    }
    Ok(p)
}

fn key_error(what: &str, e: &cascade_repo::PublishError) -> anyhow::Error {
    anyhow::anyhow!("{what}: {e} [{}]", e.code())
}

/// Run a `cascade repo` subcommand.
///
/// # Errors
/// Any repository error, or a failed verification.
pub fn run_repo(cmd: RepoCmd) -> Result<()> {
    let rt = runtime()?;
    let now = cascade_repo::Timestamp::now();
    match cmd {
        RepoCmd::Init {
            dir,
            keys,
            keep_offline_keys_here,
            root_keys,
            root_threshold,
            key_passphrase_file,
        } => run_init(
            &rt,
            &dir,
            keys,
            keep_offline_keys_here,
            root_keys,
            root_threshold,
            key_passphrase_file.as_deref(),
        ),
        RepoCmd::RefreshTimestamp {
            repo,
            key_passphrase_file,
        } => {
            let p = open(&repo, None, key_passphrase_file.as_deref())?;
            rt.block_on(p.refresh_timestamp(now)).map_err(|e| {
                key_error(
                    &format!("refreshing the timestamp of {}", repo.display()),
                    &e,
                )
            })?;
            println!("timestamp re-signed");
            Ok(())
        }
        RepoCmd::Renew { repo, keys } => {
            let p = open(&repo, keys.keys, keys.key_passphrase_file.as_deref())?;
            let v = rt
                .block_on(p.renew(now))
                .map_err(|e| key_error(&format!("renewing {}", repo.display()), &e))?;
            println!("root re-signed as version {v}; targets, snapshot and timestamp re-signed");
            Ok(())
        }
        RepoCmd::RotateKey {
            repo,
            role,
            keys,
            json,
        } => {
            let p = open(&repo, keys.keys, keys.key_passphrase_file.as_deref())?;
            let r = rt
                .block_on(p.rotate(role.into(), now))
                .map_err(|e| key_error(&format!("rotating a key of {}", repo.display()), &e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} key rotated: new key {}; root version {} lists it; old key kept as {}",
                    r.role,
                    r.new_key_id,
                    r.root_version,
                    r.retired.display()
                );
            }
            Ok(())
        }
        RepoCmd::Prune { repo, keys, keep } => {
            let p = open(&repo, keys.keys, keys.key_passphrase_file.as_deref())?;
            let removed = rt
                .block_on(p.prune(keep, now))
                .map_err(|e| key_error(&format!("pruning {}", repo.display()), &e))?;
            println!("removed {} target(s)", removed.len());
            for r in removed {
                println!("  {r}");
            }
            Ok(())
        }
        cmd @ (RepoCmd::TeamKey { .. } | RepoCmd::Delegate { .. }) => run_delegation(cmd),
        RepoCmd::Verify { root, url, json } => {
            let trusted =
                std::fs::read(&root).with_context(|| format!("reading {}", root.display()))?;
            let report = rt
                .block_on(verify(
                    &trusted,
                    &RepoSource::new(url.clone()),
                    TransportLimits::default(),
                ))
                .map_err(|e| anyhow::anyhow!("{url}: {e} [{}]", e.code()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            if !report.is_ok() {
                bail!("{} problem(s) found", report.problems.len());
            }
            Ok(())
        }
    }
}

/// `cascade repo team-key` and `cascade repo delegate` (`crate::delegate_cmd`).
fn run_delegation(cmd: RepoCmd) -> Result<()> {
    match cmd {
        RepoCmd::TeamKey {
            out,
            key_passphrase_file,
        } => crate::delegate_cmd::run_team_key(&out, key_passphrase_file.as_deref()),
        RepoCmd::Delegate {
            repo,
            server,
            ca,
            json,
            role,
            team_keys,
            threshold,
            paths,
            keys,
        } => {
            let target = match (repo, server) {
                (Some(repo), _) => crate::delegate_cmd::DelegateIn::Repo {
                    keys_dir: keys_dir(&repo, keys.keys),
                    repo,
                    passphrase_file: keys.key_passphrase_file,
                },
                (None, server) => {
                    crate::delegate_cmd::DelegateIn::Server(crate::server_cmd::Conn {
                        server,
                        ca,
                        json,
                    })
                }
            };
            crate::delegate_cmd::run_delegate(&crate::delegate_cmd::DelegateArgs {
                target,
                role: &role,
                key_files: &team_keys,
                threshold,
                paths: &paths,
            })
        }
        _ => Ok(()),
    }
}

fn print_report(r: &VerifyReport) {
    println!("repository {}", r.url);
    for (role, version) in &r.versions {
        let expires = r
            .expires
            .get(role)
            .map(ToString::to_string)
            .unwrap_or_default();
        println!("  {role:<10} v{version:<6} expires {expires}");
    }
    for category in Category::ALL {
        let Some(names) = r.contents.get(category.as_str()) else {
            continue;
        };
        println!("{category}:");
        for (name, versions) in names {
            println!("  {name}: {}", versions.join(", "));
        }
    }
    println!(
        "{} file(s), {} byte(s) checked; {} delta(s) applied and matched",
        r.targets_checked, r.bytes_checked, r.deltas_checked
    );
    for p in &r.problems {
        println!("PROBLEM {} [{}]: {}", p.target, p.code, p.message);
    }
}
