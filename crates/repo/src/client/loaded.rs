//! A [`Loaded`] repository: what one source's verified metadata offers (every signed target
//! with a name cascade can use, the newest version of each `CATEGORY/NAME`) and saving a
//! version's files through verified paths, from a signed delta against the installed version
//! when one fits, else whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cascade_core::Category;
use url::Url;

use super::{Fetched, FetchedFile, Installed, RepoSource};
use crate::delta;
use crate::failure::FailureReason;
use crate::layout::{custom_meta, TargetMeta, TargetPath, TARGETS_DIR};
use crate::save::{fetch_verified, save_resumable, write_verified};
use crate::transport::SourceTransport;
use crate::tuf::{TargetFile, TrustedSet};

/// One signed target of a [`Loaded`] repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFile {
    /// Its name.
    pub path: TargetPath,
    /// Where its content-addressed copy is (below the source's `targets/`).
    pub url: Url,
    /// Its signed length.
    pub length: u64,
    /// Its signed SHA-256.
    pub sha256: Vec<u8>,
    /// cascade's metadata of it, when it has any.
    pub meta: Option<TargetMeta>,
}

impl SignedFile {
    /// Whether it is a delta rather than a full file.
    pub fn is_delta(&self) -> bool {
        self.meta.as_ref().is_some_and(TargetMeta::is_delta)
    }
}

/// The newest version of one `CATEGORY/NAME` in a [`Loaded`] repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    /// The category.
    pub category: Category,
    /// The content name.
    pub name: String,
    /// The newest version (highest publish sequence).
    pub version: String,
    /// Its signed files, full files and deltas.
    pub files: Vec<SignedFile>,
}

/// A repository whose metadata one source delivered and the client verified: what it offers,
/// and saving it, with no further metadata fetch.
#[derive(Debug, Clone)]
pub struct Loaded {
    source: RepoSource,
    transport: SourceTransport,
    timestamp_version: u64,
    files: Vec<SignedFile>,
    /// The first signed name that is not `CATEGORY/NAME/VERSION/FILE`, if any.
    unsafe_name: Option<String>,
    /// Where partial downloads are kept; the stage itself when `None`.
    pub(super) partial_dir: Option<PathBuf>,
    /// Delegated roles that could not be trusted.
    refused: Vec<crate::tuf::RefusedRole>,
}

impl Loaded {
    /// The repository `set` (loaded through `source`) describes, fetched through `transport`.
    pub(super) fn new(
        source: RepoSource,
        transport: SourceTransport,
        set: &TrustedSet,
    ) -> Result<Self, FailureReason> {
        let base = source.join(TARGETS_DIR)?;
        let mut files = Vec::new();
        let mut unsafe_name = None;
        for (name, t) in &set.resolved_targets() {
            // cascade's layout needs a sha256 (it names the content-addressed copy).
            let (Ok(path), Some(sha256)) = (name.parse::<TargetPath>(), t.sha256()) else {
                unsafe_name.get_or_insert_with(|| name.clone());
                continue;
            };
            let Ok(url) = target_url(&base, &path, &sha256) else {
                unsafe_name.get_or_insert_with(|| name.clone());
                continue;
            };
            files.push(SignedFile {
                path,
                url,
                length: t.length,
                sha256,
                meta: custom_meta(t.custom.as_ref()),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            source,
            transport,
            timestamp_version: set.timestamp().map_or(0, |t| t.meta.version.get()),
            files,
            unsafe_name,
            partial_dir: None,
            refused: set.refused_delegations().to_vec(),
        })
    }

    /// The source it was loaded from.
    pub fn source(&self) -> &RepoSource {
        &self.source
    }

    /// The version of the timestamp it was loaded with.
    pub fn timestamp_version(&self) -> u64 {
        self.timestamp_version
    }

    /// Every signed target (those with a name cascade can use), in name order.
    pub fn files(&self) -> &[SignedFile] {
        &self.files
    }

    /// Why a delegated role that may hold targets of `category` could not be trusted (a
    /// signature not of the delegated keys, a wrong version, an expired role), if one could
    /// not: the specification makes that a failure of the update rather than a silent gap
    /// (`docs/architecture.md#trust-model`). Targets of other categories are unaffected.
    pub fn refused_delegation(&self, category: Category) -> Option<FailureReason> {
        self.refused
            .iter()
            .find(|r| r.may_cover(&category.to_string()))
            .map(|r| {
                let why: FailureReason = r.error.clone().into();
                why
            })
    }

    /// Our publisher only signs `CATEGORY/NAME/VERSION/FILE` names; anything else in signed
    /// metadata means a hostile or broken publisher, and nothing is saved from this source.
    pub(super) fn refuse_unsafe_names(&self) -> Result<(), FailureReason> {
        match &self.unsafe_name {
            Some(bad) => Err(FailureReason::UnsafeName(bad.clone())),
            None => Ok(()),
        }
    }

    /// The newest version of `category/name`, `None` when the repository lists none.
    pub fn newest_of(&self, category: Category, name: &str) -> Option<Newest> {
        let mine = |f: &&SignedFile| f.path.category() == category && f.path.name() == name;
        let by_seq: BTreeMap<u64, &str> = self
            .files
            .iter()
            .filter(mine)
            .filter_map(|f| f.meta.as_ref().map(|m| (m.seq, m.version.as_str())))
            .collect();
        let (_, version) = by_seq.last_key_value()?;
        let files = self
            .files
            .iter()
            .filter(mine)
            .filter(|f| f.meta.as_ref().is_some_and(|m| m.version == *version))
            .cloned()
            .collect();
        Some(Newest {
            category,
            name: name.to_owned(),
            version: (*version).to_owned(),
            files,
        })
    }

    /// The newest version of every name of `category` that has a full file, by name.
    pub fn newest(&self, category: Category) -> Vec<Newest> {
        let mut names: Vec<&str> = self
            .files
            .iter()
            .filter(|f| f.path.category() == category && f.meta.is_some() && !f.is_delta())
            .map(|f| f.path.name())
            .collect();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| self.newest_of(category, name))
            .collect()
    }

