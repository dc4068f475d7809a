//! Bodies of the rollout routes (`docs/operating.md#rollouts`): a program version goes out in
//! rings (named clients, IP ranges, a percentage of the fleet), each promoted after its soak
//! time while the failure reports of its clients stay at or under its threshold, halted
//! otherwise. Clients outside the rings reached keep the previous version: the server tells
//! each client which version of a rolled-out program it may install
//! ([`crate::ClientPolicy::program_pins`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Its current ring is soaking; it is promoted when the soak time is over.
    Rolling,
    /// Stopped in its current ring (too many failures, or by hand); clients of the rings
    /// reached keep the new version, the others the previous one.
    Halted,
    /// Every ring was promoted: every client may install the version.
    Completed,
    /// Every client is pinned to the previous version again.
    RolledBack,
}

impl RolloutState {
    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Rolling => "rolling",
            RolloutState::Halted => "halted",
            RolloutState::Completed => "completed",
            RolloutState::RolledBack => "rolled_back",
        }
    }

    /// The state of a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            RolloutState::Rolling,
            RolloutState::Halted,
            RolloutState::Completed,
            RolloutState::RolledBack,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one ring stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RingState {
    /// Not reached yet.
    Waiting,
    /// The current ring, soaking.
    Soaking,
    /// Soaked and promoted.
    Promoted,
    /// The current ring of a halted rollout.
    Halted,
}

/// One ring: who is in it (a client matching any of `clients`, `ip_ranges` or `percent`),
/// how long it soaks and how many failing clients it tolerates. Rings are cumulative: once
/// ring 2 is reached, the clients of rings 1 and 2 may install the version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RingSpec {
    /// The ring's name (`canary`, `ring-1`), unique in the rollout.
    pub name: String,
    /// Clients by id or name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<String>,
    /// IP ranges (`10.1.0.0/16`, or one address); a client's reported IP, else the IP its
    /// check-in came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<String>,
    /// A share of the fleet, 0 to 100 %, by a stable hash of the client's id (a client stays
    /// in its ring; 1 % of the fleet is also in every larger share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    pub percent: Option<f64>,
    /// Seconds the ring soaks before it is promoted.
    #[serde(default)]
    pub soak_secs: u64,
    /// Failing clients (of the rings reached) tolerated; one more halts the rollout.
    #[serde(default)]
    pub max_failures: u64,
}

/// `POST /api/rollouts` body: roll `program` `version` out in `rings`. The version may be
/// uploaded before or after: start the rollout first and no client outside ring 1 ever
/// sees the new version as its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    /// The program (`programs/NAME/...`).
    pub program: String,
    /// The version rolled out.
    pub version: String,
    /// The version clients outside the rings keep; by default the version the last rollout
    /// of the program left everyone on, else the newest published version before this one
    /// (none: clients outside the rings install nothing of the program).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// The rings, in order (1 to 20).
    pub rings: Vec<RingSpec>,
}

/// One ring of a rollout as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RingView {
    /// 1-based position.
    pub number: u32,
    /// The ring as specified.
    pub spec: RingSpec,
    /// Where it stands.
    pub state: RingState,
    /// Enrolled clients in this ring (and no earlier one).
    pub clients: u64,
    /// Of those, how many report the version installed.
    pub updated: u64,
    /// Of those, how many report a failure with the version.
    pub failures: u64,
    /// Up to 20 of the failing clients' ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

/// One rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutView {
    /// Its id.
    pub id: i64,
    /// The program.
    pub program: String,
    /// The version rolled out.
    pub version: String,
    /// The version clients outside the rings keep (none: they install nothing of it).
    pub previous_version: Option<String>,
    /// Where it stands.
    pub state: RolloutState,
    /// The current ring, 1-based.
    pub ring: u32,
    /// Unix seconds when the current ring started soaking.
    pub ring_started_at: i64,
    /// When the current ring's soak is over (unix seconds).
    pub promote_at: i64,
    /// Why it was halted, rolled back or promoted by hand.
    pub reason: Option<String>,
    /// The rings.
    pub rings: Vec<RingView>,
    /// Unix seconds when it started.
    pub created_at: i64,
    /// Who started it (`user:<name>`).
    pub created_by: String,
    /// Unix seconds of its last change.
    pub updated_at: i64,
}

/// `GET /api/rollouts` answer: newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutsResponse {
    /// The rollouts.
    pub rollouts: Vec<RolloutView>,
}

/// Body of `POST /api/rollouts/{id}/promote|halt|rollback` (optional): why, for the audit
/// log and the rollout's view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutAction {
    /// Why (at most 500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
