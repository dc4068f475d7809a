//! The arguments of `cascade repo …` and `cascade publish` (clap definitions).

use std::path::PathBuf;

use cascade_core::Category;
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
