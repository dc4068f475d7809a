//! Saving a target: stream it from one source into a temp file inside the destination directory,
//! refuse it past its signed length, check its SHA-256, `sync_all`, then rename into place.
//! Nothing is ever written outside the destination directory: the final name is a single
//! checked path segment.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tough::Transport;
use url::Url;

use crate::fsutil::sync_dir;
use crate::transport::{find_source_failure, SourceFailure, SourceTransport};

/// Why saving a target failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The source failed (not found, too slow, broken...).
    #[error("{0}")]
    Source(SourceFailure),
    /// More bytes arrived than the signed length.
    #[error("{url}: longer than its signed length {length}")]
    TooLong {
        /// The URL.
        url: String,
        /// The signed length.
        length: u64,
    },
    /// The content does not match the signed length or hash.
    #[error("{url}: content does not match the signed hash")]
    HashMismatch {
        /// The URL.
        url: String,
    },
    /// The destination name is not a single safe path segment.
    #[error("refusing unsafe destination name `{0}`")]
    UnsafeName(String),
    /// Writing locally failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another transport error without a recognisable cause.
    #[error("transport: {0}")]
    Transport(String),
}

impl SaveError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SaveError::Source(f) => f.code(),
            SaveError::TooLong { .. } => "save.too_long",
            SaveError::HashMismatch { .. } => "save.hash_mismatch",
            SaveError::UnsafeName(_) => "save.unsafe_name",
            SaveError::Io { .. } => "save.io",
            SaveError::Transport(_) => "save.transport",
        }
    }
}

fn transport_err(e: &tough::TransportError) -> SaveError {
    match find_source_failure(e) {
        Some(f) => SaveError::Source(f),
        None => SaveError::Transport(e.to_string()),
    }
}

/// Whether `name` is a single path segment that cannot escape a directory.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1
}

