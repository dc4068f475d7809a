//! Admin routes over the policy as a whole and its settings: GET/PUT the whole policy
//! (`cascade policy export|apply`), mode, upstream URL and rule, the three fallback options,
//! default and per-domain privileges, and registered update agents.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cascade_core::doc::parse_agent_address;
use cascade_core::report::RelayReport;
use cascade_core::{
    ActiveUpdateFallback, Agent, AgentDoc, AgentSource, Domain, Mode, PolicyDoc, PolicyError,
    PrivilegeOverrides, Privileges,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use sqlx::Row;

use super::{expected_revision, with_revision};
use crate::auth::Admin;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::store;

/// `GET /api/policy`: `{revision, policy}`.
pub async fn get_policy(_: Admin, State(st): State<AppState>) -> Result<Response, ApiError> {
    let cur = store::current(&st).await?;
    let doc = PolicyDoc::from_policy(&cur.policy);
    Ok(with_revision(
        StatusCode::OK,
        cur.revision,
        &json!({"revision": cur.revision, "policy": doc}),
    ))
}

/// `PUT /api/policy`: replace the whole policy (body: the policy document).
pub async fn put_policy(
    Admin(actor): Admin,
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(doc): ApiJson<PolicyDoc>,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let stored = store::write(&st, expected, &actor, |_| doc.into_policy()).await?;
    let doc = PolicyDoc::from_policy(&stored.policy);
    Ok(with_revision(
        StatusCode::OK,
        stored.revision,
        &json!({"revision": stored.revision, "policy": doc}),
    ))
}

/// The settings part of the policy (everything but agents, domains and the list).
#[derive(Debug, Serialize)]
struct SettingsView {
    revision: i64,
    mode: Mode,
    activeupdate_url: Option<String>,
    activeupdate_fallback: ActiveUpdateFallback,
    fallback: cascade_core::Fallback,
    privileges: Privileges,
    agents_source: AgentSource,
}

fn settings_view(revision: i64, doc: PolicyDoc) -> SettingsView {
    SettingsView {
        revision,
        mode: doc.mode,
        activeupdate_url: doc.activeupdate_url,
        activeupdate_fallback: doc.activeupdate_fallback,
        fallback: doc.fallback,
        privileges: doc.privileges,
        agents_source: doc.agents.source,
    }
}

/// `PATCH /api/policy/settings` body: every field optional; `activeupdate_url: null` clears.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    mode: Option<Mode>,
    #[allow(clippy::option_option)] // absent (keep) vs null (clear) vs a value
    #[serde(default, deserialize_with = "present")]
    activeupdate_url: Option<Option<String>>,
    activeupdate_fallback: Option<ActiveUpdateFallback>,
    fallback: Option<FallbackPatch>,
    privileges: Option<PrivilegeOverrides>,
    agents_source: Option<AgentSource>,
}

/// The three fallback options, each optional (named as in the policy file).
#[allow(clippy::struct_field_names)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackPatch {
    components_from_server: Option<bool>,
    domain_settings_from_server: Option<bool>,
    programs_from_server: Option<bool>,
}

/// Distinguishes an absent field (`None`) from `null` (`Some(None)`).
#[allow(clippy::option_option)]
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `GET /api/policy/settings`.
pub async fn get_settings(_: Admin, State(st): State<AppState>) -> Result<Response, ApiError> {
    let cur = store::current(&st).await?;
    let view = settings_view(cur.revision, PolicyDoc::from_policy(&cur.policy));
    Ok(with_revision(StatusCode::OK, cur.revision, &view))
}

/// `PATCH /api/policy/settings`: mode, upstream, fallback options, default privileges.
pub async fn patch_settings(
    Admin(actor): Admin,
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let stored = store::write(&st, expected, &actor, |p| {
        let mut doc = PolicyDoc::from_policy(p);
        if let Some(m) = patch.mode {
            doc.mode = m;
        }
        if let Some(u) = patch.activeupdate_url {
            doc.activeupdate_url = u;
        }
        if let Some(r) = patch.activeupdate_fallback {
            doc.activeupdate_fallback = r;
        }
        if let Some(f) = patch.fallback {
            let d = &mut doc.fallback;
            d.components_from_server = f.components_from_server.unwrap_or(d.components_from_server);
            d.domain_settings_from_server = f
                .domain_settings_from_server
                .unwrap_or(d.domain_settings_from_server);
            d.programs_from_server = f.programs_from_server.unwrap_or(d.programs_from_server);
        }
        if let Some(v) = patch.privileges.and_then(|p| p.download_from_activeupdate) {
            doc.privileges.download_from_activeupdate = v;
        }
        if let Some(s) = patch.agents_source {
            doc.agents.source = s;
        }
        doc.into_policy()
    })
    .await?;
    let view = settings_view(stored.revision, PolicyDoc::from_policy(&stored.policy));
    Ok(with_revision(StatusCode::OK, stored.revision, &view))
}

