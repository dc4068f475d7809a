//! Resolution (`docs/architecture.md#resolution`): policy + client IP + category → the ordered plan
//! of sources, each step with its reason. This is the function the server, the agents, the
//! console's what-if page and the CLI all call; its rules are normative and each has a test.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Serialize, Serializer};
use url::Url;

use crate::category::Category;
use crate::error::PolicyError;
use crate::list::EntrySource;
use crate::policy::{
    same_location, ActiveUpdateFallback, Agent, AgentSource, Fallback, Mode, Policy,
};

/// Where one step of a plan fetches from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StepSource {
    /// An update agent, `agent:HOST:PORT`.
    Agent(SocketAddr),
    /// A URL source from the list, `url:URL`.
    Url(Url),
    /// The cascade server, `server`.
    Server,
    /// The upstream repository directly, `activeupdate:URL`.
    ActiveUpdate(Url),
}

impl StepSource {
    fn same_place(&self, other: &StepSource) -> bool {
        match (self, other) {
            (
                StepSource::Url(a) | StepSource::ActiveUpdate(a),
                StepSource::Url(b) | StepSource::ActiveUpdate(b),
            ) => same_location(a, b),
            _ => self == other,
        }
    }
}

impl From<&EntrySource> for StepSource {
    fn from(s: &EntrySource) -> Self {
        match s {
            EntrySource::Agent(a) => StepSource::Agent(*a),
            EntrySource::Url(u) => StepSource::Url(u.clone()),
        }
    }
}

impl fmt::Display for StepSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepSource::Agent(a) => write!(f, "agent:{a}"),
            StepSource::Url(u) => write!(f, "url:{u}"),
            StepSource::Server => f.write_str("server"),
            StepSource::ActiveUpdate(u) => write!(f, "activeupdate:{u}"),
        }
    }
}

impl Serialize for StepSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One source to try, and why it is in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Where to fetch from.
    pub source: StepSource,
    /// Human-readable reason, e.g. `sources[2] 10.0.0.0/24 contains 10.0.0.7`.
    pub why: String,
}

/// The ordered sources for one category. Try them in order; the first that delivers
/// verified content wins; when all fail, quit this update and report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The category this plan is for.
    pub category: Category,
    /// The sources, in order.
    pub steps: Vec<Step>,
    /// What was considered and left out, and why (capability, duplicate, cycle, a fallback
    /// that does not apply). Not part of the JSON contract.
    #[serde(skip)]
    pub skipped: Vec<String>,
}

impl Plan {
    fn new(category: Category) -> Self {
        Plan {
            category,
            steps: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Appends `source` unless the same place is already a step (tried once).
    fn push(&mut self, source: StepSource, why: String) {
        if let Some(n) = self.steps.iter().position(|s| s.source.same_place(&source)) {
            self.skipped.push(format!(
                "{source} ({why}): already step {}, tried once",
                n + 1
            ));
        } else {
            self.steps.push(Step { source, why });
        }
    }
}

/// Who is asking: an ordinary client, or an update agent resolving for itself.
#[derive(Debug, Clone, Copy)]
enum Asker {
    Client,
    Agent(SocketAddr),
}

/// The plan for a client at `ip` of `domain` (default privileges when `None` or when the
/// domain has no overrides), `docs/architecture.md#standard-mode` and `#customized-mode`.
pub fn resolve(policy: &Policy, ip: IpAddr, domain: Option<&str>, category: Category) -> Plan {
    resolve_with(
        policy,
        ip,
        domain,
        category,
        linear_matches(policy, ip),
        |a| policy.find_agent(a),
    )
}

/// The positions of the list entries whose range contains `ip`, by looking at each.
fn linear_matches(policy: &Policy, ip: IpAddr) -> impl Iterator<Item = usize> + '_ {
    policy
        .sources
        .iter()
        .enumerate()
        .filter(move |(_, e)| e.range.contains(ip))
        .map(|(i, _)| i)
}

/// [`resolve`] given the entries matching `ip` (positions, in list order) and a lookup of
/// registered agents: the linear scan here, the index of [`crate::index::Resolver`].
pub(crate) fn resolve_with<'p>(
    policy: &'p Policy,
    ip: IpAddr,
    domain: Option<&str>,
    category: Category,
    matching: impl Iterator<Item = usize>,
    find_agent: impl Fn(SocketAddr) -> Option<&'p Agent>,
) -> Plan {
    let mut plan = Plan::new(category);
    match policy.mode {
        Mode::Standard => {
            plan.push(StepSource::Server, "mode is standard".into());
            let privilege = policy.privileges_for(domain).download_from_activeupdate;
            if category == Category::Components {
                match (&policy.activeupdate_url, privilege) {
                    (Some(url), true) => plan.push(
                        StepSource::ActiveUpdate(url.clone()),
                        "mode is standard and privilege download_from_activeupdate is on".into(),
                    ),
                    (None, true) => plan
                        .skipped
                        .push("activeupdate: no activeupdate_url is set".into()),
                    (_, false) => plan
                        .skipped
                        .push("activeupdate: privilege download_from_activeupdate is off".into()),
                }
            }
        }
        Mode::Customized => {
            let lookup = Lookup {
                matching,
                find_agent,
            };
            customized(policy, ip, domain, Asker::Client, lookup, &mut plan);
        }
    }
    plan
}

