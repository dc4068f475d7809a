//! The fleet views every surface shares (`docs/operating.md#health`,
//! `docs/operating.md#compliance`): the health of each update agent and URL source, from what
//! clients report about it and from its own check-ins, and compliance by version per
//! category, against the newest version published in the repository the server serves. The
//! console, `GET /api/fleet/…` and the CLI all call [`health`] and [`compliance`], so they
//! cannot disagree.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use cascade_core::{Category, EntrySource, Policy};
use cascade_proto::{
    AffectedClient, CategoryCompliance, ClientView, Compliance, ComplianceResponse, FleetHealth,
    HealthLevel, SourceHealth, SourceKind, VersionCount,
};

use crate::state::AppState;
use crate::store::{InstalledGroup, SourceTally, StoreError};

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

/// Health for the console's banner: computed afresh when that is cheap (under
/// [`CHEAP`], or fewer than [`BIG`] reports); for a fleet where it is not (100,000 clients),
/// the last result is shown for up
/// to [`REUSE`] and then refreshed in the background while the old one is still shown, so
/// no page waits for it. The API and the CLI always call [`health`].
///
/// # Errors
/// Store errors (only when there is no earlier result to show).
pub async fn health_for_pages(st: &AppState) -> Result<FleetHealth, StoreError> {
    let cache = &st.health_cache;
    let cached = cache
        .last
        .lock()
        .ok()
        .and_then(|c| c.as_ref().map(|c| (c.at, c.cost, c.value.clone())));
    match cached {
        Some((at, cost, value)) if cost >= CHEAP && tallied(&value) >= BIG => {
            if at.elapsed() >= REUSE
                && !cache
                    .refreshing
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                let st = st.clone();
                tokio::spawn(async move {
                    if let Err(e) = refresh(&st).await {
                        tracing::error!(error = %e, "refreshing fleet health");
                    }
                    st.health_cache
                        .refreshing
                        .store(false, std::sync::atomic::Ordering::Release);
                });
            }
            Ok(value)
        }
        _ => refresh(st).await,
    }
}

/// [`health`], kept as the console's last result for [`health_for_pages`].
///
/// # Errors
/// Store errors.
pub async fn refresh(st: &AppState) -> Result<FleetHealth, StoreError> {
    let started = std::time::Instant::now();
    let value = health(st).await?;
    if let Ok(mut last) = st.health_cache.last.lock() {
        *last = Some(Cached {
            at: std::time::Instant::now(),
            cost: started.elapsed(),
            value: value.clone(),
        });
    }
    Ok(value)
}

/// The client reports a health result counts (each client's last attempt at each source).
fn tallied(h: &FleetHealth) -> u64 {
    h.sources.iter().map(|s| s.served + s.failed).sum()
}

/// Health over fewer client reports than this is never reused, however long it took (a
/// small fleet on a busy machine: the next page shows the change at once).
pub const BIG: u64 = 10_000;
/// Health computed faster than this is never reused.
pub const CHEAP: std::time::Duration = std::time::Duration::from_millis(20);
/// How long an expensive health result is shown before it is refreshed.
pub const REUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// The last fleet health the console computed (see [`health_for_pages`]).
#[derive(Default)]
pub struct HealthCache {
    last: std::sync::Mutex<Option<Cached>>,
    refreshing: std::sync::atomic::AtomicBool,
    /// When [`sample_if_due`] last looked at the fleet (clock seconds, 0: never), recorded
    /// or not.
    sampled: std::sync::atomic::AtomicI64,
}

struct Cached {
    at: std::time::Instant,
    cost: std::time::Duration,
    value: FleetHealth,
}

/// Compliance by version per category, from the clients' check-ins and the repository.
///
/// # Errors
/// Store errors.
pub async fn compliance(st: &AppState) -> Result<ComplianceResponse, StoreError> {
    let groups = st.store.installed_groups().await?;
    let catalog = Catalog::read(&st.repo_dir);
    Ok(catalog.compliance_of_groups(&groups, st.clock.now()))
}

