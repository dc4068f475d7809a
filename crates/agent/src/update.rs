//! One update cycle, `docs/architecture.md#run-time`: for each category, resolve the plan for this
//! client (or, for an update agent, its own plan), try the steps in order through the
//! verifying repository client, install what is newer atomically, and record every attempt.
//! The first step that delivers verified metadata wins; when every step fails the client
//! quits this category and says so in the report.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use cascade_core::report::{Attempt, Failure, Outcome, Reason, UpdateReport};
use cascade_core::{resolve, resolve_for_agent, Category, Plan, Policy, StepSource, TrustDomain};
use cascade_repo::{
    first_success, FailureReason, Installed, Loaded, Newest, RepoClient, RepoSource,
    SourceTransport, TransportLimits,
};
use url::Url;

use crate::install::Installer;
use crate::state::DataDir;

/// Who is updating: where it stands in the network and what it is.
#[derive(Debug, Clone)]
pub struct Me {
    /// The address the client's connections leave from (its plan is resolved for it).
    pub ip: IpAddr,
    /// Its domain, for privileges.
    pub domain: Option<String>,
    /// Set for an update agent: the address it serves at (rule 4 applies).
    pub agent: Option<SocketAddr>,
}

/// Everything one cycle needs.
#[derive(Clone)]
pub struct Updater {
    data: DataDir,
    server: Url,
    bind: Option<IpAddr>,
    /// One HTTP client for the agent's life; each step gets a sibling with its own counter.
    transport: SourceTransport,
    installer: Installer,
    /// Per trust domain, the timestamp version the server announced: a source whose
    /// metadata is older fails (a stale relay or mirror must not hold the client back).
    floors: BTreeMap<TrustDomain, u64>,
    /// The version of each rolled-out program the server lets this client install.
    pins: Pins,
    observer: Option<Observer>,
    /// Replicas of the server: the `server` step goes on to the next while one is down.
    servers: Option<crate::servers::Servers>,
}

/// Per program being rolled out, the version the server lets this client install (`None`:
/// none, keep what is installed); `docs/operating.md#rollouts`. A pin only chooses among the
/// targets the client verified: it never makes a target acceptable.
pub type Pins = BTreeMap<String, Option<String>>;

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("data", &self.data)
            .field("server", &self.server)
            .field("floors", &self.floors)
            .finish_non_exhaustive()
    }
}

/// What a progress display is told about the cycle.
#[derive(Debug)]
pub enum StepEvent<'a> {
    /// Step `step` of `of` for `category` starts; `bytes` counts what it receives.
    Trying {
        /// The category.
        category: Category,
        /// 1-based step number.
        step: usize,
        /// Steps in the plan.
        of: usize,
        /// The step's source.
        source: &'a StepSource,
        /// Live count of body bytes received by this step.
        bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    },
    /// A step ended.
    Done(&'a Attempt),
}

/// Receives [`StepEvent`]s (a progress bar on a terminal).
pub type Observer = std::sync::Arc<dyn Fn(&StepEvent<'_>) + Send + Sync>;

/// What one source did for a category.
enum Got {
    /// These items (`NAME VERSION`) were installed.
    Installed(Vec<String>),
    /// Nothing was newer than what is installed.
    Current,
}

/// The sources (by [`Updater::source_key`]) that failed to answer in this cycle.
#[derive(Debug, Default)]
struct Unanswered(std::sync::Mutex<std::collections::BTreeSet<String>>);

impl Unanswered {
    fn has(&self, key: &str) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(key))
    }

    fn add(&self, key: String) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(key);
        }
    }
}

/// How one category's update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CategoryOutcome {
    /// A source delivered and something was installed.
    Installed,
    /// A source delivered and nothing was newer.
    Current,
    /// Every step failed (or there was none): the client quit this category.
    Quit,
}

impl Updater {
    /// An updater for the data directory `data`, with the server at `server`; repository
    /// connections leave from `bind` when given.
    ///
    /// # Errors
    /// The HTTP client cannot be built (TLS set-up).
    pub fn new(
        data: DataDir,
        server: Url,
        limits: TransportLimits,
        bind: Option<IpAddr>,
        server_ca: Option<&[u8]>,
    ) -> Result<Self, FailureReason> {
        let installer = Installer::new(data.installed());
        let transport = SourceTransport::new_bound_trusting(limits, bind, server_ca)
            .map_err(|e| FailureReason::Local(format!("HTTP client: {e}")))?;
        Ok(Updater {
            data,
            server,
            bind,
            transport,
            installer,
            floors: BTreeMap::new(),
            pins: Pins::new(),
            observer: None,
            servers: None,
        })
    }

