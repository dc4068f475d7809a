//! `fleet-bench --processes`: the per-role mode. The server and every update agent are
//! separate real processes (`cascade server`, `cascade agent --relay`, from `--cascade-bin`),
//! with the server's own defaults (argon2 credential hashing included); the signed upstream and
//! the clients' update cycles (the same code as `cascade update-now`) stay in this process.
//! For each phase it reports, per client update cycle, the server's CPU time and requests
//! (every request the server answered, from its own `/metrics` histogram counts), the update
//! agents' CPU time, and the RSS of each role (server, each agent, this process for the
//! clients), read from `/proc`.
//!
//! Phases: (1) every client enrolls and installs version 1; (2) version 2 is published,
//! mirrored and notified, every client updates while the server still remembers its verified
//! credential (the server keeps one for a minute); (3) after `--cold-wait` seconds, version 3
//! the same way with that memory expired, as for clients on an hourly schedule: each client's
//! first request of the cycle pays one argon2 verification.
//!
//! Each simulated client is a kept agent ([`cascade_agent::daemon::Session`]): started once
//! and kept across the phases, as the daemon keeps itself, so its cycles reuse its HTTP
//! clients (kept-alive connections, TLS sessions resumed from the server's tickets). With
//! `--one-shot` each cycle is a fresh agent instead (`cascade update-now`: new clients, a full
//! TLS handshake per connection). The report says which ([`ClientMode`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_agent::daemon::{AgentConfig, Session};
use cascade_client::proto::{NewEnrollmentToken, NotifyRequest};
use cascade_client::{AdminClient, Client};
use cascade_core::{Category, Policy, PolicyDoc, TrustDomain};
use cascade_repo::TransportLimits;
use cascade_testkit::{update_once, wait_until, Upstream};
use futures::StreamExt as _;
use serde::Serialize;
use url::Url;

use cascade_bench::procs::{
    cpu_us, free_port, machine, server_counts, spawn, start_server, status_kib, Machine, Proc,
};

use super::{client_ip, installed, payload, relay_ip, served, Args, ITEM};

/// How each simulated client runs its cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum ClientMode {
    /// One agent per client, started at its first cycle and kept across phases (a daemon).
    Kept,
    /// A fresh agent per cycle (`cascade update-now`, `--one-shot`).
    OneShot,
}

impl ClientMode {
    fn of(args: &Args) -> ClientMode {
        if args.one_shot {
            ClientMode::OneShot
        } else {
            ClientMode::Kept
        }
    }

    fn label(self) -> &'static str {
        match self {
            ClientMode::Kept => "kept agents (connections and TLS sessions reused)",
            ClientMode::OneShot => "one-shot agents (a fresh agent per cycle)",
        }
    }
}

/// The kept agent of each client (`None` until its first successful start).
type Sessions = Vec<Option<Arc<Session>>>;

/// One phase of the per-role mode.
#[derive(Debug, Serialize)]
struct RolePhase {
    name: String,
    clients: usize,
    /// Clients with the phase's version installed at the end.
    current: usize,
    /// Clients whose components came from an update agent / from the server.
    served_by_relay: usize,
    served_by_server: usize,
    wall_seconds: f64,
    /// Server CPU (user + system) over the phase, divided by the clients' cycles.
    server_cpu_us_per_cycle: f64,
    /// Requests the server answered over the phase, divided by the clients' cycles.
    server_requests_per_cycle: f64,
    /// The same by `method route status`.
    server_requests_per_cycle_by_route: std::collections::BTreeMap<String, f64>,
    /// TLS handshakes the server completed over the phase, per cycle: full, and resumed
    /// from a session ticket (0 with a server that does not count them).
    server_tls_full_per_cycle: f64,
    server_tls_resumed_per_cycle: f64,
    /// CPU of all update agents over the phase, divided by the clients' cycles.
    relay_cpu_us_per_client: f64,
    /// CPU of this process (the clients' cycles and the upstream) per cycle.
    clients_cpu_us_per_cycle: f64,
    /// Bytes the server sent from `/repo/` per cycle.
    server_repo_bytes_per_cycle: f64,
    server_rss_kib: u64,
    server_peak_rss_kib: u64,
    relay_rss_kib: Vec<u64>,
    relay_peak_rss_kib: Vec<u64>,
    clients_process_peak_rss_kib: u64,
}