/// Records a sample of the fleet (clients in all, current in every published category,
/// failed) when one is due at the clock's now: a minute after the last look, or 5 s after it
/// within 5 minutes of a notify (and at once after a notify newer than the last sample), so
/// the chart shows the fleet converging around each notify. Nothing is written for an
/// empty fleet, nor while the figures equal the last sample's and it is under 10 minutes
/// old (the chart's line between two equal samples is flat anyway): an idle server does
/// not write. Returns whether it recorded.
///
/// # Errors
/// Store errors.
pub async fn sample_if_due(st: &AppState) -> Result<bool, StoreError> {
    use std::sync::atomic::Ordering;
    let now = st.clock.now();
    let (last, notice) = st.store.last_sample_and_notice().await?;
    let looked = st.health_cache.sampled.load(Ordering::Acquire);
    let seen = last.map_or(looked, |l| l.at.max(looked));
    let due = if last.is_none() && looked == 0 {
        true
    } else {
        let since = now.saturating_sub(seen);
        since >= 60
            || notice.is_some_and(|n| last.is_none_or(|l| n > l.at) && n > looked && now >= n)
            || (since >= 5 && notice.is_some_and(|n| now.saturating_sub(n) <= 300))
    };
    if !due {
        return Ok(false);
    }
    let groups = st.store.installed_groups().await?;
    let catalog = Catalog::read(&st.repo_dir);
    let [_, failed, _, _] = st
        .store
        .state_counts(now, crate::routes::admin::stale_secs(st))
        .await?;
    let sample = crate::store::FleetSample {
        at: now,
        total: groups.iter().map(|g| g.clients).sum(),
        current: catalog.current_clients(&groups),
        failed,
    };
    let unchanged = last.is_some_and(|l| {
        (l.total, l.current, l.failed) == (sample.total, sample.current, sample.failed)
            && now.saturating_sub(l.at) < 600
    });
    if sample.total == 0 {
        // Looked again at the next tick: the first client's sample is not held back.
        return Ok(false);
    }
    st.health_cache.sampled.store(now, Ordering::Release);
    if unchanged {
        return Ok(false);
    }
    st.store.record_sample(sample).await?;
    Ok(true)
}

