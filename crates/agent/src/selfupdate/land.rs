//! Landing a binary over another atomically (temporary file beside it, mode 0755, SHA-256
//! checked, fsync, rename), and removing what a killed landing left.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::error::{io_err, SelfUpdateError};

/// Copies `from` over `dest` atomically (a temporary file beside `dest`, mode 0755), checking
/// the SHA-256 when `want` (hex) is given.
pub(super) fn land_copy(
    from: &Path,
    dest: &Path,
    want: Option<&str>,
) -> Result<(), SelfUpdateError> {
    let mut src = fs::File::open(from).map_err(io_err("open", from))?;
    let mut landing = cascade_repo::fsutil::Landing::start(dest, &landing_prefix(dest))
        .map_err(io_err("create a temporary file beside", dest))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf).map_err(io_err("read", from))?;
        if n == 0 {
            break;
        }
        landing
            .write(&buf[..n])
            .map_err(io_err("write beside", dest))?;
    }
    landing
        .set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(io_err("make executable", dest))?;
    let want = want.map(hex::decode).transpose().ok().flatten();
    match landing.finish(want.as_deref()) {
        Ok(_) => Ok(()),
        Err(cascade_repo::fsutil::LandError::Mismatch { sha256, .. }) => {
            Err(SelfUpdateError::Changed {
                path: from.to_owned(),
                found: hex::encode(sha256),
                expected: want.map(hex::encode).unwrap_or_default(),
            })
        }
        Err(cascade_repo::fsutil::LandError::Io(e)) => Err(io_err("land", dest)(e)),
    }
}

/// The temporary file prefix beside `exe` (`.cascade.new-`).
fn landing_prefix(exe: &Path) -> String {
    let name = exe
        .file_name()
        .map_or_else(|| "cascade".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.new-")
}

/// Removes the temporary files a killed commit left beside `exe`.
pub(super) fn remove_landing_debris(exe: &Path) {
    let (Some(dir), prefix) = (exe.parent(), landing_prefix(exe)) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(e.path());
        }
    }
}

pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
