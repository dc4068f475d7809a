//! Admin routes over the policy as a whole and its settings: GET/PUT the whole policy
//! (`cascade policy export|apply`), mode, upstream URL and rule, the three fallback options,
//! default and per-domain privileges, and registered update agents.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use cascade_core::doc::parse_agent_address;
use cascade_core::report::RelayReport;
use cascade_core::{Agent, AgentDoc, PolicyDoc, PrivilegeOverrides};
use cascade_proto::{
    AgentAdded, AgentClient, AgentRemoved, AgentView, AgentsResponse, DomainDeleted, DomainUpdated,
    DomainView, DomainsResponse, PolicyResponse, RestoreRequest, Settings, SettingsPatch,
};

use super::{expected_revision, Revisioned};
use crate::auth::{Admin, Viewer};
use crate::error::{ApiError, ApiJson};
use crate::openapi::{NotFound, PolicyRefusals, Refusals};
use crate::store::Store;
use serde::Deserialize as _;

/// `GET /api/policy`: `{revision, policy}`.
#[utoipa::path(get, path = "/api/policy", tag = "policy",
    summary = "The whole policy; ETag is the revision",
    security(("admin" = [])),
    responses((status = 200, description = "The policy", body = PolicyResponse), Refusals))]
pub async fn get_policy(
    _: Viewer,
    State(store): State<Store>,
) -> Result<Revisioned<PolicyResponse>, ApiError> {
    let cur = store.current().await?;
    let policy = PolicyDoc::from_policy(&cur.policy);
    Ok(Revisioned::ok(
        cur.revision,
        PolicyResponse {
            revision: cur.revision,
            policy,
        },
    ))
}

/// `PUT /api/policy`: replace the whole policy (body: the policy document).
#[utoipa::path(put, path = "/api/policy", tag = "policy",
    summary = "Replace the whole policy; If-Match: revision",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current")),
    request_body = PolicyDoc,
    responses((status = 200, description = "The policy as stored", body = PolicyResponse),
        Refusals, PolicyRefusals))]
pub async fn put_policy(
    Admin(actor): Admin,
    State(store): State<Store>,
    State(site): State<crate::site::Site>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Revisioned<PolicyResponse>, ApiError> {
    let expected = expected_revision(&headers)?;
    let doc = policy_object(&body)?;
    let stored = store.replace_policy(expected, &actor, doc).await?;
    site.publish_after_write(&stored.policy).await;
    let policy = PolicyDoc::from_policy(&stored.policy);
    Ok(Revisioned::ok(
        stored.revision,
        PolicyResponse {
            revision: stored.revision,
            policy,
        },
    ))
}

/// The body as a policy document; only a JSON object is one (serde would also read a
/// positional array such as `[]` or `["customized"]` into the struct and reset the rest).
fn policy_object(body: &serde_json::Value) -> Result<PolicyDoc, ApiError> {
    if !body.is_object() {
        let kind = match &body {
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Null => "null",
            serde_json::Value::Object(_) => "an object",
        };
        return Err(ApiError::bad(
            "request.json",
            "body",
            format!("body: the policy must be a JSON object, not {kind}"),
        ));
    }
    let doc = PolicyDoc::deserialize(body).map_err(|e| {
        ApiError::bad(
            "request.json",
            "body",
            format!("body: {}", cascade_core::limits::cut(&e.to_string())),
        )
    })?;
    let parsed = serde_json::to_value(&doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    crate::error::strict_shape(body, &parsed)?;
    Ok(doc)
}

fn settings_view(revision: i64, doc: PolicyDoc) -> Settings {
    Settings {
        revision,
        mode: doc.mode,
        activeupdate_url: doc.activeupdate_url,
        activeupdate_fallback: doc.activeupdate_fallback,
        fallback: doc.fallback,
        privileges: doc.privileges,
        agents_source: doc.agents.source,
    }
}

/// `GET /api/policy/settings`.
#[utoipa::path(get, path = "/api/policy/settings", tag = "policy",
    summary = "Mode, upstream URL and rule, fallback options, default privileges, agents' source",
    security(("admin" = [])),
    responses((status = 200, description = "The settings", body = Settings), Refusals))]
pub async fn get_settings(
    _: Viewer,
    State(store): State<Store>,
) -> Result<Revisioned<Settings>, ApiError> {
    let cur = store.current().await?;
    let view = settings_view(cur.revision, PolicyDoc::from_policy(&cur.policy));
    Ok(Revisioned::ok(cur.revision, view))
}

