//! Admin routes over clients and notify: Notify All Clients, the client registry (with
//! states and the stale filter), and the enrollment token (metadata and rotation).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use cascade_core::report::Outcome;
use cascade_core::{Category, Policy};
use cascade_proto::{
    ClientDeleted, ClientState, ClientView, ClientsQuery, ClientsResponse, EnrollmentToken,
    EnrollmentTokenInfo, NotifyRequest, NotifyResponse,
};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::auth::{self, Admin};
use crate::error::{ApiError, ApiQuery};
use crate::openapi::{NotFound, Refusals};
use crate::state::AppState;
use crate::store;

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

/// A stored outcome (its wire name) as the enum; `None` for a name this server does not know.
pub fn outcome(text: Option<&str>) -> Option<Outcome> {
    text.and_then(|t| serde_json::from_value(serde_json::Value::String(t.to_owned())).ok())
}

/// Reads one `clients` row (selected with [`CLIENT_COLUMNS`]).
///
/// # Errors
/// Database decode errors.
pub fn client_view(
    st: &AppState,
    policy: &Policy,
    r: &AnyRow,
    detail: bool,
) -> Result<ClientView, ApiError> {
    let last_seen: Option<i64> = r.try_get("last_seen")?;
    let last_outcome = outcome(r.try_get::<Option<String>, _>("last_outcome")?.as_deref());
    let agent_address: Option<String> = r.try_get("agent_address")?;
    let installed: String = r.try_get("installed")?;
    let last_update: Option<String> = r.try_get("last_update")?;
    let relay: Option<String> = r.try_get("relay_report")?;
    let stale = i64::try_from(st.stale_after.as_secs()).unwrap_or(i64::MAX);
    let is_agent = agent_address
        .as_deref()
        .and_then(|a| a.parse().ok())
        .is_some_and(|a| policy.find_agent(a).is_some());
    Ok(ClientView {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        domain: r.try_get("domain")?,
        is_agent,
        agent_address,
        enrolled_at: r.try_get("enrolled_at")?,
        enrolled_from: r.try_get("enrolled_from")?,
        state: client_state(last_seen, last_outcome, st.clock.now(), stale),
        last_seen,
        reported_ip: r.try_get("reported_ip")?,
        peer_ip: r.try_get("peer_ip")?,
        installed: serde_json::from_str(&installed).unwrap_or_default(),
        last_outcome,
        last_update: if detail {
            last_update.and_then(|t| serde_json::from_str(&t).ok())
        } else {
            None
        },
        relay: if detail {
            relay.and_then(|t| serde_json::from_str(&t).ok())
        } else {
            None
        },
    })
}

/// The columns [`client_view`] reads.
pub const CLIENT_COLUMNS: &str = "id, name, domain, agent_address, enrolled_at, enrolled_from, \
     last_seen, reported_ip, peer_ip, installed, last_outcome, last_update, relay_report";

/// `GET /api/clients[?stale[=SECONDS]]`.
#[utoipa::path(get, path = "/api/clients", tag = "clients",
    summary = "Enrolled clients with state; ?stale[=SECONDS] keeps only stale/never-seen ones",
    security(("admin" = [])),
    params(ClientsQuery),
    responses((status = 200, description = "The clients", body = ClientsResponse), Refusals))]
pub async fn list_clients(
    _: Admin,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ClientsQuery>,
) -> Result<Json<ClientsResponse>, ApiError> {
    let window = match q.stale.as_deref() {
        None => None,
        Some("" | "true") => Some(i64::try_from(st.stale_after.as_secs()).unwrap_or(i64::MAX)),
        Some(s) => Some(s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad(
                "request.stale",
                "stale",
                format!("stale: `{s}` is not a number of seconds"),
            )
        })?),
    };
    let cur = store::current(&st).await?;
    let rows = sqlx::query(&format!(
        "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY name, id"
    ))
    .fetch_all(&st.db.pool)
    .await?;
    let now = st.clock.now();
    let mut clients = Vec::with_capacity(rows.len());
    for r in &rows {
        let v = client_view(&st, &cur.policy, r, false)?;
        let keep = window.is_none_or(|w| v.last_seen.is_none_or(|t| now.saturating_sub(t) > w));
        if keep {
            clients.push(v);
        }
    }
    Ok(Json(ClientsResponse { clients }))
}

/// `GET /api/clients/{id}`: one client with its last update report.
#[utoipa::path(get, path = "/api/clients/{id}", tag = "clients",
    summary = "One client with its last update report",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The client's id")),
    responses((status = 200, description = "The client", body = ClientView), Refusals, NotFound))]
pub async fn get_client(
    _: Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ClientView>, ApiError> {
    let cur = store::current(&st).await?;
    let row = sqlx::query(&format!(
        "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"
    ))
    .bind(&id)
    .fetch_optional(&st.db.pool)
    .await?
    .ok_or(ApiError::NotFound { what: "client", id })?;
    Ok(Json(client_view(&st, &cur.policy, &row, true)?))
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
    let done = sqlx::query("DELETE FROM clients WHERE id = $1")
        .bind(&id)
        .execute(&st.db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound { what: "client", id });
    }
    auth::forget_verified(&st);
    tracing::info!(client = %id, "client deleted");
    Ok(Json(ClientDeleted { deleted: id }))
}

/// `POST /api/notify`: Notify All Clients (agents first). The body is optional.
#[utoipa::path(post, path = "/api/notify", tag = "clients",
    summary = "Notify All Clients: agents first, then clients with a jitter hint",
    security(("admin" = [])),
    request_body(content = NotifyRequest, description = "Optional: the categories (all when absent or empty)"),
    responses((status = 200, description = "The notification and whom it reached", body = NotifyResponse),
        Refusals))]
pub async fn notify(
    Admin(actor): Admin,
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
    let (id, fan_out) = crate::notify::issue(&st, &actor, categories).await?;
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
    State(st): State<AppState>,
) -> Result<Json<EnrollmentTokenInfo>, ApiError> {
    let row = sqlx::query(
        "SELECT id, created_at FROM tokens WHERE kind = 'enroll' AND revoked_at IS NULL",
    )
    .fetch_optional(&st.db.pool)
    .await?;
    let info = match row {
        Some(r) => EnrollmentTokenInfo {
            id: Some(r.try_get("id")?),
            created_at: Some(r.try_get("created_at")?),
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
    let (token, hash) = auth::new_token(&st.random, st.hash_cost, "enr", &id).await?;
    let now = st.clock.now();
    let mut tx = st.db.pool.begin().await?;
    sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE kind = 'enroll' AND revoked_at IS NULL")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO tokens (id, kind, hash, label, created_at) VALUES ($1, 'enroll', $2, 'enrollment', $3)",
    )
    .bind(&id)
    .bind(&hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    auth::forget_verified(&st);
    Ok((StatusCode::CREATED, Json(EnrollmentToken { id, token })))
}
