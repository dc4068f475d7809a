//! A real `cascade server` as a child process ([`start_server`]), and what the benchmarks
//! read about processes and the machine: CPU time and RSS from `/proc`, the server's request
//! and TLS counts from its `/metrics`, the load average, the CPU model.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use url::Url;

/// A child process killed when dropped.
pub struct Proc {
    child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has exited.
    ///
    /// # Errors
    /// When it exited, or its state cannot be read.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited: {status}", self.name);
        }
        Ok(())
    }
}

/// Starts `bin args…` with `RUST_LOG=warn`, stdout to `out` and stderr to `log`.
///
/// # Errors
/// When a file cannot be created or the program cannot be started.
pub fn spawn(bin: &Path, args: &[String], log: &Path, out: &Path, name: String) -> Result<Proc> {
    let child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(std::fs::File::create(out)?))
        .stderr(Stdio::from(std::fs::File::create(log)?))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc { child, name })
}

/// Reads the first-start message of `cascade server` from `out`: (URL, admin token,
/// enrollment token).
///
/// # Errors
/// When the server exits or prints no such message within two minutes.
pub async fn first_start(out: &Path, server: &mut Proc) -> Result<(Url, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        let after = |marker: &str| {
            let mut lines = text.lines();
            lines.find(|l| l.contains(marker))?;
            lines.next().map(|l| l.trim().to_owned())
        };
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("cascade server first start: "))
            .map(str::trim);
        if let (Some(url), Some(admin), Some(enroll)) = (
            url,
            after("its API token"),
            after("enrollment token for clients"),
        ) {
            return Ok((Url::parse(url)?, admin, enroll));
        }
        server.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "no first-start message from {} in {}",
                server.name,
                out.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `cascade server` started by [`start_server`].
pub struct ServerProc {
    /// The process.
    pub proc: Proc,
    /// Its base URL (`https://127.0.0.1:PORT/`).
    pub url: Url,
    /// The bootstrap admin token.
    pub admin: String,
    /// The first enrollment token.
    pub enroll: String,
    /// Its private CA (PEM), to trust.
    pub ca_pem: Vec<u8>,
}

/// Starts `bin server` on a free port of 127.0.0.1 with its data in `work/server` (stdout in
/// `work/server.out`, stderr in `work/server.log`), TLS from its own private CA as by
/// default, and `extra` arguments; returns once it printed its first-start message.
///
/// # Errors
/// When it cannot be started, exits, or prints no first-start message.
pub async fn start_server(bin: &Path, work: &Path, extra: &[String]) -> Result<ServerProc> {
    let addr = free_port(Ipv4Addr::LOCALHOST)?;
    let data = work.join("server");
    let mut args = vec![
        "server".to_owned(),
        "--listen".to_owned(),
        addr.to_string(),
        "--data-dir".to_owned(),
        data.display().to_string(),
    ];
    args.extend_from_slice(extra);
    let out = work.join("server.out");
    let mut proc = spawn(
        bin,
        &args,
        &work.join("server.log"),
        &out,
        "cascade server".into(),
    )?;
    let (url, admin, enroll) = first_start(&out, &mut proc).await?;
    let ca_pem = std::fs::read(data.join("tls/ca.pem")).context("the server's CA")?;
    Ok(ServerProc {
        proc,
        url,
        admin,
        enroll,
        ca_pem,
    })
}

/// The `cascade` binary: `given`, else `cascade` next to the running benchmark binary.
///
/// # Errors
/// When this binary's directory is unknown or there is no such file.
pub fn cascade_bin(given: Option<&Path>) -> Result<PathBuf> {
    let bin = match given {
        Some(b) => b.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary's directory")?
            .join("cascade"),
    };
    if !bin.is_file() {
        bail!(
            "no cascade binary at {} (cargo build --release -p cascade-cli, or --cascade-bin)",
            bin.display()
        );
    }
    Ok(bin)
}

