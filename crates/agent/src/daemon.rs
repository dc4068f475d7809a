//! The agent's life: enroll once, pin the repositories' trusted roots, then update on start,
//! on each notification (after its jitter) and on a schedule, checking in after each cycle.
//! With the server down it keeps updating from its cached policy through relays and mirrors.
//! As an update agent it also runs the relay, keeps the relay's upstreams on its own plan, and
//! reports what the relay served with each check-in (and between cycles when it changed). After
//! each cycle it puts its domain's settings in force ([`crate::settings`]).

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash as _, Hasher as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cascade_client::proto::{EnrollRequest, Notice, RepoVersions};
use cascade_client::{Client, Event, PolicyAnswer};
use cascade_core::report::{Attempt, CheckIn, Failure, Outcome, Reason, UpdateReport};
use cascade_core::{Category, Policy, TrustDomain};
use cascade_repo::throttle::Throttle;
use cascade_repo::{SourceTransport, TransportLimits};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use url::Url;

use crate::relay::{Relay, RelayConfig};
use crate::selfupdate::{AtStart, SelfUpdate, Trial};
use crate::servers::Servers;
use crate::settings::{Applied, Schedule};
use crate::state::{CachedPolicy, DataDir, Identity};
use crate::update::{Me, Observer, Pins, Updater};

/// How the agent is run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The server's base URL (needed at enrollment; afterwards the stored one is used).
    pub server: Option<Url>,
    /// More servers: replicas of `server` on one database, asked in order when the one in
    /// use is down (`docs/operating.md#replicas`); stored at enrollment, and added to the
    /// stored ones at later starts.
    pub more_servers: Vec<Url>,
    /// The enrollment token (first start only).
    pub enroll_token: Option<String>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Every outgoing connection leaves from this address.
    pub bind_ip: Option<IpAddr>,
    /// Name shown in the console.
    pub name: String,
    /// Client domain (privileges).
    pub domain: Option<String>,
    /// Run as an update agent serving at this address.
    pub relay_listen: Option<SocketAddr>,
    /// Relay cache budget, bytes.
    pub relay_cache_bytes: u64,
    /// Time between scheduled updates.
    pub interval: Duration,
    /// An update agent also checks in this often between cycles when its relay served
    /// something since the last check-in.
    pub relay_report_interval: Duration,
    /// Per-source transfer limits.
    pub limits: TransportLimits,
    /// How often the daemon re-checks installed files against verified metadata and repairs
    /// them (`None`: never; `cascade agent verify` does it on demand).
    pub verify_interval: Option<Duration>,
    /// Trusted roots given out of band, per trust domain; otherwise the ones whose hash the
    /// enrollment token carries, else the server's (over HTTPS to the CA pinned from the
    /// token: `docs/architecture.md#trust-model`).
    pub pinned_roots: Vec<(TrustDomain, PathBuf)>,
    /// How the daemon updates itself ([`run_self_updating`]); `None`: it does not, and
    /// reports this crate's version.
    pub self_update: Option<SelfUpdate>,
}

