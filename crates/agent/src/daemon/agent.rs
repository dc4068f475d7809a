//! A running agent's parts ([`Agent`]) and one update cycle: pin the roots, fetch the policy,
//! plan and update, put the domain settings in force, check in; verification of installed
//! files; the relay's reports between cycles.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cascade_client::proto::RepoVersions;
use cascade_client::{Client, PolicyAnswer};
use cascade_core::report::{Attempt, CheckIn, Failure, Outcome, Reason, UpdateReport};
use cascade_core::{Category, Policy, TrustDomain};
use cascade_repo::throttle::Throttle;
use cascade_repo::SourceTransport;
use url::Url;

use super::config::{AgentConfig, AgentError};
use super::enroll::enroll_any;
use crate::relay::{Relay, RelayConfig};
use crate::servers::Servers;
use crate::settings::Applied;
use crate::state::{CachedPolicy, DataDir, Identity};
use crate::update::{Me, Pins, Updater};

/// A running agent's parts. Started once per daemon run and kept for its life, so every
/// cycle reuses the same HTTP clients (the server's API client per server, the repository
/// transport): their kept-alive connections and TLS session caches, so a later cycle reuses a
/// connection or resumes its TLS session instead of a full handshake
/// (`docs/operating.md#tls-session-resumption`). The clients trust the CA pinned at
/// enrollment, which does not change while the agent runs.
pub(super) struct Agent {
    pub(super) cfg: AgentConfig,
    pub(super) data: DataDir,
    pub(super) id: Identity,
    /// The server, or its replicas, with the one in use (`crate::servers`).
    pub(super) servers: Servers,
    pub(super) updater: Updater,
    pub(super) relay: Option<Arc<Relay>>,
    /// The last check-in that did not reach the server, sent again when the event stream
    /// reconnects (the server is back) instead of at the next interval.
    pub(super) unsent: std::sync::Mutex<Option<CheckIn>>,
    /// The repository versions the last notice announced: with the policy answer's, the floor
    /// of the next cycle (`docs/architecture.md#run-time`).
    pub(super) heard: std::sync::Mutex<RepoVersions>,
    /// The domain settings in force (`None`: the agent's own configuration).
    pub(super) applied: std::sync::Mutex<Option<Applied>>,
    /// The download cap every repository transfer goes through (domain settings set it).
    pub(super) download_cap: Arc<Throttle>,
    /// A check-in reached the server since start (a new build on trial is healthy).
    pub(super) checked_in: std::sync::atomic::AtomicBool,
    /// The version this agent reports.
    pub(super) version: String,
    pub(super) _lock: std::fs::File,
}

pub(super) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A spread in `[0, max_ms)` that differs per client and per event, so a fleet does not
/// storm its sources at the same instant.
pub fn jitter(seed: &str, n: i64, max_ms: u64) -> Duration {
    if max_ms == 0 {
        return Duration::ZERO;
    }
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    n.hash(&mut h);
    Duration::from_millis(h.finish() % max_ms)
}

