//! `cycle-bench`: what one kept agent's update cycle costs the server, and nothing else.
//! It starts a real `cascade server` as a child process (`--cascade-bin`, its defaults: TLS
//! from its own private CA, SQLite), enrolls `--clients` clients, each with its own source
//! address (127.20.x.y) and its own HTTPS client, and runs their cycles as a kept agent does:
//! over the client's one kept-alive connection, `GET /api/client/policy` with
//! `If-None-Match` (304 while the policy is unchanged), then `POST /api/client/checkin` with
//! its installed versions and the report of its last update. No update agents, no
//! repository traffic: the server's cost per cycle with little noise from the rest.
//!
//! One warm-up cycle per client (its connection and TLS session, the first policy, the
//! server's memory of its verified credential), then `--rounds` measured rounds of
//! `--cycles` cycles each, `--concurrency` clients at a time (each worker takes its share of
//! the clients in turn, so no client runs two cycles at once). Per round: the server's CPU
//! time (user + system from `/proc/PID/stat`) per cycle, the requests it answered per cycle
//! (its `/metrics`), its TLS handshakes, this process's CPU per cycle, the wall time, and the
//! load average before and after. `--perf FILE` records the server with `perf record -g`
//! over the measured rounds. A table goes to stdout (`--json`: the report as JSON instead).
//!
//! The reference (`--reference nginx`, the default): after each round, the same clients from
//! the same addresses run the same cycles at the same pace against nginx over TLS on this
//! machine ([`cascade_bench::reference`]), which answers the two requests from its
//! configuration alone (a 304, and the check-in's answer). Its CPU per cycle is what two
//! requests on kept TLS connections cost here at that pace with no work behind them; the
//! server's figure is printed as a ratio to it. On a small VM a paced request costs several
//! times a busy one for any server (each wakes a cold CPU), so the ratio is the figure to
//! compare between machines.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_bench::procs::{
    cascade_bin, cpu_split_us, cpu_us, loadavg, machine, server_counts, start_server, status_kib,
    ByRoute, Machine,
};
use cascade_bench::reference::{nginx_bin, NginxTls};
use cascade_client::proto::{CheckInResponse, EnrollRequest};
use cascade_client::{AdminClient, Client};
use cascade_core::report::{Attempt, CheckIn, Outcome, UpdateReport};
use cascade_core::Category;
use clap::Parser;
use futures::StreamExt as _;
use serde::Serialize;
use url::Url;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    about = "Server CPU per kept agent's update cycle (policy 304 + check-in), one real server process"
)]
struct Args {
    /// Enrolled clients, each with its own kept connection.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Cycles in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured cycles per round.
    #[arg(long, default_value_t = 4000)]
    cycles: usize,
    /// Measured rounds (each reported; the median too).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Cycles started per second in all, evenly paced (a fleet on its schedule); 0: each
    /// worker starts its next cycle as soon as the last one ends (the server's saturation).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// The `cascade` binary (default: `cascade` next to this binary).
    #[arg(long)]
    cascade_bin: Option<PathBuf>,
    /// Working directory (default: a temporary directory, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Record the server with `perf record -g` into FILE over the measured rounds.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// The reference run after each round: `nginx` (over TLS, the same clients from the same
    /// addresses at the same pace, the two requests answered from its configuration), or
    /// `none`.
    #[arg(long, value_enum, default_value_t = Reference::Nginx)]
    reference: Reference,
    /// The nginx binary for the reference (default: /usr/sbin/nginx or the like, or PATH).
    #[arg(long)]
    nginx_bin: Option<PathBuf>,
    /// nginx worker processes for the reference (default: `auto`, one per CPU).
    #[arg(long)]
    nginx_workers: Option<usize>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// Refuses values the bench cannot run with, naming the option.
    fn check(&self) -> Result<()> {
        if self.clients == 0 || self.clients > 64_000 {
            bail!("--clients must be 1..=64000");
        }
        if self.concurrency == 0 || self.concurrency > self.clients {
            bail!("--concurrency must be 1..=--clients");
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!("--rate must be 0 or a number of cycles per second");
        }
        Ok(())
    }
}