/// The result file of the per-role mode.
#[derive(Debug, Serialize)]
struct RoleReport {
    bench: &'static str,
    clients: usize,
    relays: usize,
    concurrency: usize,
    payload_kib: usize,
    client_mode: ClientMode,
    cascade_bin: String,
    machine: Machine,
    phases: Vec<RolePhase>,
    note: &'static str,
}

/// The running processes and what is needed to drive them.
struct Roles {
    work: PathBuf,
    upstream: Upstream,
    root: PathBuf,
    server: Proc,
    url: Url,
    api: AdminClient,
    enroll: String,
    relays: Vec<(std::net::SocketAddr, Proc)>,
}

fn policy(up: &Url, relays: &[std::net::SocketAddr]) -> String {
    use std::fmt::Write as _;
    let mut s = format!("mode = \"customized\"\nactiveupdate_url = \"{up}\"\n");
    for addr in relays {
        let _ = write!(s, "[[agent]]\naddress = \"{addr}\"\n");
    }
    for (i, addr) in relays.iter().enumerate() {
        let _ = write!(
            s,
            "[[sources]]\nrange = \"127.{}.0.0/16\"\nagent = \"{addr}\"\n",
            10 + i
        );
    }
    s
}

/// The server's `--max-connections`: with kept agents every client may hold a kept-alive
/// connection to the API and one to `/repo/` between its cycles (until the server's idle
/// limit closes them), besides the pool's cycles in flight.
fn max_connections(args: &Args) -> usize {
    let pool = args.concurrency * 4 + 1024;
    match ClientMode::of(args) {
        ClientMode::OneShot => pool,
        ClientMode::Kept => pool + args.clients * 2,
    }
}

async fn start(args: &Args, bin: &Path, work: PathBuf) -> Result<Roles> {
    let upstream = Upstream::create(
        &work.join("upstream"),
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await?;
    upstream
        .publish(
            Category::Components,
            ITEM,
            "1",
            &[("patterns.db", &payload(args.payload_kib, 1))],
        )
        .await?;
    let root = work.join("upstream-root.json");
    upstream.write_root(&root)?;
    let started = start_server(
        bin,
        &work,
        &[
            "--upstream-root".into(),
            root.display().to_string(),
            "--mirror-every".into(),
            "0".into(),
            "--agent-head-start".into(),
            "1".into(),
            "--max-connections".into(),
            max_connections(args).to_string(),
        ],
    )
    .await?;
    let (server, url, enroll) = (started.proc, started.url, started.enroll);
    let http = cascade_client::http_builder(Some(&started.ca_pem))?.build()?;
    let api = Client::with_http(url.clone(), http).admin(started.admin.as_str());
    let agent_enroll = api
        .create_enrollment_token(&NewEnrollmentToken {
            name: "fleet-bench update agents".into(),
            agent: true,
            ..Default::default()
        })
        .await?
        .token;
    let mut addrs = Vec::new();
    for i in 0..args.relays {
        addrs.push(free_port(relay_ip(i)?)?);
    }
    let up = upstream.url().context("upstream URL")?;
    let doc = PolicyDoc::from_policy(&Policy::from_toml(&policy(&up, &addrs))?);
    api.put_policy(&doc, None).await.context("policy")?;
    api.mirror_now().await.context("first mirror")?;
    let relays = spawn_relays(bin, &work, &url, &agent_enroll, &root, &addrs).await?;
    Ok(Roles {
        work,
        upstream,
        root,
        server,
        url,
        api,
        enroll,
        relays,
    })
}

/// Starts one `cascade agent --relay` process per address and waits until each serves and
/// has installed version 1.
async fn spawn_relays(
    bin: &Path,
    work: &Path,
    url: &Url,
    agent_enroll: &str,
    root: &Path,
    addrs: &[std::net::SocketAddr],
) -> Result<Vec<(std::net::SocketAddr, Proc)>> {
    let mut relays = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let dir = work.join("relays").join(i.to_string());
        let p = spawn(
            bin,
            &[
                "agent".into(),
                "--server".into(),
                url.to_string(),
                "--enroll-token".into(),
                agent_enroll.to_owned(),
                "--data-dir".into(),
                dir.display().to_string(),
                "--bind-ip".into(),
                relay_ip(i)?.to_string(),
                "--name".into(),
                format!("relay-{i}"),
                "--relay".into(),
                "--listen".into(),
                addr.to_string(),
                "--upstream-root".into(),
                root.display().to_string(),
                "--self-update".into(),
                "off".into(),
                "--relay-report-every".into(),
                "1".into(),
            ],
            &work.join(format!("relay-{i}.log")),
            &work.join(format!("relay-{i}.out")),
            format!("cascade agent --relay {addr}"),
        )?;
        relays.push((*addr, p));
    }
    for (i, (addr, _)) in relays.iter().enumerate() {
        let dir = work.join("relays").join(i.to_string());
        let addr = *addr;
        wait_until(Duration::from_secs(120), || async {
            std::net::TcpStream::connect(addr).is_ok() && installed(&dir).is_some()
        })
        .await
        .with_context(|| format!("update agent {addr} did not start (see {})", work.display()))?;
    }
    Ok(relays)
}

