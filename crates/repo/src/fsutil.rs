//! Durable file writes: temp file in the same directory, `sync_all`, rename, then sync the
//! directory, so a crash leaves either the old file or the complete new one.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Write `bytes` to `path` atomically and durably.
///
/// # Errors
/// Any I/O error; the old content of `path`, if any, is then untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
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

/// Length and SHA-256 of the file at `path`, read in chunks (files may be large).
///
/// # Errors
/// Any I/O error.
pub fn sha256_file(path: &Path) -> io::Result<(u64, Vec<u8>)> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, ctx.finish().as_ref().to_vec()))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
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
