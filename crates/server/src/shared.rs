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

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection as _, Row as _};
use tokio::sync::watch;

use crate::settings::Clock;

/// The PostgreSQL channel a writer signals after storing a tree version: the payload is
/// `TREE:VERSION` (e.g. `site:7`).
pub const REPO_CHANNEL: &str = "cascade_repo";

/// Tree versions kept per tree (older ones are deleted with the blobs no version uses).
const KEEP_VERSIONS: i64 = 3;

/// Unused blobs younger than this are kept: a writer of the other tree may be storing them.
const BLOB_GRACE_SECS: i64 = 3600;

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

/// What an advisory lock guards (each a fixed 64-bit key: `"cascade"` then a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// A replica's start: creating or loading the CA, the site keys and the first policy.
    Startup,
    /// One publish to the site repository.
    Site,
    /// One mirror run.
    Mirror,
    /// The replica that runs the scheduled mirror (held for as long as it lives).
    MirrorLeader,
}

impl Writer {
    fn key(self) -> i64 {
        const BASE: i64 = 0x6361_7363_6164_0000;
        BASE + match self {
            Writer::Startup => 1,
            Writer::Site => 2,
            Writer::Mirror => 3,
            Writer::MirrorLeader => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Writer::Startup => "startup",
            Writer::Site => "site publish",
            Writer::Mirror => "mirror run",
            Writer::MirrorLeader => "mirror leader",
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

/// A held advisory lock: released by [`WriterLock::release`], or by PostgreSQL when its
/// connection closes (the value dropped, the process killed).
pub struct WriterLock {
    conn: PgConnection,
    writer: Writer,
}

impl std::fmt::Debug for WriterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterLock")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl WriterLock {
    /// Releases the lock and closes its connection.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.writer.key())
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }

    /// Whether the lock's connection still answers (else the lock is gone with it).
    pub async fn alive(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }
}

/// What is known of a local file: its identity on disk and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    sha256: String,
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

/// One file of a tree version.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    sha256: String,
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

