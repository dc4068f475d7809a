//! Prometheus text-format metrics, hand-written: request latency histograms per route,
//! bytes served from the repository, notify fan-out, connected event streams and clients
//! by state (counted from the database at scrape time).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;

use crate::notify::Role;
use crate::state::AppState;

const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    latency: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    repo_bytes: AtomicU64,
    repo_responses: AtomicU64,
    notifies: AtomicU64,
    delivered_agents: AtomicU64,
    delivered_clients: AtomicU64,
    mirror_ok: AtomicU64,
    mirror_failed: AtomicU64,
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

    /// One notice written to a stream.
    pub fn delivered(&self, role: Role) {
        match role {
            Role::Agent => &self.delivered_agents,
            Role::Client => &self.delivered_clients,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        let Ok(mut map) = self.latency.lock() else {
            return;
        };
        let h = map
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
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
        let _ = writeln!(
            out,
            "cascade_repo_bytes_total {}",
            self.repo_bytes.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP cascade_repo_responses_total Responses from /repo.\n# TYPE cascade_repo_responses_total counter");
        let _ = writeln!(
            out,
            "cascade_repo_responses_total {}",
            self.repo_responses.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP cascade_http_request_duration_seconds Request latency by route.\n# TYPE cascade_http_request_duration_seconds histogram");
        if let Ok(map) = self.latency.lock() {
            for ((method, route, status), h) in map.iter() {
                let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
                for (le, n) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(
                        out,
                        "cascade_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "cascade_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "cascade_http_request_duration_seconds_sum{{{labels}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "cascade_http_request_duration_seconds_count{{{labels}}} {}",
                    h.count
                );
            }
        }
        out
    }
}

/// Middleware: times every request and counts repository bytes.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let is_repo = req.uri().path().starts_with("/repo/");
    let route = if is_repo {
        "/repo/*".to_owned()
    } else {
        req.extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned())
    };
    let resp = next.run(req).await;
    if is_repo {
        let len = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        state.metrics.repo_bytes.fetch_add(len, Ordering::Relaxed);
        state.metrics.repo_responses.fetch_add(1, Ordering::Relaxed);
    }
    state.metrics.observe(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}
