//! The result file (JSON to `--out`) and the table printed to stdout.

use cascade_bench::procs::Machine;
use serde::Serialize;

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Phase {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) clients: usize,
    /// Clients with the phase's version installed at the end.
    pub(crate) current: usize,
    /// From notify (or phase start) until the last client was current, seconds.
    pub(crate) wall_seconds: f64,
    /// Clients per second over the wall time.
    pub(crate) clients_per_second: f64,
    /// One client's update cycle, start to end (ms).
    pub(crate) cycle_p50_ms: u64,
    pub(crate) cycle_p99_ms: u64,
    pub(crate) cycle_max_ms: u64,
    /// From notify until the client was current, queueing in the pool included (ms).
    pub(crate) since_notify_p50_ms: u64,
    pub(crate) since_notify_p99_ms: u64,
    /// Cycles that returned an error or left the client not current (before retries).
    pub(crate) failed_first_pass: usize,
    /// Retry passes needed.
    pub(crate) retry_passes: usize,
    /// Clients whose components came from a relay, from the server, from elsewhere.
    pub(crate) served_by_relay: usize,
    pub(crate) served_by_server: usize,
    pub(crate) served_by_other: usize,
    /// Clients that saw a failed step before the one that served them.
    pub(crate) fell_back: usize,
    /// Bytes sent from the server's /repo/ (its `cascade_repo_bytes_total`), relays included.
    pub(crate) server_bytes: u64,
    /// Bytes served by the relays (`/relay/stats` `bytes_served`, summed).
    pub(crate) relay_bytes: u64,
    /// Fetches the relays made upstream.
    pub(crate) relay_upstream_fetches: u64,
    /// Relay bytes / (relay bytes + server bytes).
    pub(crate) offload: f64,
    /// The relay stopped half-way, if any.
    pub(crate) killed_relay: Option<String>,
    /// Peak RSS of the whole process (server, relays, clients) at the end of the phase, KiB.
    pub(crate) process_peak_rss_kib: u64,
}

/// The whole result file.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) bench: &'static str,
    pub(crate) clients: usize,
    pub(crate) relays: usize,
    pub(crate) concurrency: usize,
    pub(crate) payload_kib: usize,
    pub(crate) machine: Machine,
    pub(crate) phases: Vec<Phase>,
    pub(crate) note: &'static str,
}

pub(crate) fn kib(b: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = b as f64 / (1024.0 * 1024.0);
    format!("{m:.1} MiB")
}

pub(crate) fn print_table(r: &Report) {
    println!(
        "\nfleet bench: {} clients, {} relays, pool {}, payload {} KiB, {} CPUs ({})",
        r.clients, r.relays, r.concurrency, r.payload_kib, r.machine.nproc, r.machine.cpu
    );
    println!(
        "{:<22} {:>9} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8} {:>9} {:>9}",
        "phase",
        "current",
        "wall s",
        "cyc p50",
        "cyc p99",
        "t p99",
        "server",
        "relays",
        "offload",
        "fallback",
        "peak RSS"
    );
    for p in &r.phases {
        println!(
            "{:<22} {:>9} {:>9.2} {:>6}ms {:>6}ms {:>6}ms {:>10} {:>10} {:>7.1}% {:>9} {:>6} MiB",
            p.name,
            format!("{}/{}", p.current, p.clients),
            p.wall_seconds,
            p.cycle_p50_ms,
            p.cycle_p99_ms,
            p.since_notify_p99_ms,
            kib(p.server_bytes),
            kib(p.relay_bytes),
            p.offload * 100.0,
            p.fell_back,
            p.process_peak_rss_kib / 1024
        );
    }
}
