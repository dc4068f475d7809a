//! Progressive rollouts with a real server and real agent daemons on 127.0.4.x
//! (`docs/operating.md#rollouts`): a program version started in rings reaches only the
//! clients of the rings reached (the others keep the previous version, cycle after cycle);
//! a ring is promoted when its soak is over; a ring whose clients cannot install the build
//! halts the rollout by itself (audit log) while the rest keep the previous version; a roll
//! back brings every client back to the previous version. Agents run a cycle every second;
//! "keeps the previous version" is checked on a report finished after the change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use cascade_client::proto::{
    ClientView, ClientsQuery, NewRollout, ProgramUpload, RingSpec, RolloutAction, RolloutState,
    RolloutView,
};
use cascade_client::AdminClient;
use cascade_core::Category;
use cascade_testkit::{wait_until, AgentHandle, Fleet};

const APP: &str = "app";
const WAIT: Duration = Duration::from_secs(90);

async fn upload(api: &AdminClient, version: &str, bytes: &[u8]) {
    let up = ProgramUpload {
        file: "app.bin".into(),
        hotfix: false,
        sha256: None,
    };
    api.upload_program(
        APP,
        version,
        &up,
        reqwest::Body::from(bytes.to_vec()),
        bytes.len() as u64,
    )
    .await
    .unwrap();
}

/// The client record of the agent named `name` (its IP).
async fn record(api: &AdminClient, name: &str) -> Option<ClientView> {
    let list = api.clients(&ClientsQuery::default()).await.ok()?;
    let id = list.clients.iter().find(|c| c.name == name)?.id.clone();
    api.client_record(&id).await.ok()
}

/// The version of [`APP`] the client reports installed.
fn app_version(v: &ClientView) -> Option<String> {
    v.installed.get(&Category::Programs).and_then(|s| {
        s.split(", ")
            .find_map(|item| item.strip_prefix(&format!("{APP} ")))
            .map(str::to_owned)
    })
}

