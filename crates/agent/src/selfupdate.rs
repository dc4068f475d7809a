//! Agent self-update with automatic rollback (`docs/operating.md#agent-self-update`).
//!
//! The agent's own builds are `programs` targets named [`program_name`]
//! (`cascade-agent-<os>-<arch>/<version>/cascade`), verified and installed like every target.
//! When the installed current version of that program is not the running build's version
//! (and was not refused before), the daemon starts a *trial*:
//!
//! 1. it writes the trial marker (`DATA/self-update/trial.json`: from, to, the service's
//!    binary `exe`, the installed new binary and its SHA-256, the start time and the window),
//! 2. it stops and re-executes the *installed* new binary with the same arguments (same
//!    process id, so a service manager sees no restart). `exe`, the binary the service manager
//!    starts, is not touched yet.
//! 3. The new build finds the marker naming its own version: it runs as the trial. Its first
//!    successful check-in marks the marker healthy, then *commits*: the old `exe` is copied to
//!    `DATA/self-update/previous` (kept), the new binary lands over `exe` atomically (temporary
//!    file beside it, mode 0755, SHA-256 checked, fsync, rename, directory fsync), and the
//!    marker is removed.
//! 4. No healthy check-in within the window: the trial re-executes `exe`, the old build.
//!
//! Any start of a build other than the trial's that finds an unhealthy marker is the rollback:
//! the old build (started again by the trial, or by the service manager after the new build
//! exited, crashed or was killed) records the new version as refused (`refused.json`; it is
//! not tried again, and each report says so) and removes the marker. A start that finds a
//! healthy marker finishes the commit (every step may be repeated) and runs `exe`.
//!
//! A kill at any moment leaves a runnable agent: `exe` is only ever replaced by one rename,
//! and only by a build that checked in; until then the old build is there to be started.

use std::ffi::OsString;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade_core::report::{Attempt, Failure, Outcome, Reason};
use cascade_core::Category;
use serde::{Deserialize, Serialize};

use crate::install::Installer;
use crate::state::DataDir;

/// Every agent program's name starts with this; the rest is `<os>-<arch>`.
pub const PROGRAM_PREFIX: &str = "cascade-agent-";

/// The file inside an agent program's version that is the binary.
pub const BINARY_FILE: &str = "cascade";

/// The default time a new build has to check in before it is rolled back.
pub const DEFAULT_TRIAL: Duration = Duration::from_secs(300);

const DIR: &str = "self-update";
const TRIAL: &str = "trial.json";
const REFUSED: &str = "refused.json";
const PREVIOUS: &str = "previous";
const PREVIOUS_INFO: &str = "previous.json";

/// This platform's agent program: `cascade-agent-<os>-<arch>` (e.g.
/// `cascade-agent-linux-x86_64`).
pub fn program_name() -> String {
    format!(
        "{PROGRAM_PREFIX}{}-{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Whether `name` is the agent program of another platform (not installed here).
pub fn is_other_platform(name: &str) -> bool {
    name.starts_with(PROGRAM_PREFIX) && name != program_name()
}

/// How the running agent updates itself.
#[derive(Debug, Clone)]
pub struct SelfUpdate {
    /// The running build's version (what it reports in its check-ins).
    pub version: String,
    /// The binary the service manager starts, replaced at commit.
    pub exe: PathBuf,
    /// The arguments to start a build with (the running process's, without `argv[0]`).
    pub args: Vec<OsString>,
    /// How long a new build has to check in before it is rolled back.
    pub trial: Duration,
}

/// Why a self-update step failed.
#[derive(Debug, thiserror::Error)]
pub enum SelfUpdateError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The installed new binary changed since the trial began.
    #[error("{path} changed since the trial began (SHA-256 {found}, expected {expected})")]
    Changed {
        /// The binary.
        path: PathBuf,
        /// What it hashes to now.
        found: String,
        /// What it hashed to at the start of the trial.
        expected: String,
    },
    /// The marker or the refusal list could not be written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The installer could not say what is installed.
    #[error(transparent)]
    Install(#[from] crate::install::InstallError),
}

impl SelfUpdateError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SelfUpdateError::Io { .. } => "selfupdate.io",
            SelfUpdateError::Changed { .. } => "selfupdate.changed",
            SelfUpdateError::State(e) => e.code(),
            SelfUpdateError::Install(e) => e.code(),
        }
    }
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SelfUpdateError + 'a {
    move |source| SelfUpdateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

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

