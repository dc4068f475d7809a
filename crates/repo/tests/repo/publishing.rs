//! Publishing, pruning and whole-repository verification.

use cascade_core::Category;
use cascade_repo::mirror::mirror;
use cascade_repo::verify::verify;
use cascade_repo::{Expiries, PublishOptions, Publisher, RepoClient};

use crate::common::{content, fast_limits, fetch_engine, serve, v2_of, Fixture, Lie, SourceOf};

// verify() reports versions per category and role expiry, and finds a blob corrupted on disk.
#[tokio::test]
async fn verify_reports_and_detects_corruption() {
    let fx = Fixture::new().await;
    fx.publish("1", &content(20_000, 7)).await;
    fx.publish("2", &content(20_000, 8)).await;
    let server = serve(&fx.public()).await;
    let src = server.source("origin");
    let report = verify(&fx.root, &src, fast_limits()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.contents["components"]["engine"], vec!["2", "1"]);
    assert!(report.expires["timestamp"] > jiff::Timestamp::now());
    let blob = fx.public().join(fx.blob_path("1").trim_start_matches('/'));
    std::fs::write(&blob, b"corrupted").unwrap();
    let report = verify(&fx.root, &src, fast_limits()).await.unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].code, "tuf.hash_mismatch");
}

// A publish that fails to sign (offline key missing) leaves the previous repository intact and verifiable.
#[tokio::test]
async fn failed_publish_leaves_repository_intact() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let wrong = Publisher::open(&fx.tmp.path().join("repo"), &fx.tmp.path().join("no-keys"));
    let src = fx.tmp.path().join("two.bin");
    std::fs::write(&src, b"two").unwrap();
    let err = wrong
        .publish(
            Category::Components,
            "engine",
            "2",
            &[src],
            PublishOptions::default(),
            jiff::Timestamp::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "publish.sign");
    let server = serve(&fx.public()).await;
    let report = verify(&fx.root, &server.source("o"), fast_limits())
        .await
        .unwrap();
    assert!(report.is_ok());
    assert_eq!(report.contents["components"]["engine"], vec!["1"]);
}

// prune keeps the newest N versions and removes the rest, their deltas and their files; re-publishing a version is refused.
#[tokio::test]
async fn prune_and_duplicate_version() {
    let fx = Fixture::new().await;
    let v1 = content(30_000, 9);
    fx.publish("1", &v1).await;
    fx.publish("2", &v2_of(&v1)).await;
    fx.publish("3", &v2_of(&v2_of(&v1))).await;
    let server = serve(&fx.public()).await;
    let before = verify(&fx.root, &server.source("o"), fast_limits())
        .await
        .unwrap();
    assert!(before.is_ok(), "{:?}", before.problems);
    assert_eq!(before.deltas_checked, 3, "2 from 1, 3 from 2, 3 from 1");
    let zero = fx.publisher.prune(0, jiff::Timestamp::now()).await;
    assert_eq!(zero.unwrap_err().code(), "publish.keep_zero");
    let removed = fx.publisher.prune(1, jiff::Timestamp::now()).await.unwrap();
    assert!(
        removed
            .iter()
            .all(|n| n.contains("/1/") || n.contains("/2/")),
        "{removed:?}"
    );
    assert!(removed.iter().any(|n| n.ends_with(".zst-patch")));
    assert!(!fx.public().join("targets/components/engine/1").exists());
    let report = verify(&fx.root, &server.source("o"), fast_limits())
        .await
        .unwrap();
    assert!(report.is_ok());
    assert_eq!(report.deltas_checked, 0, "their base versions are pruned");
    assert_eq!(report.contents["components"]["engine"], vec!["3"]);
    let src = fx.tmp.path().join("src/3/data.bin");
    let err = fx
        .publisher
        .publish(
            Category::Components,
            "engine",
            "3",
            &[src],
            PublishOptions::default(),
            jiff::Timestamp::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "publish.version_exists");
}

// A second publisher is refused while a live process holds the repository lock; a stale lock from a dead process is taken over.
#[tokio::test]
async fn concurrent_publish_refused_stale_lock_taken_over() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let lock = fx.tmp.path().join("repo/.lock");
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let err = fx
        .publisher
        .refresh_timestamp(jiff::Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "publish.busy");
    // No process has this id (above the kernel's pid_max).
    std::fs::write(&lock, "4294967295").unwrap();
    fx.publisher
        .refresh_timestamp(jiff::Timestamp::now())
        .await
        .unwrap();
    assert!(!lock.exists());
}

