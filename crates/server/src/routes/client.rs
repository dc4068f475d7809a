//! The client API: enroll with the enrollment token, then, with the client's own
//! credential only, fetch the policy (to resolve and cache locally), read its own record,
//! check in (installed versions, the IP it used, the attempts of its last update) and hold
//! the notification stream.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::header::IF_NONE_MATCH;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_core::doc::parse_agent_address;
use cascade_core::report::{CheckIn, RelayReport, MAX_REPORTED_CLIENTS};
use cascade_core::PolicyDoc;
use cascade_proto::{
    CheckInResponse, ClientIdentity, ClientPolicy, ClientView, EnrollRequest, Enrolled, Hello,
    StreamEvent,
};

use super::admin::Registry;
use super::Revisioned;
use crate::auth::{self, ClientAuth, Enroller};
use crate::error::{ApiError, ApiJson};
use crate::lockout::{Attempt, Origin};
use crate::notify::Role;
use crate::openapi::{Refusals, TooLarge, Unprocessable};
use crate::state::AppState;
use crate::store::{CheckInRecord, ClientRecord, Enrollment, NewClient, Store};
use cascade_core::limits;

/// The header of the announced repository versions (`cascade_proto::versions`).
const REPO_VERSIONS: HeaderName = HeaderName::from_static(cascade_proto::versions::HEADER);

/// `POST /api/client/enroll`: returns `{client_id, credential}` (the credential is shown
/// once; only its hash is kept).
#[utoipa::path(post, path = "/api/client/enroll", tag = "client",
    summary = "Enroll with the enrollment token; answers with the client's id and credential",
    security(("enrollment" = [])),
    request_body = EnrollRequest,
    responses((status = 201, description = "Enrolled; the credential is shown once", body = Enrolled),
        Refusals, Unprocessable, TooLarge))]
pub async fn enroll(
    Enroller(token): Enroller,
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<EnrollRequest>,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > limits::MAX_NAME {
        return Err(ApiError::bad(
            "request.name",
            "name",
            format!(
                "name: `{}` must be 1 to {} characters",
                limits::cut(&body.name),
                limits::MAX_NAME
            ),
        ));
    }
    text_limit("request.name", "name", &name, limits::MAX_NAME)?;
    let domain = body
        .domain
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    if let Some(d) = &domain {
        text_limit("request.domain", "domain", d, limits::MAX_DOMAIN)?;
    }
    let agent = body
        .agent_address
        .as_deref()
        .map(|a| parse_agent_address("agent_address", a).map(|a| a.to_string()))
        .transpose()?;
    let id = auth::random_hex(&st.random, 8)?;
    let (credential, hash) = auth::new_token(&st.random, "cli", &id)?;
    let done = st
        .store
        .enroll(
            &token,
            &NewClient {
                id: &id,
                name: &name,
                domain: domain.as_deref(),
                agent_address: agent.as_deref(),
                credential_hash: &hash,
                enrolled_from: &peer.ip().to_string(),
            },
        )
        .await?;
    match done {
        Enrollment::Enrolled { agent: approved } => {
            tracing::info!(client = %id, %name, approved_agent = approved, "client enrolled");
        }
        Enrollment::TokenRefused => {
            tracing::warn!(token = %token, peer = %peer.ip(), "enrollment refused: token revoked, expired or used up");
            let origin = Origin {
                source: Some(peer.ip()),
                method: "POST".to_owned(),
                path: "/api/client/enroll".to_owned(),
            };
            st.auth
                .count_failure(Attempt::Enroll, &format!("enr_{token}"), &origin)
                .await?;
            return Err(ApiError::Unauthorized(
                "the enrollment token is revoked, expired or used up",
            ));
        }
        Enrollment::AddressTaken => {
            tracing::warn!(
                peer = %peer.ip(),
                agent_address = agent.as_deref().unwrap_or_default(),
                "enrollment refused: another client is the approved update agent at that address"
            );
            return Err(ApiError::Exists {
                what: "approved update agent at agent_address",
                id: agent.unwrap_or_default(),
            });
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            client_id: id,
            credential,
            servers: st.replica_urls.clone(),
        }),
    ))
}