/// Fetch `url` into memory, refusing more than `length` bytes or a hash other than `sha256`.
///
/// # Errors
/// [`SaveError`] describing the first problem.
pub async fn fetch_verified(
    transport: &dyn Transport,
    url: Url,
    length: u64,
    sha256: &[u8],
) -> Result<Vec<u8>, SaveError> {
    let mut out = Vec::new();
    fetch_into(transport, url, length, sha256, |chunk| {
        out.extend_from_slice(chunk);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Fetch `url` and check its length and hash without keeping it.
///
/// # Errors
/// [`SaveError`] describing the first problem.
pub async fn check_remote(
    transport: &dyn Transport,
    url: Url,
    length: u64,
    sha256: &[u8],
) -> Result<(), SaveError> {
    fetch_into(transport, url, length, sha256, |_| Ok(())).await
}

async fn fetch_into(
    transport: &dyn Transport,
    url: Url,
    length: u64,
    sha256: &[u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), SaveError>,
) -> Result<(), SaveError> {
    let url_s = url.to_string();
    let mut stream = transport.fetch(url).await.map_err(|e| transport_err(&e))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut got: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport_err(&e))?;
        got = got.saturating_add(chunk.len() as u64);
        if got > length {
            return Err(SaveError::TooLong { url: url_s, length });
        }
        ctx.update(&chunk);
        sink(&chunk)?;
    }
    if got != length || ctx.finish().as_ref() != sha256 {
        return Err(SaveError::HashMismatch { url: url_s });
    }
    Ok(())
}

/// Fetch `url` and save it as `dir/file_name` once its length and hash are verified; the file
/// appears atomically or not at all.
///
/// # Errors
/// [`SaveError`]; on error nothing new is left in `dir`.
pub async fn save_verified(
    transport: &dyn Transport,
    url: Url,
    length: u64,
    sha256: &[u8],
    dir: &Path,
    file_name: &str,
) -> Result<PathBuf, SaveError> {
    if !is_safe_file_name(file_name) {
        return Err(SaveError::UnsafeName(file_name.to_owned()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SaveError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    fetch_into(transport, url, length, sha256, |chunk| {
        tmp.write_all(chunk).map_err(io(dir))
    })
    .await?;
    let dest = dir.join(file_name);
    tmp.as_file().sync_all().map_err(io(&dest))?;
    tmp.persist(&dest).map_err(|e| SaveError::Io {
        path: dest.clone(),
        source: e.error,
    })?;
    sync_dir(dir).map_err(io(dir))?;
    Ok(dest)
}

/// Like [`save_verified`], but resumable: bytes are kept in `dir/.partial-SHA256` when the
/// transfer breaks, and the next call (from any source) asks only for the rest with an HTTP range
/// request. The partial file is hashed with the rest before anything is renamed into place; if a
/// resumed file fails its hash it is discarded and fetched once more from the start, so a bad
/// partial file is never blamed on the source.
///
/// # Errors
/// [`SaveError`]; a broken transfer leaves only the `.partial-` file behind.
pub async fn save_resumable(
    transport: &SourceTransport,
    url: Url,
    length: u64,
    sha256: &[u8],
    dir: &Path,
    file_name: &str,
) -> Result<PathBuf, SaveError> {
    if !is_safe_file_name(file_name) {
        return Err(SaveError::UnsafeName(file_name.to_owned()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SaveError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let partial = dir.join(format!(".partial-{}", hex::encode(sha256)));
    let dest = dir.join(file_name);
    for _ in 0..2 {
        let resumed = resume_into(transport, url.clone(), length, &partial).await?;
        let (len, digest) = crate::fsutil::sha256_file(&partial).map_err(io(&partial))?;
        if len == length && digest == sha256 {
            std::fs::rename(&partial, &dest).map_err(io(&dest))?;
            sync_dir(dir).map_err(io(dir))?;
            return Ok(dest);
        }
        let _ = std::fs::remove_file(&partial);
        if !resumed {
            return Err(SaveError::HashMismatch {
                url: url.to_string(),
            });
        }
    }
    Err(SaveError::HashMismatch {
        url: url.to_string(),
    })
}

/// Append the rest of `url` to `partial`; returns whether an existing prefix was kept.
async fn resume_into(
    transport: &SourceTransport,
    url: Url,
    length: u64,
    partial: &Path,
) -> Result<bool, SaveError> {
    let io = |source| SaveError::Io {
        path: partial.to_owned(),
        source,
    };
    let mut have = std::fs::metadata(partial).map_or(0, |m| m.len());
    if have >= length {
        let _ = std::fs::remove_file(partial);
        have = 0;
    }
    let url_s = url.to_string();
    let (mut stream, resumed) = transport
        .fetch_from(url, have)
        .await
        .map_err(|e| transport_err(&e))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed)
        .write(true)
        .truncate(!resumed)
        .open(partial)
        .map_err(io)?;
    let mut got = if resumed { have } else { 0 };
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // Keep what arrived for the next attempt; it is hash-checked before use.
                file.sync_all().map_err(io)?;
                return Err(transport_err(&e));
            }
        };
        got = got.saturating_add(chunk.len() as u64);
        if got > length {
            drop(file);
            let _ = std::fs::remove_file(partial);
            return Err(SaveError::TooLong { url: url_s, length });
        }
        file.write_all(&chunk).map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    Ok(resumed)
}

/// Write verified bytes as `dir/file_name` atomically.
///
/// # Errors
/// [`SaveError::UnsafeName`] or [`SaveError::Io`].
pub fn write_verified(bytes: &[u8], dir: &Path, file_name: &str) -> Result<PathBuf, SaveError> {
    if !is_safe_file_name(file_name) {
        return Err(SaveError::UnsafeName(file_name.to_owned()));
    }
    let dest = dir.join(file_name);
    crate::fsutil::write_atomic(&dest, bytes).map_err(|source| SaveError::Io {
        path: dest.clone(),
        source,
    })?;
    Ok(dest)
}
