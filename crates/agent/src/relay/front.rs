//! The relay's front door (`docs/operating.md#relay-serving`): a small HTTP/1.1 server on plain
//! TCP. `GET`/`HEAD /repo/…` is answered from the cache with the file sent by the kernel
//! (`sendfile(2)` from the page cache to the socket: no read into user space, no thread of
//! tokio's blocking pool per read); a single byte range (`Range: bytes=…`, resumed downloads)
//! is honoured the same way. Every other request (`/relay/stats`) goes to the relay's axum
//! router, its (small) answer written out in one piece.
//!
//! Why not hyper: hyper owns the socket and takes bodies as user-space buffers, so a file
//! costs a read into a buffer (tokio's file reads run on its blocking pool, a thread hop per
//! 64 KiB) and a write out of it. Here a connection is one task: it reads a request head,
//! answers, and waits for the next (keep-alive, pipelined requests in order). Requests with a
//! body are refused (the relay takes none). The bandwidth caps of domain settings pace the
//! `sendfile` calls.
//!
//! Reading the head, writing response heads, the paced `sendfile` loop and `Range` parsing
//! come from `cascade-front`, shared with the server's connection front.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{self, StatusCode};
use cascade_client::proto::RepoVersions;
use cascade_front::{HeadError as ReadError, HeadLimits, Pacing, ResponseHead};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use super::{Relay, RelayError, FLOOR_HEADER};

/// The longest request head taken (request line and headers), read into a buffer grown
/// 4 KiB at a time.
const HEAD_LIMITS: HeadLimits = HeadLimits {
    max_bytes: 16 * 1024,
    grow: 4096,
};
/// At most this many request headers.
const MAX_HEADERS: usize = 64;
/// An idle keep-alive connection (or one sending its head this slowly) is closed after this.
const IDLE: Duration = Duration::from_secs(60);
/// After shutdown, responses under way get this long to finish.
const DRAIN: Duration = Duration::from_secs(5);
/// Files up to this size go out with their head in one write (one copy, one system call);
/// larger ones with `sendfile`.
const INLINE_MAX: u64 = 16 * 1024;
/// Bytes per `sendfile` call; with a bandwidth cap, per paced step.
const CHUNK: usize = 1 << 20;
/// Bytes per paced step when a bandwidth cap is in force.
const CAPPED_CHUNK: usize = 64 * 1024;
/// The largest answer of the router that is passed on (the stats JSON is a few KiB).
const MAX_ROUTED_BODY: usize = 4 << 20;

