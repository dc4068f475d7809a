//! Mirroring a signed upstream repository into `/repo/upstream/`, on demand and on schedule.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade_client::proto::SettingsPatch;
use cascade_core::Category;
use cascade_repo::{Expiries, PublishOptions, Publisher, TransportLimits};
use cascade_server::mirror::MirrorSettings;
use reqwest::Method;

use crate::harness::{json, start_tuned, TestServer};

/// A signed upstream with `components/engine/1.0.0` published; returns it and its root path.
async fn upstream(dir: &Path, tag: &str) -> (Publisher, PathBuf) {
    let publisher = cascade_repo::init(
        &dir.join(format!("repo-{tag}")),
        &dir.join(format!("keys-{tag}")),
        Expiries::default(),
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    let file = dir.join(format!("engine-{tag}.bin"));
    std::fs::write(&file, format!("engine bytes of {tag}")).unwrap();
    publisher
        .publish(
            Category::Components,
            "engine",
            "1.0.0",
            &[file],
            PublishOptions::default(),
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
    let root = publisher.public_dir().join("metadata/1.root.json");
    (publisher, root)
}

fn mirroring(root: PathBuf, interval: Option<Duration>) -> MirrorSettings {
    MirrorSettings {
        trusted_root: root,
        interval,
        limits: TransportLimits::default(),
    }
}

async fn set_upstream(s: &TestServer, url: &str) {
    s.admin(
        Method::PATCH,
        "/api/policy/settings",
        json(&SettingsPatch {
            activeupdate_url: Some(Some(url.to_owned())),
            ..SettingsPatch::default()
        }),
    )
    .await
    .expect(200);
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    out
}

// On demand: the mirror serves byte-identical metadata and targets; a second run fetches nothing.
#[tokio::test]
async fn mirror_on_demand() {
    let tmp = tempfile::tempdir().unwrap();
    let (publisher, root) = upstream(tmp.path(), "vendor").await;
    let public = publisher.public_dir();
    // The vendor stands in for the upstream's plain static server (content TUF-verified);
    // the mirroring server under test speaks HTTPS.
    let vendor = start_tuned(&tmp.path().join("a"), None, None, |s| {
        s.repo_dir = Some(public.clone());
        s.tls = cascade_server::TlsMode::InsecurePlainHttp;
    })
    .await;
    let server = start_tuned(&tmp.path().join("b"), None, None, |s| {
        s.mirror = Some(mirroring(root.clone(), None));
    })
    .await;
    // Before any mirror run, the first-start token already names the upstream root the
    // operator trusts (it is the mirror's `1.root.json`), so agents pin it from the token.
    let token: cascade_client::proto::EnrollmentTokenText = server.enroll.parse().unwrap();
    assert_eq!(
        token.upstream_root_sha256.map(|d| d.to_hex()),
        Some(cascade_repo::fsutil::sha256_hex(
            &std::fs::read(&root).unwrap()
        ))
    );
    server
        .admin(Method::POST, "/api/repo/mirror", None)
        .await
        .expect_error(400, "mirror.no_upstream", "activeupdate_url");
    set_upstream(&server, &format!("{}/repo", vendor.url)).await;
    let v = server
        .admin(Method::POST, "/api/repo/mirror", None)
        .await
        .expect(200);
    assert_eq!(v["outcome"], "ok", "{v}");
    assert!(v["report"]["fetched"].as_u64().unwrap() >= 1, "{v}");

    let target_files = files(&public.join("targets"));
    assert!(!target_files.is_empty());
    for rel in target_files
        .iter()
        .map(|r| Path::new("targets").join(r))
        .chain([PathBuf::from("metadata/timestamp.json")])
    {
        let url = format!("{}/repo/upstream/{}", server.url, rel.display());
        let got = server.http.get(&url).send().await.unwrap();
        assert_eq!(got.status(), 200, "{url}");
        let want = std::fs::read(public.join(&rel)).unwrap();
        assert_eq!(
            got.bytes().await.unwrap().as_ref(),
            want.as_slice(),
            "{url}"
        );
    }
    let again = server
        .admin(Method::POST, "/api/repo/mirror", None)
        .await
        .expect(200);
    assert_eq!(again["report"]["fetched"], 0, "{again}");
    let status = server
        .admin(Method::GET, "/api/repo/mirror", None)
        .await
        .expect(200);
    assert_eq!(status["configured"], true);
    assert_eq!(status["last"]["outcome"], "ok");
    server.stop().await;
    vendor.stop().await;
}

// An upstream that does not verify against the trusted root is refused (502) and nothing is served.
#[tokio::test]
async fn mirror_refuses_an_untrusted_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let (publisher, _) = upstream(tmp.path(), "vendor").await;
    let (_, foreign_root) = upstream(tmp.path(), "other").await;
    let public = publisher.public_dir();
    // The vendor stands in for the upstream's plain static server (content TUF-verified);
    // the mirroring server under test speaks HTTPS.
    let vendor = start_tuned(&tmp.path().join("a"), None, None, |s| {
        s.repo_dir = Some(public.clone());
        s.tls = cascade_server::TlsMode::InsecurePlainHttp;
    })
    .await;
    let server = start_tuned(&tmp.path().join("b"), None, None, |s| {
        s.mirror = Some(mirroring(foreign_root.clone(), None));
    })
    .await;
    set_upstream(&server, &format!("{}/repo", vendor.url)).await;
    let body = server
        .admin(Method::POST, "/api/repo/mirror", None)
        .await
        .expect(502);
    assert_eq!(body["error"]["code"], "mirror.upstream_failed", "{body}");
    assert_eq!(body["error"]["field"], "activeupdate_url");
    let ts = format!("{}/repo/upstream/metadata/timestamp.json", server.url);
    assert_eq!(server.http.get(&ts).send().await.unwrap().status(), 404);
    let status = server
        .admin(Method::GET, "/api/repo/mirror", None)
        .await
        .expect(200);
    assert_eq!(status["last"]["outcome"], "failed");

    // A server started without an upstream root does not mirror at all.
    vendor
        .admin(Method::POST, "/api/repo/mirror", None)
        .await
        .expect_error(400, "mirror.not_configured", "upstream_root");
    server.stop().await;
    vendor.stop().await;
}

// On schedule: once the upstream URL is set, the next scheduled run mirrors it.
#[tokio::test]
async fn mirror_on_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let (publisher, root) = upstream(tmp.path(), "vendor").await;
    let public = publisher.public_dir();
    // The vendor stands in for the upstream's plain static server (content TUF-verified);
    // the mirroring server under test speaks HTTPS.
    let vendor = start_tuned(&tmp.path().join("a"), None, None, |s| {
        s.repo_dir = Some(public.clone());
        s.tls = cascade_server::TlsMode::InsecurePlainHttp;
    })
    .await;
    let server = start_tuned(&tmp.path().join("b"), None, None, |s| {
        s.mirror = Some(mirroring(root.clone(), Some(Duration::from_millis(100))));
    })
    .await;
    set_upstream(&server, &format!("{}/repo", vendor.url)).await;
    let ts = format!("{}/repo/upstream/metadata/timestamp.json", server.url);
    let mut ok = false;
    for _ in 0..100 {
        if server.http.get(&ts).send().await.unwrap().status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the scheduled mirror did not run within 5 s");
    let metrics = server
        .call(Method::GET, "/metrics", None, &[], None)
        .await
        .expect(200);
    assert!(!metrics
        .as_str()
        .unwrap()
        .contains("cascade_mirror_runs_total{outcome=\"ok\"} 0"));
    server.stop().await;
    vendor.stop().await;
}