/// `GET /api/policy/domains`: defaults, overrides and the effective privileges per domain.
pub async fn list_domains(_: Admin, State(st): State<AppState>) -> Result<Response, ApiError> {
    let cur = store::current(&st).await?;
    let domains: BTreeMap<&String, serde_json::Value> = cur
        .policy
        .domains
        .iter()
        .map(|(name, d)| {
            let effective = cur.policy.privileges_for(Some(name));
            (
                name,
                json!({"privileges": d.privileges, "effective": effective}),
            )
        })
        .collect();
    Ok(with_revision(
        StatusCode::OK,
        cur.revision,
        &json!({"revision": cur.revision, "privileges": cur.policy.privileges, "domains": domains}),
    ))
}

/// `PUT /api/policy/domains/{name}` body: the privilege overrides (absent field = default).
pub async fn put_domain(
    Admin(actor): Admin,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(privileges): ApiJson<PrivilegeOverrides>,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let stored = store::write(&st, expected, &actor, |p| {
        let mut doc = PolicyDoc::from_policy(p);
        doc.domains.insert(name.clone(), Domain { privileges });
        doc.into_policy()
    })
    .await?;
    let effective = stored.policy.privileges_for(Some(&name));
    Ok(with_revision(
        StatusCode::OK,
        stored.revision,
        &json!({"revision": stored.revision, "domain": name, "privileges": privileges, "effective": effective}),
    ))
}

/// `DELETE /api/policy/domains/{name}`.
pub async fn delete_domain(
    Admin(actor): Admin,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let stored = store::write(&st, expected, &actor, |p| {
        if !p.domains.contains_key(&name) {
            return Err(PolicyError::UnknownDomain(name.clone()));
        }
        let mut next = p.clone();
        next.domains.remove(&name);
        Ok(next)
    })
    .await?;
    Ok(with_revision(
        StatusCode::OK,
        stored.revision,
        &json!({"revision": stored.revision, "deleted": name}),
    ))
}

/// `GET /api/agents`: registered agents, with the enrolled clients that serve at each and
/// what the relay there last reported serving (`relay`, null before its first report).
pub async fn list_agents(_: Admin, State(st): State<AppState>) -> Result<Response, ApiError> {
    let cur = store::current(&st).await?;
    let rows = sqlx::query(
        "SELECT id, name, agent_address, last_seen, relay_report FROM clients \
         WHERE agent_address IS NOT NULL ORDER BY COALESCE(last_seen, 0) DESC, id",
    )
    .fetch_all(&st.db.pool)
    .await?;
    // Per address: the enrolled clients serving there, and the relay report of the one seen
    // last (re-enrolling an agent leaves its old record behind).
    let mut enrolled: BTreeMap<String, (Vec<serde_json::Value>, Option<RelayReport>)> =
        BTreeMap::new();
    for r in rows {
        let addr: String = r.try_get("agent_address")?;
        let id: String = r.try_get("id")?;
        let name: String = r.try_get("name")?;
        let last_seen: Option<i64> = r.try_get("last_seen")?;
        let report: Option<String> = r.try_get("relay_report")?;
        let entry = enrolled.entry(addr).or_default();
        entry
            .0
            .push(json!({"client_id": id, "name": name, "last_seen": last_seen}));
        if entry.1.is_none() {
            entry.1 = report.and_then(|t| serde_json::from_str(&t).ok());
        }
    }
    let agents: Vec<serde_json::Value> = PolicyDoc::from_policy(&cur.policy)
        .agent
        .into_iter()
        .map(|a| {
            let (clients, relay) = enrolled.remove(&a.address).unwrap_or_default();
            json!({"address": a.address, "capabilities": a.capabilities, "clients": clients,
                   "relay": relay})
        })
        .collect();
    Ok(with_revision(
        StatusCode::OK,
        cur.revision,
        &json!({"revision": cur.revision, "agents": agents}),
    ))
}

/// `POST /api/agents` body `{address, capabilities?}`: register an update agent.
pub async fn add_agent(
    Admin(actor): Admin,
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(agent): ApiJson<AgentDoc>,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let address = parse_agent_address("address", &agent.address)?;
    let capabilities = agent.capabilities.iter().copied().collect();
    let stored = store::write(&st, expected, &actor, |p| {
        if p.find_agent(address).is_some() {
            return Err(PolicyError::Duplicate {
                field: "address".into(),
                value: address.to_string(),
            });
        }
        p.with_agent_added(Agent {
            address,
            capabilities,
        })
    })
    .await?;
    Ok(with_revision(
        StatusCode::CREATED,
        stored.revision,
        &json!({"revision": stored.revision, "agent": {"address": address.to_string(), "capabilities": agent.capabilities}}),
    ))
}

/// `DELETE /api/agents/{address}`: unregister (refused while an entry points to it).
pub async fn remove_agent(
    Admin(actor): Admin,
    State(st): State<AppState>,
    Path(address): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let addr = parse_agent_address("address", &address)?;
    let stored = store::write(&st, expected, &actor, |p| p.with_agent_removed(addr)).await?;
    Ok(with_revision(
        StatusCode::OK,
        stored.revision,
        &json!({"revision": stored.revision, "removed": addr.to_string()}),
    ))
}
