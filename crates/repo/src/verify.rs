//! Whole-repository verification as a client would do it: load the metadata from a URL with a
//! given trusted root and a fresh trust state, then fetch and hash-check every target.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::client::{sha256_of, target_url, RepoClient, RepoSource};
use crate::failure::FailureReason;
use crate::layout::custom_meta;
use crate::layout::{TargetPath, TARGETS_DIR};
use crate::save::{check_remote, fetch_verified};
use crate::transport::TransportLimits;
use crate::tuf::{TargetFile, TrustedSet};

/// One problem found with a target.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The target name.
    pub target: String,
    /// Stable code of the failure.
    pub code: &'static str,
    /// Human description.
    pub message: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The URL checked.
    pub url: String,
    /// Version of each top-level role.
    pub versions: BTreeMap<String, u64>,
    /// Expiry of each top-level role.
    pub expires: BTreeMap<String, Timestamp>,
    /// category → name → versions, newest first.
    pub contents: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Number of targets fetched and checked.
    pub targets_checked: usize,
    /// Total bytes checked.
    pub bytes_checked: u64,
    /// Deltas applied to their base version and found to reproduce the signed full file
    /// (deltas whose base version was pruned are not counted).
    pub deltas_checked: usize,
    /// Targets that failed their check (empty when the repository is sound).
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether every check passed.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verify the repository at `source` against `trusted_root`.
///
/// # Errors
/// The reason the metadata itself was refused; per-target failures are in
/// [`VerifyReport::problems`].
pub async fn verify(
    trusted_root: &[u8],
    source: &RepoSource,
    limits: TransportLimits,
) -> Result<VerifyReport, FailureReason> {
    let state = tempfile::tempdir().map_err(|e| FailureReason::Local(e.to_string()))?;
    let client = RepoClient::new(trusted_root.to_vec(), state.path(), limits)?;
    let set = client.load(source).await?;
    let (versions, expires) = role_versions(&set);
    let base = Url::parse(&format!(
        "{}/{TARGETS_DIR}/",
        source.base.as_str().trim_end_matches('/')
    ))
    .map_err(|e| FailureReason::Local(e.to_string()))?;
    let mut seqs: BTreeMap<(String, String), BTreeMap<u64, String>> = BTreeMap::new();
    let mut report = VerifyReport {
        url: source.base.to_string(),
        versions,
        expires,
        contents: BTreeMap::new(),
        targets_checked: 0,
        bytes_checked: 0,
        deltas_checked: 0,
        problems: Vec::new(),
    };
    let all: BTreeMap<String, TargetFile> = set
        .top_target_files()
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    for (tn, t) in &all {
        let mut problem = |code: &'static str, message: String| {
            report.problems.push(Problem {
                target: tn.clone(),
                code,
                message,
            });
        };
        let Ok(path) = tn.parse::<TargetPath>() else {
            problem(
                "repo.bad_target_name",
                "not CATEGORY/NAME/VERSION/FILE".to_owned(),
            );
            continue;
        };
        let Some(meta) = custom_meta(t.custom.as_ref()) else {
            problem(
                "repo.no_custom_meta",
                "no custom.cascade metadata".to_owned(),
            );
            continue;
        };
        if meta.version != path.version() {
            problem(
                "repo.version_mismatch",
                format!("custom version {} differs from name", meta.version),
            );
        }
        seqs.entry((path.category().to_string(), path.name().to_owned()))
            .or_default()
            .insert(meta.seq, meta.version.clone());
        let result = match sha256_of(t).and_then(|sha| Ok((target_url(&base, &path, &sha)?, sha))) {
            Ok((url, sha)) => check_remote(client.transport(), url, t.length, &sha)
                .await
                .map_err(FailureReason::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                report.targets_checked += 1;
                report.bytes_checked += t.length;
            }
            Err(e) => problem(e.code(), e.to_string()),
        }
    }
    check_deltas(&client, &base, &all, &mut report).await;
    for ((cat, name), by_seq) in seqs {
        report
            .contents
            .entry(cat)
            .or_default()
            .insert(name, by_seq.into_values().rev().collect());
    }
    Ok(report)
}

/// The version and expiry of each top-level role `set` holds.
fn role_versions(set: &TrustedSet) -> (BTreeMap<String, u64>, BTreeMap<String, Timestamp>) {
    let mut versions = BTreeMap::new();
    let mut expires = BTreeMap::new();
    let root = &set.root().meta;
    let roles = [
        ("root", Some((root.version, root.expires))),
        (
            "targets",
            set.top_targets().map(|t| (t.meta.version, t.meta.expires)),
        ),
        (
            "snapshot",
            set.snapshot().map(|t| (t.meta.version, t.meta.expires)),
        ),
        (
            "timestamp",
            set.timestamp().map(|t| (t.meta.version, t.meta.expires)),
        ),
    ];
    for (role, known) in roles {
        if let Some((version, expiry)) = known {
            versions.insert(role.to_owned(), version.get());
            expires.insert(role.to_owned(), expiry);
        }
    }
    (versions, expires)
}

/// Apply every delta to its base version's full file and compare with the signed full file.
async fn check_deltas(
    client: &RepoClient,
    base: &Url,
    all: &BTreeMap<String, TargetFile>,
    report: &mut VerifyReport,
) {
    let find = |p: &TargetPath| all.get(&p.to_string());
    for (tn, t) in all {
        let (Ok(path), Some(meta)) = (tn.parse::<TargetPath>(), custom_meta(t.custom.as_ref()))
        else {
            continue;
        };
        let (Some(from), Some(of)) = (meta.delta_from, meta.delta_of) else {
            continue;
        };
        let (Ok(old_path), Ok(new_path)) = (
            TargetPath::new(path.category(), path.name(), &from, &of),
            TargetPath::new(path.category(), path.name(), path.version(), &of),
        ) else {
            continue;
        };
        let (Some(old_t), Some(new_t)) = (find(&old_path), find(&new_path)) else {
            continue;
        };
        let fetch = |p: &TargetPath, t: &TargetFile| {
            let sha = sha256_of(t);
            let len = t.length;
            let url = sha
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|s| target_url(base, p, s));
            async move {
                fetch_verified(client.transport(), url?, len, &sha?)
                    .await
                    .map_err(FailureReason::from)
            }
        };
        let result = match (fetch(&old_path, old_t).await, fetch(&path, t).await) {
            (Ok(old), Ok(d)) => crate::delta::apply(&old, &d, new_t.length)
                .ok()
                .filter(|out| new_t.hashes.get("sha256") == Some(&crate::fsutil::sha256_hex(out))),
            _ => None,
        };
        if result.is_some() {
            report.deltas_checked += 1;
        } else {
            report.problems.push(Problem {
                target: tn.clone(),
                code: "repo.delta_mismatch",
                message: format!("does not turn {old_path} into {new_path}"),
            });
        }
    }
}

use url::Url;
