//! Bodies of the domain-settings routes (`/api/policy/domain-settings`): the default's and
//! each domain's settings document (`docs/operating.md#domains-and-their-settings`) with the
//! domain's ActiveUpdate privilege beside it. `{name}` `default` is the default document.

use std::collections::BTreeMap;

use cascade_core::{DomainSettings, PrivilegeOverrides, Privileges};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /api/policy/domain-settings` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DomainSettingsList {
    /// The policy revision (also the `ETag`).
    pub revision: i64,
    /// The default privileges.
    pub privileges: Privileges,
    /// The default settings (version 0: never set; agents use the built-in values).
    pub default: DomainSettings,
    /// Each domain of the policy, by name.
    pub domains: BTreeMap<String, DomainSettingsEntry>,
}

/// One domain in [`DomainSettingsList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DomainSettingsEntry {
    /// Its privilege overrides (absent field = the default applies).
    pub privileges: PrivilegeOverrides,
    /// The privileges its clients get.
    pub effective: Privileges,
    /// Its own settings; `null`: its clients use the default's.
    pub settings: Option<DomainSettings>,
}

/// `GET`/`PUT /api/policy/domain-settings/{name}` answer: the settings a client of the
/// domain applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DomainSettingsView {
    /// The policy revision (also the `ETag`).
    pub revision: i64,
    /// The domain asked for (`default` for the default).
    pub domain: String,
    /// Whether the domain has settings of its own (`false`: these are the default's).
    pub own: bool,
    /// The settings its clients apply.
    pub settings: DomainSettings,
    /// The signed target they are published as
    /// (`domain-settings/NAME/VERSION/settings.json`); `null` while never set.
    pub target: Option<String>,
}
