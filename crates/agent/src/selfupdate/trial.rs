//! The trial of a new agent build: what a starting agent does, beginning a trial, winning
//! it (the commit), and losing it (the rollback); see the module docs of `selfupdate`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use cascade_core::report::{Attempt, Failure, Outcome, Reason};
use cascade_core::Category;

use super::dir::{Previous, SelfDir, Trial, PREVIOUS, PREVIOUS_INFO};
use super::error::{io_err, SelfUpdateError};
use super::land::{land_copy, remove_landing_debris, same_file};
use super::{program_name, SelfUpdate, BINARY_FILE};
use crate::install::Installer;
use crate::state::DataDir;

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

/// Decides what a starting agent does (call it holding the data directory's lock); see the
/// `selfupdate` module docs. `su.exe` is set to the service's binary when this process is the
/// trial.
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
pub(super) fn commit(dir: &SelfDir, trial: &Trial) -> Result<(), SelfUpdateError> {
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
