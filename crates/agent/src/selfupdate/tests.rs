//! Tests of the self-update steps: the marker, the commit, the rollback and the refusals.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use super::trial::commit;
use super::*;
use crate::state::DataDir;

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
