//! `fleet-bench`: the whole of cascade on one machine, measured. A signed upstream on
//! 127.0.0.1, the server mirroring it, M update agents relaying on 127.0.0.2… and N clients,
//! each bound to its own 127.x.y.z address with its own data directory, all in this process.
//!
//! Phases: (1) every client enrolls and installs version 1; (2) version 2 is published,
//! mirrored and announced (notify), every client updates through its office's relay;
//! (3) the same with version 3, and one relay is stopped when half the clients are done, so
//! its remaining clients must go down the fallback chain (the server). Each phase reports the
//! time until every client is current, per-client update times, the bytes sent by the server
//! and by the relays, and the process's peak RSS. A table goes to stdout, JSON to `--out`.
//!
//! Clients run one update cycle each (`cascade_testkit::update_once`, the same code as
//! `cascade update-now`), started at notify time through a pool of `--concurrency` cycles at
//! once: the pool stands in for the server's notify jitter, and keeps file descriptors bounded.
//!
//! `--processes` runs the per-role mode instead ([`roles`]): the server and each update agent
//! as separate `cascade` processes, measured one role at a time.
//!
//! The parts: [`world`] (the running system: addresses, payloads, policy, start),
//! [`phase`](mod@phase) (one measured phase: the pool of client cycles, retries, figures),
//! [`measure`] (what is read from the server, the relays and `/proc`), [`report`] (the
//! result file and its table), [`roles`] (the per-role mode).

mod measure;
mod phase;
mod report;
mod roles;
mod world;

use std::path::PathBuf;

use anyhow::{bail, Result};
use cascade_bench::procs::{machine, open_files_limit};
use clap::Parser;

use phase::phase;
use report::{print_table, Report};
use world::start;
// For `roles`, which shares them.
use measure::served;
use world::{client_ip, installed, payload, relay_ip};

/// The component every client installs.
const ITEM: &str = "patterns";

/// Command line.
#[derive(Debug, Clone, Parser)]
#[command(about = "Fleet benchmark: server, relays and N clients on loopback, in one process")]
struct Args {
    /// Simulated clients.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Update agents relaying (one office, i.e. one /16 client range, each).
    #[arg(long, default_value_t = 10)]
    relays: usize,
    /// Client update cycles running at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Size of the component file, KiB (each version changes about 1 % of it).
    #[arg(long, default_value_t = 64)]
    payload_kib: usize,
    /// Extra passes over clients that are not current after a phase.
    #[arg(long, default_value_t = 3)]
    retries: usize,
    /// Skip the phase with a relay stopped half-way.
    #[arg(long)]
    no_kill: bool,
    /// JSON result file.
    #[arg(long, default_value = "target/bench/fleet.json")]
    out: PathBuf,
    /// Working directory (default: a temporary directory, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Per-role mode: the server and each update agent as separate `cascade` processes
    /// (`cascade server`, `cascade agent --relay`); see the `roles` module.
    #[arg(long)]
    processes: bool,
    /// With --processes: the `cascade` binary (default: `cascade` next to this binary).
    #[arg(long)]
    cascade_bin: Option<PathBuf>,
    /// With --processes: seconds to wait before the last phase, so the server's memory of
    /// verified credentials (one minute) has expired.
    #[arg(long, default_value_t = 65)]
    cold_wait: u64,
    /// With --processes: each client cycle is a fresh one-shot agent (`cascade update-now`:
    /// new HTTP clients, new connections, full TLS handshakes) instead of a kept agent, as a
    /// daemon keeps it (connections and TLS sessions reused across cycles).
    #[arg(long)]
    one_shot: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.relays == 0 || args.relays > 240 {
        bail!("--relays must be 1..=240");
    }
    if args.clients > 64_000 * args.relays {
        bail!("at most 64000 clients per relay");
    }
    let (work, tmp) = cascade_bench::procs::work_dir(args.work_dir.as_deref(), "cascade-fleet-")?;
    if let Some(limit) = open_files_limit() {
        let need = u64::try_from(args.concurrency * 16 + 256).unwrap_or(u64::MAX);
        if limit < need {
            eprintln!(
                "warning: open files limit {limit} < ~{need} needed for the pool; raise ulimit -n"
            );
        }
    }
    if args.processes {
        let bin = cascade_bench::procs::cascade_bin(args.cascade_bin.as_deref())?;
        roles::run(&args, &bin, work).await?;
        drop(tmp);
        return Ok(());
    }
    eprintln!(
        "starting upstream, server and {} relays in {}",
        args.relays,
        work.display()
    );
    let mut w = start(args.clone(), work).await?;
    let mut phases = Vec::new();
    eprintln!(
        "phase 1: {} clients enroll and install version 1",
        args.clients
    );
    phases.push(phase(&mut w, "enroll + install v1", 1, false).await?);
    eprintln!("phase 2: version 2, notify, all relays up");
    phases.push(phase(&mut w, "update v2", 2, false).await?);
    if !args.no_kill {
        eprintln!("phase 3: version 3, notify, relay 1 stopped half-way");
        phases.push(phase(&mut w, "update v3, relay killed", 3, true).await?);
    }
    for (_, h) in &mut w.relays {
        if let Some(h) = h.as_mut() {
            let _ = h.stop().await;
        }
    }
    w.fleet.stop().await;
    let report = Report {
        bench: "fleet",
        clients: args.clients,
        relays: args.relays,
        concurrency: args.concurrency,
        payload_kib: args.payload_kib,
        machine: machine(),
        phases,
        note: "server, relays and clients share one process and its CPUs; peak RSS is the whole process",
    };
    print_table(&report);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    eprintln!("wrote {}", args.out.display());
    drop(tmp);
    let all = report.phases.iter().all(|p| p.current == p.clients);
    if !all {
        bail!("not every client converged");
    }
    Ok(())
}
