//! Program builds signed by a build team through a TUF delegation, end to end
//! (`docs/operating.md#delegated-program-builds`): a real server, the `cascade` command and an
//! agent on 127.x. The operator delegates `programs/tool/*/*` in the server's site repository
//! to the team's key (`cascade repo delegate`, with the targets key); the team signs on its
//! side (`cascade publish --server … --delegated-key`) and the server, which never holds the
//! team's key, publishes the build; the agent installs it through the delegation. A build
//! signed by another key, or outside the delegated paths, is refused by the server; a role a
//! compromised publisher serves with another key's signature is refused by the agent, and
//! nothing of it is installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cascade_client::proto::ClientsQuery;
use cascade_core::Category;
use cascade_testkit::cli::{cascade_command, output, output_text as text, BuildTeam, SiteRepo};
use cascade_testkit::{upstream_and_server, wait_until, AgentHandle, Fleet};

const ROLE: &str = "build-team";
const EXE: &str = env!("CARGO_BIN_EXE_cascade");

async fn cascade(args: Vec<OsString>, fleet: &Fleet) -> Output {
    output(cascade_command(EXE, &fleet.admin, args))
        .await
        .unwrap()
}

/// The team's `cascade publish --server … --delegated-key KEY --role build-team NAME VERSION
/// FILE` of a build holding `bytes`.
async fn publish(
    fleet: &Fleet,
    dir: &Path,
    team: &BuildTeam,
    name: &str,
    version: &str,
    bytes: &[u8],
) -> Output {
    let ca = fleet.data_dir.join("tls/ca.pem");
    let args = team
        .publish_args(fleet.url.as_str(), &ca, dir, name, version, bytes)
        .unwrap();
    cascade(args, fleet).await
}

// The team's build installs on an agent; builds of the wrong key or outside the delegated
// paths are refused by the server, a role signed by the wrong key by the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_signed_through_the_delegation_installs_and_others_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_upstream, root, fleet) = upstream_and_server(dir, b"one").await.unwrap();
    let site = fleet.data_dir.join("site-repo");
    let team = BuildTeam::create(EXE, &fleet.admin, &dir.join("team"), "team", ROLE)
        .await
        .unwrap();
    let wrong = BuildTeam::create(EXE, &fleet.admin, &dir.join("other"), "wrong", ROLE)
        .await
        .unwrap();

    let delegate = team.delegate_args(SiteRepo::Dir(&site), "programs/tool/*/*");
    let out = cascade(delegate, &fleet).await;
    assert!(out.status.success(), "{}", text(&out));
    // The server never sees the team's key.
    assert!(!text(&out).contains("team.pk8"));

    // Another key's signature, and a program outside the delegated paths: refused by the
    // server, nothing published.
    let out = publish(&fleet, dir, &wrong, "tool", "0.9", b"wrong key").await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("[delegation.refused]") && text(&out).contains("not signed"),
        "{}",
        text(&out)
    );
    let out = publish(&fleet, dir, &team, "other", "1.0", b"outside").await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("[delegation.refused]") && text(&out).contains("outside the paths"),
        "{}",
        text(&out)
    );

    let out = publish(&fleet, dir, &team, "tool", "1.0", b"tool one").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("published programs/tool/1.0/tool.bin (8 bytes")
            && text(&out).contains("signed by role build-team version 1"),
        "{}",
        text(&out)
    );
    // Listed with the server's builds; the server signed none of it (its own targets role
    // lists nothing).
    let listed = fleet.api().programs().await.unwrap().programs;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].target, "programs/tool/1.0/tool.bin");
    let publisher = cascade_repo::Publisher::open(&site, &site.join("offline-keys"));
    assert!(publisher.targets().unwrap().targets.is_empty());

    let mut cfg = fleet.agent_config(
        &dir.join("c1"),
        "127.0.4.21".parse().unwrap(),
        None,
        Some(&root),
    );
    cfg.interval = Duration::from_secs(1);
    let mut agent = AgentHandle::spawn(cfg);
    let api = fleet.api();
    let record = || async {
        let list = api.clients(&ClientsQuery::default()).await.ok()?;
        let id = list.clients.first()?.id.clone();
        api.client_record(&id).await.ok()
    };
    wait_until(Duration::from_secs(60), || async {
        record().await.is_some_and(|v| {
            v.installed.get(&Category::Programs).map(String::as_str) == Some("tool 1.0")
        })
    })
    .await
    .expect("the delegated build was never installed");
    let installed = files_named(&dir.join("c1"), "tool.bin");
    assert!(!installed.is_empty());
    for f in &installed {
        assert_eq!(std::fs::read(f).unwrap(), b"tool one", "{}", f.display());
    }

    // A compromised publisher (it holds the snapshot and timestamp keys, not the team's)
    // serves a newer role signed by another key: the agent refuses it and keeps 1.0.
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, b"malware").unwrap();
    let previous = publisher.delegated_role(ROLE).unwrap();
    assert!(previous.is_some());
    let signed = cascade_repo::sign_delegated(
        ROLE,
        None,
        cascade_repo::DelegatedBuild {
            name: "tool",
            version: "6.6.6",
            file: &bad,
            hotfix: false,
        },
        &wrong.key,
        None,
        cascade_repo::Timestamp::from_second(cascade_repo::Timestamp::now().as_second() + 86_400)
            .unwrap(),
    )
    .await
    .unwrap();
    let mut forged = signed.metadata.clone();
    // Its version must be newer than the served one for the snapshot to list it.
    let mut v: serde_json::Value = serde_json::from_slice(&forged).unwrap();
    v["signed"]["version"] = serde_json::json!(2);
    forged = serde_json::to_vec(&v).unwrap();
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(incoming.join(&signed.sha256), b"malware").unwrap();
    publisher
        .publish_delegated_unchecked(ROLE, &forged, &incoming, cascade_repo::Timestamp::now())
        .await
        .unwrap();
    let refused = |v: &cascade_client::proto::ClientView| {
        v.last_update.as_ref().is_some_and(|r| {
            r.attempts.iter().any(|a| {
                a.category == Some(Category::Programs)
                    && a.reason
                        .as_ref()
                        .and_then(|r| r.failure())
                        .is_some_and(|f| f.code == "tuf.bad_signature")
            })
        })
    };
    wait_until(Duration::from_secs(60), || async {
        record().await.is_some_and(|v| refused(&v))
    })
    .await
    .expect("the agent never refused the forged role");
    let v = record().await.unwrap();
    assert_eq!(
        v.installed.get(&Category::Programs).map(String::as_str),
        Some("tool 1.0")
    );
    for f in files_named(&dir.join("c1"), "tool.bin") {
        assert_eq!(std::fs::read(&f).unwrap(), b"tool one", "{}", f.display());
    }
    assert!(files_containing(&dir.join("c1"), b"malware").is_empty());
    agent.stop().await.unwrap();
}

/// Every file named `name` below `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect()
}

/// Every file below `dir` whose content is `bytes`.
fn files_containing(dir: &Path, bytes: &[u8]) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b == bytes))
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
