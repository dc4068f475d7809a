//! The middleware that times every routed request and counts the router's `/repo/` bytes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;

use super::latency::{method_index, UNMATCHED};
use super::Metrics;

/// Middleware: times every request and counts repository bytes.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_index(req.method());
    let is_repo = req.uri().path().starts_with("/repo/");
    let route = if is_repo {
        Some(metrics.repo)
    } else {
        let label = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, MatchedPath::as_str);
        metrics.route(label)
    };
    let resp = next.run(req).await;
    if is_repo {
        let len = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        metrics.repo_bytes.fetch_add(len, Ordering::Relaxed);
        metrics.repo_responses.fetch_add(1, Ordering::Relaxed);
    }
    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    match route {
        Some(r) => metrics.observe(r, method, resp.status().as_u16(), ns),
        None => {
            metrics.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    resp
}
