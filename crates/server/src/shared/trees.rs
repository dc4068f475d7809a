//! Tree versions: storing a writer's directory as the next version of its tree (only the
//! bodies the database lacks), pruning old versions, and materializing the newest version
//! into a replica's directory, `timestamp.json` last.

use std::path::Path;

use sqlx::Row as _;

use super::disk::{relative, safe_relative, walk};
use super::{io, Shared, SharedError, Tree, REPO_CHANNEL};

/// Tree versions kept per tree (older ones are deleted with the blobs no version uses).
const KEEP_VERSIONS: i64 = 3;

/// Unused blobs younger than this are kept: a writer of the other tree may be storing them.
const BLOB_GRACE_SECS: i64 = 3600;

/// One file of a tree version.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) path: String,
    pub(super) sha256: String,
}

impl Shared {
    /// Stores the files of `dir` as the next version of `tree` (only bodies the database
    /// lacks are sent), signals it on [`REPO_CHANNEL`] and drops versions older than the last
    /// few. Call it only while holding the tree's [`Writer`](super::Writer) lock. Returns the version.
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
}

/// Content first (0), then metadata (1), then `metadata/timestamp.json` (2).
fn landing_order(path: &str) -> u8 {
    if path == "metadata/timestamp.json" {
        2
    } else {
        u8::from(path.starts_with("metadata/"))
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
