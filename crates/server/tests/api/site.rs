//! The server's own site repository: created on first start with private keys, served at
//! `/repo/site/` from outside the repository directory, kept across restarts; an operator's
//! `site` link is still served as it is.

use crate::harness::*;
use reqwest::Method;

// A fresh server creates `<data>/site-repo` (keys 0600) and serves its tree at `/repo/site/`;
// a restart opens the same repository (same root, no new keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_the_site_repository() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let site = dir.path().join("site-repo");
    let root = std::fs::read(site.join("public/metadata/1.root.json")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert!(
            !site.join("offline-keys/root.pk8").exists(),
            "the root key is taken out of the server's key directory"
        );
        for key in [
            "root-keys-offline/root.pk8",
            "offline-keys/targets.pk8",
            "online-keys/snapshot.pk8",
            "online-keys/timestamp.pk8",
        ] {
            let mode = std::fs::metadata(site.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let mode = std::fs::metadata(&site).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "site-repo");
    }
    let served = s
        .http
        .get(format!("{}/repo/site/metadata/1.root.json", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), root.as_slice());
    for path in [
        "/repo/site/metadata/timestamp.json",
        "/repo/site/metadata/1.root.json",
    ] {
        let r = s.http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
    }
    // The keys are never served: they are outside the served tree.
    for path in [
        "/repo/site/../offline-keys/root.pk8",
        "/repo/site/online-keys/timestamp.pk8",
        "/repo/site-repo/offline-keys/root.pk8",
    ] {
        let r = s.http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), 404, "GET {path}");
    }
    let prev = s.stop().await;
    let s = start_with(dir.path(), None, Some(prev)).await;
    s.call(Method::GET, "/healthz", None, &[], None)
        .await
        .expect(200);
    assert_eq!(
        std::fs::read(site.join("public/metadata/1.root.json")).unwrap(),
        root
    );
    assert!(!site.join("public/metadata/2.root.json").exists());
}

// `--site-repo DIR` puts the repository where the operator says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_repo_where_the_operator_says() {
    let dir = tempfile::tempdir().unwrap();
    let chosen = dir.path().join("elsewhere/site");
    let s = start_tuned(dir.path().join("data").as_path(), None, None, |st| {
        st.site_repo = Some(chosen.clone());
    })
    .await;
    let root = std::fs::read(chosen.join("public/metadata/1.root.json")).unwrap();
    let served = s
        .http
        .get(format!("{}/repo/site/metadata/1.root.json", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(served.bytes().await.unwrap().as_ref(), root.as_slice());
    assert!(!dir.path().join("data/site-repo").exists());
}