/// What the rounds are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Reference {
    /// nginx over TLS ([`cascade_bench::reference`]).
    Nginx,
    /// No reference run.
    None,
}

/// One simulated kept agent.
struct Agent {
    client: Client,
    credential: String,
    /// The policy revision it holds (from its last 200).
    revision: Option<i64>,
    check_in: CheckIn,
}

/// One measured round.
#[derive(Debug, Serialize)]
struct Round {
    cycles: usize,
    /// Cycles that failed (an error from either request).
    errors: usize,
    wall_seconds: f64,
    cycles_per_second: f64,
    /// Server CPU (user + system) over the round per cycle, and its two parts.
    server_cpu_us_per_cycle: f64,
    server_user_us_per_cycle: f64,
    server_system_us_per_cycle: f64,
    /// Requests the server answered per cycle, in all and by `method route status`.
    server_requests_per_cycle: f64,
    server_requests_per_cycle_by_route: std::collections::BTreeMap<String, f64>,
    /// TLS handshakes the server completed in the round: full, resumed.
    server_tls_handshakes: (u64, u64),
    /// This process's CPU per cycle (the clients).
    bench_cpu_us_per_cycle: f64,
    /// `/proc/loadavg` (1, 5, 15 min) before and after the round.
    load_before: String,
    load_after: String,
    /// The reference run after this round (`--reference`), if any.
    reference: Option<ReferenceRound>,
}

/// The same cycles, clients and pace against the reference server.
#[derive(Debug, Serialize)]
struct ReferenceRound {
    errors: usize,
    wall_seconds: f64,
    /// Its CPU (master and workers, user + system) per cycle.
    cpu_us_per_cycle: f64,
}

/// The report.
#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    clients: usize,
    concurrency: usize,
    cycles_per_round: usize,
    /// Cycles started per second (0: as fast as the workers go).
    rate: f64,
    cascade_bin: String,
    machine: Machine,
    rounds: Vec<Round>,
    /// Median over the rounds of the server's CPU per cycle.
    median_server_cpu_us_per_cycle: f64,
    server_peak_rss_kib: u64,
    /// The reference server (`nginx -v`), if one ran.
    reference: Option<String>,
    /// Median over the rounds of the reference's CPU per cycle.
    median_reference_cpu_us_per_cycle: Option<f64>,
    /// The server's median over the reference's.
    ratio_to_reference: Option<f64>,
    note: &'static str,
}

/// Client `k`'s source address: 127.20.(k / 250).(k % 250 + 1).
fn source(k: usize) -> Result<IpAddr> {
    let hi = u8::try_from(k / 250).context("at most 64,000 clients")?;
    let lo = u8::try_from(k % 250 + 1).context("client address")?;
    Ok(IpAddr::V4(Ipv4Addr::new(127, 20, hi, lo)))
}

/// What a kept agent reports after a cycle with nothing new: the versions it has, one
/// up-to-date attempt per category from its relay.
fn check_in(ip: IpAddr) -> CheckIn {
    let attempts = [Category::Components, Category::Programs]
        .into_iter()
        .map(|c| Attempt {
            category: Some(c),
            step: 1,
            source: "agent:127.0.0.2:8080".into(),
            outcome: Outcome::UpToDate,
            reason: None,
            bytes: 1_800,
            millis: 4,
        })
        .collect();
    CheckIn {
        ip: Some(ip.to_string()),
        installed: [(Category::Components, "7".to_owned())].into(),
        last_update: Some(UpdateReport {
            finished_at: Some(1_700_000_000),
            outcome: Outcome::UpToDate,
            attempts,
        }),
        relay: None,
        agent_version: Some("0.1.0".into()),
    }
}

