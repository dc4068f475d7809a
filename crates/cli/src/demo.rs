//! `cascade demo`: the whole system on this machine. A signed upstream ("ActiveUpdate") on
//! 127.0.0.1, the server, two update agents on 127.0.0.2 and 127.0.0.3, a URL mirror on
//! 127.0.0.4 and a fleet of clients in two offices (127.0.1.x, 127.0.2.x) plus a few outside
//! every range, each a real agent with its own address and data directory. Five acts: the
//! first install, a new version pushed with Notify All Clients, the same with office 2's
//! update agent stopped, so its clients visibly go down the fallback chain, and a program
//! rolled out in rings, healthy and then a bad build halted in its first ring
//! (`crate::demo_rollout`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cascade_core::Category;
use cascade_lab::{wait_until, AgentHandle, Fleet, StaticServer, Upstream};
use clap::Args;

use crate::demo_view::{self, Client, Group, Totals};

/// `cascade demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many clients to run (split over two offices, a few outside every range).
    #[arg(long, default_value_t = 40)]
    clients: usize,
    /// Keep everything here instead of a temporary directory (must be empty or absent).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Exit after the summary: status 0 only if every client a source could serve is current.
    #[arg(long)]
    no_console: bool,
    /// Where the server (and its console) listens; another port is taken if this one is busy.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Seconds to wait for the fleet to converge in each act.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

const ITEM: &str = "patterns";

/// Runs the demo.
pub fn run_demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if args.clients == 0 || args.clients > 2000 {
        return Err(crate::BadInput(format!(
            "--clients: `{}` must be between 1 and 2000",
            args.clients
        ))
        .into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(args))
}

/// Deterministic "pattern file" content for a version: mostly shared with the previous
/// version, so deltas have something to do.
fn pattern_file(version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(300_000);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..8000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let rev = if i % 997 == 0 { version } else { 1 };
        out.extend_from_slice(
            format!(
                "sig-{i:05} rev{rev} {x:016x} {:08x}\n",
                x.rotate_left(version)
            )
            .as_bytes(),
        );
    }
    out
}

fn free_port(ip: Ipv4Addr, preferred: u16) -> anyhow::Result<SocketAddr> {
    let want = SocketAddr::from((ip, preferred));
    if std::net::TcpListener::bind(want).is_ok() {
        return Ok(want);
    }
    let l = std::net::TcpListener::bind(SocketAddr::from((ip, 0)))
        .with_context(|| format!("cannot bind {ip}"))?;
    Ok(l.local_addr()?)
}

/// Brings the URL mirror up to date from the server's repository tree.
fn sync_mirror(fleet: &Fleet, mirror: &StaticServer) -> anyhow::Result<()> {
    Ok(fleet.sync_mirror(mirror)?)
}

struct Demo {
    _tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    upstream: Upstream,
    fleet: Fleet,
    mirror: StaticServer,
    relays: Vec<(SocketAddr, Option<AgentHandle>)>,
    clients: Vec<Client>,
    handles: Vec<AgentHandle>,
    timeout: Duration,
}

async fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let mut d = setup(args).await?;
    let mut ok = true;
    println!("\nact 1: first install of {ITEM} 1.0 through the source list");
    ok &= d.act("1.0").await?;

    println!("\nact 2: {ITEM} 1.1 published upstream, mirrored, Notify All Clients");
    d.release(2, "1.1").await?;
    ok &= d.act("1.1").await?;

    println!(
        "\nact 3: update agent {} stopped; {ITEM} 1.2 published, Notify All Clients",
        d.relays[1].0
    );
    if let Some(mut h) = d.relays[1].1.take() {
        let _ = h.stop().await;
    }
    d.release(3, "1.2").await?;
    ok &= d.act("1.2").await?;

    let stage = crate::demo_rollout::Stage {
        fleet: &d.fleet,
        dir: &d.dir,
        clients: &d.clients,
        timeout: d.timeout,
    };
    println!("\nact 4: program `tool` 2.0 rolled out in rings: office 1 first, then everyone");
    ok &= stage.healthy().await?;
    println!("\nact 5: a bad build of `tool` (3.0) rolled out, office 2 first");
    ok &= stage.bad_build().await?;

    let summary = if ok {
        "every client is current"
    } else {
        "some clients are NOT current"
    };
    println!("\nresult: {summary}");
    if args.no_console {
        d.shutdown().await;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    println!(
        "\nconsole: {url} (HTTPS with the demo server's private CA: {ca})\n  log in with the admin token: {token}\n  API:     CASCADE_TOKEN={token} cascade clients --server {url} --ca {ca}\n\
         everything keeps running; press Ctrl-C to stop (data in {dir})",
        url = d.fleet.url,
        token = d.fleet.admin,
        ca = d.fleet.data_dir.join("tls/ca.pem").display(),
        dir = d.dir.display()
    );
    crate::shutdown_signal().await;
    d.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The demo's directory: the one given (it must be empty) or a temporary one.
fn demo_dir(args: &DemoArgs) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    if let Some(d) = &args.data_dir {
        if d.exists() && std::fs::read_dir(d)?.next().is_some() {
            bail!(crate::BadInput(format!(
                "--data-dir: `{}` is not empty",
                d.display()
            )));
        }
        return Ok((None, d.clone()));
    }
    let t = tempfile::Builder::new().prefix("cascade-demo-").tempdir()?;
    let p = t.path().to_owned();
    Ok((Some(t), p))
}

