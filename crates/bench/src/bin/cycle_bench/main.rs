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
//!
//! The parts: [`agents`] (the simulated kept agents and their cycle), [`rounds`] (the
//! measured rounds, against the server and the reference), [`report`] (the report and its
//! table).

mod agents;
mod report;
mod rounds;

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use cascade_bench::procs::{cascade_bin, machine, start_server, status_kib};
use cascade_client::Client;
use clap::Parser;

use agents::{enroll, grouped};
use report::{median, print_table, Report};
use rounds::{reference_round, round, run_cycles, start_reference};

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
