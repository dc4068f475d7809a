//! Prometheus text-format metrics, hand-written: request latency histograms per route,
//! bytes served from the repository, notify fan-out, connected event streams and clients
//! by state (counted from the database at scrape time).
//!
//! Recording a request takes no lock and allocates nothing: route labels are interned once
//! into a fixed table of [`OnceLock`] slots, and each `(route, method, status)` series is a
//! slot of atomic counters claimed with a compare-and-swap the first time it is seen.
//!
//! The `/repo/` answers the connection front gives itself (the volume of a busy server) are
//! counted in [`RepoShard`]s instead, one per thread (cache-line aligned, so the threads
//! serving on different cores never write the same line), and summed when rendered: the
//! exposition is the same as if they were one set of counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::notify::Role;

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
const ROUTES: usize = 128;
/// `(route, method, status)` series that can be recorded; later new ones are counted in
/// [`Metrics::dropped`] only.
const SERIES: usize = 1024;
/// The route label of every `/repo/…` request; interned first.
const REPO_ROUTE: &str = "/repo/*";
/// The route label of requests no route matched.
const UNMATCHED: &str = "unmatched";
/// Method labels; a method not listed is counted as `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

/// One latency histogram, updated with atomic adds. `buckets[i]` counts observations in
/// `(BUCKETS[i-1], BUCKETS[i]]` (made cumulative when rendered).
#[derive(Debug, Default)]
struct Series {
    /// 0 while free; else `1 + route << 16 | method << 12 | status` (see [`series_key`]).
    key: AtomicU32,
    hist: Histogram,
}

