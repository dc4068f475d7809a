//! Delegations on replicas (`docs/operating.md#delegated-program-builds`,
//! `docs/operating.md#shared-repository-and-one-writer`): two real `cascade server` processes
//! on one PostgreSQL database. `cascade repo delegate --server` on replica A goes through the
//! one writer of the site repository, so the delegation is a stored tree version: a later
//! program publish on replica B keeps it, both replicas serve it, and a build team's
//! delegated publish works on either. Fails, never skips, without PostgreSQL
//! (`cascade_testkit::postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cascade_client::proto::ProgramUpload;
use cascade_testkit::postgres::Database;
use cascade_testkit::replicas::Replicas;

const ROLE: &str = "build-team";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cascade"))
}

async fn cascade(args: Vec<String>, r: &Replicas, dir: &Path) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(&args)
        .env("CASCADE_TOKEN", &r.secrets.admin_token)
        .env("CASCADE_CONFIG", dir.join("no-config.toml"))
        .env_remove("CASCADE_KEY_PASSPHRASE")
        .env_remove("CASCADE_SERVER")
        .env_remove("CASCADE_CA");
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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
    let pg = Database::new().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut r = Replicas::start(bin(), dir, &pg.url, 2, &[]).await.unwrap();
    let ca = r.replicas[0].data_dir.join("tls/ca.pem");
    let url = |i: usize| r.replicas[i].url.to_string();

    let key = dir.join("team/team.pk8");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let out = cascade(
        vec![
            "repo".into(),
            "team-key".into(),
            "--out".into(),
            key.display().to_string(),
        ],
        &r,
        dir,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let public: PathBuf = dir.join("team/team.pk8.pub.json");

    // A bad delegation is refused by the server, naming what is wrong; nothing is signed.
    let delegate = |paths: &str| {
        vec![
            "repo".to_owned(),
            "delegate".into(),
            "--server".into(),
            url(0),
            "--ca".into(),
            ca.display().to_string(),
            "--role".into(),
            ROLE.into(),
            "--key".into(),
            public.display().to_string(),
            "--paths".into(),
            paths.into(),
        ]
    };
    let out = cascade(delegate("domain-settings/*/*/*"), &r, dir).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("programs/NAME/VERSION/FILE"),
        "{}",
        text(&out)
    );
    assert!(delegated_roles(&served_targets(&r, 0).await).is_empty());

    let out = cascade(delegate("programs/tool/*/*"), &r, dir).await;
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
        let file = dir.join(format!("tool-{version}.bin"));
        std::fs::write(&file, format!("tool {version}")).unwrap();
        let out = cascade(
            vec![
                "publish".into(),
                "--server".into(),
                url(i),
                "--ca".into(),
                ca.display().to_string(),
                "--category".into(),
                "programs".into(),
                "--delegated-key".into(),
                key.display().to_string(),
                "--role".into(),
                ROLE.into(),
                "tool".into(),
                version.into(),
                file.display().to_string(),
            ],
            &r,
            dir,
        )
        .await;
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
    r.stop();
    pg.drop_db().await.unwrap();
}
