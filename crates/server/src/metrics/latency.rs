//! The latency series: route labels interned into a fixed table, and one histogram of atomic
//! counters per `(route, method, status)`, claimed with a compare-and-swap the first time it
//! is seen; rendered cumulatively with the front's shards merged in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use axum::http::Method;

use super::shards::FRONT_STATUSES;
use super::Metrics;

/// Upper bounds of the latency buckets, in seconds (for the exposition)…
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// …and the same bounds in nanoseconds (for recording).
const BUCKETS_NS: [u64; 10] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    5_000_000_000,
];

/// Route labels that can be told apart (the server has about 40 routes).
pub(super) const ROUTES: usize = 128;
/// `(route, method, status)` series that can be recorded; later new ones are counted in
/// [`Metrics::dropped`] only.
pub(super) const SERIES: usize = 1024;
/// The route label of every `/repo/…` request; interned first.
pub(super) const REPO_ROUTE: &str = "/repo/*";
/// The route label of requests no route matched.
pub(super) const UNMATCHED: &str = "unmatched";
/// Method labels; a method not listed is counted as `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

/// One latency histogram, updated with atomic adds. `buckets[i]` counts observations in
/// `(BUCKETS[i-1], BUCKETS[i]]` (made cumulative when rendered).
#[derive(Debug, Default)]
pub(super) struct Series {
    /// 0 while free; else `1 + route << 16 | method << 12 | status` (see [`series_key`]).
    pub(super) key: AtomicU32,
    hist: Histogram,
}

/// One latency histogram without a key (see [`Series`]).
#[derive(Debug, Default)]
pub(super) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub(super) fn observe(&self, ns: u64) {
        if let Some(b) = BUCKETS_NS.iter().position(|le| ns <= *le) {
            self.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// Summed counts of one series, for rendering.
#[derive(Debug, Default)]
struct Totals {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_ns: u64,
}

impl Totals {
    fn add(&mut self, buckets: &[AtomicU64; BUCKETS.len()], count: &AtomicU64, sum: &AtomicU64) {
        for (t, b) in self.buckets.iter_mut().zip(buckets) {
            *t += b.load(Ordering::Relaxed);
        }
        self.count += count.load(Ordering::Relaxed);
        self.sum_ns += sum.load(Ordering::Relaxed);
    }
}

fn series_key(route: usize, method: usize, status: u16) -> u32 {
    // route < ROUTES (7 bits), method < 8 (3 bits), status < 4096 (12 bits).
    let route = u32::try_from(route).unwrap_or(0);
    let method = u32::try_from(method).unwrap_or(0);
    (1 << 31) | (route << 16) | (method << 12) | u32::from(status & 0x0fff)
}

/// A cheap string hash (FNV-1a) for the route table.
fn fnv(s: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % (ROUTES as u64)).unwrap_or(0)
}

pub(super) fn method_index(m: &Method) -> usize {
    let name = m.as_str();
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|x| *x == name)
        .unwrap_or(METHODS.len() - 1)
}

impl Metrics {
    /// The index of route label `label`, interning it on first sight (open addressing; a
    /// slot, once set, never changes). `None` when the table is full.
    pub(super) fn route(&self, label: &str) -> Option<usize> {
        let start = fnv(label);
        for i in 0..ROUTES {
            let at = (start + i) % ROUTES;
            if &**self.routes[at].get_or_init(|| label.into()) == label {
                return Some(at);
            }
        }
        None
    }

    /// Records one request of `method` on route index `route` answered with `status`.
    pub(super) fn observe(&self, route: usize, method: usize, status: u16, ns: u64) {
        let key = series_key(route, method, status);
        let start = usize::try_from(key.wrapping_mul(0x9e37_79b9) >> 8).unwrap_or(0);
        for i in 0..SERIES {
            let s = &self.series[(start + i) % SERIES];
            let found = s.key.load(Ordering::Acquire);
            let mine = found == key
                || (found == 0
                    && match s
                        .key
                        .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => true,
                        Err(other) => other == key,
                    });
            if mine {
                s.hist.observe(ns);
                return;
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The latency histograms, sorted by route, method and status: the shared series and
    /// the front's shards summed into one series per `(route, method, status)`.
    pub(super) fn render_latency(&self, out: &mut String) {
        let mut rows: BTreeMap<(&str, &str, u32), Totals> = BTreeMap::new();
        for s in &*self.series {
            let key = s.key.load(Ordering::Acquire);
            if key == 0 {
                continue;
            }
            let Ok(route) = usize::try_from((key >> 16) & 0x7f) else {
                continue;
            };
            let Ok(method) = usize::try_from((key >> 12) & 0x7) else {
                continue;
            };
            let Some(label) = self.routes.get(route).and_then(OnceLock::get) else {
                continue;
            };
            rows.entry((&**label, METHODS[method], key & 0x0fff))
                .or_default()
                .add(&s.hist.buckets, &s.hist.count, &s.hist.sum_ns);
        }
        for (head, method) in [(false, "GET"), (true, "HEAD")] {
            for (at, status) in FRONT_STATUSES.iter().enumerate() {
                let mut sum = Totals::default();
                for shard in &*self.shards {
                    let h = &shard.latency[usize::from(head)][at];
                    sum.add(&h.buckets, &h.count, &h.sum_ns);
                }
                if sum.count == 0 {
                    continue;
                }
                let row = rows
                    .entry((REPO_ROUTE, method, u32::from(*status)))
                    .or_default();
                for (r, b) in row.buckets.iter_mut().zip(sum.buckets) {
                    *r += b;
                }
                row.count += sum.count;
                row.sum_ns += sum.sum_ns;
            }
        }
        for ((route, method, status), h) in rows {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "cascade_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let count = h.count;
            let _ = writeln!(
                out,
                "cascade_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            #[allow(clippy::cast_precision_loss)] // nanoseconds to seconds for display
            let sum = h.sum_ns as f64 / 1e9;
            let _ = writeln!(
                out,
                "cascade_http_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "cascade_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
    }
}