    /// Caps every download of this updater (and its clones) with `throttle`, shared.
    #[must_use]
    pub fn with_throttle(
        mut self,
        throttle: std::sync::Arc<cascade_repo::throttle::Throttle>,
    ) -> Self {
        self.transport = self.transport.with_throttle(throttle);
        self
    }

    /// Sets the throughput floor below which a download is abandoned for the next source.
    #[must_use]
    pub fn with_min_bytes_per_sec(mut self, floor: u64) -> Self {
        self.transport = self.transport.with_min_bytes_per_sec(floor);
        self
    }

    /// Installs the pinned version of each program named in `pins` instead of its newest.
    #[must_use]
    pub fn with_pins(mut self, pins: Pins) -> Self {
        self.pins = pins;
        self
    }

    /// Reports each step to `observer` (e.g. a progress bar).
    #[must_use]
    pub fn with_observer(mut self, observer: Option<Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// The `server` step asks `servers` in their order, going on to the next while one is
    /// down (`docs/operating.md#replicas`).
    #[must_use]
    pub fn with_servers(mut self, servers: crate::servers::Servers) -> Self {
        self.servers = Some(servers);
        self
    }

    /// Sets the timestamp version the server announced for a trust domain; sources serving
    /// older metadata then fail.
    pub fn set_floor(&mut self, domain: TrustDomain, version: u64) {
        self.floors.insert(domain, version);
    }

    /// The installer (for rollback and listing).
    pub fn installer(&self) -> &Installer {
        &self.installer
    }

    /// The plan of `me` for `category`.
    pub fn plan(policy: &Policy, me: &Me, category: Category) -> Plan {
        match me.agent {
            Some(addr) if policy.find_agent(addr).is_some() => {
                resolve_for_agent(policy, addr, category)
                    .unwrap_or_else(|_| resolve(policy, me.ip, me.domain.as_deref(), category))
            }
            _ => resolve(policy, me.ip, me.domain.as_deref(), category),
        }
    }

    /// Runs one cycle over every category and returns the report.
    ///
    /// The cycle is bounded by [`TransportLimits::cycle_deadline`]: a category still running
    /// then, and those after it, quit with a reason that says so. A source that failed to
    /// answer for one category is only probed (with [`TransportLimits::probe_timeout`]) by the
    /// next ones (`docs/operating.md#deadlines`).
    pub async fn run(&self, policy: &Policy, me: &Me, now_unix: i64) -> UpdateReport {
        let _ = self.installer.clean();
        let mut attempts = Vec::new();
        let mut installed_any = false;
        let mut quit = false;
        let limit = self.transport.limits().cycle_deadline;
        let deadline = tokio::time::Instant::now() + limit;
        let unanswered = Unanswered::default();
        for category in Category::ALL {
            let plan = Self::plan(policy, me, category);
            let mut tried = Vec::new();
            let run = self.run_category(&plan, &mut tried, &unanswered);
            let outcome = if let Ok(outcome) = tokio::time::timeout_at(deadline, run).await {
                outcome
            } else {
                tried.push(Attempt {
                    category: Some(category),
                    step: u32::try_from(plan.steps.len() + 1).unwrap_or(u32::MAX),
                    source: "quit".into(),
                    outcome: Outcome::Quit,
                    reason: Some(Reason::Note(format!(
                        "the update cycle's deadline of {limit:?} passed"
                    ))),
                    bytes: 0,
                    millis: 0,
                });
                CategoryOutcome::Quit
            };
            attempts.append(&mut tried);
            match outcome {
                CategoryOutcome::Installed => installed_any = true,
                CategoryOutcome::Current => {}
                CategoryOutcome::Quit => quit = true,
            }
        }
        let outcome = if quit {
            Outcome::Quit
        } else if installed_any {
            Outcome::Ok
        } else {
            Outcome::UpToDate
        };
        UpdateReport {
            finished_at: Some(now_unix),
            outcome,
            attempts,
        }
    }

    /// Tries the plan's steps in order until one delivers, recording each attempt.
    async fn run_category(
        &self,
        plan: &Plan,
        attempts: &mut Vec<Attempt>,
        unanswered: &Unanswered,
    ) -> CategoryOutcome {
        let category = plan.category;
        let of = plan.steps.len();
        let tried = first_success(plan.steps.iter().enumerate(), |(i, step)| {
            self.attempt(category, &step.source, (i + 1, of), unanswered)
        })
        .await;
        attempts.extend(tried.failed.into_iter().map(|(_, failed)| failed));
        if let Some((got, done)) = tried.success {
            attempts.push(done);
            return match got {
                Got::Installed(_) => CategoryOutcome::Installed,
                Got::Current => CategoryOutcome::Current,
            };
        }
        attempts.push(Attempt {
            category: Some(category),
            step: u32::try_from(of + 1).unwrap_or(u32::MAX),
            source: "quit".into(),
            outcome: Outcome::Quit,
            reason: Some(Reason::Note(if plan.steps.is_empty() {
                "the plan has no source for this client".into()
            } else {
                "every source failed".into()
            })),
            bytes: 0,
            millis: 0,
        });
        CategoryOutcome::Quit
    }

    /// Step `n` of `of`, recorded as an [`Attempt`] (and shown to the observer): `Ok` with
    /// what it did when it delivered verified metadata, `Err` when it failed.
    async fn attempt(
        &self,
        category: Category,
        source: &StepSource,
        (n, of): (usize, usize),
        unanswered: &Unanswered,
    ) -> Result<(Got, Attempt), Attempt> {
        let started = Instant::now();
        let key = self.source_key(source);
        let probe = unanswered.has(&key);
        let (result, bytes) = self.try_on_servers(source, category, (n, of), probe).await;
        if let Err(e) = &result {
            if matches!(
                e.code(),
                "source.timeout" | "source.connect" | "source.too_slow"
            ) {
                unanswered.add(key);
            }
        }
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (outcome, reason) = match &result {
            Ok(Got::Installed(what)) => (
                Outcome::Ok,
                Some(Reason::Note(format!("installed {}", what.join(", ")))),
            ),
            Ok(Got::Current) => (Outcome::UpToDate, None),
            Err(e) => (
                Outcome::Failed,
                Some(Reason::Failure(Failure {
                    code: e.code().to_owned(),
                    message: e.to_string(),
                })),
            ),
        };
        let attempt = Attempt {
            category: Some(category),
            step: u32::try_from(n).unwrap_or(u32::MAX),
            source: source.to_string(),
            outcome,
            reason,
            bytes,
            millis,
        };
        if let Some(obs) = &self.observer {
            obs(&StepEvent::Done(&attempt));
        }
        match result {
            Ok(got) => Ok((got, attempt)),
            Err(_) => Err(attempt),
        }
    }

    /// The repository source a plan step stands for, for `category`'s trust domain.
    ///
    /// # Errors
    /// A URL that cannot be joined.
    pub fn source_for(
        &self,
        step: &StepSource,
        category: Category,
    ) -> Result<RepoSource, FailureReason> {
        let bad = |e: url::ParseError| FailureReason::Local(e.to_string());
        let base = match repo_root(step, &self.server).map_err(bad)? {
            Some(root) => root
                .join(&format!("{}/", TrustDomain::of(category)))
                .map_err(bad)?,
            // The upstream itself is the components repository.
            None => match step {
                StepSource::ActiveUpdate(u) => with_slash(u),
                _ => {
                    return Err(FailureReason::Local(format!(
                        "{step} has no repository root"
                    )))
                }
            },
        };
        Ok(RepoSource {
            label: step.to_string(),
            base,
        })
    }

    /// What identifies a step's source across categories: the host and port it is reached at.
    fn source_key(&self, step: &StepSource) -> String {
        let url = match (repo_root(step, &self.server), step) {
            (Ok(Some(root)), _) => root,
            (_, StepSource::ActiveUpdate(u)) => u.clone(),
            _ => return step.to_string(),
        };
        format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        )
    }

