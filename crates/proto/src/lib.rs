//! cascade's HTTP API as types: every request body, response body, query and event payload
//! the server's admin and client APIs send or accept, plus the one error body. The server
//! takes and returns these; the CLI, the agent, the console and the tests build and read
//! them instead of hand-written JSON. Each derives `utoipa::ToSchema`, so
//! `/api/openapi.json` is generated from the same definitions that are on the wire.
//!
//! Types the policy file and the wire share (the policy document, a source-list entry, a
//! check-in report) live in `cascade-core` and are re-exported here.

pub mod accounts;
/// Input limits of the request types (`docs/api.md#limits`).
pub use cascade_core::limits;
pub mod clients;
pub mod delegations;
pub mod domains;
pub mod enroll;
pub mod enroll_token;
pub mod error;
pub mod events;
pub mod fleet;
pub mod ops;
pub mod policy;
pub mod programs;
pub mod rollouts;
pub mod sources;
pub mod versions;

pub use cascade_core::report::{
    Attempt, CheckIn, Outcome, RelayReport, ServedClient, UpdateReport,
};
pub use cascade_core::{
    ActiveUpdateFallback, AgentDoc, AgentSource, AgentsSettings, Category, Domain, DomainSettings,
    EntryDoc, EntryId, Fallback, Mode, PolicyDoc, PrivilegeOverrides, Privileges,
    PublishedSettings, UpdateWindow,
};

pub use accounts::{
    AuditEntry, AuditResponse, EnrollmentTokenView, EnrollmentTokensResponse,
    IssuedEnrollmentToken, IssuedToken, NewEnrollmentToken, NewToken, NewUser, RestoreRequest,
    TokenRevoked, TokenView, TokensResponse, UserDeleted, UserPatch, UserRole, UserView,
    UsersResponse,
};
pub use clients::{
    ClientDeleted, ClientState, ClientView, ClientsQuery, ClientsResponse, EnrollmentToken,
    EnrollmentTokenInfo, FanOut, NotifyRequest, NotifyResponse,
};
pub use delegations::{
    Delegated, DelegatedFile, DelegatedMetadata, DelegatedPublished, NewDelegation,
};
pub use domains::{DomainSettingsEntry, DomainSettingsList, DomainSettingsView};
pub use enroll::{CheckInResponse, ClientIdentity, ClientPolicy, EnrollRequest, Enrolled};
pub use enroll_token::{EnrollTokenError, EnrollmentTokenText, Sha256Digest};
pub use error::{ErrorBody, ErrorDetail};
pub use events::{Hello, Notice, Role, Stage, StreamEvent};
pub use fleet::{
    AffectedClient, CategoryCompliance, Compliance, ComplianceResponse, FleetHealth, HealthLevel,
    SourceHealth, SourceKind, VersionCount,
};
pub use ops::{Health, HealthStatus, MirrorOutcome, MirrorReport, MirrorState, MirrorStatus};
pub use policy::{
    AgentAdded, AgentClient, AgentRemoved, AgentView, AgentsResponse, DomainDeleted, DomainUpdated,
    DomainView, DomainsResponse, FallbackPatch, PolicyResponse, Settings, SettingsPatch,
};
pub use programs::{ProgramUpload, ProgramView, ProgramsResponse};
pub use rollouts::{
    NewRollout, RingSpec, RingState, RingView, RolloutAction, RolloutState, RolloutView,
    RolloutsResponse,
};
pub use sources::{
    DeleteSources, Direction, MoveSource, PlanView, ResolveQuery, ResolveResponse, SourceBody,
    SourcesResponse, StepView,
};
pub use versions::RepoVersions;
