//! `DATA/self-update/`: the trial marker, the refused versions and the previous build kept
//! by the last commit, each written atomically through the data directory.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{io_err, SelfUpdateError};
use crate::state::DataDir;

const DIR: &str = "self-update";
const TRIAL: &str = "trial.json";
const REFUSED: &str = "refused.json";
pub(super) const PREVIOUS: &str = "previous";
pub(super) const PREVIOUS_INFO: &str = "previous.json";

/// The trial marker: written before the switch, read by every start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The version that ran before.
    pub from: String,
    /// The version on trial.
    pub to: String,
    /// The binary the service manager starts (the old build until the commit).
    pub exe: PathBuf,
    /// The installed new binary the trial runs from.
    pub binary: PathBuf,
    /// Its SHA-256 (hex) when the trial began; the commit checks it.
    pub sha256: String,
    /// Unix seconds when the trial began.
    pub started_at: i64,
    /// Seconds the new build has to check in.
    pub window_secs: u64,
    /// The new build checked in: the trial is won and the commit may run.
    #[serde(default)]
    pub healthy: bool,
    /// The old `exe` is copied to `previous` already.
    #[serde(default)]
    pub previous_kept: bool,
}

impl Trial {
    /// Unix seconds when the trial is lost.
    pub fn deadline(&self) -> i64 {
        self.started_at
            .saturating_add(i64::try_from(self.window_secs).unwrap_or(i64::MAX))
    }
}

/// A version that was rolled back and is not tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The version.
    pub version: String,
    /// Why it was rolled back.
    pub reason: String,
    /// Unix seconds when.
    pub at: i64,
}

/// The previous build, kept by the last commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// Its version.
    pub version: String,
    /// Where it is kept.
    pub binary: PathBuf,
}

/// `DATA/self-update/`: the marker, the refusals and the previous build.
#[derive(Debug, Clone)]
pub struct SelfDir {
    pub(super) data: DataDir,
}

impl SelfDir {
    /// The self-update state of `data`.
    pub fn new(data: &DataDir) -> SelfDir {
        SelfDir { data: data.clone() }
    }

    pub(super) fn file(name: &str) -> String {
        format!("{DIR}/{name}")
    }

    pub(super) fn dir(&self) -> PathBuf {
        self.data.root().join(DIR)
    }

    pub(super) fn ensure(&self) -> Result<(), SelfUpdateError> {
        let dir = self.dir();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))
    }

    /// The trial marker, if any. A corrupt one counts as none (it is removed): either build
    /// is runnable, and `exe` is only replaced after a healthy check-in.
    ///
    /// # Errors
    /// An unreadable file.
    pub fn trial(&self) -> Result<Option<Trial>, SelfUpdateError> {
        match self.data.read_json::<Trial>(&Self::file(TRIAL)) {
            Err(crate::state::StateError::Corrupt { path, reason }) => {
                tracing::warn!(path = %path.display(), %reason, "corrupt self-update marker removed");
                let _ = fs::remove_file(&path);
                Ok(None)
            }
            other => Ok(other?),
        }
    }

    /// Writes the marker atomically.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save_trial(&self, t: &Trial) -> Result<(), SelfUpdateError> {
        self.ensure()?;
        Ok(self.data.write_json(&Self::file(TRIAL), t)?)
    }

    pub(super) fn remove_trial(&self) -> Result<(), SelfUpdateError> {
        let path = self.dir().join(TRIAL);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
        let dir = self.dir();
        cascade_repo::fsutil::sync_dir(&dir).map_err(io_err("sync", &dir))
    }

    /// The refused versions, oldest first (a corrupt list counts as empty).
    pub fn refused(&self) -> Vec<Refused> {
        self.data
            .read_json::<Vec<Refused>>(&Self::file(REFUSED))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Records `version` as refused.
    ///
    /// # Errors
    /// When the list cannot be written.
    pub fn refuse(&self, version: &str, reason: String, now: i64) -> Result<(), SelfUpdateError> {
        self.ensure()?;
        let mut list = self.refused();
        list.retain(|r| r.version != version);
        list.push(Refused {
            version: version.to_owned(),
            reason,
            at: now,
        });
        // Only the last few matter: a refused version is never the newest for long.
        let excess = list.len().saturating_sub(16);
        list.drain(..excess);
        Ok(self.data.write_json(&Self::file(REFUSED), &list)?)
    }

    /// The build kept by the last commit, if any.
    pub fn previous(&self) -> Option<Previous> {
        self.data
            .read_json::<Previous>(&Self::file(PREVIOUS_INFO))
            .ok()
            .flatten()
    }
}
