//! Repository serving: the directory `<data-dir>/repo` (or `--repo-dir`) at `/repo/…`,
//! public and read-only. Every answer has a strong `ETag` (modification time and length, as
//! nginx does) and honours `If-None-Match` (304). Only plain relative paths are looked up;
//! anything else (`..`, absolute, undecodable, an empty segment as in `/repo//x`, a segment
//! over 255 bytes) is 404, and so is any path through a symbolic link: `/repo/` never leaves
//! its directory (`docs/operating.md#limits`), except through the operator's links of `site`
//! and `upstream` to their directories.
//!
//! Small whole files (up to [`CACHED_FILE`]) are answered from a memory [`Cache`]: each
//! request `stat`s the path on its own thread (a microsecond system call for a hot inode,
//! as nginx does) and the cached bytes are used only while device, inode, length,
//! modification and change times are all unchanged, so a file replaced by an atomic rename
//! or rewritten in place is read again. A miss opens the file, `fstat`s the descriptor and
//! reads it whole from that descriptor, so the `ETag` and the bytes come from the same
//! version. Each thread also keeps its own copy of the entries it served (up to
//! `LOCAL_BUDGET`, checked against the same version): a hit there takes no lock and
//! touches no reference count another core writes, as nginx's independent workers do. Large
//! whole files are streamed from the descriptor that was `fstat`ed, in 1 MiB
//! chunks read on the blocking pool straight into the buffers sent. Directories and `Range`
//! requests go to `tower-http`'s `ServeDir` (ranges, `Last-Modified`).
//!
//! The upstream's verified copy is written under `upstream/` by [`crate::mirror`]. The server's
//! own site repository ([`crate::site`]) lives outside the repository directory; `/repo/site/…`
//! is looked up in its served tree ([`Served::site`]) under the same rules.
//!
//! `path`: which request paths may be looked up, and where; `cache`: the small-file cache
//! and the lookup; `stream`: large files sent in chunks; `whole`: the whole-file answer of
//! the connection front's fast path; `announced`: the timestamp versions clients are told.

mod announced;
mod cache;
mod path;
mod stream;
mod whole;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeDir;

pub(crate) use announced::signed_version;
pub use cache::{Cache, CACHED_FILE};
pub(crate) use stream::file_chunks;
pub(crate) use whole::{whole, Whole, WholeBody};

use cache::{look, Content, Found};
use path::{relative, resolve, without_links};
use whole::{content_type, matches};

/// `ServeDir` (ranges) reads in chunks of this size, each one trip to the blocking pool (its
/// default, 64 KiB, makes 320 trips for 20 MiB). Memory in flight is a chunk or two per
/// response being streamed.
const STREAM_CHUNK: usize = 256 * 1024;

/// What `/repo/` serves from: the repository directory and the small-file cache.
#[derive(Debug, Clone)]
pub struct Served {
    /// The repository directory.
    pub dir: PathBuf,
    /// The served tree of the server's own site repository, answering `/repo/site/…`; `None`
    /// when the operator linked `site` into the repository directory.
    pub site: Option<PathBuf>,
    /// Small files in memory, checked against the file on every request.
    pub cache: Arc<Cache>,
}

/// `GET|HEAD /repo/{*path}`.
#[utoipa::path(get, path = "/repo/{path}", tag = "repository",
    summary = "Repository files (TUF metadata and targets) with Range, ETag/If-None-Match, Content-Length",
    params(("path" = String, Path, description = "The file's path under the repository directory")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = String),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = String),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 404, description = "No such file"),
        (status = 416, description = "The range is not satisfiable")))]
pub async fn serve(State(st): State<Served>, mut req: Request) -> Response {
    let full_path = req.uri().path().strip_prefix("/repo").unwrap_or("/");
    let Some(rel) = relative(full_path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (base, rel, path) = resolve(&st, full_path, rel);
    // A few `lstat`s of hot inodes, microseconds: on this thread, as `look` `stat`s, rather
    // than a trip to the blocking pool per request.
    if !without_links(&base, &rel) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let whole = !req.headers().contains_key(RANGE);
    let found = look(&st.cache, base.join(rel), whole);
    if let Some(f) = &found {
        let hit = req
            .headers()
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches(v, f.etag.as_bytes()));
        if hit {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            resp.headers_mut().insert(ETAG, f.etag.clone());
            return resp;
        }
    }
    let head = req.method() == Method::HEAD;
    let mut range_etag = None;
    let answer = match found {
        Some(Found {
            etag,
            content: Content::Bytes(bytes),
        }) => {
            let len = bytes.len() as u64;
            Some((
                etag,
                len,
                if head {
                    Body::empty()
                } else {
                    Body::from(bytes)
                },
            ))
        }
        Some(Found {
            etag,
            content: Content::File(file, len),
        }) => Some((
            etag,
            len,
            if head {
                Body::empty()
            } else {
                Body::from_stream(file_chunks(file, len))
            },
        )),
        Some(Found {
            etag,
            content: Content::Elsewhere,
        }) => {
            range_etag = Some(etag);
            None
        }
        None => None,
    };
    if let Some((etag, len, body)) = answer {
        let mut resp = Response::new(body);
        let h = resp.headers_mut();
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(ETAG, etag);
        return resp;
    }
    let uri = match req.uri().query() {
        Some(q) => format!("{path}?{q}").parse::<Uri>(),
        None => path.parse::<Uri>(),
    };
    match uri {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    let dir = ServeDir::new(&base).with_buf_chunk_size(STREAM_CHUNK);
    let mut resp = match dir.oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(never) => match never {},
    };
    if resp.status().is_server_error() {
        // `ServeDir` answers 500 for file-system errors (a name too long, a component that
        // is not a directory): for a client it is simply not there.
        return StatusCode::NOT_FOUND.into_response();
    }
    let ok = matches!(resp.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT);
    if let (Some(tag), true) = (range_etag, ok) {
        resp.headers_mut().insert(ETAG, tag);
    }
    resp
}

#[cfg(test)]
mod tests;
