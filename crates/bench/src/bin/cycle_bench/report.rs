//! The report (JSON with `--json`) and its table: per round the server's CPU per cycle
//! beside the reference's, the medians and their ratio.

use cascade_bench::procs::Machine;
use serde::Serialize;

/// One measured round.
#[derive(Debug, Serialize)]
pub(crate) struct Round {
    pub(crate) cycles: usize,
    /// Cycles that failed (an error from either request).
    pub(crate) errors: usize,
    pub(crate) wall_seconds: f64,
    pub(crate) cycles_per_second: f64,
    /// Server CPU (user + system) over the round per cycle, and its two parts.
    pub(crate) server_cpu_us_per_cycle: f64,
    pub(crate) server_user_us_per_cycle: f64,
    pub(crate) server_system_us_per_cycle: f64,
    /// Requests the server answered per cycle, in all and by `method route status`.
    pub(crate) server_requests_per_cycle: f64,
    pub(crate) server_requests_per_cycle_by_route: std::collections::BTreeMap<String, f64>,
    /// TLS handshakes the server completed in the round: full, resumed.
    pub(crate) server_tls_handshakes: (u64, u64),
    /// This process's CPU per cycle (the clients).
    pub(crate) bench_cpu_us_per_cycle: f64,
    /// `/proc/loadavg` (1, 5, 15 min) before and after the round.
    pub(crate) load_before: String,
    pub(crate) load_after: String,
    /// The reference run after this round (`--reference`), if any.
    pub(crate) reference: Option<ReferenceRound>,
}

/// The same cycles, clients and pace against the reference server.
#[derive(Debug, Serialize)]
pub(crate) struct ReferenceRound {
    pub(crate) errors: usize,
    pub(crate) wall_seconds: f64,
    /// Its CPU (master and workers, user + system) per cycle.
    pub(crate) cpu_us_per_cycle: f64,
}

/// The report.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) bench: &'static str,
    pub(crate) clients: usize,
    pub(crate) concurrency: usize,
    pub(crate) cycles_per_round: usize,
    /// Cycles started per second (0: as fast as the workers go).
    pub(crate) rate: f64,
    pub(crate) cascade_bin: String,
    pub(crate) machine: Machine,
    pub(crate) rounds: Vec<Round>,
    /// Median over the rounds of the server's CPU per cycle.
    pub(crate) median_server_cpu_us_per_cycle: f64,
    pub(crate) server_peak_rss_kib: u64,
    /// The reference server (`nginx -v`), if one ran.
    pub(crate) reference: Option<String>,
    /// Median over the rounds of the reference's CPU per cycle.
    pub(crate) median_reference_cpu_us_per_cycle: Option<f64>,
    /// The server's median over the reference's.
    pub(crate) ratio_to_reference: Option<f64>,
    pub(crate) note: &'static str,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) fn print_table(r: &Report) {
    println!(
        "\ncycle bench: {} kept clients, {} at a time, {} cycles a round, {}; {} CPUs ({}); {}",
        r.clients,
        r.concurrency,
        r.cycles_per_round,
        if r.rate > 0.0 {
            format!("{} cycles/s paced", r.rate)
        } else {
            "unpaced".to_owned()
        },
        r.machine.nproc,
        r.machine.cpu,
        r.cascade_bin
    );
    println!(
        "{:<6} {:>8} {:>10} {:>14} {:>12} {:>12} {:>7} {:>9} {:>11} {:>8}  load before → after",
        "round",
        "wall s",
        "cycles/s",
        "server µs/c",
        "nginx µs/c",
        "user/sys",
        "req/c",
        "TLS f/r",
        "bench µs/c",
        "errors"
    );
    for (i, x) in r.rounds.iter().enumerate() {
        println!(
            "{:<6} {:>8.2} {:>10.0} {:>14.1} {:>12} {:>12} {:>7.2} {:>9} {:>11.1} {:>8}  {} → {}",
            i + 1,
            x.wall_seconds,
            x.cycles_per_second,
            x.server_cpu_us_per_cycle,
            x.reference
                .as_ref()
                .map_or_else(|| "-".to_owned(), |r| format!("{:.1}", r.cpu_us_per_cycle)),
            format!(
                "{:.0}/{:.0}",
                x.server_user_us_per_cycle, x.server_system_us_per_cycle
            ),
            x.server_requests_per_cycle,
            format!(
                "{}/{}",
                x.server_tls_handshakes.0, x.server_tls_handshakes.1
            ),
            x.bench_cpu_us_per_cycle,
            x.errors + x.reference.as_ref().map_or(0, |r| r.errors),
            x.load_before,
            x.load_after
        );
    }
    println!(
        "median server CPU per cycle: {:.1} µs; server peak RSS {} MiB",
        r.median_server_cpu_us_per_cycle,
        r.server_peak_rss_kib / 1024
    );
    if let (Some(name), Some(m), Some(ratio)) = (
        &r.reference,
        r.median_reference_cpu_us_per_cycle,
        r.ratio_to_reference,
    ) {
        println!(
            "median reference CPU per cycle: {m:.1} µs ({name}, the same clients, cycles and \
             pace, answers from its configuration); server / reference: {ratio:.2}"
        );
    }
    if let Some(x) = r.rounds.last() {
        for (route, n) in &x.server_requests_per_cycle_by_route {
            println!("  {route}: {n:.2} per cycle");
        }
    }
}
