//! Tests of key files and of the encrypted form: round trips, typed errors.

use std::path::Path;

use super::*;

// An encrypted key is PEM `ENCRYPTED PRIVATE KEY`, mode 0600, and loads back to the same
// public key with its passphrase; without one, or with a wrong one, it is a typed error.
#[test]
fn encrypted_key_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k/timestamp.pk8");
    let pass = Passphrase::new("correct horse").unwrap();
    generate(&path, Some(&pass)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{text}"
    );
    assert!(is_encrypted(&path).unwrap());
    let key = public_key(&path, Some(&pass)).unwrap();
    let again = public_key(&path, Some(&pass)).unwrap();
    assert_eq!(key, again);
    let err = load(&path, Some(&Passphrase::new("wrong horse").unwrap())).unwrap_err();
    assert_eq!(err.code(), "key.wrong_passphrase");
    assert_eq!(
        load(&path, None).unwrap_err().code(),
        "key.passphrase_needed"
    );
    assert_eq!(
        Passphrase::new("").unwrap_err().code(),
        "key.bad_passphrase"
    );
    // A plain key still loads, with or without a passphrase.
    let plain = tmp.path().join("k/plain.pk8");
    generate(&plain, None).unwrap();
    assert!(!is_encrypted(&plain).unwrap());
    load(&plain, Some(&pass)).unwrap();
    load(&plain, None).unwrap();
}

// The byte helper: encrypted bytes name no plain byte of the secret, decrypt back with the
// passphrase, need one, refuse a wrong one; plain bytes are `None`. A PKCS#8 key
// encrypted with it is a key file `load` opens.
#[test]
fn encrypted_bytes_round_trip() {
    let what = Path::new("database row tls/ca.key");
    let pass = Passphrase::new("correct horse").unwrap();
    let secret = b"secret bytes of a CA key\n".repeat(4);
    let sealed = encrypt_bytes(what, &secret, &pass).unwrap();
    assert!(sealed.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    assert!(!sealed.contains("secret bytes"), "{}", *sealed);
    let back = decrypt_bytes(what, sealed.as_bytes(), Some(&pass)).unwrap();
    assert_eq!(back.as_deref().map(Vec::as_slice), Some(secret.as_slice()));
    let err = decrypt_bytes(what, sealed.as_bytes(), None).unwrap_err();
    assert_eq!(err.code(), "key.passphrase_needed");
    assert!(err.to_string().contains("tls/ca.key"), "{err}");
    let wrong = Passphrase::new("wrong horse").unwrap();
    if let Ok(plain) = decrypt_bytes(what, sealed.as_bytes(), Some(&wrong)) {
        // CBC padding checked out by chance: the result is not the secret.
        assert_ne!(plain.as_deref().map(Vec::as_slice), Some(secret.as_slice()));
    }
    assert!(decrypt_bytes(what, &secret, Some(&pass)).unwrap().is_none());
    // A key encrypted by the helper opens as a key file.
    let tmp = tempfile::tempdir().unwrap();
    let plain_key = tmp.path().join("plain.pk8");
    generate(&plain_key, None).unwrap();
    let der = std::fs::read(&plain_key).unwrap();
    let file = tmp.path().join("sealed.pk8");
    std::fs::write(&file, encrypt_key(&file, &der, &pass).unwrap().as_bytes()).unwrap();
    assert_eq!(
        public_key(&file, Some(&pass)).unwrap(),
        public_key(&plain_key, None).unwrap()
    );
}
