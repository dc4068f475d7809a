//! A client clock that was ahead once (`faketime`) must not lock the agent out: the cycle at the
//! wrong time fails on expired metadata and stores no time, and the next cycles on the right
//! clock update as usual (`docs/operating.md#agent-self-repair`). Needs `faketime` (the
//! scripts install it with apt when missing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use cascade_core::Category;
use cascade_testkit::{upstream_and_server, Fleet};

fn agent(
    data: &std::path::Path,
    fleet: &Fleet,
    root: &std::path::Path,
    ahead: Option<&str>,
) -> Command {
    let mut cmd = match ahead {
        Some(offset) => {
            let mut c = Command::new("faketime");
            c.args(["-f", offset]).arg(env!("CARGO_BIN_EXE_cascade"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_cascade")),
    };
    cmd.args(["agent", "--once", "--bind-ip", "127.0.1.51", "--data-dir"])
        .arg(data)
        .arg("--server")
        .arg(fleet.url.as_str())
        .arg("--enroll-token")
        .arg(&fleet.enroll)
        .arg("--upstream-root")
        .arg(root)
        .arg("--site-root")
        .arg(fleet.site.public_dir().join("metadata/1.root.json"))
        .env("CASCADE_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn installed(data: &std::path::Path) -> Option<Vec<u8>> {
    std::fs::read(data.join("installed/components/patterns/current/patterns.db")).ok()
}

// One cycle 30 days ahead (expired, fails), then cycles at the right time: they install the
// next release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_with_the_clock_ahead_does_not_lock_the_agent_out() {
    let faketime = Command::new("faketime").arg("--version").output();
    assert!(
        faketime.is_ok(),
        "this test needs faketime (apt-get install faketime)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, root, fleet) = upstream_and_server(tmp.path(), b"one").await.unwrap();
    fleet
        .apply_policy(&format!(
            "activeupdate_url = \"{}\"",
            upstream.url().unwrap()
        ))
        .await
        .unwrap();
    fleet.mirror().await.unwrap();
    let data = tmp.path().join("agent");
    let status = agent(&data, &fleet, &root, None).status().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(installed(&data).unwrap(), b"one");

    let status = agent(&data, &fleet, &root, Some("+30d")).status().unwrap();
    assert_ne!(
        status.code(),
        Some(0),
        "metadata must be expired 30 days ahead"
    );

    upstream
        .publish(
            Category::Components,
            "patterns",
            "2",
            &[("patterns.db", b"two")],
        )
        .await
        .unwrap();
    fleet.mirror().await.unwrap();
    let status = agent(&data, &fleet, &root, None).status().unwrap();
    assert_eq!(status.code(), Some(0), "locked out after one cycle ahead");
    assert_eq!(installed(&data).unwrap(), b"two");
}
