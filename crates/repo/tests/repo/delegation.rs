//! Program builds signed by a build team through a delegation
//! (`docs/operating.md#delegated-program-builds`): the top-level targets role delegates
//! `programs/...` paths to the team's key, which the publisher never holds; the team signs its
//! role offline, the publisher checks and publishes it; clients list and save the team's
//! builds through the delegation and refuse a role the delegated key did not sign or a target
//! outside the delegated paths.

use std::path::{Path, PathBuf};

use cascade_core::Category;
use cascade_repo::{
    generate_team_key, read_public_key, sign_delegated, DelegatedBuild, Delegation, PublishError,
    SignedDelegated,
};

use crate::common::{fast_limits, serve, Fixture, SourceOf};

const ROLE: &str = "build-team";

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn in_a_month() -> jiff::Timestamp {
    now() + jiff::SignedDuration::from_hours(24 * 30)
}

/// A team key in `dir`: (private key file, public key file).
fn team_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let private = dir.join(format!("{name}.pk8"));
    let public = generate_team_key(&private, None).unwrap();
    (private, public)
}

async fn delegate(fx: &Fixture, public: &Path, paths: &[&str]) {
    let d = Delegation {
        role: ROLE.to_owned(),
        keys: vec![read_public_key(public, None).unwrap()],
        threshold: 1,
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    };
    fx.publisher.delegate(&d, now()).await.unwrap();
}

/// The team's build `programs/NAME/VERSION/tool.bin` holding `bytes`, signed with `key` over
/// the role the publisher serves now; its content staged in `incoming/SHA256`.
async fn team_build(
    fx: &Fixture,
    key: &Path,
    name: &str,
    version: &str,
    bytes: &[u8],
) -> (SignedDelegated, PathBuf) {
    let dir = fx.tmp.path().join("builds").join(name).join(version);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tool.bin");
    std::fs::write(&file, bytes).unwrap();
    let previous = fx.publisher.delegated_role(ROLE).unwrap();
    let build = DelegatedBuild {
        name,
        version,
        file: &file,
        hotfix: false,
    };
    let signed = sign_delegated(ROLE, previous.as_deref(), build, key, None, in_a_month())
        .await
        .unwrap();
    let incoming = fx.tmp.path().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(incoming.join(&signed.sha256), bytes).unwrap();
    (signed, incoming)
}

// The team's builds are listed through the delegation, newest per program, and saved with
// their signed hash; the publisher never held the team's key.
#[tokio::test]
async fn a_delegated_build_is_listed_and_saved() {
    let fx = Fixture::new().await;
    let (key, public) = team_key(&fx.tmp.path().join("team"), "team");
    delegate(&fx, &public, &["programs/*/*/*"]).await;
    let server = serve(&fx.public()).await;
    let client = fx.client(fast_limits());

    // Delegated but nothing signed yet: nothing listed, nothing refused.
    let loaded = client.open(&server.source("origin")).await.unwrap();
    assert!(loaded.newest(Category::Programs).is_empty());
    assert_eq!(loaded.refused_delegation(Category::Programs), None);

    let (signed, incoming) = team_build(&fx, &key, "tool", "1.0", b"tool one").await;
    assert_eq!(signed.version, 1);
    let added = fx
        .publisher
        .publish_delegated(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].name, "programs/tool/1.0/tool.bin");
    let (signed, incoming) = team_build(&fx, &key, "tool", "1.1", b"tool two").await;
    assert_eq!(signed.version, 2);
    let added = fx
        .publisher
        .publish_delegated(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap();
    assert_eq!(added.len(), 1, "only the new build is added: {added:?}");

    // Only the role's own file names the builds: the top-level targets list none; the
    // publisher's listing has them.
    assert!(fx.publisher.targets().unwrap().targets.is_empty());
    let listed: Vec<String> = fx
        .publisher
        .listed(Category::Programs)
        .unwrap()
        .into_iter()
        .map(|l| l.path.to_string())
        .collect();
    assert_eq!(
        listed,
        ["programs/tool/1.1/tool.bin", "programs/tool/1.0/tool.bin"]
    );
    let loaded = client.open(&server.source("origin")).await.unwrap();
    let newest = loaded.newest(Category::Programs);
    assert_eq!(newest.len(), 1, "{newest:?}");
    assert_eq!(newest[0].name, "tool");
    assert_eq!(newest[0].version, "1.1");
    let stage = fx.staging("tool");
    let got = loaded.save_into(&newest[0], None, &stage).await.unwrap();
    assert_eq!(got.version, "1.1");
    assert_eq!(std::fs::read(stage.join("tool.bin")).unwrap(), b"tool two");
    let listed: Vec<String> = loaded.files().iter().map(|f| f.path.to_string()).collect();
    assert_eq!(
        listed,
        ["programs/tool/1.0/tool.bin", "programs/tool/1.1/tool.bin"]
    );

    // A second client, and the same one again (its stored role is used), agree.
    let again = client.open(&server.source("origin")).await.unwrap();
    assert_eq!(again.newest(Category::Programs), newest);
}

