//! Durable file writes. Every file that lands goes through [`Landing`]: written to a temporary
//! (or resumable partial) file in the destination's directory, hashed while written, checked
//! against the SHA-256 it must have, `sync_all`, renamed into place, then the directory synced,
//! so a crash leaves either the old file or the complete new one, and a file that fails its
//! check never appears under its name.

use std::fs;
use std::io::{self, Read as _, Seek as _, Write};
use std::path::{Path, PathBuf};

/// Why a [`Landing`] was not put in place.
#[derive(Debug, thiserror::Error)]
pub enum LandError {
    /// The content is not what it must be; nothing was put in place.
    #[error("content has SHA-256 {} ({len} bytes), not the one expected", hex::encode(.sha256))]
    Mismatch {
        /// SHA-256 of what was written.
        sha256: Vec<u8>,
        /// Bytes written.
        len: u64,
    },
    /// Local I/O failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Where a [`Landing`]'s bytes wait until they are put in place.
#[derive(Debug)]
enum Pending {
    /// A temporary file, removed when the landing is dropped unfinished.
    Temp(tempfile::NamedTempFile),
    /// A named partial file, kept when the landing is dropped unfinished so that a later
    /// landing can resume it.
    Partial { path: PathBuf, file: fs::File },
}

/// One file being landed atomically at `dest`: see the module docs.
pub struct Landing {
    dest: PathBuf,
    pending: Pending,
    hash: aws_lc_rs::digest::Context,
    len: u64,
}

impl std::fmt::Debug for Landing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Landing")
            .field("dest", &self.dest)
            .field("pending", &self.pending)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Landing {
    /// Start landing `dest` through a new temporary file beside it whose name starts with
    /// `prefix` (the directory is created if missing).
    ///
    /// # Errors
    /// Any I/O error; `dest` without a parent directory is refused.
    pub fn start(dest: &Path, prefix: &str) -> io::Result<Self> {
        let dir = parent(dest)?;
        fs::create_dir_all(dir)?;
        let tmp = tempfile::Builder::new().prefix(prefix).tempfile_in(dir)?;
        Ok(Self::new(dest, Pending::Temp(tmp)))
    }

    /// Start landing `dest` through a new temporary file in `tmp_dir` (a private directory,
    /// best on the same file system as `dest`), so that a crash leaves its debris there rather
    /// than beside `dest` (in a served tree, say). Both directories are created if missing.
    ///
    /// # Errors
    /// Any I/O error; `dest` without a parent directory is refused.
    pub fn start_in(dest: &Path, tmp_dir: &Path, prefix: &str) -> io::Result<Self> {
        fs::create_dir_all(parent(dest)?)?;
        fs::create_dir_all(tmp_dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(tmp_dir)?;
        Ok(Self::new(dest, Pending::Temp(tmp)))
    }

    /// Start or resume landing `dest` through the named partial file `partial` (beside it or
    /// in a private directory; both are created if missing): its first `keep` bytes are kept and hashed, anything after them is cut. A
    /// landing dropped unfinished keeps the partial file for the next one.
    ///
    /// # Errors
    /// Any I/O error, including `partial` being shorter than `keep`.
    pub fn resume(dest: &Path, partial: &Path, keep: u64) -> io::Result<Self> {
        fs::create_dir_all(parent(dest)?)?;
        fs::create_dir_all(parent(partial)?)?;
        let mut file = fs::OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(partial)?;
        file.set_len(keep)?;
        let mut landing = Self::new(
            dest,
            Pending::Partial {
                path: partial.to_owned(),
                file: file.try_clone()?,
            },
        );
        let mut buf = vec![0u8; 1 << 16];
        let mut left = keep;
        while left > 0 {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "partial file shorter than its kept length",
                ));
            }
            landing.hash.update(&buf[..n]);
            left = left.saturating_sub(n as u64);
        }
        landing.len = keep;
        file.seek(io::SeekFrom::End(0))?;
        Ok(landing)
    }

    fn new(dest: &Path, pending: Pending) -> Self {
        Self {
            dest: dest.to_owned(),
            pending,
            hash: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            len: 0,
        }
    }

    /// Where the file lands.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Bytes written so far (with a resumed partial file's kept bytes).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn file(&self) -> &fs::File {
        match &self.pending {
            Pending::Temp(t) => t.as_file(),
            Pending::Partial { file, .. } => file,
        }
    }

    /// Append `chunk`, hashing it.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hash.update(chunk);
        self.len = self.len.saturating_add(chunk.len() as u64);
        let mut f = self.file();
        f.write_all(chunk)
    }

    /// Make what was written so far durable (a partial file kept for a later resume).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn sync(&self) -> io::Result<()> {
        self.file().sync_all()
    }

    /// SHA-256 of what was written so far (a resumed partial file's kept bytes included).
    pub fn sha256(&self) -> Vec<u8> {
        self.hash.clone().finish().as_ref().to_vec()
    }

    /// Set the pending file's permissions before it lands (an executable lands executable:
    /// there is no moment when the destination exists without them).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn set_permissions(&self, perm: fs::Permissions) -> io::Result<()> {
        self.file().set_permissions(perm)
    }

    /// Give up: the pending file is removed, even a partial one.
    pub fn discard(self) {
        if let Pending::Partial { path, .. } = &self.pending {
            let _ = fs::remove_file(path);
        }
    }

    /// Put the file in place when its SHA-256 is `want` (any content when `None`): sync it,
    /// rename it to its destination, sync the directory. Returns the destination.
    ///
    /// # Errors
    /// [`LandError::Mismatch`] (the pending file is then removed) or [`LandError::Io`].
    pub fn finish(self, want: Option<&[u8]>) -> Result<PathBuf, LandError> {
        let Landing {
            dest,
            pending,
            hash,
            len,
        } = self;
        let sha256 = hash.finish();
        if want.is_some_and(|w| w != sha256.as_ref()) {
            if let Pending::Partial { path, .. } = &pending {
                let _ = fs::remove_file(path);
            }
            return Err(LandError::Mismatch {
                sha256: sha256.as_ref().to_vec(),
                len,
            });
        }
        match pending {
            Pending::Temp(tmp) => {
                tmp.as_file().sync_all()?;
                if let Err(e) = tmp.persist(&dest) {
                    if !crosses_devices(&e.error) {
                        return Err(LandError::Io(e.error));
                    }
                    // `e.file` is removed when dropped, after the copy.
                    copy_into(e.file.path(), &dest)?;
                }
            }
            Pending::Partial { path, file } => {
                file.sync_all()?;
                drop(file);
                match fs::rename(&path, &dest) {
                    Ok(()) => {}
                    Err(e) if crosses_devices(&e) => {
                        copy_into(&path, &dest)?;
                        let _ = fs::remove_file(&path);
                    }
                    Err(e) => return Err(LandError::Io(e)),
                }
            }
        }
        sync_dir(parent(&dest)?)?;
        Ok(dest)
    }
}

