//! The small-file cache (shared, with a copy per thread) checked against the file's version
//! on every use, and the lookup of a file that fills it ([`look`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::UNIX_EPOCH;

use axum::body::Bytes;
use axum::http::HeaderValue;

/// Whole files up to this size are kept in the [`Cache`]; larger whole files are streamed
/// by `file_chunks`, ranges by `ServeDir`.
pub const CACHED_FILE: u64 = 256 * 1024;

/// The cache holds at most this many bytes of file contents; when a new file would exceed
/// it, the cache is emptied and starts over (the hot set of a repository, its metadata and
/// small targets, is far smaller).
const CACHE_BUDGET: usize = 64 * 1024 * 1024;

/// Each thread's copy of the [`Cache`] entries it served holds at most this many bytes (a
/// server has a worker thread per core); past it, the copy is emptied and starts over.
const LOCAL_BUDGET: usize = 8 * 1024 * 1024;

/// What identifies one version of a file: if any of it changed, the bytes may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Version {
    #[cfg(unix)]
    fn of(meta: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Version {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    fn of(meta: &Metadata) -> Self {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0));
        Version {
            dev: 0,
            ino: 0,
            len: meta.len(),
            mtime_ns,
            ctime_ns: 0,
        }
    }
}

/// One cached file.
#[derive(Debug, Clone)]
struct Entry {
    version: Version,
    etag: HeaderValue,
    bytes: Bytes,
}

/// Small repository files in memory, keyed by their path and checked against the file's
/// `Version` on every use.
#[derive(Debug, Default)]
pub struct Cache {
    files: RwLock<Files>,
}

#[derive(Debug, Default)]
struct Files {
    map: HashMap<PathBuf, Entry>,
    bytes: usize,
}

impl Cache {
    /// The entry of `full` at `version`: from this thread's copy when it has it, else from
    /// the shared map, then copied (bytes and `ETag` into buffers of this thread's own) into
    /// this thread's copy. Keyed by path and checked against the version like the shared map,
    /// so one copy serves every `Cache` of the process alike.
    fn get(&self, full: &Path, version: Version) -> Option<Entry> {
        thread_local! {
            static LOCAL: RefCell<Files> = RefCell::new(Files::default());
        }
        let local = LOCAL.with(|l| {
            l.borrow()
                .map
                .get(full)
                .filter(|e| e.version == version)
                .cloned()
        });
        if local.is_some() {
            return local;
        }
        let shared = {
            let files = self.files.read().ok()?;
            files
                .map
                .get(full)
                .filter(|e| e.version == version)
                .cloned()?
        };
        let Ok(etag) = HeaderValue::from_bytes(shared.etag.as_bytes()) else {
            return Some(shared);
        };
        let own = Entry {
            version,
            etag,
            bytes: Bytes::copy_from_slice(&shared.bytes),
        };
        LOCAL.with(|l| {
            l.borrow_mut()
                .put(full.to_path_buf(), own.clone(), LOCAL_BUDGET);
        });
        Some(own)
    }

    fn put(&self, full: PathBuf, entry: Entry) {
        let Ok(mut files) = self.files.write() else {
            return;
        };
        files.put(full, entry, CACHE_BUDGET);
    }
}

impl Files {
    /// Adds `entry`, first emptying the map when it would grow past `budget` bytes.
    fn put(&mut self, full: PathBuf, entry: Entry, budget: usize) {
        if self.bytes + entry.bytes.len() > budget {
            self.map.clear();
            self.bytes = 0;
        }
        self.bytes += entry.bytes.len();
        if let Some(old) = self.map.insert(full, entry) {
            self.bytes -= old.bytes.len();
        }
    }
}

/// A regular file's `ETag` and, when small and wanted, its bytes.
pub(super) struct Found {
    pub(super) etag: HeaderValue,
    pub(super) content: Content,
}

/// Where the answer's bytes come from.
pub(super) enum Content {
    /// A small file, whole, in memory.
    Bytes(Bytes),
    /// A large file, whole: this open descriptor, of this length.
    File(File, u64),
    /// A range (or anything else): `ServeDir` answers.
    Elsewhere,
}

fn etag_of(meta: &Metadata) -> Option<HeaderValue> {
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    let etag = format!(
        "\"{:x}.{:x}-{:x}\"",
        mtime.as_secs(),
        mtime.subsec_nanos(),
        meta.len()
    );
    HeaderValue::from_maybe_shared(Bytes::from(etag)).ok()
}

/// Looks `full` up; `None` when it is missing or not a regular file (a directory goes to
/// `ServeDir`, which may answer its `index.html`). When `whole` is asked for, small files
/// come from (or go into) `cache` and large ones are opened for [`file_chunks`].
///
/// [`file_chunks`]: super::file_chunks
pub(super) fn look(cache: &Cache, full: PathBuf, whole: bool) -> Option<Found> {
    let meta = std::fs::metadata(&full).ok()?;
    if !meta.is_file() {
        return None;
    }
    if !whole {
        return Some(Found {
            etag: etag_of(&meta)?,
            content: Content::Elsewhere,
        });
    }
    if let Some(e) = cache.get(&full, Version::of(&meta)) {
        return Some(Found {
            etag: e.etag,
            content: Content::Bytes(e.bytes),
        });
    }
    // Read from one descriptor and describe that descriptor: the path may have been
    // replaced since the `stat` above.
    let mut file = File::open(&full).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.len() > CACHED_FILE {
        return Some(Found {
            etag: etag_of(&meta)?,
            content: Content::File(file, meta.len()),
        });
    }
    let mut buf = vec![0; usize::try_from(meta.len()).ok()?];
    // A file shorter than its `fstat` (truncated under us) is not served half.
    file.read_exact(&mut buf).ok()?;
    let entry = Entry {
        version: Version::of(&meta),
        etag: etag_of(&meta)?,
        bytes: Bytes::from(buf),
    };
    let found = Found {
        etag: entry.etag.clone(),
        content: Content::Bytes(entry.bytes.clone()),
    };
    cache.put(full, entry);
    Some(found)
}
