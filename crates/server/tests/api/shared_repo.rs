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

/// The settings of a replica on `url` with data in `dir` and key passphrase `pass`.
fn replica_settings(dir: &Path, url: &str, pass: Option<&str>) -> cascade_server::Settings {
    let mut s = cascade_server::Settings::new(dir);
    s.database_url = Some(url.to_owned());
    s.hash_cost = cascade_testkit::CHEAP_HASHING;
    s.key_passphrase = pass.map(|p| cascade_repo::Passphrase::new(p).unwrap());
    s
}

/// The code and message of a replica's refusal to start.
async fn refused(settings: cascade_server::Settings) -> (String, String) {
    match cascade_server::Server::open(settings).await {
        Ok(_) => panic!("the replica started"),
        Err(e) => (e.code().to_owned(), e.to_string()),
    }
}

// The replicas' CA key is stored in the database encrypted with the key passphrase: the row
// holds none of the key's bytes and decrypts to it. A replica without the passphrase, or with
// another one, refuses to start and says which; a row stored unencrypted by the previous
// version is encrypted on the first start with the passphrase, and that replica serves the
// same CA.
#[tokio::test]
async fn postgres_ca_key_is_stored_encrypted_and_a_replica_needs_the_passphrase() {
    use cascade_server::tls::CA_KEY_ROW;
    const PASS: &str = "replicas share one passphrase";
    const SITE_KEY: &str = "site/online-keys/timestamp.pk8";
    let db = Database::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let first =
        cascade_server::Server::open(replica_settings(&tmp.path().join("a"), &db.url, Some(PASS)))
            .await
            .unwrap();
    // The replica's own copy of the key is encrypted with the passphrase too.
    let local = std::fs::read(tmp.path().join("a/tls/ca.key")).unwrap();
    assert!(local.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let der = cascade_repo::decrypt_bytes(
        Path::new("a/tls/ca.key"),
        &local,
        Some(&cascade_repo::Passphrase::new(PASS).unwrap()),
    )
    .unwrap()
    .unwrap()
    .to_vec();
    let plain_pem = rcgen::KeyPair::try_from(der.as_slice())
        .unwrap()
        .serialize_pem()
        .into_bytes();
    let shared = Shared::connect(&db.url, &tmp.path().join("x"), Arc::new(SystemClock))
        .await
        .unwrap();
    let stored = |shared: Shared| async move { shared.file(CA_KEY_ROW).await.unwrap().unwrap() };
    let holds_no_key = |row: &[u8]| {
        let text = std::str::from_utf8(row).unwrap();
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{text}"
        );
        for line in std::str::from_utf8(&plain_pem).unwrap().lines() {
            if !line.starts_with("-----") {
                assert!(
                    !text.contains(line),
                    "the row holds the key's PEM line {line}"
                );
            }
        }
        assert!(!row.windows(der.len()).any(|w| w == der.as_slice()));
        let pass = cascade_repo::Passphrase::new(PASS).unwrap();
        let back = cascade_repo::decrypt_bytes(Path::new(CA_KEY_ROW), row, Some(&pass))
            .unwrap()
            .unwrap();
        assert_eq!(
            back.as_slice(),
            der.as_slice(),
            "the row decrypts to the CA key"
        );
    };
    let row = stored(shared.clone()).await;
    holds_no_key(&row);

    let (code, message) = refused(replica_settings(&tmp.path().join("b"), &db.url, None)).await;
    assert_eq!(code, "tls.passphrase_needed", "{message}");
    assert!(
        message.contains("--key-passphrase-file") && message.contains(CA_KEY_ROW),
        "{message}"
    );
    assert!(!tmp.path().join("b/tls/ca.key").exists());
    let (code, message) = refused(replica_settings(
        &tmp.path().join("b"),
        &db.url,
        Some("another passphrase"),
    ))
    .await;
    assert_eq!(code, "tls.wrong_passphrase", "{message}");
    assert!(message.contains("does not decrypt"), "{message}");
    assert!(!tmp.path().join("b/tls/ca.key").exists());

    // The previous version stored the key file as it was, unencrypted.
    assert!(shared
        .replace_file(CA_KEY_ROW, &row, &plain_pem)
        .await
        .unwrap());
    // And a site key the same way (a first replica started without a passphrase).
    let pass = cascade_repo::Passphrase::new(PASS).unwrap();
    let sealed_site_key = shared.file(SITE_KEY).await.unwrap().unwrap();
    let site_der = cascade_repo::decrypt_bytes(Path::new(SITE_KEY), &sealed_site_key, Some(&pass))
        .unwrap()
        .unwrap();
    assert!(shared
        .replace_file(SITE_KEY, &sealed_site_key, &site_der)
        .await
        .unwrap());
    let (code, _) = refused(replica_settings(&tmp.path().join("c"), &db.url, None)).await;
    assert_eq!(code, "tls.passphrase_needed");
    assert_eq!(stored(shared.clone()).await, plain_pem, "nothing changed");
    let second =
        cascade_server::Server::open(replica_settings(&tmp.path().join("c"), &db.url, Some(PASS)))
            .await
            .unwrap();
    holds_no_key(&stored(shared.clone()).await);
    let site_row = shared.file(SITE_KEY).await.unwrap().unwrap();
    assert!(site_row.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let local = std::fs::read(tmp.path().join("c/site-repo/online-keys/timestamp.pk8")).unwrap();
    assert_eq!(
        local, site_row,
        "the replica's key file is the encrypted one"
    );
    let plain_file = tmp.path().join("plain.pk8");
    std::fs::write(&plain_file, &site_der).unwrap();
    assert_eq!(
        cascade_repo::read_public_key(
            &tmp.path().join("c/site-repo/online-keys/timestamp.pk8"),
            Some(&pass)
        )
        .unwrap(),
        cascade_repo::read_public_key(&plain_file, None).unwrap(),
        "the same site key, opened with the passphrase"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("c/tls/ca.pem")).unwrap(),
        std::fs::read(tmp.path().join("a/tls/ca.pem")).unwrap(),
        "the second replica serves the first one's CA"
    );
    let loaded = std::fs::read(tmp.path().join("c/tls/ca.key")).unwrap();
    assert!(loaded.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    assert_eq!(
        cascade_repo::decrypt_bytes(Path::new("c/tls/ca.key"), &loaded, Some(&pass))
            .unwrap()
            .unwrap()
            .as_slice(),
        der.as_slice(),
        "the second replica's copy decrypts to the same key"
    );
    drop((first, second));
    db.drop_db().await;
}
