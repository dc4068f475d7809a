//! This replica's local files: what is known of each (identity and SHA-256, hashed again
//! only when the file changed), landing a file checked against its SHA-256, and walking a
//! directory with paths kept inside it.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use super::trees::Entry;
use super::{io, Shared, SharedError};

/// What is known of a local file: its identity on disk and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Known {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    sha256: String,
}

impl Shared {
    /// Whether `path` holds the bytes of `sha256` (by what is known of it, else by hashing).
    pub(super) async fn has(&self, path: &Path, sha256: &str) -> bool {
        match self.known(path).await {
            Ok(Some(k)) => k.sha256 == sha256,
            _ => false,
        }
    }

    /// Lands `bytes` at `dest` through the private temporary directory, checked against
    /// `sha256`, and remembers it.
    pub(super) fn land(&self, dest: &Path, bytes: &[u8], sha256: &str) -> Result<(), SharedError> {
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
    pub(super) async fn scan(&self, dir: &Path) -> Result<Vec<(PathBuf, Entry)>, SharedError> {
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

/// `rest` as a relative path of normal components only.
pub(super) fn safe_relative(rest: &str) -> Result<PathBuf, SharedError> {
    let p = Path::new(rest);
    let ok = !rest.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p.to_owned())
    } else {
        Err(SharedError::UnsafePath(rest.to_owned()))
    }
}

/// `path` under `dir` with `/` separators.
pub(super) fn relative(dir: &Path, path: &Path) -> String {
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
pub(super) fn walk(dir: &Path) -> Result<BTreeSet<PathBuf>, SharedError> {
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
