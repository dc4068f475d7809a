//! Bodies of the admin routes over clients: the client registry (`/api/clients`), Notify
//! All Clients (`/api/notify`) and the enrollment token (`/api/enrollment-token`).

use std::collections::BTreeMap;

use cascade_core::report::{Outcome, RelayReport, UpdateReport};
use cascade_core::Category;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A client's state from its last check-in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClientState {
    /// Checked in recently and its last update did not fail.
    Ok,
    /// Checked in recently; its last update failed or quit.
    Failed,
    /// Not seen within the stale window.
    Stale,
    /// Never checked in.
    Never,
}

impl ClientState {
    /// Every state, in the order metrics print them.
    pub const ALL: [ClientState; 4] = [
        ClientState::Ok,
        ClientState::Failed,
        ClientState::Stale,
        ClientState::Never,
    ];

    /// The lowercase name used in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Ok => "ok",
            ClientState::Failed => "failed",
            ClientState::Stale => "stale",
            ClientState::Never => "never",
        }
    }
}

/// An enrolled client as the admin sees it (`GET /api/clients`, `GET /api/clients/{id}`,
/// and the client's own `GET /api/client/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    /// The client's id.
    pub id: String,
    /// The name it enrolled with.
    pub name: String,
    /// Its domain.
    pub domain: Option<String>,
    /// The `IP:PORT` it serves at, when it enrolled as an update agent.
    pub agent_address: Option<String>,
    /// Whether `agent_address` is a registered update agent now.
    pub is_agent: bool,
    /// Unix seconds when it enrolled.
    pub enrolled_at: i64,
    /// The address it enrolled from.
    pub enrolled_from: String,
    /// Unix seconds of its last check-in.
    pub last_seen: Option<i64>,
    /// The IP it resolved its plan for (as it reported).
    pub reported_ip: Option<String>,
    /// The IP its last check-in came from.
    pub peer_ip: Option<String>,
    /// Installed version per category.
    pub installed: BTreeMap<Category, String>,
    /// The version of the agent program it runs, as its last check-in said.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// How its last update ended.
    pub last_outcome: Option<Outcome>,
    /// Its state now.
    pub state: ClientState,
    /// Its last update report (one client's record only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UpdateReport>,
    /// What its relay served, when it is an update agent that reported it (one client's
    /// record only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayReport>,
}

/// `GET /api/clients` query: `stale` alone (or `true`) keeps clients not seen within the
/// server's window; a number is a window in seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClientsQuery {
    /// Empty or `true`: the server's stale window; a number: a window in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
}

/// `GET /api/clients` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientsResponse {
    /// The clients, by name.
    pub clients: Vec<ClientView>,
}

/// `DELETE /api/clients/{id}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientDeleted {
    /// The client forgotten.
    pub deleted: String,
}

/// `POST /api/notify` body (the body itself is optional): what to update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// The categories; every category when empty or absent.
    #[serde(default)]
    pub categories: Vec<Category>,
}

/// `POST /api/notify` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotifyResponse {
    /// The notification id.
    pub id: i64,
    /// Whom it reached at once.
    pub fan_out: FanOut,
}

/// What a notify reached at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FanOut {
    /// Connected agents notified now.
    pub agents: usize,
    /// Connected clients, notified after the head start.
    pub clients: usize,
    /// The jitter hint given to clients.
    pub jitter_ms: u64,
    /// Delay before clients are told.
    pub clients_after_ms: u64,
    /// For how long the notice is still delivered to streams that (re)connect later
    /// (after a server restart, a dropped connection), seconds.
    pub replay_window_s: u64,
}

/// `GET /api/enrollment-token` answer: when the current token was made (never the token:
/// only its hash is stored). `id` is `null` when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentTokenInfo {
    /// The token's id.
    pub id: Option<String>,
    /// Unix seconds when it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// `POST /api/enrollment-token/rotate` answer: the new token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentToken {
    /// The token's id.
    pub id: String,
    /// The full enrollment token (`cascade-enroll-v1:cascade_enr_…:CA:SITE:UPSTREAM`, see
    /// [`crate::EnrollmentTokenText`]).
    pub token: String,
}
