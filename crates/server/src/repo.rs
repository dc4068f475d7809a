//! Repository serving: the directory `<data-dir>/repo` (or `--repo-dir`) at `/repo/…`,
//! public and read-only. Every answer has a strong `ETag` (modification time and length, as
//! nginx does) and honours `If-None-Match` (304). Only plain relative paths are looked up;
//! anything else (`..`, absolute, undecodable, an empty segment as in `/repo//x`, a segment
//! over 255 bytes) is 404, and so is any path through a symbolic link: `/repo/` never leaves
//! its directory (`docs/operating.md#limits`), except through the operator's links of `site`
//! and `upstream` to their directories.
//!
//! Small whole files (up to [`CACHED_FILE`]) are answered from a memory [`Cache`]: each
//! request `stat`s the path on its own thread (a microsecond system call for a hot inode,
//! as nginx does) and the cached bytes are used only while device, inode, length,
//! modification and change times are all unchanged, so a file replaced by an atomic rename
//! or rewritten in place is read again. A miss opens the file, `fstat`s the descriptor and
//! reads it whole from that descriptor, so the `ETag` and the bytes come from the same
//! version. Each thread also keeps its own copy of the entries it served (up to
//! [`LOCAL_BUDGET`], checked against the same version): a hit there takes no lock and
//! touches no reference count another core writes, as nginx's independent workers do. Large
//! whole files are streamed from the descriptor that was `fstat`ed, in 1 MiB
//! chunks read on the blocking pool straight into the buffers sent. Directories and `Range`
//! requests go to `tower-http`'s `ServeDir` (ranges, `Last-Modified`).
//!
//! The upstream's verified copy is written under `upstream/` by [`crate::mirror`]. The server's
//! own site repository ([`crate::site`]) lives outside the repository directory; `/repo/site/…`
//! is looked up in its served tree ([`Served::site`]) under the same rules.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::UNIX_EPOCH;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cascade_core::TrustDomain;
use cascade_proto::RepoVersions;
use percent_encoding::percent_decode_str;
use tower::ServiceExt;
use tower_http::services::ServeDir;

/// The longest path segment a file system takes (`NAME_MAX`); longer ones are 404.
const MAX_SEGMENT: usize = 255;

/// The relative file path for a `/repo/…` request path, if it is a plain path: one leading
/// `/`, no empty, `.` or `..` segment, none longer than [`MAX_SEGMENT`] bytes.
fn relative(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    let rest = decoded.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(PathBuf::new());
    }
    let body = rest.strip_suffix('/').unwrap_or(rest);
    let plain = body
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.len() <= MAX_SEGMENT);
    let p = Path::new(body);
    (plain && p.components().all(|c| matches!(c, Component::Normal(_)))).then(|| p.to_path_buf())
}

/// The first-level entries of the repository directory that may be symbolic links to a
/// directory: the operator links the site repository's public tree as `site`
/// (`docs/operating.md#keys-and-their-ceremony`), and may mount the mirror the same way.
const MOUNTS: [&str; 2] = ["site", "upstream"];

