//! One update cycle, `docs/architecture.md#run-time`: for each category, resolve the plan for this
//! client (or, for an update agent, its own plan), try the steps in order through the
//! verifying repository client, install what is newer atomically, and record every attempt.
//! The first step that delivers verified metadata wins; when every step fails the client
//! quits this category and says so in the report.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use cascade_core::report::{Attempt, Outcome, UpdateReport};
use cascade_core::{resolve, resolve_for_agent, Category, Plan, Policy, StepSource};
use cascade_repo::layout::TargetPath;
use cascade_repo::publish::{target_meta, versions_of};
use cascade_repo::{
    FailureReason, Installed, RepoClient, Source, SourceTransport, TransportLimits,
};
use url::Url;

use crate::install::Installer;
use crate::state::{trust_domain, DataDir};

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
    floors: BTreeMap<&'static str, u64>,
    observer: Option<Observer>,
}

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

/// The result of one category from one source.
enum Got {
    Installed(Vec<String>),
    Current,
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
    ) -> Result<Self, FailureReason> {
        let installer = Installer::new(data.installed());
        let transport = SourceTransport::new_bound(limits, bind)
            .map_err(|e| FailureReason::Local(format!("HTTP client: {e}")))?;
        Ok(Updater {
            data,
            server,
            bind,
            transport,
            installer,
            floors: BTreeMap::new(),
            observer: None,
        })
    }

    /// Reports each step to `observer` (e.g. a progress bar).
    #[must_use]
    pub fn with_observer(mut self, observer: Option<Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Sets the timestamp version the server announced for a trust domain (`upstream`,
    /// `site`); sources serving older metadata then fail.
    pub fn set_floor(&mut self, domain: &'static str, version: u64) {
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
    pub async fn run(&self, policy: &Policy, me: &Me, now_unix: i64) -> UpdateReport {
        let _ = self.installer.clean();
        let mut attempts = Vec::new();
        let mut installed_any = false;
        let mut quit = false;
        for category in Category::ALL {
            let plan = Self::plan(policy, me, category);
            match self.run_category(&plan, &mut attempts).await {
                Some(true) => installed_any = true,
                Some(false) => {}
                None => quit = true,
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

    /// Tries the plan's steps in order. `Some(installed?)` on success, `None` when all failed.
    async fn run_category(&self, plan: &Plan, attempts: &mut Vec<Attempt>) -> Option<bool> {
        let category = plan.category;
        for (i, step) in plan.steps.iter().enumerate() {
            let started = Instant::now();
            let (result, bytes) = self
                .try_step(&step.source, category, (i + 1, plan.steps.len()))
                .await;
            let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (outcome, reason, done) = match &result {
                Ok(Got::Installed(what)) => (
                    Outcome::Ok,
                    Some(format!("installed {}", what.join(", "))),
                    Some(true),
                ),
                Ok(Got::Current) => (Outcome::UpToDate, None, Some(false)),
                Err(e) => (Outcome::Failed, Some(format!("{}: {e}", e.code())), None),
            };
            attempts.push(Attempt {
                category: Some(category),
                step: u32::try_from(i + 1).unwrap_or(u32::MAX),
                source: step.source.to_string(),
                outcome,
                reason,
                bytes,
                millis,
            });
            if let (Some(obs), Some(a)) = (&self.observer, attempts.last()) {
                obs(&StepEvent::Done(a));
            }
            if done.is_some() {
                return done;
            }
        }
        attempts.push(Attempt {
            category: Some(category),
            step: u32::try_from(plan.steps.len() + 1).unwrap_or(u32::MAX),
            source: "quit".into(),
            outcome: Outcome::Quit,
            reason: Some(if plan.steps.is_empty() {
                "the plan has no source for this client".into()
            } else {
                "every source failed".into()
            }),
            bytes: 0,
            millis: 0,
        });
        None
    }

    /// The repository source a plan step stands for, for `category`'s trust domain.
    ///
    /// # Errors
    /// A URL that cannot be joined.
    pub fn source_for(
        &self,
        step: &StepSource,
        category: Category,
    ) -> Result<Source, FailureReason> {
        let bad = |e: url::ParseError| FailureReason::Local(e.to_string());
        let base = match repo_root(step, &self.server).map_err(bad)? {
            Some(root) => root
                .join(&format!("{}/", trust_domain(category)))
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
        Ok(Source {
            label: step.to_string(),
            base,
        })
    }

    pub(crate) fn client_for(&self, category: Category) -> Result<RepoClient, FailureReason> {
        let dir = self.data.trust(trust_domain(category));
        let root = std::fs::read(dir.join("pinned-root.json")).map_err(|_| {
            FailureReason::Local(format!(
                "no trusted root for {} content ({} is missing)",
                trust_domain(category),
                dir.join("pinned-root.json").display()
            ))
        })?;
        let client = RepoClient::with_transport(root, &dir, self.transport.sibling(), self.bind)?;
        Ok(match self.floors.get(trust_domain(category)) {
            Some(v) => client.with_min_timestamp_version(*v),
            None => client,
        })
    }

    /// One step: the result and the body bytes it received.
    async fn try_step(
        &self,
        step: &StepSource,
        category: Category,
        (n, of): (usize, usize),
    ) -> (Result<Got, FailureReason>, u64) {
        let client = match self.client_for(category) {
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
        let repo = client.load(&source).await?;
        // `fetch_latest` checks the floor too, but a stale source must fail even when it
        // offers nothing to fetch, or it would report "up to date" and stop the plan.
        let have = repo.timestamp().signed.version.get();
        if let Some(min) = self
            .floors
            .get(trust_domain(category))
            .filter(|min| have < **min)
        {
            return Err(FailureReason::Rollback(format!(
                "timestamp version {have} is older than the {min} the server announced (stale source)"
            )));
        }
        let targets = &repo.targets().signed;
        let mut names: Vec<String> = targets
            .targets_iter()
            .filter(|(_, t)| target_meta(t).is_some_and(|m| !m.is_delta()))
            .filter_map(|(n, _)| n.raw().parse::<TargetPath>().ok())
            .filter(|p| p.category() == category)
            .map(|p| p.name().to_owned())
            .collect();
        names.sort();
        names.dedup();
        let mut installed = Vec::new();
        for name in names {
            let Some((_, newest)) = versions_of(targets, category, &name).into_iter().next() else {
                continue;
            };
            let current = self.installer.current(category, &name).map_err(local)?;
            if current.as_deref() == Some(newest.as_str()) {
                continue;
            }
            let stage = self
                .installer
                .stage(category, &name, &newest)
                .map_err(local)?;
            let current_dir: Option<PathBuf> =
                self.installer.current_dir(category, &name).map_err(local)?;
            let inst = current
                .as_deref()
                .zip(current_dir.as_deref())
                .map(|(version, dir)| Installed { version, dir });
            let fetched = client
                .fetch_latest(
                    std::slice::from_ref(&source),
                    category,
                    &name,
                    inst,
                    stage.path(),
                )
                .await
                .map_err(|mut f| {
                    f.pop()
                        .map_or(FailureReason::Other("no source".into()), |(_, r)| r)
                })?;
            if fetched.version != newest {
                return Err(FailureReason::Other(format!(
                    "{category}/{name}: the repository changed during the update ({newest} then {})",
                    fetched.version
                )));
            }
            stage.commit().map_err(local)?;
            installed.push(format!("{name} {newest}"));
        }
        Ok(if installed.is_empty() {
            Got::Current
        } else {
            Got::Installed(installed)
        })
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

fn local(e: impl std::fmt::Display) -> FailureReason {
    FailureReason::Local(e.to_string())
}
