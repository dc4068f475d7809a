//! The workflow against a repository held in memory (one Ed25519 key signs every role): which
//! metadata the delegation search fetches, in which order, and what it refuses
//! (`docs/architecture.md#the-client-workflow`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

use super::{Limits, MetaStore, TufError, Updater};

/// Files by URL path, and every path asked for, in order.
#[derive(Debug, Clone, Default)]
struct Memory {
    files: HashMap<String, Vec<u8>>,
    asked: Arc<Mutex<Vec<String>>>,
}

#[tough::async_trait]
impl Transport for Memory {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let path = url.path().to_owned();
        self.asked.lock().unwrap().push(path.clone());
        match self.files.get(&path) {
            Some(b) => {
                let bytes = tough::Bytes::from(b.clone());
                Ok(Box::pin(futures::stream::once(async move { Ok(bytes) })))
            }
            None => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
        }
    }
}

#[derive(Default)]
struct NoStore;

impl MetaStore for NoStore {
    fn load(&self, _role: &str) -> Option<Vec<u8>> {
        None
    }
    fn store(&mut self, _role: &str, _raw: &[u8]) -> Result<(), TufError> {
        Ok(())
    }
}

/// One key for every role.
struct Signer {
    pair: aws_lc_rs::signature::Ed25519KeyPair,
    key: Value,
    keyid: String,
}

impl Signer {
    fn new() -> Self {
        use aws_lc_rs::signature::KeyPair as _;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
        let key = json!({
            "keytype": "ed25519",
            "scheme": "ed25519",
            "keyval": {"public": hex::encode(pair.public_key().as_ref())},
        });
        let parsed: tough::schema::key::Key = serde_json::from_value(key.clone()).unwrap();
        let keyid = hex::encode(parsed.key_id().unwrap());
        Self { pair, key, keyid }
    }

    fn sign(&self, signed: &Value) -> Vec<u8> {
        let sig = self.pair.sign(&super::envelope::canonical(signed));
        serde_json::to_vec(&json!({
            "signed": signed,
            "signatures": [{"keyid": self.keyid, "sig": hex::encode(sig.as_ref())}],
        }))
        .unwrap()
    }
}

const EXPIRES: &str = "2100-01-01T00:00:00Z";

fn targets(delegations: Option<Value>, files: &[&str]) -> Value {
    let files: serde_json::Map<String, Value> = files
        .iter()
        .map(|f| {
            let h = crate::fsutil::sha256_hex(f.as_bytes());
            (
                (*f).to_owned(),
                json!({"length": f.len(), "hashes": {"sha256": h}}),
            )
        })
        .collect();
    let mut t = json!({"_type": "targets", "spec_version": "1.0.0", "version": 1,
        "expires": EXPIRES, "targets": files});
    if let Some(d) = delegations {
        t["delegations"] = d;
    }
    t
}

/// A repository: `targets` delegates `a/*` to A, then `*/*` to B (terminating), then `*/*` to C;
/// A lists `a/x`, B lists `b/x`, C lists `c/x`. `listed` are the roles snapshot lists.
fn repository(s: &Signer, listed: &[&str]) -> (Vec<u8>, Memory) {
    let role = |name: &str, paths: &[&str], terminating: bool| {
        json!({"name": name, "keyids": [s.keyid], "threshold": 1, "paths": paths,
            "terminating": terminating})
    };
    let delegations = json!({"keys": {s.keyid.clone(): s.key.clone()}, "roles": [
        role("A", &["a/*"], false), role("B", &["*/*"], true), role("C", &["*/*"], false)]});
    let mut files = HashMap::new();
    let mut meta = serde_json::Map::new();
    let mut add = |name: &str, signed: Value, files: &mut HashMap<String, Vec<u8>>| {
        files.insert(format!("/metadata/{name}.json"), s.sign(&signed));
        if listed.contains(&name) || name == "targets" {
            meta.insert(format!("{name}.json"), json!({"version": 1}));
        }
    };
    add("targets", targets(Some(delegations), &[]), &mut files);
    add("A", targets(None, &["a/x"]), &mut files);
    add("B", targets(None, &["b/x"]), &mut files);
    add("C", targets(None, &["c/x"]), &mut files);
    let snapshot = json!({"_type": "snapshot", "spec_version": "1.0.0", "version": 1,
        "expires": EXPIRES, "meta": meta});
    files.insert("/metadata/snapshot.json".to_owned(), s.sign(&snapshot));
    let timestamp = json!({"_type": "timestamp", "spec_version": "1.0.0", "version": 1,
        "expires": EXPIRES, "meta": {"snapshot.json": {"version": 1}}});
    files.insert("/metadata/timestamp.json".to_owned(), s.sign(&timestamp));
    let keys = json!({s.keyid.clone(): s.key.clone()});
    let roles: serde_json::Map<String, Value> = ["root", "timestamp", "snapshot", "targets"]
        .iter()
        .map(|r| {
            (
                (*r).to_owned(),
                json!({"keyids": [s.keyid], "threshold": 1}),
            )
        })
        .collect();
    let root = json!({"_type": "root", "spec_version": "1.0.0", "version": 1,
        "expires": EXPIRES, "consistent_snapshot": false, "keys": keys, "roles": roles});
    (
        s.sign(&root),
        Memory {
            files,
            ..Memory::default()
        },
    )
}

