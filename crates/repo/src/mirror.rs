//! Mirroring: copy a repository, verified, from one source into a local served tree — what the
//! server does with the upstream and what an update agent (relay) does for its clients.
//!
//! Targets are fetched first (hash-checked, content-addressed, never overwritten), then the
//! metadata exactly as signed, `timestamp.json` last, so the local tree is always serveable.
//! Temporary and partial files live in the client's private datastore (`mirror-tmp/`), never
//! in the served tree; a broken target download is resumed by the next run, and what a killed
//! run left is removed by the next (`docs/operating.md#crash-debris`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tough::{Bytes, Transport, TransportError, TransportStream};
use url::Url;

use crate::client::{sha256_of, target_url, RepoClient, RepoSource};
use crate::failure::FailureReason;
use crate::fsutil::{remove_debris, write_atomic_in};
use crate::layout::{TargetPath, METADATA_DIR, TARGETS_DIR};
use crate::save::save_resumable;

/// A transport that keeps the complete body of every successful fetch, so metadata can be
/// stored byte for byte as it was signed.
#[derive(Debug, Clone)]
pub struct RecordingTransport<T> {
    inner: T,
    seen: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl<T> RecordingTransport<T> {
    /// Record what `inner` fetches.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            seen: Arc::default(),
        }
    }

    /// The body fetched from `url`, if any.
    pub fn body(&self, url: &str) -> Option<Vec<u8>> {
        self.seen.lock().ok()?.get(url).cloned()
    }

    /// Every recorded body by URL.
    pub fn bodies(&self) -> HashMap<String, Vec<u8>> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The inner transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

#[tough::async_trait]
impl<T: Transport + Clone + 'static> Transport for RecordingTransport<T> {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let mut stream = self.inner.fetch(url.clone()).await?;
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk?);
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(url.to_string(), body.clone());
        }
        Ok(Box::pin(futures::stream::once(async move {
            Ok(Bytes::from(body))
        })))
    }
}

/// What [`mirror`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MirrorReport {
    /// Targets fetched in this run.
    pub fetched: usize,
    /// Targets already present with the right hash.
    pub present: usize,
    /// Bytes fetched.
    pub bytes: u64,
    /// Snapshot version now served by the mirror.
    pub snapshot_version: u64,
}

fn local(e: impl std::fmt::Display) -> FailureReason {
    FailureReason::Local(e.to_string())
}

/// Copy the repository served by `source` into `dest` (which then holds `metadata/` and
/// `targets/`), verifying everything with `client`'s trust state.
///
/// # Errors
/// Why the source was refused, or a local I/O failure; `dest` keeps serving what it had.
pub async fn mirror(
    client: &RepoClient,
    source: &RepoSource,
    dest: &Path,
) -> Result<MirrorReport, FailureReason> {
    let tmp = client.datastore().join("mirror-tmp");
    // Leftovers of a killed run: temporary files (partial targets are kept for resuming).
    remove_debris(&tmp, &[".tmp-"]);
    // Debris an older version left in the served tree.
    remove_debris(dest, &[".tmp-", ".partial-"]);
    let transport = RecordingTransport::new(client.transport_for(source));
    let set = client.load_with(source, transport.clone()).await?;
    let targets_base =
        Url::parse(&format!("{}/{TARGETS_DIR}/", trimmed(&source.base))).map_err(local)?;
    let metadata_base = format!("{}/{METADATA_DIR}", trimmed(&source.base));
    let mut report = MirrorReport {
        snapshot_version: set.snapshot().map_or(0, |s| s.meta.version.get()),
        ..MirrorReport::default()
    };
    // Every trusted target, delegated ones included (`docs/architecture.md#trust-model`).
    let all = set.resolved_targets();
    for (tn, t) in all {
        let path: TargetPath = tn
            .parse()
            .map_err(|_| FailureReason::UnsafeName(tn.clone()))?;
        let sha256 = sha256_of(&t)?;
        let sha_hex = hex::encode(&sha256);
        let rel = path.stored_path(&sha_hex);
        let disk = dest.join(TARGETS_DIR).join(&rel);
        if std::fs::read(&disk).is_ok_and(|b| crate::fsutil::sha256_hex(&b) == sha_hex) {
            report.present += 1;
            continue;
        }
        let dir = disk
            .parent()
            .map_or_else(|| dest.to_owned(), Path::to_path_buf);
        let name = format!("{sha_hex}.{}", path.file());
        let url = target_url(&targets_base, &path, &sha256)?;
        save_resumable(
            transport.inner(),
            url,
            t.length,
            &sha256,
            (&dir, &name),
            &tmp,
        )
        .await?;
        report.fetched += 1;
        report.bytes += t.length;
    }
    let md = dest.join(METADATA_DIR);
    let write =
        |name: &str, bytes: &[u8]| write_atomic_in(&md.join(name), bytes, &tmp).map_err(local);
    let root_version = set.root().meta.version.get();
    for v in 1..=root_version {
        let name = format!("{v}.root.json");
        if md.join(&name).exists() {
            continue;
        }
        let bytes = match transport.body(&format!("{metadata_base}/{name}")) {
            Some(b) => b,
            None => fetch_all(transport.inner(), &format!("{metadata_base}/{name}")).await?,
        };
        write(&name, &bytes)?;
        if v == root_version {
            write("root.json", &bytes)?;
        }
    }
    // The verified bytes, whether fetched now or trusted from an earlier run (an unchanged
    // timestamp means snapshot and targets were not fetched again).
    let missing = |role: &str| FailureReason::Other(format!("no trusted {role}"));
    let targets = set.top_targets().ok_or_else(|| missing("targets"))?;
    let snapshot = set.snapshot().ok_or_else(|| missing("snapshot"))?;
    let timestamp = set.timestamp().ok_or_else(|| missing("timestamp"))?;
    // Delegated roles before the snapshot that lists them.
    for (role, v) in set.delegated_roles() {
        let name = format!("{}.{}.json", v.meta.version, crate::tuf::quote_role(role));
        write(&name, &v.raw)?;
    }
    for (name, bytes) in [
        (
            format!("{}.targets.json", targets.meta.version),
            &targets.raw,
        ),
        (
            format!("{}.snapshot.json", snapshot.meta.version),
            &snapshot.raw,
        ),
        ("timestamp.json".to_owned(), &timestamp.raw),
    ] {
        write(&name, bytes)?;
    }
    Ok(report)
}

fn trimmed(url: &Url) -> &str {
    url.as_str().trim_end_matches('/')
}

async fn fetch_all<T: Transport>(transport: &T, url: &str) -> Result<Vec<u8>, FailureReason> {
    let url = Url::parse(url).map_err(local)?;
    let mut stream = transport
        .fetch(url)
        .await
        .map_err(|e| FailureReason::Other(e.to_string()))?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.map_err(|e| FailureReason::Other(e.to_string()))?);
        if body.len() > 1 << 20 {
            return Err(FailureReason::TooLarge(
                "root metadata over 1 MiB".to_owned(),
            ));
        }
    }
    Ok(body)
}