/// What a starting agent does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtStart {
    /// Run as usual.
    Run,
    /// Run as the trial of a new build: check in before `deadline` (unix seconds).
    Trial(Trial),
    /// Start this binary instead (with the same arguments).
    Exec(PathBuf),
}

/// `DATA/self-update/`: the marker, the refusals and the previous build.
#[derive(Debug, Clone)]
pub struct SelfDir {
    data: DataDir,
}

impl SelfDir {
    /// The self-update state of `data`.
    pub fn new(data: &DataDir) -> SelfDir {
        SelfDir { data: data.clone() }
    }

    fn file(name: &str) -> String {
        format!("{DIR}/{name}")
    }

    fn dir(&self) -> PathBuf {
        self.data.root().join(DIR)
    }

    fn ensure(&self) -> Result<(), SelfUpdateError> {
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

    fn remove_trial(&self) -> Result<(), SelfUpdateError> {
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

/// Decides what a starting agent does (call it holding the data directory's lock); see the
/// module docs. `su.exe` is set to the service's binary when this process is the trial.
///
/// # Errors
/// The marker cannot be read or the refusal recorded.
pub fn at_start(data: &DataDir, su: &mut SelfUpdate, now: i64) -> Result<AtStart, SelfUpdateError> {
    let dir = SelfDir::new(data);
    remove_landing_debris(&su.exe);
    let Some(trial) = dir.trial()? else {
        return Ok(AtStart::Run);
    };
    let me = std::env::current_exe().ok();
    let running_trial_binary = me.as_deref().is_some_and(|m| same_file(m, &trial.binary));
    if trial.healthy {
        // The new build checked in; finish its commit (any step may have run already).
        if let Err(e) = commit(&dir, &trial) {
            tracing::error!(error = %e, code = e.code(), "self-update commit failed; rolling back");
            return rollback(&dir, &trial, su, format!("the commit failed: {e}"), now);
        }
        if su.version == trial.to && !running_trial_binary {
            return Ok(AtStart::Run);
        }
        su.exe.clone_from(&trial.exe);
        return Ok(AtStart::Exec(trial.exe));
    }
    if su.version == trial.to && running_trial_binary {
        su.exe.clone_from(&trial.exe);
        tracing::info!(from = %trial.from, to = %trial.to, window_secs = trial.window_secs,
            "running as the trial of a new agent build");
        return Ok(AtStart::Trial(trial));
    }
    let reason = if running_trial_binary {
        format!(
            "the build published as {} reports version {}",
            trial.to, su.version
        )
    } else {
        format!(
            "it did not check in within {} s of its start (it exited, crashed, was killed or \
             never reached the server); back at {}",
            trial.window_secs, trial.from
        )
    };
    rollback(&dir, &trial, su, reason, now)
}

/// Refuses the trial's version, removes the marker, and runs (or starts) the old build.
fn rollback(
    dir: &SelfDir,
    trial: &Trial,
    su: &mut SelfUpdate,
    reason: String,
    now: i64,
) -> Result<AtStart, SelfUpdateError> {
    tracing::warn!(version = %trial.to, %reason, "agent self-update rolled back");
    dir.refuse(&trial.to, reason, now)?;
    dir.remove_trial()?;
    let me = std::env::current_exe().ok();
    su.exe.clone_from(&trial.exe);
    if me.as_deref().is_some_and(|m| same_file(m, &trial.exe)) {
        Ok(AtStart::Run)
    } else {
        Ok(AtStart::Exec(trial.exe.clone()))
    }
}

/// After a cycle, outside a trial: begins the trial of the installed agent build when it is
/// not the running one and was not refused. Returns the binary to start.
///
/// # Errors
/// The installed binary cannot be read or made executable, or the marker written.
pub fn begin(
    data: &DataDir,
    installer: &Installer,
    su: &SelfUpdate,
    now: i64,
) -> Result<Option<PathBuf>, SelfUpdateError> {
    let name = program_name();
    let Some(version) = installer.current(Category::Programs, &name)? else {
        return Ok(None);
    };
    let dir = SelfDir::new(data);
    if version == su.version || dir.refused().iter().any(|r| r.version == version) {
        return Ok(None);
    }
    let Some(vdir) = installer.current_dir(Category::Programs, &name)? else {
        return Ok(None);
    };
    let binary = vdir.join(BINARY_FILE);
    let sha256 = cascade_repo::fsutil::sha256_file_hex(&binary).map_err(io_err("hash", &binary))?;
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755))
        .map_err(io_err("make executable", &binary))?;
    let trial = Trial {
        from: su.version.clone(),
        to: version,
        exe: su.exe.clone(),
        binary: binary.clone(),
        sha256,
        started_at: now,
        window_secs: su.trial.as_secs().max(1),
        healthy: false,
        previous_kept: false,
    };
    dir.save_trial(&trial)?;
    tracing::info!(from = %trial.from, to = %trial.to, "starting the new agent build on trial");
    Ok(Some(binary))
}

/// The trial checked in: marks the marker healthy and commits.
///
/// # Errors
/// The marker cannot be written or the commit fails (the marker then stays healthy, and the
/// next start finishes the commit).
pub fn won(data: &DataDir, trial: &Trial) -> Result<(), SelfUpdateError> {
    let dir = SelfDir::new(data);
    let mut t = trial.clone();
    t.healthy = true;
    dir.save_trial(&t)?;
    commit(&dir, &t)?;
    tracing::info!(from = %t.from, to = %t.to, "new agent build checked in; committed");
    Ok(())
}

/// Keeps the old `exe` as `previous` (once), lands the new binary over `exe`, removes the
/// marker. Every step may be repeated after a kill.
fn commit(dir: &SelfDir, trial: &Trial) -> Result<(), SelfUpdateError> {
    if !trial.previous_kept {
        dir.ensure()?;
        let kept = dir.dir().join(PREVIOUS);
        land_copy(&trial.exe, &kept, None)?;
        dir.data.write_json(
            &SelfDir::file(PREVIOUS_INFO),
            &Previous {
                version: trial.from.clone(),
                binary: kept,
            },
        )?;
        let mut t = trial.clone();
        t.previous_kept = true;
        dir.save_trial(&t)?;
    }
    land_copy(&trial.binary, &trial.exe, Some(&trial.sha256))?;
    dir.remove_trial()
}

/// Copies `from` over `dest` atomically (a temporary file beside `dest`, mode 0755), checking
/// the SHA-256 when `want` (hex) is given.
fn land_copy(from: &Path, dest: &Path, want: Option<&str>) -> Result<(), SelfUpdateError> {
    let mut src = fs::File::open(from).map_err(io_err("open", from))?;
    let mut landing = cascade_repo::fsutil::Landing::start(dest, &landing_prefix(dest))
        .map_err(io_err("create a temporary file beside", dest))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf).map_err(io_err("read", from))?;
        if n == 0 {
            break;
        }
        landing
            .write(&buf[..n])
            .map_err(io_err("write beside", dest))?;
    }
    landing
        .set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(io_err("make executable", dest))?;
    let want = want.map(hex::decode).transpose().ok().flatten();
    match landing.finish(want.as_deref()) {
        Ok(_) => Ok(()),
        Err(cascade_repo::fsutil::LandError::Mismatch { sha256, .. }) => {
            Err(SelfUpdateError::Changed {
                path: from.to_owned(),
                found: hex::encode(sha256),
                expected: want.map(hex::encode).unwrap_or_default(),
            })
        }
        Err(cascade_repo::fsutil::LandError::Io(e)) => Err(io_err("land", dest)(e)),
    }
}

