//! The Prometheus exposition text of the counters, the clients by state and the connected
//! event streams.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::Metrics;
use crate::notify::Role;

impl Metrics {
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
