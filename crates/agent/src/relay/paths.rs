//! What a repository path says: whether it is safe to serve, mutable, a timestamp (and of
//! which trust domain), a versioned root, or a content-addressed blob (and its hash).

use std::path::Path;

use cascade_core::TrustDomain;

use super::RelayError;

/// Only plain relative paths of safe segments: no `..`, no dot files, no empty segments.
pub(super) fn check_path(path: &str) -> Result<(), RelayError> {
    let ok = !path.is_empty()
        && path.split('/').count() <= 8
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg.len() <= 200
                && seg.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'~' | b'-')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(RelayError::BadPath(path.to_owned()))
    }
}

/// `timestamp.json` (and an unversioned `root.json`) change in place; everything else that
/// TUF serves has a versioned or content-addressed name.
pub(super) fn is_mutable(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or(path);
    last == "timestamp.json" || last == "root.json"
}

/// The trust domain of `DOMAIN/metadata/timestamp.json`; `None` for any other path.
pub(super) fn timestamp_domain(path: &str) -> Option<TrustDomain> {
    let (domain, rest) = path.split_once('/')?;
    (rest == "metadata/timestamp.json")
        .then(|| domain.parse().ok())
        .flatten()
}

/// The `signed.version` of the cached `timestamp.json` at `local` (a few hundred bytes).
pub(super) fn timestamp_version(local: &Path) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Signed {
        version: u64,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        signed: Signed,
    }
    let bytes = std::fs::read(local).ok()?;
    serde_json::from_slice::<Metadata>(&bytes)
        .ok()
        .map(|m| m.signed.version)
}

/// A versioned root, `…/metadata/N.root.json`: what TUF clients probe for on every update.
pub(super) fn is_root_probe(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or(path);
    last.strip_suffix(".root.json")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The SHA-256 a content-addressed target blob's name promises (`…/targets/…/HEX.FILE`).
pub(super) fn expected_sha256(path: &str) -> Option<&str> {
    if !path.split('/').any(|s| s == "targets") {
        return None;
    }
    let last = path.rsplit('/').next()?;
    let (hex, _) = last.split_once('.')?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}
