//! The relay's cache: the byte budget (and a smaller one applied at once), seeding from a
//! local copy, pruning blobs the metadata no longer names, a corrupted blob dropped and
//! fetched again, and the debris of a killed fetch removed at start.

use std::sync::atomic::Ordering;

use super::{blob, relay, upstream};

// With a byte budget, the oldest blobs are evicted and the newest kept.
#[tokio::test]
async fn cache_budget_evicts_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let rels: Vec<String> = (0..4u8).map(|i| blob(dir.path(), &vec![i; 1000])).collect();
    let (up, _) = upstream(dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (_relay, base) = relay(cache.path(), vec![up.url()], 2500).await;
    for rel in &rels {
        assert_eq!(
            reqwest::get(base.join(rel).unwrap())
                .await
                .unwrap()
                .status(),
            200
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kept: Vec<bool> = rels.iter().map(|r| cache.path().join(r).exists()).collect();
    assert_eq!(kept, [false, false, true, true]);
}

// Seeding the cache from a local copy: a copy whose bytes do not match the hash in the name is
// refused and not cached; the right one is cached and then served with no upstream fetch.
#[tokio::test]
async fn seed_checks_the_hash_and_saves_a_fetch() {
    let up_dir = tempfile::tempdir().unwrap();
    let rel = blob(up_dir.path(), b"installed pattern file");
    let (up, hits) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let local = tempfile::tempdir().unwrap();
    let wrong = local.path().join("wrong");
    std::fs::write(&wrong, b"something else").unwrap();
    assert!(relay.seed(&rel, &wrong).is_err());
    assert!(!cache.path().join(&rel).exists());
    let right = local.path().join("right");
    std::fs::write(&right, b"installed pattern file").unwrap();
    assert!(relay.seed(&rel, &right).unwrap());
    assert!(!relay.seed(&rel, &right).unwrap(), "already cached");
    // Only content-addressed blobs can be seeded.
    assert!(!relay.seed("metadata/timestamp.json", &right).unwrap());
    let got = reqwest::get(base.join(&rel).unwrap()).await.unwrap();
    assert_eq!(&got.bytes().await.unwrap()[..], b"installed pattern file");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

// Pruning removes the cached blobs below a prefix that the current metadata no longer names,
// and nothing else: named blobs, metadata and other prefixes stay.
#[tokio::test]
async fn prune_removes_only_unnamed_blobs() {
    let up_dir = tempfile::tempdir().unwrap();
    let old = blob(up_dir.path(), b"version one");
    let new = blob(up_dir.path(), b"version two");
    let (up, _) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, _) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    for rel in [&old, &new] {
        relay.obtain(rel).await.unwrap();
    }
    let meta = cache.path().join("targets/components/p/1/notes.json");
    std::fs::write(&meta, b"{}").unwrap();
    let keep: std::collections::BTreeSet<String> = [new.clone()].into();
    assert_eq!(relay.prune_unnamed("elsewhere/targets/", &keep).unwrap(), 0);
    assert!(cache.path().join(&old).exists());
    assert_eq!(relay.prune_unnamed("targets/", &keep).unwrap(), 1);
    assert!(!cache.path().join(&old).exists());
    assert!(cache.path().join(&new).exists());
    assert!(meta.exists());
    assert!(relay.prune_unnamed("../", &keep).is_err());
}

// A cached blob altered after it was cached (bytes flipped, or cut short) is never served: the
// relay checks it against the hash in its name, drops it, counts it as refused and fetches
// it again (`docs/operating.md#relay-self-healing`); the client gets the genuine bytes.
#[tokio::test]
async fn corrupted_cached_blob_is_dropped_and_fetched_again() {
    let up_dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let rel = blob(up_dir.path(), &body);
    let (up, hits) = upstream(up_dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let url = base.join(&rel).unwrap();
    let get = || async {
        let resp = reqwest::get(url.clone()).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap().to_vec()
    };
    assert_eq!(get().await, body);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let cached = cache.path().join(&rel);

    // 16 flipped bytes, written as a new file (as an editor or a copy would).
    let mut bad = std::fs::read(&cached).unwrap();
    for b in &mut bad[1000..1016] {
        *b ^= 0xff;
    }
    let tmp = cache.path().join("flipped");
    std::fs::write(&tmp, &bad).unwrap();
    std::fs::rename(&tmp, &cached).unwrap();
    assert_eq!(get().await, body, "flipped bytes were served");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the bad copy was not fetched again"
    );
    assert_eq!(relay.report().refused, 1);
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        body,
        "the cache was not repaired"
    );

    // Cut short in place.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap()
        .set_len(100_000)
        .unwrap();
    assert_eq!(get().await, body, "a truncated copy was served");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(relay.report().refused, 2);

    // Bytes flipped in place, however the file's times look: the check after warming finds it.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(5)).unwrap();
    std::io::Write::write_all(&mut f, b"garbage").unwrap();
    drop(f);
    assert_eq!(relay.check_cache(), 1);
    assert!(!cached.exists());
    assert_eq!(relay.report().refused, 3);
    assert_eq!(get().await, body);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

// The temporary files of fetches a killed relay left in its cache are removed when a relay
// starts on that cache; cached blobs stay.
#[tokio::test]
async fn killed_fetch_debris_removed_at_start() {
    let up_dir = tempfile::tempdir().unwrap();
    let body = b"blob body".to_vec();
    let rel = blob(up_dir.path(), &body);
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("targets/components/p/1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(cache.path().join(&rel), &body).unwrap();
    std::fs::write(dir.join(".fetch-abc123"), b"half a blob").unwrap();
    std::fs::write(dir.join(".seed-def456"), b"half a copy").unwrap();
    let (up, _) = upstream(up_dir.path()).await;
    let (_relay, _) = relay(cache.path(), vec![up.url()], u64::MAX).await;
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec![rel.rsplit('/').next().unwrap().to_owned()]);
}

// Domain settings shrink the cache budget: the oldest blobs are evicted at once, and the new
// budget holds for what is fetched next (`docs/operating.md#domains-and-their-settings`).
#[tokio::test]
async fn applied_cache_budget_evicts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rels: Vec<String> = (0..4u8)
        .map(|i| blob(dir.path(), &vec![i + 10; 1000]))
        .collect();
    let (up, _) = upstream(dir.path()).await;
    let cache = tempfile::tempdir().unwrap();
    let (relay, base) = relay(cache.path(), vec![up.url()], 1 << 20).await;
    for rel in &rels[..3] {
        let r = reqwest::get(base.join(rel).unwrap()).await.unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kept = |rels: &[String]| -> Vec<bool> {
        rels.iter().map(|r| cache.path().join(r).exists()).collect()
    };
    assert_eq!(kept(&rels[..3]), [true, true, true]);
    relay.apply_limits(1500, 0, 0);
    assert_eq!(relay.cache_budget(), 1500);
    assert_eq!(kept(&rels[..3]), [false, false, true]);
    let r = reqwest::get(base.join(&rels[3]).unwrap()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(kept(&rels), [false, false, false, true]);
}
