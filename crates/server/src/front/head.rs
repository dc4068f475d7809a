//! Reading a request head within the header-read timeout, and deciding from the parsed head
//! who answers it: the front (a repository file, the notification stream) or hyper.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{Method, Request, Version};
use tokio::sync::watch;

use crate::limits::ServeLimits;

use super::Conn;

/// The longest request head the front parses itself; a longer one goes to hyper.
pub(super) const HEAD_MAX: usize = 8 * 1024;

/// Request heads: at most [`HEAD_MAX`] bytes, read into a buffer grown 1 KiB at a time.
const HEAD_LIMITS: cascade_front::HeadLimits = cascade_front::HeadLimits {
    max_bytes: HEAD_MAX,
    grow: 1024,
};

/// Headers the front parses; a request with more goes to hyper (which takes 100).
const MAX_HEADERS: usize = 32;

/// The notification stream's path (`GET`), answered by the router and written by the front.
const EVENTS_PATH: &str = "/api/client/events";

/// What one parsed request head asks for.
pub(super) enum Ask {
    /// A whole repository file (`head`: `HEAD`), keeping the connection open unless `close`.
    Repo {
        path: String,
        head: bool,
        if_none_match: Option<Vec<u8>>,
        close: bool,
    },
    /// The notification stream: this request, routed, its answer written by the front.
    Events(Box<Request<Body>>),
    /// Anything else: hyper and the router.
    Other,
}

/// Outcome of waiting for a request head.
pub(super) enum Head {
    /// A whole head of this many bytes is at the start of the buffer.
    Complete(usize, Ask),
    /// The peer closed, the header-read timeout passed, or the server is stopping.
    Close,
    /// Hand the connection (and what was read) to hyper.
    HandOver,
}

/// What a connection waits on besides its socket while it reads request heads: the
/// header-read timer and the server's stop signal, each set up once for the connection's
/// life. Between heads the timer is pushed later (`Sleep::reset` to a later deadline takes no
/// lock) and the stop signal is looked at with one atomic load: a request registers nothing
/// with the runtime's timer wheel or the signal's waiter list, both shared by every worker
/// thread (`docs/architecture.md#serving-the-repository`).
pub(super) struct HeadWaits {
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Resolves when the server stops (or its signal's sender is gone).
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Whether `stopped` has been polled (and so holds this task's waker).
    armed: bool,
}

impl HeadWaits {
    pub(super) fn new(stop: &watch::Receiver<bool>, timeout: std::time::Duration) -> Self {
        let mut rx = stop.clone();
        HeadWaits {
            timer: Box::pin(tokio::time::sleep(timeout)),
            stopped: Box::pin(async move {
                let _ = rx.wait_for(|s| *s).await;
            }),
            armed: false,
        }
    }

    /// Ready once the server stops. Once armed, the waiter is polled again only when the
    /// signal has a new value: it wakes this task then, and only then can it be ready.
    fn poll_stopped(&mut self, stop: &watch::Receiver<bool>, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed && matches!(stop.has_changed(), Ok(false)) {
            return Poll::Pending;
        }
        self.armed = true;
        self.stopped.as_mut().poll(cx)
    }
}

/// Whether the server is stopping: one atomic load while the signal has no new value
/// (`stop` is never marked seen, so a value sent stays new).
pub(super) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    !matches!(stop.has_changed(), Ok(false)) && *stop.borrow()
}

/// Reads until the buffer starts with a whole request head (or a reason to stop reading),
/// within the header-read timeout.
pub(super) async fn read_head<I: Conn>(
    io: &mut I,
    buf: &mut Vec<u8>,
    limits: &ServeLimits,
    waits: &mut HeadWaits,
    stop: &watch::Receiver<bool>,
    peer: SocketAddr,
) -> Head {
    waits
        .timer
        .as_mut()
        .reset(tokio::time::Instant::now() + limits.header_read_timeout);
    let read =
        cascade_front::read_head::<MAX_HEADERS, _, _>(io, buf, HEAD_LIMITS, |req| ask(req, peer));
    let mut read = std::pin::pin!(read);
    let read = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(Some(Ok(r)));
        }
        if waits.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(())));
        }
        waits.poll_stopped(stop, cx).map(|()| None)
    })
    .await;
    let Some(read) = read else {
        return Head::Close;
    };
    match read {
        Ok(Ok((n, ask))) => Head::Complete(n, ask),
        Ok(Err(cascade_front::HeadError::Closed)) => Head::Close,
        // Too large, too many headers, bad syntax: hyper answers (or refuses) as it always
        // did.
        Ok(Err(
            cascade_front::HeadError::TooLarge
            | cascade_front::HeadError::TooManyHeaders
            | cascade_front::HeadError::Invalid,
        )) => Head::HandOver,
        Err(()) => {
            tracing::debug!(%peer, "request head not received within the header-read timeout");
            Head::Close
        }
    }
}

/// Decides who answers a parsed request head.
fn ask(req: &httparse::Request<'_, '_>, peer: SocketAddr) -> Ask {
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Ask::Other;
    };
    let mut close = false;
    let mut if_none_match = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("range")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Ask::Other;
        }
        if name.eq_ignore_ascii_case("connection") {
            let v = h.value;
            if v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                close = true;
            }
        } else if name.eq_ignore_ascii_case("if-none-match") {
            if if_none_match.is_some() {
                return Ask::Other;
            }
            if_none_match = Some(h.value.to_vec());
        }
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (method, path.strip_prefix("/repo")) {
        ("GET" | "HEAD", Some(rest)) if rest.starts_with('/') => Ask::Repo {
            path: rest.to_owned(),
            head: method == "HEAD",
            if_none_match,
            close,
        },
        ("GET", None) if path == EVENTS_PATH => match routed_request(target, &*req.headers, peer) {
            Some(req) => Ask::Events(Box::new(req)),
            None => Ask::Other,
        },
        _ => Ask::Other,
    }
}

/// The `GET` request for the router, from the parsed head.
fn routed_request(
    target: &str,
    headers: &[httparse::Header<'_>],
    peer: SocketAddr,
) -> Option<Request<Body>> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(target)
        .version(Version::HTTP_11);
    for h in headers {
        b = b.header(h.name, h.value);
    }
    let mut req = b.body(Body::empty()).ok()?;
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    Some(req)
}