/// CPU time used so far by process `pid`, µs (clock-tick resolution): (user, system).
pub fn cpu_split_us(pid: u32) -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0, 0);
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return (0, 0);
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the command name;
    // USER_HZ is 100 on Linux.
    (ticks(11) * 10_000, ticks(12) * 10_000)
}

/// CPU time (user + system) used so far by process `pid`, µs (clock-tick resolution).
pub fn cpu_us(pid: u32) -> u64 {
    let (user, system) = cpu_split_us(pid);
    user + system
}

/// The working directory of a run: `given` (created if missing), or a new temporary one named
/// `PREFIX…`, returned with its guard (removed when the guard drops; keep it for the run).
///
/// # Errors
/// When the directory cannot be created.
pub fn work_dir(
    given: Option<&Path>,
    prefix: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(d) = given {
        std::fs::create_dir_all(d)?;
        return Ok((d.to_owned(), None));
    }
    let t = tempfile::Builder::new().prefix(prefix).tempdir()?;
    Ok((t.path().to_owned(), Some(t)))
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`; `pid` may be `self`), 0 when
/// unknown.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The load average over 1, 5 and 15 minutes, as `/proc/loadavg` says it (`"1.02 0.87 0.66"`).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A free TCP port on `ip` (bound and released).
///
/// # Errors
/// When `ip` cannot be bound.
pub fn free_port(ip: Ipv4Addr) -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}"))?;
    Ok(l.local_addr()?)
}

/// The open-files limit of this process.
pub fn open_files_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The machine a run ran on.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub nproc: usize,
    /// The CPU model.
    pub cpu: String,
    /// Memory, KiB.
    pub mem_total_kib: u64,
    /// This process's open-files limit.
    pub open_files_limit: Option<u64>,
}

/// The machine this runs on.
pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu,
        mem_total_kib,
        open_files_limit: open_files_limit(),
    }
}

/// Requests the server answered so far by `method route status`, from `/metrics`.
pub type ByRoute = BTreeMap<String, u64>;

/// What the server counted so far, from `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Requests answered by route.
    pub requests: ByRoute,
    /// Bytes sent from `/repo/`.
    pub repo_bytes: u64,
    /// TLS handshakes completed: full, resumed.
    pub tls: (u64, u64),
}

impl Counts {
    /// Requests answered since `before`, by route, and in all.
    pub fn requests_since(&self, before: &Counts) -> (ByRoute, u64) {
        let mut by_route = ByRoute::new();
        let mut all = 0;
        for (key, n) in &self.requests {
            let d = n.saturating_sub(before.requests.get(key).copied().unwrap_or(0));
            if d > 0 {
                all += d;
                by_route.insert(key.clone(), d);
            }
        }
        (by_route, all)
    }
}

/// The server's counts so far, from its `/metrics` (read with `api`'s admin token).
///
/// # Errors
/// When `/metrics` cannot be read.
pub async fn server_counts(api: &cascade_client::AdminClient) -> Result<Counts> {
    let text = api.client().metrics().await.context("metrics")?;
    let requests = text
        .lines()
        .filter_map(|l| l.strip_prefix("cascade_http_request_duration_seconds_count{"))
        .filter_map(|l| {
            let (labels, n) = l.rsplit_once("} ")?;
            let label = |k: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix("=\""))
                    .map(|v| v.trim_end_matches('"').to_owned())
            };
            let key = format!(
                "{} {} {}",
                label("method")?,
                label("route")?,
                label("status")?
            );
            Some((key, n.trim().parse::<u64>().ok()?))
        })
        .collect();
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Counts {
        requests,
        repo_bytes: value("cascade_repo_bytes_total "),
        tls: (
            value("cascade_tls_handshakes_total{kind=\"full\"} "),
            value("cascade_tls_handshakes_total{kind=\"resumed\"} "),
        ),
    })
}
