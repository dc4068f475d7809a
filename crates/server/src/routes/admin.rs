//! Admin routes over clients and notify: Notify All Clients, the client registry (with
//! states and the stale filter), and the enrollment token (metadata and rotation).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_core::{Category, Policy};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::auth::{self, Admin};
use crate::error::{ApiError, ApiQuery};
use crate::state::AppState;
use crate::store;

/// A client's state from its last check-in.
pub fn client_state(
    last_seen: Option<i64>,
    last_outcome: Option<&str>,
    now: i64,
    stale_after_secs: i64,
) -> &'static str {
    match last_seen {
        None => "never",
        Some(t) if now.saturating_sub(t) > stale_after_secs => "stale",
        Some(_) if matches!(last_outcome, Some("failed" | "quit")) => "failed",
        Some(_) => "ok",
    }
}

/// The states, in the order metrics print them.
pub const STATES: [&str; 4] = ["ok", "failed", "stale", "never"];

/// A client as the admin sees it.
#[derive(Debug, Serialize)]
pub struct ClientView {
    id: String,
    name: String,
    domain: Option<String>,
    agent_address: Option<String>,
    /// Whether `agent_address` is a registered update agent now.
    is_agent: bool,
    enrolled_at: i64,
    enrolled_from: String,
    last_seen: Option<i64>,
    reported_ip: Option<String>,
    peer_ip: Option<String>,
    installed: serde_json::Value,
    last_outcome: Option<String>,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_update: Option<serde_json::Value>,
    /// What its relay served, when it is an update agent that reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    relay: Option<serde_json::Value>,
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
    let last_outcome: Option<String> = r.try_get("last_outcome")?;
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
        state: client_state(last_seen, last_outcome.as_deref(), st.clock.now(), stale),
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

/// `GET /api/clients` query: `stale` alone (or `true`) uses the server's window; a number
/// is a window in seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsQuery {
    stale: Option<String>,
}

/// `GET /api/clients[?stale[=SECONDS]]`.
pub async fn list_clients(
    _: Admin,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ClientsQuery>,
) -> Result<Response, ApiError> {
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
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let v = client_view(&st, &cur.policy, r, false)?;
        let keep = window.is_none_or(|w| v.last_seen.is_none_or(|t| now.saturating_sub(t) > w));
        if keep {
            out.push(v);
        }
    }
    Ok(Json(json!({"clients": out})).into_response())
}

/// `GET /api/clients/{id}`: one client with its last update report.
pub async fn get_client(
    _: Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let cur = store::current(&st).await?;
    let row = sqlx::query(&format!(
        "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"
    ))
    .bind(&id)
    .fetch_optional(&st.db.pool)
    .await?
    .ok_or(ApiError::NotFound { what: "client", id })?;
    Ok(Json(client_view(&st, &cur.policy, &row, true)?).into_response())
}

/// `DELETE /api/clients/{id}`: forget a client; its credential stops working at once.
pub async fn delete_client(
    _: Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let done = sqlx::query("DELETE FROM clients WHERE id = $1")
        .bind(&id)
        .execute(&st.db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound { what: "client", id });
    }
    auth::forget_verified(&st);
    tracing::info!(client = %id, "client deleted");
    Ok(Json(json!({"deleted": id})).into_response())
}

/// `POST /api/notify` body (optional): `{categories: [..]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyBody {
    #[serde(default)]
    categories: Vec<Category>,
}

/// `POST /api/notify`: Notify All Clients (agents first).
pub async fn notify(
    Admin(actor): Admin,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: NotifyBody = if body.iter().all(u8::is_ascii_whitespace) {
        NotifyBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad("request.json", "body", e.to_string()))?
    };
    let categories = if body.categories.is_empty() {
        Category::ALL.to_vec()
    } else {
        body.categories
    };
    let (id, fan) = crate::notify::issue(&st, &actor, categories).await?;
    st.metrics.notified();
    tracing::info!(
        id,
        agents = fan.agents,
        clients = fan.clients,
        "notify all clients"
    );
    Ok(Json(json!({"id": id, "fan_out": fan})).into_response())
}

/// `GET /api/enrollment-token`: when the current enrollment token was made (never the
/// token itself: only its hash is stored).
pub async fn enrollment_token(_: Admin, State(st): State<AppState>) -> Result<Response, ApiError> {
    let row = sqlx::query(
        "SELECT id, created_at FROM tokens WHERE kind = 'enroll' AND revoked_at IS NULL",
    )
    .fetch_optional(&st.db.pool)
    .await?;
    let body = match row {
        Some(r) => {
            json!({"id": r.try_get::<String, _>("id")?, "created_at": r.try_get::<i64, _>("created_at")?})
        }
        None => json!({"id": null}),
    };
    Ok(Json(body).into_response())
}

/// `POST /api/enrollment-token/rotate`: revoke the old enrollment token, return a new one
/// (shown once). Clients already enrolled keep their credentials.
pub async fn rotate_enrollment_token(
    _: Admin,
    State(st): State<AppState>,
) -> Result<Response, ApiError> {
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
    Ok((StatusCode::CREATED, Json(json!({"id": id, "token": token}))).into_response())
}