/// Why the agent cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Not enrolled and no token given.
    #[error("this data directory is not enrolled: pass --server URL and --enroll-token TOKEN")]
    NotEnrolled,
    /// Another agent holds the data directory.
    #[error("another agent is running on {0}")]
    Locked(PathBuf),
    /// No policy cached and the server unreachable.
    #[error("no policy: the server is unreachable ({0}) and none is cached")]
    NoPolicy(String),
    /// The cached policy does not validate.
    #[error("the policy is invalid: {0}")]
    BadPolicy(String),
    /// Data directory trouble.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Server API trouble that stops start-up (enrollment refused…).
    #[error(transparent)]
    Api(#[from] cascade_client::ClientError),
    /// The relay could not start.
    #[error("relay: {0}")]
    Relay(String),
    /// A local part could not be set up (the HTTP client).
    #[error("set-up: {0}")]
    Setup(String),
    /// The enrollment token's text is malformed.
    #[error(transparent)]
    Token(#[from] cascade_client::proto::EnrollTokenError),
    /// The server's CA certificate does not have the hash the enrollment token names: the
    /// connection is not to the server that issued the token (or the CA was replaced).
    #[error("the server's CA certificate has SHA-256 {found}, the enrollment token says {expected}: refusing to enroll")]
    CaMismatch {
        /// The token's hash.
        expected: String,
        /// The fetched certificate's hash.
        found: String,
    },
    /// A repository's first root does not have the hash the enrollment token names.
    #[error("{domain} 1.root.json has SHA-256 {found}, the enrollment token says {expected}: refusing to enroll")]
    RootMismatch {
        /// The trust domain.
        domain: TrustDomain,
        /// The token's hash.
        expected: String,
        /// The fetched root's hash.
        found: String,
    },
    /// The self-update state could not be read or written at start.
    #[error(transparent)]
    SelfUpdate(#[from] crate::selfupdate::SelfUpdateError),
}

impl AgentError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::NotEnrolled => "agent.not_enrolled",
            AgentError::Locked(_) => "agent.locked",
            AgentError::NoPolicy(_) => "agent.no_policy",
            AgentError::BadPolicy(_) => "agent.bad_policy",
            AgentError::State(e) => e.code(),
            AgentError::Api(e) => e.code(),
            AgentError::Relay(_) => "agent.relay",
            AgentError::Setup(_) => "agent.setup",
            AgentError::Token(e) => e.code(),
            AgentError::CaMismatch { .. } => "agent.ca_mismatch",
            AgentError::RootMismatch { .. } => "agent.root_mismatch",
            AgentError::SelfUpdate(e) => e.code(),
        }
    }
}

/// A running agent's parts. Started once per daemon run and kept for its life, so every
/// cycle reuses the same HTTP clients (the server's API client per server, the repository
/// transport): their kept-alive connections and TLS session caches, so a later cycle reuses a
/// connection or resumes its TLS session instead of a full handshake
/// (`docs/operating.md#tls-session-resumption`). The clients trust the CA pinned at
/// enrollment, which does not change while the agent runs.
struct Agent {
    cfg: AgentConfig,
    data: DataDir,
    id: Identity,
    /// The server, or its replicas, with the one in use (`crate::servers`).
    servers: Servers,
    updater: Updater,
    relay: Option<Arc<Relay>>,
    /// The last check-in that did not reach the server, sent again when the event stream
    /// reconnects (the server is back) instead of at the next interval.
    unsent: std::sync::Mutex<Option<CheckIn>>,
    /// The repository versions the last notice announced: with the policy answer's, the floor
    /// of the next cycle (`docs/architecture.md#run-time`).
    heard: std::sync::Mutex<RepoVersions>,
    /// The domain settings in force (`None`: the agent's own configuration).
    applied: std::sync::Mutex<Option<Applied>>,
    /// The download cap every repository transfer goes through (domain settings set it).
    download_cap: Arc<Throttle>,
    /// A check-in reached the server since start (a new build on trial is healthy).
    checked_in: std::sync::atomic::AtomicBool,
    /// The version this agent reports.
    version: String,
    _lock: std::fs::File,
}

