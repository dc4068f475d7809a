//! Bodies of the delegated-build routes (`docs/api.md#delegated-program-builds`,
//! `docs/operating.md#delegated-program-builds`): a build team whose key the server does not
//! hold uploads a build's content, then its delegated role's next version signed offline; the
//! server checks it against the site repository's delegation and publishes it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT /api/delegations/{role}/files/{sha256}` answer: content staged for the role's next
/// signed version (published only when that version lists it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegatedFile {
    /// The delegated role.
    pub role: String,
    /// The content's SHA-256, lowercase hex.
    pub sha256: String,
    /// Bytes.
    pub length: u64,
}

/// `POST /api/delegations/{role}` answer: the role's signed version published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegatedPublished {
    /// The delegated role.
    pub role: String,
    /// The version of the role now served.
    pub version: u64,
    /// The targets it added (`programs/NAME/VERSION/FILE`).
    pub added: Vec<String>,
}

/// `POST /api/delegations/{role}` body: the role's next version as TUF metadata, signed
/// offline by the build team (`cascade publish --delegated-key` makes it). The server checks
/// the signatures over `signed` exactly as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DelegatedMetadata {
    /// The TUF targets role (`_type`, `version`, `expires`, `targets`, …).
    #[schema(value_type = Object)]
    pub signed: serde_json::Value,
    /// Its signatures (`keyid`, `sig`).
    #[schema(value_type = Vec<Object>)]
    pub signatures: Vec<serde_json::Value>,
}