/// Whether `rel` under `dir` stays in the directory: no component is a symbolic link, except a
/// first-level [`MOUNTS`] entry linking to a directory (one `lstat` per component; a missing
/// component is `false` too).
fn without_links(dir: &Path, rel: &Path) -> bool {
    let mut at = dir.to_path_buf();
    for (i, c) in rel.components().enumerate() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if !m.file_type().is_symlink() => {}
            Ok(_) if i == 0 && MOUNTS.iter().any(|m| c.as_os_str() == *m) => {
                if !std::fs::metadata(&at).is_ok_and(|m| m.is_dir()) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Whole files up to this size are kept in the [`Cache`]; larger whole files are streamed
/// by [`file_chunks`], ranges by `ServeDir`.
pub const CACHED_FILE: u64 = 256 * 1024;

/// The cache holds at most this many bytes of file contents; when a new file would exceed
/// it, the cache is emptied and starts over (the hot set of a repository, its metadata and
/// small targets, is far smaller).
const CACHE_BUDGET: usize = 64 * 1024 * 1024;

/// Each thread's copy of the [`Cache`] entries it served holds at most this many bytes (a
/// server has a worker thread per core); past it, the copy is emptied and starts over.
const LOCAL_BUDGET: usize = 8 * 1024 * 1024;

/// `ServeDir` (ranges) reads in chunks of this size, each one trip to the blocking pool (its
/// default, 64 KiB, makes 320 trips for 20 MiB). Memory in flight is a chunk or two per
/// response being streamed.
const STREAM_CHUNK: usize = 256 * 1024;

/// Whole large files are streamed by [`file_chunks`] in chunks of this size: each chunk is
/// read straight into the buffer that goes to the socket (`tokio::fs` would read into its
/// own buffer and copy), one blocking-pool trip per MiB.
const WHOLE_CHUNK: u64 = 1024 * 1024;

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
/// [`Version`] on every use.
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
struct Found {
    etag: HeaderValue,
    content: Content,
}

/// Where the answer's bytes come from.
enum Content {
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
fn look(cache: &Cache, full: PathBuf, whole: bool) -> Option<Found> {
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

fn matches(header: &str, etag: &[u8]) -> bool {
    header.trim() == "*"
        || header
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/").as_bytes() == etag)
}

fn content_type(path: &str) -> &'static str {
    match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The `len` bytes of `file`, in chunks read on the blocking pool straight into the buffers
/// that are sent. A file that shrinks under us ends the body with an error (the client sees a
/// short answer against its `Content-Length`, never other bytes).
pub(crate) fn file_chunks(
    file: File,
    len: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::try_unfold((file, len), |(file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = left.min(WHOLE_CHUNK);
        let (file, chunk) = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
            let mut file = file;
            file.by_ref()
                .take(want)
                .read_to_end(&mut buf)
                .map(|_| (file, buf))
        })
        .await
        .map_err(std::io::Error::other)??;
        if chunk.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was sent",
            ));
        }
        let left = left - chunk.len() as u64;
        Ok(Some((Bytes::from(chunk), (file, left))))
    })
}

/// What `/repo/` serves from: the repository directory and the small-file cache.
#[derive(Debug, Clone)]
pub struct Served {
    /// The repository directory.
    pub dir: PathBuf,
    /// The served tree of the server's own site repository, answering `/repo/site/…`; `None`
    /// when the operator linked `site` into the repository directory.
    pub site: Option<PathBuf>,
    /// Small files in memory, checked against the file on every request.
    pub cache: Arc<Cache>,
}

/// The `signed.version` of a TUF metadata file, if it parses (the one field read of it).
pub(crate) fn signed_version(bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Signed {
        signed: Version,
    }
    #[derive(serde::Deserialize)]
    struct Version {
        version: u64,
    }
    serde_json::from_slice::<Signed>(bytes)
        .ok()
        .map(|s| s.signed.version)
}

impl Served {
    /// The `version` of each trust domain's `timestamp.json` served now: what clients are
    /// told as their floor, in the policy answer's header and in every notice
    /// (`docs/architecture.md#run-time`). Read through the cache: a `stat` per domain, a
    /// parse only when the file changed. `None` where a domain has no readable timestamp.
    pub fn announced(&self) -> RepoVersions {
        let mut out = RepoVersions::default();
        for domain in TrustDomain::ALL {
            let base = match (domain, &self.site) {
                (TrustDomain::Site, Some(site)) => site.clone(),
                _ => self.dir.join(domain.as_str()),
            };
            let full = base.join("metadata").join("timestamp.json");
            let version = look(&self.cache, full, true).and_then(|found| match found.content {
                Content::Bytes(b) => signed_version(&b),
                Content::File(..) | Content::Elsewhere => None,
            });
            out.set(domain, version);
        }
        out
    }
}

/// Where a request's relative path `rel` (of the request path `full_path` under `/repo`) is
/// looked up: `/repo/site/…` in the server's own site repository when it has one, anything
/// else in the repository directory. Returns the base directory, the path under it and the
/// request path under it (for `ServeDir`).
fn resolve<'a>(st: &Served, full_path: &'a str, rel: PathBuf) -> (PathBuf, PathBuf, &'a str) {
    match (&st.site, rel.strip_prefix("site")) {
        (Some(site), Ok(rest)) => {
            let path = full_path.strip_prefix("/site").unwrap_or("/");
            (
                site.clone(),
                rest.to_path_buf(),
                if path.is_empty() { "/" } else { path },
            )
        }
        _ => (st.dir.clone(), rel, full_path),
    }
}

/// A whole-file answer decided without the router: 200 with the bytes or the open file, or
/// 304 (see [`whole`]).
pub(crate) enum Whole {
    /// `If-None-Match` matched: 304 with this `ETag`.
    NotModified(HeaderValue),
    /// 200: the whole file.
    File {
        /// Its strong `ETag`.
        etag: HeaderValue,
        /// Its length (`Content-Length`).
        len: u64,
        /// Its `Content-Type`.
        content_type: &'static str,
        /// Its bytes.
        body: WholeBody,
    },
}