// A relay mirrors the origin verified; clients fetch through the relay; a later mirror copies only new files; a tampered origin leaves the relay serving its last good copy.
#[tokio::test]
async fn relay_mirror_serves_clients() {
    let fx = Fixture::new().await;
    let v1 = content(40_000, 12);
    fx.publish("1", &v1).await;
    fx.publish("2", &v2_of(&v1)).await;
    let origin = serve(&fx.public()).await;
    let relay_dir = fx.tmp.path().join("relay");
    let relay_client = RepoClient::new(
        fx.root.clone(),
        &fx.tmp.path().join("relay-state"),
        fast_limits(),
    )
    .unwrap();
    let first = mirror(&relay_client, &origin.source("origin"), &relay_dir)
        .await
        .unwrap();
    assert_eq!((first.fetched, first.present), (3, 0), "{first:?}");
    let relay = serve(&relay_dir).await;
    let report = verify(&fx.root, &relay.source("relay"), fast_limits())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.contents["components"]["engine"], vec!["2", "1"]);

    fx.publish("3", &v2_of(&v2_of(&v1))).await;
    let second = mirror(&relay_client, &origin.source("origin"), &relay_dir)
        .await
        .unwrap();
    assert_eq!(second.present, 3);
    assert!(second.fetched >= 2, "{second:?}");
    let out = fx.staging("via-relay");
    let got = fetch_engine(
        &fx.client(fast_limits()),
        &[relay.source("relay")],
        None,
        &out,
    )
    .await
    .unwrap();
    assert_eq!(got.version, "3");

    let before = std::fs::read(relay_dir.join("metadata/timestamp.json")).unwrap();
    fx.publish("4", b"four").await;
    let blob = fx.blob_path("4");
    origin.lie(&blob, Lie::Bytes(b"evil".to_vec()));
    let err = mirror(&relay_client, &origin.source("origin"), &relay_dir)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "tuf.hash_mismatch");
    assert_eq!(
        std::fs::read(relay_dir.join("metadata/timestamp.json")).unwrap(),
        before
    );
}

fn assert_send<T: Send>(_: &T) {}

// Every async entry point is Send, so the server and agent can spawn it on a multi-threaded runtime.
#[tokio::test]
async fn async_api_is_send() {
    let fx = Fixture::new().await;
    let client = fx.client(fast_limits());
    let src = cascade_repo::RepoSource::new(url::Url::parse("http://127.0.0.1:9/").unwrap());
    let out = fx.staging("out");
    let now = jiff::Timestamp::now();
    assert_send(&client.fetch_latest(
        std::slice::from_ref(&src),
        Category::Components,
        "e",
        None,
        &out,
    ));
    assert_send(&client.open(&src));
    assert_send(&mirror(&client, &src, &out));
    assert_send(&verify(&fx.root, &src, fast_limits()));
    assert_send(&fx.publisher.publish(
        Category::Components,
        "e",
        "1",
        &[],
        PublishOptions::default(),
        now,
    ));
    assert_send(&fx.publisher.refresh_timestamp(now));
    assert_send(&fx.publisher.prune(1, now));
}

// renew re-signs root (new version, later expiry) and targets; a client trusting root v1 walks to v2 and still verifies everything.
#[tokio::test]
async fn renew_extends_root_and_targets() {
    let fx = Fixture::new().await;
    fx.publish("1", b"one").await;
    let server = serve(&fx.public()).await;
    let before = verify(&fx.root, &server.source("o"), fast_limits())
        .await
        .unwrap();
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30);
    assert_eq!(fx.publisher.renew(later).await.unwrap(), 2);
    let after = verify(&fx.root, &server.source("o"), fast_limits())
        .await
        .unwrap();
    assert!(after.is_ok(), "{:?}", after.problems);
    assert_eq!(after.versions["root"], 2);
    assert!(after.expires["root"] > before.expires["root"]);
    assert!(after.expires["targets"] > before.expires["targets"]);
    assert_eq!(after.contents, before.contents);
    let err = Publisher::open(&fx.tmp.path().join("repo"), &fx.tmp.path().join("nokeys"))
        .renew(later)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "publish.sign");
}