// The publisher refuses, and serves nothing new for: a role signed by a key the delegation
// does not name, a target outside the delegated paths, an older version, a role nobody
// delegated, and content that was not uploaded.
#[tokio::test]
async fn the_publisher_refuses_what_the_delegation_does_not_allow() {
    let fx = Fixture::new().await;
    let (key, public) = team_key(&fx.tmp.path().join("team"), "team");
    let (wrong, _) = team_key(&fx.tmp.path().join("other"), "wrong");
    delegate(&fx, &public, &["programs/tool/*/*"]).await;
    let served = || fx.served("metadata/timestamp.json");
    let before = served();

    let (signed, incoming) = team_build(&fx, &wrong, "tool", "1.0", b"by the wrong key").await;
    let e = fx
        .publisher
        .publish_delegated(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "delegation.refused", "{e}");
    assert!(e.to_string().contains("not signed by a threshold"), "{e}");

    let (signed, incoming) = team_build(&fx, &key, "other", "1.0", b"outside").await;
    let e = fx
        .publisher
        .publish_delegated(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "delegation.refused", "{e}");
    assert!(e.to_string().contains("outside the paths"), "{e}");

    let e = fx
        .publisher
        .publish_delegated("nobody", &signed.metadata, &incoming, now())
        .await
        .unwrap_err();
    assert!(matches!(e, PublishError::NotDelegated(_)), "{e}");

    let (signed, incoming) = team_build(&fx, &key, "tool", "1.0", b"tool one").await;
    std::fs::remove_file(incoming.join(&signed.sha256)).unwrap();
    let e = fx
        .publisher
        .publish_delegated(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "delegation.file_missing", "{e}");
    assert_eq!(served(), before, "nothing was published");

    let (signed, incoming) = team_build(&fx, &key, "tool", "1.0", b"tool one").await;
    fx.publisher
        .publish_delegated(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap();
    let e = fx
        .publisher
        .publish_delegated(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not newer"), "{e}");

    // The team never re-signs a role it did not sign itself.
    let served_role = fx.publisher.delegated_role(ROLE).unwrap().unwrap();
    let file = fx.tmp.path().join("x.bin");
    std::fs::write(&file, b"x").unwrap();
    let build = DelegatedBuild {
        name: "tool",
        version: "2.0",
        file: &file,
        hotfix: false,
    };
    let e = sign_delegated(ROLE, Some(&served_role), build, &wrong, None, in_a_month())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "delegation.refused", "{e}");

    // Delegations are for programs, with whole target names.
    for paths in [vec!["programs/*"], vec!["components/*/*/*"], vec![]] {
        let d = Delegation {
            role: ROLE.to_owned(),
            keys: vec![read_public_key(&public, None).unwrap()],
            threshold: 1,
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        };
        let e = fx.publisher.delegate(&d, now()).await.unwrap_err();
        assert_eq!(e.code(), "delegation.bad", "{paths:?}: {e}");
    }
    let d = Delegation {
        role: "snapshot".to_owned(),
        keys: vec![read_public_key(&public, None).unwrap()],
        threshold: 1,
        paths: vec!["programs/*/*/*".to_owned()],
    };
    assert_eq!(
        fx.publisher.delegate(&d, now()).await.unwrap_err().code(),
        "delegation.bad"
    );
}

// A publisher that serves a role the delegated key did not sign (it holds the snapshot and
// timestamp keys, not the team's): clients list none of its builds and say why, for programs
// only; other content of the repository still comes.
#[tokio::test]
async fn clients_refuse_a_role_not_signed_by_the_delegated_key() {
    let fx = Fixture::new().await;
    let (_key, public) = team_key(&fx.tmp.path().join("team"), "team");
    let (wrong, _) = team_key(&fx.tmp.path().join("other"), "wrong");
    delegate(&fx, &public, &["programs/*/*/*"]).await;
    fx.publish("1", b"engine one").await;
    let (signed, incoming) = team_build(&fx, &wrong, "tool", "6.6.6", b"malware").await;
    fx.publisher
        .publish_delegated_unchecked(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap();
    let server = serve(&fx.public()).await;
    let client = fx.client(fast_limits());

    let loaded = client.open(&server.source("origin")).await.unwrap();
    assert!(loaded.newest(Category::Programs).is_empty());
    assert!(loaded.files().iter().all(|f| f.path.name() != "tool"));
    let why = loaded.refused_delegation(Category::Programs).unwrap();
    assert_eq!(why.code(), "tuf.bad_signature", "{why}");
    assert_eq!(loaded.refused_delegation(Category::Components), None);
    let engine = loaded.newest_of(Category::Components, "engine").unwrap();
    assert_eq!(engine.version, "1");

    let out = fx.staging("tool");
    let e = client
        .fetch_latest(
            &[server.source("origin")],
            Category::Programs,
            "tool",
            None,
            &out,
        )
        .await
        .unwrap_err();
    assert_eq!(e[0].1.code(), "tuf.bad_signature", "{e:?}");
    assert!(crate::common::files_under(&out).is_empty());
}

// A target the team's role lists outside the paths delegated to it is not trusted: the
// search never consults the role for that name.
#[tokio::test]
async fn clients_ignore_targets_outside_the_delegated_paths() {
    let fx = Fixture::new().await;
    let (key, public) = team_key(&fx.tmp.path().join("team"), "team");
    delegate(&fx, &public, &["programs/tool/*/*"]).await;
    let (signed, incoming) = team_build(&fx, &key, "tool", "1", b"tool").await;
    fx.publisher
        .publish_delegated(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap();
    let (signed, incoming) = team_build(&fx, &key, "agent", "9", b"not yours").await;
    fx.publisher
        .publish_delegated_unchecked(ROLE, &signed.metadata, &incoming, now())
        .await
        .unwrap();
    let server = serve(&fx.public()).await;
    let client = fx.client(fast_limits());
    let loaded = client.open(&server.source("origin")).await.unwrap();
    let names: Vec<String> = loaded
        .newest(Category::Programs)
        .into_iter()
        .map(|n| format!("{} {}", n.name, n.version))
        .collect();
    assert_eq!(names, ["tool 1"]);
    assert_eq!(loaded.refused_delegation(Category::Programs), None);
    let listed: Vec<String> = fx
        .publisher
        .listed(Category::Programs)
        .unwrap()
        .into_iter()
        .map(|l| l.path.to_string())
        .collect();
    assert_eq!(listed, ["programs/tool/1/tool.bin"]);
}