/// Whether a rename failed because its two paths are on different file systems (`EXDEV`).
fn crosses_devices(e: &io::Error) -> bool {
    e.raw_os_error() == Some(18)
}

/// Copy `from` to `dest` atomically through a temporary file beside `dest` (the fallback when
/// a private temporary directory is on another file system than `dest`).
fn copy_into(from: &Path, dest: &Path) -> io::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(parent(dest)?)?;
    fs::copy(from, tmp.path())?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))
}

/// Write `bytes` to `path` atomically and durably.
///
/// # Errors
/// Any I/O error; the old content of `path`, if any, is then untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut landing = Landing::start(path, ".tmp-")?;
    landing.write(bytes)?;
    match landing.finish(None) {
        Ok(_) => Ok(()),
        Err(LandError::Io(e)) => Err(e),
        Err(e @ LandError::Mismatch { .. }) => Err(io::Error::other(e)),
    }
}

/// Write `bytes` to `path` atomically and durably through a temporary file in the private
/// directory `tmp_dir` (see [`Landing::start_in`]).
///
/// # Errors
/// Any I/O error; the old content of `path`, if any, is then untouched.
pub fn write_atomic_in(path: &Path, bytes: &[u8], tmp_dir: &Path) -> io::Result<()> {
    let mut landing = Landing::start_in(path, tmp_dir, ".tmp-")?;
    landing.write(bytes)?;
    match landing.finish(None) {
        Ok(_) => Ok(()),
        Err(LandError::Io(e)) => Err(e),
        Err(e @ LandError::Mismatch { .. }) => Err(io::Error::other(e)),
    }
}

