//! The whole-file answer the connection front gives without the router (`crate::front`),
//! under exactly the rules of [`serve`], and the header helpers both share.

use std::fs::File;
use std::path::Path;

use axum::body::Bytes;
use axum::http::HeaderValue;

use super::cache::{look, Content};
use super::path::{relative, resolve, without_links};
use super::Served;

pub(super) fn matches(header: &str, etag: &[u8]) -> bool {
    header.trim() == "*"
        || header
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/").as_bytes() == etag)
}

pub(super) fn content_type(path: &str) -> &'static str {
    match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A whole-file answer decided without the router: 200 with the bytes or the open file, or
/// 304 (see [`whole`]).
pub(crate) enum Whole {
    /// `If-None-Match` matched: 304 with this `ETag`.
    NotModified(HeaderValue),
    /// 200: the whole file.
    File {
        /// Its strong `ETag`.
        etag: HeaderValue,
        /// Its length (`Content-Length`).
        len: u64,
        /// Its `Content-Type`.
        content_type: &'static str,
        /// Its bytes.
        body: WholeBody,
    },
}

/// Where a [`Whole`] answer's bytes are.
pub(crate) enum WholeBody {
    /// A small file, from the [`Cache`](super::Cache).
    Bytes(Bytes),
    /// A large file: this descriptor, `fstat`ed for the `ETag` and length (sent by
    /// `sendfile` on plain HTTP).
    File(File),
}

/// The answer to `GET`/`HEAD /repo{full_path}` (no `Range`) when it is a regular file that
/// may be served, under exactly the rules of [`serve`]: plain relative path, no symbolic link
/// on the way, a strong `ETag` and `If-None-Match`. `None` for anything else (missing, a
/// directory, a link, a bad path): the router answers those ([`serve`]), so the fast path of
/// [`crate::front`] never decides a refusal on its own.
///
/// [`serve`]: super::serve
pub(crate) fn whole(st: &Served, full_path: &str, if_none_match: Option<&[u8]>) -> Option<Whole> {
    let rel = relative(full_path)?;
    let (base, rel, path) = resolve(st, full_path, rel);
    if rel.as_os_str().is_empty() || !without_links(&base, &rel) {
        return None;
    }
    let found = look(&st.cache, base.join(rel), true)?;
    let hit = if_none_match
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(|v| matches(v, found.etag.as_bytes()));
    if hit {
        return Some(Whole::NotModified(found.etag));
    }
    let (len, body) = match found.content {
        Content::Bytes(b) => (b.len() as u64, WholeBody::Bytes(b)),
        Content::File(f, len) => (len, WholeBody::File(f)),
        Content::Elsewhere => return None,
    };
    Some(Whole::File {
        etag: found.etag,
        len,
        content_type: content_type(path),
        body,
    })
}
