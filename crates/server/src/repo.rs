//! Repository serving: the directory `<data-dir>/repo` (or `--repo-dir`) at `/repo/…`,
//! public and read-only. `tower-http`'s `ServeDir` does `Range`, `Content-Length`,
//! `Last-Modified` and path-traversal protection; this adds a strong `ETag` (file length
//! and modification time, as nginx does) and `If-None-Match` → 304.
//!
//! TODO(issue 4): mirroring the upstream repository into this directory on a schedule and on
//! demand belongs here once `cascade-repo` lands (fetch the upstream's signed metadata,
//! verify, pull missing content-addressed targets, then swap metadata in last).

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use axum::extract::{Request, State};
use axum::http::header::{ETAG, IF_NONE_MATCH};
use axum::http::{HeaderValue, StatusCode, Uri};
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

async fn etag_of(root: &Path, rel: &Path) -> Option<String> {
    let meta = tokio::fs::metadata(root.join(rel)).await.ok()?;
    if !meta.is_file() {
        return None;
    }
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!(
        "\"{:x}.{:x}-{:x}\"",
        mtime.as_secs(),
        mtime.subsec_nanos(),
        meta.len()
    ))
}

fn matches(header: &str, etag: &str) -> bool {
    header.trim() == "*"
        || header
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag)
}

/// `GET|HEAD /repo/{*path}`.
pub async fn serve(State(st): State<AppState>, mut req: Request) -> Response {
    let path = req
        .uri()
        .path()
        .strip_prefix("/repo")
        .unwrap_or("/")
        .to_owned();
    let etag = match relative(&path) {
        Some(rel) => etag_of(&st.repo_dir, &rel).await,
        None => None,
    };
    if let Some(tag) = &etag {
        let hit = req
            .headers()
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches(v, tag));
        if hit {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(tag) {
                resp.headers_mut().insert(ETAG, v);
            }
            return resp;
        }
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
    let mut resp = match ServeDir::new(&st.repo_dir).oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(never) => match never {},
    };
    let ok = matches!(resp.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT);
    if let (true, Some(tag)) = (ok, etag) {
        if let Ok(v) = HeaderValue::from_str(&tag) {
            resp.headers_mut().insert(ETAG, v);
        }
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
