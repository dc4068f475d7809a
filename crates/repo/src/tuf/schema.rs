//! Typed views of the timestamp, snapshot and targets roles. `tough`'s schema serves for root
//! and for delegations (keys, key IDs, thresholds, path sets); these views exist because
//! `tough`'s `Hashes` requires a sha256 entry and its `TargetName` rewrites names, while the
//! specification allows any hash algorithms and compares target paths as given
//! (`docs/architecture.md#trust-model`). Signatures are checked over the raw JSON, never over
//! these views.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use serde::Deserialize;
use serde_json::Value;

/// What timestamp and snapshot say about another metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MetaFile {
    /// Its version.
    pub version: NonZeroU64,
    /// Its length in bytes, when listed.
    #[serde(default)]
    pub length: Option<u64>,
    /// Its hashes (algorithm → hex), when listed.
    #[serde(default)]
    pub hashes: Option<BTreeMap<String, String>>,
}

/// The timestamp role.
#[derive(Debug, Clone, Deserialize)]
pub struct TimestampRole {
    /// Its version.
    pub version: NonZeroU64,
    /// Its expiry.
    pub expires: jiff::Timestamp,
    /// `snapshot.json` → what the current snapshot is.
    pub meta: BTreeMap<String, MetaFile>,
}

impl TimestampRole {
    /// The snapshot it lists.
    pub fn snapshot_meta(&self) -> Option<&MetaFile> {
        self.meta.get("snapshot.json")
    }
}

/// The snapshot role.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotRole {
    /// Its version.
    pub version: NonZeroU64,
    /// Its expiry.
    pub expires: jiff::Timestamp,
    /// `ROLE.json` → the current version of each targets role.
    pub meta: BTreeMap<String, MetaFile>,
}

/// One target file as a targets role signs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TargetFile {
    /// Its length in bytes.
    pub length: u64,
    /// Its hashes (algorithm → hex); every one is checked.
    pub hashes: BTreeMap<String, String>,
    /// Application data.
    #[serde(default)]
    pub custom: Option<Value>,
}

impl TargetFile {
    /// Its SHA-256, when listed and valid hex.
    pub fn sha256(&self) -> Option<Vec<u8>> {
        hex::decode(self.hashes.get("sha256")?).ok()
    }

    /// The hash that names its content-addressed copy: sha256 when listed, else the first.
    pub fn name_hash(&self) -> Option<&str> {
        self.hashes
            .get("sha256")
            .or_else(|| self.hashes.values().next())
            .map(String::as_str)
    }
}

/// A targets role (top-level or delegated).
#[derive(Debug, Clone, Deserialize)]
pub struct TargetsRole {
    /// Its version.
    pub version: NonZeroU64,
    /// Its expiry.
    pub expires: jiff::Timestamp,
    /// Target path → file.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetFile>,
    /// The roles it delegates to, when any.
    #[serde(default)]
    pub delegations: Option<tough::schema::Delegations>,
}
