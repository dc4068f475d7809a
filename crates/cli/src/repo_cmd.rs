//! `cascade repo …` and `cascade publish`: thin glue over `cascade-repo` (create a repository,
//! publish versions, re-sign the timestamp, prune, verify a served repository).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cascade_core::Category;
use cascade_repo::verify::{verify, VerifyReport};
use cascade_repo::{Expiries, PublishOptions, Publisher, RepoSource, TransportLimits};
use clap::{Args, Subcommand};
use url::Url;

/// Repository maintenance subcommands.
#[derive(Debug, Subcommand)]
pub enum RepoCmd {
    /// Create a repository in DIR: served tree in DIR/public, online (snapshot, timestamp) keys
    /// in DIR/online-keys, offline (root, targets) keys in --keys (default DIR/offline-keys —
    /// move them off the server).
    Init {
        /// Repository directory.
        dir: PathBuf,
        /// Directory for the offline root and targets keys.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Re-sign the short-lived timestamp (and the snapshot when due) with the online keys.
    RefreshTimestamp {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
    },
    /// Re-sign root (new version) and targets with fresh expiries; needs the offline keys.
    /// Run well before `root` expires (see `verify`).
    Renew {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Offline keys directory (default REPO/offline-keys).
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Keep the newest N versions of every content name; remove the rest and their deltas.
    Prune {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Offline keys directory (default REPO/offline-keys).
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Versions to keep per content name.
        #[arg(long)]
        keep: usize,
    },
    /// Check a served repository as a client would: metadata, signatures, expiry, every file.
    Verify {
        /// Trusted root.json (shipped to clients out of band).
        #[arg(long)]
        root: PathBuf,
        /// Base URL of the served tree (holding metadata/ and targets/).
        #[arg(long)]
        url: Url,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `cascade publish`: add a version to a repository.
///
/// `--version` here is the content's version, so the auto-generated `--version` flag is off.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct PublishArgs {
    /// Repository directory (publish there with its keys).
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    pub repo: Option<PathBuf>,
    /// Upload to this server instead (admin token in `CASCADE_TOKEN`): it signs and
    /// publishes the build in its own site repository. Only `--category programs`; then
    /// `NAME VERSION FILE` may be given as positional arguments
    /// (`docs/operating.md#programs-and-hotfixes`).
    #[arg(long)]
    pub server: Option<String>,
    /// With --server: publish the build as a hotfix.
    #[arg(long, requires = "server")]
    pub hotfix: bool,
    /// Offline keys directory (default REPO/offline-keys).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Category: components, domain-settings or programs.
    #[arg(long)]
    pub category: Category,
    /// Content name, e.g. `scan-engine`.
    #[arg(long)]
    pub name: Option<String>,
    /// The new version.
    #[arg(long = "version", id = "content_version", value_name = "VERSION")]
    pub version: Option<String>,
    /// Make deltas from at most this many previous versions.
    #[arg(long, default_value_t = 2)]
    pub delta_depth: usize,
    /// Print the published targets as JSON.
    #[arg(long)]
    pub json: bool,
    /// Files making up the version.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn keys_dir(repo: &Path, keys: Option<PathBuf>) -> PathBuf {
    keys.unwrap_or_else(|| repo.join("offline-keys"))
}

/// Run a `cascade repo` subcommand.
///
/// # Errors
/// Any repository error, or a failed verification.
pub fn run_repo(cmd: RepoCmd) -> Result<()> {
    let rt = runtime()?;
    let now = cascade_repo::Timestamp::now();
    match cmd {
        RepoCmd::Init { dir, keys } => {
            let keys = keys_dir(&dir, keys);
            let p = rt
                .block_on(cascade_repo::init(&dir, &keys, Expiries::default(), now))
                .with_context(|| format!("initialising {}", dir.display()))?;
            println!("repository created in {}", dir.display());
            println!("  serve:        {}", p.public_dir().display());
            println!(
                "  trusted root: {}",
                p.public_dir().join("metadata/1.root.json").display()
            );
            println!(
                "  offline keys: {} (keep these off the server)",
                keys.display()
            );
            Ok(())
        }
        RepoCmd::RefreshTimestamp { repo } => {
            let p = Publisher::open(&repo, &keys_dir(&repo, None));
            rt.block_on(p.refresh_timestamp(now))
                .with_context(|| format!("refreshing the timestamp of {}", repo.display()))?;
            println!("timestamp re-signed");
            Ok(())
        }
        RepoCmd::Renew { repo, keys } => {
            let p = Publisher::open(&repo, &keys_dir(&repo, keys));
            let v = rt
                .block_on(p.renew(now))
                .map_err(|e| anyhow::anyhow!("renewing {}: {e} [{}]", repo.display(), e.code()))?;
            println!("root re-signed as version {v}; targets, snapshot and timestamp re-signed");
            Ok(())
        }
        RepoCmd::Prune { repo, keys, keep } => {
            let p = Publisher::open(&repo, &keys_dir(&repo, keys));
            let removed = rt
                .block_on(p.prune(keep, now))
                .with_context(|| format!("pruning {}", repo.display()))?;
            println!("removed {} target(s)", removed.len());
            for r in removed {
                println!("  {r}");
            }
            Ok(())
        }
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

/// Run `cascade publish`.
///
/// # Errors
/// Any publishing error; the served repository is then unchanged.
pub fn run_publish(args: PublishArgs) -> Result<()> {
    let Some(repo) = args.repo.clone() else {
        return crate::program_cmd::run_upload(&args);
    };
    let (Some(name), Some(version)) = (args.name.clone(), args.version.clone()) else {
        return Err(crate::BadInput(
            "publish --repo needs --name NAME and --version VERSION".into(),
        )
        .into());
    };
    let rt = runtime()?;
    let p = Publisher::open(&repo, &keys_dir(&repo, args.keys));
    let opts = PublishOptions {
        delta_depth: args.delta_depth,
        ..PublishOptions::default()
    };
    let added = rt
        .block_on(p.publish(
            args.category,
            &name,
            &version,
            &args.files,
            opts,
            cascade_repo::Timestamp::now(),
        ))
        .map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&added)?);
    } else {
        println!("published {}/{name}/{version}", args.category);
        for t in added {
            match t.delta_from {
                Some(from) => println!("  {} ({} bytes, delta from {from})", t.name, t.length),
                None => println!("  {} ({} bytes)", t.name, t.length),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The shape `main.rs` gives these commands (a versioned binary, version propagated).
    #[derive(Debug, Parser)]
    #[command(name = "cascade", version, propagate_version = true)]
    enum Cli {
        #[command(subcommand)]
        Repo(RepoCmd),
        Publish(PublishArgs),
    }

    // The commands are valid clap definitions inside a versioned CLI, and `publish --version` is the content version.
    #[test]
    fn parses_inside_a_versioned_cli() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "cascade",
            "publish",
            "--repo",
            "r",
            "--category",
            "programs",
            "--name",
            "agent",
            "--version",
            "2.1",
            "a.bin",
            "b.bin",
        ])
        .unwrap();
        let Cli::Publish(args) = cli else {
            panic!("not publish: {cli:?}")
        };
        assert_eq!(
            (args.version.as_deref(), args.files.len()),
            (Some("2.1"), 2)
        );
        assert_eq!(args.category, Category::Programs);
        let cli = Cli::try_parse_from(["cascade", "repo", "prune", "--repo", "r", "--keep", "3"]);
        assert!(matches!(cli, Ok(Cli::Repo(RepoCmd::Prune { keep: 3, .. }))));
    }
}
