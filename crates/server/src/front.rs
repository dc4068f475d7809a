//! The connection front (`docs/architecture.md#serving-the-repository`): every accepted
//! connection, plain or TLS, starts here. It reads request heads itself and answers the two
//! kinds of request that make the volume without the HTTP library's per-connection machinery:
//!
//! - `GET`/`HEAD /repo/…` of a whole regular file ([`crate::repo::whole`], the same rules as
//!   the routed answer): the head written by hand, the bytes from the small-file cache or, for
//!   a large file on plain HTTP, by `sendfile(2)` from the descriptor that was `fstat`ed (the
//!   kernel copies from the page cache to the socket; nothing passes through user space). No
//!   routing, no middleware, two counters and a latency slot ([`Metrics::repo_answered`]):
//!   what nginx does for a static file.
//! - `GET /api/client/events`: the request goes through the router like any other (so
//!   authentication, limits and metrics are the router's), and the stream it answers is
//!   written here, chunk by chunk, holding no read or write buffer while it waits for the
//!   next notice: the connection and the stream ([`crate::events::EventStream`]) move into a
//!   task of their own, so a held stream costs that task, its socket and the stream's own
//!   state (`docs/operating.md#notification-streams`), not the two 8 KiB buffers an HTTP/1
//!   connection keeps nor the size of this module's future for every other request.
//!
//! Anything else (another path, a `Range`, a body, `Expect`, HTTP/1.0, a head the parser
//! does not take, a file the fast path does not answer) hands the connection, with the bytes
//! already read, to hyper and the router for the rest of its life: behaviour there is
//! exactly the routed server's. The header-read timeout holds here too (idle and slow
//! heads are closed); a head that outgrows [`HEAD_MAX`] is handed over and hyper's own
//! timer and size limit take it from there.
//!
//! Reading the head, writing response heads (with the cached `Date`), `sendfile` and the
//! open-files limit come from `cascade-front`, shared with the relay's front door.
//!
//! The front runs on whichever runtime accepted the connection ([`crate::accept`]): the
//! server's runtime, or an accepting thread's own, whose router then runs each request on the
//! server's runtime.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, Version};
use cascade_front::ResponseHead;
use futures::StreamExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::sync::{watch, OwnedSemaphorePermit};

use crate::events::EventStream;
use crate::limits::ServeLimits;
use crate::metrics::Metrics;
use crate::repo::{Served, Whole, WholeBody};

/// The longest request head the front parses itself; a longer one goes to hyper.
const HEAD_MAX: usize = 8 * 1024;

/// Request heads: at most [`HEAD_MAX`] bytes, read into a buffer grown 1 KiB at a time.
const HEAD_LIMITS: cascade_front::HeadLimits = cascade_front::HeadLimits {
    max_bytes: HEAD_MAX,
    grow: 1024,
};

/// Headers the front parses; a request with more goes to hyper (which takes 100).
const MAX_HEADERS: usize = 32;

/// The notification stream's path (`GET`), answered by the router and written by the front.
const EVENTS_PATH: &str = "/api/client/events";

/// Bodies up to this size are written in the same write as the head.
const COALESCE: usize = 16 * 1024;

/// What the front needs besides the router.
#[derive(Debug)]
pub(crate) struct Front {
    /// The repository served at `/repo/`.
    pub served: Served,
    /// The server's counters.
    pub metrics: Arc<Metrics>,
    /// Timeouts and caps.
    pub limits: ServeLimits,
    /// With per-thread accept ([`crate::accept`]): where a connection handed over to hyper
    /// goes to live the rest of its life; `None`: it stays where it is.
    pub home: Option<Home>,
}

/// The server's runtime and its router, for connections handed over from an accepting
/// thread.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    /// The server's runtime.
    pub runtime: tokio::runtime::Handle,
    /// The router, run there directly.
    pub app: axum::Router,
}