/// `GET /api/client/policy`: `{revision, policy, client}`; `If-None-Match: "REV"` gives 304.
#[utoipa::path(get, path = "/api/client/policy", tag = "client",
    summary = "The policy and its revision, to resolve locally; If-None-Match: revision gives 304",
    security(("client" = [])),
    params(("If-None-Match" = Option<String>, Header, description = "A revision the caller holds (`\"7\"`); 304 while it is current")),
    responses((status = 200, description = "The policy; ETag is the revision", body = ClientPolicy,
            headers(("cascade-repo-versions" = String, description = "The repository versions served now, the client's floor: `upstream=40, site=12`"))),
        (status = 304, description = "Unchanged since the revision named in If-None-Match",
            headers(("cascade-repo-versions" = String, description = "As on 200"))),
        Refusals))]
pub async fn policy(
    ClientAuth(id): ClientAuth,
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // The rollout revision is folded in, so a rollout change refetches too (both only grow:
    // the sum changes whenever either does). The common answer, 304, reads only the two
    // revisions (one statement, the stored policy not decoded).
    let (policy_revision, rollout_revision) = st.store.client_revisions().await?;
    let etag = format!("\"{}\"", policy_revision + rollout_revision);
    let versions = HeaderValue::try_from(st.notifier.served().announced().header_value());
    let announce = |mut resp: Response| {
        if let Ok(v) = versions {
            resp.headers_mut().insert(REPO_VERSIONS, v);
        }
        resp
    };
    if headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = etag.parse() {
            resp.headers_mut().insert(axum::http::header::ETAG, v);
        }
        return Ok(announce(resp));
    }
    // A 200: the policy and the rollout revision read again, so the revision answered is the
    // one of the policy sent.
    let cur = st.store.current().await?;
    let rollout_revision = st.store.rollout_revision().await?;
    let revision = cur.revision + rollout_revision;
    let me = own_record(&st.store, &id).await?;
    let program_pins = if rollout_revision == 0 {
        std::collections::BTreeMap::new()
    } else {
        crate::rollout::pins_for(&st.store.governing_rollouts().await?, &me)
    };
    Ok(announce(
        Revisioned::ok(
            revision,
            ClientPolicy {
                revision,
                policy: PolicyDoc::from_policy(&cur.policy),
                client: ClientIdentity {
                    id,
                    domain: me.domain,
                    agent_address: me.agent_address,
                },
                rollout_revision,
                program_pins,
            },
        )
        .into_response(),
    ))
}

/// `GET /api/client/status`: the caller's own record.
#[utoipa::path(get, path = "/api/client/status", tag = "client",
    summary = "The caller's own record",
    security(("client" = [])),
    responses((status = 200, description = "The caller's record", body = ClientView), Refusals))]
pub async fn status(
    ClientAuth(id): ClientAuth,
    State(reg): State<Registry>,
) -> Result<Json<ClientView>, ApiError> {
    let view = reg
        .one(&id)
        .await?
        .ok_or(ApiError::NotFound { what: "client", id })?;
    Ok(Json(view))
}

/// `POST /api/client/checkin`: record the report; answers with the current policy revision
/// so the client knows whether to refetch.
#[utoipa::path(post, path = "/api/client/checkin", tag = "client",
    summary = "Report installed versions, the IP used, the last update's attempts and relay counters",
    security(("client" = [])),
    request_body = CheckIn,
    responses((status = 200, description = "Recorded; the current policy revision", body = CheckInResponse),
        Refusals, TooLarge))]
pub async fn checkin(
    ClientAuth(id): ClientAuth,
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<CheckIn>,
) -> Result<Json<CheckInResponse>, ApiError> {
    let ip = body
        .ip
        .as_deref()
        .map(|t| {
            t.trim().parse::<IpAddr>().map_err(|_| {
                ApiError::bad(
                    "request.ip",
                    "ip",
                    format!("ip: `{}` is not an IP address", limits::cut(t)),
                )
            })
        })
        .transpose()?;
    if let Some(r) = &body.relay {
        check_relay(r)?;
        if own_record(&st.store, &id)
            .await?
            .agent_approved_at
            .is_none()
        {
            tracing::warn!(client = %id, "relay report ignored: not an approved update agent");
        }
    }
    if let Some(v) = &body.agent_version {
        text_limit(
            "request.agent_version",
            "agent_version",
            v,
            limits::MAX_VERSION,
        )?;
    }
    for (category, version) in &body.installed {
        let field = format!("installed.{}", category.as_str());
        text_limit("request.installed", &field, version, limits::MAX_VERSION)?;
    }
    let (policy, rollouts) = st
        .store
        .check_in(
            &id,
            &CheckInRecord {
                reported_ip: ip.map(|i| i.to_string()),
                peer_ip: peer.ip().to_string(),
                installed: &body.installed,
                last_update: body.last_update.as_ref(),
                relay: body.relay.as_ref(),
                agent_version: body.agent_version.as_deref(),
            },
        )
        .await?;
    Ok(Json(CheckInResponse {
        policy_revision: policy + rollouts,
    }))
}

