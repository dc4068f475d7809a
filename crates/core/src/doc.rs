//! The policy's document form: what TOML files, the admin API's JSON and the console read
//! and write. Fields that need checking (ranges, URLs, agent addresses) are plain strings
//! here and are checked in one place, [`PolicyDoc::into_policy`], so every front end gets
//! the same field-named errors. `export` then `apply` gives back the same policy.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::category::Category;
use crate::error::PolicyError;
use crate::list::{EntryId, EntrySource, SourceEntry, SourceList};
use crate::policy::{
    ActiveUpdateFallback, Agent, AgentsSettings, Domain, Fallback, Mode, Policy, Privileges,
};
use crate::range::IpRange;
use crate::settings::DomainSettings;

/// The policy as a document (TOML file, JSON body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// `standard` or `customized`.
    #[serde(default)]
    pub mode: Mode,
    /// The upstream repository URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activeupdate_url: Option<String>,
    /// `any`, `all` or `never`.
    #[serde(default)]
    pub activeupdate_fallback: ActiveUpdateFallback,
    /// The three fallback options.
    #[serde(default)]
    pub fallback: Fallback,
    /// Default privileges.
    #[serde(default)]
    pub privileges: Privileges,
    /// Domains and their privilege overrides.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, Domain>,
    /// The default domain settings (`[settings]`); omitted while never set.
    #[serde(default, skip_serializing_if = "DomainSettings::is_unset")]
    pub settings: DomainSettings,
    /// Settings for agents as clients.
    #[serde(default)]
    pub agents: AgentsSettings,
    /// Registered update agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<AgentDoc>,
    /// The customized source list, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<EntryDoc>,
}

/// An `[[agent]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentDoc {
    /// `IP:PORT` where the agent serves.
    pub address: String,
    /// Categories it relays; all three when omitted.
    #[serde(default = "all_categories")]
    pub capabilities: Vec<Category>,
}

fn all_categories() -> Vec<Category> {
    Category::ALL.to_vec()
}