/// Enrolls every client, `concurrency` at a time.
async fn enroll(url: &Url, ca: &[u8], token: &str, args: &Args) -> Result<Vec<Agent>> {
    let made: Vec<Result<Agent>> = futures::stream::iter(0..args.clients)
        .map(|k| {
            let (url, ca, token) = (url.clone(), ca.to_owned(), token.to_owned());
            async move {
                let ip = source(k)?;
                let http = cascade_client::http_builder(Some(&ca))?
                    .local_address(ip)
                    .timeout(Duration::from_secs(30))
                    .build()?;
                let client = Client::with_http(url, http);
                let done = client
                    .enroll(
                        &token,
                        &EnrollRequest {
                            name: format!("cycle-{k}"),
                            ..EnrollRequest::default()
                        },
                    )
                    .await
                    .with_context(|| format!("enrolling client {k}"))?;
                Ok(Agent {
                    client,
                    credential: done.credential,
                    revision: None,
                    check_in: check_in(ip),
                })
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    made.into_iter().collect()
}

/// The clients of the reference run: the same addresses and check-ins, holding `revision`
/// (the reference answers every policy request 304 and every check-in with it).
fn reference_agents(url: &Url, ca: &[u8], revision: i64, clients: usize) -> Result<Vec<Agent>> {
    (0..clients)
        .map(|k| {
            let ip = source(k)?;
            let http = cascade_client::http_builder(Some(ca))?
                .local_address(ip)
                .timeout(Duration::from_secs(30))
                .build()?;
            Ok(Agent {
                client: Client::with_http(url.clone(), http),
                credential: "reference".into(),
                revision: Some(revision),
                check_in: check_in(ip),
            })
        })
        .collect()
}

/// nginx's answers to a cycle's two requests: 304 to the policy, `revision` to the check-in.
fn reference_locations(revision: i64) -> Result<String> {
    let answer = serde_json::to_string(&CheckInResponse {
        policy_revision: revision,
    })?;
    Ok(format!(
        "location = /api/client/policy {{ add_header ETag '\"{revision}\"' always; return 304; }}\n\
         location = /api/client/checkin {{ default_type application/json; return 200 '{answer}'; }}\n\
         location / {{ return 404; }}"
    ))
}

/// Clients `0..n` in `workers` groups: worker w takes clients w, w + workers, …
fn grouped(agents: Vec<Agent>, workers: usize) -> Vec<Vec<Agent>> {
    let mut groups: Vec<Vec<Agent>> = (0..workers).map(|_| Vec::new()).collect();
    for (k, a) in agents.into_iter().enumerate() {
        if let Some(g) = groups.get_mut(k % workers) {
            g.push(a);
        }
    }
    groups
}

/// One kept agent's cycle: the policy unless unchanged, then the check-in.
async fn cycle(a: &mut Agent) -> Result<()> {
    let answer = a.client.policy(&a.credential, a.revision).await?;
    if let Some(p) = answer.policy {
        a.revision = Some(p.revision);
    }
    let done = a.client.checkin(&a.credential, &a.check_in).await?;
    if Some(done.policy_revision) != a.revision {
        // The policy moved on since: the next cycle fetches it.
        a.revision = None;
    }
    Ok(())
}

/// Runs `cycles` cycles over `groups` (one worker per group, each cycling through its
/// clients in turn), `rate` cycles started per second in all when above 0; returns the
/// errors.
async fn run_cycles(groups: &mut [Vec<Agent>], cycles: usize, rate: f64) -> usize {
    let workers = groups.len().max(1);
    let each = cycles / workers;
    let extra = cycles % workers;
    let t0 = tokio::time::Instant::now();
    let runs = groups.iter_mut().enumerate().map(|(w, group)| async move {
        let n = each + usize::from(w < extra);
        let mut errors = 0;
        for i in 0..n {
            if rate > 0.0 {
                // Cycle i of worker w is the (i * workers + w)-th of the whole run.
                #[allow(clippy::cast_precision_loss)]
                let at = (i * workers + w) as f64 / rate;
                tokio::time::sleep_until(t0 + Duration::from_secs_f64(at)).await;
            }
            let k = i % group.len().max(1);
            if let Some(a) = group.get_mut(k) {
                if let Err(e) = cycle(a).await {
                    if errors == 0 {
                        eprintln!("  cycle failed: {e:#}");
                    }
                    errors += 1;
                }
            }
        }
        errors
    });
    futures::future::join_all(runs).await.into_iter().sum()
}

#[allow(clippy::cast_precision_loss)] // counts and µs for display
fn per(total: u64, n: usize) -> f64 {
    (total as f64 / n.max(1) as f64 * 10.0).round() / 10.0
}

async fn round(
    groups: &mut [Vec<Agent>],
    api: &AdminClient,
    pid: u32,
    cycles: usize,
    rate: f64,
) -> Result<Round> {
    let load_before = loadavg();
    let before = server_counts(api).await?;
    let (u0, s0) = cpu_split_us(pid);
    let me0 = cpu_us(std::process::id());
    let t0 = Instant::now();
    let errors = run_cycles(groups, cycles, rate).await;
    let wall = t0.elapsed().as_secs_f64();
    let (u1, s1) = cpu_split_us(pid);
    let me1 = cpu_us(std::process::id());
    let after = server_counts(api).await?;
    let (by_route, requests): (ByRoute, u64) = after.requests_since(&before);
    let (user, system) = (u1.saturating_sub(u0), s1.saturating_sub(s0));
    #[allow(clippy::cast_precision_loss)]
    let rate = cycles as f64 / wall.max(1e-9);
    Ok(Round {
        cycles,
        errors,
        wall_seconds: (wall * 1000.0).round() / 1000.0,
        cycles_per_second: rate.round(),
        server_cpu_us_per_cycle: per(user + system, cycles),
        server_user_us_per_cycle: per(user, cycles),
        server_system_us_per_cycle: per(system, cycles),
        // The scrape of /metrics before the round is counted in it.
        server_requests_per_cycle: per(requests.saturating_sub(1), cycles),
        server_requests_per_cycle_by_route: by_route
            .into_iter()
            .map(|(k, n)| (k, per(n, cycles)))
            .collect(),
        server_tls_handshakes: (
            after.tls.0.saturating_sub(before.tls.0),
            after.tls.1.saturating_sub(before.tls.1),
        ),
        bench_cpu_us_per_cycle: per(me1.saturating_sub(me0), cycles),
        load_before,
        load_after: loadavg(),
        reference: None,
    })
}

/// The same cycles against the reference.
async fn reference_round(
    groups: &mut [Vec<Agent>],
    nginx: &NginxTls,
    cycles: usize,
    rate: f64,
) -> ReferenceRound {
    let cpu0 = nginx.cpu_us();
    let t0 = Instant::now();
    let errors = run_cycles(groups, cycles, rate).await;
    let wall = t0.elapsed().as_secs_f64();
    ReferenceRound {
        errors,
        wall_seconds: (wall * 1000.0).round() / 1000.0,
        cpu_us_per_cycle: per(nginx.cpu_us().saturating_sub(cpu0), cycles),
    }
}

/// `perf record -g` of `pid` into `out`, stopped (SIGINT) when dropped.
struct Perf(std::process::Child);

impl Perf {
    fn start(pid: u32, out: &std::path::Path) -> Result<Perf> {
        let child = std::process::Command::new("perf")
            .args(["record", "-F", "999", "-g", "-p", &pid.to_string(), "-o"])
            .arg(out)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting perf (is it installed?)")?;
        Ok(Perf(child))
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id().cast_signed()) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let _ = self.0.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn print_table(r: &Report) {
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

/// nginx as the reference, with its clients warmed up (one cycle each).
async fn start_reference(
    args: &Args,
    groups: &[Vec<Agent>],
    work: &std::path::Path,
) -> Result<(NginxTls, Vec<Vec<Agent>>)> {
    let revision = groups
        .first()
        .and_then(|g| g.first())
        .and_then(|a| a.revision)
        .context("no policy revision after the warm-up")?;
    let nginx = NginxTls::start(
        &nginx_bin(args.nginx_bin.as_deref())?,
        &work.join("nginx"),
        args.nginx_workers,
        &reference_locations(revision)?,
    )?;
    let agents = reference_agents(&nginx.url, &nginx.ca_pem, revision, args.clients)?;
    let mut groups = grouped(agents, args.concurrency);
    eprintln!(
        "reference warm-up: one cycle per client ({})",
        nginx.version
    );
    let errors = run_cycles(&mut groups, args.clients, 0.0).await;
    if errors > 0 {
        bail!("{errors} reference warm-up cycles failed");
    }
    Ok((nginx, groups))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    args.check()?;
    let bin = cascade_bin(args.cascade_bin.as_deref())?;
    let (work, tmp) = cascade_bench::procs::work_dir(args.work_dir.as_deref(), "cascade-cycle-")?;
    // The server needs a trusted upstream root; nothing is mirrored from it.
    let upstream = cascade_testkit::Upstream::create(&work.join("upstream"), None).await?;
    let root = work.join("upstream-root.json");
    upstream.write_root(&root)?;
    let server = start_server(
        &bin,
        &work,
        &[
            "--upstream-root".into(),
            root.display().to_string(),
            "--mirror-every".into(),
            "0".into(),
            "--max-connections".into(),
            (args.clients * 2 + 256).to_string(),
        ],
    )
    .await?;
    let pid = server.proc.pid();
    let http = cascade_client::http_builder(Some(&server.ca_pem))?.build()?;
    let api = Client::with_http(server.url.clone(), http).admin(server.admin.as_str());
    eprintln!(
        "server pid {pid} at {}; enrolling {} clients",
        server.url, args.clients
    );
    let agents = enroll(&server.url, &server.ca_pem, &server.enroll, &args).await?;
    let mut groups = grouped(agents, args.concurrency);
    eprintln!("warm-up: one cycle per client");
    let errors = run_cycles(&mut groups, args.clients, 0.0).await;
    if errors > 0 {
        bail!("{errors} warm-up cycles failed (see {})", work.display());
    }
    let mut reference = match args.reference {
        Reference::None => None,
        Reference::Nginx => Some(start_reference(&args, &groups, &work).await?),
    };
    let perf = args
        .perf
        .as_deref()
        .map(|out| Perf::start(pid, out))
        .transpose()?;
    let mut rounds = Vec::new();
    for i in 0..args.rounds {
        eprintln!("round {}: {} cycles", i + 1, args.cycles);
        let mut r = round(&mut groups, &api, pid, args.cycles, args.rate).await?;
        if let Some((nginx, groups)) = reference.as_mut() {
            eprintln!("round {}: the reference", i + 1);
            r.reference = Some(reference_round(groups, nginx, args.cycles, args.rate).await);
        }
        rounds.push(r);
    }
    drop(perf);
    let median_server = median(rounds.iter().map(|r| r.server_cpu_us_per_cycle).collect());
    let median_reference = reference.as_ref().map(|_| {
        median(
            rounds
                .iter()
                .filter_map(|r| r.reference.as_ref())
                .map(|x| x.cpu_us_per_cycle)
                .collect(),
        )
    });
    let report = Report {
        bench: "cycle",
        clients: args.clients,
        concurrency: args.concurrency,
        cycles_per_round: args.cycles,
        rate: args.rate,
        cascade_bin: bin.display().to_string(),
        machine: machine(),
        median_server_cpu_us_per_cycle: median_server,
        rounds,
        server_peak_rss_kib: status_kib(&pid.to_string(), "VmHWM:"),
        reference: reference.as_ref().map(|(n, _)| n.version.clone()),
        median_reference_cpu_us_per_cycle: median_reference,
        ratio_to_reference: median_reference
            .filter(|r| *r > 0.0)
            .map(|r| (median_server / r * 100.0).round() / 100.0),
        note: "server CPU from /proc/PID/stat (10 ms ticks) over the measured rounds only; clients share the machine",
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    let failed: usize = report
        .rounds
        .iter()
        .map(|r| r.errors + r.reference.as_ref().map_or(0, |x| x.errors))
        .sum();
    drop(reference);
    drop(groups);
    drop(server);
    drop(tmp);
    if failed > 0 {
        bail!("{failed} cycles failed");
    }
    Ok(())
}