    pub(crate) fn client_for(&self, category: Category) -> Result<RepoClient, FailureReason> {
        self.client_with(category, self.transport.sibling())
    }

    /// [`Updater::client_for`] through `transport`.
    fn client_with(
        &self,
        category: Category,
        transport: SourceTransport,
    ) -> Result<RepoClient, FailureReason> {
        let dir = self.data.trust(TrustDomain::of(category));
        let root = std::fs::read(dir.join("pinned-root.json")).map_err(|_| {
            FailureReason::Local(format!(
                "no trusted root for {} content ({} is missing)",
                TrustDomain::of(category),
                dir.join("pinned-root.json").display()
            ))
        })?;
        RepoClient::with_transport(root, &dir, transport, self.bind)
            .map(|c| c.with_partial_dir(&partial_dir(&self.data)))
    }

    /// Like [`Updater::client_for`], refusing sources older than the floor the server
    /// announced for `category`'s trust domain.
    /// `probe`: the source failed to answer earlier in this cycle; its header timeout is the
    /// short probe timeout.
    fn floored_client_for(
        &self,
        category: Category,
        probe: bool,
    ) -> Result<RepoClient, FailureReason> {
        let transport = if probe {
            self.transport.probe_sibling()
        } else {
            self.transport.sibling()
        };
        // Relays revalidate a timestamp older than this (`docs/operating.md#relays-serve-all-metadata`).
        let transport = match crate::relay::floor_header(&self.floors) {
            Some((name, value)) => transport.with_header(name, value),
            None => transport,
        };
        let client = self.client_with(category, transport)?;
        Ok(match self.floors.get(&TrustDomain::of(category)) {
            Some(v) => client.with_min_timestamp_version(*v),
            None => client,
        })
    }

