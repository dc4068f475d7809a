//! The validated policy model (`docs/architecture.md#policy`). Its types make bad states hard
//! to write (a range is always a range, a URL always http(s)); [`Policy::validate`] checks
//! what types cannot: agent references, unique agents and entry ids. Its TOML/JSON form is
//! in [`crate::doc`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::category::Category;
use crate::error::PolicyError;
use crate::list::{EntrySource, SourceList};

/// Which update sources clients use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Clients update from the server only (plus ActiveUpdate for components when allowed).
    #[default]
    Standard,
    /// Clients follow the customized source list, then the fallback chain.
    Customized,
}

/// When a client whose customized sources all failed may go to ActiveUpdate directly
/// (components only, and only when `fallback.components_from_server` is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActiveUpdateFallback {
    /// The default rule: the privilege is on, **or** the upstream is not in the list.
    #[default]
    Any,
    /// Both conditions must hold.
    All,
    /// Never (air-gapped sites).
    Never,
}

impl fmt::Display for ActiveUpdateFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActiveUpdateFallback::Any => "any",
            ActiveUpdateFallback::All => "all",
            ActiveUpdateFallback::Never => "never",
        })
    }
}

/// Where update agents themselves update from (`docs/architecture.md#agent-plans`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentSource {
    /// From the server only.
    #[default]
    Server,
    /// From the customized list, never from themselves or through a cycle of agents.
    Customized,
}

/// `[agents]`: settings for update agents as clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsSettings {
    /// Where agents update from.
    #[serde(default)]
    pub source: AgentSource,
}

/// `[fallback]`: "update … from the server if all customized sources are not available or
/// not found", one option per category. All on by default, so a client never quits while the
/// server could serve it unless the admin says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Fallback {
    /// Components from the server.
    pub components_from_server: bool,
    /// Domain settings from the server.
    pub domain_settings_from_server: bool,
    /// Client programs and hot fixes from the server.
    pub programs_from_server: bool,
}

impl Default for Fallback {
    fn default() -> Self {
        Fallback {
            components_from_server: true,
            domain_settings_from_server: true,
            programs_from_server: true,
        }
    }
}

impl Fallback {
    /// The option for one category.
    pub fn from_server(&self, category: Category) -> bool {
        match category {
            Category::Components => self.components_from_server,
            Category::DomainSettings => self.domain_settings_from_server,
            Category::Programs => self.programs_from_server,
        }
    }

    /// The option's name as written in the policy file, e.g. `fallback.programs_from_server`.
    pub fn option_name(category: Category) -> &'static str {
        match category {
            Category::Components => "fallback.components_from_server",
            Category::DomainSettings => "fallback.domain_settings_from_server",
            Category::Programs => "fallback.programs_from_server",
        }
    }
}

/// `[privileges]`: the default client privileges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Privileges {
    /// "Clients download updates from the ActiveUpdate server".
    pub download_from_activeupdate: bool,
}

/// `[domains.NAME.privileges]`: per-domain overrides; an absent field keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegeOverrides {
    /// Overrides `privileges.download_from_activeupdate` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_from_activeupdate: Option<bool>,
}

/// `[domains.NAME]`: a client domain (its clients name it at enrollment).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Domain {
    /// Privilege overrides for clients of this domain.
    pub privileges: PrivilegeOverrides,
    /// This domain's settings document; its clients use the default's when absent
    /// (`docs/operating.md#domains-and-their-settings`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<crate::settings::DomainSettings>,
}

/// A registered update agent (`[[agent]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Where it serves the repository; its IP is also the address it updates from.
    pub address: SocketAddr,
    /// The categories it relays. An entry pointing to it is skipped for the others.
    pub capabilities: BTreeSet<Category>,
}

/// The whole policy. Build it from TOML or JSON through [`crate::doc::PolicyDoc`]; change it
/// through the methods here, each of which returns a new validated policy or an error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Standard or customized.
    pub mode: Mode,
    /// The upstream ("ActiveUpdate") repository; no upstream step is planned without it.
    pub activeupdate_url: Option<Url>,
    /// Which rule lets a client go to the upstream directly.
    pub activeupdate_fallback: ActiveUpdateFallback,
    /// The three "from the server if all customized sources fail" options.
    pub fallback: Fallback,
    /// Default privileges.
    pub privileges: Privileges,
    /// Client domains with privilege overrides, by name.
    pub domains: BTreeMap<String, Domain>,
    /// The default domain settings (`[settings]`), for clients of no domain or of a domain
    /// without settings of its own.
    pub settings: crate::settings::DomainSettings,
    /// Settings for agents as clients.
    pub agents: AgentsSettings,
    /// Registered update agents.
    pub agent: Vec<Agent>,
    /// The customized update source list, in order.
    pub sources: SourceList,
}

impl Policy {
    /// The effective privileges of a client of `domain` (the defaults when `None` or when the
    /// domain has no overrides).
    pub fn privileges_for(&self, domain: Option<&str>) -> Privileges {
        let mut p = self.privileges;
        if let Some(d) = domain.and_then(|name| self.domains.get(name)) {
            if let Some(v) = d.privileges.download_from_activeupdate {
                p.download_from_activeupdate = v;
            }
        }
        p
    }

