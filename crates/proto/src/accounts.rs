//! Bodies of the account routes (`/api/users`, `/api/tokens`): named users with a role and
//! an argon2id password, and their API tokens (each with an optional expiry, listed and
//! revoked by id; the token text is shown once when it is made).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a user may do (`docs/operating.md#users-roles-and-tokens`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    /// Reads everything.
    Viewer,
    /// Reads, runs what-if resolutions and Notify All Clients.
    Operator,
    /// Everything, including users, tokens and every policy write.
    Admin,
}

impl UserRole {
    /// The lowercase name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Viewer => "viewer",
            UserRole::Operator => "operator",
            UserRole::Admin => "admin",
        }
    }

    /// The role named `text` (`viewer`, `operator`, `admin`).
    pub fn parse(text: &str) -> Option<UserRole> {
        match text {
            "viewer" => Some(UserRole::Viewer),
            "operator" => Some(UserRole::Operator),
            "admin" => Some(UserRole::Admin),
            _ => None,
        }
    }

    /// Whether this role includes everything `needed` may do.
    pub fn allows(self, needed: UserRole) -> bool {
        self >= needed
    }
}

/// A user as listed (never the password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// The user name.
    pub name: String,
    /// The role.
    pub role: UserRole,
    /// Unix seconds when the user was made.
    pub created_at: i64,
}

/// `GET /api/users` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsersResponse {
    /// Every user, by name.
    pub users: Vec<UserView>,
}

/// `POST /api/users` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1 to 64 characters: letters, digits, `.`, `_`, `-`.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// The role.
    pub role: UserRole,
    /// At least 12 characters.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
}

/// `PATCH /api/users/{name}` body: what to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<UserRole>,
    /// A new password (at least 12 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// `DELETE /api/users/{name}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserDeleted {
    /// The user's name; its tokens were revoked with it.
    pub deleted: String,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The token's id (the part after `cascade_adm_`).
    pub id: String,
    /// The user it acts as.
    pub user: String,
    /// What it is for.
    pub label: String,
    /// Unix seconds when it was made.
    pub created_at: i64,
    /// Unix seconds after which it is refused; `null` never expires.
    pub expires_at: Option<i64>,
    /// Unix seconds when it was revoked; `null` while live.
    pub revoked_at: Option<i64>,
}

/// `GET /api/tokens` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokensResponse {
    /// The caller's tokens (an admin sees every user's), newest first.
    pub tokens: Vec<TokenView>,
}

/// `POST /api/tokens` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for (1 to 200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub label: String,
    /// The user it acts as; only an admin may name another user. Default: the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Seconds from now until it is refused; absent never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<i64>,
}

/// `POST /api/tokens` answer: the token text is shown once; only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// The token as listed.
    pub info: TokenView,
    /// The bearer token (`cascade_adm_…`).
    pub token: String,
}

/// `DELETE /api/tokens/{id}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenRevoked {
    /// The token's id; it is refused from now on.
    pub revoked: String,
}

/// An enrollment token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentTokenView {
    /// The token's id (the part after `cascade_enr_`).
    pub id: String,
    /// Its name (`enrollment` for the one made at first start and by rotation).
    pub name: String,
    /// Unix seconds when it was made.
    pub created_at: i64,
    /// Unix seconds after which it is refused; `null` never expires.
    pub expires_at: Option<i64>,
    /// How many enrollments it allows; `null` is unlimited.
    pub max_uses: Option<i64>,
    /// How many clients enrolled with it.
    pub uses: i64,
    /// Whether a client enrolling with it becomes an approved update agent (for its
    /// `agent_address`), without an admin's approval.
    pub agent: bool,
    /// Unix seconds when it was revoked; `null` while live.
    pub revoked_at: Option<i64>,
}

/// `GET /api/enrollment-tokens` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentTokensResponse {
    /// Every enrollment token, newest first.
    pub tokens: Vec<EnrollmentTokenView>,
}

/// `POST /api/enrollment-tokens` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollmentToken {
    /// Its name (1 to 200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Seconds from now until it is refused; absent never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<i64>,
    /// How many enrollments it allows (at least 1); absent is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<i64>,
    /// An agent enrollment token: clients enrolling with it are approved update agents.
    #[serde(default)]
    pub agent: bool,
}

/// `POST /api/enrollment-tokens` answer: the token text is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedEnrollmentToken {
    /// The token as listed.
    pub info: EnrollmentTokenView,
    /// The full enrollment token (`cascade-enroll-v1:cascade_enr_…:CA:SITE:UPSTREAM`, see
    /// [`crate::EnrollmentTokenText`]).
    pub token: String,
}

/// One audit record: a change, or a refused admin action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// `user:<name>`, or `-` when the credential did not verify.
    pub actor: String,
    /// The IP address the request came from.
    pub source: String,
    /// The HTTP method.
    pub method: String,
    /// The request path (console forms too).
    pub path: String,
    /// The answer's HTTP status (4xx: refused, nothing changed).
    pub status: u16,
    /// When the policy changed: its changed top-level parts before.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// When the policy changed: the same parts after.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// `GET /api/audit` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditResponse {
    /// The newest records first.
    pub entries: Vec<AuditEntry>,
}

/// `POST /api/policy/restore` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The earlier policy revision to make current again (as a new revision).
    pub revision: i64,
}
