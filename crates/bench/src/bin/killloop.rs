//! `killloop`: SIGKILL `cascade agent --once` at random moments, many times over, and look at
//! what each kill left behind. The bench starts an upstream repository (signed TUF, on
//! 127.0.0.1) and a real server mirroring it (in this process, cheap credential hashing),
//! then runs the release `cascade` binary as one agent (`--bind-ip 127.0.1.50`) `--runs` times,
//! each killed after a random delay in `[0, 1.2 × a full run)`. Versions alternate between a
//! 4 MiB and a 32 MiB `patterns.db` (content differs per version): whenever the agent has
//! installed the newest version, the next one is published and mirrored, so installs really
//! happen (at most `--max-versions` versions, to bound the disk).
//!
//! After each kill it checks the installed tree (the `current` link names a version whose
//! files are exactly that version's), the agent's JSON files (trust metadata under `trust/`
//! and the state files: non-empty and valid JSON), the `.partial` bytes left for the next run,
//! and debris (`.tmp-*`, `*.partial`, `.fetch-*`, `.stage-*`) anywhere in the agent's and the
//! server's directories. The server's `cascade_repo_bytes_total` gives the bytes it sent.
//! It prints a summary (machine, counts, bytes) and writes it as JSON.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_core::Category;
use cascade_testkit::{pseudo_random, start_fleet, Fleet, Upstream};
use clap::Parser;
use serde::Serialize;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Kill loop: SIGKILL `cascade agent --once` at random moments")]
struct Args {
    /// The `cascade` binary (release build).
    #[arg(long)]
    cascade: PathBuf,
    /// Killed runs.
    #[arg(long, default_value_t = 1000)]
    runs: u64,
    /// Stop starting runs after this many seconds.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
    /// Versions published at most (each one 4 or 32 MiB, kept by upstream and server).
    #[arg(long, default_value_t = 60)]
    max_versions: u64,
    /// Seed of the kill moments.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Working directory (a fresh temporary one when absent; removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// JSON result file.
    #[arg(long, default_value = "target/bench/killloop.json")]
    out: PathBuf,
}

const SMALL: usize = 4 << 20;
const BIG: usize = 32 << 20;

/// Size of version `v`: odd versions 4 MiB, even ones 32 MiB.
fn size_of(v: u64) -> usize {
    if v % 2 == 1 {
        SMALL
    } else {
        BIG
    }
}

/// Content of version `v`.
fn content(v: u64) -> Vec<u8> {
    pseudo_random(size_of(v), v)
}

/// The summary.
#[derive(Debug, Default, Serialize)]
struct Summary {
    nproc: usize,
    loadavg_start: String,
    loadavg_end: String,
    runs: u64,
    killed: u64,
    finished_before_kill: u64,
    seconds: f64,
    versions_published: u64,
    installs_completed: u64,
    torn_installs: u64,
    torn_trust_files: u64,
    torn_state_files: u64,
    runs_starting_with_partial: u64,
    partial_bytes_at_run_start: u64,
    partial_files_at_run_start_max: u64,
    server_bytes_sent: u64,
    bytes_installed: u64,
    debris_after_kill_max: u64,
    debris_files_end: u64,
    debris_bytes_end: u64,
    debris_end: Vec<String>,
    stage_dirs_end: u64,
    final_run_exit: Option<i32>,
    final_installed: Option<String>,
    newest_version: u64,
    torn_details: Vec<String>,
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn agent(cascade: &Path, data: &Path, fleet: &Fleet, root: &Path) -> Command {
    let mut cmd = Command::new(cascade);
    cmd.args(["agent", "--once", "--bind-ip", "127.0.1.50", "--data-dir"])
        .arg(data)
        .arg("--server")
        .arg(fleet.url.as_str())
        .arg("--enroll-token")
        .arg(&fleet.enroll)
        .arg("--upstream-root")
        .arg(root)
        .arg("--site-root")
        .arg(fleet.site.public_dir().join("metadata/1.root.json"))
        .env("CASCADE_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Every file under `dir` (recursively, links not followed).
fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() {
            out.push((p.clone(), u64::MAX));
            walk(&p, out);
        } else if ft.is_file() {
            out.push((p, e.metadata().map_or(0, |m| m.len())));
        }
    }
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn in_scratch(p: &Path) -> bool {
    p.components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with(".load-"))
}

fn is_json(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "json")
}

