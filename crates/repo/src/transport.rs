//! The client's HTTP transport for one source (a relay, mirror or the server): tells "not found"
//! from "failed", bounds the time to the first byte, enforces a minimum throughput over a
//! window (TUF leaves slow retrieval to the implementer) and caps every response's size.
//!
//! It implements [`tough::Transport`]; failures carry a [`SourceFailure`] as their cause so
//! callers can report exactly why a source was given up.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::time::{Instant, Sleep};
use tough::{Bytes, Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// Limits applied to every request made through a [`SourceTransport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed from sending the request to receiving the response headers.
    pub header_timeout: Duration,
    /// The throughput window: within each window at least `min_bytes_per_sec * window` bytes must
    /// arrive, and a window without any byte fails the transfer.
    pub window: Duration,
    /// Minimum average throughput per window, bytes per second.
    pub min_bytes_per_sec: u64,
    /// No single response may be longer than this.
    pub max_response_bytes: u64,
    /// Time allowed for response headers from a source that already failed to answer (timed
    /// out, could not be reached, too slow) earlier in the same update cycle: it is probed
    /// briefly rather than waited on again (`docs/operating.md#deadlines`).
    pub probe_timeout: Duration,
    /// A whole update cycle (every category, every source) ends after this long; the
    /// categories not done by then quit with a reason that says so.
    pub cycle_deadline: Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            window: Duration::from_secs(10),
            min_bytes_per_sec: 4096,
            max_response_bytes: 4 << 30,
            probe_timeout: Duration::from_secs(3),
            cycle_deadline: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a request through a source failed (the cause inside a [`TransportError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceFailure {
    /// The source answered 404 or 410.
    #[error("not found (HTTP {0})")]
    NotFound(u16),
    /// The source answered another non-success status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Connecting failed or timed out.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No response headers within the header timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// Fewer bytes than the floor arrived within a window.
    #[error("too slow: {got} bytes in {window:?}, floor {floor} B/s")]
    TooSlow {
        /// Bytes received in the window.
        got: u64,
        /// The window.
        window: Duration,
        /// The floor.
        floor: u64,
    },
    /// The response was longer than allowed.
    #[error("response longer than {0} bytes")]
    TooLarge(u64),
    /// The connection broke mid-transfer or another transport error occurred.
    #[error("transfer failed: {0}")]
    Broken(String),
    /// The URL scheme is not http or https.
    #[error("unsupported URL scheme `{0}`")]
    Scheme(String),
}

impl SourceFailure {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SourceFailure::NotFound(_) => "source.not_found",
            SourceFailure::Status(_) => "source.http_status",
            SourceFailure::Connect(_) => "source.connect",
            SourceFailure::Timeout(_) => "source.timeout",
            SourceFailure::TooSlow { .. } => "source.too_slow",
            SourceFailure::TooLarge(_) => "source.too_large",
            SourceFailure::Broken(_) => "source.broken",
            SourceFailure::Scheme(_) => "source.scheme",
        }
    }
}

/// HTTP(S) transport with the limits of [`TransportLimits`] (rustls, no native TLS).
#[derive(Debug, Clone)]
pub struct SourceTransport {
    client: reqwest::Client,
    limits: TransportLimits,
    /// Body bytes received through this transport and its clones.
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// For a transport of one attempt ([`SourceTransport::sibling`]): set once a request
    /// got no response within the header timeout, after which every request fails at once
    /// with that same reason, so one attempt waits on an unresponsive source once, not once
    /// per file it asks for.
    unanswered: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// A bandwidth cap shared with every transport given the same one.
    throttle: Option<std::sync::Arc<crate::throttle::Throttle>>,
    /// Headers sent with every request (the client's version floor to a relay:
    /// `docs/operating.md#relays-serve-all-metadata`).
    headers: reqwest::header::HeaderMap,
}

impl SourceTransport {
    /// Caps the body bytes of this transport and its siblings with `throttle` (shared).
    #[must_use]
    pub fn with_throttle(mut self, throttle: std::sync::Arc<crate::throttle::Throttle>) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Sends `name: value` with every request of this transport and the siblings made from it
    /// afterwards.
    #[must_use]
    pub fn with_header(
        mut self,
        name: reqwest::header::HeaderName,
        value: reqwest::header::HeaderValue,
    ) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the throughput floor ([`TransportLimits::min_bytes_per_sec`]) of this transport
    /// and the siblings made from it afterwards.
    #[must_use]
    pub fn with_min_bytes_per_sec(mut self, floor: u64) -> Self {
        self.limits.min_bytes_per_sec = floor;
        self
    }

    /// Build a transport.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS initialisation).
    pub fn new(limits: TransportLimits) -> Result<Self, reqwest::Error> {
        Self::new_bound(limits, None)
    }

    /// Build a transport whose connections leave from `bind` (a local address), so the
    /// source sees the address the source list was resolved for.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS initialisation).
    pub fn new_bound(
        limits: TransportLimits,
        bind: Option<std::net::IpAddr>,
    ) -> Result<Self, reqwest::Error> {
        Self::new_bound_trusting(limits, bind, None)
    }

    /// Like [`SourceTransport::new_bound`], also trusting the CA certificate(s) in `ca_pem`
    /// beside the system's roots (the cascade server's private CA, `docs/operating.md#tls`).
    ///
    /// # Errors
    /// When the HTTP client cannot be built or `ca_pem` is not PEM.
    pub fn new_bound_trusting(
        limits: TransportLimits,
        bind: Option<std::net::IpAddr>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem)?);
        }
        let client = builder
            .local_address(bind)
            .connect_timeout(limits.connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .no_proxy()
            .build()?;
        Ok(Self {
            client,
            limits,
            received: std::sync::Arc::default(),
            unanswered: None,
            throttle: None,
            headers: reqwest::header::HeaderMap::new(),
        })
    }

    /// A transport for one attempt at one source, sharing this one's HTTP client (connection
    /// pool, TLS set-up) and limits, with a byte counter of its own: cheap, where building a
    /// client re-reads the system's certificate store. Once a request through it (or its
    /// clones) gets no response within the header timeout, later ones fail at once with the
    /// same reason: one deadline per source per attempt (`docs/operating.md#deadlines`).
    #[must_use]
    pub fn sibling(&self) -> Self {
        Self {
            client: self.client.clone(),
            limits: self.limits,
            received: std::sync::Arc::default(),
            unanswered: Some(std::sync::Arc::default()),
            throttle: self.throttle.clone(),
            headers: self.headers.clone(),
        }
    }

    /// Like [`SourceTransport::sibling`], for a source that already failed to answer in this
    /// cycle: its header timeout is the short [`TransportLimits::probe_timeout`].
    #[must_use]
    pub fn probe_sibling(&self) -> Self {
        let mut t = self.sibling();
        t.limits.header_timeout = self.limits.probe_timeout.min(self.limits.header_timeout);
        t
    }

    /// Body bytes received so far through this transport and its clones (for reports).
    pub fn bytes_received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The live counter behind [`SourceTransport::bytes_received`], for progress displays.
    pub fn byte_counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        std::sync::Arc::clone(&self.received)
    }

    /// The limits in force.
    pub fn limits(&self) -> TransportLimits {
        self.limits
    }
}

