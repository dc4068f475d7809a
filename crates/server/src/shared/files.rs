//! The files every replica shares (the private CA, the site repository's non-root keys):
//! stored once in the database, loaded and restored by each replica.

use std::path::Path;

use sqlx::Row as _;

use super::disk::safe_relative;
use super::{io, Shared, SharedError};

impl Shared {
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
