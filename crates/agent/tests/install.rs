//! Atomic installs: a new version becomes current only on commit, the previous one is kept
//! for rollback, abandoned stages vanish, and names that could escape the root are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use cascade_agent::install::Installer;
use cascade_core::Category::Components;

fn install(inst: &Installer, version: &str, body: &str) {
    let stage = inst.stage(Components, "patterns", version).unwrap();
    fs::write(stage.path().join("data.bin"), body).unwrap();
    stage.commit().unwrap();
}

fn read_current(inst: &Installer) -> String {
    let dir = inst.current_dir(Components, "patterns").unwrap().unwrap();
    fs::read_to_string(dir.join("data.bin")).unwrap()
}

// Commit switches current, keeps exactly one previous version, and removes older ones.
#[test]
fn commit_keeps_one_previous() {
    let root = tempfile::tempdir().unwrap();
    let inst = Installer::new(root.path().join("installed"));
    assert_eq!(inst.current(Components, "patterns").unwrap(), None);
    install(&inst, "1", "one");
    install(&inst, "2", "two");
    install(&inst, "3", "three");
    assert_eq!(
        inst.current(Components, "patterns").unwrap().as_deref(),
        Some("3")
    );
    assert_eq!(
        inst.previous(Components, "patterns").unwrap().as_deref(),
        Some("2")
    );
    assert_eq!(read_current(&inst), "three");
    let item = root.path().join("installed/components/patterns");
    let mut names: Vec<String> = fs::read_dir(&item)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["2", "3", "current", "previous"]);
    assert_eq!(
        inst.list(),
        [(Components, "patterns".to_owned(), "3".to_owned())]
    );
}

// A stage dropped without commit leaves the current version untouched and no trace.
#[test]
fn abandoned_stage_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let inst = Installer::new(root.path().to_owned());
    install(&inst, "1", "one");
    let stage = inst.stage(Components, "patterns", "2").unwrap();
    fs::write(stage.path().join("data.bin"), "half").unwrap();
    let staged = stage.path().to_owned();
    drop(stage);
    assert!(!staged.exists());
    assert_eq!(
        inst.current(Components, "patterns").unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(read_current(&inst), "one");
}

// Rollback returns to the previous version, and a second rollback undoes the first.
#[test]
fn rollback_and_back() {
    let root = tempfile::tempdir().unwrap();
    let inst = Installer::new(root.path().to_owned());
    install(&inst, "1", "one");
    assert_eq!(
        inst.rollback(Components, "patterns").unwrap_err().code(),
        "install.no_previous"
    );
    install(&inst, "2", "two");
    assert_eq!(inst.rollback(Components, "patterns").unwrap(), "1");
    assert_eq!(read_current(&inst), "one");
    assert_eq!(inst.rollback(Components, "patterns").unwrap(), "2");
    assert_eq!(read_current(&inst), "two");
}

// A stage left by a crash (the process died before commit) is removed by clean().
#[test]
fn clean_removes_crash_leftovers() {
    let root = tempfile::tempdir().unwrap();
    let inst = Installer::new(root.path().to_owned());
    install(&inst, "1", "one");
    let stage = inst.stage(Components, "patterns", "2").unwrap();
    let staged = stage.path().to_owned();
    std::mem::forget(stage); // as if killed: Drop never runs
    fs::create_dir(root.path().join("components/patterns/7")).unwrap();
    assert!(staged.exists());
    inst.clean().unwrap();
    assert!(!staged.exists());
    assert!(!root.path().join("components/patterns/7").exists());
    assert_eq!(read_current(&inst), "one");
}

// Names and versions that could leave the install root, or clash with the links, are refused.
#[test]
fn unsafe_names_refused() {
    let root = tempfile::tempdir().unwrap();
    let inst = Installer::new(root.path().join("installed"));
    for (name, version) in [
        ("../x", "1"),
        ("p", "../../etc"),
        ("/abs", "1"),
        ("p", "current"),
        ("p", ".hidden"),
        ("", "1"),
    ] {
        let err = inst.stage(Components, name, version).unwrap_err();
        assert_eq!(err.code(), "install.unsafe_name", "{name} {version}");
    }
    assert!(!root.path().join("x").exists());
    assert!(!root.path().join("etc").exists());
}
