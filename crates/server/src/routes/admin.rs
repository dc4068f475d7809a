//! Admin routes over clients and notify: Notify All Clients, the client registry (with
//! states and the stale filter), and the enrollment token (metadata and rotation).

use axum::body::Bytes;
use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use cascade_core::report::Outcome;
use cascade_core::{Category, Policy};
use cascade_proto::{
    ClientDeleted, ClientState, ClientView, ClientsQuery, ClientsResponse, EnrollmentToken,
    EnrollmentTokenInfo, EnrollmentTokensResponse, IssuedEnrollmentToken, NewEnrollmentToken,
    NotifyRequest, NotifyResponse, TokenRevoked,
};

use crate::auth::{self, Admin, Operator, Viewer};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::openapi::{NotFound, Refusals, Taken, TooLarge};
use crate::settings::Clock;
use crate::state::AppState;
use crate::store::{ClientRecord, Store, StoreError};

/// A client's state from its last check-in.
pub fn client_state(
    last_seen: Option<i64>,
    last_outcome: Option<Outcome>,
    now: i64,
    stale_after_secs: i64,
) -> ClientState {
    match last_seen {
        None => ClientState::Never,
        Some(t) if now.saturating_sub(t) > stale_after_secs => ClientState::Stale,
        Some(_) if matches!(last_outcome, Some(Outcome::Failed | Outcome::Quit)) => {
            ClientState::Failed
        }
        Some(_) => ClientState::Ok,
    }
}

/// The states' names, in the order metrics print them.
pub const STATES: [&str; 4] = ["ok", "failed", "stale", "never"];

/// The stale window of `st`, in seconds.
pub fn stale_secs(st: &AppState) -> i64 {
    i64::try_from(st.stale_after.as_secs()).unwrap_or(i64::MAX)
}

/// A client as the admin sees it: its record, whether its agent address is registered in
/// `policy`, and its state at `now`. `detail` adds the last update and relay reports.
pub fn client_view(
    rec: ClientRecord,
    policy: &Policy,
    now: i64,
    stale_after_secs: i64,
    detail: bool,
) -> ClientView {
    let is_agent = rec.agent_approved_at.is_some()
        && rec
            .agent_address
            .as_deref()
            .and_then(|a| a.parse().ok())
            .is_some_and(|a| policy.find_agent(a).is_some());
    ClientView {
        state: client_state(rec.last_seen, rec.last_outcome, now, stale_after_secs),
        id: rec.id,
        name: rec.name,
        domain: rec.domain,
        is_agent,
        agent_address: rec.agent_address,
        enrolled_at: rec.enrolled_at,
        enrolled_from: rec.enrolled_from,
        last_seen: rec.last_seen,
        reported_ip: rec.reported_ip,
        peer_ip: rec.peer_ip,
        installed: rec.installed,
        agent_version: rec.agent_version,
        last_outcome: rec.last_outcome,
        last_update: if detail { rec.last_update } else { None },
        relay: if detail { rec.relay } else { None },
    }
}

/// The client registry as the admin sees it: each record with its state now. The narrow
/// state of the routes that show clients (taken from the router state, [`FromRef`]).
#[derive(Clone)]
pub struct Registry {
    store: Store,
    clock: Arc<dyn Clock>,
    stale_after_secs: i64,
}

impl FromRef<AppState> for Registry {
    fn from_ref(st: &AppState) -> Registry {
        Registry {
            store: st.store.clone(),
            clock: st.clock.clone(),
            stale_after_secs: stale_secs(st),
        }
    }
}

impl Registry {
    /// Now, by the server's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The server's stale window, in seconds.
    pub fn stale_after_secs(&self) -> i64 {
        self.stale_after_secs
    }

    /// Every client by name; `detail` adds the last update and relay reports.
    ///
    /// # Errors
    /// Store errors.
    pub async fn all(&self, detail: bool) -> Result<Vec<ClientView>, StoreError> {
        let cur = self.store.current().await?;
        let now = self.now();
        Ok(self
            .store
            .clients()
            .await?
            .into_iter()
            .map(|r| client_view(r, &cur.policy, now, self.stale_after_secs, detail))
            .collect())
    }

    /// One client with its last update and relay reports.
    ///
    /// # Errors
    /// Store errors.
    pub async fn one(&self, id: &str) -> Result<Option<ClientView>, StoreError> {
        let cur = self.store.current().await?;
        let now = self.now();
        Ok(self
            .store
            .client(id)
            .await?
            .map(|r| client_view(r, &cur.policy, now, self.stale_after_secs, true)))
    }
}

/// `GET /api/clients[?stale[=SECONDS]]`.
#[utoipa::path(get, path = "/api/clients", tag = "clients",
    summary = "Enrolled clients with state; ?stale[=SECONDS] keeps only stale/never-seen ones",
    security(("admin" = [])),
    params(ClientsQuery),
    responses((status = 200, description = "The clients", body = ClientsResponse), Refusals))]