async fn setup(args: &DemoArgs) -> anyhow::Result<Demo> {
    let (tmp, dir) = demo_dir(args)?;
    println!(
        "cascade demo: {} clients, data in {}",
        args.clients,
        dir.display()
    );
    let upstream = Upstream::create(
        &dir.join("activeupdate"),
        Some(SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await?;
    upstream
        .publish(
            Category::Components,
            ITEM,
            "1.0",
            &[("patterns.db", &pattern_file(1))],
        )
        .await?;
    let root = dir.join("activeupdate-root.json");
    upstream.write_root(&root)?;
    let up_url = upstream.url().context("upstream URL")?;
    println!("  upstream (ActiveUpdate)  {up_url}");

    let listen = free_port(Ipv4Addr::LOCALHOST, args.listen.port())?;
    let fleet = Fleet::start(&dir.join("server"), listen, Some(root.clone())).await?;
    fleet
        .site
        .publish(
            Category::DomainSettings,
            "settings",
            "1",
            &[("settings.toml", b"realtime_scan = true\n")],
        )
        .await?;
    println!("  server + console         {}", fleet.url);

    let mirror = StaticServer::start(
        &dir.join("mirror"),
        free_port(Ipv4Addr::new(127, 0, 0, 4), 8080)?,
    )
    .await?;
    println!("  URL mirror               {}", mirror.url());
    let relay_addrs = [
        free_port(Ipv4Addr::new(127, 0, 0, 2), 8443)?,
        free_port(Ipv4Addr::new(127, 0, 0, 3), 8443)?,
    ];
    println!(
        "  update agents            {} (office 1), {} (office 2)",
        relay_addrs[0], relay_addrs[1]
    );

    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up_url}\"\n\
         [fallback]\ncomponents_from_server = true\ndomain_settings_from_server = true\nprograms_from_server = true\n\
         [[agent]]\naddress = \"{r1}\"\ncapabilities = [\"components\", \"domain-settings\", \"programs\"]\n\
         [[agent]]\naddress = \"{r2}\"\ncapabilities = [\"components\", \"domain-settings\", \"programs\"]\n\
         [[sources]]\nrange = \"127.0.1.0/24\"\nagent = \"{r1}\"\n\
         [[sources]]\nrange = \"127.0.2.0/24\"\nagent = \"{r2}\"\n\
         [[sources]]\nrange = \"127.0.1.0-127.0.2.255\"\nurl = \"{m}\"\n",
        r1 = relay_addrs[0],
        r2 = relay_addrs[1],
        m = mirror.url(),
    );
    fleet.apply_policy(&policy).await?;
    fleet.mirror().await?;
    sync_mirror(&fleet, &mirror)?;
    println!("  source list: office 1 -> agent 1, office 2 -> agent 2, then the URL mirror; then the server");

    let timeout = Duration::from_secs(args.timeout);
    let (relays, clients, handles) =
        start_agents(&fleet, &dir, &root, relay_addrs, args.clients, timeout).await?;
    Ok(Demo {
        _tmp: tmp,
        dir,
        upstream,
        fleet,
        mirror,
        relays,
        clients,
        handles,
        timeout,
    })
}

