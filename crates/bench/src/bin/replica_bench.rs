//! `replica-bench`: the fleet benchmark against replicas of the server
//! (`docs/operating.md#replicas`). A signed upstream on 127.0.0.1, `--replicas` real `cascade
//! server` processes on one PostgreSQL database (`cascade_testkit::replicas`; the database as
//! for the PostgreSQL tests: `CASCADE_TEST_POSTGRES_URL`, else a throwaway cluster) each
//! mirroring it, and N clients in this process, each on its own 127.x.y.z address with its own
//! data directory and given every replica's URL (client k starts on replica k mod R).
//!
//! Phases: (1) every client enrolls and installs version 1; (2) version 2 is published,
//! mirrored by every replica and announced on replica 1, every client updates; (3) the same
//! with version 3, and replica 2 is killed with SIGKILL when half the clients are done, so its
//! clients fail over. Each phase reports the time until every client is current and, per
//! replica, the requests it answered (its `/metrics`) and the CPU time its process used
//! (`/proc/PID/stat`). A table goes to stdout, JSON to `--out`.
//!
//! Clients run one update cycle each (the code of `cascade update-now`), through a pool of
//! `--concurrency` cycles at once, as in `fleet-bench`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_agent::daemon::AgentConfig;
use cascade_client::proto::NotifyRequest;
use cascade_core::Category;
use cascade_repo::TransportLimits;
use cascade_testkit::postgres::Database;
use cascade_testkit::replicas::Replicas;
use cascade_testkit::{update_once, Upstream};
use clap::Parser;
use futures::StreamExt as _;
use serde::Serialize;

/// Command line.
#[derive(Debug, Clone, Parser)]
#[command(about = "Fleet benchmark against replicas of the server on one PostgreSQL database")]
struct Args {
    /// Simulated clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Server replicas (real processes).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Client update cycles running at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Size of the component file, KiB.
    #[arg(long, default_value_t = 64)]
    payload_kib: usize,
    /// The `cascade` binary the replicas run.
    #[arg(long, env = "CASCADE_BIN")]
    cascade_bin: PathBuf,
    /// Skip the phase with a replica killed half-way.
    #[arg(long)]
    no_kill: bool,
    /// JSON result file.
    #[arg(long, default_value = "target/bench/replicas.json")]
    out: PathBuf,
}

/// One replica's share of a phase.
#[derive(Debug, Serialize)]
struct ReplicaLoad {
    replica: usize,
    /// Requests it answered in the phase (none counted after it was killed).
    requests: u64,
    /// CPU seconds its process used in the phase.
    cpu_seconds: f64,
    /// Killed during the phase.
    killed: bool,
}

#[derive(Debug, Serialize)]
struct Phase {
    name: String,
    clients: usize,
    current: usize,
    wall_seconds: f64,
    replicas: Vec<ReplicaLoad>,
}

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    clients: usize,
    replicas: usize,
    concurrency: usize,
    payload_kib: usize,
    cpus: usize,
    phases: Vec<Phase>,
    note: &'static str,
}

struct World {
    args: Args,
    dir: PathBuf,
    upstream: Upstream,
    replicas: Replicas,
    alive: Vec<bool>,
}

fn client_ip(k: usize) -> Result<IpAddr> {
    let k = u32::try_from(k)?;
    // 127.1.0.1 … : clear of the replicas (127.0.0.x) and the upstream.
    let n = 0x7f01_0001 + k;
    if n >= 0x7fff_ffff {
        bail!("too many clients");
    }
    Ok(IpAddr::V4(Ipv4Addr::from(n)))
}

fn client_dir(w: &World, k: usize) -> PathBuf {
    w.dir.join(format!("clients/{k}"))
}