fn fail(url: &Url, f: SourceFailure) -> TransportError {
    let kind = if matches!(f, SourceFailure::NotFound(_)) {
        TransportErrorKind::FileNotFound
    } else {
        TransportErrorKind::Other
    };
    TransportError::new_with_cause(kind, url.as_str(), f)
}

#[tough::async_trait]
impl Transport for SourceTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        self.fetch_from(url, 0).await.map(|(stream, _)| stream)
    }
}

impl SourceTransport {
    /// Fetch `url` starting at byte `offset` (an HTTP range request when `offset > 0`).
    /// Returns the body stream and whether the source honoured the range; when it did not, the
    /// stream starts at byte 0.
    ///
    /// # Errors
    /// A [`TransportError`] whose cause is a [`SourceFailure`].
    pub async fn fetch_from(
        &self,
        url: Url,
        offset: u64,
    ) -> Result<(TransportStream, bool), TransportError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TransportError::new_with_cause(
                TransportErrorKind::UnsupportedUrlScheme,
                url.as_str(),
                SourceFailure::Scheme(url.scheme().to_owned()),
            ));
        }
        let timeout = SourceFailure::Timeout(self.limits.header_timeout);
        let unanswered = self
            .unanswered
            .as_ref()
            .is_some_and(|u| u.load(std::sync::atomic::Ordering::Relaxed));
        if unanswered {
            return Err(fail(&url, timeout));
        }
        let mut request = self.client.get(url.clone());
        if !self.headers.is_empty() {
            request = request.headers(self.headers.clone());
        }
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let send = request.send();
        let response = match tokio::time::timeout(self.limits.header_timeout, send).await {
            Err(_) => {
                if let Some(u) = &self.unanswered {
                    u.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                return Err(fail(&url, timeout));
            }
            Ok(Err(e)) if e.is_connect() || e.is_timeout() => {
                return Err(fail(&url, SourceFailure::Connect(e.to_string())))
            }
            Ok(Err(e)) => return Err(fail(&url, SourceFailure::Broken(e.to_string()))),
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
        if status == 404 || status == 410 {
            return Err(fail(&url, SourceFailure::NotFound(status)));
        }
        if !response.status().is_success() {
            return Err(fail(&url, SourceFailure::Status(status)));
        }
        let max = self.limits.max_response_bytes;
        if response.content_length().is_some_and(|n| n > max) {
            return Err(fail(&url, SourceFailure::TooLarge(max)));
        }
        let resumed = offset > 0 && status == 206;
        if resumed {
            let range = response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !range.starts_with(&format!("bytes {offset}-")) {
                let msg = format!("asked for bytes {offset}-, got Content-Range `{range}`");
                return Err(fail(&url, SourceFailure::Broken(msg)));
            }
        }
        let stream: TransportStream = Box::pin(Guarded {
            inner: Box::pin(response.bytes_stream()),
            url,
            limits: self.limits,
            received: 0,
            counter: std::sync::Arc::clone(&self.received),
            window_start: Instant::now(),
            window_bytes: 0,
            stall: Box::pin(tokio::time::sleep(self.limits.window)),
            done: false,
            throttle: self.throttle.clone(),
            held: None,
        });
        Ok((stream, resumed))
    }
}

