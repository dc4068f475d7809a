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

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}
