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
//!
//! - `error`: why a step failed, with stable codes;
//! - `dir`: `DATA/self-update/`, the trial marker, the refusals and the kept previous build;
//! - `trial`: what a start does, beginning a trial, winning it, the commit and the rollback;
//! - `land`: copying a binary over another atomically, and the debris a kill leaves.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

mod dir;
mod error;
mod land;
#[cfg(test)]
mod tests;
mod trial;

pub use dir::{Previous, Refused, SelfDir, Trial};
pub use error::SelfUpdateError;
pub use trial::{at_start, begin, refusal_attempt, won, AtStart};

/// Every agent program's name starts with this; the rest is `<os>-<arch>`.
pub const PROGRAM_PREFIX: &str = "cascade-agent-";

/// The file inside an agent program's version that is the binary.
pub const BINARY_FILE: &str = "cascade";

/// The default time a new build has to check in before it is rolled back.
pub const DEFAULT_TRIAL: Duration = Duration::from_secs(300);

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

/// Fault injection for the self-update tests: only in builds with the `fault-injection`
/// feature (never the shipped binary), `CASCADE_FAULT=<kind>` makes the build misbehave.
pub fn fault(kind: &str) -> bool {
    cfg!(feature = "fault-injection") && std::env::var("CASCADE_FAULT").is_ok_and(|v| v == kind)
}