/// A client's configuration: data in `dir`, connections from `ip`, the upstream root pinned
/// (the site root comes from the server at enrollment, as the enrollment token pins it).
fn client_config(r: &Roles, dir: PathBuf, ip: std::net::IpAddr) -> AgentConfig {
    AgentConfig {
        server: Some(r.url.clone()),
        more_servers: Vec::new(),
        enroll_token: Some(r.enroll.clone()),
        data_dir: dir,
        bind_ip: Some(ip),
        name: ip.to_string(),
        domain: None,
        relay_listen: None,
        relay_cache_bytes: 1 << 30,
        interval: Duration::from_secs(3600),
        relay_report_interval: Duration::from_secs(60),
        limits: TransportLimits {
            connect_timeout: Duration::from_secs(2),
            header_timeout: Duration::from_secs(5),
            window: Duration::from_secs(2),
            ..TransportLimits::default()
        },
        verify_interval: None,
        pinned_roots: vec![(TrustDomain::Upstream, r.root.clone())],
        self_update: None,
    }
}

fn relays_cpu_us(r: &Roles) -> u64 {
    r.relays.iter().map(|(_, p)| cpu_us(p.pid())).sum()
}

#[allow(clippy::cast_precision_loss)] // counts and µs for display
fn per(total: u64, n: usize) -> f64 {
    (total as f64 / n.max(1) as f64 * 10.0).round() / 10.0
}

/// One client's cycle: through its kept agent (started now at its first cycle), or a fresh
/// one-shot agent. The report, and the kept agent to keep.
async fn client_cycle(
    mode: ClientMode,
    kept: Option<Arc<Session>>,
    cfg: AgentConfig,
) -> (
    Result<cascade_core::report::UpdateReport, String>,
    Option<Arc<Session>>,
) {
    match (mode, kept) {
        (ClientMode::OneShot, _) => (update_once(cfg).await.map_err(|e| e.to_string()), None),
        (ClientMode::Kept, Some(s)) => (s.cycle().await.map_err(|e| e.to_string()), Some(s)),
        (ClientMode::Kept, None) => match Session::start(cfg).await {
            Ok(s) => {
                let s = Arc::new(s);
                (s.cycle().await.map_err(|e| e.to_string()), Some(s))
            }
            Err(e) => (Err(e.to_string()), None),
        },
    }
}

