//! Saving a target: stream it from one source into a [`Landing`] inside the destination
//! directory, refuse it past its signed length, and put it in place only when its SHA-256
//! matches.
//! Nothing is ever written outside the destination directory: the final name is a single
//! checked path segment.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use tough::Transport;
use url::Url;

use crate::fsutil::{LandError, Landing};
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
    let url_s = url.to_string();
    fetch_into(transport, url, length, |chunk| {
        out.extend_from_slice(chunk);
        Ok(())
    })
    .await?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &out);
    if out.len() as u64 != length || digest.as_ref() != sha256 {
        return Err(SaveError::HashMismatch { url: url_s });
    }
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
    let url_s = url.to_string();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let got = fetch_into(transport, url, length, |chunk| {
        ctx.update(chunk);
        Ok(())
    })
    .await?;
    if got != length || ctx.finish().as_ref() != sha256 {
        return Err(SaveError::HashMismatch { url: url_s });
    }
    Ok(())
}

/// Stream `url` into `sink`, refusing more than `length` bytes; returns the bytes received.
async fn fetch_into(
    transport: &dyn Transport,
    url: Url,
    length: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), SaveError>,
) -> Result<u64, SaveError> {
    let url_s = url.to_string();
    let mut stream = transport.fetch(url).await.map_err(|e| transport_err(&e))?;
    let mut got: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport_err(&e))?;
        got = got.saturating_add(chunk.len() as u64);
        if got > length {
            return Err(SaveError::TooLong { url: url_s, length });
        }
        sink(&chunk)?;
    }
    Ok(got)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SaveError + '_ {
    move |source| SaveError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Put a [`Landing`] in place when it holds exactly `length` bytes hashing to `sha256`.
fn land(landing: Landing, url: &Url, length: u64, sha256: &[u8]) -> Result<PathBuf, SaveError> {
    if landing.len() != length {
        landing.discard();
        return Err(SaveError::HashMismatch {
            url: url.to_string(),
        });
    }
    let dest = landing.dest().to_owned();
    landing.finish(Some(sha256)).map_err(|e| match e {
        LandError::Mismatch { .. } => SaveError::HashMismatch {
            url: url.to_string(),
        },
        LandError::Io(source) => SaveError::Io { path: dest, source },
    })
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
    let dest = dir.join(file_name);
    let mut landing = Landing::start(&dest, ".partial-").map_err(io(dir))?;
    fetch_into(transport, url.clone(), length, |chunk| {
        landing.write(chunk).map_err(io(dir))
    })
    .await?;
    land(landing, &url, length, sha256)
}

/// Like [`save_verified`], but resumable: bytes are kept in `partial_dir/.partial-SHA256` when the
/// transfer breaks (content-addressed: the signed hash names it, whichever source sent the
/// bytes), and the next call (from any source, in this process or after a restart) asks only
/// for the rest with an HTTP range request (`docs/operating.md#resumable-downloads`). The
/// partial file is hashed with the rest before anything is renamed into place; if a resumed
/// file fails its hash it is discarded and fetched once more from the start, so a bad partial
/// file is never blamed on the source. `partial_dir` is best a private directory on the same
/// file system as `dir` (the file is renamed from it).
///
/// # Errors
/// [`SaveError`]; a broken transfer leaves only the partial file behind.
pub async fn save_resumable(
    transport: &SourceTransport,
    url: Url,
    length: u64,
    sha256: &[u8],
    (dir, file_name): (&Path, &str),
    partial_dir: &Path,
) -> Result<PathBuf, SaveError> {
    if !is_safe_file_name(file_name) {
        return Err(SaveError::UnsafeName(file_name.to_owned()));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let partial = partial_path(partial_dir, sha256);
    let dest = dir.join(file_name);
    for _ in 0..2 {
        let (landing, resumed) =
            resume_into(transport, url.clone(), length, &dest, &partial).await?;
        match land(landing, &url, length, sha256) {
            Err(SaveError::HashMismatch { .. }) if resumed => {}
            done => return done,
        }
    }
    Err(SaveError::HashMismatch {
        url: url.to_string(),
    })
}

/// The partial file of the content with this SHA-256 in `partial_dir`.
pub fn partial_path(partial_dir: &Path, sha256: &[u8]) -> PathBuf {
    partial_dir.join(format!(".partial-{}", hex::encode(sha256)))
}

/// Append the rest of `url` to `partial`; returns the landing and whether an existing prefix
/// was kept.
async fn resume_into(
    transport: &SourceTransport,
    url: Url,
    length: u64,
    dest: &Path,
    partial: &Path,
) -> Result<(Landing, bool), SaveError> {
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
    let keep = if resumed { have } else { 0 };
    let mut landing = Landing::resume(dest, partial, keep).map_err(io(partial))?;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // Keep what arrived for the next attempt; it is hash-checked before use.
                landing.sync().map_err(io(partial))?;
                return Err(transport_err(&e));
            }
        };
        if landing.len().saturating_add(chunk.len() as u64) > length {
            landing.discard();
            return Err(SaveError::TooLong { url: url_s, length });
        }
        landing.write(&chunk).map_err(io(partial))?;
    }
    Ok((landing, resumed))
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
    crate::fsutil::write_atomic(&dest, bytes).map_err(io(&dest))?;
    Ok(dest)
}