/// The plan of the update agent at `address` for itself (`docs/architecture.md#agent-plans`):
/// `[server]` when `[agents] source = "server"`; otherwise the list (never itself, never an agent
/// that would form a cycle of agents fetching from each other), then the fallback chain.
///
/// # Errors
/// [`PolicyError::NoSuchAgent`] when no agent is registered at `address`.
pub fn resolve_for_agent(
    policy: &Policy,
    address: SocketAddr,
    category: Category,
) -> Result<Plan, PolicyError> {
    if policy.find_agent(address).is_none() {
        return Err(PolicyError::NoSuchAgent(address.to_string()));
    }
    let mut plan = Plan::new(category);
    match policy.agents.source {
        AgentSource::Server => plan.push(StepSource::Server, "[agents] source is server".into()),
        AgentSource::Customized => {
            let lookup = Lookup {
                matching: linear_matches(policy, address.ip()),
                find_agent: |a| policy.find_agent(a),
            };
            customized(
                policy,
                address.ip(),
                None,
                Asker::Agent(address),
                lookup,
                &mut plan,
            );
        }
    }
    Ok(plan)
}

/// How [`customized`] finds the list entries matching the client and the registered agents.
struct Lookup<M, F> {
    /// Positions of the entries whose range contains the client's address, in list order.
    matching: M,
    /// The registered agent at an address.
    find_agent: F,
}

/// Rule 2: matching entries in list order, then the category's fallback.
fn customized<'p, M, F>(
    policy: &'p Policy,
    ip: IpAddr,
    domain: Option<&str>,
    asker: Asker,
    lookup: Lookup<M, F>,
    plan: &mut Plan,
) where
    M: Iterator<Item = usize>,
    F: Fn(SocketAddr) -> Option<&'p Agent>,
{
    let category = plan.category;
    let entries = policy.sources.as_slice();
    for (i, e) in lookup.matching.filter_map(|i| Some((i, entries.get(i)?))) {
        let why = format!("sources[{i}] {} contains {ip}", e.range);
        if let EntrySource::Agent(addr) = e.source {
            let capable =
                (lookup.find_agent)(addr).is_some_and(|a| a.capabilities.contains(&category));
            if !capable {
                plan.skipped.push(format!(
                    "agent:{addr} ({why}): agent lacks capability {category}"
                ));
                continue;
            }
            if let Asker::Agent(me) = asker {
                if addr == me {
                    plan.skipped.push(format!(
                        "agent:{addr} ({why}): an agent never updates from itself"
                    ));
                    continue;
                }
                if reaches(policy, category, addr, me) {
                    plan.skipped.push(format!(
                        "agent:{addr} ({why}): it updates through agent:{me}, so using it would form a cycle"
                    ));
                    continue;
                }
            }
        }
        plan.push(StepSource::from(&e.source), why);
    }
    fallback(policy, domain, plan);
}

/// The fallback after every list entry failed (rule 2's bullets).
fn fallback(policy: &Policy, domain: Option<&str>, plan: &mut Plan) {
    let category = plan.category;
    let option = Fallback::option_name(category);
    if policy.fallback.from_server(category) {
        plan.push(StepSource::Server, format!("{option} is on"));
        return;
    }
    if category != Category::Components {
        plan.skipped.push(format!("server: {option} is off"));
        return;
    }
    let Some(url) = &policy.activeupdate_url else {
        plan.skipped.push(format!(
            "activeupdate: {option} is off and no activeupdate_url is set"
        ));
        return;
    };
    let privilege = policy.privileges_for(domain).download_from_activeupdate;
    let unlisted = !policy.upstream_in_list();
    let said = |on: bool, what: &str| format!("{what} is {}", if on { "on" } else { "off" });
    let reasons = format!(
        "{option} is off; {}; {}; activeupdate_fallback = {}",
        said(privilege, "privilege download_from_activeupdate"),
        if unlisted {
            "activeupdate_url is not in the source list"
        } else {
            "activeupdate_url is in the source list"
        },
        policy.activeupdate_fallback,
    );
    let go = match policy.activeupdate_fallback {
        ActiveUpdateFallback::Any => privilege || unlisted,
        ActiveUpdateFallback::All => privilege && unlisted,
        ActiveUpdateFallback::Never => false,
    };
    if go {
        plan.push(StepSource::ActiveUpdate(url.clone()), reasons);
    } else {
        plan.skipped
            .push(format!("activeupdate not tried: {reasons}"));
    }
}

/// Whether agent `from` (updating through the list) reaches agent `to` by following
/// agent entries for `category`. Used to drop every edge that lies on a cycle, which leaves
/// the agents' fetch graph acyclic whichever agent resolves first.
fn reaches(policy: &Policy, category: Category, from: SocketAddr, to: SocketAddr) -> bool {
    if policy.agents.source != AgentSource::Customized {
        return false;
    }
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(a) = stack.pop() {
        if a == to {
            return true;
        }
        if !seen.insert(a) {
            continue;
        }
        stack.extend(agent_edges(policy, category, a));
    }
    false
}

/// The agents that agent `a` would list for `category`, before cycle pruning.
fn agent_edges(policy: &Policy, category: Category, a: SocketAddr) -> Vec<SocketAddr> {
    policy
        .sources
        .iter()
        .filter(|e| e.range.contains(a.ip()))
        .filter_map(|e| match e.source {
            EntrySource::Agent(b) if b != a => Some(b),
            _ => None,
        })
        .filter(|b| {
            policy
                .find_agent(*b)
                .is_some_and(|ag| ag.capabilities.contains(&category))
        })
        .collect()
}
