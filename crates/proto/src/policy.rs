//! Bodies of the policy routes: the whole policy (`/api/policy`), its settings
//! (`/api/policy/settings`), domains (`/api/policy/domains`) and registered update agents
//! (`/api/agents`).

use std::collections::BTreeMap;

use cascade_core::report::RelayReport;
use cascade_core::{
    ActiveUpdateFallback, AgentDoc, AgentSource, Category, Fallback, Mode, PolicyDoc,
    PrivilegeOverrides, Privileges,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// `GET`/`PUT /api/policy` answer: the whole policy and its revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyResponse {
    /// The policy revision (also the `ETag`).
    pub revision: i64,
    /// The policy document.
    pub policy: PolicyDoc,
}

/// `GET`/`PATCH /api/policy/settings` answer: everything but agents, domains and the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Settings {
    /// The policy revision.
    pub revision: i64,
    /// `standard` or `customized`.
    pub mode: Mode,
    /// The upstream repository URL, `null` when none is set.
    pub activeupdate_url: Option<String>,
    /// When clients may go to the upstream directly.
    pub activeupdate_fallback: ActiveUpdateFallback,
    /// The three fallback options.
    pub fallback: Fallback,
    /// Default privileges.
    pub privileges: Privileges,
    /// Where update agents themselves update from.
    pub agents_source: AgentSource,
}

/// `PATCH /api/policy/settings` body: every field optional (absent keeps the value);
/// `activeupdate_url: null` clears the upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// New mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Absent: keep; `null`: clear; a string: the new upstream URL.
    #[allow(clippy::option_option)] // absent (keep) vs null (clear) vs a value
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[schema(value_type = Option<String>)]
    pub activeupdate_url: Option<Option<String>>,
    /// New upstream fallback rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activeupdate_fallback: Option<ActiveUpdateFallback>,
    /// Any of the three fallback options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackPatch>,
    /// Default privileges (`download_from_activeupdate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<PrivilegeOverrides>,
    /// Where update agents update from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents_source: Option<AgentSource>,
}

/// The three fallback options, each optional (named as in the policy file).
#[allow(clippy::struct_field_names)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackPatch {
    /// Components from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components_from_server: Option<bool>,
    /// Domain settings from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_settings_from_server: Option<bool>,
    /// Client programs and hot fixes from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programs_from_server: Option<bool>,
}

/// Distinguishes an absent field (`None`, by `default`) from `null` (`Some(None)`).
#[allow(clippy::option_option)]
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `GET /api/policy/domains` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DomainsResponse {
    /// The policy revision.
    pub revision: i64,
    /// The default privileges.
    pub privileges: Privileges,
    /// Each domain, by name.
    pub domains: BTreeMap<String, DomainView>,
}

/// One domain: its overrides and the privileges that result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DomainView {
    /// The overrides (absent field = the default applies).
    pub privileges: PrivilegeOverrides,
    /// The privileges its clients get.
    pub effective: Privileges,
}

/// `PUT /api/policy/domains/{name}` answer (the body is [`PrivilegeOverrides`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DomainUpdated {
    /// The new policy revision.
    pub revision: i64,
    /// The domain's name.
    pub domain: String,
    /// Its overrides as stored.
    pub privileges: PrivilegeOverrides,
    /// The privileges its clients get.
    pub effective: Privileges,
}

/// `DELETE /api/policy/domains/{name}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DomainDeleted {
    /// The new policy revision.
    pub revision: i64,
    /// The domain removed.
    pub deleted: String,
}

/// `GET /api/agents` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentsResponse {
    /// The policy revision.
    pub revision: i64,
    /// Registered update agents, in policy order.
    pub agents: Vec<AgentView>,
}

/// A registered update agent with the enrolled clients serving at its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    /// `IP:PORT` where it serves.
    pub address: String,
    /// The categories it relays.
    pub capabilities: Vec<Category>,
    /// Enrolled clients that registered this address, seen last first.
    pub clients: Vec<AgentClient>,
    /// What the relay there last reported serving; `null` before its first report.
    pub relay: Option<RelayReport>,
}

/// An enrolled client serving at an agent's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentClient {
    /// The client's id.
    pub client_id: String,
    /// Its name.
    pub name: String,
    /// Unix seconds of its last check-in.
    pub last_seen: Option<i64>,
}

/// `POST /api/agents` answer (the body is [`AgentDoc`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentAdded {
    /// The new policy revision.
    pub revision: i64,
    /// The agent as registered (address normalized).
    pub agent: AgentDoc,
}

/// `DELETE /api/agents/{address}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentRemoved {
    /// The new policy revision.
    pub revision: i64,
    /// The address unregistered.
    pub removed: String,
}
