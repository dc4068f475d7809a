//! Limits on connections and requests (`docs/operating.md#limits`): how long a connection may
//! take to send a request's headers (and, the same timer, how long a kept-alive connection
//! may sit idle), how long a request body may take, how many connections are served at once,
//! and the one body-size limit every route answers with 413. Also the response headers that
//! keep secrets out of caches, and the optional token in front of `/metrics`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;

/// Timeouts and caps of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// A connection must send a request's headers within this time after it opens or after
    /// the previous response (so it also closes idle kept-alive connections).
    pub header_read_timeout: Duration,
    /// A request's body must arrive whole within this time after its headers.
    pub body_timeout: Duration,
    /// At most this many connections are served at once; more wait to be accepted.
    pub max_connections: usize,
    /// The largest request body, in bytes; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// The largest program build uploaded to `POST /api/programs/…`, in bytes (413 beyond).
    pub max_program_bytes: u64,
    /// A program upload's body must arrive whole within this time.
    pub upload_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_body_bytes: 1024 * 1024,
            max_program_bytes: 1 << 30,
            upload_timeout: Duration::from_secs(1800),
        }
    }
}

/// The body limit, put in each request's extensions so that body extractors can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Middleware: refuses a declared `Content-Length` over the limit with 413 before reading,
/// and gives the body a deadline (a body that is not whole by then ends in an error, which
/// the extractor answers with 400).
pub async fn guard(State(limits): State<ServeLimits>, mut req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A program upload has its own size limit and time (`docs/operating.md#limits`).
    let upload = crate::routes::programs::is_upload(req.method(), req.uri().path());
    let max = limits.max_body_bytes;
    if upload {
        if declared.is_some_and(|n| n > limits.max_program_bytes) {
            return ApiError::UploadTooLarge {
                limit: limits.max_program_bytes,
            }
            .into_response();
        }
    } else if declared.is_some_and(|n| n > max as u64) {
        return ApiError::TooLarge { limit: max }.into_response();
    }
    req.extensions_mut().insert(BodyLimit(max));
    if declared.is_none() && !req.headers().contains_key(TRANSFER_ENCODING) {
        // No body (a GET, most of the traffic): nothing to time.
        return next.run(req).await;
    }
    let took = if upload {
        limits.upload_timeout
    } else {
        limits.body_timeout
    };
    let deadline = tokio::time::Instant::now() + took;
    let req = req.map(|body| {
        let frames = body.into_data_stream();
        Body::from_stream(futures::stream::unfold(
            Some(frames),
            move |frames| async move {
                let mut frames = frames?;
                match tokio::time::timeout_at(deadline, frames.next()).await {
                    Ok(Some(item)) => Some((item, Some(frames))),
                    Ok(None) => None,
                    Err(_) => Some((
                        Err(axum::Error::new(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the request body did not arrive within the body timeout",
                        ))),
                        None,
                    )),
                }
            },
        ))
    });
    next.run(req).await
}

/// Middleware for the JSON API: `Cache-Control: no-store` on every answer (they carry tokens,
/// enrollment secrets and the policy), unless the handler set its own.
pub async fn no_store(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Whether `req` may read `/metrics`: always when no token is configured, else only with
/// `Authorization: Bearer <token>` (compared in constant time).
pub fn metrics_allowed(token: Option<&str>, headers: &axum::http::HeaderMap) -> bool {
    let Some(want) = token else {
        return true;
    };
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|got| bool::from(got.trim().as_bytes().ct_eq(want.as_bytes())))
}
