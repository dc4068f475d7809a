//! A client clock that was ahead once (`faketime`) must not lock the agent out: the cycle at the
//! wrong time fails on expired metadata and stores no time, and the next cycles on the right
//! clock update as usual (`docs/operating.md#agent-self-repair`). Needs `faketime` (the
//! scripts install it with apt when missing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use cascade_testkit::cli::{agent_fleet, agent_once_args, installed_patterns, publish_patterns};
use cascade_testkit::Fleet;

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
    cmd.args(agent_once_args(data, "127.0.1.51", fleet, root))
        .env("CASCADE_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
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
    let (upstream, root, fleet) = agent_fleet(tmp.path(), b"one").await.unwrap();
    let data = tmp.path().join("agent");
    let status = agent(&data, &fleet, &root, None).status().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(installed_patterns(&data).unwrap(), b"one");

    let status = agent(&data, &fleet, &root, Some("+30d")).status().unwrap();
    assert_ne!(
        status.code(),
        Some(0),
        "metadata must be expired 30 days ahead"
    );

    publish_patterns(&upstream, &fleet, "2", b"two")
        .await
        .unwrap();
    let status = agent(&data, &fleet, &root, None).status().unwrap();
    assert_eq!(status.code(), Some(0), "locked out after one cycle ahead");
    assert_eq!(installed_patterns(&data).unwrap(), b"two");
}