/// Samples the fleet every 5 s (see [`sample_if_due`]) until `shutdown` turns true.
pub async fn sampler(st: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = sample_if_due(&st).await {
            tracing::warn!(error = %e, "sampling the fleet");
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
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

/// What the repository publishes: per category and content name, the versions newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    versions: BTreeMap<Category, BTreeMap<String, Vec<String>>>,
}

impl Catalog {
    /// Reads the newest `N.targets.json` of each trust domain under `repo_dir`
    /// (`site/`, `upstream/`). The server landed these files itself (verified, when
    /// mirrored), so they are read as they are; an unreadable one is skipped.
    pub fn read(repo_dir: &Path) -> Catalog {
        let mut seqs: BTreeMap<(Category, String), BTreeMap<u64, String>> = BTreeMap::new();
        for mount in ["site", "upstream"] {
            let Some(doc) = newest_targets(&repo_dir.join(mount).join("metadata")) else {
                continue;
            };
            let Some(targets) = doc["signed"]["targets"].as_object() else {
                continue;
            };
            for (name, t) in targets {
                let Ok(path) = name.parse::<cascade_repo::TargetPath>() else {
                    continue;
                };
                let Some(meta) = t["custom"]
                    .get("cascade") // the key of cascade's own target metadata
                    .and_then(|v| {
                        serde_json::from_value::<cascade_repo::TargetMeta>(v.clone()).ok()
                    })
                else {
                    continue;
                };
                if meta.is_delta() {
                    continue;
                }
                seqs.entry((path.category(), path.name().to_owned()))
                    .or_default()
                    .insert(meta.seq, meta.version);
            }
        }
        let mut versions: BTreeMap<Category, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for ((cat, name), by_seq) in seqs {
            versions
                .entry(cat)
                .or_default()
                .insert(name, by_seq.into_values().rev().collect());
        }
        Catalog { versions }
    }

    /// A catalog of the given versions (newest first per name), for tests and tools.
    pub fn from_versions(versions: BTreeMap<Category, BTreeMap<String, Vec<String>>>) -> Self {
        Catalog { versions }
    }

    /// The newest published version of each name in `category` (`patterns 1.2`).
    pub fn newest(&self, category: Category) -> Vec<String> {
        self.versions
            .get(&category)
            .into_iter()
            .flatten()
            .filter_map(|(name, v)| v.first().map(|v| format!("{name} {v}")))
            .collect()
    }

    /// Where `client` stands in `category`.
    pub fn client(&self, client: &ClientView, category: Category) -> Compliance {
        let failed = client
            .last_update
            .as_ref()
            .map(crate::store::failed_categories)
            .unwrap_or_default();
        self.standing(&client.installed, &failed, category)
    }

    /// Where a client with `installed` versions whose last update failed in `failed`
    /// categories stands in `category`.
    pub fn standing(
        &self,
        installed: &BTreeMap<Category, String>,
        failed: &[Category],
        category: Category,
    ) -> Compliance {
        let items = installed_items(installed, category);
        let failed = failed.contains(&category);
        let Some(published) = self.versions.get(&category).filter(|p| !p.is_empty()) else {
            return Compliance::Unpublished;
        };
        let mut any = false;
        let mut behind = false;
        for (name, version) in &items {
            if let Some(newest) = published.get(*name).and_then(|v| v.first()) {
                any = true;
                if newest != version {
                    behind = true;
                }
            }
        }
        let current = any && !behind;
        if current {
            Compliance::Current
        } else if failed {
            Compliance::Failed
        } else if any || !items.is_empty() {
            Compliance::Behind
        } else {
            Compliance::NeverInstalled
        }
    }

    /// Clients of `groups` current in every category that has something published (none
    /// when nothing is published).
    pub fn current_clients(&self, groups: &[InstalledGroup]) -> u64 {
        let published: Vec<Category> = Category::ALL
            .into_iter()
            .filter(|c| self.versions.get(c).is_some_and(|p| !p.is_empty()))
            .collect();
        if published.is_empty() {
            return 0;
        }
        groups
            .iter()
            .filter(|g| {
                published
                    .iter()
                    .all(|c| self.standing(&g.installed, &g.failed, *c) == Compliance::Current)
            })
            .map(|g| g.clients)
            .sum()
    }

    /// Compliance of every category over `clients`.
    pub fn compliance(&self, clients: &[ClientView], now: i64) -> ComplianceResponse {
        let groups: Vec<InstalledGroup> = clients
            .iter()
            .map(|c| InstalledGroup {
                installed_text: String::new(),
                installed: c.installed.clone(),
                failed_text: String::new(),
                failed: c
                    .last_update
                    .as_ref()
                    .map(crate::store::failed_categories)
                    .unwrap_or_default(),
                clients: 1,
            })
            .collect();
        self.compliance_of_groups(&groups, now)
    }

    /// Compliance of every category over clients grouped by what they installed.
    pub fn compliance_of_groups(&self, groups: &[InstalledGroup], now: i64) -> ComplianceResponse {
        let total: u64 = groups.iter().map(|g| g.clients).sum();
        let categories = Category::ALL
            .iter()
            .map(|&category| {
                let newest = self.newest(category);
                let mut row = CategoryCompliance {
                    category,
                    newest: newest.clone(),
                    current: 0,
                    behind: 0,
                    never_installed: 0,
                    failed: 0,
                    total,
                    distribution: Vec::new(),
                };
                let mut dist: BTreeMap<String, u64> = BTreeMap::new();
                for g in groups {
                    let n = g.clients;
                    match self.standing(&g.installed, &g.failed, category) {
                        Compliance::Current => row.current += n,
                        Compliance::Behind => row.behind += n,
                        Compliance::NeverInstalled => row.never_installed += n,
                        Compliance::Failed => row.failed += n,
                        Compliance::Unpublished => {}
                    }
                    let items = installed_items(&g.installed, category);
                    if items.is_empty() {
                        *dist.entry("none".to_owned()).or_default() += n;
                    }
                    for (name, version) in items {
                        *dist.entry(format!("{name} {version}")).or_default() += n;
                    }
                }
                let mut distribution: Vec<VersionCount> = dist
                    .into_iter()
                    .map(|(version, clients)| VersionCount {
                        newest: newest.contains(&version),
                        version,
                        clients,
                    })
                    .collect();
                distribution
                    .sort_by(|a, b| b.clients.cmp(&a.clients).then(a.version.cmp(&b.version)));
                distribution.truncate(1000);
                row.distribution = distribution;
                row
            })
            .collect();
        ComplianceResponse {
            checked_at: now,
            categories,
        }
    }

    /// The stored groups whose clients stand at `want` in `category` (for the clients
    /// list's compliance filter, done in SQL).
    pub fn groups_at<'g>(
        &self,
        groups: &'g [InstalledGroup],
        category: Category,
        want: Compliance,
    ) -> Vec<&'g InstalledGroup> {
        groups
            .iter()
            .filter(|g| self.standing(&g.installed, &g.failed, category) == want)
            .collect()
    }
}