    /// The settings a client of `domain` applies and the target name they are published
    /// under: the domain's own when it has some, else the default's.
    pub fn settings_for(&self, domain: Option<&str>) -> (&str, &crate::settings::DomainSettings) {
        match domain.and_then(|name| self.domains.get_key_value(name)) {
            Some((
                name,
                Domain {
                    settings: Some(s), ..
                },
            )) => (name.as_str(), s),
            _ => (crate::settings::DEFAULT_SETTINGS_NAME, &self.settings),
        }
    }

    /// The registered agent at `address`.
    pub fn find_agent(&self, address: SocketAddr) -> Option<&Agent> {
        self.agent.iter().find(|a| a.address == address)
    }

    /// Checks what the types cannot: agents are unique, every agent entry names a
    /// registered agent, entry ids are unique, and the limits of `docs/api.md#limits`
    /// (entry, agent and domain counts, domain and URL lengths, no control or bidi
    /// characters in domain names).
    ///
    /// # Errors
    /// The first problem found, naming its field and value.
    pub fn validate(&self) -> Result<(), PolicyError> {
        use crate::limits::{check_count, check_text, MAX_AGENTS, MAX_DOMAIN, MAX_DOMAINS};
        use crate::limits::{MAX_SOURCES, MAX_URL};
        check_count("sources", self.sources.len(), MAX_SOURCES)?;
        check_count("agent", self.agent.len(), MAX_AGENTS)?;
        check_count("domains", self.domains.len(), MAX_DOMAINS)?;
        for name in self.domains.keys() {
            check_text(
                &format!("domains.{}", crate::limits::cut(name)),
                name,
                MAX_DOMAIN,
            )?;
        }
        self.settings.validate("settings")?;
        for (name, d) in &self.domains {
            if let Some(s) = &d.settings {
                let field = format!("domains.{}.settings", crate::limits::cut(name));
                crate::settings::check_publishable_name(&field, name)?;
                s.validate(&field)?;
            }
        }
        if let Some(u) = &self.activeupdate_url {
            check_text("activeupdate_url", u.as_str(), MAX_URL)?;
        }
        for (i, e) in self.sources.iter().enumerate() {
            if let EntrySource::Url(u) = &e.source {
                check_text(&format!("sources[{i}].url"), u.as_str(), MAX_URL)?;
            }
        }
        let mut seen = BTreeSet::new();
        for (i, a) in self.agent.iter().enumerate() {
            if !seen.insert(a.address) {
                return Err(PolicyError::Duplicate {
                    field: format!("agent[{i}].address"),
                    value: a.address.to_string(),
                });
            }
        }
        let mut ids = BTreeSet::new();
        for (i, e) in self.sources.iter().enumerate() {
            if !ids.insert(e.id) {
                return Err(PolicyError::Duplicate {
                    field: format!("sources[{i}].id"),
                    value: e.id.to_string(),
                });
            }
            if let EntrySource::Agent(addr) = e.source {
                if !seen.contains(&addr) {
                    return Err(PolicyError::UnknownAgent {
                        field: format!("sources[{i}].agent"),
                        value: addr.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether the upstream URL is itself an entry of the source list (the second condition
    /// for going to ActiveUpdate directly, `docs/architecture.md#fallback-chain`). Trailing
    /// slashes do not matter.
    pub fn upstream_in_list(&self) -> bool {
        let Some(up) = &self.activeupdate_url else {
            return false;
        };
        self.sources
            .iter()
            .any(|e| matches!(&e.source, EntrySource::Url(u) if same_location(u, up)))
    }

    /// A copy with `sources` replaced, validated.
    ///
    /// # Errors
    /// When the new list references an unregistered agent or repeats an id.
    pub fn with_sources(&self, sources: SourceList) -> Result<Policy, PolicyError> {
        let next = Policy {
            sources,
            ..self.clone()
        };
        next.validate()?;
        Ok(next)
    }

    /// A copy with one more registered agent.
    ///
    /// # Errors
    /// When an agent with that address is already registered.
    pub fn with_agent_added(&self, agent: Agent) -> Result<Policy, PolicyError> {
        let mut next = self.clone();
        next.agent.push(agent);
        next.validate()?;
        Ok(next)
    }

    /// A copy without the agent at `address`.
    ///
    /// # Errors
    /// When no such agent is registered, or an entry still points to it.
    pub fn with_agent_removed(&self, address: SocketAddr) -> Result<Policy, PolicyError> {
        if self.find_agent(address).is_none() {
            return Err(PolicyError::NoSuchAgent(address.to_string()));
        }
        if let Some(i) = self
            .sources
            .iter()
            .position(|e| e.source == EntrySource::Agent(address))
        {
            return Err(PolicyError::AgentInUse {
                agent: address.to_string(),
                field: format!("sources[{i}]"),
            });
        }
        let mut next = self.clone();
        next.agent.retain(|a| a.address != address);
        Ok(next)
    }
}

/// Whether two URLs name the same repository: equal up to a trailing slash on the path.
pub fn same_location(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        && a.query() == b.query()
}