type Inner = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send + Sync>>;

/// A body stream that enforces the size cap and the throughput floor.
struct Guarded {
    inner: Inner,
    url: Url,
    limits: TransportLimits,
    received: u64,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    window_start: Instant,
    window_bytes: u64,
    stall: Pin<Box<Sleep>>,
    done: bool,
    /// The bandwidth cap, and a chunk held until the cap lets it pass.
    throttle: Option<std::sync::Arc<crate::throttle::Throttle>>,
    held: Option<(Bytes, Pin<Box<Sleep>>)>,
}

impl Guarded {
    fn too_slow(&mut self) -> Poll<Option<Result<Bytes, TransportError>>> {
        self.done = true;
        Poll::Ready(Some(Err(fail(
            &self.url,
            SourceFailure::TooSlow {
                got: self.window_bytes,
                window: self.limits.window,
                floor: self.limits.min_bytes_per_sec,
            },
        ))))
    }
}

impl Stream for Guarded {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some((_, hold)) = &mut self.held {
            if hold.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The hold was the cap's, not the source's: the stall timer starts again now.
            let deadline = Instant::now() + self.limits.window;
            self.stall.as_mut().reset(deadline);
            if let Some((chunk, _)) = self.held.take() {
                return Poll::Ready(Some(Ok(chunk)));
            }
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let n = chunk.len() as u64;
                self.received = self.received.saturating_add(n);
                self.counter
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                self.window_bytes = self.window_bytes.saturating_add(n);
                if self.received > self.limits.max_response_bytes {
                    self.done = true;
                    let max = self.limits.max_response_bytes;
                    return Poll::Ready(Some(Err(fail(&self.url, SourceFailure::TooLarge(max)))));
                }
                let now = Instant::now();
                if now.duration_since(self.window_start) >= self.limits.window {
                    let ms = u64::try_from(self.limits.window.as_millis()).unwrap_or(u64::MAX);
                    let need = self.limits.min_bytes_per_sec.saturating_mul(ms) / 1000;
                    if self.window_bytes < need {
                        return self.too_slow();
                    }
                    self.window_start = now;
                    self.window_bytes = 0;
                }
                let deadline = now + self.limits.window;
                self.stall.as_mut().reset(deadline);
                let wait = self
                    .throttle
                    .as_ref()
                    .map_or(Duration::ZERO, |t| t.reserve(n));
                if !wait.is_zero() {
                    let mut hold = Box::pin(tokio::time::sleep(wait));
                    if hold.as_mut().poll(cx).is_pending() {
                        self.held = Some((chunk, hold));
                        return Poll::Pending;
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(fail(
                    &self.url,
                    SourceFailure::Broken(e.to_string()),
                ))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.stall.as_mut().poll(cx).is_ready() {
                    return self.too_slow();
                }
                Poll::Pending
            }
        }
    }
}

/// Find the [`SourceFailure`] somewhere in an error's source chain.
pub fn find_source_failure(err: &(dyn std::error::Error + 'static)) -> Option<SourceFailure> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(f) = e.downcast_ref::<SourceFailure>() {
            return Some(f.clone());
        }
        cur = e.source();
    }
    None
}
