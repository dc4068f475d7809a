//! Damaged agent state repairs itself (`docs/operating.md#agent-self-repair`): a garbled
//! identity, cached policy and trusted roots do not stop the agent nor duplicate its record on
//! the server, and a report the agent cannot store still reaches the server with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cascade_client::proto::ClientsQuery;
use cascade_core::report::Outcome;
use cascade_testkit::cli::{agent_fleet, agent_once_args, client_id, installed_patterns};
use cascade_testkit::{wait_until, Fleet, Upstream};

struct World {
    _tmp: tempfile::TempDir,
    _upstream: Upstream,
    root: PathBuf,
    fleet: Fleet,
    data: PathBuf,
}

impl World {
    async fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let (upstream, root, fleet) = agent_fleet(tmp.path(), b"one").await.unwrap();
        let data = tmp.path().join("agent");
        World {
            _tmp: tmp,
            _upstream: upstream,
            root,
            fleet,
            data,
        }
    }

    fn agent(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cascade"))
            .args(agent_once_args(
                &self.data,
                "127.0.1.52",
                &self.fleet,
                &self.root,
            ))
            .env("CASCADE_LOG", "off")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    async fn client_count(&self) -> usize {
        self.fleet
            .api()
            .clients(&ClientsQuery::default())
            .await
            .unwrap()
            .clients
            .len()
    }
}

fn garble(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 3]).unwrap();
}

// Truncated identity, policy, pinned root and trusted root: the next run works, with the same
// client record, and each file is whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_state_repairs_itself_without_a_second_record() {
    let w = World::new().await;
    let out = w.agent();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(w.client_count().await, 1);
    let trust = w.data.join("trust/upstream");
    for f in [
        w.data.join("identity.json"),
        w.data.join("policy.json"),
        trust.join("pinned-root.json"),
        trust.join("root.json"),
    ] {
        garble(&f);
    }
    std::fs::write(trust.join("pinned-root.copy.json"), b"{}").unwrap();
    let out = w.agent();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(w.client_count().await, 1, "re-enrolled as a second client");
    for f in ["identity.json", "policy.json"] {
        let bytes = std::fs::read(w.data.join(f)).unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
            "{f}"
        );
    }
    for f in ["pinned-root.json", "pinned-root.copy.json", "root.json"] {
        let bytes = std::fs::read(trust.join(f)).unwrap();
        assert!(cascade_repo::valid_root(&bytes), "{f}");
    }
}

// A report that cannot be stored (here `last-report.json` is a directory) still reaches the
// server, failed, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_report_still_checks_in_with_the_reason() {
    let w = World::new().await;
    let out = w.agent();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = client_id(&w.data).unwrap();
    std::fs::remove_file(w.data.join("last-report.json")).unwrap();
    std::fs::create_dir_all(w.data.join("last-report.json/blocked")).unwrap();
    let out = w.agent();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let record = w.fleet.api().client_record(&id).await.unwrap();
    assert_eq!(record.last_outcome, Some(Outcome::Failed));
    let report = record.last_update.unwrap();
    let why = report
        .attempts
        .iter()
        .find_map(|a| a.reason.as_ref()?.failure().cloned())
        .expect("a failure in the report");
    assert_eq!(why.code, "state.io", "{why}");
    assert!(why.message.contains("last-report.json"), "{why}");
}

fn installed(data: &Path) -> Vec<u8> {
    installed_patterns(data).unwrap()
}

// A garbled, then an emptied installed file: `cascade agent verify` reports it and puts the
// signed content back; a later check finds everything intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_repairs_damaged_installed_files() {
    let w = World::new().await;
    let out = w.agent();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let file = w
        .data
        .join("installed/components/patterns/current/patterns.db");
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_cascade"))
            .args(["agent", "verify", "--bind-ip", "127.0.1.52", "--data-dir"])
            .arg(&w.data)
            .env("CASCADE_LOG", "off")
            .output()
            .unwrap()
    };
    for damage in [&b"oNe"[..], &b""[..]] {
        std::fs::write(&file, damage).unwrap();
        let out = verify();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(text.contains("patterns 1 patterns.db damaged"), "{text}");
        assert!(text.contains("repaired"), "{text}");
        assert_eq!(installed(&w.data), b"one");
    }
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text.contains("1 files checked, 0 damaged"), "{text}");
}

// The daemon re-checks installed files on its own schedule (`--verify-every`) and repairs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_repairs_damaged_files_periodically() {
    let w = World::new().await;
    let out = w.agent();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let file = w
        .data
        .join("installed/components/patterns/current/patterns.db");
    std::fs::write(&file, b"garbage").unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args([
            "agent",
            "--verify-every",
            "1",
            "--bind-ip",
            "127.0.1.52",
            "--data-dir",
        ])
        .arg(&w.data)
        .env("CASCADE_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let repaired = wait_until(std::time::Duration::from_secs(10), || async {
        installed(&w.data) == b"one"
    })
    .await
    .is_ok();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(repaired, "the daemon did not repair the file");
}

// A full disk (a tmpfs filled with `dd`): the cycle still checks in, failed, with
// `agent.disk_full`. Needs root to mount the tmpfs in a private mount namespace (`scripts/test`
// runs as root); as another user it fails, never passes without the fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_still_checks_in_with_disk_full() {
    let w = World::new().await;
    let out = w.agent();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = client_id(&w.data).unwrap();
    let mnt = w.data.with_file_name("full");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = r#"set -e
mount -t tmpfs -o size=8m tmpfs "$MNT"
cp -a "$SRC/." "$MNT/"
dd if=/dev/zero of="$MNT/fill" bs=4k 2>/dev/null || true
exec "$CASCADE" agent --once --bind-ip 127.0.1.52 --data-dir "$MNT""#;
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .env("MNT", &mnt)
        .env("SRC", &w.data)
        .env("CASCADE", env!("CARGO_BIN_EXE_cascade"))
        .env("CASCADE_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let record = w.fleet.api().client_record(&id).await.unwrap();
    assert_eq!(record.last_outcome, Some(Outcome::Failed));
    let codes: Vec<String> = record
        .last_update
        .unwrap()
        .attempts
        .iter()
        .filter_map(|a| Some(a.reason.as_ref()?.failure()?.code.clone()))
        .collect();
    assert!(codes.iter().any(|c| c == "agent.disk_full"), "{codes:?}");
}
