//! Key handling through the public API: a repository whose keys are encrypted signs only with
//! its passphrase, and a threshold root renews with as many root keys as its threshold and no
//! fewer (`docs/operating.md#keys-and-their-ceremony`).

use cascade_core::Category;
use cascade_repo::verify::verify;
use cascade_repo::{init_with, InitOptions, Passphrase, PublishOptions, Publisher};
use tough::schema::RoleType;

use crate::common::{fast_limits, serve, SourceOf};

#[allow(clippy::unnecessary_wraps)] // what `with_passphrase` and `InitOptions` take
fn pass(s: &str) -> Option<Passphrase> {
    Some(Passphrase::new(s).unwrap())
}

// Every key of an encrypted repository is encrypted; publishing works with the passphrase, and a
// wrong or missing one is a typed error that leaves the served repository as it was.
#[tokio::test]
async fn encrypted_keys_sign_only_with_their_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, keys) = (tmp.path().join("repo"), tmp.path().join("keys"));
    let opts = InitOptions {
        passphrase: pass("a long passphrase"),
        ..InitOptions::new(&keys)
    };
    let p = init_with(&repo, &opts, jiff::Timestamp::now())
        .await
        .unwrap();
    assert!(
        p.unencrypted_keys().is_empty(),
        "{:?}",
        p.unencrypted_keys()
    );
    let root = std::fs::read(p.public_dir().join("metadata/1.root.json")).unwrap();
    let src = tmp.path().join("data.bin");
    std::fs::write(&src, b"one").unwrap();
    let publish = |p: Publisher, version: &'static str| {
        let src = src.clone();
        async move {
            p.publish(
                Category::Components,
                "engine",
                version,
                &[src],
                PublishOptions::default(),
                jiff::Timestamp::now(),
            )
            .await
        }
    };
    let open = || Publisher::open(&repo, &keys);
    publish(open().with_passphrase(pass("a long passphrase")), "1")
        .await
        .unwrap();
    let timestamp = std::fs::read(repo.join("public/metadata/timestamp.json")).unwrap();
    let err = publish(open().with_passphrase(pass("the wrong one")), "2")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "key.wrong_passphrase");
    let err = publish(open(), "2").await.unwrap_err();
    assert_eq!(err.code(), "key.passphrase_needed");
    assert_eq!(
        std::fs::read(repo.join("public/metadata/timestamp.json")).unwrap(),
        timestamp
    );
    let server = serve(&repo.join("public")).await;
    let report = verify(&root, &server.source("o"), fast_limits())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.contents["components"]["engine"], ["1"]);
    // A plain repository says which of its key files are not encrypted.
    let plain = cascade_repo::init(
        &tmp.path().join("plain"),
        &tmp.path().join("plain-keys"),
        cascade_repo::Expiries::default(),
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    assert_eq!(plain.unencrypted_keys().len(), 4);
}

// A root of 3 keys with threshold 2 verifies, renews with any 2 of them (clients accept the new
// root), and refuses to renew with 1, leaving the repository verifiable.
#[tokio::test]
async fn threshold_root_two_of_three() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, keys) = (tmp.path().join("repo"), tmp.path().join("keys"));
    let opts = InitOptions {
        root_keys: 3,
        root_threshold: 2,
        ..InitOptions::new(&keys)
    };
    let p = init_with(&repo, &opts, jiff::Timestamp::now())
        .await
        .unwrap();
    let root_json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.public_dir().join("metadata/1.root.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(root_json["signed"]["roles"]["root"]["threshold"], 2);
    assert_eq!(
        root_json["signed"]["roles"]["root"]["keyids"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(root_json["signatures"].as_array().unwrap().len(), 3);
    let root = std::fs::read(p.public_dir().join("metadata/1.root.json")).unwrap();
    let server = serve(&repo.join("public")).await;
    let check = || async {
        verify(&root, &server.source("o"), fast_limits())
            .await
            .unwrap()
    };
    assert!(check().await.is_ok());
    // One key holder is away: two keys still make a root every client accepts.
    std::fs::rename(keys.join("root-2.pk8"), tmp.path().join("away-2.pk8")).unwrap();
    assert_eq!(p.renew(jiff::Timestamp::now()).await.unwrap(), 2);
    let report = check().await;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.versions["root"], 2);
    // Two are away: one key is below the threshold, so nothing is signed.
    std::fs::rename(keys.join("root-3.pk8"), tmp.path().join("away-3.pk8")).unwrap();
    let err = p.renew(jiff::Timestamp::now()).await.unwrap_err();
    assert_eq!(err.code(), "publish.sign");
    let report = check().await;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.versions["root"], 2);
    // A threshold above the number of keys is refused before anything is written.
    let bad = InitOptions {
        root_keys: 2,
        root_threshold: 3,
        ..InitOptions::new(&tmp.path().join("k2"))
    };
    let err = init_with(&tmp.path().join("r2"), &bad, jiff::Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "publish.bad_threshold");
    assert!(!tmp.path().join("r2").exists() && !tmp.path().join("k2").exists());
}

// Every role's key rotates: each new root lists the new key and is signed by the old root's
// keys (root's own rotation by the old and the new root key), the repository stays verifiable
// from the first root (the client follows the chain of roots), publishing goes on with the
// new keys, and the old key file is kept as `.retired-vN`.
#[tokio::test]
async fn rotated_keys_are_followed_from_the_first_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, keys) = (tmp.path().join("repo"), tmp.path().join("keys"));
    let p = init_with(&repo, &InitOptions::new(&keys), jiff::Timestamp::now())
        .await
        .unwrap();
    let root1 = std::fs::read(p.public_dir().join("metadata/1.root.json")).unwrap();
    let src = tmp.path().join("data.bin");
    let server = serve(&repo.join("public")).await;
    let mut version = 0;
    for (n, role) in [
        RoleType::Timestamp,
        RoleType::Snapshot,
        RoleType::Targets,
        RoleType::Root,
    ]
    .into_iter()
    .enumerate()
    {
        version += 1;
        std::fs::write(&src, format!("content {version}")).unwrap();
        p.publish(
            Category::Components,
            "engine",
            &version.to_string(),
            std::slice::from_ref(&src),
            PublishOptions::default(),
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
        let rotated = p.rotate(role, jiff::Timestamp::now()).await.unwrap();
        assert_eq!(rotated.root_version, n as u64 + 2, "{rotated:?}");
        assert!(rotated.retired.is_file(), "{rotated:?}");
        let root: serde_json::Value =
            serde_json::from_slice(&std::fs::read(repo.join("public/metadata/root.json")).unwrap())
                .unwrap();
        let role_name = role.to_string();
        assert_eq!(
            root["signed"]["roles"][&role_name]["keyids"],
            serde_json::json!([rotated.new_key_id]),
            "{role_name}"
        );
        let signatures = root["signatures"].as_array().unwrap().len();
        let want = if role == RoleType::Root { 2 } else { 1 };
        assert_eq!(signatures, want, "{role_name}: {root}");
        let report = verify(&root1, &server.source("o"), fast_limits())
            .await
            .unwrap();
        assert!(report.is_ok(), "{role_name}: {:?}", report.problems);
        assert_eq!(report.versions["root"], n as u64 + 2);
    }
    // The new keys sign what comes next.
    std::fs::write(&src, b"after the rotations").unwrap();
    p.publish(
        Category::Components,
        "engine",
        "5",
        &[src],
        PublishOptions::default(),
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    let report = verify(&root1, &server.source("o"), fast_limits())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
