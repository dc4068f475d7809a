//! The health of each update agent and URL source (`docs/operating.md#health`): what the
//! clients' recent reports say about it and, for an agent, its own check-ins.

use std::collections::{BTreeMap, HashMap};

use cascade_core::{EntrySource, Policy};
use cascade_proto::{
    AffectedClient, ClientView, FleetHealth, HealthLevel, SourceHealth, SourceKind,
};

use crate::state::AppState;
use crate::store::{SourceTally, StoreError};

/// At most this many affected clients are listed per source.
const MAX_AFFECTED: usize = 1000;
/// The same, for SQL.
const MAX_AFFECTED_SQL: i64 = 1000;

/// The health window: two update intervals, in seconds.
pub fn window_secs(st: &AppState) -> i64 {
    i64::try_from(st.update_interval.as_secs().saturating_mul(2)).unwrap_or(i64::MAX)
}

/// Every client with its reports, and the health of every source.
///
/// # Errors
/// Store errors.
pub async fn health(st: &AppState) -> Result<FleetHealth, StoreError> {
    let cur = st.store.current().await?;
    let now = st.clock.now();
    let window = window_secs(st);
    let tallies = st
        .store
        .source_tallies(now.saturating_sub(window), MAX_AFFECTED_SQL)
        .await?;
    let check_ins = st.store.agent_check_ins().await?;
    Ok(from_tallies(&cur.policy, tallies, &check_ins, now, window))
}

/// When a client's update happened: its report's finish time, else its check-in.
fn report_time(c: &ClientView) -> Option<i64> {
    c.last_update
        .as_ref()
        .and_then(|r| r.finished_at)
        .or(c.last_seen)
}

