//! The relay's cache on disk: seeding it from the agent's own installs, checking that
//! content-addressed blobs still match their names, pruning blobs no metadata names, and
//! evicting the oldest files beyond the byte budget.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use cascade_repo::fsutil::{sha256_file_hex, LandError, Landing};

use super::paths::{check_path, expected_sha256, is_mutable};
use super::{Relay, RelayError};

impl Relay {
    /// Puts a local copy of the content-addressed blob `path` into the cache (the agent's own
    /// verified install of it), so the relay need not fetch it again over the WAN. The bytes
    /// are hashed while copied and refused unless they match the hash in the name. Returns
    /// whether the cache now holds it from this copy (`false`: cached already, or `path` is
    /// not a content-addressed blob).
    ///
    /// # Errors
    /// A bad path, a mismatching file, or local I/O trouble.
    pub fn seed(&self, path: &str, from: &Path) -> Result<bool, RelayError> {
        check_path(path)?;
        let Some(want) = expected_sha256(path) else {
            return Ok(false);
        };
        let want = hex::decode(want).map_err(|_| RelayError::BadPath(path.to_owned()))?;
        let local = self.config.cache_dir.join(path);
        if local.is_file() {
            return Ok(false);
        }
        let io = |source| RelayError::Io {
            path: local.clone(),
            source,
        };
        let mut landing = Landing::start(&local, SEED_PREFIX).map_err(io)?;
        let mut src = std::fs::File::open(from).map_err(io)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = std::io::Read::read(&mut src, &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            landing.write(&buf[..n]).map_err(io)?;
        }
        match landing.finish(Some(&want)) {
            Ok(_) => self.mark_intact(&local),
            Err(LandError::Mismatch { .. }) => {
                return Err(RelayError::BadPath(format!(
                    "{path}: the local copy does not match the hash in its name"
                )))
            }
            Err(LandError::Io(e)) => return Err(io(e)),
        }
        self.evict();
        Ok(true)
    }

    /// Removes the cached content-addressed blobs below `prefix` (e.g. `upstream/targets/`)
    /// whose relay paths are not in `keep` (the blobs the current metadata names): no client
    /// can verify them any more. Returns how many files were removed.
    ///
    /// # Errors
    /// A bad prefix.
    pub fn prune_unnamed(
        &self,
        prefix: &str,
        keep: &std::collections::BTreeSet<String>,
    ) -> Result<usize, RelayError> {
        check_path(prefix.trim_end_matches('/'))?;
        let mut files = Vec::new();
        collect_files(&self.config.cache_dir.join(prefix), &mut files);
        let mut removed = 0;
        for (file, _, _) in files {
            let Ok(rel) = file.strip_prefix(&self.config.cache_dir) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            let name = rel.rsplit('/').next().unwrap_or(&rel);
            if name.starts_with('.') || expected_sha256(&rel).is_none() || keep.contains(&rel) {
                continue;
            }
            if std::fs::remove_file(&file).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Whether the cached file `local` (relay path `path`) may be served: anything without a
    /// hash in its name is; a content-addressed blob is when its content hashes to its name.
    /// The check is skipped while the file is unchanged since it last passed (same inode,
    /// length, modification and change times) unless `again`. A blob that fails is removed
    /// and counted as refused.
    pub(super) fn intact(&self, path: &str, local: &Path, again: bool) -> bool {
        let Some(want) = expected_sha256(path) else {
            return true;
        };
        let Some(stamp) = FileStamp::of(local) else {
            return false;
        };
        if !again
            && self
                .checked
                .lock()
                .is_ok_and(|c| c.get(local) == Some(&stamp))
        {
            return true;
        }
        let ok = sha256_file_hex(local).is_ok_and(|h| h == want);
        if let Ok(mut c) = self.checked.lock() {
            if ok {
                if c.len() >= 100_000 {
                    c.clear();
                }
                c.insert(local.to_owned(), stamp);
            } else {
                c.remove(local);
            }
        }
        if !ok {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path, "relay cache: blob does not match its name; dropped");
            let _ = std::fs::remove_file(local);
        }
        ok
    }

    /// Records that the cached blob `local`, as it is now, matches its name (it was hashed
    /// while it was written).
    pub(super) fn mark_intact(&self, local: &Path) {
        let Some(stamp) = FileStamp::of(local) else {
            return;
        };
        if let Ok(mut c) = self.checked.lock() {
            if c.len() >= 100_000 {
                c.clear();
            }
            c.insert(local.to_owned(), stamp);
        }
    }

    /// Hashes every cached blob again, whether or not its file changed, and drops those that
    /// do not match their names (the agent calls it after warming the cache, so a blob altered
    /// in place is repaired by the next warming at the latest). Returns how many were dropped.
    pub fn check_cache(&self) -> usize {
        let mut files = Vec::new();
        collect_files(&self.config.cache_dir, &mut files);
        let mut dropped = 0;
        for (file, _, _) in files {
            let Ok(rel) = file.strip_prefix(&self.config.cache_dir) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if !self.intact(&rel, &file, true) {
                dropped += 1;
            }
        }
        dropped
    }

    /// Removes the least recently written files until the cache fits its byte budget.
    pub(super) fn evict(&self) {
        let mut files = Vec::new();
        collect_files(&self.config.cache_dir, &mut files);
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let budget = self.cache_budget();
        if total <= budget {
            return;
        }
        files.sort_by_key(|f| f.2);
        for (path, size, _) in files {
            if total <= budget {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
    }
}

/// The prefix of a fetch's temporary file in the cache.
pub(super) const FETCH_PREFIX: &str = ".fetch-";
/// The prefix of a seed's temporary file in the cache.
pub(super) const SEED_PREFIX: &str = ".seed-";

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, u64, SystemTime)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            collect_files(&path, out);
        } else if !is_mutable(&path.to_string_lossy()) {
            out.push((
                path,
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
    }
}