fn installed(dir: &Path) -> Option<String> {
    let link = dir.join("installed/components/patterns/current");
    std::fs::read_link(link)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn config(w: &World, k: usize) -> Result<AgentConfig> {
    let urls = w.replicas.urls();
    let n = urls.len();
    let order: Vec<url::Url> = (0..n).map(|j| urls[(k + j) % n].clone()).collect();
    Ok(AgentConfig {
        server: order.first().cloned(),
        more_servers: order[1..].to_vec(),
        enroll_token: Some(w.replicas.secrets.enroll_token.clone()),
        data_dir: client_dir(w, k),
        bind_ip: Some(client_ip(k)?),
        name: format!("client-{k}"),
        domain: None,
        relay_listen: None,
        relay_cache_bytes: 0,
        interval: Duration::from_secs(3600),
        relay_report_interval: Duration::from_secs(3600),
        limits: TransportLimits {
            connect_timeout: Duration::from_secs(2),
            header_timeout: Duration::from_secs(10),
            ..TransportLimits::default()
        },
        verify_interval: None,
        pinned_roots: Vec::new(),
        self_update: None,
    })
}

fn payload(kib: usize, version: u32) -> Vec<u8> {
    cascade_testkit::pseudo_random(kib << 10, u64::from(version))
}

async fn snapshot(w: &World) -> Vec<(u64, Duration)> {
    let mut out = Vec::new();
    for i in 0..w.replicas.replicas.len() {
        if !w.alive[i] {
            out.push((0, Duration::ZERO));
            continue;
        }
        let req = w.replicas.requests(i).await.unwrap_or(0);
        let cpu = w.replicas.cpu(i).unwrap_or_default();
        out.push((req, cpu));
    }
    out
}

async fn phase(w: &mut World, name: &str, version: u32, kill: bool) -> Result<Phase> {
    let v = version.to_string();
    if version > 1 {
        let body = payload(w.args.payload_kib, version);
        w.upstream
            .publish(
                Category::Components,
                "patterns",
                &v,
                &[("patterns.db", &body)],
            )
            .await?;
        for i in 0..w.replicas.replicas.len() {
            if w.alive[i] {
                w.replicas.admin(i)?.mirror_now().await.context("mirror")?;
            }
        }
    }
    let before = snapshot(w).await;
    if version > 1 {
        w.replicas
            .admin(0)?
            .notify(&NotifyRequest::default())
            .await
            .context("notify")?;
    }
    let t0 = Instant::now();
    let n = w.args.clients;
    let cfgs: Vec<AgentConfig> = (0..n).map(|k| config(w, k)).collect::<Result<_>>()?;
    let mut stream = futures::stream::iter(cfgs)
        .map(|cfg| tokio::spawn(async move { update_once(cfg).await.map_err(|e| e.to_string()) }))
        .buffer_unordered(w.args.concurrency.max(1));
    let (mut done, mut last_before_kill) = (0, None);
    let victim = 1.min(w.replicas.replicas.len() - 1);
    while let Some(joined) = stream.next().await {
        if let Err(e) = joined.context("client task")? {
            eprintln!("  client error: {e}");
        }
        done += 1;
        if kill && done == n / 2 && w.alive[victim] {
            last_before_kill = Some((
                w.replicas.requests(victim).await.unwrap_or(0),
                w.replicas.cpu(victim).unwrap_or_default(),
            ));
            w.replicas.kill(victim);
            w.alive[victim] = false;
            eprintln!(
                "  killed replica {} (SIGKILL) after {done} of {n} clients",
                victim + 1
            );
        }
    }
    let wall = t0.elapsed();
    let after = snapshot(w).await;
    let current = (0..n)
        .filter(|&k| installed(&client_dir(w, k)).as_deref() == Some(v.as_str()))
        .count();
    let replicas = (0..before.len())
        .map(|i| {
            let killed = kill && i == victim;
            let end = if killed {
                last_before_kill.unwrap_or(before[i])
            } else {
                after[i]
            };
            ReplicaLoad {
                replica: i + 1,
                requests: end.0.saturating_sub(before[i].0),
                cpu_seconds: end.1.saturating_sub(before[i].1).as_secs_f64(),
                killed,
            }
        })
        .collect();
    Ok(Phase {
        name: name.to_owned(),
        clients: n,
        current,
        wall_seconds: wall.as_secs_f64(),
        replicas,
    })
}

fn print_table(r: &Report) {
    println!(
        "\nreplica bench: {} clients, {} replicas, pool {}, payload {} KiB, {} CPUs",
        r.clients, r.replicas, r.concurrency, r.payload_kib, r.cpus
    );
    println!(
        "{:<28} {:>11} {:>8}  per replica: requests / CPU s",
        "phase", "current", "wall s"
    );
    for p in &r.phases {
        let per: Vec<String> = p
            .replicas
            .iter()
            .map(|l| {
                format!(
                    "#{} {} / {:.2}{}",
                    l.replica,
                    l.requests,
                    l.cpu_seconds,
                    if l.killed { " (killed)" } else { "" }
                )
            })
            .collect();
        println!(
            "{:<28} {:>11} {:>8.1}  {}",
            p.name,
            format!("{}/{}", p.current, p.clients),
            p.wall_seconds,
            per.join(", ")
        );
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.replicas == 0 || args.replicas > 9 {
        bail!("--replicas must be 1..=9");
    }
    if !args.cascade_bin.is_file() {
        bail!("--cascade-bin {}: no such file", args.cascade_bin.display());
    }
    let tmp = tempfile::Builder::new()
        .prefix("cascade-replicas-")
        .tempdir()?;
    let dir = tmp.path().to_owned();
    cascade_testkit::one_tls_root(&dir)?;
    let pg = Database::new().await?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let upstream = Upstream::create(&dir.join("upstream"), Some(loopback)).await?;
    upstream
        .publish(
            Category::Components,
            "patterns",
            "1",
            &[("patterns.db", &payload(args.payload_kib, 1))],
        )
        .await?;
    let root = dir.join("upstream-root.json");
    upstream.write_root(&root)?;
    let extra: Vec<String> = [
        "--upstream-root",
        &root.display().to_string(),
        "--mirror-every",
        "0",
        "--agent-head-start",
        "0",
        "--lockout-address-failures",
        "100000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    eprintln!("starting {} replicas in {}", args.replicas, dir.display());
    let replicas = Replicas::start(&args.cascade_bin, &dir, &pg.url, args.replicas, &extra).await?;
    let policy = cascade_core::Policy::from_toml(&format!(
        "activeupdate_url = \"{}\"\nactiveupdate_fallback = \"never\"\n",
        upstream.url().context("upstream url")?
    ))?;
    replicas
        .admin(0)?
        .put_policy(&cascade_core::PolicyDoc::from_policy(&policy), None)
        .await?;
    for i in 0..args.replicas {
        replicas
            .admin(i)?
            .mirror_now()
            .await
            .context("first mirror")?;
    }
    let mut w = World {
        alive: vec![true; args.replicas],
        args: args.clone(),
        dir,
        upstream,
        replicas,
    };
    let mut phases = Vec::new();
    eprintln!(
        "phase 1: {} clients enroll and install version 1",
        args.clients
    );
    phases.push(phase(&mut w, "enroll + install v1", 1, false).await?);
    eprintln!("phase 2: version 2, notify on replica 1");
    phases.push(phase(&mut w, "update v2", 2, false).await?);
    if !args.no_kill && args.replicas > 1 {
        eprintln!("phase 3: version 3, replica 2 killed half-way");
        phases.push(phase(&mut w, "update v3, replica 2 killed", 3, true).await?);
    }
    w.replicas.stop();
    let report = Report {
        bench: "replicas",
        clients: args.clients,
        replicas: args.replicas,
        concurrency: args.concurrency,
        payload_kib: args.payload_kib,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        phases,
        note: "replicas are separate processes; clients share this one; requests from each replica's /metrics, CPU from /proc",
    };
    print_table(&report);
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    eprintln!("wrote {}", args.out.display());
    pg.drop_db().await?;
    if report.phases.iter().any(|p| p.current != p.clients) {
        bail!("not every client converged");
    }
    Ok(())
}
