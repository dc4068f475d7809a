//! `cascade server` started under `umask 0` still keeps its data directory `0700` and its
//! database `0600` (`docs/operating.md#limits`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

#[test]
fn data_files_are_private_under_umask_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("umask 0; exec \"$0\" server --listen \"$1\" --data-dir \"$2\"")
        .arg(env!("CARGO_BIN_EXE_cascade"))
        .arg(format!("127.0.0.1:{port}"))
        .arg(&data)
        .env("CASCADE_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first-start message comes once the database is created and the server listens.
    let out = BufReader::new(child.stdout.take().unwrap());
    let started = out
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("enrollment token"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    let dir = mode(&data);
    let db = mode(&data.join("cascade.db"));
    let wal = mode(&data.join("cascade.db-wal"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(started, "the server did not start");
    assert_eq!(dir.unwrap(), 0o700, "data directory");
    assert_eq!(db.unwrap(), 0o600, "cascade.db");
    assert_eq!(wal.unwrap(), 0o600, "cascade.db-wal");
}