/// A partial download: `DATA/partial/.partial-SHA256` (kept to be resumed), or the older
/// `NAME.partial` beside a stage.
fn is_partial(n: &str) -> bool {
    n.starts_with(".partial-") || n.ends_with(".partial")
}

fn is_debris(n: &str) -> bool {
    n.starts_with(".tmp-") || n.ends_with(".partial") || n.starts_with(".fetch-")
}

/// Debris files (count, bytes, paths) and `.stage-*` directories under `dirs`.
fn debris(dirs: &[&Path]) -> (u64, u64, Vec<String>, u64) {
    let (mut n, mut bytes, mut paths, mut stages) = (0, 0, Vec::new(), 0);
    for d in dirs {
        let mut files = Vec::new();
        walk(d, &mut files);
        for (p, len) in files {
            let nm = name(&p);
            if len == u64::MAX {
                // A stage, or the trust scratch copy of an interrupted metadata load.
                if nm.starts_with(".stage-") || nm.starts_with(".load-") {
                    stages += 1;
                }
                continue;
            }
            if is_debris(&nm) {
                n += 1;
                bytes += len;
                if paths.len() < 20 {
                    paths.push(format!("{} ({len} B)", p.display()));
                }
            }
        }
    }
    (n, bytes, paths, stages)
}

/// `.partial` files under the agent's directory: (count, bytes).
fn partials(data: &Path) -> (u64, u64) {
    let mut files = Vec::new();
    walk(data, &mut files);
    files
        .iter()
        .filter(|(p, len)| *len != u64::MAX && is_partial(&name(p)))
        .fold((0, 0), |(n, b), (_, len)| (n + 1, b + len))
}

/// JSON files of the agent that are 0-byte or invalid: (trust files, state files, details).
fn torn_json(data: &Path) -> (u64, u64, Vec<String>) {
    let mut files = Vec::new();
    walk(&data.join("trust"), &mut files);
    let trust = files
        .iter()
        // A `.load-*` scratch copy is no trust state (nothing reads it; it is debris).
        .filter(|(p, len)| *len != u64::MAX && is_json(p) && !in_scratch(p))
        .map(|(p, _)| p.clone())
        .collect::<Vec<_>>();
    let state = std::fs::read_dir(data)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_json(p))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let bad = |p: &PathBuf| match std::fs::read(p) {
        Ok(b) => b.is_empty() || serde_json::from_slice::<serde_json::Value>(&b).is_err(),
        Err(_) => false,
    };
    let mut details = Vec::new();
    let mut count = |list: &[PathBuf]| {
        let mut n = 0;
        for p in list.iter().filter(|p| bad(p)) {
            n += 1;
            let len = std::fs::metadata(p).map_or(0, |m| m.len());
            details.push(format!("{} ({len} B)", p.display()));
        }
        n
    };
    let t = count(&trust);
    let s = count(&state);
    (t, s, details)
}

/// The installed version, or why the tree is torn (`Err`). `Ok(None)`: nothing installed.
fn installed(data: &Path, cache: &mut HashMap<u64, Vec<u8>>) -> Result<Option<u64>, String> {
    let item = data.join("installed/components/patterns");
    let Ok(link) = std::fs::read_link(item.join("current")) else {
        return Ok(None);
    };
    let v: u64 = link
        .to_string_lossy()
        .parse()
        .map_err(|_| format!("current -> {}", link.display()))?;
    let dir = item.join(&link);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names != ["patterns.db"] {
        return Err(format!("version {v} holds {names:?}"));
    }
    let got = std::fs::read(dir.join("patterns.db")).map_err(|e| e.to_string())?;
    let want = cache.entry(v).or_insert_with(|| content(v));
    if got != *want {
        return Err(format!(
            "version {v}: patterns.db differs ({} of {} bytes)",
            got.len(),
            want.len()
        ));
    }
    Ok(Some(v))
}

