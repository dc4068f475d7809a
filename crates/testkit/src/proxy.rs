//! A reverse proxy on a loopback address in front of another HTTP server (the cascade
//! server, in tests): it forwards every request as is (API calls, the event stream, the
//! repository tree), counts the requests per path, and can hold the answers for one path
//! until the test releases them, so a test can see exactly what a relay fetched upstream and
//! make every client wait on the same cache miss.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::Router;
use futures::StreamExt as _;
use tokio::sync::{oneshot, watch};
use url::Url;

use crate::{kit, KitError};

#[derive(Debug)]
struct Shared {
    target: Url,
    http: reqwest::Client,
    hits: Mutex<HashMap<String, u64>>,
    /// Response body bytes passed back, per path.
    bytes: Mutex<HashMap<String, u64>>,
    held: Mutex<Option<String>>,
    released: watch::Sender<bool>,
    waiting: AtomicU64,
}

/// A running counting proxy.
#[derive(Debug)]
pub struct CountingProxy {
    url: Url,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl CountingProxy {
    /// Forwards `http://ADDR/…` to `target` (`addr` with port 0 picks a free port).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(target: Url, addr: SocketAddr) -> Result<Self, KitError> {
        Self::start_trusting(target, addr, None).await
    }

    /// [`CountingProxy::start`] to an HTTPS `target` whose certificate chains to the CA in
    /// `ca_pem` (the test server's private CA).
    ///
    /// # Errors
    /// When the address cannot be bound or the CA is not PEM.
    pub async fn start_trusting(
        target: Url,
        addr: SocketAddr,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, KitError> {
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(pem) = ca_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| kit("proxy CA")(&e))?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| kit("proxy client")(&e))?;
        let shared = Arc::new(Shared {
            target,
            http,
            hits: Mutex::default(),
            bytes: Mutex::default(),
            held: Mutex::default(),
            released: watch::Sender::new(true),
            waiting: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| kit("bind proxy")(&e))?;
        let addr = listener.local_addr().map_err(|e| kit("bind proxy")(&e))?;
        let url = Url::parse(&format!("http://{addr}/")).map_err(|e| kit("proxy URL")(&e))?;
        let app = Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(CountingProxy {
            url,
            shared,
            stop: Some(tx),
        })
    }

    /// The base URL, with a trailing slash.
    pub fn url(&self) -> Url {
        self.url.clone()
    }

    /// Requests seen for exactly `path` (e.g. `/repo/upstream/metadata/timestamp.json`).
    pub fn hits(&self, path: &str) -> u64 {
        self.shared
            .hits
            .lock()
            .map_or(0, |h| h.get(path).copied().unwrap_or(0))
    }

    /// Requests seen for paths starting with `prefix` (e.g. `/repo/`), all together.
    pub fn hits_under(&self, prefix: &str) -> u64 {
        self.shared.hits.lock().map_or(0, |h| {
            h.iter()
                .filter(|(p, _)| p.starts_with(prefix))
                .map(|(_, n)| n)
                .sum()
        })
    }

    /// Response body bytes passed back for paths starting with `prefix` (`/` for all).
    pub fn bytes_under(&self, prefix: &str) -> u64 {
        self.shared.bytes.lock().map_or(0, |b| {
            b.iter()
                .filter(|(p, _)| p.starts_with(prefix))
                .map(|(_, n)| n)
                .sum()
        })
    }

    /// Requests for `path` from now on wait (counted, not yet forwarded) until
    /// [`CountingProxy::release`].
    pub fn hold(&self, path: &str) {
        if let Ok(mut held) = self.shared.held.lock() {
            *held = Some(path.to_owned());
        }
        self.shared.released.send_replace(false);
    }

    /// Forwards the held requests and stops holding.
    pub fn release(&self) {
        if let Ok(mut held) = self.shared.held.lock() {
            *held = None;
        }
        self.shared.released.send_replace(true);
    }

    /// Requests waiting to be released now.
    pub fn waiting(&self) -> u64 {
        self.shared.waiting.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.release();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn forward(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if let Ok(mut hits) = s.hits.lock() {
        *hits.entry(path.clone()).or_default() += 1;
    }
    let held = s
        .held
        .lock()
        .is_ok_and(|h| h.as_deref() == Some(path.as_str()));
    if held {
        s.waiting.fetch_add(1, Ordering::SeqCst);
        let _ = s.released.subscribe().wait_for(|r| *r).await;
        s.waiting.fetch_sub(1, Ordering::SeqCst);
    }
    let rel = req
        .uri()
        .path_and_query()
        .map_or("", |p| p.as_str())
        .trim_start_matches('/')
        .to_owned();
    let Ok(url) = s.target.join(&rel) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut headers = parts.headers;
    for h in [header::HOST, header::CONNECTION, header::CONTENT_LENGTH] {
        headers.remove(h);
    }
    let sent = s
        .http
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if k != header::CONNECTION && k != header::TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    let counted = resp.bytes_stream().inspect(move |chunk| {
        if let (Ok(chunk), Ok(mut bytes)) = (chunk, s.bytes.lock()) {
            *bytes.entry(path.clone()).or_default() += chunk.len() as u64;
        }
    });
    out.body(Body::from_stream(counted))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}
