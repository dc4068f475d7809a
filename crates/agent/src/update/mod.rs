//! One update cycle, `docs/architecture.md#run-time`: for each category, resolve the plan for this
//! client (or, for an update agent, its own plan), try the steps in order through the
//! verifying repository client, install what is newer atomically, and record every attempt.
//! The first step that delivers verified metadata wins; when every step fails the client
//! quits this category and says so in the report.
//!
//! - `cycle`: one cycle over every category, the plan's steps in order, each recorded;
//! - `source`: the repository a step stands for and the verifying client that reads it;
//! - `step`: one step on one source (or on each server replica in turn), and the install;
//! - `debris`: resumable downloads and what a killed agent left in the data directory.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use cascade_core::report::Attempt;
use cascade_core::{resolve, resolve_for_agent, Category, Plan, Policy, StepSource, TrustDomain};
use cascade_repo::{FailureReason, SourceTransport, TransportLimits};
use url::Url;

use crate::install::Installer;
use crate::state::DataDir;

mod cycle;
mod debris;
mod source;
mod step;

pub use debris::{clean_debris, partial_dir, PARTIAL_MAX_AGE};
pub use source::repo_root;

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

    /// Installed version per category, for the check-in (`NAME VERSION, …`).
    pub fn installed_summary(&self) -> BTreeMap<Category, String> {
        let mut out: BTreeMap<Category, Vec<String>> = BTreeMap::new();
        for (c, name, version) in self.installer.list() {
            out.entry(c).or_default().push(format!("{name} {version}"));
        }
        out.into_iter().map(|(c, v)| (c, v.join(", "))).collect()
    }
}