type Started = (
    Vec<(SocketAddr, Option<AgentHandle>)>,
    Vec<Client>,
    Vec<AgentHandle>,
);

/// Starts the two update agents, waits until each has finished its first cycle (enrolled,
/// relaying, policy known), then starts the client fleet, each a real agent on its own
/// address.
async fn start_agents(
    fleet: &Fleet,
    dir: &Path,
    root: &Path,
    relay_addrs: [SocketAddr; 2],
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Started> {
    let relays = relay_addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let cfg = fleet.agent_config(
                &dir.join(format!("agent-{}", i + 1)),
                addr.ip(),
                Some(*addr),
                Some(root),
            );
            (*addr, Some(AgentHandle::spawn(cfg)))
        })
        .collect();
    let first_cycles = (1..=relay_addrs.len())
        .map(|i| dir.join(format!("agent-{i}/last-report.json")))
        .collect::<Vec<_>>();
    wait_until(timeout, || {
        let done = first_cycles.iter().all(|f| f.is_file());
        async move { done }
    })
    .await
    .context("the update agents did not finish their first cycle")?;
    let clients = plan_clients(n);
    let handles = clients
        .iter()
        .map(|c| {
            let cfg = fleet.agent_config(
                &dir.join("clients").join(c.ip.to_string()),
                c.ip,
                None,
                Some(root),
            );
            AgentHandle::spawn(cfg)
        })
        .collect();
    Ok((relays, clients, handles))
}

/// Office 1 and office 2 share the clients; a few (one in ten, at most four) are outside
/// every range and reach the server through the fallback alone.
fn plan_clients(n: usize) -> Vec<Client> {
    let outside = (n / 10).clamp(usize::from(n >= 3), 4);
    let offices = n - outside;
    let mut out = Vec::new();
    for i in 0..offices {
        let (group, third) = if i % 2 == 0 {
            (Group::Office1, 1)
        } else {
            (Group::Office2, 2)
        };
        let host = u8::try_from(10 + i / 2).unwrap_or(250);
        out.push(Client {
            group,
            ip: IpAddr::V4(Ipv4Addr::new(127, 0, third, host)),
        });
    }
    for i in 0..outside {
        let host = u8::try_from(10 + i).unwrap_or(250);
        out.push(Client {
            group: Group::Outside,
            ip: IpAddr::V4(Ipv4Addr::new(127, 0, 9, host)),
        });
    }
    out
}

impl Demo {
    async fn release(&mut self, n: u32, version: &str) -> anyhow::Result<()> {
        self.upstream
            .publish(
                Category::Components,
                ITEM,
                version,
                &[("patterns.db", &pattern_file(n))],
            )
            .await?;
        self.fleet.mirror().await?;
        sync_mirror(&self.fleet, &self.mirror)?;
        let notified = self.fleet.notify().await?;
        println!("  Notify All Clients: {}", demo_view::notified(&notified));
        Ok(())
    }

    /// Waits (with progress bars) until every client has `version`, then prints the summary.
    async fn act(&self, version: &str) -> anyhow::Result<bool> {
        let before = self.totals().await;
        let started = Instant::now();
        let bars = demo_view::Progress::new(&self.clients);
        let mut current;
        loop {
            current = demo_view::statuses(&self.dir, &self.clients, ITEM, version);
            bars.update(&current);
            if current.iter().all(|s| s.current) || started.elapsed() > self.timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bars.finish();
        let after = self.totals().await;
        demo_view::summary(
            &self.clients,
            &current,
            &after.minus(&before),
            started.elapsed(),
        );
        Ok(current.iter().all(|s| s.current))
    }

    async fn totals(&self) -> Totals {
        let mut relays = Vec::new();
        for (addr, _) in &self.relays {
            relays.push(demo_view::relay_bytes(*addr).await);
        }
        Totals {
            server: demo_view::server_bytes(self.fleet.api().client()).await,
            relays,
            mirror: self.mirror.bytes.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    async fn shutdown(&mut self) {
        for h in &mut self.handles {
            let _ = h.stop().await;
        }
        for (_, h) in &mut self.relays {
            if let Some(h) = h {
                let _ = h.stop().await;
            }
        }
        self.mirror.stop();
        self.fleet.stop().await;
    }
}