pub async fn list_clients(
    _: Viewer,
    State(reg): State<Registry>,
    ApiQuery(q): ApiQuery<ClientsQuery>,
) -> Result<Json<ClientsResponse>, ApiError> {
    let window = match q.stale.as_deref() {
        None => None,
        Some("" | "true") => Some(reg.stale_after_secs()),
        Some(s) => Some(s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad(
                "request.stale",
                "stale",
                format!("stale: `{s}` is not a number of seconds"),
            )
        })?),
    };
    let now = reg.now();
    let mut clients = reg.all(false).await?;
    clients
        .retain(|v| window.is_none_or(|w| v.last_seen.is_none_or(|t| now.saturating_sub(t) > w)));
    Ok(Json(ClientsResponse { clients }))
}

/// `GET /api/clients/{id}`: one client with its last update report.
#[utoipa::path(get, path = "/api/clients/{id}", tag = "clients",
    summary = "One client with its last update report",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The client's id")),
    responses((status = 200, description = "The client", body = ClientView), Refusals, NotFound))]
pub async fn get_client(
    _: Viewer,
    State(reg): State<Registry>,
    Path(id): Path<String>,
) -> Result<Json<ClientView>, ApiError> {
    let view = reg
        .one(&id)
        .await?
        .ok_or(ApiError::NotFound { what: "client", id })?;
    Ok(Json(view))
}

/// `DELETE /api/clients/{id}`: forget a client; its credential stops working at once.
#[utoipa::path(delete, path = "/api/clients/{id}", tag = "clients",
    summary = "Forget a client; its credential stops working at once",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The client's id")),
    responses((status = 200, description = "The client was forgotten", body = ClientDeleted),
        Refusals, NotFound))]
pub async fn delete_client(
    _: Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ClientDeleted>, ApiError> {
    if !st.store.delete_client(&id).await? {
        return Err(ApiError::NotFound { what: "client", id });
    }
    st.auth.forget();
    st.notifier.forget_client(&id);
    tracing::info!(client = %id, "client deleted; its event stream is closed");
    Ok(Json(ClientDeleted { deleted: id }))
}

/// `POST /api/notify`: Notify All Clients (agents first). The body is optional.
#[utoipa::path(post, path = "/api/notify", tag = "clients",
    summary = "Notify All Clients: agents first, then clients with a jitter hint",
    security(("admin" = [])),
    request_body(content = NotifyRequest, description = "Optional: the categories (all when absent or empty)"),
    responses((status = 200, description = "The notification and whom it reached", body = NotifyResponse),
        Refusals, TooLarge))]
pub async fn notify(
    Operator(actor): Operator,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Json<NotifyResponse>, ApiError> {
    let body: NotifyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        NotifyRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad("request.json", "body", e.to_string()))?
    };
    let categories = if body.categories.is_empty() {
        Category::ALL.to_vec()
    } else {
        body.categories
    };
    let (id, fan_out) =
        crate::notify::issue(&st.notifier, &st.store, &actor, categories, st.clock.now()).await?;
    st.metrics.notified();
    tracing::info!(
        id,
        agents = fan_out.agents,
        clients = fan_out.clients,
        "notify all clients"
    );
    Ok(Json(NotifyResponse { id, fan_out }))
}

/// `GET /api/enrollment-token`: when the current enrollment token was made (never the
/// token itself: only its hash is stored).
#[utoipa::path(get, path = "/api/enrollment-token", tag = "clients",
    summary = "Metadata of the current enrollment token",
    security(("admin" = [])),
    responses((status = 200, description = "The token's id and age (id null when none)", body = EnrollmentTokenInfo),
        Refusals))]
pub async fn enrollment_token(
    _: Admin,
    State(store): State<Store>,
) -> Result<Json<EnrollmentTokenInfo>, ApiError> {
    let info = match store.enrollment_token().await? {
        Some((id, created_at)) => EnrollmentTokenInfo {
            id: Some(id),
            created_at: Some(created_at),
        },
        None => EnrollmentTokenInfo {
            id: None,
            created_at: None,
        },
    };
    Ok(Json(info))
}

/// `POST /api/enrollment-token/rotate`: revoke the old enrollment token, return a new one
/// (shown once). Clients already enrolled keep their credentials.
#[utoipa::path(post, path = "/api/enrollment-token/rotate", tag = "clients",
    summary = "Revoke the enrollment token and return a new one (shown once)",
    security(("admin" = [])),
    responses((status = 201, description = "The new token", body = EnrollmentToken), Refusals))]
