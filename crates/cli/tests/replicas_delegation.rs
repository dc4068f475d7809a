//! Delegations on replicas (`docs/operating.md#delegated-program-builds`,
//! `docs/operating.md#shared-repository-and-one-writer`): two real `cascade server` processes
//! on one PostgreSQL database. `cascade repo delegate --server` on replica A goes through the
//! one writer of the site repository, so the delegation is a stored tree version: a later
//! program publish on replica B keeps it, both replicas serve it, and a build team's
//! delegated publish works on either. Fails, never skips, without PostgreSQL
//! (`cascade_testkit::postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::ffi::OsString;
use std::process::Output;
use std::time::Duration;

use cascade_client::proto::ProgramUpload;
use cascade_testkit::cli::{
    cascade_command, output, output_text as text, replicas_on_postgres, BuildTeam, SiteRepo,
};
use cascade_testkit::replicas::Replicas;

const ROLE: &str = "build-team";
const EXE: &str = env!("CARGO_BIN_EXE_cascade");

async fn cascade(args: Vec<OsString>, r: &Replicas) -> Output {
    output(cascade_command(EXE, &r.secrets.admin_token, args))
        .await
        .unwrap()
}

/// `signed.meta[name].version` of metadata `bytes`.
fn listed(bytes: &[u8], name: &str) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(bytes).ok()?["signed"]["meta"][name]["version"]
        .as_u64()
}

/// The targets role replica `i` serves now (through its timestamp and snapshot).
async fn served_targets(r: &Replicas, i: usize) -> serde_json::Value {
    served(r, i).await.1
}

/// The snapshot and the targets role replica `i` serves now.
async fn served(r: &Replicas, i: usize) -> (Vec<u8>, serde_json::Value) {
    let c = r.client(i).unwrap();
    let md = "repo/site/metadata";
    let ts = c.repo_file(&format!("{md}/timestamp.json")).await.unwrap();
    let snapshot_version = listed(&ts, "snapshot.json").unwrap();
    let snapshot = c
        .repo_file(&format!("{md}/{snapshot_version}.snapshot.json"))
        .await
        .unwrap();
    let targets_version = listed(&snapshot, "targets.json").unwrap();
    let targets = c
        .repo_file(&format!("{md}/{targets_version}.targets.json"))
        .await
        .unwrap();
    (snapshot, serde_json::from_slice(&targets).unwrap())
}

/// The targets role replica `i` serves once `done` holds of it (or after 30 s, the last one).
async fn served_once(
    r: &Replicas,
    i: usize,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let targets = served_targets(r, i).await;
        if done(&targets) || tokio::time::Instant::now() > deadline {
            return targets;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The roles `targets` delegates to.
fn delegated_roles(targets: &serde_json::Value) -> Vec<String> {
    targets["signed"]["delegations"]["roles"]
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn names(targets: &serde_json::Value) -> Vec<String> {
    targets["signed"]["targets"]
        .as_object()
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

// `cascade repo delegate --server A` is stored: a program published on B afterwards keeps the
// delegation, both replicas serve it, and the team publishes through it on B and then on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_made_on_one_replica_survives_a_publish_on_another() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let r = replicas_on_postgres(EXE, dir, 2, &[]).await.unwrap();
    let ca = r.replicas[0].data_dir.join("tls/ca.pem");
    let url = |i: usize| r.replicas[i].url.to_string();

    let team = BuildTeam::create(EXE, &r.secrets.admin_token, &dir.join("team"), "team", ROLE)
        .await
        .unwrap();

    // A bad delegation is refused by the server, naming what is wrong; nothing is signed.
    let first = url(0);
    let site = SiteRepo::Server {
        url: &first,
        ca: &ca,
    };
    let delegate = |paths: &str| team.delegate_args(site, paths);
    let out = cascade(delegate("domain-settings/*/*/*"), &r).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("programs/NAME/VERSION/FILE"),
        "{}",
        text(&out)
    );
    assert!(delegated_roles(&served_targets(&r, 0).await).is_empty());

    let out = cascade(delegate("programs/tool/*/*"), &r).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("targets now delegate programs/tool/*/* to role build-team"),
        "{}",
        text(&out)
    );
    assert_eq!(delegated_roles(&served_targets(&r, 0).await), vec![ROLE]);

    // A publish on replica B, after the delegation: B's tree is the stored one, which has it.
    let build = b"a program published on replica 2".to_vec();
    let length = build.len() as u64;
    r.admin(1)
        .unwrap()
        .upload_program(
            "other",
            "1.0",
            &ProgramUpload {
                file: "other.bin".into(),
                hotfix: false,
                sha256: None,
            },
            reqwest::Body::from(build),
            length,
        )
        .await
        .unwrap();
    let other = "programs/other/1.0/other.bin".to_owned();
    for i in [1, 0] {
        let served = served_once(&r, i, |t| names(t).contains(&other)).await;
        assert!(
            names(&served).contains(&other),
            "replica {} never served the publish: {served}",
            i + 1
        );
        assert_eq!(
            delegated_roles(&served),
            vec![ROLE],
            "replica {} lost the delegation after the publish on replica 2: {served}",
            i + 1
        );
    }

    // The team publishes through the delegation on B, then on A.
    for (i, version) in [(1, "1.0"), (0, "1.1")] {
        let build = format!("tool {version}");
        let publish = team
            .publish_args(&url(i), &ca, dir, "tool", version, build.as_bytes())
            .unwrap();
        let out = cascade(publish, &r).await;
        assert!(out.status.success(), "replica {}: {}", i + 1, text(&out));
    }
    // Both replicas serve the role's second version, under the delegation.
    for i in [0, 1] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let (snapshot, targets) = loop {
            let (snapshot, targets) = served(&r, i).await;
            let role = listed(&snapshot, &format!("{ROLE}.json"));
            if role == Some(2) || tokio::time::Instant::now() > deadline {
                break (snapshot, targets);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            listed(&snapshot, &format!("{ROLE}.json")),
            Some(2),
            "replica {}: {}",
            i + 1,
            String::from_utf8_lossy(&snapshot)
        );
        assert_eq!(
            delegated_roles(&targets),
            vec![ROLE],
            "replica {}: {targets}",
            i + 1
        );
        assert!(
            names(&targets).contains(&other),
            "replica {}: {targets}",
            i + 1
        );
    }
    r.finish().await.unwrap();
}