/// Accepts connections on `listener` until `shutdown`, one task each.
pub(super) async fn serve(
    relay: Arc<Relay>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let router = relay.router();
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let conn = Connection {
                        relay: Arc::clone(&relay),
                        router: router.clone(),
                        stream,
                        peer,
                    };
                    conns.spawn(conn.run(stop_rx.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: let connections finish first.
                    tracing::warn!(error = %e, "relay: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
}

/// One client connection.
struct Connection {
    relay: Arc<Relay>,
    router: axum::Router,
    stream: TcpStream,
    peer: SocketAddr,
}

/// What the connection needs of one request head.
struct Head {
    method: String,
    target: String,
    /// HTTP/1.x minor version.
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
    keep_alive: bool,
    has_body: bool,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Why reading a head ended without one.
enum HeadError {
    /// The connection closed (or failed) between requests.
    Closed,
    /// Not HTTP/1.x, or too large: answered with this status, then the connection closes.
    Bad(StatusCode, &'static str),
}

/// A response head being written.
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn new(status: StatusCode) -> Self {
        Answer {
            status,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The head's bytes, with `Content-Length: len` and `Connection: close` unless
    /// `keep_alive`.
    fn bytes(&self, len: u64, keep_alive: bool) -> Vec<u8> {
        let mut head = ResponseHead::new(self.status);
        head.content_length(len);
        for (name, value) in &self.headers {
            head.header(name, value);
        }
        if !keep_alive {
            head.header("connection", "close");
        }
        head.finish()
    }
}

impl Connection {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let _ = self.stream.set_nodelay(true);
        let mut buf = Vec::with_capacity(1024);
        loop {
            let head = tokio::select! {
                head = tokio::time::timeout(IDLE, read_head(&mut self.stream, &mut buf)) => head,
                _ = stop.wait_for(|s| *s) => return,
            };
            let head = match head {
                Ok(Ok(head)) => head,
                Ok(Err(HeadError::Bad(status, why))) => {
                    let _ = self.simple(status, why, false, false).await;
                    return;
                }
                Ok(Err(HeadError::Closed)) | Err(_) => return,
            };
            if head.has_body {
                let why = "relay.bad_request: the relay takes no request bodies\n";
                let _ = self
                    .simple(StatusCode::BAD_REQUEST, why, false, false)
                    .await;
                return;
            }
            let keep_alive = head.keep_alive;
            let done = match repo_path(&head) {
                Some(path) => self.repo(&head, &path).await,
                None => self.routed(head).await,
            };
            if done.is_err() || !keep_alive {
                let _ = self.stream.shutdown().await;
                return;
            }
        }
    }

    /// Writes a small answer of `body` (none for `HEAD`).
    async fn simple(
        &mut self,
        status: StatusCode,
        body: &str,
        keep_alive: bool,
        head: bool,
    ) -> io::Result<()> {
        let answer = Answer::new(status).header("content-type", "text/plain; charset=utf-8");
        let mut out = answer.bytes(body.len() as u64, keep_alive);
        if !head {
            out.extend_from_slice(body.as_bytes());
        }
        self.stream.write_all(&out).await
    }

    /// `GET`/`HEAD /repo/{path}`.
    async fn repo(&mut self, head: &Head, path: &str) -> io::Result<()> {
        let relay = Arc::clone(&self.relay);
        relay.stats.requests.fetch_add(1, Ordering::Relaxed);
        let ip = self.peer.ip();
        let is_head = head.method == "HEAD";
        let floor = head
            .header(FLOOR_HEADER)
            .map(RepoVersions::parse_header)
            .unwrap_or_default();
        let (file, len) = match open_cached(&relay, path, floor).await {
            Ok(f) => f,
            Err(e) => {
                relay.served.record(ip, 0);
                let body = format!("{}: {e}\n", e.code());
                return self
                    .simple(e.status(), &body, head.keep_alive, is_head)
                    .await;
            }
        };
        let json = std::path::Path::new(path)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let content_type = if json {
            "application/json"
        } else {
            "application/octet-stream"
        };
        let range = if head.header("if-range").is_some() {
            None
        } else {
            head.header("range")
                .and_then(|r| cascade_front::parse_range(r, len))
        };
        let (answer, start, count) = match range {
            None => (Answer::new(StatusCode::OK), 0, len),
            Some(Ok((start, end))) => (
                Answer::new(StatusCode::PARTIAL_CONTENT)
                    .header("content-range", format!("bytes {start}-{end}/{len}")),
                start,
                end + 1 - start,
            ),
            Some(Err(cascade_front::Unsatisfiable)) => {
                relay.served.record(ip, 0);
                let answer = Answer::new(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header("content-range", format!("bytes */{len}"));
                return self
                    .stream
                    .write_all(&answer.bytes(0, head.keep_alive))
                    .await;
            }
        };
        let answer = answer
            .header("content-type", content_type)
            .header("accept-ranges", "bytes");
        let sent = if is_head { 0 } else { count };
        relay.stats.bytes_served.fetch_add(sent, Ordering::Relaxed);
        relay.served.record(ip, sent);
        let mut out = answer.bytes(count, head.keep_alive);
        if is_head {
            return self.stream.write_all(&out).await;
        }
        let caps = relay.caps.for_peer(Some(ip));
        if count <= INLINE_MAX && caps.is_empty() {
            // One write for head and body: the copy costs less than a second system call.
            let mut body = vec![0u8; usize::try_from(count).unwrap_or(0)];
            std::io::Read::read_exact(&mut ReadAt(&file, start), &mut body)?;
            out.extend_from_slice(&body);
            return self.stream.write_all(&out).await;
        }
        self.stream.write_all(&out).await?;
        // With a bandwidth cap, each step waits for what every cap in force reserves.
        let wait = |n: u64| caps.iter().map(|t| t.reserve(n)).max().unwrap_or_default();
        let pacing = if caps.is_empty() {
            Pacing::unpaced(CHUNK)
        } else {
            Pacing::paced(CAPPED_CHUNK, &wait)
        };
        Ok(cascade_front::send_file(&self.stream, &file, start, count, pacing).await?)
    }

    /// Any other request: through the relay's router.
    async fn routed(&mut self, head: Head) -> io::Result<()> {
        let is_head = head.method == "HEAD";
        let keep_alive = head.keep_alive;
        let mut builder = http::Request::builder()
            .method(head.method.as_str())
            .uri(head.target.as_str())
            .version(if head.minor == 0 {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            });
        for (name, value) in &head.headers {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        let Ok(mut req) = builder.body(axum::body::Body::empty()) else {
            let why = "relay.bad_request: unreadable request\n";
            return self
                .simple(StatusCode::BAD_REQUEST, why, false, is_head)
                .await;
        };
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let Ok(resp) = self.router.clone().oneshot(req).await;
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, MAX_ROUTED_BODY)
            .await
            .unwrap_or_default();
        let mut answer = Answer::new(parts.status);
        for (name, value) in &parts.headers {
            let n = name.as_str();
            if matches!(n, "content-length" | "connection" | "transfer-encoding") {
                continue;
            }
            if let (Some(n), Ok(v)) = (static_name(n), value.to_str()) {
                answer = answer.header(n, v);
            }
        }
        let mut out = answer.bytes(body.len() as u64, keep_alive);
        if !is_head {
            out.extend_from_slice(&body);
        }
        self.stream.write_all(&out).await
    }
}

/// The response headers the router's answers carry, by name (anything else is dropped).
fn static_name(name: &str) -> Option<&'static str> {
    ["content-type", "cache-control", "etag", "last-modified"]
        .into_iter()
        .find(|n| *n == name)
}

/// Reads from the file at a position without moving a shared cursor.
struct ReadAt<'a>(&'a std::fs::File, u64);

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.0, buf, self.1)?;
        self.1 += n as u64;
        Ok(n)
    }
}

/// Obtains `path` from the relay and opens it: the file and its length. A file evicted
/// between the two is obtained once more.
async fn open_cached(
    relay: &Relay,
    path: &str,
    floor: RepoVersions,
) -> Result<(std::fs::File, u64), RelayError> {
    let file = relay.obtain_with_floor(path, floor).await?;
    if let Ok(opened) = open(&file) {
        return Ok(opened);
    }
    let file = relay.obtain_with_floor(path, floor).await?;
    open(&file).map_err(|source| RelayError::Io { path: file, source })
}

/// Opens a cached file: the file and its length.
fn open(path: &std::path::Path) -> io::Result<(std::fs::File, u64)> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// The relay path of a `GET`/`HEAD /repo/{path}` request (the query left out).
fn repo_path(head: &Head) -> Option<String> {
    if head.method != "GET" && head.method != "HEAD" {
        return None;
    }
    let path = head.target.split('?').next().unwrap_or_default();
    path.strip_prefix("/repo/").map(str::to_owned)
}

/// Reads one request head from `stream` (what is already in `buf` first); leaves the bytes
/// after it (a pipelined request) in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Head, HeadError> {
    let read = cascade_front::read_head::<MAX_HEADERS, _, _>(stream, buf, HEAD_LIMITS, owned_head);
    match read.await {
        Ok((n, head)) => {
            let head = head?;
            buf.drain(..n);
            Ok(head)
        }
        Err(ReadError::Closed) => Err(HeadError::Closed),
        Err(ReadError::TooManyHeaders) => Err(HeadError::Bad(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "relay.bad_request: too many headers\n",
        )),
        Err(ReadError::Invalid) => Err(HeadError::Bad(
            StatusCode::BAD_REQUEST,
            "relay.bad_request: not an HTTP/1.x request\n",
        )),
        Err(ReadError::TooLarge) => Err(HeadError::Bad(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "relay.bad_request: request head too large\n",
        )),
    }
}

fn owned_head(req: &httparse::Request<'_, '_>) -> Result<Head, HeadError> {
    let bad = HeadError::Bad(
        StatusCode::BAD_REQUEST,
        "relay.bad_request: incomplete request line\n",
    );
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad);
    };
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    let value = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let connection = value("connection").join(",");
    let keep_alive = if minor == 0 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let has_body = !value("transfer-encoding").is_empty()
        || value("content-length")
            .iter()
            .any(|v| v.trim().parse::<u64>().map_or(true, |n| n > 0));
    Ok(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        minor,
        headers,
        keep_alive,
        has_body,
    })
}