/// Remove, below `dir` (recursively, not following symbolic links), every file whose name
/// starts with one of `prefixes`: the temporary files a killed process left behind. Only call
/// it where no other process may be writing such files (at start-up, under a lock). Returns
/// how many were removed; a directory that cannot be read is skipped.
pub fn remove_debris(dir: &Path, prefixes: &[&str]) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.filter_map(Result::ok) {
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir() {
            removed += remove_debris(&path, prefixes);
        } else if prefixes
            .iter()
            .any(|p| e.file_name().to_string_lossy().starts_with(p))
            && fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Remove the directories directly in `dir` whose names start with `prefix` (scratch
/// directories of an interrupted operation), with what they hold. Returns how many.
pub fn remove_dirs_with_prefix(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| fs::remove_dir_all(e.path()).is_ok())
        .count()
}

/// Remove the files directly in `dir` last written more than `max_age` before `now` (stale
/// partial downloads nobody resumed). Returns how many were removed.
pub fn remove_older_than(
    dir: &Path,
    max_age: std::time::Duration,
    now: std::time::SystemTime,
) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.filter_map(Result::ok) {
        let Ok(meta) = e.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if meta.is_file() && old && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Write `bytes` to `path` only when no file is there yet (content-addressed files never change).
///
/// # Errors
/// Any I/O error.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if path.is_file() {
        return Ok(());
    }
    write_atomic(path, bytes)
}

/// `fsync` a directory so a rename inside it is durable.
///
/// # Errors
/// Any I/O error from opening or syncing the directory.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// Lowercase hex SHA-256 of the file at `path`, read in blocks.
///
/// # Errors
/// Any I/O error.
pub fn sha256_file_hex(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish()))
}

/// An exclusive lock on a repository directory: a `.lock` file created with `O_EXCL` holding
/// the owner's process id. A lock whose owner process is gone (a crash) is taken over.
/// Released on drop.
#[derive(Debug)]
pub struct DirLock {
    path: std::path::PathBuf,
}

impl DirLock {
    /// Take the lock in `dir`; `Ok(None)` when a live process holds it.
    ///
    /// # Errors
    /// I/O errors other than the lock existing.
    pub fn try_acquire(dir: &Path) -> io::Result<Option<DirLock>> {
        let path = dir.join(".lock");
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id())?;
                    return Ok(Some(DirLock { path }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(&path).unwrap_or_default();
                    let alive = owner
                        .trim()
                        .parse::<u32>()
                        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                    if alive {
                        return Ok(None);
                    }
                    // The owner died mid-operation: its lock is stale.
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sha(bytes: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
            .as_ref()
            .to_vec()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    // A landing with the right hash appears whole under its name; a wrong one leaves nothing,
    // and the old file stays.
    #[test]
    fn lands_only_what_matches() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/file");
        let mut l = Landing::start(&dest, ".t-").unwrap();
        l.write(b"hello ").unwrap();
        l.write(b"world").unwrap();
        assert_eq!(l.finish(Some(&sha(b"hello world"))).unwrap(), dest);
        assert_eq!(fs::read(&dest).unwrap(), b"hello world");

        let mut l = Landing::start(&dest, ".t-").unwrap();
        l.write(b"evil").unwrap();
        let err = l.finish(Some(&sha(b"good"))).unwrap_err();
        assert!(matches!(err, LandError::Mismatch { len: 4, .. }), "{err}");
        assert_eq!(fs::read(&dest).unwrap(), b"hello world");
        assert_eq!(names(&dir.path().join("sub")), vec!["file".to_owned()]);
    }

    // A partial file survives a landing dropped unfinished; the next one resumes it, hashing the
    // kept bytes with the rest; a mismatch removes it.
    #[test]
    fn partial_files_resume() {
        let dir = tempfile::tempdir().unwrap();
        let (dest, partial) = (dir.path().join("f"), dir.path().join(".partial-f"));
        let mut l = Landing::resume(&dest, &partial, 0).unwrap();
        l.write(b"abc").unwrap();
        l.sync().unwrap();
        drop(l);
        assert_eq!(fs::read(&partial).unwrap(), b"abc");
        let mut l = Landing::resume(&dest, &partial, 3).unwrap();
        assert_eq!(l.len(), 3);
        l.write(b"def").unwrap();
        l.finish(Some(&sha(b"abcdef"))).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"abcdef");
        assert!(!partial.exists());

        fs::write(&partial, b"xyz").unwrap();
        let l = Landing::resume(&dest, &partial, 2).unwrap();
        assert!(l.finish(Some(&sha(b"xy!"))).is_err());
        assert!(!partial.exists());
        assert_eq!(fs::read(&dest).unwrap(), b"abcdef");
    }
}