// init refuses a directory that already holds a repository, and a key directory that already holds keys, before writing anything.
#[tokio::test]
async fn init_refuses_existing_repository_or_keys() {
    let fx = Fixture::new().await;
    let now = jiff::Timestamp::now();
    let (repo, keys) = (fx.tmp.path().join("repo"), fx.tmp.path().join("keys"));
    let err = cascade_repo::init(&repo, &keys, Expiries::default(), now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "publish.already_initialized");
    let other = fx.tmp.path().join("other");
    let err = cascade_repo::init(&other, &keys, Expiries::default(), now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "key.create");
    assert!(!other.exists());
}

/// Every file below `dir` whose name starts with `prefix`.
fn named_like(dir: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(named_like(&e.path(), prefix));
        } else if e.file_name().to_string_lossy().starts_with(prefix) {
            out.push(e.path());
        }
    }
    out
}

// A publish writes its temporary files in the repository's private `tmp/`, never in the served
// tree (`docs/operating.md#crash-debris`): a tree watched while a large file is published never
// shows a `.tmp-` file, so a publish killed at any moment leaves none there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_never_writes_temporary_files_in_the_served_tree() {
    let fx = Fixture::new().await;
    let public = fx.public();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (stop, public) = (std::sync::Arc::clone(&stop), public.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                seen.extend(named_like(&public, ".tmp-"));
            }
            seen
        })
    };
    fx.publish("1", &content(32 << 20, 1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = watch.join().unwrap();
    assert!(
        seen.is_empty(),
        "temporary files in the served tree: {seen:?}"
    );
}

// The debris a killed publish left — in the private `tmp/`, and `.tmp-` files an older
// version left in the served tree — is removed by the next operation that takes the lock.
#[tokio::test]
async fn next_publish_removes_a_killed_publishs_debris() {
    let fx = Fixture::new().await;
    fx.publish("1", &content(1000, 1)).await;
    let public = fx.public();
    let private = public.parent().unwrap().join("tmp");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::write(private.join(".tmp-killed"), b"half").unwrap();
    std::fs::write(public.join("targets/.tmp-old"), b"half").unwrap();
    std::fs::write(public.join("metadata/.tmp-old"), b"half").unwrap();
    fx.publish("2", &content(1000, 2)).await;
    assert!(
        named_like(&public, ".tmp-").is_empty(),
        "{:?}",
        named_like(&public, ".tmp-")
    );
    assert!(
        named_like(&private, "").is_empty(),
        "{:?}",
        named_like(&private, "")
    );
}

// A mirror keeps its partial and temporary files in its client's private datastore, not in the
// served copy: a target cut mid-way stays out of the served tree and the next run resumes it
// with a range request; debris an older version left in the served tree is removed.
#[tokio::test]
async fn mirror_keeps_partial_files_out_of_the_served_tree() {
    let fx = Fixture::new().await;
    let data = content(200_000, 21);
    fx.publish("1", &data).await;
    let origin = serve(&fx.public()).await;
    let blob = fx.blob_path("1");
    origin.lie(&blob, Lie::Cut { after: 50_000 });
    let served = fx.tmp.path().join("mirror");
    let state = fx.tmp.path().join("mirror-state");
    let client = RepoClient::new(fx.root.clone(), &state, fast_limits()).unwrap();
    assert!(mirror(&client, &origin.source("origin"), &served)
        .await
        .is_err());
    assert!(
        named_like(&served, "").is_empty(),
        "{:?}",
        named_like(&served, "")
    );
    let kept = named_like(&state.join("mirror-tmp"), ".partial-");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::metadata(&kept[0]).unwrap().len(), 50_000);

    std::fs::create_dir_all(served.join("targets")).unwrap();
    std::fs::write(served.join("targets/.partial-old"), b"x").unwrap();
    std::fs::write(served.join("targets/.tmp-old"), b"x").unwrap();
    origin.tell_truth();
    let report = mirror(&client, &origin.source("origin"), &served)
        .await
        .unwrap();
    assert_eq!(report.fetched, 1);
    let asked: Vec<_> = origin
        .requests()
        .into_iter()
        .filter(|(p, _)| *p == blob)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(asked, vec![None, Some(50_000)]);
    let debris: Vec<_> = named_like(&served, ".")
        .into_iter()
        .filter(|p| !p.ends_with(".lock"))
        .collect();
    assert!(debris.is_empty(), "{debris:?}");
    assert!(named_like(&state.join("mirror-tmp"), "").is_empty());
}