/// Waits until `name` reports a cycle finished after `after` (unix seconds); its record then.
async fn cycled_after(api: &AdminClient, name: &str, after: i64) -> ClientView {
    wait_until(WAIT, || async {
        record(api, name).await.is_some_and(|v| {
            v.last_update
                .as_ref()
                .and_then(|r| r.finished_at)
                .is_some_and(|t| t > after)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{name} ran no cycle after {after}: {e}"));
    record(api, name).await.unwrap()
}

async fn wait_version(api: &AdminClient, name: &str, version: &str) {
    wait_until(WAIT, || async {
        record(api, name)
            .await
            .is_some_and(|v| app_version(&v).as_deref() == Some(version))
    })
    .await
    .unwrap_or_else(|e| panic!("{name} never installed {APP} {version}: {e}"));
}

async fn wait_rollout(
    api: &AdminClient,
    id: i64,
    what: &str,
    ok: impl Fn(&RolloutView) -> bool,
) -> RolloutView {
    wait_until(WAIT, || async {
        api.rollout(id).await.is_ok_and(|r| ok(&r))
    })
    .await
    .unwrap_or_else(|e| panic!("rollout {id} never {what}: {e}"));
    api.rollout(id).await.unwrap()
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Agents on 127.0.4.`n` for each `n`, one cycle a second; each named by its IP.
fn agents(fleet: &Fleet, dir: &Path, root: &Path, hosts: &[u8]) -> Vec<AgentHandle> {
    hosts
        .iter()
        .map(|n| {
            let ip = std::net::IpAddr::from([127, 0, 4, *n]);
            let mut cfg = fleet.agent_config(&dir.join(format!("a{n}")), ip, None, Some(root));
            cfg.interval = Duration::from_secs(1);
            AgentHandle::spawn(cfg)
        })
        .collect()
}

/// Waits until the audit log has the server's own record of `path` (written just after the
/// change it records).
async fn audited(api: &AdminClient, path: &str) {
    wait_until(WAIT, || async {
        api.audit().await.is_ok_and(|a| {
            a.entries
                .iter()
                .any(|e| e.actor == "server:rollouts" && e.path == path)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("no audit record of {path}: {e}"));
}

fn ring(name: &str, soak_secs: u64) -> RingSpec {
    RingSpec {
        name: name.into(),
        soak_secs,
        ..RingSpec::default()
    }
}

// Ring 1 (a client by name) gets v2 alone and soaks an hour: the others keep v1 until it is
// promoted by hand to ring 2 (an IP range); after ring 2's soak the server promotes ring 3
// by itself and the rollout completes; a roll back brings everyone back to v1. (Only the
// soak that must not end during the test is long: how soon an agent cycles is not timed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_goes_out_ring_by_ring_and_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (_upstream, root, fleet) = cascade_testkit::upstream_and_server(tmp.path(), b"patterns")
        .await
        .unwrap();
    let api = fleet.api();
    upload(api, "1", b"app build one").await;
    let _agents = agents(&fleet, tmp.path(), &root, &[1, 2, 3]);
    for n in 1..=3 {
        wait_version(api, &format!("127.0.4.{n}"), "1").await;
    }

    let started = api
        .start_rollout(&NewRollout {
            program: APP.into(),
            version: "2".into(),
            previous_version: None,
            rings: vec![
                RingSpec {
                    clients: vec!["127.0.4.1".into()],
                    ..ring("canary", 3600)
                },
                RingSpec {
                    ip_ranges: vec!["127.0.4.2/32".into()],
                    ..ring("lab", 3)
                },
                RingSpec {
                    percent: Some(100.0),
                    ..ring("everyone", 0)
                },
            ],
        })
        .await
        .unwrap();
    assert_eq!(started.state, RolloutState::Rolling);
    assert_eq!(started.ring, 1);
    assert_eq!(
        started.previous_version.as_deref(),
        Some("1"),
        "the newest published version before 2"
    );
    upload(api, "2", b"app build two, a little longer").await;
    let published = now();

    // Ring 1 installs v2; the others run cycles after the publish and keep v1.
    wait_version(api, "127.0.4.1", "2").await;
    for n in [2, 3] {
        let v = cycled_after(api, &format!("127.0.4.{n}"), published + 1).await;
        assert_eq!(
            app_version(&v).as_deref(),
            Some("1"),
            "127.0.4.{n} is outside ring 1"
        );
    }

    // The canary soaks an hour: promoted by hand to ring 2.
    let by_hand = api
        .rollout_action(
            started.id,
            "promote",
            &RolloutAction {
                reason: Some("canary is fine".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(by_hand.ring, 2);
    assert_eq!(by_hand.state, RolloutState::Rolling);
    assert_eq!(by_hand.rings[0].updated, 1);
    assert_eq!(by_hand.rings[0].failures, 0);
    audited(api, &format!("/api/rollouts/{}/promote", started.id)).await;
    wait_version(api, "127.0.4.2", "2").await;

    // Ring 2 soaks 3 s with no failure: the server promotes ring 3 (no soak) by itself, and
    // the rollout completes.
    let done = wait_rollout(api, started.id, "completed", |r| {
        r.state == RolloutState::Completed
    })
    .await;
    assert_eq!(done.rings[1].updated, 1);
    assert_eq!(done.rings[1].failures, 0);
    wait_version(api, "127.0.4.3", "2").await;

    // Roll back: every client is pinned to v1 again and installs it.
    let back = api
        .rollout_action(started.id, "rollback", &RolloutAction::default())
        .await
        .unwrap();
    assert_eq!(back.state, RolloutState::RolledBack);
    for n in 1..=3 {
        wait_version(api, &format!("127.0.4.{n}"), "1").await;
    }
    // A rolled-back rollout cannot be rolled back again.
    let again = api
        .rollout_action(started.id, "rollback", &RolloutAction::default())
        .await
        .unwrap_err();
    assert!(again.to_string().contains("rollout.state"), "{again}");
}

// A build ring 1 cannot install (its published bytes are damaged on the server's disk, so
// every download fails its signed hash) halts the rollout in ring 1 by itself; the other
// clients keep v1, cycle after cycle; the halt is in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_ring_halts_and_the_rest_keep_the_previous_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (_upstream, root, fleet) = cascade_testkit::upstream_and_server(tmp.path(), b"patterns")
        .await
        .unwrap();
    let api = fleet.api();
    upload(api, "1", b"app build one").await;
    let _agents = agents(&fleet, tmp.path(), &root, &[11, 12, 13]);
    for n in [11, 12, 13] {
        wait_version(api, &format!("127.0.4.{n}"), "1").await;
    }
    // The bad build is uploaded and damaged while a first rollout of it reaches no client
    // (so nobody can fetch it before the damage), then that one is halted and the real one
    // started: the canary first.
    let hold = api
        .start_rollout(&NewRollout {
            program: APP.into(),
            version: "2".into(),
            previous_version: Some("1".into()),
            rings: vec![RingSpec {
                clients: vec!["nobody".into()],
                ..ring("nobody", 3600)
            }],
        })
        .await
        .unwrap();
    upload(api, "2", b"a bad build").await;
    let damaged = damage(&fleet.site.public_dir().join("targets"), "programs/app/2/");
    assert!(damaged > 0, "the build's files are on the server's disk");
    api.rollout_action(hold.id, "halt", &RolloutAction::default())
        .await
        .unwrap();
    let started = api
        .start_rollout(&NewRollout {
            program: APP.into(),
            version: "2".into(),
            previous_version: None,
            rings: vec![
                RingSpec {
                    clients: vec!["127.0.4.11".into()],
                    ..ring("canary", 3600)
                },
                RingSpec {
                    percent: Some(100.0),
                    ..ring("everyone", 0)
                },
            ],
        })
        .await
        .unwrap();
    assert_eq!(
        started.previous_version.as_deref(),
        Some("1"),
        "what the halted rollout kept everyone else on"
    );
    let published = now();

    let halted = wait_rollout(api, started.id, "halted", |r| {
        r.state == RolloutState::Halted
    })
    .await;
    assert_eq!(halted.ring, 1, "halted in ring 1");
    assert_eq!(halted.rings[0].failures, 1);
    assert_eq!(halted.rings[0].updated, 0);
    assert!(
        halted
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("halted automatically in ring 1")),
        "{:?}",
        halted.reason
    );
    audited(api, &format!("/api/rollouts/{}/halt", started.id)).await;
    // The canary never installed the bad build; the others keep v1 cycle after cycle and
    // never even tried it (no failed programs step in their reports).
    for n in [11, 12, 13] {
        let v = cycled_after(api, &format!("127.0.4.{n}"), published + 1).await;
        assert_eq!(app_version(&v).as_deref(), Some("1"), "127.0.4.{n}");
        let tried = v.last_update.as_ref().unwrap().attempts.iter().any(|a| {
            a.category == Some(Category::Programs)
                && a.reason.as_ref().and_then(|r| r.failure()).is_some()
        });
        assert_eq!(tried, n == 11, "127.0.4.{n}: {:?}", v.last_update);
    }
    // A halted rollout stays halted: no promotion by the clock.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = api.rollout(started.id).await.unwrap();
    assert_eq!(still.state, RolloutState::Halted);
    assert_eq!(still.ring, 1);
}

/// Overwrites every file under `targets` whose path (relative) starts with `prefix`;
/// returns how many.
fn damage(targets: &Path, prefix: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![targets.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .strip_prefix(targets)
                .unwrap()
                .to_string_lossy()
                .starts_with(prefix)
            {
                std::fs::write(&path, b"not the signed bytes").unwrap();
                n += 1;
            }
        }
    }
    n
}