async fn publish(upstream: &Upstream, fleet: &Fleet, v: u64) -> Result<()> {
    // No deltas: random content does not compress, and making them costs seconds per version.
    upstream
        .publish_with(
            Category::Components,
            "patterns",
            &v.to_string(),
            &[("patterns.db", &content(v))],
            cascade_repo::PublishOptions {
                delta_depth: 0,
                ..cascade_repo::PublishOptions::default()
            },
        )
        .await
        .context("publish")?;
    fleet.mirror().await.context("mirror")?;
    Ok(())
}

async fn repo_bytes(fleet: &Fleet) -> u64 {
    let text = fleet.api().client().metrics().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("cascade_repo_bytes_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn run_to_end(cmd: &mut Command) -> Result<(Option<i32>, Duration)> {
    let t = Instant::now();
    let status = cmd.status().context("run cascade agent")?;
    Ok((status.code(), t.elapsed()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one loop, read top to bottom
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp;
    let work = if let Some(w) = &args.work_dir {
        std::fs::create_dir_all(w)?;
        w.clone()
    } else {
        tmp = tempfile::tempdir()?;
        tmp.path().to_owned()
    };
    let mut sum = Summary {
        nproc: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        loadavg_start: loadavg(),
        ..Summary::default()
    };
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let upstream = Upstream::create(&work.join("upstream"), Some(loopback)).await?;
    let root = work.join("upstream-root.json");
    publish_first(&upstream, &root).await?;
    let fleet = start_fleet(&work.join("server"), loopback, Some(root.clone())).await?;
    fleet
        .apply_policy(&format!(
            "activeupdate_url = \"{}\"",
            upstream.url().context("upstream URL")?
        ))
        .await?;
    fleet.mirror().await?;
    let data = work.join("agent");
    let cascade = args.cascade.clone();
    let mut cache = HashMap::new();

    // Calibration: a full 4 MiB install, then a full 32 MiB one, timed.
    let (code, small_run) = run_to_end(&mut agent(&cascade, &data, &fleet, &root))?;
    if installed(&data, &mut cache).ok().flatten() != Some(1) {
        bail!("the first run (exit {code:?}) did not install version 1");
    }
    publish(&upstream, &fleet, 2).await?;
    let (code, big_run) = run_to_end(&mut agent(&cascade, &data, &fleet, &root))?;
    if installed(&data, &mut cache).ok().flatten() != Some(2) {
        bail!("the second run (exit {code:?}) did not install version 2");
    }
    let mut newest = 3;
    publish(&upstream, &fleet, newest).await?;
    sum.versions_published = 3;
    let bytes_before = repo_bytes(&fleet).await;
    eprintln!(
        "calibrated: full run {small_run:?} (4 MiB), {big_run:?} (32 MiB); {} runs",
        args.runs
    );

    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let start = Instant::now();
    let mut last_installed = Some(2);
    for i in 0..args.runs {
        if start.elapsed() > Duration::from_secs(args.max_seconds) {
            eprintln!("time limit: stopping after {i} runs");
            break;
        }
        let (pn, pb) = partials(&data);
        if pn > 0 {
            sum.runs_starting_with_partial += 1;
            sum.partial_bytes_at_run_start += pb;
        }
        sum.partial_files_at_run_start_max = sum.partial_files_at_run_start_max.max(pn);
        let full = if size_of(newest) == BIG {
            big_run
        } else {
            small_run
        };
        let max_ms = u64::try_from(full.as_millis() * 12 / 10)
            .unwrap_or(u64::MAX)
            .max(1);
        let delay = Duration::from_millis(rng.next() % max_ms);
        let mut child = agent(&cascade, &data, &fleet, &root)
            .spawn()
            .context("spawn cascade agent")?;
        let t = Instant::now();
        let mut exited = None;
        while t.elapsed() < delay {
            if let Some(s) = child.try_wait()? {
                exited = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if exited.is_none() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            sum.killed += 1;
        } else {
            sum.finished_before_kill += 1;
        }
        sum.runs += 1;

        match installed(&data, &mut cache) {
            Ok(v) => {
                if v.is_some() && v != last_installed {
                    sum.installs_completed += 1;
                    sum.bytes_installed += v.map_or(0, |v| size_of(v) as u64);
                }
                if v.is_none() {
                    sum.torn_installs += 1;
                    sum.torn_details
                        .push(format!("run {i}: the installed version disappeared"));
                }
                last_installed = v.or(last_installed);
            }
            Err(why) => {
                sum.torn_installs += 1;
                sum.torn_details.push(format!("run {i}: {why}"));
            }
        }
        let (t, s, details) = torn_json(&data);
        sum.torn_trust_files += t;
        sum.torn_state_files += s;
        for d in details {
            if sum.torn_details.len() < 50 {
                sum.torn_details.push(format!("run {i}: {d}"));
            }
        }
        let (dn, _, _, _) = debris(&[&data, &work.join("server")]);
        sum.debris_after_kill_max = sum.debris_after_kill_max.max(dn);

        if last_installed == Some(newest) && newest < args.max_versions {
            newest += 1;
            publish(&upstream, &fleet, newest).await?;
            sum.versions_published += 1;
        }
        if (i + 1) % 25 == 0 {
            eprintln!(
                "{} runs, {} installs, {} torn installs, {} torn trust files, {:.0} s",
                i + 1,
                sum.installs_completed,
                sum.torn_installs,
                sum.torn_trust_files,
                start.elapsed().as_secs_f64()
            );
        }
    }
    sum.seconds = start.elapsed().as_secs_f64();
    sum.server_bytes_sent = repo_bytes(&fleet).await - bytes_before;
    let (dn, db, dp, stages) = debris(&[&data, &work.join("server")]);
    (sum.debris_files_end, sum.debris_bytes_end, sum.debris_end) = (dn, db, dp);
    sum.stage_dirs_end = stages;
    // One last run to the end: the agent recovers by itself.
    let (code, _) = run_to_end(&mut agent(&cascade, &data, &fleet, &root))?;
    sum.final_run_exit = code;
    sum.final_installed = Some(match installed(&data, &mut cache) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("torn: {e}"),
    });
    sum.newest_version = newest;
    sum.loadavg_end = loadavg();

    print_summary(&sum);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&sum)?)?;
    eprintln!("written {}", args.out.display());
    Ok(())
}

async fn publish_first(upstream: &Upstream, root: &Path) -> Result<()> {
    upstream
        .publish(
            Category::Components,
            "patterns",
            "1",
            &[("patterns.db", &content(1))],
        )
        .await?;
    upstream.write_root(root)?;
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn print_summary(s: &Summary) {
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!("kill loop: cascade agent --once, SIGKILL at random moments");
    println!(
        "machine: nproc {}, load {} (start) / {} (end)",
        s.nproc, s.loadavg_start, s.loadavg_end
    );
    println!(
        "runs {} in {:.0} s: killed {}, finished before the kill {}",
        s.runs, s.seconds, s.killed, s.finished_before_kill
    );
    println!(
        "versions published {} (4 / 32 MiB alternating), installs completed {} ({:.0} MiB)",
        s.versions_published,
        s.installs_completed,
        mib(s.bytes_installed)
    );
    println!("torn installs {}", s.torn_installs);
    println!(
        "torn JSON after a kill (0-byte or invalid): trust metadata {}, state files {}",
        s.torn_trust_files, s.torn_state_files
    );
    println!(
        "bytes: server sent {:.0} MiB for {:.0} MiB installed; runs starting with a .partial {} \
         ({:.0} MiB in .partial files at their start, at most {} files)",
        mib(s.server_bytes_sent),
        mib(s.bytes_installed),
        s.runs_starting_with_partial,
        mib(s.partial_bytes_at_run_start),
        s.partial_files_at_run_start_max
    );
    println!(
        "debris (.tmp-*, *.partial, .fetch-*) after the last kill: {} files, {:.1} MiB; \
         most after any kill {}; .stage-* and .load-* dirs {}",
        s.debris_files_end,
        mib(s.debris_bytes_end),
        s.debris_after_kill_max,
        s.stage_dirs_end
    );
    for d in &s.debris_end {
        println!("  {d}");
    }
    println!(
        "final run to the end: exit {:?}, installed {:?} (newest {})",
        s.final_run_exit, s.final_installed, s.newest_version
    );
    for d in s.torn_details.iter().take(20) {
        println!("  torn: {d}");
    }
}
