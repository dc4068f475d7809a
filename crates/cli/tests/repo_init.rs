//! `cascade repo init`'s key ceremony (`docs/operating.md#keys-and-their-ceremony`): the
//! offline root and targets keys never land in the repository directory unless asked, every
//! key file is `0600` and every key directory `0700` even under `umask 0`, and encrypted keys
//! are standard encrypted PKCS#8.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `cascade ARGS` in `cwd` under `umask 0`.
fn cascade(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 0; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_cascade"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CASCADE_KEY_PASSPHRASE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

// Without a place for the offline keys `repo init` refuses (exit 2) and writes nothing; with
// `--offline-keys` elsewhere the repository directory holds only the online keys; key files are
// 0600 and key directories 0700 under umask 0.
#[test]
fn init_leaves_no_offline_key_in_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cascade(tmp.path(), &["repo", "init", "site"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--offline-keys"));
    assert!(!tmp.path().join("site").exists());
    let out = cascade(
        tmp.path(),
        &["repo", "init", "site", "--offline-keys", "site/keys"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!tmp.path().join("site").exists());

    let out = cascade(
        tmp.path(),
        &[
            "repo",
            "init",
            "site",
            "--offline-keys",
            "media/site-keys",
            "--root-keys",
            "3",
            "--root-threshold",
            "2",
        ],
        &[("CASCADE_KEY_PASSPHRASE", "a long passphrase")],
    );
    assert!(out.status.success(), "{out:?}");
    let keys_in_repo: Vec<String> = files_under(&tmp.path().join("site"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pk8"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut sorted = keys_in_repo.clone();
    sorted.sort();
    assert_eq!(sorted, ["snapshot.pk8", "timestamp.pk8"]);
    let offline = tmp.path().join("media/site-keys");
    let mut names: Vec<String> = files_under(&offline)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["root-2.pk8", "root-3.pk8", "root.pk8", "targets.pk8"]
    );
    for dir in [offline.clone(), tmp.path().join("site/online-keys")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for f in files_under(&dir) {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(
                text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
                "{}",
                f.display()
            );
        }
    }

    // Asked to keep them here, it does, still private.
    let out = cascade(
        tmp.path(),
        &["repo", "init", "lab", "--keep-offline-keys-here"],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not encrypted"));
    let kept = tmp.path().join("lab/offline-keys");
    assert_eq!(mode(&kept), 0o700);
    assert_eq!(mode(&kept.join("targets.pk8")), 0o600);
    assert_eq!(mode(&kept.join("root.pk8")), 0o600);
}

// Publishing with the offline keys brought back signs with the passphrase; a wrong one fails
// with its code and publishes nothing.
#[test]
fn publish_needs_the_right_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("pass"), "a long passphrase\n").unwrap();
    std::fs::write(tmp.path().join("wrong"), "not it\n").unwrap();
    std::fs::write(tmp.path().join("f.bin"), b"content").unwrap();
    let init = [
        "repo",
        "init",
        "site",
        "--offline-keys",
        "keys",
        "--key-passphrase-file",
        "pass",
    ];
    assert!(cascade(tmp.path(), &init, &[]).status.success());
    let publish = |pass: &str, version: &str| {
        cascade(
            tmp.path(),
            &[
                "publish",
                "--repo",
                "site",
                "--offline-keys",
                "keys",
                "--key-passphrase-file",
                pass,
                "--category",
                "components",
                "--name",
                "engine",
                "--version",
                version,
                "f.bin",
            ],
            &[],
        )
    };
    let timestamp =
        || std::fs::read(tmp.path().join("site/public/metadata/timestamp.json")).unwrap();
    let before = timestamp();
    let out = publish("wrong", "1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[key.wrong_passphrase]"),
        "{out:?}"
    );
    assert_eq!(timestamp(), before, "nothing is published");
    let out = publish("pass", "1");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("published components/engine/1"));
}

// `cascade repo rotate-key`: the timestamp key rotates (a new root lists it, the old key file
// is kept, new key files are 0600 under umask 0); without the root key nothing changes and
// the command fails naming the signing problem.
#[test]
fn rotate_key_needs_the_root_key_and_keeps_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cascade(
        tmp.path(),
        &["repo", "init", "site", "--offline-keys", "offline"],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let args = [
        "repo",
        "rotate-key",
        "--repo",
        "site",
        "--offline-keys",
        "offline",
        "--role",
        "timestamp",
    ];
    let out = cascade(tmp.path(), &args, &[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("root version 2"), "{text}");
    let online = tmp.path().join("site/online-keys");
    assert_eq!(mode(&online.join("timestamp.pk8")), 0o600);
    assert!(online.join("timestamp.pk8.retired-v1").is_file());
    assert!(tmp
        .path()
        .join("site/public/metadata/2.root.json")
        .is_file());
    std::fs::rename(
        tmp.path().join("offline/root.pk8"),
        tmp.path().join("away.pk8"),
    )
    .unwrap();
    let out = cascade(tmp.path(), &args, &[]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("publish.sign"),
        "{out:?}"
    );
    assert!(!tmp.path().join("site/public/metadata/3.root.json").exists());
}