/// A `[[sources]]` table: a range and exactly one of `agent` or `url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryDoc {
    /// Stable id; assigned on load when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// CIDR, `start-end` or one address.
    pub range: String,
    /// An update agent's `IP:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A URL source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl PolicyDoc {
    /// Parses a TOML policy document (syntax and types only; see [`PolicyDoc::into_policy`]).
    ///
    /// # Errors
    /// [`PolicyError::Syntax`] with the line, the key and what was expected.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))
    }

    /// Checks every field and builds the policy. Entries without an id get the next free
    /// one, in list order.
    ///
    /// # Errors
    /// The first bad field, named with its dotted path and value.
    pub fn into_policy(self) -> Result<Policy, PolicyError> {
        let activeupdate_url = self
            .activeupdate_url
            .as_deref()
            .map(|u| parse_url("activeupdate_url", u))
            .transpose()?;
        for name in self.domains.keys() {
            if name.trim().is_empty() || name.trim() != name {
                return Err(PolicyError::Invalid {
                    field: "domains".into(),
                    value: name.clone(),
                    reason: "is not a valid domain name (empty or surrounded by spaces)".into(),
                });
            }
        }
        let agent = self
            .agent
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(Agent {
                    address: parse_agent_address(&format!("agent[{i}].address"), &a.address)?,
                    capabilities: a.capabilities.iter().copied().collect::<BTreeSet<_>>(),
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let mut next_id = self.sources.iter().filter_map(|e| e.id).max().unwrap_or(0);
        let mut entries = Vec::with_capacity(self.sources.len());
        for (i, e) in self.sources.iter().enumerate() {
            let (range, source) = e.parse(&format!("sources[{i}]"))?;
            let id = if let Some(id) = e.id {
                id
            } else {
                next_id += 1;
                next_id
            };
            entries.push(SourceEntry {
                id: EntryId(id),
                range,
                source,
            });
        }
        let policy = Policy {
            mode: self.mode,
            activeupdate_url,
            activeupdate_fallback: self.activeupdate_fallback,
            fallback: self.fallback,
            privileges: self.privileges,
            domains: self.domains,
            settings: self.settings,
            agents: self.agents,
            agent,
            sources: SourceList::new(entries),
        };
        policy.validate()?;
        Ok(policy)
    }

    /// The document form of a policy (every id written out).
    pub fn from_policy(policy: &Policy) -> Self {
        PolicyDoc {
            mode: policy.mode,
            activeupdate_url: policy.activeupdate_url.as_ref().map(ToString::to_string),
            activeupdate_fallback: policy.activeupdate_fallback,
            fallback: policy.fallback,
            privileges: policy.privileges,
            domains: policy.domains.clone(),
            settings: policy.settings.clone(),
            agents: policy.agents,
            agent: policy
                .agent
                .iter()
                .map(|a| AgentDoc {
                    address: a.address.to_string(),
                    capabilities: a.capabilities.iter().copied().collect(),
                })
                .collect(),
            sources: policy.sources.iter().map(EntryDoc::from_entry).collect(),
        }
    }
}

impl EntryDoc {
    /// Checks the range and the source of one entry; `field` prefixes error paths
    /// (e.g. `sources[3]`).
    ///
    /// # Errors
    /// A bad range, a bad URL or agent address, or not exactly one of `agent` and `url`.
    pub fn parse(&self, field: &str) -> Result<(IpRange, EntrySource), PolicyError> {
        let range = IpRange::parse(&self.range).map_err(|source| PolicyError::Range {
            field: format!("{field}.range"),
            source,
        })?;
        let source = match (&self.agent, &self.url) {
            (Some(a), None) => {
                EntrySource::Agent(parse_agent_address(&format!("{field}.agent"), a)?)
            }
            (None, Some(u)) => EntrySource::Url(parse_url(&format!("{field}.url"), u)?),
            (a, u) => {
                return Err(PolicyError::Invalid {
                    field: field.to_owned(),
                    value: format!(
                        "agent = {}, url = {}",
                        a.as_deref().unwrap_or("(none)"),
                        u.as_deref().unwrap_or("(none)")
                    ),
                    reason: "must name exactly one source: an agent or a url".into(),
                })
            }
        };
        Ok((range, source))
    }

    /// The document form of one entry.
    pub fn from_entry(e: &SourceEntry) -> Self {
        let (agent, url) = match &e.source {
            EntrySource::Agent(a) => (Some(a.to_string()), None),
            EntrySource::Url(u) => (None, Some(u.to_string())),
        };
        EntryDoc {
            id: Some(e.id.0),
            range: e.range.to_string(),
            agent,
            url,
        }
    }
}

/// Parses an update agent's `IP:PORT` (`[fd00::5]:8443` for IPv6).
///
/// # Errors
/// [`PolicyError::Invalid`] naming `field` and the text.
pub fn parse_agent_address(field: &str, text: &str) -> Result<SocketAddr, PolicyError> {
    let addr: SocketAddr = text.trim().parse().map_err(|_| PolicyError::Invalid {
        field: field.to_owned(),
        value: text.to_owned(),
        reason: "is not an IP:PORT address (e.g. 10.0.0.5:8443 or [fd00::5]:8443)".into(),
    })?;
    if addr.port() == 0 {
        return Err(PolicyError::Invalid {
            field: field.to_owned(),
            value: text.to_owned(),
            reason: "has port 0".into(),
        });
    }
    Ok(addr)
}

/// Parses a source or upstream URL: absolute `http` or `https` with a host.
///
/// # Errors
/// [`PolicyError::Invalid`] naming `field` and the text.
pub fn parse_url(field: &str, text: &str) -> Result<Url, PolicyError> {
    let bad = |reason: &str| PolicyError::Invalid {
        field: field.to_owned(),
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(text.trim()).map_err(|e| bad(&format!("is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a #fragment"));
    }
    Ok(url)
}

impl Policy {
    /// Parses and validates a TOML policy.
    ///
    /// # Errors
    /// Syntax errors, or the first bad field named with its path and value.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        PolicyDoc::from_toml(text)?.into_policy()
    }

    /// The policy as TOML; [`Policy::from_toml`] of it gives back an equal policy.
    ///
    /// # Errors
    /// Only if the TOML writer fails, which the document shape does not allow in practice.
    pub fn to_toml(&self) -> Result<String, PolicyError> {
        toml::to_string(&PolicyDoc::from_policy(self))
            .map_err(|e| PolicyError::Syntax(e.to_string()))
    }
}
