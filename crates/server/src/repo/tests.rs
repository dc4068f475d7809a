//! Tests of `/repo/` serving: which paths are looked up, `If-None-Match`, and the per-thread
//! cache copies following a file replaced or rewritten.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cache::{look, Content};
use super::path::relative;
use super::whole::matches;
use super::Cache;

// Only plain relative paths get an ETag lookup; traversal and absolute paths do not.
#[test]
fn relative_paths() {
    assert_eq!(relative("/a/b.json"), Some(PathBuf::from("a/b.json")));
    assert_eq!(relative("/a/%2e%2e/b"), None);
    assert_eq!(relative("/../etc/passwd"), None);
    assert_eq!(relative("//site/metadata"), None);
    assert_eq!(relative("/site//metadata"), None);
    assert_eq!(
        relative("/site/metadata/"),
        Some(PathBuf::from("site/metadata"))
    );
    assert_eq!(relative(&format!("/{}", "a".repeat(256))), None);
    assert!(relative(&format!("/{}", "a".repeat(255))).is_some());
    assert!(matches("W/\"x\", \"y\"", b"\"y\""));
    assert!(!matches("\"x\"", b"\"y\""));
}

fn bytes_of(cache: &Cache, full: &Path) -> Vec<u8> {
    match look(cache, full.to_path_buf(), true).unwrap().content {
        Content::Bytes(b) => b.to_vec(),
        Content::File(..) | Content::Elsewhere => panic!("not from the cache"),
    }
}

// Threads answering from their own copies of the cache still see a file replaced (an
// atomic rename) or rewritten in place, each on its next look, and a second cache of the
// same process answers the file as it is now.
#[test]
fn thread_copies_follow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("timestamp.json");
    std::fs::write(&full, b"one").unwrap();
    let cache = Arc::new(Cache::default());
    let look_from_threads = |want: &'static [u8]| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (cache, full) = (Arc::clone(&cache), full.clone());
                std::thread::spawn(move || {
                    for _ in 0..3 {
                        assert_eq!(bytes_of(&cache, &full), want);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    look_from_threads(b"one");
    assert_eq!(bytes_of(&cache, &full), b"one");
    assert_eq!(bytes_of(&cache, &full), b"one");

    let next = dir.path().join("timestamp.json.new");
    std::fs::write(&next, b"two, longer").unwrap();
    std::fs::rename(&next, &full).unwrap();
    look_from_threads(b"two, longer");
    assert_eq!(bytes_of(&cache, &full), b"two, longer");

    // Written in place (another length: timestamps may not tick between the writes).
    std::fs::write(&full, b"three").unwrap();
    look_from_threads(b"three");
    assert_eq!(bytes_of(&cache, &full), b"three");
    assert_eq!(bytes_of(&Cache::default(), &full), b"three");
}
