//! A tiny fleet run as a behaviour check (not a timing check): every client converges on
//! each version, through the relays, and through the fallback chain once a relay is stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

// About 30 s of wall time on the shared 2-core machine (debug build), over the 20 s budget
// of the default suite: run it with `cargo test -p cascade-bench -- --ignored`.
#[test]
#[ignore = "fleet behaviour check, ~30 s: cargo test -p cascade-bench -- --ignored"]
fn tiny_fleet_converges() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.json");
    let status = Command::new(env!("CARGO_BIN_EXE_fleet-bench"))
        .args(["--clients", "12", "--relays", "2", "--concurrency", "2"])
        .args(["--payload-kib", "4", "--retries", "1", "--out"])
        .arg(&out)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .status()
        .unwrap();
    assert!(status.success(), "fleet-bench failed: {status}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3, "{v}");
    for p in phases {
        assert_eq!(p["current"], p["clients"], "{p}");
        assert_eq!(p["failed_first_pass"], 0, "{p}");
    }
    // With all relays up, the relays serve every client.
    assert_eq!(phases[1]["served_by_relay"], 12, "{}", phases[1]);
    // Stopped half-way, the relay's later clients fall back and still converge.
    let killed = &phases[2];
    assert!(killed["killed_relay"].is_string(), "{killed}");
    assert!(killed["fell_back"].as_u64().unwrap() > 0, "{killed}");
}