pub async fn rotate_enrollment_token(
    _: Admin,
    State(st): State<AppState>,
) -> Result<(StatusCode, Json<EnrollmentToken>), ApiError> {
    let id = auth::random_hex(&st.random, 8)?;
    let (token, hash) = auth::new_token(&st.random, "enr", &id)?;
    st.store.rotate_enrollment_token(&id, &hash).await?;
    st.auth.forget();
    let token = crate::tls::enrollment_token_text(&st, token);
    Ok((StatusCode::CREATED, Json(EnrollmentToken { id, token })))
}

/// `GET /api/enrollment-tokens`: every enrollment token (never the secrets).
#[utoipa::path(get, path = "/api/enrollment-tokens", tag = "clients",
    summary = "Every enrollment token with its expiry, uses and revocation",
    security(("admin" = [])),
    responses((status = 200, description = "The tokens, newest first", body = EnrollmentTokensResponse),
        Refusals))]
pub async fn list_enrollment_tokens(
    _: Admin,
    State(store): State<Store>,
) -> Result<Json<EnrollmentTokensResponse>, ApiError> {
    Ok(Json(EnrollmentTokensResponse {
        tokens: store.enrollment_tokens().await?,
    }))
}

/// `POST /api/enrollment-tokens`: a new named enrollment token (shown once).
#[utoipa::path(post, path = "/api/enrollment-tokens", tag = "clients",
    summary = "Make a named enrollment token with an optional expiry, maximum uses, agent grant",
    security(("admin" = [])),
    request_body = NewEnrollmentToken,
    responses((status = 201, description = "The token, shown once", body = IssuedEnrollmentToken),
        Refusals, TooLarge))]
pub async fn create_enrollment_token(
    Admin(actor): Admin,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<NewEnrollmentToken>,
) -> Result<(StatusCode, Json<IssuedEnrollmentToken>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad(
            "request.name",
            "name",
            format!("name: `{}` must be 1 to 200 characters", body.name),
        ));
    }
    if let Some(n) = body.max_uses.filter(|n| *n < 1) {
        return Err(ApiError::bad(
            "request.max_uses",
            "max_uses",
            format!("max_uses: `{n}` must be at least 1"),
        ));
    }
    let expires_at = super::expiry(st.clock.now(), body.expires_in_secs)?;
    let id = auth::random_hex(&st.random, 8)?;
    let (token, hash) = auth::new_token(&st.random, "enr", &id)?;
    st.store
        .create_enrollment_token(&id, &hash, name, expires_at, body.max_uses, body.agent)
        .await?;
    tracing::info!(token = %id, name, agent = body.agent, %actor, "enrollment token created");
    let info = st
        .store
        .enrollment_token_view(&id)
        .await?
        .ok_or_else(|| ApiError::Internal("the new enrollment token is gone".into()))?;
    let token = crate::tls::enrollment_token_text(&st, token);
    Ok((
        StatusCode::CREATED,
        Json(IssuedEnrollmentToken { info, token }),
    ))
}

/// `DELETE /api/enrollment-tokens/{id}`: revoke an enrollment token at once.
#[utoipa::path(delete, path = "/api/enrollment-tokens/{id}", tag = "clients",
    summary = "Revoke an enrollment token (clients enrolled with it keep their credentials)",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 200, description = "Revoked", body = TokenRevoked), Refusals, NotFound))]
pub async fn revoke_enrollment_token(
    Admin(actor): Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TokenRevoked>, ApiError> {
    if !st.store.revoke_enrollment_token(&id).await? {
        return Err(ApiError::NotFound {
            what: "enrollment token",
            id,
        });
    }
    st.auth.forget();
    tracing::info!(token = %id, %actor, "enrollment token revoked");
    Ok(Json(TokenRevoked { revoked: id }))
}

/// `POST /api/clients/{id}/approve-agent`: approve a client as the update agent at the
/// address it enrolled with (`docs/operating.md#agent-approval`).
#[utoipa::path(post, path = "/api/clients/{id}/approve-agent", tag = "clients",
    summary = "Approve a client as the update agent at its enrolled address",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The client's id")),
    responses((status = 200, description = "The client, now an approved agent", body = ClientView),
        Refusals, NotFound, Taken))]
pub async fn approve_agent(
    Admin(actor): Admin,
    State(st): State<AppState>,
    State(reg): State<Registry>,
    Path(id): Path<String>,
) -> Result<Json<ClientView>, ApiError> {
    match st.store.approve_agent(&id).await? {
        None => return Err(ApiError::NotFound { what: "client", id }),
        Some(false) => {
            tracing::warn!(client = %id, %actor, "agent approval refused: no address, or another client is the agent there");
            return Err(ApiError::Exists {
                what: "approved update agent at this client's address (or it has none)",
                id,
            });
        }
        Some(true) => {}
    }
    tracing::info!(client = %id, %actor, "update agent approved");
    let view = reg
        .one(&id)
        .await?
        .ok_or(ApiError::NotFound { what: "client", id })?;
    Ok(Json(view))
}