    /// [`Updater::try_step`]; with several servers, the `server` step asks the next one while
    /// one is down (`docs/operating.md#replicas`).
    async fn try_on_servers(
        &self,
        step: &StepSource,
        category: Category,
        n_of: (usize, usize),
        probe: bool,
    ) -> (Result<Got, FailureReason>, u64) {
        let Some(servers) = self.servers.as_ref() else {
            return self.try_step(step, category, n_of, probe).await;
        };
        if !matches!(step, StepSource::Server) {
            return self.try_step(step, category, n_of, probe).await;
        }
        let (mut bytes, mut last) = (0, None);
        for server in servers.order() {
            let mut on = self.clone();
            on.server = server.clone();
            let (result, got) = on.try_step(step, category, n_of, probe).await;
            bytes += got;
            match result {
                Err(e) if crate::servers::repo_down(e.code()) => {
                    servers.failed(&server, &e.to_string());
                    last = Some(e);
                }
                done => {
                    servers.succeeded(&server);
                    return (done, bytes);
                }
            }
        }
        let none = || FailureReason::Local("no server".into());
        (Err(last.unwrap_or_else(none)), bytes)
    }

    /// One step: the result and the body bytes it received.
    async fn try_step(
        &self,
        step: &StepSource,
        category: Category,
        (n, of): (usize, usize),
        probe: bool,
    ) -> (Result<Got, FailureReason>, u64) {
        let client = match self.floored_client_for(category, probe) {
            Ok(c) => c,
            Err(e) => return (Err(e), 0),
        };
        if let Some(obs) = &self.observer {
            obs(&StepEvent::Trying {
                category,
                step: n,
                of,
                source: step,
                bytes: client.transport().byte_counter(),
            });
        }
        let result = self.step_with(&client, step, category).await;
        (result, client.transport().bytes_received())
    }

    async fn step_with(
        &self,
        client: &RepoClient,
        step: &StepSource,
        category: Category,
    ) -> Result<Got, FailureReason> {
        let source = self.source_for(step, category)?;
        // `open` checks the floor: a stale source fails even when it offers nothing to fetch,
        // rather than report "up to date" and stop the plan.
        let loaded = client.open(&source).await?;
        // A delegated role that may sign this category's targets could not be trusted: the
        // update fails rather than miss its builds (`docs/architecture.md#trust-model`).
        if let Some(why) = loaded.refused_delegation(category) {
            return Err(why);
        }
        let mut installed = Vec::new();
        for newest in loaded.newest(category) {
            // Another platform's build of the agent is of no use here.
            if category == Category::Programs && crate::selfupdate::is_other_platform(&newest.name)
            {
                continue;
            }
            let Some(newest) = self.pinned(&loaded, newest) else {
                continue;
            };
            if self.install(&loaded, &newest).await? {
                installed.push(format!("{} {}", newest.name, newest.version));
            }
        }
        Ok(if installed.is_empty() {
            Got::Current
        } else {
            Got::Installed(installed)
        })
    }