/// The temporary file prefix beside `exe` (`.cascade.new-`).
fn landing_prefix(exe: &Path) -> String {
    let name = exe
        .file_name()
        .map_or_else(|| "cascade".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.new-")
}

/// Removes the temporary files a killed commit left beside `exe`.
fn remove_landing_debris(exe: &Path) {
    let (Some(dir), prefix) = (exe.parent(), landing_prefix(exe)) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(e.path());
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The report line for a refused agent build that is still the newest installed: each cycle
/// says so until a newer build is published.
pub fn refusal_attempt(data: &DataDir, installer: &Installer) -> Option<Attempt> {
    let name = program_name();
    let version = installer.current(Category::Programs, &name).ok()??;
    let refused = SelfDir::new(data)
        .refused()
        .into_iter()
        .find(|r| r.version == version)?;
    Some(Attempt {
        category: Some(Category::Programs),
        step: 0,
        source: "self-update".into(),
        outcome: Outcome::Skipped,
        reason: Some(Reason::Failure(Failure {
            code: "selfupdate.rolled_back".into(),
            message: format!("{name} {version} was rolled back: {}", refused.reason),
        })),
        bytes: 0,
        millis: 0,
    })
}

/// Fault injection for the self-update tests: only in builds with the `fault-injection`
/// feature (never the shipped binary), `CASCADE_FAULT=<kind>` makes the build misbehave.
pub fn fault(kind: &str) -> bool {
    cfg!(feature = "fault-injection") && std::env::var("CASCADE_FAULT").is_ok_and(|v| v == kind)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // The marker round-trips and its deadline is the start plus the window.
    #[test]
    fn trial_marker_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        let dir = SelfDir::new(&data);
        assert_eq!(dir.trial().unwrap(), None);
        let t = Trial {
            from: "1".into(),
            to: "2".into(),
            exe: "/x/cascade".into(),
            binary: "/y/cascade".into(),
            sha256: "00".into(),
            started_at: 100,
            window_secs: 30,
            healthy: false,
            previous_kept: false,
        };
        dir.save_trial(&t).unwrap();
        assert_eq!(dir.trial().unwrap(), Some(t.clone()));
        assert_eq!(t.deadline(), 130);
        std::fs::write(tmp.path().join("self-update/trial.json"), b"{\"fr").unwrap();
        assert_eq!(
            dir.trial().unwrap(),
            None,
            "a corrupt marker counts as none"
        );
    }

    // A commit keeps the old binary, lands the new one with mode 0755, removes the marker;
    // run again (a kill before the marker went) it changes nothing.
    #[test]
    fn commit_keeps_previous_and_is_repeatable() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(&tmp.path().join("data")).unwrap();
        let exe = tmp.path().join("bin/cascade");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::write(&exe, b"old").unwrap();
        let binary = tmp.path().join("new");
        std::fs::write(&binary, b"new").unwrap();
        let t = Trial {
            from: "1".into(),
            to: "2".into(),
            exe: exe.clone(),
            binary: binary.clone(),
            sha256: cascade_repo::fsutil::sha256_hex(b"new"),
            started_at: 0,
            window_secs: 1,
            healthy: true,
            previous_kept: false,
        };
        let dir = SelfDir::new(&data);
        dir.save_trial(&t).unwrap();
        commit(&dir, &t).unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"new");
        let mode = std::fs::metadata(&exe).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let prev = dir.previous().unwrap();
        assert_eq!(prev.version, "1");
        assert_eq!(std::fs::read(&prev.binary).unwrap(), b"old");
        assert_eq!(dir.trial().unwrap(), None);
        let mut again = t.clone();
        again.previous_kept = true;
        commit(&dir, &again).unwrap();
        assert_eq!(std::fs::read(&prev.binary).unwrap(), b"old");
        assert_eq!(std::fs::read(&exe).unwrap(), b"new");
    }

    // A changed binary is not landed: `exe` keeps the old build.
    #[test]
    fn a_changed_binary_is_refused_at_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(&tmp.path().join("data")).unwrap();
        let exe = tmp.path().join("cascade");
        std::fs::write(&exe, b"old").unwrap();
        let binary = tmp.path().join("new");
        std::fs::write(&binary, b"tampered").unwrap();
        let t = Trial {
            from: "1".into(),
            to: "2".into(),
            exe: exe.clone(),
            binary,
            sha256: cascade_repo::fsutil::sha256_hex(b"new"),
            started_at: 0,
            window_secs: 1,
            healthy: true,
            previous_kept: true,
        };
        let err = commit(&SelfDir::new(&data), &t).unwrap_err();
        assert_eq!(err.code(), "selfupdate.changed");
        assert_eq!(std::fs::read(&exe).unwrap(), b"old");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".cascade.new-"))
            .collect();
        assert!(left.is_empty(), "temporary file left: {left:?}");
    }

    fn su(exe: &Path, version: &str) -> SelfUpdate {
        SelfUpdate {
            version: version.into(),
            exe: exe.to_owned(),
            args: Vec::new(),
            trial: Duration::from_secs(5),
        }
    }

    // A start of another build than the trial's that finds an unhealthy marker rolls back:
    // the version is refused, the marker removed, and the service's binary started; a start
    // that finds a healthy marker finishes the commit, then starts the service's binary.
    #[test]
    fn a_start_rolls_back_or_finishes_the_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(&tmp.path().join("data")).unwrap();
        let exe = tmp.path().join("bin/cascade");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::write(&exe, b"old").unwrap();
        let binary = tmp.path().join("new");
        std::fs::write(&binary, b"new").unwrap();
        let dir = SelfDir::new(&data);
        let trial = Trial {
            from: "1".into(),
            to: "2".into(),
            exe: exe.clone(),
            binary: binary.clone(),
            sha256: cascade_repo::fsutil::sha256_hex(b"new"),
            started_at: 0,
            window_secs: 5,
            healthy: false,
            previous_kept: false,
        };
        dir.save_trial(&trial).unwrap();
        let mut me = su(&exe, "1");
        // This test binary is neither `exe` nor the trial's binary: it is told to start `exe`.
        assert_eq!(
            at_start(&data, &mut me, 10).unwrap(),
            AtStart::Exec(exe.clone())
        );
        assert_eq!(dir.trial().unwrap(), None);
        assert_eq!(dir.refused()[0].version, "2");
        assert!(dir.refused()[0].reason.contains("did not check in"));
        assert_eq!(std::fs::read(&exe).unwrap(), b"old");
        assert_eq!(at_start(&data, &mut me, 11).unwrap(), AtStart::Run);

        let won = Trial {
            to: "3".into(),
            healthy: true,
            ..trial
        };
        dir.save_trial(&won).unwrap();
        assert_eq!(
            at_start(&data, &mut me, 12).unwrap(),
            AtStart::Exec(exe.clone())
        );
        assert_eq!(std::fs::read(&exe).unwrap(), b"new");
        assert_eq!(dir.trial().unwrap(), None);
        assert_eq!(
            std::fs::read(dir.previous().unwrap().binary).unwrap(),
            b"old"
        );
    }

    // Refusals are recorded once per version.
    #[test]
    fn refusals_are_kept_once_per_version() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        let dir = SelfDir::new(&data);
        dir.refuse("2", "a".into(), 1).unwrap();
        dir.refuse("2", "b".into(), 2).unwrap();
        dir.refuse("3", "c".into(), 3).unwrap();
        let r = dir.refused();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].reason, "b");
        assert!(is_other_platform("cascade-agent-plan9-mips"));
        assert!(!is_other_platform(&program_name()));
        assert!(!is_other_platform("cascade-console"));
    }
}
