//! The repository shared by replicas on one PostgreSQL
//! (`docs/operating.md#shared-repository-and-one-writer`).
//!
//! When the server runs on PostgreSQL, the files of its two written trees (`site`: the server's
//! own repository's served tree; `upstream`: the mirror) are kept in the database as well as on
//! disk: bodies as content-addressed rows (`repo_blobs`, SHA-256 → bytes) and each published
//! state of a tree as a numbered *tree version* (`repo_trees`, `repo_tree_files`: path →
//! SHA-256). One writer at a time per tree ([`Writer`], a PostgreSQL advisory lock held on a
//! connection of its own, so a writer that dies releases it with its connection) brings its
//! local directory to the newest version, changes it as a single server does, and stores the
//! result as the next version. Every replica materializes the newest version into its own
//! local directory ([`Shared::materialize`]): content files first, then metadata, and
//! `timestamp.json` last, each landed atomically and checked against its SHA-256, so a
//! replica never serves a `timestamp.json` whose snapshot and targets it cannot serve; then it
//! keeps serving from disk as a single server does. Replicas hear of a new version on the
//! [`REPO_CHANNEL`] `LISTEN`/`NOTIFY` channel and poll as a catch-up ([`follow`]).
//!
//! The same database holds the files every replica must share ([`Shared::put_file`]): the
//! private CA and the site repository's non-root keys, so that an agent pinned to one replica
//! trusts them all. The first replica to start creates them under the [`Writer::Startup`] lock;
//! the others load them.
//!
//! The pieces, one module each: `lock` (writers and their advisory locks), `files` (the
//! shared files), `trees` (storing and materializing tree versions), `disk` (what this
//! replica knows of its local files, and landing them) and `replica` (what each replica runs
//! in the background: catching up, following, leading the mirror).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::settings::Clock;

mod disk;
mod files;
mod lock;
mod replica;
mod trees;

pub use lock::{Writer, WriterLock};
pub use replica::{catch_up, follow, lead_mirror};

use disk::Known;

/// The PostgreSQL channel a writer signals after storing a tree version: the payload is
/// `TREE:VERSION` (e.g. `site:7`).
pub const REPO_CHANNEL: &str = "cascade_repo";

/// A tree written by one writer and read by every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// The served tree of the server's own repository (`/repo/site/`).
    Site,
    /// The mirror of the upstream (`/repo/upstream/`).
    Upstream,
}

impl Tree {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Tree::Site => "site",
            Tree::Upstream => "upstream",
        }
    }
}

/// Why a shared-repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The database failed.
    #[error("shared repository: database: {0}")]
    Db(#[from] sqlx::Error),
    /// A local file could not be read or written.
    #[error("shared repository: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tree version names a blob the database does not hold (pruned meanwhile: the next
    /// catch-up takes the newer version).
    #[error("shared repository: {tree} version {version}: blob {sha256} of {path} is missing")]
    MissingBlob {
        /// The tree.
        tree: &'static str,
        /// Its version.
        version: i64,
        /// The file.
        path: String,
        /// The blob.
        sha256: String,
    },
    /// A stored path is not a plain relative path (a hand-edited database).
    #[error("shared repository: unsafe stored path {0:?}")]
    UnsafePath(String),
    /// A blob's bytes do not have its SHA-256 (a hand-edited or damaged database).
    #[error("shared repository: blob {0} does not match its SHA-256")]
    Mismatch(String),
}

impl SharedError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SharedError::Db(_) => "shared.database",
            SharedError::Io { .. } => "shared.io",
            SharedError::MissingBlob { .. } => "shared.missing_blob",
            SharedError::UnsafePath(_) => "shared.unsafe_path",
            SharedError::Mismatch(_) => "shared.mismatch",
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SharedError + '_ {
    move |source| SharedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Per tree: the version last materialized here or written from here.
#[derive(Debug, Default)]
struct Local {
    applied: HashMap<Tree, i64>,
    known: HashMap<PathBuf, Known>,
}

/// The shared repository of a server on PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    pool: PgPool,
    url: String,
    clock: Arc<dyn Clock>,
    /// Private directory for files being landed (same file system as the data directory).
    tmp: PathBuf,
    local: Arc<Mutex<Local>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("tmp", &self.tmp)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects to the PostgreSQL at `url` (migrated already); files being landed wait in
    /// `data_dir/shared-tmp`.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn connect(
        url: &str,
        data_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Shared, SharedError> {
        let pool = PgPoolOptions::new().max_connections(4).connect(url).await?;
        let tmp = data_dir.join("shared-tmp");
        // Under the start-up lock nobody lands here yet: whatever is left is a killed run's.
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(Shared {
            pool,
            url: url.to_owned(),
            clock,
            tmp,
            local: Arc::default(),
        })
    }

    /// The newest stored version of `tree`, `None` when none is.
    ///
    /// # Errors
    /// Database errors.
    pub async fn newest(&self, tree: Tree) -> Result<Option<i64>, SharedError> {
        Ok(
            sqlx::query_scalar("SELECT MAX(version) FROM repo_trees WHERE tree = $1")
                .bind(tree.as_str())
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
