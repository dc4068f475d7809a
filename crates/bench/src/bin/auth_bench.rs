//! `auth-bench`: what 200 parallel requests with a wrong secret cost the server
//! (`docs/operating.md#limits`). The bench starts the real server binary (`cascade server`,
//! release build, default argon2 cost) on a fresh data directory, reads the bootstrap admin
//! token from its first-start message, then for `--seconds` keeps `--parallel` requests in
//! flight to `GET /api/policy` with the admin token's real id and a wrong secret, while it
//! samples the server's RSS (`/proc/PID/status`) and times `GET /healthz` every 100 ms.
//!
//! The figures: RSS before, at most during, and after the storm; `/healthz` latency p50, p99
//! and max; wrong-secret requests answered (all must be 401).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Wrong-secret storm: server RSS and /healthz latency")]
struct Args {
    /// The `cascade` binary (release build).
    #[arg(long, default_value = "target/release/cascade")]
    server_bin: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 200)]
    parallel: usize,
    /// How long the storm lasts.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[allow(
    clippy::print_stdout,
    clippy::too_many_lines,
    clippy::cast_precision_loss
)]
#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new(&args.server_bin)
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            // What is measured is bounded argon2, not the lockout (which would answer 429
            // without hashing after a few failures: docs/operating.md#rate-limits-and-lockout).
            "--lockout-failures",
            "4294967295",
            "--lockout-address-failures",
            "4294967295",
            "--data-dir",
        ])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", args.server_bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut admin = None;
    while let Some(line) = lines.next() {
        if line?.starts_with("its API token") {
            admin = lines.next().transpose()?.map(|l| l.trim().to_owned());
            break;
        }
    }
    let Some(admin) = admin else {
        let _ = child.kill();
        bail!("the server did not print its admin token");
    };
    // cascade_adm_<id>_<secret>: keep the id, change the secret.
    let (prefix, secret) = admin.rsplit_once('_').context("token format")?;
    let wrong_secret: String = secret
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let wrong = format!("{prefix}_{wrong_secret}");
    let url = format!("https://127.0.0.1:{port}");
    let ca = std::fs::read(data.path().join("tls/ca.pem"))?;
    let http = cascade_client::http_builder(Some(&ca))?
        .pool_max_idle_per_host(args.parallel + 8)
        .build()?;
    // Warm up: the right token once, the server answers.
    let ok = http
        .get(format!("{url}/api/policy"))
        .bearer_auth(&admin)
        .send()
        .await?;
    if !ok.status().is_success() {
        bail!("GET /api/policy with the admin token: {}", ok.status());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid).unwrap_or(0);

    let end = Instant::now() + Duration::from_secs(args.seconds);
    let answered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut storm = Vec::new();
    for _ in 0..args.parallel {
        let (http, url, wrong) = (http.clone(), url.clone(), wrong.clone());
        let (answered, refused) = (answered.clone(), refused.clone());
        storm.push(tokio::spawn(async move {
            while Instant::now() < end {
                let r = http
                    .get(format!("{url}/api/policy"))
                    .bearer_auth(&wrong)
                    .send()
                    .await;
                if let Ok(r) = r {
                    answered.fetch_add(1, Ordering::Relaxed);
                    if r.status() == 401 {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let health = cascade_client::http_builder(Some(&ca))?.build()?;
    let mut peak = before;
    let mut times = Vec::new();
    while Instant::now() < end {
        let t = Instant::now();
        let r = health.get(format!("{url}/healthz")).send().await;
        let took = t.elapsed();
        if r.is_ok_and(|r| r.status().is_success()) {
            times.push(took);
        } else {
            times.push(Duration::from_secs(3600));
        }
        peak = peak.max(rss_kib(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in storm {
        let _ = s.await;
    }
    peak = peak.max(rss_kib(pid).unwrap_or(0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "parallel {} for {} s: {} wrong-secret requests answered, {} of them 401",
        args.parallel,
        args.seconds,
        answered.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    println!(
        "server RSS: before {:.1} MB, peak {:.1} MB, 2 s after {:.1} MB",
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        after as f64 / 1024.0
    );
    println!(
        "/healthz ({} probes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times.last().copied().unwrap_or_default())
    );
    Ok(())
}