/// The installed items of `category`: `name version, name version` as the agent reports
/// them (a bare version counts as the version of an unnamed item).
fn installed_items(
    installed: &BTreeMap<Category, String>,
    category: Category,
) -> Vec<(&str, &str)> {
    installed
        .get(&category)
        .map(|s| {
            s.split(", ")
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.trim().split_once(' ').unwrap_or(("", p.trim())))
                .collect()
        })
        .unwrap_or_default()
}

/// The newest `N.targets.json` in `dir`, parsed.
fn newest_targets(dir: &Path) -> Option<serde_json::Value> {
    let mut best: Option<(u64, std::path::PathBuf)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".targets.json"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, e.path()));
        }
    }
    let (_, path) = best?;
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_core::report::{Attempt, Outcome, UpdateReport};
    use cascade_proto::ClientState;

    fn client(name: &str, seen: i64, installed: &str, attempts: Vec<Attempt>) -> ClientView {
        ClientView {
            id: name.to_owned(),
            name: name.to_owned(),
            domain: None,
            agent_address: None,
            agent_version: None,
            is_agent: false,
            enrolled_at: 0,
            enrolled_from: String::new(),
            last_seen: Some(seen),
            reported_ip: None,
            peer_ip: None,
            installed: if installed.is_empty() {
                BTreeMap::new()
            } else {
                BTreeMap::from([(Category::Components, installed.to_owned())])
            },
            last_outcome: None,
            state: ClientState::Ok,
            last_update: Some(UpdateReport {
                finished_at: Some(seen),
                outcome: Outcome::Ok,
                attempts,
            }),
            relay: None,
        }
    }

    fn attempt(source: &str, outcome: Outcome) -> Attempt {
        Attempt {
            category: Some(Category::Components),
            step: 1,
            source: source.to_owned(),
            outcome,
            reason: None,
            bytes: 0,
            millis: 0,
        }
    }

    fn policy_with_agent() -> Policy {
        let mut p = Policy::default();
        p.agent.push(cascade_core::Agent {
            address: "127.0.0.3:8443".parse().unwrap(),
            capabilities: Category::ALL.into_iter().collect(),
        });
        p
    }

    // An agent every client failed against since the first failure is down, with where they
    // went instead; successes after a failure make it degraded; a silent agent is down.
    #[test]
    fn agent_health_from_reports_and_check_ins() {
        let p = policy_with_agent();
        let ok = |n: &str, t| client(n, t, "", vec![attempt("agent:127.0.0.3:8443", Outcome::Ok)]);
        let failed = |n: &str, t| {
            client(
                n,
                t,
                "",
                vec![
                    attempt("agent:127.0.0.3:8443", Outcome::Failed),
                    attempt("url:http://mirror/", Outcome::Ok),
                ],
            )
        };
        let mut agent = client("agent", 1000, "", vec![]);
        agent.agent_address = Some("127.0.0.3:8443".to_owned());
        agent.is_agent = true;
        let h = assess(
            &p,
            &[
                ok("a", 900),
                failed("b", 950),
                failed("c", 990),
                agent.clone(),
            ],
            1000,
            7200,
        );
        let s = &h.sources[0];
        assert_eq!(s.level, HealthLevel::Down);
        assert_eq!(s.failed, 2);
        assert_eq!(s.served, 1);
        assert_eq!(s.since, Some(950));
        assert!(
            s.summary.starts_with(
                "update agent 127.0.0.3:8443 down: 2 clients on url:http://mirror/ since"
            ),
            "{}",
            s.summary
        );
        assert_eq!(
            s.affected
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>(),
            ["b", "c"]
        );

        let h = assess(
            &p,
            &[failed("b", 950), ok("a", 960), agent.clone()],
            1000,
            7200,
        );
        assert_eq!(h.sources[0].level, HealthLevel::Degraded);

        let h = assess(&p, &[ok("a", 960), agent.clone()], 1000, 7200);
        assert_eq!(h.sources[0].level, HealthLevel::Healthy);

        // Silent for longer than the window.
        let h = assess(&p, &[agent], 1000 + 7201, 7200);
        assert_eq!(h.sources[0].level, HealthLevel::Down);
        assert!(h.sources[0].summary.contains("no check-in since"));

        let h = assess(&p, &[], 1000, 7200);
        assert_eq!(h.sources[0].level, HealthLevel::Unknown);
    }

    // A client on an older version is behind, not current; nothing installed is never
    // installed; nothing published is unpublished (not "current").
    #[test]
    fn compliance_by_version() {
        let cat = Catalog::from_versions(BTreeMap::from([(
            Category::Components,
            BTreeMap::from([(
                "patterns".to_owned(),
                vec!["1.2".to_owned(), "1.1".to_owned()],
            )]),
        )]));
        let new = client("new", 1, "patterns 1.2", vec![]);
        let old = client("old", 1, "patterns 1.1", vec![]);
        let none = client("none", 1, "", vec![]);
        let broken = client(
            "broken",
            1,
            "patterns 1.1",
            vec![attempt("server", Outcome::Failed)],
        );
        assert_eq!(cat.client(&new, Category::Components), Compliance::Current);
        assert_eq!(cat.client(&old, Category::Components), Compliance::Behind);
        assert_eq!(
            cat.client(&none, Category::Components),
            Compliance::NeverInstalled
        );
        assert_eq!(
            cat.client(&broken, Category::Components),
            Compliance::Failed
        );
        assert_eq!(
            cat.client(&new, Category::Programs),
            Compliance::Unpublished
        );
        let r = cat.compliance(&[new, old, none, broken], 5);
        let p = r
            .categories
            .iter()
            .find(|c| c.category == Category::Components)
            .unwrap();
        assert_eq!(
            (p.current, p.behind, p.never_installed, p.failed),
            (1, 1, 1, 1)
        );
        assert_eq!(p.newest, ["patterns 1.2"]);
        assert_eq!(p.distribution[0].version, "patterns 1.1");
        assert_eq!(p.distribution[0].clients, 2);
        let progs = r
            .categories
            .iter()
            .find(|c| c.category == Category::Programs)
            .unwrap();
        assert_eq!(progs.current, 0);
        assert!(progs.newest.is_empty());
    }
}
