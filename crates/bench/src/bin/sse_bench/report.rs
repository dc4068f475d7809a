//! The result (JSON to `--out`) and the figures derived from it.

use serde::Serialize;

/// The result.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) clients: usize,
    pub(crate) tls: bool,
    /// The bench's open-files limit after raising it (the server raises its own the same way).
    pub(crate) open_files_limit: u64,
    pub(crate) streams_held: usize,
    pub(crate) notified: usize,
    pub(crate) enroll_seconds: f64,
    pub(crate) connect_seconds: f64,
    pub(crate) server_rss_idle_kib: u64,
    /// After enrolling every client, before the first stream opens.
    pub(crate) server_rss_enrolled_kib: u64,
    pub(crate) server_rss_holding_kib: u64,
    pub(crate) server_rss_peak_kib: u64,
    /// (RSS holding - RSS idle) / streams held: includes what enrolling the clients left
    /// behind (the database's page cache, the allocator's free lists).
    pub(crate) server_rss_per_stream_kib: f64,
    /// (RSS holding - RSS enrolled) / streams held: what the streams themselves cost.
    pub(crate) server_rss_per_stream_after_enroll_kib: f64,
    pub(crate) notify_request_ms: f64,
    pub(crate) notify_p50_ms: f64,
    pub(crate) notify_p99_ms: f64,
    pub(crate) notify_last_ms: f64,
    /// CPU time the server used from the notify until the last stream had it (ms).
    pub(crate) server_cpu_fan_out_ms: f64,
}

#[allow(clippy::cast_precision_loss)] // KiB counts for display
pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[allow(clippy::cast_precision_loss)] // KiB counts for display
pub(crate) fn per_stream(r: &Report, before_kib: u64) -> f64 {
    r.server_rss_holding_kib.saturating_sub(before_kib) as f64 / r.streams_held.max(1) as f64
}
