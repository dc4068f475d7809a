//! The repository's naming rules: target names `CATEGORY/NAME/VERSION/FILE`, the custom
//! metadata every target carries, and where files live on disk and on a server.
//!
//! Every name segment is checked on construction (no `..`, no separators, no leading dot), so a
//! [`TargetPath`] can be joined to a directory without escaping it.

use std::fmt;
use std::str::FromStr;

use cascade_core::Category;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tough::schema::Target;

/// Sub-directory (and URL path) holding the signed metadata.
pub const METADATA_DIR: &str = "metadata";
/// Sub-directory (and URL path) holding the content-addressed targets.
pub const TARGETS_DIR: &str = "targets";
/// Key under a target's `custom` object where cascade keeps its [`TargetMeta`].
pub const CUSTOM_KEY: &str = "cascade";
/// Suffix that marks a delta target: `FILE.from-PREV.zst-patch`.
pub const DELTA_SUFFIX: &str = ".zst-patch";

/// A name segment was empty, too long, or held a character outside `[A-Za-z0-9._+~-]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A segment broke the naming rules.
    #[error("invalid {what} `{value}`: use 1-128 characters from A-Z a-z 0-9 . _ + ~ - not starting with `.`")]
    BadSegment {
        /// Which segment (name, version, file).
        what: &'static str,
        /// The refused value.
        value: String,
    },
    /// The target name did not have four `/`-separated parts or its category was unknown.
    #[error("invalid target name `{0}`: expected CATEGORY/NAME/VERSION/FILE")]
    BadTargetName(String),
}

impl LayoutError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            LayoutError::BadSegment { .. } => "layout.bad_segment",
            LayoutError::BadTargetName(_) => "layout.bad_target_name",
        }
    }
}

/// Check one path segment (a name, version or file name).
///
/// # Errors
/// [`LayoutError::BadSegment`] when the segment could be a path trick or is otherwise odd.
pub fn check_segment(what: &'static str, value: &str) -> Result<(), LayoutError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'~' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LayoutError::BadSegment {
            what,
            value: value.to_owned(),
        })
    }
}

/// A validated target name: `CATEGORY/NAME/VERSION/FILE`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetPath {
    category: Category,
    name: String,
    version: String,
    file: String,
}

impl TargetPath {
    /// Build a target path, checking every segment.
    ///
    /// # Errors
    /// [`LayoutError::BadSegment`] for a segment that breaks the rules.
    pub fn new(
        category: Category,
        name: &str,
        version: &str,
        file: &str,
    ) -> Result<Self, LayoutError> {
        check_segment("name", name)?;
        check_segment("version", version)?;
        check_segment("file", file)?;
        Ok(Self {
            category,
            name: name.to_owned(),
            version: version.to_owned(),
            file: file.to_owned(),
        })
    }

    /// The category.
    pub fn category(&self) -> Category {
        self.category
    }
    /// The content name (e.g. `scan-engine`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The version string.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// The file name inside the version.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The directory part, `CATEGORY/NAME/VERSION`.
    pub fn dir(&self) -> String {
        format!("{}/{}/{}", self.category, self.name, self.version)
    }

    /// Where the content-addressed copy lives under `targets/` (TUF consistent snapshot:
    /// `CATEGORY/NAME/VERSION/SHA256.FILE`).
    pub fn stored_path(&self, sha256_hex: &str) -> String {
        format!("{}/{}.{}", self.dir(), sha256_hex, self.file)
    }

    /// The name of the delta target that turns `from`'s copy of this file into this one.
    ///
    /// # Errors
    /// [`LayoutError::BadSegment`] if the resulting file name is too long.
    pub fn delta_from(&self, from: &str) -> Result<TargetPath, LayoutError> {
        let file = format!("{}.from-{}{}", self.file, from, DELTA_SUFFIX);
        TargetPath::new(self.category, &self.name, &self.version, &file)
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dir(), self.file)
    }
}