/// One latency histogram without a key (see [`Series`]).
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, ns: u64) {
        if let Some(b) = BUCKETS_NS.iter().position(|le| ns <= *le) {
            self.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// Shards of the front's `/repo/` counters; a thread writes shard `n % SHARDS` where `n`
/// counts the threads that recorded one (a server has a worker per core; more threads than
/// shards share them, still exactly counted).
const SHARDS: usize = 64;

/// The statuses the front answers `/repo/` with itself, in [`RepoShard::latency`] order;
/// any other status is recorded in the shared series.
const FRONT_STATUSES: [u16; 2] = [200, 304];

/// The front's `/repo/` counters of one thread (or a few): bytes, responses and a latency
/// histogram per method (`GET`, `HEAD`) and [`FRONT_STATUSES`]. Aligned to two cache lines
/// (adjacent-line prefetch) so that no two shards share one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct RepoShard {
    bytes: AtomicU64,
    responses: AtomicU64,
    latency: [[Histogram; FRONT_STATUSES.len()]; 2],
}

/// This thread's shard index.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
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

    /// The index of route label `label`, interning it on first sight (open addressing; a
    /// slot, once set, never changes). `None` when the table is full.
    fn route(&self, label: &str) -> Option<usize> {
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
    fn observe(&self, route: usize, method: usize, status: u16, ns: u64) {
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

    /// Records a `/repo/` answer the connection front gave itself (`crate::front`): the same
    /// counters and latency series as [`track`] keeps for the routed ones, written in this
    /// thread's [`RepoShard`] (four uncontended atomic adds, nothing shared between cores).
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
    fn repo_responses(&self) -> u64 {
        self.repo_responses.load(Ordering::Relaxed)
            + self
                .shards
                .iter()
                .map(|s| s.responses.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    /// The latency histograms, sorted by route, method and status: the shared series and
    /// the front's shards summed into one series per `(route, method, status)`.
    fn render_latency(&self, out: &mut String) {
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

    /// The exposition text; `clients` is `(state, count)` from the database.
    pub fn render(&self, clients: &[(&str, u64)], streams: &[(Role, usize)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP cascade_clients Enrolled clients by state.\n# TYPE cascade_clients gauge"
        );
        for (state, n) in clients {
            let _ = writeln!(out, "cascade_clients{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP cascade_event_streams Connected notification streams.\n# TYPE cascade_event_streams gauge");
        for (role, n) in streams {
            let _ = writeln!(
                out,
                "cascade_event_streams{{role=\"{}\"}} {n}",
                role.as_str()
            );
        }
        let _ = writeln!(out, "# HELP cascade_notify_total Notify All Clients issued.\n# TYPE cascade_notify_total counter");
        let _ = writeln!(
            out,
            "cascade_notify_total {}",
            self.notifies.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP cascade_notify_deliveries_total Notices written to event streams.\n# TYPE cascade_notify_deliveries_total counter");
        let _ = writeln!(
            out,
            "cascade_notify_deliveries_total{{role=\"agent\"}} {}",
            self.delivered_agents.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "cascade_notify_deliveries_total{{role=\"client\"}} {}",
            self.delivered_clients.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP cascade_mirror_runs_total Upstream mirror runs by outcome.\n# TYPE cascade_mirror_runs_total counter");
        let _ = writeln!(
            out,
            "cascade_mirror_runs_total{{outcome=\"ok\"}} {}",
            self.mirror_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "cascade_mirror_runs_total{{outcome=\"failed\"}} {}",
            self.mirror_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP cascade_repo_bytes_total Bytes sent from /repo (response Content-Length).\n# TYPE cascade_repo_bytes_total counter");
        let _ = writeln!(out, "cascade_repo_bytes_total {}", self.repo_bytes());
        let _ = writeln!(out, "# HELP cascade_repo_responses_total Responses from /repo.\n# TYPE cascade_repo_responses_total counter");
        let _ = writeln!(
            out,
            "cascade_repo_responses_total {}",
            self.repo_responses()
        );
        let _ = writeln!(out, "# HELP cascade_tls_handshakes_total TLS handshakes completed, full or resumed from a session ticket.\n# TYPE cascade_tls_handshakes_total counter");
        for (kind, n) in [("full", &self.tls_full), ("resumed", &self.tls_resumed)] {
            let _ = writeln!(
                out,
                "cascade_tls_handshakes_total{{kind=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        if let Some(accepted) = self.accepted.get() {
            let _ = writeln!(out, "# HELP cascade_accepted_connections_total Connections accepted, by listening socket (one per accepting thread with --accept per-thread).\n# TYPE cascade_accepted_connections_total counter");
            for (i, n) in accepted.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "cascade_accepted_connections_total{{listener=\"{i}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(out, "# HELP cascade_http_request_duration_seconds Request latency by route.\n# TYPE cascade_http_request_duration_seconds histogram");
        self.render_latency(&mut out);
        let _ = writeln!(out, "# HELP cascade_http_series_dropped_total Requests not recorded in a latency series (series table full).\n# TYPE cascade_http_series_dropped_total counter");
        let _ = writeln!(
            out,
            "cascade_http_series_dropped_total {}",
            self.dropped.load(Ordering::Relaxed)
        );
        out
    }
}

fn method_index(m: &Method) -> usize {
    let name = m.as_str();
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|x| *x == name)
        .unwrap_or(METHODS.len() - 1)
}

/// Middleware: times every request and counts repository bytes.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_index(req.method());
    let is_repo = req.uri().path().starts_with("/repo/");
    let route = if is_repo {
        Some(metrics.repo)
    } else {
        let label = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, MatchedPath::as_str);
        metrics.route(label)
    };
    let resp = next.run(req).await;
    if is_repo {
        let len = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        metrics.repo_bytes.fetch_add(len, Ordering::Relaxed);
        metrics.repo_responses.fetch_add(1, Ordering::Relaxed);
    }
    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    match route {
        Some(r) => metrics.observe(r, method, resp.status().as_u16(), ns),
        None => {
            metrics.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    // Series are keyed by route, method and exact status; buckets render cumulatively.
    #[test]
    fn series_render() {
        let m = Metrics::default();
        let enroll = m.route("/api/client/enroll").unwrap();
        assert_eq!(m.route("/api/client/enroll"), Some(enroll));
        assert_eq!(m.route(REPO_ROUTE), Some(m.repo));
        m.observe(enroll, method_index(&Method::POST), 201, 2_000_000);
        m.observe(enroll, method_index(&Method::POST), 201, 20_000_000);
        m.observe(m.repo, method_index(&Method::GET), 304, 10);
        m.observe(
            m.repo,
            method_index(&Method::from_bytes(b"BREW").unwrap()),
            404,
            10,
        );
        let text = m.render(&[], &[]);
        let enroll = "method=\"POST\",route=\"/api/client/enroll\",status=\"201\"";
        for line in [
            format!("cascade_http_request_duration_seconds_bucket{{{enroll},le=\"0.001\"}} 0"),
            format!("cascade_http_request_duration_seconds_bucket{{{enroll},le=\"0.0025\"}} 1"),
            format!("cascade_http_request_duration_seconds_bucket{{{enroll},le=\"0.025\"}} 2"),
            format!("cascade_http_request_duration_seconds_count{{{enroll}}} 2"),
            format!("cascade_http_request_duration_seconds_sum{{{enroll}}} 0.022"),
            "cascade_http_request_duration_seconds_count{method=\"GET\",route=\"/repo/*\",status=\"304\"} 1".to_owned(),
            "cascade_http_request_duration_seconds_count{method=\"OTHER\",route=\"/repo/*\",status=\"404\"} 1".to_owned(),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }

    // Many labels and series fill the tables without losing the ones already there.
    #[test]
    fn full_tables() {
        let m = Metrics::default();
        let labels: Vec<String> = (0..ROUTES + 5).map(|i| format!("/r/{i}")).collect();
        let got: Vec<Option<usize>> = labels.iter().map(|l| m.route(l)).collect();
        assert_eq!(got.iter().filter(|r| r.is_some()).count(), ROUTES - 1);
        for (i, r) in got
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i, r)))
        {
            assert_eq!(m.route(&labels[i]), Some(r));
            for status in 100..110 {
                m.observe(r, 0, status, 1);
            }
        }
        assert_eq!(
            m.series
                .iter()
                .filter(|s| s.key.load(Ordering::Relaxed) != 0)
                .count(),
            SERIES
        );
        assert!(m.dropped.load(Ordering::Relaxed) > 0);
    }

    // The front's answers recorded from many threads (each writing its own shard) render as
    // the exact totals, merged with the routed `/repo/` series of the same key.
    #[test]
    fn front_answers_from_many_threads() {
        let m = Arc::new(Metrics::default());
        let started = Instant::now();
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        match i % 4 {
                            0 | 1 => m.repo_answered(false, 200, 4096 + t, started),
                            2 => m.repo_answered(true, 200, 4096, started),
                            _ => m.repo_answered(false, 304, 0, started),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // One routed answer of the same series and one of a status the front never gives.
        m.observe(m.repo, method_index(&Method::GET), 200, 10);
        m.repo_answered(false, 404, 0, started);
        let text = m.render(&[], &[]);
        let bytes: u64 = (0..8).map(|t| 500 * (4096 + t) + 250 * 4096).sum();
        assert_eq!(m.repo_bytes(), bytes);
        for line in [
            format!("cascade_repo_bytes_total {bytes}"),
            "cascade_repo_responses_total 8001".to_owned(),
            "cascade_http_request_duration_seconds_count{method=\"GET\",route=\"/repo/*\",status=\"200\"} 4001".to_owned(),
            "cascade_http_request_duration_seconds_bucket{method=\"GET\",route=\"/repo/*\",status=\"200\",le=\"+Inf\"} 4001".to_owned(),
            "cascade_http_request_duration_seconds_count{method=\"HEAD\",route=\"/repo/*\",status=\"200\"} 2000".to_owned(),
            "cascade_http_request_duration_seconds_count{method=\"GET\",route=\"/repo/*\",status=\"304\"} 2000".to_owned(),
            "cascade_http_request_duration_seconds_count{method=\"GET\",route=\"/repo/*\",status=\"404\"} 1".to_owned(),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        // One series per key, in order.
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("cascade_http_request_duration_seconds_count"))
            .collect();
        assert_eq!(series.len(), 4, "{text}");
        assert!(!text.contains("method=\"HEAD\",route=\"/repo/*\",status=\"304\""));
    }
}