    /// What to install of a program whose newest version is `newest`: the version a rollout
    /// pins for this client when there is one (among the verified targets of `loaded`; none
    /// when the pin names no signed version or says none), else the newest.
    fn pinned(&self, loaded: &Loaded, newest: Newest) -> Option<Newest> {
        if newest.category != Category::Programs {
            return Some(newest);
        }
        let Some(pin) = self.pins.get(&newest.name) else {
            return Some(newest);
        };
        let version = pin.as_deref()?;
        if version == newest.version {
            return Some(newest);
        }
        let files: Vec<_> = loaded
            .files()
            .iter()
            .filter(|f| {
                f.path.category() == Category::Programs
                    && f.path.name() == newest.name
                    && f.path.version() == version
            })
            .cloned()
            .collect();
        if !files.iter().any(|f| !f.is_delta()) {
            tracing::warn!(program = %newest.name, pinned = version, "the pinned version is not signed in this repository; keeping what is installed");
            return None;
        }
        Some(Newest {
            category: newest.category,
            name: newest.name,
            version: version.to_owned(),
            files,
        })
    }

    /// Installs `newest` from `loaded` unless it is installed already; whether it was.
    async fn install(&self, loaded: &Loaded, newest: &Newest) -> Result<bool, FailureReason> {
        let (category, name) = (newest.category, newest.name.as_str());
        let current = self.installer.current(category, name).map_err(local)?;
        if current.as_deref() == Some(newest.version.as_str()) {
            return Ok(false);
        }
        let stage = self
            .installer
            .stage(category, name, &newest.version)
            .map_err(local)?;
        let current_dir: Option<PathBuf> =
            self.installer.current_dir(category, name).map_err(local)?;
        let inst = current
            .as_deref()
            .zip(current_dir.as_deref())
            .map(|(version, dir)| Installed { version, dir });
        loaded.save_into(newest, inst, stage.path()).await?;
        stage.commit().map_err(local)?;
        Ok(true)
    }

    /// Installed version per category, for the check-in (`NAME VERSION, …`).
    pub fn installed_summary(&self) -> BTreeMap<Category, String> {
        let mut out: BTreeMap<Category, Vec<String>> = BTreeMap::new();
        for (c, name, version) in self.installer.list() {
            out.entry(c).or_default().push(format!("{name} {version}"));
        }
        out.into_iter().map(|(c, v)| (c, v.join(", "))).collect()
    }
}

/// The `/repo/` root a plan step serves (both trust domains below it), or `None` for the
/// upstream, which is the components repository itself rather than a cascade tree.
///
/// # Errors
/// A URL that cannot be formed.
pub fn repo_root(step: &StepSource, server: &Url) -> Result<Option<Url>, url::ParseError> {
    Ok(match step {
        StepSource::Server => Some(server.join("repo/")?),
        StepSource::Agent(addr) => Some(Url::parse(&format!("http://{addr}/repo/"))?),
        StepSource::Url(u) => Some(with_slash(u)),
        StepSource::ActiveUpdate(_) => None,
    })
}

fn with_slash(u: &Url) -> Url {
    let mut u = u.clone();
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    u
}

/// Where broken downloads wait to be resumed, by SHA-256 (`DATA/partial/.partial-SHA256`):
/// outside the stages, which a failed step or a restart removes, so the next source (any
/// source: the hash decides) is asked only for the rest (`docs/operating.md#resumable-downloads`).
pub fn partial_dir(data: &DataDir) -> PathBuf {
    data.root().join("partial")
}

/// A partial download untouched this long is given up (removed at start-up).
pub const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Start-up clean-up of what a killed agent left (`docs/operating.md#crash-debris`): the
/// temporary files of atomic writes (`.tmp-*`) anywhere in the data directory, and partial
/// downloads older than [`PARTIAL_MAX_AGE`]. Call it holding the data directory's lock. Stages
/// of interrupted installs are removed by each cycle, the relay's temporary files by the relay.
/// Returns how many files were removed.
pub fn clean_debris(data: &DataDir, now: std::time::SystemTime) -> usize {
    // The trust scratch copies of loads a kill interrupted (`.load-*`): nothing reads them, and
    // under the data directory's lock no load of ours is running yet.
    let scratch: usize = [TrustDomain::Upstream, TrustDomain::Site]
        .into_iter()
        .map(|d| cascade_repo::fsutil::remove_dirs_with_prefix(&data.trust(d), ".load-"))
        .sum();
    let removed = scratch
        + cascade_repo::fsutil::remove_debris(data.root(), &[".tmp-"])
        + cascade_repo::fsutil::remove_older_than(&partial_dir(data), PARTIAL_MAX_AGE, now);
    if removed > 0 {
        tracing::info!(removed, "removed the temporary files of a killed agent");
    }
    removed
}

fn local(e: impl std::fmt::Display) -> FailureReason {
    FailureReason::Local(e.to_string())
}