/// `PATCH /api/policy/settings`: mode, upstream, fallback options, default privileges.
#[utoipa::path(patch, path = "/api/policy/settings", tag = "policy",
    summary = "Change any of the settings (absent = unchanged, activeupdate_url null clears)",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current")),
    request_body = SettingsPatch,
    responses((status = 200, description = "The settings as stored", body = Settings),
        Refusals, PolicyRefusals))]
pub async fn patch_settings(
    Admin(actor): Admin,
    State(store): State<Store>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<Revisioned<Settings>, ApiError> {
    let expected = expected_revision(&headers)?;
    let stored = store.patch_settings(expected, &actor, patch).await?;
    let view = settings_view(stored.revision, PolicyDoc::from_policy(&stored.policy));
    Ok(Revisioned::ok(stored.revision, view))
}

/// `GET /api/policy/domains`: defaults, overrides and the effective privileges per domain.
#[utoipa::path(get, path = "/api/policy/domains", tag = "policy",
    summary = "Default privileges and per-domain overrides with effective values",
    security(("admin" = [])),
    responses((status = 200, description = "The domains", body = DomainsResponse), Refusals))]
pub async fn list_domains(
    _: Viewer,
    State(store): State<Store>,
) -> Result<Revisioned<DomainsResponse>, ApiError> {
    let cur = store.current().await?;
    let domains: BTreeMap<String, DomainView> = cur
        .policy
        .domains
        .iter()
        .map(|(name, d)| {
            let view = DomainView {
                privileges: d.privileges,
                effective: cur.policy.privileges_for(Some(name)),
            };
            (name.clone(), view)
        })
        .collect();
    Ok(Revisioned::ok(
        cur.revision,
        DomainsResponse {
            revision: cur.revision,
            privileges: cur.policy.privileges,
            domains,
        },
    ))
}

/// `PUT /api/policy/domains/{name}` body: the privilege overrides (absent field = default).
#[utoipa::path(put, path = "/api/policy/domains/{name}", tag = "policy",
    summary = "Set a domain's privilege overrides",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current"),
        ("name" = String, Path, description = "The domain's name")),
    request_body = PrivilegeOverrides,
    responses((status = 200, description = "The domain as stored", body = DomainUpdated),
        Refusals, PolicyRefusals))]
pub async fn put_domain(
    Admin(actor): Admin,
    State(store): State<Store>,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(privileges): ApiJson<PrivilegeOverrides>,
) -> Result<Revisioned<DomainUpdated>, ApiError> {
    let expected = expected_revision(&headers)?;
    let stored = store
        .set_domain(expected, &actor, &name, privileges)
        .await?;
    let effective = stored.policy.privileges_for(Some(&name));
    Ok(Revisioned::ok(
        stored.revision,
        DomainUpdated {
            revision: stored.revision,
            domain: name,
            privileges,
            effective,
        },
    ))
}

/// `DELETE /api/policy/domains/{name}`.
#[utoipa::path(delete, path = "/api/policy/domains/{name}", tag = "policy",
    summary = "Remove a domain",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current"),
        ("name" = String, Path, description = "The domain's name")),
    responses((status = 200, description = "The domain was removed", body = DomainDeleted),
        Refusals, PolicyRefusals))]
pub async fn delete_domain(
    Admin(actor): Admin,
    State(store): State<Store>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Revisioned<DomainDeleted>, ApiError> {
    let expected = expected_revision(&headers)?;
    let stored = store.delete_domain(expected, &actor, &name).await?;
    Ok(Revisioned::ok(
        stored.revision,
        DomainDeleted {
            revision: stored.revision,
            deleted: name,
        },
    ))
}

/// `GET /api/agents`: registered agents, with the enrolled clients that serve at each and
/// what the relay there last reported serving (`relay`, null before its first report).
#[utoipa::path(get, path = "/api/agents", tag = "agents",
    summary = "Registered update agents, their capabilities, enrolled clients and relay reports",
    security(("admin" = [])),
    responses((status = 200, description = "The agents", body = AgentsResponse), Refusals))]
