//! Crash safety of the agent as a real process: `kill -9` at random moments of a download and
//! install, many times over; the installed version is always a complete old or new one, and
//! a later run finishes the update.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use cascade_testkit::cli::{agent_fleet, agent_once_args, installed_patterns, publish_patterns};
use cascade_testkit::{pseudo_random, Fleet};

/// One update cycle of the agent whose data is in `data`, silent.
fn agent(data: &std::path::Path, fleet: &Fleet, root: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cascade"));
    cmd.args(agent_once_args(data, "127.0.1.50", fleet, root))
        .env("CASCADE_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Every TUF role file the agent keeps is whole: absent, or signed metadata with a version.
fn trust_files_whole(data: &std::path::Path) -> Result<(), String> {
    for domain in ["upstream", "site"] {
        for role in ["root", "timestamp", "snapshot", "targets"] {
            let path = data.join(format!("trust/{domain}/{role}.json"));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let v: Option<u64> = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("signed")?.get("version")?.as_u64());
            if v.is_none() {
                return Err(format!(
                    "{} is torn ({} bytes)",
                    path.display(),
                    bytes.len()
                ));
            }
        }
    }
    Ok(())
}

// Thirty runs killed with SIGKILL at spread-out moments never leave a torn install; the
// agent then completes the update, and nothing is left in its staging areas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_never_tears_an_install() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = pseudo_random(3 << 20, 1);
    let v2 = pseudo_random(3 << 20, 2);
    let (upstream, root, fleet) = agent_fleet(tmp.path(), &v1).await.unwrap();
    let data = tmp.path().join("agent");
    let status = agent(&data, &fleet, &root).status().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(installed_patterns(&data).unwrap(), v1);

    publish_patterns(&upstream, &fleet, "2", &v2).await.unwrap();
    let mut saw_old_after_kill = 0;
    for i in 0..30u64 {
        let mut child = agent(&data, &fleet, &root).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(20 + (i * 37) % 400)).await;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let now = installed_patterns(&data).expect("an installed version is always there");
        assert!(
            now == v1 || now == v2,
            "run {i}: torn install ({} bytes)",
            now.len()
        );
        if let Err(torn) = trust_files_whole(&data) {
            panic!("run {i}: {torn}");
        }
        if now == v1 {
            saw_old_after_kill += 1;
        }
        if now == v2 {
            break;
        }
    }
    let status = agent(&data, &fleet, &root).status().unwrap();
    assert!(matches!(status.code(), Some(0 | 3)), "{status:?}");
    assert_eq!(installed_patterns(&data).unwrap(), v2);
    assert!(
        saw_old_after_kill > 0,
        "no kill landed before the switch; the test proved nothing"
    );
    let item = data.join("installed/components/patterns");
    let leftovers: Vec<String> = std::fs::read_dir(&item)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".stage-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
