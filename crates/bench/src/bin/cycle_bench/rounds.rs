//! The rounds: cycles run by the workers at the asked pace, one measured round against the
//! server, the same cycles against the reference (nginx, started here with its clients
//! warmed up).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_bench::procs::{cpu_split_us, cpu_us, loadavg, server_counts, ByRoute};
use cascade_bench::reference::{nginx_bin, NginxTls};
use cascade_client::AdminClient;

use crate::agents::{cycle, grouped, reference_agents, reference_locations, Agent};
use crate::report::{ReferenceRound, Round};
use crate::Args;

/// Runs `cycles` cycles over `groups` (one worker per group, each cycling through its
/// clients in turn), `rate` cycles started per second in all when above 0; returns the
/// errors.
pub(crate) async fn run_cycles(groups: &mut [Vec<Agent>], cycles: usize, rate: f64) -> usize {
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
pub(crate) fn per(total: u64, n: usize) -> f64 {
    (total as f64 / n.max(1) as f64 * 10.0).round() / 10.0
}

pub(crate) async fn round(
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
pub(crate) async fn reference_round(
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

/// nginx as the reference, with its clients warmed up (one cycle each).
pub(crate) async fn start_reference(
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
