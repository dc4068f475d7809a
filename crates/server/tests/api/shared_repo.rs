//! The replicas' shared repository on PostgreSQL (`docs/operating.md#shared-repository-and-one-writer`),
//! below the server: tree versions stored by one writer and materialized by another replica
//! content first and `timestamp.json` last, and the writer lock released when its holder's
//! connection goes. Needs PostgreSQL exactly as `postgres.rs` does (fails without it).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cascade_server::shared::{Shared, Tree, Writer};
use cascade_server::SystemClock;

use crate::postgres::Database;

fn put(dir: &Path, path: &str, bytes: &[u8]) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

// A second replica materializes what the writer stored; a version whose content cannot all be
// had leaves the replica's timestamp.json (and the metadata) at the previous version; an
// unchanged tree is not stored again; the writer lock passes on when its holder's connection
// closes.
#[tokio::test]
async fn postgres_tree_versions_land_timestamp_last_and_the_lock_passes_on() {
    let db = Database::new().await;
    let tmp = tempfile::tempdir().unwrap();
    cascade_server::db::open(&tmp.path().join("migrate"), Some(&db.url))
        .await
        .unwrap();
    let writer = Shared::connect(&db.url, &tmp.path().join("w"), Arc::new(SystemClock))
        .await
        .unwrap();
    let reader = Shared::connect(&db.url, &tmp.path().join("r"), Arc::new(SystemClock))
        .await
        .unwrap();
    let w = tmp.path().join("w/public");
    let r = tmp.path().join("r/public");
    put(&w, "targets/a.bin", b"a1");
    put(&w, "metadata/1.snapshot.json", b"snapshot 1");
    put(&w, "metadata/timestamp.json", b"timestamp 1");
    assert_eq!(
        writer.publish_tree(Tree::Site, &w, "test").await.unwrap(),
        1
    );
    assert_eq!(
        writer.publish_tree(Tree::Site, &w, "test").await.unwrap(),
        1,
        "an unchanged tree is not stored again"
    );
    assert_eq!(reader.materialize(Tree::Site, &r).await.unwrap(), Some(1));
    assert_eq!(std::fs::read(r.join("targets/a.bin")).unwrap(), b"a1");
    assert_eq!(
        std::fs::read(r.join("metadata/timestamp.json")).unwrap(),
        b"timestamp 1"
    );
    assert_eq!(reader.materialize(Tree::Site, &r).await.unwrap(), None);

    put(&w, "targets/b.bin", b"b2");
    put(&w, "metadata/2.snapshot.json", b"snapshot 2");
    put(&w, "metadata/timestamp.json", b"timestamp 2");
    std::fs::remove_file(w.join("metadata/1.snapshot.json")).unwrap();
    assert_eq!(
        writer.publish_tree(Tree::Site, &w, "test").await.unwrap(),
        2
    );
    // The new content's body cannot be had (as if pruned under a slow replica).
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::query("DELETE FROM repo_blobs WHERE sha256 = $1")
        .bind(cascade_repo::fsutil::sha256_hex(b"b2"))
        .execute(&mut conn)
        .await
        .unwrap();
    let e = reader.materialize(Tree::Site, &r).await.unwrap_err();
    assert_eq!(e.code(), "shared.missing_blob", "{e}");
    assert_eq!(
        std::fs::read(r.join("metadata/timestamp.json")).unwrap(),
        b"timestamp 1",
        "timestamp.json moved on without its content"
    );
    assert!(!r.join("metadata/2.snapshot.json").exists());
    assert!(r.join("metadata/1.snapshot.json").exists());

    // Stored again (the writer's next version), the replica catches up and drops what the
    // version no longer lists.
    put(&w, "targets/b.bin", b"b3");
    assert_eq!(
        writer.publish_tree(Tree::Site, &w, "test").await.unwrap(),
        3
    );
    assert_eq!(reader.materialize(Tree::Site, &r).await.unwrap(), Some(3));
    assert_eq!(std::fs::read(r.join("targets/b.bin")).unwrap(), b"b3");
    assert_eq!(
        std::fs::read(r.join("metadata/timestamp.json")).unwrap(),
        b"timestamp 2"
    );
    assert!(!r.join("metadata/1.snapshot.json").exists());

    // A failed write changed the local tree: forgotten, it is put back as stored.
    put(&r, "targets/b.bin", b"half-made");
    put(&r, "targets/extra.bin", b"not stored");
    assert_eq!(reader.materialize(Tree::Site, &r).await.unwrap(), None);
    reader.forget(Tree::Site);
    assert_eq!(reader.materialize(Tree::Site, &r).await.unwrap(), Some(3));
    assert_eq!(std::fs::read(r.join("targets/b.bin")).unwrap(), b"b3");
    assert!(!r.join("targets/extra.bin").exists());

    // One writer: the lock is refused while held and passes on when the holder's connection
    // closes (a killed replica's would).
    let held = writer
        .lock(Writer::Site, Some(Duration::ZERO))
        .await
        .unwrap()
        .expect("free lock");
    assert!(reader
        .lock(Writer::Site, Some(Duration::ZERO))
        .await
        .unwrap()
        .is_none());
    drop(held);
    let taken = reader
        .lock(Writer::Site, Some(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the lock passes on when its holder's connection closes");
    taken.release().await;
    drop(conn);
    db.drop_db().await;
}
