//! `cascade repo …` and `cascade publish`: thin glue over `cascade-repo` (create a repository,
//! publish versions, re-sign the timestamp, prune, verify a served repository).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cascade_core::Category;
use cascade_repo::verify::{verify, VerifyReport};
use cascade_repo::{
    InitOptions, Passphrase, PublishOptions, Publisher, RepoSource, TransportLimits,
};

use crate::BadInput;
use clap::{Args, Subcommand};
use url::Url;

/// Where the key files are and how to open them: shared by every command that signs.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Offline keys directory (root, targets; default REPO/offline-keys).
    #[arg(long = "offline-keys", visible_alias = "keys", value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// File whose first line is the passphrase of encrypted key files (else the
    /// `CASCADE_KEY_PASSPHRASE` environment variable).
    #[arg(long, value_name = "FILE")]
    pub key_passphrase_file: Option<PathBuf>,
}

/// A TUF role whose key `cascade repo rotate-key` replaces.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyRole {
    /// The root role's first key (`root.pk8`).
    Root,
    /// The targets role.
    Targets,
    /// The snapshot role.
    Snapshot,
    /// The timestamp role.
    Timestamp,
}

impl From<KeyRole> for cascade_repo::RoleType {
    fn from(r: KeyRole) -> Self {
        match r {
            KeyRole::Root => Self::Root,
            KeyRole::Targets => Self::Targets,
            KeyRole::Snapshot => Self::Snapshot,
            KeyRole::Timestamp => Self::Timestamp,
        }
    }
}