/// A connection the front can serve: a plain TCP stream or a TLS stream over one.
pub(crate) trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Writes the first `len` bytes of `file` to the connection.
    fn send_file(
        &mut self,
        file: File,
        len: u64,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + '_;

    /// Moves the connection's socket to runtime `to`'s I/O driver, so that it can be served
    /// there ([`crate::accept::Portable`]); other connections cannot move.
    fn rehome(&mut self, to: &tokio::runtime::Handle) -> io::Result<()> {
        let _ = to;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

impl Conn for tokio::net::TcpStream {
    #[cfg(target_os = "linux")]
    fn send_file(
        &mut self,
        file: File,
        len: u64,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        // One `sendfile` call sends at most this much (the kernel's own cap is ~2 GiB).
        const MAX_CALL: usize = 1 << 30;
        async move {
            let pacing = cascade_front::Pacing::unpaced(MAX_CALL);
            Ok(cascade_front::send_file(self, &file, 0, len, pacing).await?)
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn send_file(
        &mut self,
        file: File,
        len: u64,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        copy_file(self, file, len)
    }
}

impl Conn for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn send_file(
        &mut self,
        file: File,
        len: u64,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        // The bytes must be encrypted in user space (no kTLS: `docs/operating.md#tls-and-zero-copy`).
        copy_file(self, file, len)
    }
}

/// Writes `len` bytes of `file` through user space: 1 MiB reads on the blocking pool straight
/// into the buffers written.
pub(crate) async fn copy_file<W: AsyncWrite + Unpin + Send>(
    io: &mut W,
    file: File,
    len: u64,
) -> io::Result<()> {
    let mut chunks = std::pin::pin!(crate::repo::file_chunks(file, len));
    while let Some(chunk) = chunks.next().await {
        io.write_all(&chunk?).await?;
    }
    Ok(())
}

/// Raises the soft open-files limit to the hard one ([`cascade_front::raise_open_files`]:
/// every held stream and every connection is a descriptor); warns when even the hard limit
/// is below `want`. Returns the limit.
pub(crate) fn raise_open_files(want: u64) -> Option<u64> {
    let limit = cascade_front::raise_open_files();
    if let Some(l) = limit.filter(|l| *l < want) {
        tracing::warn!(
            limit = l,
            want,
            "the open-files limit is below --max-connections plus room for files; raise it \
             (ulimit -n, LimitNOFILE=): docs/operating.md#notification-streams"
        );
    }
    limit
}

/// What one parsed request head asks for.
enum Ask {
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
enum Head {
    /// A whole head of this many bytes is at the start of the buffer.
    Complete(usize, Ask),
    /// The peer closed, the header-read timeout passed, or the server is stopping.
    Close,
    /// Hand the connection (and what was read) to hyper.
    HandOver,
}

/// Serves one connection until it ends (see the module documentation), holding `slot` (its
/// place under `--max-connections`) as long as the connection lives.
pub(crate) async fn serve<I: Conn>(
    mut io: I,
    front: Arc<Front>,
    app: axum::Router,
    stop: watch::Receiver<bool>,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) {
    let mut buf: Vec<u8> = Vec::new();
    if *stop.borrow() {
        return;
    }
    let mut waits = HeadWaits::new(&stop, front.limits.header_read_timeout);
    loop {
        if stopping(&stop) {
            return;
        }
        match read_head(&mut io, &mut buf, &front.limits, &mut waits, &stop, peer).await {
            Head::Close => return,
            Head::Complete(
                n,
                Ask::Repo {
                    path,
                    head,
                    if_none_match,
                    close,
                },
            ) => {
                let started = Instant::now();
                let Some(answer) =
                    crate::repo::whole(&front.served, &path, if_none_match.as_deref())
                else {
                    break;
                };
                buf.drain(..n);
                if let Err(e) =
                    answer_repo(&mut io, answer, head, close, &front.metrics, started).await
                {
                    tracing::debug!(error = %e, %peer, "connection ended");
                    return;
                }
                if close {
                    let _ = io.shutdown().await;
                    return;
                }
            }
            Head::Complete(_, Ask::Events(req)) => {
                // The head is no longer needed: a held stream keeps no buffer.
                drop(std::mem::take(&mut buf));
                match answer_streamed(&mut io, app, *req).await {
                    // Held in a task of its own, sized for holding alone: this one's
                    // future is sized for every kind of request.
                    Ok(Some(events)) => {
                        tokio::spawn(hold(io, events, peer, slot));
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, %peer, "event stream ended"),
                }
                let _ = io.shutdown().await;
                return;
            }
            Head::HandOver | Head::Complete(_, Ask::Other) => break,
        }
    }
    if let Some(home) = &front.home {
        // From an accepting thread: the rest of the connection's life on the server's
        // runtime, with the router run there directly (`crate::accept`).
        match io.rehome(&home.runtime) {
            Ok(()) => {
                let (limits, app) = (front.limits, home.app.clone());
                home.runtime.spawn(async move {
                    hand_over(io, buf, limits, app, stop, peer).await;
                    drop(slot);
                });
            }
            Err(e) => tracing::debug!(error = %e, %peer, "connection not moved; closed"),
        }
        return;
    }
    hand_over(io, buf, front.limits, app, stop, peer).await;
    drop(slot);
}

/// What a connection waits on besides its socket while it reads request heads: the
/// header-read timer and the server's stop signal, each set up once for the connection's
/// life. Between heads the timer is pushed later (`Sleep::reset` to a later deadline takes no
/// lock) and the stop signal is looked at with one atomic load: a request registers nothing
/// with the runtime's timer wheel or the signal's waiter list, both shared by every worker
/// thread (`docs/architecture.md#serving-the-repository`).
struct HeadWaits {
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Resolves when the server stops (or its signal's sender is gone).
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Whether `stopped` has been polled (and so holds this task's waker).
    armed: bool,
}

impl HeadWaits {
    fn new(stop: &watch::Receiver<bool>, timeout: std::time::Duration) -> Self {
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
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    !matches!(stop.has_changed(), Ok(false)) && *stop.borrow()
}

/// Reads until the buffer starts with a whole request head (or a reason to stop reading),
/// within the header-read timeout.
async fn read_head<I: Conn>(
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

/// Writes one repository answer.
async fn answer_repo<I: Conn>(
    io: &mut I,
    answer: Whole,
    head_only: bool,
    close: bool,
    metrics: &Metrics,
    started: Instant,
) -> io::Result<()> {
    let (mut head, status, len) = match &answer {
        Whole::NotModified(etag) => {
            let mut head = ResponseHead::new(StatusCode::NOT_MODIFIED);
            head.header("etag", etag.as_bytes());
            (head, 304, 0)
        }
        Whole::File {
            etag,
            len,
            content_type,
            ..
        } => {
            let mut head = ResponseHead::new(StatusCode::OK);
            head.content_length(*len)
                .header("content-type", content_type.as_bytes())
                .header("accept-ranges", "bytes")
                .header("etag", etag.as_bytes());
            (head, 200, *len)
        }
    };
    if close {
        head.header("connection", "close");
    }
    head.date();
    let mut out = head.finish();
    match answer {
        Whole::File {
            body: WholeBody::Bytes(bytes),
            ..
        } if !head_only => {
            if bytes.len() <= COALESCE {
                out.extend_from_slice(&bytes);
                io.write_all(&out).await?;
            } else {
                io.write_all(&out).await?;
                io.write_all(&bytes).await?;
            }
        }
        Whole::File {
            body: WholeBody::File(file),
            len,
            ..
        } if !head_only => {
            io.write_all(&out).await?;
            io.flush().await?;
            io.send_file(file, len).await?;
        }
        Whole::File { .. } | Whole::NotModified(_) => io.write_all(&out).await?,
    }
    io.flush().await?;
    metrics.repo_answered(head_only, status, len, started);
    Ok(())
}

/// Routes `req` and writes its answer: the head, then, for a notification stream
/// ([`crate::events::Held`]), the stream to hold ([`hold`]); for any other answer its body,
/// chunk by chunk until it ends or the peer goes away. The connection closes after it.
async fn answer_streamed<I: Conn>(
    io: &mut I,
    app: axum::Router,
    req: Request<Body>,
) -> io::Result<Option<EventStream>> {
    use tower::ServiceExt as _;
    let resp = match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    let held = parts
        .extensions
        .get::<crate::events::Held>()
        .and_then(crate::events::Held::take);
    let exact = axum::body::HttpBody::size_hint(&body).exact();
    let mut response = ResponseHead::new(parts.status);
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "date"
        ) {
            continue;
        }
        response.header(name.as_str(), value.as_bytes());
    }
    match exact {
        Some(n) => response.content_length(n),
        None => response.header("transfer-encoding", "chunked"),
    };
    response.header("connection", "close").date();
    let out = response.finish();
    io.write_all(&out).await?;
    io.flush().await?;
    drop(out);
    if held.is_some() {
        return Ok(held);
    }
    let mut frames = body.into_data_stream();
    // Anything the peer sends (or its close) ends the stream: a client of an event stream
    // only listens.
    let mut probe = [0u8; 1];
    loop {
        let next = tokio::select! {
            f = frames.next() => f,
            _ = io.read(&mut probe) => return Ok(None),
        };
        let Some(frame) = next else { break };
        let data = frame.map_err(io::Error::other)?;
        if data.is_empty() {
            continue;
        }
        if exact.is_some() {
            io.write_all(&data).await?;
            io.flush().await?;
        } else {
            write_chunk(io, &data).await?;
        }
    }
    if exact.is_none() {
        io.write_all(b"0\r\n\r\n").await?;
        io.flush().await?;
    }
    Ok(None)
}

/// Writes `data` as one chunk of a chunked body.
async fn write_chunk<I: Conn>(io: &mut I, data: &[u8]) -> io::Result<()> {
    let mut chunk = Vec::with_capacity(data.len() + 16);
    chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\r\n");
    io.write_all(&chunk).await?;
    io.flush().await
}

/// Holds a notification stream whose head is written: each event a chunk, until the stream
/// ends (then the last chunk) or the peer sends anything or goes away (a client of an event
/// stream only listens). Runs as its own task, so what a held stream costs is this future:
/// the connection, the stream's struct and what its `next` waits on
/// (`docs/operating.md#notification-streams`).
///
/// A function returning an `async move` block rather than an `async fn`: the block stores
/// what it captures once, where an `async fn`'s future keeps its arguments and the body's
/// copies of them side by side (a TLS connection's state is a few KiB).
fn hold<I: Conn>(
    io: I,
    events: EventStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) -> impl std::future::Future<Output = ()> + Send {
    let mut conn = Held { io, events, slot };
    async move {
        let mut probe = [0u8; 1];
        let ended = loop {
            let next = tokio::select! {
                n = conn.events.next() => n,
                _ = conn.io.read(&mut probe) => break Ok(()),
            };
            let Some(data) = next else {
                break async {
                    conn.io.write_all(b"0\r\n\r\n").await?;
                    conn.io.flush().await
                }
                .await;
            };
            if let Err(e) = write_chunk(&mut conn.io, &data).await {
                break Err(e);
            }
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, %peer, "event stream ended");
        }
        let _ = conn.io.shutdown().await;
        drop(conn.slot);
    }
}

/// What a held stream's task owns.
struct Held<I> {
    io: I,
    events: EventStream,
    /// Its place under `--max-connections`, given back when the stream ends.
    slot: OwnedSemaphorePermit,
}

/// Hands the connection to hyper and the router, the bytes already read first.
async fn hand_over<I: Conn>(
    io: I,
    read: Vec<u8>,
    limits: ServeLimits,
    app: axum::Router,
    stop: watch::Receiver<bool>,
    peer: SocketAddr,
) {
    use tower::ServiceExt as _;
    let svc = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    });
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let io = Rewind {
        read: Bytes::from(read),
        io,
    };
    // Boxed: a connection that never gets here (a held event stream) does not carry the
    // size of hyper's connection state in its task.
    Box::pin(serve_connection(io, svc, limits, stop, peer)).await;
}

/// Serves one connection by HTTP/1 until it ends, or, once `stop` flips, until its request
/// in flight is answered.
async fn serve_connection<I, S>(
    io: I,
    svc: S,
    limits: ServeLimits,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = axum::response::Response>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, %peer, "connection ended");
    }
}

/// A connection whose first bytes were already read: they are read again first.
struct Rewind<I> {
    read: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.read.is_empty() {
            let n = me.read.len().min(buf.remaining());
            buf.put_slice(&me.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A held connection's future stays small: hyper's connection state (handed over, boxed)
    // is not part of it (1.2 KiB in a debug build; hyper's inline would add several KiB).
    #[tokio::test]
    async fn held_connection_future_is_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let front = Arc::new(Front {
            served: Served {
                dir: std::env::temp_dir(),
                site: None,
                cache: Arc::default(),
            },
            metrics: Arc::default(),
            limits: ServeLimits::default(),
            home: None,
        });
        let (_tx, rx) = watch::channel(false);
        let peer = c.local_addr().unwrap();
        let slot = Arc::new(tokio::sync::Semaphore::new(1))
            .acquire_owned()
            .await
            .unwrap();
        let f = serve(c, front, axum::Router::new(), rx, peer, slot);
        let size = std::mem::size_of_val(&f);
        assert!(size <= 2048, "serve<TcpStream> future: {size} bytes");
    }
}
