//! Which `/repo/…` request paths are looked up (plain relative paths only), whether one
//! stays in its directory (no symbolic link on the way but the operator's mounts), and which
//! directory it is looked up in (the site repository's or the repository directory).

use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode_str;

use super::Served;

/// The longest path segment a file system takes (`NAME_MAX`); longer ones are 404.
const MAX_SEGMENT: usize = 255;

/// The relative file path for a `/repo/…` request path, if it is a plain path: one leading
/// `/`, no empty, `.` or `..` segment, none longer than [`MAX_SEGMENT`] bytes.
pub(super) fn relative(path: &str) -> Option<PathBuf> {
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
pub(super) fn without_links(dir: &Path, rel: &Path) -> bool {
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

/// Where a request's relative path `rel` (of the request path `full_path` under `/repo`) is
/// looked up: `/repo/site/…` in the server's own site repository when it has one, anything
/// else in the repository directory. Returns the base directory, the path under it and the
/// request path under it (for `ServeDir`).
pub(super) fn resolve<'a>(
    st: &Served,
    full_path: &'a str,
    rel: PathBuf,
) -> (PathBuf, PathBuf, &'a str) {
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