    /// Takes `writer`'s lock on a connection of its own: waits up to `wait` (`None`: as long
    /// as it takes); `Ok(None)` when another replica still held it then.
    ///
    /// # Errors
    /// Database errors.
    pub async fn lock(
        &self,
        writer: Writer,
        wait: Option<Duration>,
    ) -> Result<Option<WriterLock>, SharedError> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let Some(wait) = wait else {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(writer.key())
                .execute(&mut conn)
                .await?;
            return Ok(Some(WriterLock { conn, writer }));
        };
        let until = tokio::time::Instant::now() + wait;
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(writer.key())
                .fetch_one(&mut conn)
                .await?;
            if got {
                return Ok(Some(WriterLock { conn, writer }));
            }
            if tokio::time::Instant::now() >= until {
                tracing::debug!(lock = writer.name(), "held by another replica");
                let _ = conn.close().await;
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

    /// The shared file `name`, if stored.
    ///
    /// # Errors
    /// Database errors.
    pub async fn file(&self, name: &str) -> Result<Option<Vec<u8>>, SharedError> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM shared_files WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores the shared file `name` unless one is stored already; returns whether it was.
    ///
    /// # Errors
    /// Database errors.
    pub async fn put_file(&self, name: &str, bytes: &[u8]) -> Result<bool, SharedError> {
        let done = sqlx::query(
            "INSERT INTO shared_files (name, bytes, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(bytes)
        .bind(self.clock.now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores the shared files `files` (name, bytes) in one transaction, each unless one of
    /// that name is stored already.
    ///
    /// # Errors
    /// Database errors (nothing is stored then).
    pub async fn put_files(&self, files: &[(&str, &[u8])]) -> Result<(), SharedError> {
        let mut tx = self.pool.begin().await?;
        for (name, bytes) in files {
            sqlx::query(
                "INSERT INTO shared_files (name, bytes, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(bytes)
            .bind(self.clock.now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the shared file `name` by `new` when it still holds `old`; returns whether
    /// it did.
    ///
    /// # Errors
    /// Database errors.
    pub async fn replace_file(
        &self,
        name: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, SharedError> {
        let done = sqlx::query("UPDATE shared_files SET bytes = $3 WHERE name = $1 AND bytes = $2")
            .bind(name)
            .bind(old)
            .bind(new)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores every regular file of `dir` whose name `keep` accepts as the shared file
    /// `prefix/NAME` (when not stored yet); returns how many are stored now under `prefix/`.
    ///
    /// # Errors
    /// Database or I/O errors.
    pub async fn put_dir(
        &self,
        prefix: &str,
        dir: &Path,
        keep: impl Fn(&str) -> bool,
    ) -> Result<usize, SharedError> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(0);
        };
        for e in entries {
            let e = e.map_err(io(dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type().map_err(io(dir))?.is_file() || !keep(&name) {
                continue;
            }
            let bytes = std::fs::read(e.path()).map_err(io(&e.path()))?;
            self.put_file(&format!("{prefix}/{name}"), &bytes).await?;
        }
        Ok(self.files_under(prefix).await?.len())
    }

    /// The shared files named `prefix/…`, by name.
    ///
    /// # Errors
    /// Database errors.
    pub async fn files_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SharedError> {
        let rows = sqlx::query(
            "SELECT name, bytes FROM shared_files WHERE name LIKE $1 || '/%' ORDER BY name",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("bytes")?)))
            .collect()
    }

    /// Writes every shared file named `prefix/REST` to `dir/REST` (mode `0600`, directories
    /// `0700`) where the local copy differs; returns how many shared files there are.
    ///
    /// # Errors
    /// Database or I/O errors, an unsafe stored name.
    pub async fn restore_files(&self, prefix: &str, dir: &Path) -> Result<usize, SharedError> {
        let files = self.files_under(prefix).await?;
        for (name, bytes) in &files {
            let rest = &name[prefix.len() + 1..];
            let dest = dir.join(safe_relative(rest)?);
            if std::fs::read(&dest).ok().as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            if let Some(parent) = dest.parent() {
                private_dirs(dir, parent)?;
            }
            let mut landing =
                cascade_repo::fsutil::Landing::start(&dest, ".tmp-").map_err(io(&dest))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                landing
                    .set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(io(&dest))?;
            }
            landing.write(bytes).map_err(io(&dest))?;
            landing.finish(None).map_err(|e| SharedError::Io {
                path: dest.clone(),
                source: std::io::Error::other(e),
            })?;
            tracing::info!(file = %dest.display(), "loaded from the shared store");
        }
        Ok(files.len())
    }

    /// Stores the files of `dir` as the next version of `tree` (only bodies the database
    /// lacks are sent), signals it on [`REPO_CHANNEL`] and drops versions older than the last
    /// few. Call it only while holding the tree's [`Writer`] lock. Returns the version.
    ///
    /// # Errors
    /// Database or I/O errors; the newest stored version is then unchanged.
    pub async fn publish_tree(
        &self,
        tree: Tree,
        dir: &Path,
        actor: &str,
    ) -> Result<i64, SharedError> {
        let files = self.scan(dir).await?;
        if let Some(newest) = self.newest(tree).await? {
            let stored = self.entries(tree, newest).await?;
            let same = stored.len() == files.len()
                && stored
                    .iter()
                    .zip(&files)
                    .all(|(s, (_, f))| s.path == f.path && s.sha256 == f.sha256);
            if same {
                if let Ok(mut local) = self.local.lock() {
                    local.applied.insert(tree, newest);
                }
                return Ok(newest);
            }
        }
        let hashes: Vec<String> = files.iter().map(|(_, e)| e.sha256.clone()).collect();
        let present: Vec<String> =
            sqlx::query_scalar("SELECT sha256 FROM repo_blobs WHERE sha256 = ANY($1)")
                .bind(&hashes)
                .fetch_all(&self.pool)
                .await?;
        let present: std::collections::HashSet<String> = present.into_iter().collect();
        let now = self.clock.now();
        let mut sent = std::collections::HashSet::new();
        for (abs, e) in &files {
            if present.contains(&e.sha256) || !sent.insert(e.sha256.clone()) {
                continue;
            }
            let bytes = tokio::fs::read(abs).await.map_err(io(abs))?;
            if cascade_repo::fsutil::sha256_hex(&bytes) != e.sha256 {
                // Changed under us: nothing else writes this tree, so the disk is failing.
                return Err(SharedError::Mismatch(e.sha256.clone()));
            }
            sqlx::query(
                "INSERT INTO repo_blobs (sha256, bytes, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (sha256) DO NOTHING",
            )
            .bind(&e.sha256)
            .bind(bytes)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM repo_trees WHERE tree = $1",
        )
        .bind(tree.as_str())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO repo_trees (tree, version, created_at, created_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(tree.as_str())
        .bind(version)
        .bind(now)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        let paths: Vec<String> = files.iter().map(|(_, e)| e.path.clone()).collect();
        sqlx::query(
            "INSERT INTO repo_tree_files (tree, version, path, sha256) \
             SELECT $1, $2, p, h FROM UNNEST($3::text[], $4::text[]) AS f(p, h)",
        )
        .bind(tree.as_str())
        .bind(version)
        .bind(&paths)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(REPO_CHANNEL)
            .bind(format!("{}:{version}", tree.as_str()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Ok(mut local) = self.local.lock() {
            local.applied.insert(tree, version);
        }
        tracing::info!(
            tree = tree.as_str(),
            version,
            files = files.len(),
            "shared repository: tree version stored"
        );
        if let Err(e) = self.prune(tree, version).await {
            tracing::warn!(error = %e, "shared repository: old tree versions not pruned");
        }
        Ok(version)
    }

    /// Drops the versions of `tree` older than the last [`KEEP_VERSIONS`] and the blobs no
    /// version uses any more.
    async fn prune(&self, tree: Tree, newest: i64) -> Result<(), SharedError> {
        let below = newest - KEEP_VERSIONS + 1;
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM repo_tree_files WHERE tree = $1 AND version < $2",
            "DELETE FROM repo_trees WHERE tree = $1 AND version < $2",
        ] {
            sqlx::query(sql)
                .bind(tree.as_str())
                .bind(below)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "DELETE FROM repo_blobs b WHERE b.created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM repo_tree_files f WHERE f.sha256 = b.sha256)",
        )
        .bind(self.clock.now() - BLOB_GRACE_SECS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Brings `dir` to the newest version of `tree` when it is not there yet: missing or
    /// changed files are landed (content first, then metadata, `metadata/timestamp.json`
    /// last), then files the version does not list are removed. Returns the version
    /// materialized, `None` when nothing was to do. The caller keeps every other writer of
    /// `dir` out meanwhile.
    ///
    /// # Errors
    /// Database or I/O errors, a missing or damaged blob; what landed before stays (each file
    /// is whole, and `timestamp.json` still names a snapshot this replica serves).
    pub async fn materialize(&self, tree: Tree, dir: &Path) -> Result<Option<i64>, SharedError> {
        let Some(version) = self.newest(tree).await? else {
            return Ok(None);
        };
        let applied = self
            .local
            .lock()
            .ok()
            .and_then(|l| l.applied.get(&tree).copied());
        if applied.is_some_and(|a| a >= version) {
            return Ok(None);
        }
        let mut entries = self.entries(tree, version).await?;
        entries.sort_by_key(|e| (landing_order(&e.path), e.path.clone()));
        let mut landed = 0usize;
        for e in &entries {
            let dest = dir.join(safe_relative(&e.path)?);
            if self.has(&dest, &e.sha256).await {
                continue;
            }
            let bytes: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT bytes FROM repo_blobs WHERE sha256 = $1")
                    .bind(&e.sha256)
                    .fetch_optional(&self.pool)
                    .await?;
            let Some(bytes) = bytes else {
                return Err(SharedError::MissingBlob {
                    tree: tree.as_str(),
                    version,
                    path: e.path.clone(),
                    sha256: e.sha256.clone(),
                });
            };
            self.land(&dest, &bytes, &e.sha256)?;
            landed += 1;
        }
        let listed: std::collections::HashSet<&str> =
            entries.iter().map(|e| e.path.as_str()).collect();
        let mut removed = 0usize;
        for path in walk(dir)? {
            let rel = relative(dir, &path);
            if !listed.contains(rel.as_str()) && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        if let Ok(mut local) = self.local.lock() {
            local.applied.insert(tree, version);
        }
        tracing::info!(
            tree = tree.as_str(),
            version,
            landed,
            removed,
            "shared repository: tree version materialized"
        );
        Ok(Some(version))
    }

    /// The files of `version` of `tree`, by path.
    async fn entries(&self, tree: Tree, version: i64) -> Result<Vec<Entry>, SharedError> {
        let rows = sqlx::query(
            "SELECT path, sha256 FROM repo_tree_files WHERE tree = $1 AND version = $2",
        )
        .bind(tree.as_str())
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        let mut entries = rows
            .iter()
            .map(|r| {
                Ok(Entry {
                    path: r.try_get("path")?,
                    sha256: r.try_get("sha256")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // By bytes, as `scan` sorts (the database's collation may differ).
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Forgets which version of `tree` this replica holds, so the next
    /// [`Shared::materialize`] checks every file again (after a failed write changed it).
    pub fn forget(&self, tree: Tree) {
        if let Ok(mut local) = self.local.lock() {
            local.applied.remove(&tree);
        }
    }

    /// Whether `path` holds the bytes of `sha256` (by what is known of it, else by hashing).
    async fn has(&self, path: &Path, sha256: &str) -> bool {
        match self.known(path).await {
            Ok(Some(k)) => k.sha256 == sha256,
            _ => false,
        }
    }

    /// Lands `bytes` at `dest` through the private temporary directory, checked against
    /// `sha256`, and remembers it.
    fn land(&self, dest: &Path, bytes: &[u8], sha256: &str) -> Result<(), SharedError> {
        let want = hex::decode(sha256).map_err(|_| SharedError::Mismatch(sha256.to_owned()))?;
        let mut landing =
            cascade_repo::fsutil::Landing::start_in(dest, &self.tmp, ".tmp-").map_err(io(dest))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            landing
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io(dest))?;
        }
        landing.write(bytes).map_err(io(dest))?;
        match landing.finish(Some(&want)) {
            Ok(_) => {}
            Err(cascade_repo::fsutil::LandError::Mismatch { .. }) => {
                return Err(SharedError::Mismatch(sha256.to_owned()))
            }
            Err(cascade_repo::fsutil::LandError::Io(e)) => return Err(io(dest)(e)),
        }
        if let Some(k) = identity(dest, sha256.to_owned()) {
            if let Ok(mut local) = self.local.lock() {
                local.known.insert(dest.to_owned(), k);
            }
        }
        Ok(())
    }

    /// What is known of the file at `path` now: its SHA-256 from memory when the file is the
    /// same one (length, modification time and inode), else by hashing it.
    async fn known(&self, path: &Path) -> Result<Option<Known>, SharedError> {
        let Some(now) = identity(path, String::new()) else {
            return Ok(None);
        };
        let cached = self
            .local
            .lock()
            .ok()
            .and_then(|l| l.known.get(path).cloned());
        if let Some(k) = cached {
            if k.len == now.len && k.modified == now.modified && k.inode == now.inode {
                return Ok(Some(k));
            }
        }
        let owned = path.to_owned();
        let sha256 =
            tokio::task::spawn_blocking(move || cascade_repo::fsutil::sha256_file_hex(&owned))
                .await
                .map_err(|e| io(path)(std::io::Error::other(e)))?
                .map_err(io(path))?;
        let k = Known { sha256, ..now };
        if let Ok(mut local) = self.local.lock() {
            local.known.insert(path.to_owned(), k.clone());
        }
        Ok(Some(k))
    }

    /// Every file of `dir` (temporary and partial files left out) with its tree path and
    /// SHA-256, sorted by path.
    async fn scan(&self, dir: &Path) -> Result<Vec<(PathBuf, Entry)>, SharedError> {
        let mut out = Vec::new();
        for path in walk(dir)? {
            let Some(k) = self.known(&path).await? else {
                continue;
            };
            out.push((
                path.clone(),
                Entry {
                    path: relative(dir, &path),
                    sha256: k.sha256,
                },
            ));
        }
        out.sort_by(|a, b| a.1.path.cmp(&b.1.path));
        Ok(out)
    }
}

/// Content first (0), then metadata (1), then `metadata/timestamp.json` (2).
fn landing_order(path: &str) -> u8 {
    if path == "metadata/timestamp.json" {
        2
    } else {
        u8::from(path.starts_with("metadata/"))
    }
}

/// `rest` as a relative path of normal components only.
fn safe_relative(rest: &str) -> Result<PathBuf, SharedError> {
    let p = Path::new(rest);
    let ok = !rest.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p.to_owned())
    } else {
        Err(SharedError::UnsafePath(rest.to_owned()))
    }
}

/// `path` under `dir` with `/` separators.
fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The length, modification time and inode of the file at `path` (`None`: not a file).
fn identity(path: &Path, sha256: String) -> Option<Known> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Known {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
        sha256,
    })
}

/// Every regular file below `dir` (not following links), leaving out temporary and partial
/// files (names starting with `.tmp-` or `.partial-`), sorted. An absent `dir` has none.
fn walk(dir: &Path) -> Result<BTreeSet<PathBuf>, SharedError> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&d)(e)),
        };
        for e in entries {
            let e = e.map_err(io(&d))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || name.starts_with(".partial-") {
                continue;
            }
            let t = e.file_type().map_err(io(&d))?;
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.insert(e.path());
            }
        }
    }
    Ok(out)
}

/// Creates the directories from `base` down to `dir`, each `0700`.
fn private_dirs(base: &Path, dir: &Path) -> Result<(), SharedError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mut d = dir;
        while d.starts_with(base) && d != base {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(io(d))?;
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
    }
    Ok(())
}

/// Materializes both trees now (the site through its publisher, the upstream unless a mirror
/// run of this replica is under way: that run stores what it makes).
pub async fn catch_up(st: &crate::state::AppState, shared: &Shared) {
    if let crate::site::Site::Own(p) = &st.site {
        if let Err(e) = p.sync_shared().await {
            tracing::warn!(error = %e, code = e.code(), "shared repository: site not materialized; retried");
        }
    }
    if let Ok(_one) = st.mirror.running.try_lock() {
        let dest = st.repo_dir.join("upstream");
        if let Err(e) = shared.materialize(Tree::Upstream, &dest).await {
            tracing::warn!(error = %e, code = e.code(), "shared repository: upstream not materialized; retried");
        }
    }
}

/// Keeps this replica's trees at the newest versions until `stop` flips: at each signal on
/// [`REPO_CHANNEL`], and every `poll` as a catch-up (signals sent while the listening
/// connection was down are lost).
pub async fn follow(
    st: crate::state::AppState,
    shared: Shared,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut listener: Option<PgListener> = None;
    loop {
        catch_up(&st, &shared).await;
        if listener.is_none() {
            match PgListener::connect(&shared.url).await {
                Ok(mut l) => match l.listen(REPO_CHANNEL).await {
                    Ok(()) => listener = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "shared repository: cannot listen; polling");
                    }
                },
                Err(e) => tracing::warn!(error = %e, "shared repository: cannot listen; polling"),
            }
        }
        let heard = async {
            match listener.as_mut() {
                Some(l) => l.try_recv().await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(poll) => {}
            r = heard => if let Err(e) = r {
                tracing::warn!(error = %e, "shared repository: listening failed; reconnecting");
                listener = None;
            },
        }
    }
}

/// Runs the scheduled mirror while this replica is the mirror leader: tries the
/// [`Writer::MirrorLeader`] lock every `retry`; its holder mirrors every `every` for as long
/// as it lives (its death releases the lock and another replica takes over, starting with a
/// run).
pub async fn lead_mirror(
    st: crate::state::AppState,
    shared: Shared,
    every: Duration,
    retry: Duration,
) {
    let mut stop = st.shutdown.subscribe();
    loop {
        match shared
            .lock(Writer::MirrorLeader, Some(Duration::ZERO))
            .await
        {
            Ok(Some(mut lock)) => {
                tracing::info!("mirror leader: this replica runs the scheduled mirror");
                loop {
                    if let Err(e) = crate::mirror::run_once(&st.mirror_job()).await {
                        tracing::warn!(error = %e, "scheduled mirror skipped");
                    }
                    let stopping = tokio::select! {
                        _ = stop.wait_for(|s| *s) => true,
                        () = tokio::time::sleep(every) => false,
                    };
                    if stopping {
                        lock.release().await;
                        return;
                    }
                    if !lock.alive().await {
                        tracing::warn!(
                            "mirror leader: lost the database connection; no longer the leader"
                        );
                        break;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "mirror leader: cannot try the lock"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(retry) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_lands_last_and_paths_stay_inside() {
        let mut paths = [
            "metadata/timestamp.json",
            "metadata/3.snapshot.json",
            "targets/a/1/x.bin",
            "metadata/1.root.json",
        ];
        paths.sort_by_key(|p| (landing_order(p), (*p).to_owned()));
        assert_eq!(paths[0], "targets/a/1/x.bin");
        assert_eq!(paths[3], "metadata/timestamp.json");
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "./a"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
        assert!(safe_relative("metadata/1.root.json").is_ok());
    }
}
