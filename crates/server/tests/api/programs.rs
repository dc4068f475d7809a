//! Program uploads (`docs/operating.md#programs-and-hotfixes`): a build streamed to
//! `POST /api/programs/{name}/{version}` is signed and published in the site repository (a
//! hotfix flagged in its custom metadata) and listed by `GET /api/programs`; an upload over
//! the limit (413), with a hash that does not match, empty, under a bad name, of a version
//! that exists, or by a non-admin is refused, publishes nothing and leaves no file behind
//! (and what a killed upload left is removed).

use cascade_client::proto::{NewToken, NewUser, ProgramUpload, UserRole};

use crate::harness::*;

fn upload(file: &str, hotfix: bool, sha256: Option<String>) -> ProgramUpload {
    ProgramUpload {
        file: file.into(),
        hotfix,
        sha256,
    }
}

fn sha256(bytes: &[u8]) -> String {
    cascade_repo::fsutil::sha256_hex(bytes)
}

/// Uploads `body` as `tool` `version`, file `file` (not a hotfix, declared SHA-256 `sha256`),
/// through `api`, which must refuse it (`what` names the case): the status and stable code.
async fn refused_upload(
    api: &cascade_client::AdminClient,
    what: &str,
    version: &str,
    file: &str,
    sha256: Option<String>,
    body: &[u8],
) -> (Option<u16>, Option<String>) {
    let e = api
        .upload_program(
            "tool",
            version,
            &upload(file, false, sha256),
            body.to_vec().into(),
            body.len() as u64,
        )
        .await
        .expect_err(what);
    (e.status(), e.server_error().map(|d| d.code.clone()))
}

// A hotfix and a plain build are published, listed newest first, and served as signed
// targets; each refusal names its cause and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_published_or_refused_with_nothing_left() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.limits.max_program_bytes = 1000;
    })
    .await;
    let api = s.client.admin(&s.admin);
    // What a server killed mid-upload left, two hours ago: the next upload removes it.
    let abandoned = dir.path().join("uploads/.upload-abandoned");
    std::fs::create_dir_all(&abandoned).unwrap();
    std::fs::write(abandoned.join("tool.sh"), b"half").unwrap();
    std::fs::File::open(&abandoned)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    let build = b"#!/bin/sh\necho 1.0\n".to_vec();
    let one = api
        .upload_program(
            "tool",
            "1.0",
            &upload("tool.sh", false, Some(sha256(&build))),
            build.clone().into(),
            build.len() as u64,
        )
        .await
        .unwrap();
    assert_eq!(one.target, "programs/tool/1.0/tool.sh");
    assert_eq!(one.sha256, sha256(&build));
    assert_eq!(one.length, build.len() as u64);
    assert!(!one.hotfix);
    let fix = b"#!/bin/sh\necho 1.0.1\n".to_vec();
    let hot = api
        .upload_program(
            "tool",
            "1.0.1",
            &upload("tool.sh", true, None),
            fix.clone().into(),
            fix.len() as u64,
        )
        .await
        .unwrap();
    assert!(hot.hotfix);
    assert!(hot.seq > one.seq);
    let listed = api.programs().await.unwrap().programs;
    assert_eq!(listed, vec![hot.clone(), one.clone()]);
    // The signed targets metadata served to agents carries the hotfix flag.
    let metadata = dir.path().join("site-repo/public/metadata");
    let newest = std::fs::read_dir(&metadata)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".targets.json")?.parse::<u64>().ok()
        })
        .max()
        .unwrap();
    let targets: serde_json::Value = serde_json::from_slice(
        &std::fs::read(metadata.join(format!("{newest}.targets.json"))).unwrap(),
    )
    .unwrap();
    let t = &targets["signed"]["targets"];
    assert_eq!(
        t["programs/tool/1.0.1/tool.sh"]["custom"]["cascade"]["hotfix"],
        true
    );
    assert!(t["programs/tool/1.0/tool.sh"]["custom"]["cascade"]
        .get("hotfix")
        .is_none());

    let big = vec![7u8; 1001];
    assert_eq!(
        refused_upload(&api, "over the limit", "2", "tool.sh", None, &big).await,
        (Some(413), Some("request.too_large".into()))
    );
    // Without a declared length the limit is counted while the body arrives.
    let chunks = futures::stream::iter(
        big.chunks(100)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let req = s
        .http
        .post(format!("{}/api/programs/tool/2?file=tool.sh", s.url))
        .bearer_auth(&s.admin)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(req.status(), 413);
    assert_eq!(
        refused_upload(
            &api,
            "hash mismatch",
            "2",
            "tool.sh",
            Some(sha256(b"other")),
            &build
        )
        .await,
        (Some(400), Some("program.sha256_mismatch".into()))
    );
    assert_eq!(
        refused_upload(&api, "empty", "2", "tool.sh", None, &[]).await,
        (Some(400), Some("program.empty".into()))
    );
    assert_eq!(
        refused_upload(&api, "bad version", "../2", "tool.sh", None, &build).await,
        (Some(400), Some("program.name".into()))
    );
    assert_eq!(
        refused_upload(&api, "bad file", "2", ".hidden", None, &build).await,
        (Some(400), Some("program.name".into()))
    );
    assert_eq!(
        refused_upload(&api, "existing version", "1.0", "tool.sh", None, &build).await,
        (Some(409), Some("publish.version_exists".into()))
    );
    // An operator may list but not publish (a build can replace agents' binaries).
    api.create_user(&NewUser {
        name: "otto".into(),
        role: UserRole::Operator,
        password: "otto-password-long".into(),
    })
    .await
    .unwrap();
    let token = api
        .create_token(&NewToken {
            label: "ci".into(),
            user: Some("otto".into()),
            expires_in_secs: None,
        })
        .await
        .unwrap()
        .token;
    let operator = s.client.admin(&token);
    assert_eq!(operator.programs().await.unwrap().programs.len(), 2);
    assert_eq!(
        refused_upload(&operator, "operator", "2", "tool.sh", None, &build).await,
        (Some(403), Some("auth.forbidden".into()))
    );

    assert_eq!(api.programs().await.unwrap().programs, vec![hot, one]);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("uploads"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in uploads/: {left:?}");
    // Every upload that reached the handler, refused or not, is in the audit log (the one
    // whose declared length was over the limit is refused before, like any other body).
    let audit = api.audit().await.unwrap();
    let uploads = audit
        .entries
        .iter()
        .filter(|e| e.path.starts_with("/api/programs/"))
        .count();
    assert_eq!(uploads, 9, "{:?}", audit.entries);
}