/// Repository maintenance subcommands.
#[derive(Debug, Subcommand)]
pub enum RepoCmd {
    /// Create a repository in DIR: served tree in DIR/public, online (snapshot, timestamp) keys
    /// in DIR/online-keys, offline (root, targets) keys in --offline-keys, a separate directory
    /// to move off the server (`docs/operating.md#keys-and-their-ceremony`).
    Init {
        /// Repository directory.
        dir: PathBuf,
        /// Directory for the offline root and targets keys, outside DIR (removable media).
        #[arg(long = "offline-keys", visible_alias = "keys", value_name = "KEYS_DIR")]
        keys: Option<PathBuf>,
        /// Leave the offline keys on this machine, in DIR/offline-keys (a test or demo set-up).
        #[arg(long, conflicts_with = "keys")]
        keep_offline_keys_here: bool,
        /// How many root keys to make (root.pk8, root-2.pk8, …), one per key holder.
        #[arg(long, default_value_t = 1)]
        root_keys: usize,
        /// How many root keys must sign a new root.
        #[arg(long, default_value_t = 1)]
        root_threshold: usize,
        /// File whose first line is the passphrase every key file is encrypted with (else the
        /// `CASCADE_KEY_PASSPHRASE` environment variable; without either the keys are plain).
        #[arg(long, value_name = "FILE")]
        key_passphrase_file: Option<PathBuf>,
    },
    /// Re-sign the short-lived timestamp (and the snapshot when due) with the online keys.
    RefreshTimestamp {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// File whose first line is the passphrase of encrypted key files (else the
        /// `CASCADE_KEY_PASSPHRASE` environment variable).
        #[arg(long, value_name = "FILE")]
        key_passphrase_file: Option<PathBuf>,
    },
    /// Re-sign root (new version) and targets with fresh expiries; needs the offline keys
    /// (as many root keys as root's threshold). Run well before `root` expires (see `verify`).
    Renew {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Key locations.
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Give a role a new key: a new root version lists it, signed by the old root's keys (and
    /// the new root key when root rotates); the old key file is kept as FILE.retired-vN. Needs
    /// the root keys (`docs/operating.md#keys-and-their-ceremony`).
    RotateKey {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The role whose key changes (root: its first key, `root.pk8`).
        #[arg(long, value_enum)]
        role: KeyRole,
        /// Key locations.
        #[command(flatten)]
        keys: KeyArgs,
        /// Print what changed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keep the newest N versions of every content name; remove the rest and their deltas.
    Prune {
        /// Repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Key locations.
        #[command(flatten)]
        keys: KeyArgs,
        /// Versions to keep per content name.
        #[arg(long)]
        keep: usize,
    },
    /// Make a build team's key: FILE (keep it with the team, never on the server) and its
    /// public key's JSON in FILE.pub.json, for `cascade repo delegate --key`
    /// (`docs/operating.md#delegated-program-builds`).
    TeamKey {
        /// The private key file to create.
        #[arg(long)]
        out: PathBuf,
        /// File whose first line is the passphrase to encrypt it with (else the
        /// `CASCADE_KEY_PASSPHRASE` environment variable; without either it is plain).
        #[arg(long, value_name = "FILE")]
        key_passphrase_file: Option<PathBuf>,
    },
    /// Delegate program paths to a build team's key (signed with the targets key): the team
    /// then signs its builds itself (`cascade publish --delegated-key`), and clients accept
    /// them under those paths only (`docs/operating.md#delegated-program-builds`).
    Delegate {
        /// Repository directory, signed here with its targets key (a repository of its own;
        /// for a server's site repository use --server, which replicas need).
        #[arg(long, required_unless_present = "server", conflicts_with = "server")]
        repo: Option<PathBuf>,
        /// Ask this server to delegate in its own site repository (admin token in
        /// `CASCADE_TOKEN`): it signs with the targets key it holds, as the one writer, so
        /// on replicas the delegation is stored for all of them.
        #[arg(long)]
        server: Option<String>,
        /// With --server: the server's CA certificate (PEM) to trust (else `CASCADE_CA`, the
        /// config file's `ca`, or a local server's `DATA_DIR/tls/ca.pem`: docs/operating.md#tls).
        #[arg(long, env = "CASCADE_CA", requires = "server")]
        ca: Option<PathBuf>,
        /// With --server: print the server's JSON answer.
        #[arg(long, requires = "server")]
        json: bool,
        /// The delegated role's name, e.g. `build-team`.
        #[arg(long)]
        role: String,
        /// A team public key (`FILE.pub.json` of `cascade repo team-key`); repeat for several.
        #[arg(long = "key", value_name = "PUB", required = true)]
        team_keys: Vec<PathBuf>,
        /// How many of the keys must sign the role.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        /// Target path patterns delegated, `programs/NAME/VERSION/FILE` with `*` per segment,
        /// e.g. `programs/*/*/*`; repeat for several.
        #[arg(long = "paths", value_name = "PATTERN", required = true)]
        paths: Vec<String>,
        /// Key locations (the targets key).
        #[command(flatten)]
        keys: KeyArgs,
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
    /// With --server: sign the build with this build-team key (the key of a role the
    /// server's targets delegate to; the server never sees it) instead of letting the server
    /// sign it (`docs/operating.md#delegated-program-builds`). Needs --role.
    #[arg(long, value_name = "KEY", requires = "server")]
    pub delegated_key: Option<PathBuf>,
    /// With --delegated-key: the delegated role, e.g. `build-team`.
    #[arg(long, requires = "delegated_key")]
    pub role: Option<String>,
    /// With --delegated-key: days until the role's new version expires.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=3650))]
    pub role_days: i64,
    /// With --server: the server's CA certificate (PEM) to trust (else `CASCADE_CA`, the
    /// config file's `ca`, or a local server's `DATA_DIR/tls/ca.pem`: docs/operating.md#tls).
    #[arg(long, env = "CASCADE_CA", requires = "server")]
    pub ca: Option<PathBuf>,
    /// Key locations.
    #[command(flatten)]
    pub keys: KeyArgs,
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

/// Run `cascade repo init`: refuses to leave the offline keys inside the repository directory
/// unless `--keep-offline-keys-here` says so.
fn run_init(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    keys: Option<PathBuf>,
    keep_here: bool,
    root_keys: usize,
    root_threshold: usize,
    passphrase_file: Option<&Path>,
) -> Result<()> {
    let keys =
        match (keys, keep_here) {
            (_, true) => dir.join("offline-keys"),
            (Some(k), false) => {
                let (abs_dir, abs_keys) = (absolute(dir)?, absolute(&k)?);
                if abs_keys.starts_with(&abs_dir) {
                    return Err(BadInput(format!(
                    "--offline-keys {} is inside the repository directory {}: give a directory \
                     outside it (removable media), or --keep-offline-keys-here",
                    k.display(),
                    dir.display()
                ))
                    .into());
                }
                k
            }
            (None, false) => return Err(BadInput(
                "give --offline-keys DIR (a directory to move off this machine, e.g. removable \
                 media) for the root and targets keys, or --keep-offline-keys-here"
                    .to_owned(),
            )
            .into()),
        };
    let opts = InitOptions {
        passphrase: passphrase(passphrase_file)?,
        root_keys,
        root_threshold,
        ..InitOptions::new(&keys)
    };
    let encrypted = opts.passphrase.is_some();
    let p = rt
        .block_on(cascade_repo::init_with(
            dir,
            &opts,
            cascade_repo::Timestamp::now(),
        ))
        .map_err(|e| {
            let err = key_error(&format!("initialising {}", dir.display()), &e);
            if let cascade_repo::PublishError::BadThreshold { .. } = e {
                BadInput(format!("{err:#}")).into()
            } else {
                err
            }
        })?;
    println!("repository created in {}", dir.display());
    println!("  serve:        {}", p.public_dir().display());
    println!(
        "  trusted root: {}",
        p.public_dir().join("metadata/1.root.json").display()
    );
    println!("  root keys:    {root_keys}, of which {root_threshold} must sign a new root");
    println!("  offline keys: {}", keys.display());
    if keep_here {
        println!("  WARNING: the offline root and targets keys are on this machine (--keep-offline-keys-here)");
    } else {
        println!(
            "  MOVE {} OFF THIS MACHINE now (removable media, one root key per key holder);",
            keys.display()
        );
        println!("  publishing and renewing need it back (--offline-keys).");
    }
    if !encrypted {
        eprintln!(
            "warning: the key files are not encrypted: give --key-passphrase-file or \
             CASCADE_KEY_PASSPHRASE (docs/operating.md#keys-and-their-ceremony)"
        );
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
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

/// Run `cascade publish`.
///
/// # Errors
/// Any publishing error; the served repository is then unchanged.
pub fn run_publish(args: &PublishArgs) -> Result<()> {
    if let Some(key) = &args.delegated_key {
        return crate::delegate_cmd::run_delegated_upload(args, key);
    }
    let Some(repo) = args.repo.clone() else {
        return crate::program_cmd::run_upload(args);
    };
    let (Some(name), Some(version)) = (args.name.clone(), args.version.clone()) else {
        return Err(crate::BadInput(
            "publish --repo needs --name NAME and --version VERSION".into(),
        )
        .into());
    };
    let rt = runtime()?;
    let p = open(
        &repo,
        args.keys.keys.clone(),
        args.keys.key_passphrase_file.as_deref(),
    )?;
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
