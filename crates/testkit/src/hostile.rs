//! The one hostile server of the tests: the lab's static file server ([`StaticServer`]) with
//! a layer in front that can lie about some paths (other bytes, endless data, a trickle, a
//! 404) while the rest is served truthfully, a hostile mirror or relay, and that logs every
//! request with the `Range` start it asked for.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use cascade_lab::{RouterWrap, StaticServer};
use futures::StreamExt as _;

use crate::KitError;

/// How a [`HostileServer`] answers the paths under a prefix instead of serving its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lie {
    /// These bytes (with their length) instead of the file.
    Bytes(Vec<u8>),
    /// 200 without a length, then `x` bytes for ever.
    Endless,
    /// The real file with its real length, `chunk` bytes at a time, each after `every`.
    Trickle {
        /// Bytes sent at a time.
        chunk: usize,
        /// The pause before each chunk.
        every: Duration,
    },
    /// 404, whether the file exists or not.
    NotFound,
    /// The real file with its real length, cut after its first `after` bytes (the connection
    /// breaks, as when the server or a relay dies mid-transfer). A `Range` is ignored: the
    /// answer always starts at byte 0.
    Cut {
        /// Bytes sent before the cut.
        after: usize,
    },
}

/// Every request a [`HostileServer`] saw: the path and the `Range` start it asked for, if any.
pub type RequestLog = Arc<Mutex<Vec<(String, Option<u64>)>>>;

#[derive(Debug, Default)]
struct Shared {
    lies: Mutex<Vec<(String, Lie)>>,
    log: RequestLog,
}

/// A static server of one directory that lies when told to.
#[derive(Debug)]
pub struct HostileServer {
    inner: StaticServer,
    shared: Arc<Shared>,
}

impl HostileServer {
    /// Serves `dir` at `http://ADDR/` (`addr` with port 0 picks a free port), truthfully
    /// until told to lie.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(dir: &Path, addr: SocketAddr) -> Result<Self, KitError> {
        let shared = Arc::new(Shared::default());
        let state = (dir.to_owned(), Arc::clone(&shared));
        let wrap: RouterWrap = Arc::new(move |router| {
            router.layer(middleware::from_fn_with_state(state.clone(), intercept))
        });
        let inner = StaticServer::start_wrapped(dir, addr, Some(wrap)).await?;
        Ok(HostileServer { inner, shared })
    }

    /// From now on answers every path starting with `prefix` (e.g.
    /// `/upstream/metadata/timestamp.json`) with `lie`; the first matching prefix wins.
    pub fn lie(&self, prefix: &str, lie: Lie) {
        if let Ok(mut lies) = self.shared.lies.lock() {
            lies.push((prefix.to_owned(), lie));
        }
    }

    /// Serves every path truthfully again.
    pub fn tell_truth(&self) {
        if let Ok(mut lies) = self.shared.lies.lock() {
            lies.clear();
        }
    }

    /// Every request so far: path and the `Range` start (`bytes=N-`) it asked for, if any.
    pub fn requests(&self) -> Vec<(String, Option<u64>)> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

impl Deref for HostileServer {
    type Target = StaticServer;
    fn deref(&self) -> &StaticServer {
        &self.inner
    }
}

impl DerefMut for HostileServer {
    fn deref_mut(&mut self) -> &mut StaticServer {
        &mut self.inner
    }
}

async fn intercept(
    State((dir, shared)): State<(PathBuf, Arc<Shared>)>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<u64>().ok());
    if let Ok(mut log) = shared.log.lock() {
        log.push((path.clone(), range));
    }
    let lie = shared.lies.lock().ok().and_then(|lies| {
        lies.iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, lie)| lie.clone())
    });
    match lie {
        Some(lie) => tell(&dir, &path, lie),
        None => next.run(req).await,
    }
}

/// The answer a lie gives for `path` (a URL path below `dir`).
fn tell(dir: &Path, path: &str, lie: Lie) -> Response {
    match lie {
        Lie::Bytes(b) => b.into_response(),
        Lie::NotFound => StatusCode::NOT_FOUND.into_response(),
        Lie::Endless => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            Body::from_stream(futures::stream::repeat(chunk).map(Ok::<_, Infallible>))
                .into_response()
        }
        Lie::Cut { after } => {
            let Some(file) = read_below(dir, path) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let len = file.len();
            let head = Bytes::copy_from_slice(&file[..after.min(len)]);
            // The cut comes a moment after the bytes, so that they are sent first.
            let cut = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "cut",
                ))
            });
            let parts = futures::stream::iter([Ok(head)]).chain(cut);
            ([(header::CONTENT_LENGTH, len)], Body::from_stream(parts)).into_response()
        }
        Lie::Trickle { chunk, every } => {
            let Some(file) = read_below(dir, path) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let len = file.len();
            let parts: Vec<Bytes> = file
                .chunks(chunk.max(1))
                .map(Bytes::copy_from_slice)
                .collect();
            let bytes = futures::stream::iter(parts).then(move |part| async move {
                tokio::time::sleep(every).await;
                Ok::<_, Infallible>(part)
            });
            ([(header::CONTENT_LENGTH, len)], Body::from_stream(bytes)).into_response()
        }
    }
}

/// The file at the URL path `path` below `dir`, `None` when missing or the path climbs out.
fn read_below(dir: &Path, path: &str) -> Option<Vec<u8>> {
    let rel = path.trim_start_matches('/');
    (!rel.split('/').any(|s| s == ".."))
        .then(|| std::fs::read(dir.join(rel)).ok())
        .flatten()
}