    /// Save the full files of `newest` in `stage`, each rebuilt from a signed delta against
    /// `installed` when one fits, else fetched whole. Nothing is saved when `installed` is
    /// that very version.
    ///
    /// `stage` is a staging directory: only verified files ever appear in it under their names
    /// (each by atomic rename, never outside it), plus, unless the client has a
    /// [`RepoClient::with_partial_dir`](crate::client::RepoClient::with_partial_dir),
    /// `.partial-SHA256` files of broken transfers, which a later call with the same `stage`
    /// resumes (from any source) and hash-checks before use. After an `Err` it may hold some
    /// files of the version whose other files failed.
    ///
    /// # Errors
    /// The reason the source failed: an unsafe signed name, a transfer or a hash.
    pub async fn save_into(
        &self,
        newest: &Newest,
        installed: Option<Installed<'_>>,
        stage: &Path,
    ) -> Result<Fetched, FailureReason> {
        self.refuse_unsafe_names()?;
        let mut fetched = Fetched {
            source: self.source.label.clone(),
            version: newest.version.clone(),
            up_to_date: installed.is_some_and(|i| i.version == newest.version),
            files: Vec::new(),
        };
        if fetched.up_to_date {
            return Ok(fetched);
        }
        for full in newest.files.iter().filter(|f| !f.is_delta()) {
            let file = full.path.file();
            let via_delta = match installed {
                Some(i) => self.try_delta(full, i, stage).await,
                None => false,
            };
            if !via_delta {
                save_resumable(
                    &self.transport,
                    full.url.clone(),
                    full.length,
                    &full.sha256,
                    (stage, file),
                    self.partial_dir.as_deref().unwrap_or(stage),
                )
                .await?;
            }
            fetched.files.push(FetchedFile {
                file: file.to_owned(),
                path: stage.join(file),
                via_delta,
            });
        }
        fetched.files.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(fetched)
    }

    /// Rebuild `full` from the installed copy and a signed delta; false when no delta fits or
    /// anything about it fails (the caller then fetches the full file).
    async fn try_delta(&self, full: &SignedFile, installed: Installed<'_>, stage: &Path) -> bool {
        let Ok(dpath) = full.path.delta_from(installed.version) else {
            return false;
        };
        let Some(d) = self.files.iter().find(|f| f.path == dpath) else {
            return false;
        };
        let Ok(old) = std::fs::read(installed.dir.join(full.path.file())) else {
            return false;
        };
        let Ok(patch) = fetch_verified(&self.transport, d.url.clone(), d.length, &d.sha256).await
        else {
            return false;
        };
        let Ok(new) = delta::apply(&old, &patch, full.length) else {
            return false;
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &new);
        if new.len() as u64 != full.length || digest.as_ref() != full.sha256.as_slice() {
            return false;
        }
        write_verified(&new, stage, full.path.file()).is_ok()
    }
}

/// The URL of a target's content-addressed copy under `base` (`DIR/SHA256.FILE`).
///
/// # Errors
/// [`FailureReason::UnsafeName`] if the URL would leave `base`.
pub(crate) fn target_url(
    base: &Url,
    path: &TargetPath,
    sha256: &[u8],
) -> Result<Url, FailureReason> {
    let rel = path.stored_path(&hex::encode(sha256));
    let url = base
        .join(&rel)
        .map_err(|e| FailureReason::UnsafeName(e.to_string()))?;
    if !url.as_str().starts_with(base.as_str()) {
        return Err(FailureReason::UnsafeName(rel));
    }
    Ok(url)
}

/// A verified target's SHA-256 (what cascade's layout and saving need).
pub(crate) fn sha256_of(t: &TargetFile) -> Result<Vec<u8>, FailureReason> {
    t.sha256()
        .ok_or_else(|| FailureReason::HashMismatch("target lists no sha256 hash".to_owned()))
}
