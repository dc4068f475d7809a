//! Bodies of the client API (`/api/client/…`): enrollment, the policy a client resolves
//! locally, and check-in (whose body, [`cascade_core::report::CheckIn`], is shared with
//! the agent that builds it).

use std::collections::BTreeMap;

use cascade_core::PolicyDoc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/client/enroll` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The client's name, 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Its domain (empty means none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Set by an update agent: the `IP:PORT` it serves at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_address: Option<String>,
}

/// `POST /api/client/enroll` answer: the credential is shown once; only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Enrolled {
    /// The new client's id.
    pub client_id: String,
    /// Its credential (`cascade_cli_…`).
    pub credential: String,
    /// Every replica's base URL, when the server advertises its replicas
    /// (`cascade server --replica-url`): the agent stores them and fails over between them
    /// (`docs/operating.md#replicas`). Absent: none advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
}

/// `GET /api/client/policy` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientPolicy {
    /// The revision of this answer (also the `ETag`): the policy revision plus the rollout
    /// revision, so a change of either changes it (both only grow). Without rollouts it is the
    /// policy revision.
    pub revision: i64,
    /// The policy, to resolve locally.
    pub policy: PolicyDoc,
    /// Who the server knows the caller as.
    pub client: ClientIdentity,
    /// The revision of the rollouts (`docs/operating.md#rollouts`), 0 when there is none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rollout_revision: i64,
    /// Per program being rolled out, the version this client may install (`null`: none, keep
    /// what is installed). Programs not named here: the newest version. Only a choice among
    /// the signed targets the client verified, never a reason to accept content.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub program_pins: BTreeMap<String, Option<String>>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The caller as enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientIdentity {
    /// Its id.
    pub id: String,
    /// Its domain.
    pub domain: Option<String>,
    /// The `IP:PORT` it serves at, when it enrolled as an update agent.
    pub agent_address: Option<String>,
}

/// `POST /api/client/checkin` answer: the current revision of the client's policy answer
/// (policy revision plus rollout revision, as [`ClientPolicy::revision`]), so the client
/// knows whether to refetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckInResponse {
    /// The revision of the client's policy answer now.
    pub policy_revision: i64,
}
