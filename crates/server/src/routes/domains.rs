//! Admin routes of domain settings (`docs/operating.md#domains-and-their-settings`): list the
//! default's and every domain's settings with the domain's ActiveUpdate privilege, read the
//! settings a client of one domain applies, and set them. A write is stored in the policy
//! (a new revision, `If-Match` as every policy write, audited) and then published by the
//! server's site publisher as the signed target
//! `domain-settings/NAME/VERSION/settings.json`; `{name}` `default` is the default document.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use cascade_core::settings::{DEFAULT_SETTINGS_NAME, SETTINGS_FILE};
use cascade_core::{Category, DomainSettings, Policy};
use cascade_proto::{DomainSettingsEntry, DomainSettingsList, DomainSettingsView};

use super::{expected_revision, Revisioned};
use crate::auth::{Admin, Viewer};
use crate::error::{ApiError, ApiJson};
use crate::openapi::{PolicyRefusals, Refusals, SiteRefusals};
use crate::state::AppState;

/// The settings a client of `name` applies, as an answer.
pub fn view(revision: i64, policy: &Policy, name: &str) -> DomainSettingsView {
    let (published_as, settings) = if name == DEFAULT_SETTINGS_NAME {
        (DEFAULT_SETTINGS_NAME, &policy.settings)
    } else {
        policy.settings_for(Some(name))
    };
    DomainSettingsView {
        revision,
        domain: name.to_owned(),
        own: name == DEFAULT_SETTINGS_NAME || published_as != DEFAULT_SETTINGS_NAME,
        settings: settings.clone(),
        target: (settings.version > 0).then(|| {
            format!(
                "{}/{published_as}/{}/{SETTINGS_FILE}",
                Category::DomainSettings,
                settings.version
            )
        }),
    }
}

/// `GET /api/policy/domain-settings`.
#[utoipa::path(get, path = "/api/policy/domain-settings", tag = "domains",
    summary = "The default settings and each domain's privileges and settings",
    security(("admin" = [])),
    responses((status = 200, description = "Every domain's settings", body = DomainSettingsList), Refusals))]
pub async fn list(
    _: Viewer,
    State(st): State<AppState>,
) -> Result<Revisioned<DomainSettingsList>, ApiError> {
    let cur = st.store.current().await?;
    let domains: BTreeMap<String, DomainSettingsEntry> = cur
        .policy
        .domains
        .iter()
        .map(|(name, d)| {
            let entry = DomainSettingsEntry {
                privileges: d.privileges,
                effective: cur.policy.privileges_for(Some(name)),
                settings: d.settings.clone(),
            };
            (name.clone(), entry)
        })
        .collect();
    Ok(Revisioned::ok(
        cur.revision,
        DomainSettingsList {
            revision: cur.revision,
            privileges: cur.policy.privileges,
            default: cur.policy.settings.clone(),
            domains,
        },
    ))
}

/// `GET /api/policy/domain-settings/{name}`.
#[utoipa::path(get, path = "/api/policy/domain-settings/{name}", tag = "domains",
    summary = "The settings a client of this domain applies (its own or the default's)",
    security(("admin" = [])),
    params(("name" = String, Path, description = "The domain's name; `default` for the default")),
    responses((status = 200, description = "The settings", body = DomainSettingsView), Refusals))]
pub async fn get_one(
    _: Viewer,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Revisioned<DomainSettingsView>, ApiError> {
    let cur = st.store.current().await?;
    Ok(Revisioned::ok(
        cur.revision,
        view(cur.revision, &cur.policy, &name),
    ))
}

/// `PUT /api/policy/domain-settings/{name}`: store and publish a settings document.
#[utoipa::path(put, path = "/api/policy/domain-settings/{name}", tag = "domains",
    summary = "Set a domain's (or the default's) settings; stored at the next version and published signed",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current"),
        ("name" = String, Path, description = "The domain's name; `default` for the default")),
    request_body = DomainSettings,
    responses((status = 200, description = "The settings as stored and published", body = DomainSettingsView),
        Refusals, PolicyRefusals, SiteRefusals))]
pub async fn put_one(
    Admin(actor): Admin,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(settings): ApiJson<DomainSettings>,
) -> Result<Revisioned<DomainSettingsView>, ApiError> {
    let expected = expected_revision(&headers)?;
    let answer = store_and_publish(&st, &actor, expected, &name, settings).await?;
    Ok(Revisioned::ok(answer.revision, answer))
}

/// Stores `settings` for `name` (`default`: the default's) at the next version and publishes
/// them; what `PUT /api/policy/domain-settings/{name}` and the console do.
///
/// # Errors
/// `site.linked` before anything is stored when the site is the operator's link; the store's
/// refusals (a stale revision, a field out of bounds); a publish failure (the settings are
/// stored and published at the next start).
pub async fn store_and_publish(
    st: &AppState,
    actor: &str,
    expected: Option<i64>,
    name: &str,
    settings: DomainSettings,
) -> Result<DomainSettingsView, ApiError> {
    // An operator-linked site cannot be published to: refuse before anything is stored.
    let site = st.site.publisher()?;
    let stored = st
        .store
        .set_domain_settings(expected, actor, name, settings)
        .await?;
    let answer = view(stored.revision, &stored.policy, name);
    // Stored; if publishing fails now, the next start publishes it (`publish_pending`).
    let published_as = if answer.own {
        name
    } else {
        DEFAULT_SETTINGS_NAME
    };
    site.publish_settings(published_as, &answer.settings)
        .await?;
    tracing::info!(domain = %name, version = answer.settings.version, "domain settings stored and published");
    Ok(answer)
}
