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

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_bench::procs::{free_port, machine, open_files_limit, Machine};
use cascade_core::report::{Outcome, UpdateReport};
use cascade_core::Category;
use cascade_testkit::{start_fleet, update_once, wait_until, AgentHandle, Fleet, Upstream};
use clap::Parser;
use futures::StreamExt as _;
use serde::Serialize;

mod roles;

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

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
struct Phase {
    name: String,
    version: String,
    clients: usize,
    /// Clients with the phase's version installed at the end.
    current: usize,
    /// From notify (or phase start) until the last client was current, seconds.
    wall_seconds: f64,
    /// Clients per second over the wall time.
    clients_per_second: f64,
    /// One client's update cycle, start to end (ms).
    cycle_p50_ms: u64,
    cycle_p99_ms: u64,
    cycle_max_ms: u64,
    /// From notify until the client was current, queueing in the pool included (ms).
    since_notify_p50_ms: u64,
    since_notify_p99_ms: u64,
    /// Cycles that returned an error or left the client not current (before retries).
    failed_first_pass: usize,
    /// Retry passes needed.
    retry_passes: usize,
    /// Clients whose components came from a relay, from the server, from elsewhere.
    served_by_relay: usize,
    served_by_server: usize,
    served_by_other: usize,
    /// Clients that saw a failed step before the one that served them.
    fell_back: usize,
    /// Bytes sent from the server's /repo/ (its `cascade_repo_bytes_total`), relays included.
    server_bytes: u64,
    /// Bytes served by the relays (`/relay/stats` `bytes_served`, summed).
    relay_bytes: u64,
    /// Fetches the relays made upstream.
    relay_upstream_fetches: u64,
    /// Relay bytes / (relay bytes + server bytes).
    offload: f64,
    /// The relay stopped half-way, if any.
    killed_relay: Option<String>,
    /// Peak RSS of the whole process (server, relays, clients) at the end of the phase, KiB.
    process_peak_rss_kib: u64,
}

/// The whole result file.
#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    clients: usize,
    relays: usize,
    concurrency: usize,
    payload_kib: usize,
    machine: Machine,
    phases: Vec<Phase>,
    note: &'static str,
}

/// The running system.
struct World {
    work: PathBuf,
    upstream: Upstream,
    root: PathBuf,
    fleet: Fleet,
    relays: Vec<(SocketAddr, Option<AgentHandle>)>,
    http: reqwest::Client,
    args: Args,
}

fn relay_ip(i: usize) -> Result<Ipv4Addr> {
    let last = u8::try_from(i + 2).context("too many relays")?;
    Ok(Ipv4Addr::new(127, 0, 0, last))
}

fn office_of(k: usize, relays: usize) -> usize {
    k % relays
}

/// Client `k`: office `k % M` owns 127.(10+office).0.0/16; its j-th client is
/// 127.(10+office).(j / 250).(j % 250 + 1).
fn client_ip(k: usize, relays: usize) -> Result<IpAddr> {
    let office = u8::try_from(10 + office_of(k, relays)).context("too many relays")?;
    let j = k / relays;
    let hi = u8::try_from(j / 250).context("too many clients per office (max 64000)")?;
    let lo = u8::try_from(j % 250 + 1).context("client address")?;
    Ok(IpAddr::V4(Ipv4Addr::new(127, office, hi, lo)))
}

/// Deterministic content of `kib` KiB; version `v` rewrites about 1 % of it.
fn payload(kib: usize, v: u32) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out: Vec<u8> = (0..kib * 1024).map(|_| next().to_le_bytes()[0]).collect();
    let len = out.len().max(1);
    for round in 1..v {
        for _ in 0..len / 100 {
            let r = next();
            let at = usize::try_from(r % 0x7FFF_FFFF).unwrap_or(0) % len;
            out[at] = (r >> 8).to_le_bytes()[0] ^ round.to_le_bytes()[0];
        }
    }
    out
}

fn policy(w: &World) -> Result<String> {
    let up = w.upstream.url().context("upstream URL")?;
    let mut s = format!("mode = \"customized\"\nactiveupdate_url = \"{up}\"\n");
    for (addr, _) in &w.relays {
        let _ = write!(s, "[[agent]]\naddress = \"{addr}\"\n");
    }
    for (i, (addr, _)) in w.relays.iter().enumerate() {
        let _ = write!(
            s,
            "[[sources]]\nrange = \"127.{}.0.0/16\"\nagent = \"{addr}\"\n",
            10 + i
        );
    }
    Ok(s)
}

fn client_dir(w: &World, k: usize) -> PathBuf {
    w.work.join("clients").join(k.to_string())
}

