//! The front's `/repo/` counters, one shard per thread (cache-line aligned, so the threads
//! serving on different cores never write the same line), summed when read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use axum::http::Method;

use super::latency::{method_index, Histogram};
use super::Metrics;

/// Shards of the front's `/repo/` counters; a thread writes shard `n % SHARDS` where `n`
/// counts the threads that recorded one (a server has a worker per core; more threads than
/// shards share them, still exactly counted).
pub(super) const SHARDS: usize = 64;

/// The statuses the front answers `/repo/` with itself, in [`RepoShard::latency`] order;
/// any other status is recorded in the shared series.
pub(super) const FRONT_STATUSES: [u16; 2] = [200, 304];

/// The front's `/repo/` counters of one thread (or a few): bytes, responses and a latency
/// histogram per method (`GET`, `HEAD`) and [`FRONT_STATUSES`]. Aligned to two cache lines
/// (adjacent-line prefetch) so that no two shards share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct RepoShard {
    pub(super) bytes: AtomicU64,
    pub(super) responses: AtomicU64,
    pub(super) latency: [[Histogram; FRONT_STATUSES.len()]; 2],
}

/// This thread's shard index.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl Metrics {
    /// Records a `/repo/` answer the connection front gave itself (`crate::front`): the same
    /// counters and latency series as [`track`] keeps for the routed ones, written in this
    /// thread's `RepoShard` (four uncontended atomic adds, nothing shared between cores).
    ///
    /// [`track`]: super::track
    pub fn repo_answered(&self, head: bool, status: u16, content_length: u64, started: Instant) {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[shard_index()];
        shard.bytes.fetch_add(content_length, Ordering::Relaxed);
        shard.responses.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = FRONT_STATUSES.iter().position(|s| *s == status) {
            shard.latency[usize::from(head)][at].observe(ns);
        } else {
            let method = if head { &Method::HEAD } else { &Method::GET };
            self.observe(self.repo, method_index(method), status, ns);
        }
    }

    /// Bytes sent from `/repo` so far (the sum of the responses' `Content-Length`).
    pub fn repo_bytes(&self) -> u64 {
        self.repo_bytes.load(Ordering::Relaxed)
            + self
                .shards
                .iter()
                .map(|s| s.bytes.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    /// Responses from `/repo` so far.
    pub(super) fn repo_responses(&self) -> u64 {
        self.repo_responses.load(Ordering::Relaxed)
            + self
                .shards
                .iter()
                .map(|s| s.responses.load(Ordering::Relaxed))
                .sum::<u64>()
    }
}
