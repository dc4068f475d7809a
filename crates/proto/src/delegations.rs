//! Bodies of the delegated-build routes (`docs/api.md#delegated-program-builds`,
//! `docs/operating.md#delegated-program-builds`): the operator delegates program paths to a
//! build team's keys (`PUT /api/delegations/{role}`); a build team whose key the server does
//! not hold uploads a build's content, then its delegated role's next version signed offline;
//! the server checks it against the site repository's delegation and publishes it.

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

/// `PUT /api/delegations/{role}` body: the site repository's targets role delegates `paths` to
/// the role, whose versions `threshold` of `keys` must sign (`cascade repo delegate --server`
/// sends it). Replaces the role's keys and paths when it is delegated already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDelegation {
    /// The team's public keys as TUF key objects (`keytype`, `scheme`, `keyval`), as
    /// `cascade repo team-key` writes them to `FILE.pub.json`.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
    /// How many of the keys must sign (1 to the number of keys).
    pub threshold: u64,
    /// Target path patterns, each `programs/NAME/VERSION/FILE` with shell-style wildcards per
    /// segment (e.g. `programs/scanner/*/*`).
    pub paths: Vec<String>,
}

/// `PUT /api/delegations/{role}` answer: the delegation as the site repository now signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delegated {
    /// The delegated role.
    pub role: String,
    /// How many keys it has.
    pub keys: u64,
    /// How many of them must sign.
    pub threshold: u64,
    /// The delegated path patterns.
    pub paths: Vec<String>,
}