impl FromStr for TargetPath {
    type Err = LayoutError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let [cat, name, version, file] = parts.as_slice() else {
            return Err(LayoutError::BadTargetName(s.to_owned()));
        };
        let category: Category = cat
            .parse()
            .map_err(|_| LayoutError::BadTargetName(s.to_owned()))?;
        TargetPath::new(category, name, version, file)
    }
}

/// What cascade records in each target's `custom.cascade` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetMeta {
    /// The version this target belongs to.
    pub version: String,
    /// Publish sequence number of that version within `CATEGORY/NAME`; larger is newer.
    pub seq: u64,
    /// For a delta: the version it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_from: Option<String>,
    /// For a delta: the full file (name inside the version) it reproduces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_of: Option<String>,
    /// A program build published as a hotfix (`docs/operating.md#programs-and-hotfixes`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hotfix: bool,
}

impl TargetMeta {
    /// Whether this target is a delta rather than a full file.
    pub fn is_delta(&self) -> bool {
        self.delta_from.is_some()
    }
}

/// One full (not delta) target, as [`full_targets`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its name's parts.
    pub path: TargetPath,
    /// Bytes.
    pub length: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// cascade's custom metadata.
    pub meta: TargetMeta,
}

/// Every full target of `category`, by name, newest (highest publish sequence) first.
pub fn full_targets(targets: &tough::schema::Targets, category: Category) -> Vec<Listed> {
    let mut out: Vec<Listed> = targets
        .targets
        .iter()
        .filter_map(|(tn, t)| {
            let path = tn.raw().parse::<TargetPath>().ok()?;
            let meta = target_meta(t)?;
            (path.category() == category && !meta.is_delta()).then(|| Listed {
                path,
                length: t.length,
                sha256: hex::encode(&t.hashes.sha256),
                meta,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (a.path.name(), std::cmp::Reverse(a.meta.seq), a.path.file()).cmp(&(
            b.path.name(),
            std::cmp::Reverse(b.meta.seq),
            b.path.file(),
        ))
    });
    out
}

/// Versions of one `CATEGORY/NAME`, newest (highest publish sequence) first.
pub fn versions_of(
    targets: &tough::schema::Targets,
    category: Category,
    name: &str,
) -> Vec<(u64, String)> {
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    for (tn, t) in &targets.targets {
        let Ok(path) = tn.raw().parse::<TargetPath>() else {
            continue;
        };
        if path.category() != category || path.name() != name {
            continue;
        }
        if let Some(m) = target_meta(t) {
            seen.insert(m.seq, m.version);
        }
    }
    seen.into_iter().rev().collect()
}

/// The cascade metadata of a target, if it has any.
pub fn target_meta(t: &Target) -> Option<TargetMeta> {
    t.custom
        .get(CUSTOM_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// cascade's metadata in a verified target's `custom` object, if it has any.
pub fn custom_meta(custom: Option<&serde_json::Value>) -> Option<TargetMeta> {
    custom
        .and_then(|c| c.get(CUSTOM_KEY))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Target names round-trip and path tricks (`..`, absolute, separators, dot files) are refused.
    #[test]
    fn names_are_checked() {
        let t: TargetPath = "components/engine/1.2.3/data.json".parse().unwrap();
        assert_eq!(t.to_string(), "components/engine/1.2.3/data.json");
        assert_eq!(t.stored_path("ab"), "components/engine/1.2.3/ab.data.json");
        for bad in [
            "../../etc/x",
            "/etc/passwd",
            "components/engine/../x",
            "components/engine/1/.hidden",
            "components/a/b/c/d",
            "patterns/engine/1/x",
            "components/engine/1/a\\b",
            "components//1/x",
        ] {
            assert!(bad.parse::<TargetPath>().is_err(), "{bad} accepted");
        }
        let d = t.delta_from("1.2.2").unwrap();
        assert_eq!(d.file(), "data.json.from-1.2.2.zst-patch");
    }
}