fn now_unix() -> i64 {
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
    async fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
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
    fn hear(&self, versions: RepoVersions) {
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
    async fn my_ip(&self) -> IpAddr {
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
    async fn cycle(&self) -> Result<UpdateReport, AgentError> {
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
    fn applied(&self) -> Option<Applied> {
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
    async fn verify(&self) -> Result<crate::verify::Verified, AgentError> {
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
    async fn send_unsent(&self) {
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
    async fn report_relay(self: Arc<Self>) {
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
fn server_urls(id: &Identity, cfg: &AgentConfig) -> Vec<Url> {
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

/// [`enroll`] with `first`, else, while the one asked is down, with the next of
/// `cfg.more_servers`; the identity stores every server.
async fn enroll_any(
    data: &DataDir,
    cfg: &AgentConfig,
    first: &Url,
    token: &str,
) -> Result<Identity, AgentError> {
    let mut all = vec![first.clone()];
    for url in &cfg.more_servers {
        if !all.contains(url) {
            all.push(url.clone());
        }
    }
    let mut last = None;
    for server in &all {
        match enroll(data, cfg, server, token, &all).await {
            Err(AgentError::Api(e)) if crate::servers::is_down(&e) && all.len() > 1 => {
                tracing::warn!(server = %server, error = %e, "server down; enrolling with the next one");
                last = Some(AgentError::Api(e));
            }
            done => return done,
        }
    }
    Err(last.unwrap_or(AgentError::NotEnrolled))
}

/// Enrolls with the full enrollment token `token` (`docs/operating.md#enrollment-token-format`),
/// trusting nothing on first contact (`docs/architecture.md#trust-model`): fetches the
/// server's CA certificate over a connection it does not yet trust and refuses it unless its
/// SHA-256 is the token's; from then on trusts only that CA; fetches each `1.root.json` whose
/// hash the token carries and refuses it unless the hash matches; only then enrolls and
/// stores the CA, the roots (where none is pinned yet) and the identity.
async fn enroll(
    data: &DataDir,
    cfg: &AgentConfig,
    server: &Url,
    token: &str,
    all: &[Url],
) -> Result<Identity, AgentError> {
    use cascade_repo::fsutil::sha256_hex;
    let token: cascade_client::proto::EnrollmentTokenText = token.parse()?;
    let ca = match token.ca_sha256 {
        Some(want) => {
            let pem = cascade_client::fetch_ca_unverified(server, cfg.bind_ip).await?;
            let found = sha256_hex(&pem);
            if found != want.to_hex() {
                return Err(AgentError::CaMismatch {
                    expected: want.to_hex(),
                    found,
                });
            }
            Some(pem)
        }
        None => None,
    };
    let api = Client::builder(server.clone())
        .bind(cfg.bind_ip)
        .trust_ca_pem(ca.clone())
        .build()?;
    let mut roots = Vec::new();
    for (domain, want) in [
        (TrustDomain::Site, token.site_root_sha256),
        (TrustDomain::Upstream, token.upstream_root_sha256),
    ] {
        let Some(want) = want else { continue };
        // A root given out of band (`--site-root`, `--upstream-root`) is the one pinned.
        if cfg.pinned_roots.iter().any(|(d, _)| *d == domain) {
            continue;
        }
        let bytes = api
            .repo_file(&format!("repo/{domain}/metadata/1.root.json"))
            .await?;
        let found = sha256_hex(&bytes);
        if found != want.to_hex() {
            return Err(AgentError::RootMismatch {
                domain,
                expected: want.to_hex(),
                found,
            });
        }
        roots.push((domain, bytes));
    }
    let body = EnrollRequest {
        name: cfg.name.clone(),
        domain: cfg.domain.clone(),
        agent_address: cfg.relay_listen.map(|a| a.to_string()),
    };
    let enrolled = api.enroll(&token.secret, &body).await?;
    if let Some(pem) = &ca {
        data.save_server_ca(pem)?;
    }
    for (domain, bytes) in roots {
        let dir = data.trust(domain);
        let pinned = dir.join("pinned-root.json");
        // A root pinned before (an enrollment again after a lost identity) has moved on
        // from version 1; it stays.
        if std::fs::read(&pinned).is_ok_and(|b| cascade_repo::valid_root(&b)) {
            continue;
        }
        for place in [pinned, dir.join("pinned-root.copy.json")] {
            cascade_repo::fsutil::write_atomic(&place, &bytes).map_err(|source| {
                crate::state::StateError::Io {
                    path: place.clone(),
                    source,
                }
            })?;
        }
    }
    // The replicas the server advertises join the ones given (`docs/operating.md#replicas`).
    let mut all = all.to_vec();
    for text in &enrolled.servers {
        match Url::parse(text) {
            Ok(url) if !all.contains(&url) => all.push(url),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(url = %text, error = %e, "the server advertises a replica URL that does not parse; ignored");
            }
        }
    }
    let id = Identity {
        server: server.clone(),
        servers: if all.len() > 1 { all } else { Vec::new() },
        client_id: enrolled.client_id,
        credential: enrolled.credential,
    };
    data.save_identity(&id)?;
    Ok(id)
}

/// An agent started once and kept, cycle after cycle, as the daemon keeps it ([`run`]): its
/// cycles share its HTTP clients, so they reuse kept-alive connections and resume TLS
/// sessions. For callers that drive cycles themselves (a benchmark modelling a fleet of
/// daemons); it holds the data directory's lock while it lives.
pub struct Session {
    agent: Agent,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.agent.id.client_id)
            .field("servers", &self.agent.servers)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts the agent (enrolling it first when it is not yet), as [`run`] does.
    ///
    /// # Errors
    /// Start-up failures (not enrolled, locked).
    pub async fn start(cfg: AgentConfig) -> Result<Session, AgentError> {
        Ok(Session {
            agent: Agent::start(cfg).await?,
        })
    }

    /// One update cycle, as the daemon runs it on a notice or its schedule; the report.
    ///
    /// # Errors
    /// No policy (the server unreachable and none cached).
    pub async fn cycle(&self) -> Result<UpdateReport, AgentError> {
        self.agent.cycle().await
    }
}

/// Runs one cycle and returns its report (`cascade agent --once`, `cascade update-now`).
///
/// # Errors
/// Start-up failures (not enrolled, locked, no policy).
pub async fn once(cfg: AgentConfig) -> Result<UpdateReport, AgentError> {
    once_observed(cfg, None).await
}

/// [`once`], telling `observer` about each step (a progress bar on a terminal).
///
/// # Errors
/// Start-up failures (not enrolled, locked, no policy).
pub async fn once_observed(
    cfg: AgentConfig,
    observer: Option<Observer>,
) -> Result<UpdateReport, AgentError> {
    let mut agent = Agent::start(cfg).await?;
    agent.updater = agent.updater.with_observer(observer);
    agent.cycle().await
}

/// `cascade agent verify`: re-checks every installed file against verified metadata and
/// repairs what is damaged from the plan's sources.
///
/// # Errors
/// Start-up failures (not enrolled, locked, no policy).
pub async fn verify(cfg: AgentConfig) -> Result<crate::verify::Verified, AgentError> {
    let agent = Agent::start(cfg).await?;
    agent.verify().await
}

/// Runs until `shutdown` resolves: a cycle at start, on each notification (after its
/// jitter) and every `interval` (± 10 %). Without `cfg.self_update` it never asks for a
/// restart; with it, use [`run_self_updating`].
///
/// # Errors
/// Start-up failures, or the relay's listener cannot be bound.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    run_self_updating(cfg, shutdown).await.map(|_| ())
}

/// How a daemon run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop.
    Stopped,
    /// Start this binary in place of this process, with [`SelfUpdate::args`] (a new build on
    /// trial, or back to the old one), `docs/operating.md#agent-self-update`.
    Exec(PathBuf),
}

/// [`run`], updating the agent itself when `cfg.self_update` is set: the run ends with
/// [`Ended::Exec`] when another build must take over this process (the caller executes it).
///
/// # Errors
/// Start-up failures, or the relay's listener cannot be bound.
pub async fn run_self_updating(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Ended, AgentError> {
    // Holding the data directory's lock, before anything else: the self-update state decides
    // which build runs (`docs/operating.md#agent-self-update`).
    let mut agent = Agent::start(cfg).await?;
    let mut trial: Option<Trial> = None;
    if let Some(su) = agent.cfg.self_update.as_mut() {
        match crate::selfupdate::at_start(&agent.data, su, now_unix())? {
            AtStart::Run => {}
            AtStart::Trial(t) => trial = Some(t),
            AtStart::Exec(binary) => return Ok(Ended::Exec(binary)),
        }
    }
    if crate::selfupdate::fault("exit") {
        return Err(AgentError::Setup("fault injected: exit at start".into()));
    }
    let agent = Arc::new(agent);
    let (tx, mut rx) = mpsc::channel::<Heard>(16);
    let events = tokio::spawn(listen(
        agent.servers.clone(),
        agent.id.credential.clone(),
        tx,
    ));
    let (relay_stop, relay_task) = serve_relay(&agent).await?;
    let reports = tokio::spawn(Arc::clone(&agent).report_relay());
    tokio::pin!(shutdown);
    let mut n: i64 = 0;
    let mut next_verify = agent
        .cfg
        .verify_interval
        .map(|_| tokio::time::Instant::now());
    // Set when the interval timer woke the loop: such a cycle waits for the update windows;
    // the first cycle, a notify and a manual run do not.
    let mut scheduled = false;
    let ended = 'cycles: loop {
        if let (Some(due), Some(every)) = (next_verify, agent.cfg.verify_interval) {
            if tokio::time::Instant::now() >= due {
                match agent.verify().await {
                    Ok(v) => tracing::info!(
                        checked = v.checked,
                        damaged = v.damaged.len(),
                        "installed files verified"
                    ),
                    Err(e) => tracing::warn!(error = %e, "verification failed"),
                }
                next_verify = Some(tokio::time::Instant::now() + every);
            }
        }
        let trial_end = trial.as_ref().map(|t| deadline_instant(t.deadline()));
        agent.windowed_cycle(scheduled, trial_end).await;
        scheduled = false;
        if let Some(end) = agent.self_update_step(&mut trial, trial_end) {
            break 'cycles end;
        }
        n += 1;
        // The cycle may have put new settings in force.
        let schedule = Schedule::of(agent.applied().as_ref(), agent.cfg.interval);
        let spread = u64::try_from(schedule.jitter.as_millis()).unwrap_or(u64::MAX);
        let wait = schedule.interval + jitter(&agent.id.client_id, n, spread);
        let next = tokio::time::Instant::now() + wait;
        loop {
            // The trial's end wakes the loop too.
            let trial_wake = trial
                .as_ref()
                .map_or(next, |t| deadline_instant(t.deadline()));
            tokio::select! {
                () = &mut shutdown => break 'cycles Ended::Stopped,
                Some(heard) = rx.recv() => match heard {
                    // The server is back: deliver a check-in that failed meanwhile.
                    Heard::Hello => {
                        agent.send_unsent().await;
                        let end = trial.as_ref().map(|t| deadline_instant(t.deadline()));
                        if let Some(end) = agent.self_update_step(&mut trial, end) {
                            break 'cycles end;
                        }
                    }
                    Heard::Notice(notice) => {
                        agent.hear(notice.versions);
                        let delay = jitter(&agent.id.client_id, notice.id, notice.jitter_ms);
                        tokio::select! {
                            () = &mut shutdown => break 'cycles Ended::Stopped,
                            () = tokio::time::sleep(delay) => {}
                        }
                        break;
                    }
                },
                () = tokio::time::sleep_until(trial_wake), if trial.is_some() => {
                    let end = trial.as_ref().map(|t| deadline_instant(t.deadline()));
                    if let Some(end) = agent.self_update_step(&mut trial, end) {
                        break 'cycles end;
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    scheduled = true;
                    break;
                }
            }
        }
    };
    events.abort();
    reports.abort();
    // Stop accepting, let requests in flight finish, close idle keep-alive connections.
    let _ = relay_stop.send(());
    if let Some(t) = relay_task {
        let _ = t.await;
    }
    Ok(ended)
}

/// Starts serving the relay, when the agent is one: the sender that stops it, and its task.
async fn serve_relay(
    agent: &Agent,
) -> Result<
    (
        tokio::sync::oneshot::Sender<()>,
        Option<tokio::task::JoinHandle<()>>,
    ),
    AgentError,
> {
    let (relay_stop, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let task = match (&agent.relay, agent.cfg.relay_listen) {
        (Some(relay), Some(addr)) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| AgentError::Relay(format!("bind {addr}: {e}")))?;
            let relay = Arc::clone(relay);
            Some(tokio::spawn(relay.serve(listener, async move {
                let _ = relay_stopped.await;
            })))
        }
        _ => None,
    };
    Ok((relay_stop, task))
}

impl Agent {
    /// One update cycle, unless it was `scheduled` by the timer and the domain settings'
    /// update windows are closed now; cut short at the end of a self-update trial.
    async fn windowed_cycle(&self, scheduled: bool, trial_end: Option<tokio::time::Instant>) {
        let schedule = Schedule::of(self.applied().as_ref(), self.cfg.interval);
        if scheduled && !schedule.may_run(now_unix()) {
            tracing::info!(
                "outside the update windows of the domain settings: scheduled cycle skipped"
            );
            return;
        }
        let cycle = self.cycle();
        let done = match trial_end {
            Some(end) => tokio::time::timeout_at(end, cycle).await.ok(),
            None => Some(cycle.await),
        };
        match done {
            Some(Ok(r)) => tracing::info!(outcome = ?r.outcome, "update cycle done"),
            Some(Err(e)) => tracing::warn!(error = %e, "update cycle failed"),
            None => tracing::warn!("the update cycle outlasted the trial of this build"),
        }
    }
}

/// The tokio instant of a unix-seconds deadline (now when it has passed).
fn deadline_instant(unix: i64) -> tokio::time::Instant {
    let left = u64::try_from(unix.saturating_sub(now_unix())).unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_secs(left)
}

impl Agent {
    /// After a cycle or a delivered check-in: a trial that checked in is won (committed); a
    /// trial past its end hands back to the old build; outside a trial, a newer installed
    /// build of this agent is started on trial. `Some` ends the run.
    fn self_update_step(
        &self,
        trial: &mut Option<Trial>,
        trial_end: Option<tokio::time::Instant>,
    ) -> Option<Ended> {
        let su = self.cfg.self_update.as_ref()?;
        if let Some(t) = trial.as_ref() {
            if self.checked_in.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = crate::selfupdate::won(&self.data, t) {
                    // The marker says healthy: the next start finishes the commit; a marker
                    // that could not be written leaves the trial to be rolled back.
                    tracing::error!(error = %e, code = e.code(), "self-update commit failed");
                    return Some(Ended::Exec(t.exe.clone()));
                }
                *trial = None;
                return None;
            }
            if trial_end.is_some_and(|end| tokio::time::Instant::now() >= end) {
                tracing::warn!(version = %t.to, "no check-in within the trial; back to the old build");
                return Some(Ended::Exec(t.exe.clone()));
            }
            return None;
        }
        match crate::selfupdate::begin(&self.data, self.updater.installer(), su, now_unix()) {
            Ok(Some(binary)) => Some(Ended::Exec(binary)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, code = e.code(), "cannot start the new agent build");
                None
            }
        }
    }
}

/// What the notification stream told the agent.
enum Heard {
    /// The stream (re)connected: the server is reachable.
    Hello,
    /// A Notify All Clients.
    Notice(Notice),
}

/// Holds the notification stream, reconnecting with a growing pause when it drops. A
/// reconnection sends the id of the last notice heard (`Last-Event-ID`), so the server
/// replays only a newer one it missed (`docs/architecture.md#notify-across-restarts`).
/// With replicas, it is held on the one in use, and moves on when that one is down.
async fn listen(servers: Servers, credential: String, tx: mpsc::Sender<Heard>) {
    let mut pause = Duration::from_millis(500);
    let mut last: Option<i64> = None;
    loop {
        let credential = credential.as_str();
        let opened = servers
            .call(|api| async move { api.events_after(credential, last).await })
            .await;
        if let Ok(stream) = opened {
            pause = Duration::from_millis(500);
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let heard = match ev {
                    Event::Hello(_) => Heard::Hello,
                    Event::Notify(n) => {
                        last = Some(last.map_or(n.id, |l| l.max(n.id)));
                        Heard::Notice(n)
                    }
                };
                if tx.send(heard).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}
