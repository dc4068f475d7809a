//! `cascade rollouts …` against a real server (`docs/operating.md#rollouts`): start with
//! `--ring` specs, list, show, halt, promote and roll back, tables or the server's JSON;
//! a bad ring spec and the server's refusals exit 2 naming the cause.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::process::Output;

use cascade_client::proto::{RolloutState, RolloutView};
use cascade_testkit::cli::{admin_command, admin_fleet, output, text};
use cascade_testkit::Fleet;

/// Runs `cascade ARGS --server URL` as the fleet's admin, with no config file.
async fn cascade(fleet: &Fleet, args: &[&str]) -> Output {
    let cmd = admin_command(env!("CARGO_BIN_EXE_cascade"), fleet, &fleet.admin, args);
    output(cmd).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_commands_over_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = admin_fleet(tmp.path()).await.unwrap();

    // A ring spec the command cannot read: exit 2 before any call.
    let out = cascade(
        &fleet,
        &["rollouts", "start", "app", "2", "--ring", "x percent=lots"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("percent=`lots`"),
        "{}",
        text(&out.stderr)
    );
    // One the server refuses: exit 2 with its code, nothing stored.
    let out = cascade(
        &fleet,
        &["rollouts", "start", "app", "2", "--ring", "nobody"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("rollout.ring_empty"),
        "{}",
        text(&out.stderr)
    );

    let out = cascade(
        &fleet,
        &[
            "rollouts",
            "start",
            "app",
            "2",
            "--ring",
            "canary clients=pc-1,pc-2 ips=10.0.0.0/24 soak=600 max-failures=1",
            "--ring",
            "everyone percent=100",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: RolloutView = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v.id, v.state, v.ring), (1, RolloutState::Rolling, 1));
    assert_eq!(v.rings[0].spec.clients, ["pc-1", "pc-2"]);
    assert_eq!(v.rings[0].spec.ip_ranges, ["10.0.0.0/24"]);
    assert_eq!(
        (v.rings[0].spec.soak_secs, v.rings[0].spec.max_failures),
        (600, 1)
    );
    assert_eq!(v.rings[1].spec.percent, Some(100.0));
    assert_eq!(
        v.previous_version, None,
        "nothing of app was published before"
    );

    let out = cascade(&fleet, &["rollouts", "list"]).await;
    let list = text(&out.stdout);
    assert!(
        out.status.success() && list.contains("rolling") && list.contains("1/2 canary"),
        "{list}"
    );

    let out = cascade(
        &fleet,
        &[
            "rollouts",
            "halt",
            "1",
            "--reason",
            "a bad report",
            "--json",
        ],
    )
    .await;
    let v: RolloutView = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v.state, v.reason.as_deref()),
        (RolloutState::Halted, Some("a bad report"))
    );

    let out = cascade(&fleet, &["rollouts", "promote", "1"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("rollout 1: rolling, ring 2/2"),
        "{}",
        text(&out.stdout)
    );

    let out = cascade(&fleet, &["rollouts", "rollback", "1"]).await;
    assert!(
        text(&out.stdout).contains("rolled_back"),
        "{}",
        text(&out.stdout)
    );
    let out = cascade(&fleet, &["rollouts", "rollback", "1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("rollout.state"),
        "{}",
        text(&out.stderr)
    );

    let out = cascade(&fleet, &["rollouts", "show", "1"]).await;
    let shown = text(&out.stdout);
    assert!(
        shown.contains("canary") && shown.contains("clients pc-1,pc-2"),
        "{shown}"
    );
    let out = cascade(&fleet, &["rollouts", "show", "7"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