/// Health of every registered update agent and every URL source of the list at `now`,
/// counting the reports of clients seen within `window` seconds.
pub fn assess(policy: &Policy, clients: &[ClientView], now: i64, window: i64) -> FleetHealth {
    let mut tallies: HashMap<String, SourceTally> = HashMap::new();
    for c in clients {
        let recent = c.last_seen.is_some_and(|t| now.saturating_sub(t) <= window);
        let Some(report) = c.last_update.as_ref().filter(|_| recent) else {
            continue;
        };
        let at = report_time(c);
        let derived = crate::store::derive(report);
        for s in derived.sources {
            let t = tallies.entry(s.source).or_default();
            match s.ok {
                Some(false) => {
                    t.failed += 1;
                    t.first_failure = match (t.first_failure, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    t.affected.push(AffectedClient {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        failed_at: at,
                        reason: s.reason,
                        served_by: derived.served_by.clone(),
                    });
                }
                Some(true) => {
                    t.served += 1;
                    t.last_ok = t.last_ok.max(at);
                }
                None => {}
            }
        }
    }
    for t in tallies.values_mut() {
        t.affected
            .sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        t.affected.truncate(MAX_AFFECTED);
    }
    // The agents' own check-ins: the newest of the approved clients enrolled at each address.
    let mut check_ins: HashMap<String, i64> = HashMap::new();
    for c in clients.iter().filter(|c| c.is_agent) {
        if let (Some(addr), Some(seen)) = (c.agent_address.as_deref(), c.last_seen) {
            let e = check_ins.entry(addr.to_owned()).or_insert(seen);
            *e = (*e).max(seen);
        }
    }
    from_tallies(policy, tallies, &check_ins, now, window)
}

/// Health of every registered update agent and every URL source of the list at `now`, from
/// what clients' recent reports say about each source and the agents' check-ins.
#[allow(clippy::implicit_hasher)]
pub fn from_tallies(
    policy: &Policy,
    mut tallies: HashMap<String, SourceTally>,
    check_ins: &HashMap<String, i64>,
    now: i64,
    window: i64,
) -> FleetHealth {
    let mut sources = Vec::new();
    for a in &policy.agent {
        let address = a.address.to_string();
        let check_in = check_ins.get(address.as_str()).copied();
        sources.push(one(
            SourceKind::Agent,
            address,
            tallies.remove(&format!("agent:{}", a.address)),
            check_in,
            now,
            window,
        ));
    }
    let mut urls: Vec<String> = Vec::new();
    for e in &policy.sources {
        if let EntrySource::Url(u) = &e.source {
            let u = u.to_string();
            if !urls.contains(&u) {
                urls.push(u);
            }
        }
    }
    for u in urls {
        let t = tallies.remove(&format!("url:{u}"));
        sources.push(one(SourceKind::Url, u, t, None, now, window));
    }
    FleetHealth {
        checked_at: now,
        window_s: window,
        sources,
    }
}

/// `HH:MM UTC` of a Unix time.
fn clock_time(secs: i64) -> String {
    let rem = secs.rem_euclid(86_400);
    format!("{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Where most affected clients went instead, in words.
fn fallback_words(affected: &[AffectedClient], failed: u64) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stranded = 0;
    for a in affected {
        match a.served_by.as_deref() {
            Some(s) => *by.entry(s).or_default() += 1,
            None => stranded += 1,
        }
    }
    // Clients past the listed ones count as where the listed ones went (the list is cut
    // at MAX_AFFECTED only for a fleet where thousands failed).
    let n = usize::try_from(failed)
        .unwrap_or(usize::MAX)
        .max(affected.len());
    let clients = if n == 1 { "client" } else { "clients" };
    let mut parts: Vec<(usize, &str)> = by.into_iter().map(|(s, k)| (k, s)).collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    match (parts.as_slice(), stranded) {
        ([(_, only)], 0) => format!("{n} {clients} on {only}"),
        ([], _) => format!("{n} {clients} got no update from any source"),
        _ => {
            let mut words: Vec<String> = parts.iter().map(|(k, s)| format!("{k} on {s}")).collect();
            if stranded > 0 {
                words.push(format!("{stranded} without an update"));
            }
            format!("{n} {clients} affected ({})", words.join(", "))
        }
    }
}

fn one(
    kind: SourceKind,
    address: String,
    tally: Option<SourceTally>,
    check_in: Option<i64>,
    now: i64,
    window: i64,
) -> SourceHealth {
    let t = tally.unwrap_or_default();
    let first_failure = t.first_failure;
    let silent =
        kind == SourceKind::Agent && check_in.is_some_and(|seen| now.saturating_sub(seen) > window);
    let any_failed = t.failed > 0;
    // Down: every client that tried it since its first recent failure failed.
    let failing = any_failed && (t.last_ok.is_none() || t.last_ok < first_failure);
    let level = if failing || silent {
        HealthLevel::Down
    } else if any_failed {
        HealthLevel::Degraded
    } else if t.served > 0 || check_in.is_some() {
        HealthLevel::Healthy
    } else {
        HealthLevel::Unknown
    };
    let affected = t.affected;
    let since = match level {
        HealthLevel::Down if !failing => check_in,
        HealthLevel::Down | HealthLevel::Degraded => first_failure,
        _ => None,
    };
    let label = kind.label();
    let summary = match level {
        HealthLevel::Down if failing => format!(
            "{label} {address} down: {}{}",
            fallback_words(&affected, t.failed),
            since
                .map(|s| format!(" since {}", clock_time(s)))
                .unwrap_or_default()
        ),
        HealthLevel::Down => format!(
            "{label} {address} down: no check-in since {}",
            check_in.map_or_else(|| "ever".to_owned(), clock_time)
        ),
        HealthLevel::Degraded => format!(
            "{label} {address} degraded: {} failed, {} served",
            fallback_words(&affected, t.failed),
            t.served
        ),
        HealthLevel::Healthy => format!(
            "{label} {address} healthy: {} client{} served",
            t.served,
            if t.served == 1 { "" } else { "s" }
        ),
        HealthLevel::Unknown => format!("{label} {address}: no recent reports and no check-in"),
    };
    let source = match kind {
        SourceKind::Agent => format!("agent:{address}"),
        SourceKind::Url => format!("url:{address}"),
    };
    SourceHealth {
        kind,
        source,
        address,
        level,
        summary,
        last_check_in: check_in,
        served: t.served,
        failed: t.failed,
        since,
        affected,
    }
}
