//! The relay as a real HTTP server on 127.0.0.1 in front of a real upstream: one upstream
//! fetch however many clients ask at once, hash-checked blobs, fallback between upstreams.
//!
//! - `fetch`: serving blobs, one fetch for many clients, the report, refusals and errors;
//! - `freshness`: when the timestamp is fetched again (reuse window, revalidation, floors);
//! - `cache`: the cache's budget, seeding, pruning and self-healing;
//! - `front`: the front door's HTTP, paced sends and threads under many downloads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use cascade_agent::relay::{Relay, RelayConfig};
use cascade_repo::{SourceTransport, TransportLimits};
use cascade_testkit::{ManualClock, StaticServer};
use url::Url;

mod cache;
mod fetch;
mod freshness;
mod front;

/// A static upstream serving `dir`, and its count of requests.
async fn upstream(dir: &Path) -> (StaticServer, Arc<AtomicU64>) {
    let server = StaticServer::start(dir, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hits = Arc::clone(&server.requests);
    (server, hits)
}

async fn relay(cache: &Path, upstreams: Vec<Url>, max_cache_bytes: u64) -> (Arc<Relay>, Url) {
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    relay_timed(cache, upstreams, max_cache_bytes, clock).await
}

/// [`relay`], its reuse windows measured by `clock`.
async fn relay_timed(
    cache: &Path,
    upstreams: Vec<Url>,
    max_cache_bytes: u64,
    clock: Arc<ManualClock>,
) -> (Arc<Relay>, Url) {
    let transport = SourceTransport::new(TransportLimits::default()).unwrap();
    let relay = Relay::new(
        RelayConfig {
            cache_dir: cache.to_owned(),
            max_concurrent_fetches: 4,
            max_cache_bytes,
            clock,
        },
        transport,
        1_700_000_000,
    );
    relay.set_upstreams(upstreams);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Arc::clone(&relay).serve(listener, std::future::pending()));
    (relay, format!("http://{addr}/repo/").parse().unwrap())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// Writes a content-addressed blob under `root/targets/components/p/1/` and returns its path.
fn blob(root: &Path, body: &[u8]) -> String {
    let rel = format!("targets/components/p/1/{}.data.bin", sha256_hex(body));
    let path = root.join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    rel
}