fn installed(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("installed/components").join(ITEM).join("current"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The server's `cascade_repo_bytes_total`.
async fn server_bytes(w: &World) -> Result<u64> {
    let text = w
        .http
        .get(w.fleet.url.join("metrics")?)
        .bearer_auth(&w.fleet.admin)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("cascade_repo_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("no cascade_repo_bytes_total in /metrics")
}

/// One relay's (`bytes_served`, `upstream_fetches`); zeros when it does not answer.
async fn relay_stats(w: &World, addr: SocketAddr) -> (u64, u64) {
    let Ok(resp) = w
        .http
        .get(format!("http://{addr}/relay/stats"))
        .send()
        .await
    else {
        return (0, 0);
    };
    let Ok(r) = resp.json::<cascade_core::report::RelayReport>().await else {
        return (0, 0);
    };
    (r.bytes_served, r.upstream_fetches)
}

async fn all_relay_stats(w: &World) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (addr, _) in &w.relays {
        out.push(relay_stats(w, *addr).await);
    }
    out
}

/// How a client's components were served: ("relay" | "server" | "other", fell back?).
fn served(report: &UpdateReport) -> (&'static str, bool) {
    let steps: Vec<_> = report
        .attempts
        .iter()
        .filter(|a| a.category == Some(Category::Components))
        .collect();
    let fell_back = steps.iter().any(|a| a.outcome == Outcome::Failed);
    let by = steps
        .iter()
        .find(|a| matches!(a.outcome, Outcome::Ok | Outcome::UpToDate))
        .map_or("other", |a| {
            if a.source.starts_with("agent:") {
                "relay"
            } else if a.source == "server" {
                "server"
            } else {
                "other"
            }
        });
    (by, fell_back)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One client's cycle: (k, started, ended, report or error text).
type Done = (usize, Instant, Instant, Result<UpdateReport, String>);

/// Runs the cycles of `ks` through the pool; calls `on_done(n_done)` after each.
async fn run_pool(
    w: &mut World,
    ks: Vec<usize>,
    kill_at: Option<usize>,
    killed: &mut Option<(usize, (u64, u64))>,
) -> Result<Vec<Done>> {
    let cfgs: Vec<_> = ks
        .iter()
        .map(|&k| {
            Ok((
                k,
                w.fleet.agent_config(
                    &client_dir(w, k),
                    client_ip(k, w.args.relays)?,
                    None,
                    Some(&w.root),
                ),
            ))
        })
        .collect::<Result<_>>()?;
    let mut stream = futures::stream::iter(cfgs)
        .map(|(k, cfg)| {
            tokio::spawn(async move {
                let start = Instant::now();
                let r = update_once(cfg).await.map_err(|e| e.to_string());
                (k, start, Instant::now(), r)
            })
        })
        .buffer_unordered(w.args.concurrency.max(1));
    let mut done = Vec::with_capacity(ks.len());
    while let Some(joined) = stream.next().await {
        done.push(joined.context("client task")?);
        if kill_at == Some(done.len()) && killed.is_none() {
            let i = 0;
            let addr = w.relays[i].0;
            let stats = relay_stats(w, addr).await;
            if let Some(mut h) = w.relays[i].1.take() {
                let _ = h.stop().await;
            }
            eprintln!(
                "  stopped relay {addr} after {} of {} clients",
                done.len(),
                ks.len()
            );
            *killed = Some((i, stats));
        }
    }
    Ok(done)
}

/// Publishes `version` (unless it is "1", published at start), mirrors, notifies, runs every
/// client, retries the ones left behind, and measures.
#[allow(clippy::too_many_lines)]
async fn phase(w: &mut World, name: &str, version: u32, kill: bool) -> Result<Phase> {
    let v = version.to_string();
    if version > 1 {
        let body = payload(w.args.payload_kib, version);
        w.upstream
            .publish(Category::Components, ITEM, &v, &[("patterns.db", &body)])
            .await?;
        w.fleet.mirror().await.context("mirror")?;
    }
    let server0 = server_bytes(w).await?;
    let relay0 = all_relay_stats(w).await;
    if version > 1 {
        w.fleet.notify().await.context("notify")?;
    }
    let t0 = Instant::now();
    let n = w.args.clients;
    let mut killed = None;
    let kill_at = kill.then_some(n / 2).filter(|&h| h > 0);
    let first = run_pool(w, (0..n).collect(), kill_at, &mut killed).await?;

    let mut cycle_ms = Vec::with_capacity(n);
    let mut since_ms = Vec::with_capacity(n);
    let (mut by_relay, mut by_server, mut by_other, mut fell_back) = (0, 0, 0, 0);
    let mut behind = Vec::new();
    let mut last_done = t0;
    let mut errors: Vec<String> = Vec::new();
    for (k, start, end, r) in &first {
        let current = installed(&client_dir(w, *k)).as_deref() == Some(v.as_str());
        match r {
            Ok(report) if current => {
                cycle_ms.push(millis(end.duration_since(*start)));
                since_ms.push(millis(end.duration_since(t0)));
                last_done = last_done.max(*end);
                let (by, fb) = served(report);
                match by {
                    "relay" => by_relay += 1,
                    "server" => by_server += 1,
                    _ => by_other += 1,
                }
                fell_back += usize::from(fb);
            }
            Ok(report) => {
                if errors.len() < 5 {
                    errors.push(format!("client {k}: not current: {:?}", report.attempts));
                }
                behind.push(*k);
            }
            Err(e) => {
                if errors.len() < 5 {
                    errors.push(format!("client {k}: {e}"));
                }
                behind.push(*k);
            }
        }
    }
    for e in &errors {
        eprintln!("  {e}");
    }
    let failed_first_pass = behind.len();
    let mut retry_passes = 0;
    while !behind.is_empty() && retry_passes < w.args.retries {
        retry_passes += 1;
        let again = run_pool(w, std::mem::take(&mut behind), None, &mut killed).await?;
        for (k, _, end, r) in again {
            if r.is_ok() && installed(&client_dir(w, k)).as_deref() == Some(v.as_str()) {
                since_ms.push(millis(end.duration_since(t0)));
                last_done = last_done.max(end);
                by_other += 1;
            } else {
                behind.push(k);
            }
        }
    }
    let wall = last_done.duration_since(t0).as_secs_f64();
    let server_bytes = server_bytes(w).await?.saturating_sub(server0);
    let relay1 = all_relay_stats(w).await;
    let (mut relay_bytes, mut relay_fetches) = (0u64, 0u64);
    for (i, (b0, f0)) in relay0.iter().enumerate() {
        let (b1, f1) = match killed {
            Some((ki, stats)) if ki == i => stats,
            _ => relay1.get(i).copied().unwrap_or((0, 0)),
        };
        relay_bytes += b1.saturating_sub(*b0);
        relay_fetches += f1.saturating_sub(*f0);
    }
    cycle_ms.sort_unstable();
    since_ms.sort_unstable();
    let current = (0..n)
        .filter(|&k| installed(&client_dir(w, k)).as_deref() == Some(v.as_str()))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let offload = if relay_bytes + server_bytes == 0 {
        0.0
    } else {
        relay_bytes as f64 / (relay_bytes + server_bytes) as f64
    };
    #[allow(clippy::cast_precision_loss)]
    let clients_per_second = if wall > 0.0 { n as f64 / wall } else { 0.0 };
    Ok(Phase {
        name: name.to_owned(),
        version: v,
        clients: n,
        current,
        wall_seconds: (wall * 1000.0).round() / 1000.0,
        clients_per_second: clients_per_second.round(),
        cycle_p50_ms: percentile(&cycle_ms, 0.50),
        cycle_p99_ms: percentile(&cycle_ms, 0.99),
        cycle_max_ms: cycle_ms.last().copied().unwrap_or(0),
        since_notify_p50_ms: percentile(&since_ms, 0.50),
        since_notify_p99_ms: percentile(&since_ms, 0.99),
        failed_first_pass,
        retry_passes,
        served_by_relay: by_relay,
        served_by_server: by_server,
        served_by_other: by_other,
        fell_back,
        server_bytes,
        relay_bytes,
        relay_upstream_fetches: relay_fetches,
        offload: (offload * 1000.0).round() / 1000.0,
        killed_relay: killed.map(|(i, _)| w.relays[i].0.to_string()),
        process_peak_rss_kib: proc_status("VmHWM:"),
    })
}

async fn start(args: Args, work: PathBuf) -> Result<World> {
    let upstream = Upstream::create(
        &work.join("upstream"),
        Some(SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await?;
    let body = payload(args.payload_kib, 1);
    upstream
        .publish(Category::Components, ITEM, "1", &[("patterns.db", &body)])
        .await?;
    let root = work.join("upstream-root.json");
    upstream.write_root(&root)?;
    let fleet = start_fleet(
        &work.join("server"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(root.clone()),
    )
    .await?;
    let mut relays = Vec::new();
    for i in 0..args.relays {
        relays.push((free_port(relay_ip(i)?)?, None));
    }
    let http = cascade_client::http_builder(fleet.ca_pem())?.build()?;
    let mut w = World {
        work,
        upstream,
        root,
        fleet,
        relays,
        http,
        args,
    };
    w.fleet.apply_policy(&policy(&w)?).await.context("policy")?;
    w.fleet.mirror().await.context("first mirror")?;
    for i in 0..w.relays.len() {
        let addr = w.relays[i].0;
        let cfg = w.fleet.agent_config(
            &w.work.join("relays").join(i.to_string()),
            IpAddr::V4(relay_ip(i)?),
            Some(addr),
            Some(&w.root),
        );
        w.relays[i].1 = Some(AgentHandle::spawn(cfg));
    }
    for i in 0..w.relays.len() {
        let addr = w.relays[i].0;
        let dir = w.work.join("relays").join(i.to_string());
        wait_until(Duration::from_secs(60), || async {
            std::net::TcpStream::connect(addr).is_ok() && installed(&dir).is_some()
        })
        .await
        .with_context(|| format!("relay {addr} did not start"))?;
    }
    Ok(w)
}

fn kib(b: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = b as f64 / (1024.0 * 1024.0);
    format!("{m:.1} MiB")
}

fn print_table(r: &Report) {
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