/// Runs every client's cycle once, `--concurrency` at a time (each client's kept agent taken
/// out of `sessions`): per client, its index, the cycle's result and the agent to keep.
async fn all_cycles(r: &Roles, args: &Args, sessions: &mut Sessions) -> Result<Vec<Cycled>> {
    let count = args.clients;
    let mode = ClientMode::of(args);
    sessions.resize(count, None);
    let cfgs = (0..count)
        .map(|k| {
            let dir = r.work.join("clients").join(k.to_string());
            let kept = sessions.get_mut(k).and_then(Option::take);
            Ok((k, kept, client_config(r, dir, client_ip(k, args.relays)?)))
        })
        .collect::<Result<Vec<_>>>()?;
    let done: Vec<_> = futures::stream::iter(cfgs)
        .map(|(k, kept, cfg)| {
            tokio::spawn(async move {
                let (result, kept) = client_cycle(mode, kept, cfg).await;
                (k, result, kept)
            })
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    done.into_iter().map(|j| j.context("client task")).collect()
}

/// One client's cycle as [`all_cycles`] returns it.
type Cycled = (
    usize,
    Result<cascade_core::report::UpdateReport, String>,
    Option<Arc<Session>>,
);

/// Publishes `version` (unless 1), mirrors, notifies, runs every client's cycle once, and
/// measures each role.
async fn phase(
    r: &Roles,
    args: &Args,
    sessions: &mut Sessions,
    name: &str,
    version: u32,
) -> Result<RolePhase> {
    let want = version.to_string();
    if version > 1 {
        let body = payload(args.payload_kib, version);
        r.upstream
            .publish(Category::Components, ITEM, &want, &[("patterns.db", &body)])
            .await?;
        r.api.mirror_now().await.context("mirror")?;
    }
    let before = server_counts(&r.api).await?;
    let server0 = cpu_us(r.server.pid());
    let relays0 = relays_cpu_us(r);
    let me0 = cpu_us(std::process::id());
    if version > 1 {
        r.api
            .notify(&NotifyRequest::default())
            .await
            .context("notify")?;
    }
    let t0 = Instant::now();
    let count = args.clients;
    let done = all_cycles(r, args, sessions).await?;
    let wall = t0.elapsed().as_secs_f64();
    let me1 = cpu_us(std::process::id());
    let server1 = cpu_us(r.server.pid());
    let relays1 = relays_cpu_us(r);
    let after = server_counts(&r.api).await?;
    let (mut by_relay, mut by_server, mut current) = (0, 0, 0);
    let mut errors = 0;
    for joined in done {
        let (k, result, kept) = joined;
        if let Some(slot) = sessions.get_mut(k) {
            *slot = kept;
        }
        match result {
            Ok(report) => match served(&report).0 {
                "relay" => by_relay += 1,
                "server" => by_server += 1,
                _ => {}
            },
            Err(e) => {
                if errors < 5 {
                    eprintln!("  client {k}: {e}");
                }
                errors += 1;
            }
        }
        let dir = r.work.join("clients").join(k.to_string());
        current += usize::from(installed(&dir).as_deref() == Some(want.as_str()));
    }
    let (by_route, requests) = after.requests_since(&before);
    let by_route = by_route
        .into_iter()
        .map(|(key, d)| (key, per(d, count)))
        .collect();
    let pids: Vec<String> = r.relays.iter().map(|(_, p)| p.pid().to_string()).collect();
    let server_pid = r.server.pid().to_string();
    Ok(RolePhase {
        name: name.to_owned(),
        clients: count,
        current,
        served_by_relay: by_relay,
        served_by_server: by_server,
        wall_seconds: (wall * 1000.0).round() / 1000.0,
        server_cpu_us_per_cycle: per(server1.saturating_sub(server0), count),
        // The one scrape of /metrics before the phase is counted in it.
        server_requests_per_cycle: per(requests.saturating_sub(1), count),
        server_requests_per_cycle_by_route: by_route,
        server_tls_full_per_cycle: per(after.tls.0.saturating_sub(before.tls.0), count),
        server_tls_resumed_per_cycle: per(after.tls.1.saturating_sub(before.tls.1), count),
        relay_cpu_us_per_client: per(relays1.saturating_sub(relays0), count),
        clients_cpu_us_per_cycle: per(me1.saturating_sub(me0), count),
        server_repo_bytes_per_cycle: per(after.repo_bytes.saturating_sub(before.repo_bytes), count),
        server_rss_kib: status_kib(&server_pid, "VmRSS:"),
        server_peak_rss_kib: status_kib(&server_pid, "VmHWM:"),
        relay_rss_kib: pids.iter().map(|p| status_kib(p, "VmRSS:")).collect(),
        relay_peak_rss_kib: pids.iter().map(|p| status_kib(p, "VmHWM:")).collect(),
        clients_process_peak_rss_kib: status_kib("self", "VmHWM:"),
    })
}

fn print_table(r: &RoleReport) {
    println!(
        "\nfleet bench, per role (separate processes): {} clients ({}), {} update agents, pool {}, payload {} KiB, {} CPUs ({})",
        r.clients,
        r.client_mode.label(),
        r.relays,
        r.concurrency,
        r.payload_kib,
        r.machine.nproc,
        r.machine.cpu
    );
    println!(
        "{:<34} {:>9} {:>7} {:>12} {:>9} {:>13} {:>12} {:>11} {:>11} {:>14}",
        "phase",
        "current",
        "wall s",
        "server µs/c",
        "req/c",
        "TLS full/res",
        "relay µs/cl",
        "server RSS",
        "agent RSS",
        "clients µs/c"
    );
    for p in &r.phases {
        let agent_rss = p.relay_rss_kib.iter().max().copied().unwrap_or(0);
        println!(
            "{:<34} {:>9} {:>7.2} {:>12.1} {:>9.1} {:>13} {:>12.1} {:>7} MiB {:>7} MiB {:>14.1}",
            p.name,
            format!("{}/{}", p.current, p.clients),
            p.wall_seconds,
            p.server_cpu_us_per_cycle,
            p.server_requests_per_cycle,
            format!(
                "{:.1}/{:.1}",
                p.server_tls_full_per_cycle, p.server_tls_resumed_per_cycle
            ),
            p.relay_cpu_us_per_client,
            p.server_rss_kib / 1024,
            agent_rss / 1024,
            p.clients_cpu_us_per_cycle
        );
    }
}

/// Runs the per-role mode and writes its report.
pub(crate) async fn run(args: &Args, bin: &Path, work: PathBuf) -> Result<()> {
    eprintln!(
        "starting `cascade server` and {} `cascade agent --relay` processes in {}",
        args.relays,
        work.display()
    );
    let r = start(args, bin, work).await?;
    let mode = ClientMode::of(args);
    eprintln!("clients: {}", mode.label());
    let mut sessions = Sessions::new();
    let mut phases = Vec::new();
    eprintln!(
        "phase 1: {} clients enroll and install version 1",
        args.clients
    );
    phases.push(phase(&r, args, &mut sessions, "enroll + install v1", 1).await?);
    eprintln!("phase 2: version 2, notify (credentials remembered by the server)");
    phases.push(phase(&r, args, &mut sessions, "update v2, credentials cached", 2).await?);
    eprintln!(
        "waiting {} s for the server's memory of verified credentials to expire",
        args.cold_wait
    );
    tokio::time::sleep(Duration::from_secs(args.cold_wait)).await;
    eprintln!("phase 3: version 3, notify (each client's credential verified again)");
    phases.push(
        phase(
            &r,
            args,
            &mut sessions,
            "update v3, credentials verified",
            3,
        )
        .await?,
    );
    let report = RoleReport {
        bench: "fleet-processes",
        clients: args.clients,
        relays: args.relays,
        concurrency: args.concurrency,
        payload_kib: args.payload_kib,
        client_mode: mode,
        cascade_bin: bin.display().to_string(),
        machine: machine(),
        phases,
        note: "server and update agents are separate processes (their CPU from /proc); the upstream and the clients' cycles share this process",
    };
    print_table(&report);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    eprintln!("wrote {}", args.out.display());
    let all = report.phases.iter().all(|p| p.current == p.clients);
    drop(sessions);
    drop(r);
    if !all {
        bail!("not every client converged");
    }
    Ok(())
}