impl Agent {
    pub(super) async fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        let data = DataDir::open(&cfg.data_dir)?;
        let lock_path = cfg.data_dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| crate::state::StateError::Io {
                path: lock_path.clone(),
                source,
            })?;
        if lock.try_lock().is_err() {
            return Err(AgentError::Locked(cfg.data_dir.clone()));
        }
        crate::update::clean_debris(&data, SystemTime::now());
        let existing = match data.identity() {
            // Both copies lost and a token given: enrol again, as the error would ask.
            Err(crate::state::StateError::IdentityLost { path })
                if cfg.server.is_some() && cfg.enroll_token.is_some() =>
            {
                tracing::warn!(path = %path.display(), "identity lost; enrolling again");
                None
            }
            other => other?,
        };
        let id = if let Some(id) = existing {
            id
        } else {
            let (Some(server), Some(token)) = (&cfg.server, &cfg.enroll_token) else {
                return Err(AgentError::NotEnrolled);
            };
            enroll_any(&data, &cfg, server, token).await?
        };
        let server_ca = data.server_ca()?;
        let servers = Servers::new(&server_urls(&id, &cfg), |url| {
            Client::builder(url.clone())
                .bind(cfg.bind_ip)
                .trust_ca_pem(server_ca.clone())
                .build()
        })?;
        let download_cap = Arc::new(Throttle::new(0));
        let updater = Updater::new(
            data.clone(),
            id.server.clone(),
            cfg.limits,
            cfg.bind_ip,
            server_ca.as_deref(),
        )
        .map_err(|e| AgentError::Setup(e.to_string()))?
        .with_throttle(Arc::clone(&download_cap))
        .with_servers(servers.clone());
        let relay = match cfg.relay_listen {
            Some(_) => {
                let transport = SourceTransport::new_bound_trusting(
                    cfg.limits,
                    cfg.bind_ip,
                    server_ca.as_deref(),
                )
                .map_err(|e| AgentError::Relay(e.to_string()))?;
                let config = RelayConfig {
                    cache_dir: data.relay_cache(),
                    max_concurrent_fetches: 8,
                    max_cache_bytes: cfg.relay_cache_bytes,
                    clock: Arc::new(crate::clock::SystemClock),
                };
                Some(Relay::new(config, transport, now_unix()))
            }
            None => None,
        };
        Ok(Agent {
            data,
            id,
            servers,
            updater,
            relay,
            unsent: std::sync::Mutex::default(),
            heard: std::sync::Mutex::default(),
            applied: std::sync::Mutex::default(),
            download_cap,
            checked_in: std::sync::atomic::AtomicBool::new(false),
            version: cfg.self_update.as_ref().map_or_else(
                || env!("CARGO_PKG_VERSION").to_owned(),
                |s| s.version.clone(),
            ),
            _lock: lock,
            cfg,
        })
    }

    /// Pins each trust domain's root, kept twice (`pinned-root.json` and
    /// `pinned-root.copy.json`): a damaged copy is repaired from the other; with both damaged
    /// or missing the root is pinned again: the given file, else the server's first root,
    /// fetched over HTTPS to the CA pinned at enrollment (the roots whose hash the enrollment
    /// token carries were pinned then: `docs/architecture.md#trust-model`).
    async fn pin_roots(&self) {
        for domain in TrustDomain::ALL {
            let dir = self.data.trust(domain);
            let places = [
                dir.join("pinned-root.json"),
                dir.join("pinned-root.copy.json"),
            ];
            let read: Vec<Option<Vec<u8>>> = places
                .iter()
                .map(|p| {
                    std::fs::read(p)
                        .ok()
                        .filter(|b| cascade_repo::valid_root(b))
                })
                .collect();
            let good = read.iter().flatten().next().cloned();
            let bytes = if let Some(b) = good {
                b
            } else {
                let given = self
                    .cfg
                    .pinned_roots
                    .iter()
                    .find(|(d, _)| *d == domain)
                    .map(|(_, p)| p.clone());
                let fetched = if let Some(path) = given {
                    std::fs::read(path).ok()
                } else {
                    let path = format!("repo/{domain}/metadata/1.root.json");
                    self.servers
                        .call(|api| {
                            let path = path.clone();
                            async move { api.repo_file(&path).await }
                        })
                        .await
                        .ok()
                };
                let Some(b) = fetched.filter(|b| cascade_repo::valid_root(b)) else {
                    continue;
                };
                b
            };
            for (place, had) in places.iter().zip(&read) {
                if had.as_ref() != Some(&bytes)
                    && cascade_repo::fsutil::write_atomic(place, &bytes).is_err()
                {
                    tracing::warn!(%domain, "cannot store the trusted root");
                }
            }
        }
    }

    /// Keeps the repository versions a notice announced, for the next cycle's floor.
    pub(super) fn hear(&self, versions: RepoVersions) {
        if let Ok(mut heard) = self.heard.lock() {
            *heard = heard.max(versions);
        }
    }

    /// The freshest policy: the server's, else the cached one; with the repository versions
    /// the server announced (none when it did not answer) and the program pins of rollouts.
    async fn policy(&self) -> Result<(Policy, Option<String>, RepoVersions, Pins), AgentError> {
        let cached = self.data.policy()?;
        let mut versions = RepoVersions::default();
        let known = cached.as_ref().map(|c| c.revision);
        let credential = self.id.credential.as_str();
        let fresh = match self
            .servers
            .call(|api| async move { api.policy(credential, known).await })
            .await
        {
            Ok(PolicyAnswer {
                policy: Some(answer),
                versions: announced,
            }) => {
                versions = announced;
                let p = CachedPolicy {
                    revision: answer.revision,
                    policy: answer.policy,
                    domain: answer.client.domain,
                    program_pins: answer.program_pins,
                };
                if let Err(e) = self.data.save_policy(&p) {
                    // A full disk must not stop the cycle; the policy is used from memory.
                    tracing::warn!(error = %e, "cannot cache the policy");
                }
                Some(p)
            }
            Ok(PolicyAnswer {
                policy: None,
                versions: announced,
            }) => {
                versions = announced;
                cached
            }
            Err(e) => {
                tracing::warn!(error = %e, "server unreachable; using the cached policy");
                match cached {
                    Some(c) => Some(c),
                    None => return Err(AgentError::NoPolicy(e.to_string())),
                }
            }
        };
        let CachedPolicy {
            policy,
            domain,
            program_pins,
            ..
        } = fresh.ok_or_else(|| AgentError::NoPolicy("empty answer".into()))?;
        let policy = policy
            .into_policy()
            .map_err(|e| AgentError::BadPolicy(e.to_string()))?;
        Ok((policy, domain, versions, program_pins))
    }

    /// The address this agent's connections to the current server leave from: the bind
    /// address, else the one the system routes from. A UDP socket "connected" to the server
    /// learns it without sending anything, so the server sees no connection for it.
    pub(super) async fn my_ip(&self) -> IpAddr {
        if let Some(ip) = self.cfg.bind_ip {
            return ip;
        }
        let server = self.servers.current();
        let host = server.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = server.port_or_known_default().unwrap_or(80);
        let routed = async {
            let target = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            let any: IpAddr = if target.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            let socket = tokio::net::UdpSocket::bind((any, 0)).await?;
            socket.connect(target).await?;
            socket.local_addr()
        };
        match routed.await {
            Ok(a) => a.ip(),
            Err(_) => IpAddr::from([127, 0, 0, 1]),
        }
    }

    /// One cycle: policy, plan, update, check in. Returns the report.
    pub(super) async fn cycle(&self) -> Result<UpdateReport, AgentError> {
        self.pin_roots().await;
        let (policy, domain, announced, pins) = self.policy().await?;
        let me = Me {
            ip: self.my_ip().await,
            domain,
            agent: self.cfg.relay_listen,
        };
        if let Some(relay) = &self.relay {
            relay.set_upstreams(relay_upstreams(&policy, &me, &self.servers.current()));
        }
        let applied = self.applied();
        let min_rate = crate::settings::floor(
            applied.as_ref().map(|a| &a.settings),
            self.cfg.limits.min_bytes_per_sec,
        );
        let mut updater = self
            .updater
            .clone()
            .with_min_bytes_per_sec(min_rate)
            .with_pins(pins);
        let heard = self.heard.lock().map(|h| *h).unwrap_or_default();
        let floor = announced.max(heard);
        for domain in TrustDomain::ALL {
            if let Some(v) = floor.get(domain) {
                updater.set_floor(domain, v);
            }
        }
        let mut report = updater.run(&policy, &me, now_unix()).await;
        if self.cfg.self_update.is_some() {
            report.attempts.extend(crate::selfupdate::refusal_attempt(
                &self.data,
                self.updater.installer(),
            ));
        }
        if let (Some(listen), Some(relay)) = (self.cfg.relay_listen, &self.relay) {
            self.updater.warm_relay(listen, relay).await;
        }
        if let Some(applied) = self.apply_settings(me.domain.as_deref()) {
            report.attempts.push(settings_note(&applied));
        }
        if let Err(e) = self.data.write_json("last-report.json", &report) {
            // Check in anyway, saying why (`docs/operating.md#agent-self-repair`).
            tracing::warn!(error = %e, "cannot store the report; checking in anyway");
            report.attempts.push(state_failure(&e));
            report.outcome = Outcome::Failed;
        }
        let checkin = CheckIn {
            ip: Some(me.ip.to_string()),
            installed: self.updater.installed_summary(),
            last_update: Some(report.clone()),
            relay: self.relay.as_ref().map(|r| r.report()),
            agent_version: Some(self.version.clone()),
        };
        let sent = self.send(&checkin).await;
        if let Some(e) = &sent {
            tracing::warn!(error = %e, "check-in failed; sent again when the server is back");
        }
        if let Ok(mut unsent) = self.unsent.lock() {
            *unsent = sent.is_some().then_some(checkin);
        }
        Ok(report)
    }

    /// The domain settings in force.
    pub(super) fn applied(&self) -> Option<Applied> {
        self.applied.lock().ok().and_then(|a| a.clone())
    }

    /// Reads the installed settings of `domain` (else the default's) and puts them in force:
    /// the download cap and the relay's caps and cache budget at once, the schedule and the
    /// download floor from the next cycle. Logs what changed. Returns the settings in force.
    fn apply_settings(&self, domain: Option<&str>) -> Option<Applied> {
        let Some(found) = crate::settings::installed(self.updater.installer(), domain) else {
            return self.applied();
        };
        let Ok(mut slot) = self.applied.lock() else {
            return None;
        };
        if slot.as_ref() != Some(&found) {
            let s = &found.settings;
            tracing::info!(
                settings = %found.label(),
                interval_secs = s.interval_secs,
                jitter_secs = s.jitter_secs,
                windows = s.windows.len(),
                min_transfer_rate = s.min_transfer_rate,
                download_cap = s.download_cap,
                relay_cap_per_client = s.relay_cap_per_client,
                relay_cap_total = s.relay_cap_total,
                relay_cache_bytes = s.relay_cache_bytes,
                "domain settings applied"
            );
            self.download_cap.set_rate(s.download_cap);
            if let Some(relay) = &self.relay {
                relay.apply_limits(
                    s.relay_cache_bytes,
                    s.relay_cap_per_client,
                    s.relay_cap_total,
                );
            }
            *slot = Some(found);
        }
        slot.clone()
    }

    /// Re-checks installed files and repairs them; a damaged file is reported to the server
    /// with a check-in (source `verify` in the last update's attempts).
    pub(super) async fn verify(&self) -> Result<crate::verify::Verified, AgentError> {
        self.pin_roots().await;
        let (policy, domain, _, _) = self.policy().await?;
        let me = Me {
            ip: self.my_ip().await,
            domain,
            agent: self.cfg.relay_listen,
        };
        let found = crate::verify::verify_installed(&self.updater, &policy, &me).await;
        if !found.damaged.is_empty() || !found.unchecked.is_empty() {
            let attempts = found.attempts();
            let report = UpdateReport {
                finished_at: Some(now_unix()),
                outcome: if found.is_intact() {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                },
                attempts,
            };
            let checkin = CheckIn {
                agent_version: Some(self.version.clone()),
                ip: Some(me.ip.to_string()),
                installed: self.updater.installed_summary(),
                last_update: Some(report),
                relay: self.relay.as_ref().map(|r| r.report()),
            };
            if let Some(e) = self.send(&checkin).await {
                tracing::warn!(error = %e, "check-in after verification failed");
            }
        }
        Ok(found)
    }

    /// Sends a check-in; the error text when it did not reach the server. A check-in that
    /// reached it marks the agent healthy (`checked_in`).
    async fn send(&self, checkin: &CheckIn) -> Option<String> {
        if crate::selfupdate::fault("silent") {
            return Some("fault injected: check-ins are not sent".into());
        }
        let credential = self.id.credential.as_str();
        match self
            .servers
            .call(|api| async move { api.checkin(credential, checkin).await })
            .await
        {
            Ok(_) => {
                self.checked_in
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }

    /// Sends the check-in that failed last, if any (the server is reachable again).
    pub(super) async fn send_unsent(&self) {
        let Some(checkin) = self.unsent.lock().ok().and_then(|mut u| u.take()) else {
            return;
        };
        if let Some(e) = self.send(&checkin).await {
            tracing::warn!(error = %e, "check-in failed again");
            if let Ok(mut unsent) = self.unsent.lock() {
                unsent.get_or_insert(checkin);
            }
        }
    }

    /// Between cycles: checks in with the relay's report whenever it served more requests
    /// since the last look (the installed versions go along; the last update report stays).
    pub(super) async fn report_relay(self: Arc<Self>) {
        let Some(relay) = &self.relay else { return };
        let mut last = relay
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        loop {
            tokio::time::sleep(self.cfg.relay_report_interval).await;
            let report = relay.report();
            if report.requests == last {
                continue;
            }
            let requests = report.requests;
            let checkin = CheckIn {
                agent_version: Some(self.version.clone()),
                ip: Some(self.my_ip().await.to_string()),
                installed: self.updater.installed_summary(),
                last_update: None,
                relay: Some(report),
            };
            match self.send(&checkin).await {
                None => last = requests,
                Some(e) => tracing::debug!(error = %e, "relay report not delivered; retried later"),
            }
        }
    }
}

/// The attempt that tells the server the agent could not write its own state (a full disk:
/// `agent.disk_full`).
fn state_failure(e: &crate::state::StateError) -> Attempt {
    Attempt {
        category: None,
        step: 0,
        source: "agent".into(),
        outcome: Outcome::Failed,
        reason: Some(Reason::Failure(Failure {
            code: e.code().to_owned(),
            message: e.to_string(),
        })),
        bytes: 0,
        millis: 0,
    }
}

/// The report's line saying which domain settings are in force (`settings`, no category).
fn settings_note(applied: &Applied) -> Attempt {
    Attempt {
        category: None,
        step: 0,
        source: "settings".into(),
        outcome: Outcome::Ok,
        reason: Some(Reason::Note(format!(
            "domain settings {} applied",
            applied.label()
        ))),
        bytes: 0,
        millis: 0,
    }
}

/// The relay's upstream `/repo/` roots, in the order of its own components plan.
fn relay_upstreams(policy: &Policy, me: &Me, server: &Url) -> Vec<Url> {
    let mut out: Vec<Url> = Vec::new();
    for c in Category::ALL {
        for step in Updater::plan(policy, me, c).steps {
            let url = crate::update::repo_root(&step.source, server)
                .ok()
                .flatten();
            if let Some(u) = url {
                if !out.contains(&u) {
                    out.push(u);
                }
            }
        }
    }
    out
}

/// The servers of an enrolled agent, in order of preference: the stored ones, then those of
/// `cfg` not among them (`docs/operating.md#replicas`).
pub(super) fn server_urls(id: &Identity, cfg: &AgentConfig) -> Vec<Url> {
    let stored = if id.servers.is_empty() {
        std::slice::from_ref(&id.server)
    } else {
        id.servers.as_slice()
    };
    stored
        .iter()
        .chain(cfg.server.iter())
        .chain(cfg.more_servers.iter())
        .cloned()
        .collect()
}