/// A 400 naming `field` when `value` is over `max` bytes or holds a control or bidi character
/// (`docs/api.md#limits`).
fn text_limit(code: &'static str, field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    limits::check_text(field, value, max).map_err(|e| ApiError::bad(code, field, e.to_string()))
}

/// Checks a relay report's client list (bounded, real addresses).
fn check_relay(r: &RelayReport) -> Result<(), ApiError> {
    if r.clients.len() > MAX_REPORTED_CLIENTS {
        return Err(ApiError::bad(
            "request.relay.clients",
            "relay.clients",
            format!(
                "relay.clients: {} entries, at most {MAX_REPORTED_CLIENTS} are accepted",
                r.clients.len()
            ),
        ));
    }
    if let Some(c) = r.clients.iter().find(|c| c.ip.parse::<IpAddr>().is_err()) {
        return Err(ApiError::bad(
            "request.relay.ip",
            "relay.clients.ip",
            format!(
                "relay.clients.ip: `{}` is not an IP address",
                limits::cut(&c.ip)
            ),
        ));
    }
    Ok(())
}

/// The caller's own record (it authenticated, so it exists unless deleted meanwhile).
async fn own_record(store: &Store, id: &str) -> Result<ClientRecord, ApiError> {
    store.client(id).await?.ok_or_else(|| ApiError::NotFound {
        what: "client",
        id: id.to_owned(),
    })
}

/// `GET /api/client/events`: server-sent events. First `event: hello` with the caller's
/// role, then the newest notice the client missed (issued within the replay window, newer
/// than its `Last-Event-ID`, not older than its last check-in; see
/// `docs/architecture.md#notify-across-restarts`), then `event: notify` for each Notify All
/// Clients. Ends when the server stops.
#[utoipa::path(get, path = "/api/client/events", tag = "client",
    summary = "Server-sent events: `hello` (Hello), the newest missed notice if any, then `notify` (Notice) for each Notify All Clients",
    security(("client" = [])),
    params(("Last-Event-ID" = Option<i64>, Header, description = "The id of the last notice the client received; only newer ones are replayed")),
    responses((status = 200, description = "The event stream; each event's data is one of these",
        content_type = "text/event-stream", body = StreamEvent), Refusals))]
pub async fn events(
    ClientAuth(id): ClientAuth,
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_event = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad(
                        "request.last_event_id",
                        "Last-Event-ID",
                        format!(
                            "Last-Event-ID: `{}` is not a notice id",
                            String::from_utf8_lossy(v.as_bytes())
                        ),
                    )
                })?,
        ),
    };
    let cur = st.store.current().await?;
    let me = own_record(&st.store, &id).await?;
    let agent = me.agent_address.filter(|_| me.agent_approved_at.is_some());
    let role = if agent
        .as_deref()
        .and_then(|a| a.parse().ok())
        .is_some_and(|a| cur.policy.find_agent(a).is_some())
    {
        Role::Agent
    } else {
        Role::Client
    };
    // Subscribe before looking for a missed notice, so a notify issued in between is heard
    // (perhaps twice: a second cycle is harmless, a lost one is not).
    let rx = st.notifier.subscribe(role);
    let forgotten = st.notifier.forgotten();
    let shutdown = st.shutdown.subscribe();
    let missed = crate::notify::missed(
        &st.notifier,
        &st.store,
        role,
        last_event,
        me.last_seen,
        st.clock.now(),
    )
    .await?;
    let me: std::sync::Arc<str> = std::sync::Arc::from(id.as_str());
    let hello = serde_json::to_string(&Hello {
        client_id: id,
        role,
        revision: cur.revision,
    })
    // Serializing a struct of strings and integers cannot fail.
    .unwrap_or_default();
    let replay = missed
        .filter(|n| st.notifier.reaches(n.id, &me))
        .inspect(|_| st.metrics.delivered(role));
    let parts = crate::events::Parts {
        hello,
        replay,
        notices: rx,
        forgotten,
        shutdown,
        me,
        role,
    };
    Ok(crate::events::EventStream::new(parts, st).into_response())
}
