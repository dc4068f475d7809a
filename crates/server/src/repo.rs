//! Repository serving: the directory `<data-dir>/repo` (or `--repo-dir`) at `/repo/…`,
//! public and read-only. Every answer has a strong `ETag` (modification time and length, as
//! nginx does) and honours `If-None-Match` (304). Small whole files are read in one blocking
//! call and answered directly; large files and `Range` requests go to `tower-http`'s
//! `ServeDir` (streaming, ranges, `Last-Modified`). Only plain relative paths are looked up.
//!
//! The upstream's verified copy is written under `upstream/` by [`crate::mirror`].

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::state::AppState;

/// The relative file path for a `/repo/…` request path, if it is a plain path.
fn relative(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    let p = Path::new(decoded.trim_start_matches('/'));
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| p.to_path_buf())
}

/// Files up to this size without a `Range` are read whole in one blocking call and answered
/// directly; larger files and ranges go through `ServeDir` (streamed, ranges).
const SMALL_FILE: u64 = 256 * 1024;

/// A file's metadata and, when small, its bytes (one trip to the blocking pool).
struct Found {
    etag: String,
    len: u64,
    bytes: Option<Vec<u8>>,
}

fn look(full: &Path, read_small: bool) -> Option<Found> {
    let meta = std::fs::metadata(full).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    let etag = format!(
        "\"{:x}.{:x}-{:x}\"",
        mtime.as_secs(),
        mtime.subsec_nanos(),
        meta.len()
    );
    let bytes = if read_small && meta.len() <= SMALL_FILE {
        std::fs::read(full).ok()
    } else {
        None
    };
    Some(Found {
        etag,
        len: meta.len(),
        bytes,
    })
}

fn matches(header: &str, etag: &str) -> bool {
    header.trim() == "*"
        || header
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag)
}

fn content_type(path: &str) -> &'static str {
    match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET|HEAD /repo/{*path}`.
pub async fn serve(State(st): State<AppState>, mut req: Request) -> Response {
    let path = req
        .uri()
        .path()
        .strip_prefix("/repo")
        .unwrap_or("/")
        .to_owned();
    let whole = !req.headers().contains_key(RANGE);
    let found = match relative(&path) {
        Some(rel) => {
            let full = st.repo_dir.join(rel);
            tokio::task::spawn_blocking(move || look(&full, whole))
                .await
                .ok()
                .flatten()
        }
        None => None,
    };
    if let Some(f) = &found {
        let hit = req
            .headers()
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches(v, &f.etag));
        if hit {
            return with_etag(StatusCode::NOT_MODIFIED.into_response(), &f.etag);
        }
    }
    if let Some(Found {
        etag,
        len,
        bytes: Some(bytes),
    }) = found
    {
        let head = req.method() == Method::HEAD;
        let body = if head {
            Body::empty()
        } else {
            Body::from(bytes)
        };
        let mut resp = Response::new(body);
        let h = resp.headers_mut();
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(&path)));
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        return with_etag(resp, &etag);
    }
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    match format!("{path}{query}").parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    let resp = match ServeDir::new(&st.repo_dir).oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(never) => match never {},
    };
    let ok = matches!(resp.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT);
    match found {
        Some(f) if ok => with_etag(resp, &f.etag),
        _ => resp,
    }
}

fn with_etag(mut resp: Response, tag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(tag) {
        resp.headers_mut().insert(ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only plain relative paths get an ETag lookup; traversal and absolute paths do not.
    #[test]
    fn relative_paths() {
        assert_eq!(relative("/a/b.json"), Some(PathBuf::from("a/b.json")));
        assert_eq!(relative("/a/%2e%2e/b"), None);
        assert_eq!(relative("/../etc/passwd"), None);
        assert!(matches("W/\"x\", \"y\"", "\"y\""));
        assert!(!matches("\"x\"", "\"y\""));
    }
}