pub async fn list_agents(
    _: Viewer,
    State(store): State<Store>,
) -> Result<Revisioned<AgentsResponse>, ApiError> {
    let cur = store.current().await?;
    // Per address: the enrolled clients serving there, and the relay report of the one seen
    // last (re-enrolling an agent leaves its old record behind).
    let mut enrolled: BTreeMap<String, (Vec<AgentClient>, Option<RelayReport>)> = BTreeMap::new();
    for r in store.agent_clients().await? {
        let entry = enrolled.entry(r.agent_address).or_default();
        entry.0.push(AgentClient {
            client_id: r.id,
            name: r.name,
            last_seen: r.last_seen,
        });
        if entry.1.is_none() {
            entry.1 = r.relay;
        }
    }
    let agents = PolicyDoc::from_policy(&cur.policy)
        .agent
        .into_iter()
        .map(|a| {
            let (clients, relay) = enrolled.remove(&a.address).unwrap_or_default();
            AgentView {
                address: a.address,
                capabilities: a.capabilities,
                clients,
                relay,
            }
        })
        .collect();
    Ok(Revisioned::ok(
        cur.revision,
        AgentsResponse {
            revision: cur.revision,
            agents,
        },
    ))
}

/// `POST /api/agents` body `{address, capabilities?}`: register an update agent.
#[utoipa::path(post, path = "/api/agents", tag = "agents",
    summary = "Register an update agent",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current")),
    request_body = AgentDoc,
    responses((status = 201, description = "The agent as registered", body = AgentAdded),
        Refusals, PolicyRefusals))]
pub async fn add_agent(
    Admin(actor): Admin,
    State(store): State<Store>,
    headers: HeaderMap,
    ApiJson(agent): ApiJson<AgentDoc>,
) -> Result<Revisioned<AgentAdded>, ApiError> {
    let expected = expected_revision(&headers)?;
    let address = parse_agent_address("address", &agent.address)?;
    let capabilities = agent.capabilities.iter().copied().collect();
    let stored = store
        .add_agent(
            expected,
            &actor,
            Agent {
                address,
                capabilities,
            },
        )
        .await?;
    Ok(Revisioned::created(
        stored.revision,
        AgentAdded {
            revision: stored.revision,
            agent: AgentDoc {
                address: address.to_string(),
                capabilities: agent.capabilities,
            },
        },
    ))
}

/// `DELETE /api/agents/{address}`: unregister (refused while an entry points to it).
#[utoipa::path(delete, path = "/api/agents/{address}", tag = "agents",
    summary = "Unregister an agent (refused while a source entry uses it)",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current"),
        ("address" = String, Path, description = "The agent's IP:PORT")),
    responses((status = 200, description = "The agent was unregistered", body = AgentRemoved),
        Refusals, PolicyRefusals))]
pub async fn remove_agent(
    Admin(actor): Admin,
    State(store): State<Store>,
    Path(address): Path<String>,
    headers: HeaderMap,
) -> Result<Revisioned<AgentRemoved>, ApiError> {
    let expected = expected_revision(&headers)?;
    let addr = parse_agent_address("address", &address)?;
    let stored = store.remove_agent(expected, &actor, addr).await?;
    Ok(Revisioned::ok(
        stored.revision,
        AgentRemoved {
            revision: stored.revision,
            removed: addr.to_string(),
        },
    ))
}

/// `POST /api/policy/restore`: make an earlier revision's policy current again, as a new
/// revision (the history keeps every revision).
#[utoipa::path(post, path = "/api/policy/restore", tag = "policy",
    summary = "Restore an earlier policy revision from the history, as a new revision; If-Match: revision",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current")),
    request_body = RestoreRequest,
    responses((status = 200, description = "The policy as stored", body = PolicyResponse),
        Refusals, PolicyRefusals, NotFound))]
pub async fn restore_policy(
    Admin(actor): Admin,
    State(store): State<Store>,
    State(site): State<crate::site::Site>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RestoreRequest>,
) -> Result<Revisioned<PolicyResponse>, ApiError> {
    let expected = expected_revision(&headers)?;
    let doc = store
        .policy_at(body.revision)
        .await?
        .ok_or(ApiError::NotFound {
            what: "policy revision",
            id: body.revision.to_string(),
        })?;
    let stored = store.replace_policy(expected, &actor, doc).await?;
    site.publish_after_write(&stored.policy).await;
    tracing::info!(restored = body.revision, revision = stored.revision, %actor, "policy restored");
    Ok(Revisioned::ok(
        stored.revision,
        PolicyResponse {
            revision: stored.revision,
            policy: PolicyDoc::from_policy(&stored.policy),
        },
    ))
}