/// Search `target` in a fresh client; the result and the delegated roles fetched, in order.
async fn search(
    repo: &(Vec<u8>, Memory),
    target: &str,
) -> (Result<Option<String>, TufError>, Vec<String>) {
    let (root, memory) = repo;
    memory.asked.lock().unwrap().clear();
    let url = Url::parse("http://127.0.0.1/metadata/").unwrap();
    let mut store = NoStore;
    let now = jiff::Timestamp::now();
    let mut updater = Updater::new(root, now, memory, &url, &mut store, Limits::default()).unwrap();
    let found = updater.find_target(target).await;
    let top = [
        "/metadata/2.root.json",
        "/metadata/timestamp.json",
        "/metadata/snapshot.json",
        "/metadata/targets.json",
    ];
    let asked = memory.asked.lock().unwrap().clone();
    assert_eq!(asked[..4], top, "top-level metadata first");
    let delegated = asked[4..]
        .iter()
        .map(|p| {
            p.trim_start_matches("/metadata/")
                .trim_end_matches(".json")
                .to_owned()
        })
        .collect();
    let found = found.map(|t| t.map(|t| t.hashes["sha256"].clone()));
    (found, delegated)
}

// Roles are fetched only when the search reaches them: a non-matching delegation is skipped,
// a terminating one hides every later delegation, and a role found first ends the search.
#[tokio::test]
async fn delegations_are_searched_lazily_in_order() {
    let s = Signer::new();
    let repo = repository(&s, &["A", "B", "C"]);
    let h = |f: &str| Some(crate::fsutil::sha256_hex(f.as_bytes()));
    let (found, asked) = search(&repo, "a/x").await;
    assert_eq!((found.unwrap(), asked), (h("a/x"), vec!["A".to_owned()]));
    let (found, asked) = search(&repo, "b/x").await;
    assert_eq!((found.unwrap(), asked), (h("b/x"), vec!["B".to_owned()]));
    // B terminates the search for every path, so C is never asked for.
    let (found, asked) = search(&repo, "c/x").await;
    assert_eq!((found.unwrap(), asked), (None, vec!["B".to_owned()]));
    let (found, asked) = search(&repo, "a/y").await;
    assert_eq!(
        (found.unwrap(), asked),
        (None, vec!["A".to_owned(), "B".to_owned()])
    );
}

// A delegated role that snapshot does not list is neither fetched nor trusted.
#[tokio::test]
async fn delegation_not_in_snapshot_refused() {
    let s = Signer::new();
    let repo = repository(&s, &["A", "C"]);
    let (found, asked) = search(&repo, "b/x").await;
    assert_eq!(found.unwrap_err().code(), "tuf.not_listed");
    assert!(asked.is_empty(), "{asked:?}");
}

// A delegated role signed by a key its delegation does not name is refused.
#[tokio::test]
async fn delegated_role_signed_by_other_key_refused() {
    let s = Signer::new();
    let mut repo = repository(&s, &["A", "B", "C"]);
    let other = Signer::new();
    repo.1.files.insert(
        "/metadata/B.json".to_owned(),
        other.sign(&targets(None, &["b/x"])),
    );
    let (found, asked) = search(&repo, "b/x").await;
    assert_eq!(found.unwrap_err().code(), "tuf.bad_signature");
    assert_eq!(asked, vec!["B".to_owned()]);
}
