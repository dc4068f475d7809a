//! Payloads of the client event stream `GET /api/client/events` (server-sent events):
//! first `event: hello` ([`Hello`]), then `event: notify` ([`Notice`]) for each Notify All
//! Clients.

use cascade_core::Category;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::versions::RepoVersions;

/// Who listens on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A registered update agent (told first).
    Agent,
    /// An ordinary client.
    Client,
}

impl Role {
    /// `agent` or `client`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Client => "client",
        }
    }
}

/// `event: hello`, the stream's first event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hello {
    /// The caller's id.
    pub client_id: String,
    /// Whether it listens as an agent or a client.
    pub role: Role,
    /// The policy revision now.
    pub revision: i64,
}

/// Which stage of a notify's fan-out an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Update agents, told at once.
    Agents,
    /// Clients, told after the agents' head start.
    Clients,
}

/// `event: notify`: one Notify All Clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Notice {
    /// Notification id (increasing; also the event id).
    pub id: i64,
    /// What to update; every category when the admin did not narrow it.
    pub categories: Vec<Category>,
    /// Which stage of the fan-out this is.
    pub stage: Stage,
    /// Start within a random delay in `[0, jitter_ms)`.
    pub jitter_ms: u64,
    /// Unix seconds when the admin asked.
    pub issued_at: i64,
    /// The repository versions the server serves as the notice is sent: the client's floor
    /// for the update it starts (`docs/architecture.md#run-time`).
    #[serde(default)]
    pub versions: RepoVersions,
}

/// Any event of the stream, by its `event:` name: `hello` then `notify`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StreamEvent {
    /// `event: hello`.
    Hello(Hello),
    /// `event: notify`.
    Notify(Notice),
}
