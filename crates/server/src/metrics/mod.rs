//! Prometheus text-format metrics, hand-written: request latency histograms per route,
//! bytes served from the repository, notify fan-out, connected event streams and clients
//! by state (counted from the database at scrape time).
//!
//! Recording a request takes no lock and allocates nothing: route labels are interned once
//! into a fixed table of [`OnceLock`] slots, and each `(route, method, status)` series is a
//! slot of atomic counters claimed with a compare-and-swap the first time it is seen.
//!
//! The `/repo/` answers the connection front gives itself (the volume of a busy server) are
//! counted in `RepoShard`s instead, one per thread (cache-line aligned, so the threads
//! serving on different cores never write the same line), and summed when rendered: the
//! exposition is the same as if they were one set of counters.
//!
//! `latency`: the route table and the latency series; `shards`: the front's per-thread
//! counters; `render`: the exposition text; `track`: the middleware that times requests.

mod latency;
mod render;
mod shards;
mod track;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::notify::Role;

pub use track::track;

use latency::{Series, REPO_ROUTE, ROUTES, SERIES};
use shards::{RepoShard, SHARDS};

/// The counters.
#[derive(Debug)]
pub struct Metrics {
    /// The route index of [`REPO_ROUTE`].
    repo: usize,
    routes: Box<[OnceLock<Box<str>>]>,
    series: Box<[Series]>,
    dropped: AtomicU64,
    /// `/repo/` bytes and responses of the router; the front's are in [`Self::shards`].
    repo_bytes: AtomicU64,
    repo_responses: AtomicU64,
    shards: Box<[RepoShard]>,
    notifies: AtomicU64,
    delivered_agents: AtomicU64,
    delivered_clients: AtomicU64,
    mirror_ok: AtomicU64,
    mirror_failed: AtomicU64,
    /// TLS handshakes completed: full, and resumed from a session ticket
    /// (`docs/operating.md#tls-session-resumption`).
    tls_full: AtomicU64,
    tls_resumed: AtomicU64,
    /// Connections accepted, one counter per listening socket (one per accepting thread with
    /// `docs/operating.md#accept-per-thread`); set when the server starts serving.
    accepted: OnceLock<Box<[AtomicU64]>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            repo: 0,
            routes: (0..ROUTES).map(|_| OnceLock::new()).collect(),
            series: (0..SERIES).map(|_| Series::default()).collect(),
            dropped: AtomicU64::new(0),
            repo_bytes: AtomicU64::new(0),
            repo_responses: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| RepoShard::default()).collect(),
            notifies: AtomicU64::new(0),
            delivered_agents: AtomicU64::new(0),
            delivered_clients: AtomicU64::new(0),
            mirror_ok: AtomicU64::new(0),
            mirror_failed: AtomicU64::new(0),
            tls_full: AtomicU64::new(0),
            tls_resumed: AtomicU64::new(0),
            accepted: OnceLock::new(),
        };
        // An empty table has room for the first label.
        m.repo = m.route(REPO_ROUTE).unwrap_or(0);
        m
    }
}

impl Metrics {
    /// One notify issued.
    pub fn notified(&self) {
        self.notifies.fetch_add(1, Ordering::Relaxed);
    }

    /// One mirror run finished.
    pub fn mirrored(&self, ok: bool) {
        if ok {
            &self.mirror_ok
        } else {
            &self.mirror_failed
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// One TLS handshake completed, full or resumed (`docs/operating.md#tls-session-resumption`).
    pub fn tls_handshake(&self, resumed: bool) {
        if resumed {
            &self.tls_resumed
        } else {
            &self.tls_full
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts connections accepted on `listeners` sockets from now on (the first call wins).
    pub fn count_accepted(&self, listeners: usize) {
        let _ = self
            .accepted
            .set((0..listeners).map(|_| AtomicU64::new(0)).collect());
    }

    /// One connection accepted on listening socket `listener` (0-based).
    pub fn accepted(&self, listener: usize) {
        if let Some(n) = self.accepted.get().and_then(|a| a.get(listener)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One notice written to a stream.
    pub fn delivered(&self, role: Role) {
        match role {
            Role::Agent => &self.delivered_agents,
            Role::Client => &self.delivered_clients,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