/// Where a [`Whole`] answer's bytes are.
pub(crate) enum WholeBody {
    /// A small file, from the [`Cache`].
    Bytes(Bytes),
    /// A large file: this descriptor, `fstat`ed for the `ETag` and length (sent by
    /// `sendfile` on plain HTTP).
    File(File),
}

/// The answer to `GET`/`HEAD /repo{full_path}` (no `Range`) when it is a regular file that
/// may be served, under exactly the rules of [`serve`]: plain relative path, no symbolic link
/// on the way, a strong `ETag` and `If-None-Match`. `None` for anything else (missing, a
/// directory, a link, a bad path): the router answers those ([`serve`]), so the fast path of
/// [`crate::front`] never decides a refusal on its own.
pub(crate) fn whole(st: &Served, full_path: &str, if_none_match: Option<&[u8]>) -> Option<Whole> {
    let rel = relative(full_path)?;
    let (base, rel, path) = resolve(st, full_path, rel);
    if rel.as_os_str().is_empty() || !without_links(&base, &rel) {
        return None;
    }
    let found = look(&st.cache, base.join(rel), true)?;
    let hit = if_none_match
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(|v| matches(v, found.etag.as_bytes()));
    if hit {
        return Some(Whole::NotModified(found.etag));
    }
    let (len, body) = match found.content {
        Content::Bytes(b) => (b.len() as u64, WholeBody::Bytes(b)),
        Content::File(f, len) => (len, WholeBody::File(f)),
        Content::Elsewhere => return None,
    };
    Some(Whole::File {
        etag: found.etag,
        len,
        content_type: content_type(path),
        body,
    })
}

/// `GET|HEAD /repo/{*path}`.
#[utoipa::path(get, path = "/repo/{path}", tag = "repository",
    summary = "Repository files (TUF metadata and targets) with Range, ETag/If-None-Match, Content-Length",
    params(("path" = String, Path, description = "The file's path under the repository directory")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = String),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = String),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 404, description = "No such file"),
        (status = 416, description = "The range is not satisfiable")))]
pub async fn serve(State(st): State<Served>, mut req: Request) -> Response {
    let full_path = req.uri().path().strip_prefix("/repo").unwrap_or("/");
    let Some(rel) = relative(full_path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (base, rel, path) = resolve(&st, full_path, rel);
    // A few `lstat`s of hot inodes, microseconds: on this thread, as `look` `stat`s, rather
    // than a trip to the blocking pool per request.
    if !without_links(&base, &rel) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let whole = !req.headers().contains_key(RANGE);
    let found = look(&st.cache, base.join(rel), whole);
    if let Some(f) = &found {
        let hit = req
            .headers()
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches(v, f.etag.as_bytes()));
        if hit {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            resp.headers_mut().insert(ETAG, f.etag.clone());
            return resp;
        }
    }
    let head = req.method() == Method::HEAD;
    let mut range_etag = None;
    let answer = match found {
        Some(Found {
            etag,
            content: Content::Bytes(bytes),
        }) => {
            let len = bytes.len() as u64;
            Some((
                etag,
                len,
                if head {
                    Body::empty()
                } else {
                    Body::from(bytes)
                },
            ))
        }
        Some(Found {
            etag,
            content: Content::File(file, len),
        }) => Some((
            etag,
            len,
            if head {
                Body::empty()
            } else {
                Body::from_stream(file_chunks(file, len))
            },
        )),
        Some(Found {
            etag,
            content: Content::Elsewhere,
        }) => {
            range_etag = Some(etag);
            None
        }
        None => None,
    };
    if let Some((etag, len, body)) = answer {
        let mut resp = Response::new(body);
        let h = resp.headers_mut();
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(ETAG, etag);
        return resp;
    }
    let uri = match req.uri().query() {
        Some(q) => format!("{path}?{q}").parse::<Uri>(),
        None => path.parse::<Uri>(),
    };
    match uri {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    let dir = ServeDir::new(&base).with_buf_chunk_size(STREAM_CHUNK);
    let mut resp = match dir.oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(never) => match never {},
    };
    if resp.status().is_server_error() {
        // `ServeDir` answers 500 for file-system errors (a name too long, a component that
        // is not a directory): for a client it is simply not there.
        return StatusCode::NOT_FOUND.into_response();
    }
    let ok = matches!(resp.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT);
    if let (Some(tag), true) = (range_etag, ok) {
        resp.headers_mut().insert(ETAG, tag);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
