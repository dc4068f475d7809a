//! Domain settings applied to a relay: its cache budget and the bandwidth caps of what it
//! sends, per client address and in total.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cascade_repo::throttle::Throttle;

use super::Relay;

/// Bandwidth caps of a relay's responses: one for all clients together, one per client
/// address (`docs/operating.md#domains-and-their-settings`).
#[derive(Debug, Default)]
pub(super) struct RelayCaps {
    total: Arc<Throttle>,
    per_client_rate: AtomicU64,
    /// One bucket per client address; emptied when it grows past [`MAX_CAPPED_CLIENTS`].
    per_client: Mutex<HashMap<IpAddr, Arc<Throttle>>>,
}

/// At most this many per-client buckets are kept (a campus); beyond, they start afresh.
const MAX_CAPPED_CLIENTS: usize = 4096;

impl RelayCaps {
    /// The buckets a response to `peer` goes through, or none when no cap is set.
    pub(super) fn for_peer(&self, peer: Option<IpAddr>) -> Vec<Arc<Throttle>> {
        let mut out = Vec::new();
        if self.total.rate() > 0 {
            out.push(Arc::clone(&self.total));
        }
        let rate = self.per_client_rate.load(Ordering::Relaxed);
        if let (Some(ip), true, Ok(mut map)) = (peer, rate > 0, self.per_client.lock()) {
            if map.len() >= MAX_CAPPED_CLIENTS && !map.contains_key(&ip) {
                map.clear();
            }
            let t = map
                .entry(ip)
                .or_insert_with(|| Arc::new(Throttle::new(rate)));
            t.set_rate(rate);
            out.push(Arc::clone(t));
        }
        out
    }
}

impl Relay {
    /// Applies domain settings: the cache budget (evicting down to it now) and the bandwidth
    /// caps per client and in total (bytes/s, 0: none), for responses started from now on.
    pub fn apply_limits(&self, cache_bytes: u64, per_client: u64, total: u64) {
        let before = self.cache_budget.swap(cache_bytes, Ordering::Relaxed);
        self.caps
            .per_client_rate
            .store(per_client, Ordering::Relaxed);
        self.caps.total.set_rate(total);
        if cache_bytes < before {
            self.evict();
        }
    }

    /// The cache budget in force, bytes.
    pub fn cache_budget(&self) -> u64 {
        self.cache_budget.load(Ordering::Relaxed)
    }
}
