//! Atomic installs with one version kept for rollback, in the manner of rustup's
//! `Transaction`: a new version is staged in a hidden directory beside the installed ones,
//! fsynced, renamed into place, and only then made current by atomically replacing the
//! `current` symlink. A [`Stage`] that is dropped without `commit` removes itself, so an
//! error or a crash at any point leaves the previous version current and complete.
//!
//! Layout under the install root: `CATEGORY/NAME/VERSION/…files`, `CATEGORY/NAME/current`
//! and `CATEGORY/NAME/previous` (symlinks to a version directory), `CATEGORY/NAME/.stage-*`
//! (in-progress stages, removed by [`Installer::clean`] at start-up).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cascade_core::Category;
use cascade_repo::check_segment;
use cascade_repo::fsutil::sync_dir;

const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";
const STAGE_PREFIX: &str = ".stage-";

/// Why an install step failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A name or version that could escape the install root or is otherwise unsafe.
    #[error("unsafe {what} `{value}`")]
    Unsafe {
        /// `name` or `version`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Rollback asked with no previous version kept.
    #[error("no previous version of {0} to roll back to")]
    NoPrevious(String),
}

impl InstallError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            InstallError::Unsafe { .. } => "install.unsafe_name",
            InstallError::Io { .. } => "install.io",
            InstallError::NoPrevious(_) => "install.no_previous",
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The installed content of one data directory.
#[derive(Debug, Clone)]
pub struct Installer {
    root: PathBuf,
}

impl Installer {
    /// Installs under `root` (created on first use).
    pub fn new(root: PathBuf) -> Self {
        Installer { root }
    }

    fn item_dir(&self, category: Category, name: &str) -> Result<PathBuf, InstallError> {
        safe("name", name)?;
        Ok(self.root.join(category.as_str()).join(name))
    }

    /// The current version of `category/name`, if any.
    ///
    /// # Errors
    /// An unsafe name.
    pub fn current(&self, category: Category, name: &str) -> Result<Option<String>, InstallError> {
        Ok(link_target(&self.item_dir(category, name)?.join(CURRENT)))
    }

    /// The version kept for rollback, if any.
    ///
    /// # Errors
    /// An unsafe name.
    pub fn previous(&self, category: Category, name: &str) -> Result<Option<String>, InstallError> {
        Ok(link_target(&self.item_dir(category, name)?.join(PREVIOUS)))
    }

    /// Directory holding the files of the current version.
    ///
    /// # Errors
    /// An unsafe name.
    pub fn current_dir(
        &self,
        category: Category,
        name: &str,
    ) -> Result<Option<PathBuf>, InstallError> {
        let dir = self.item_dir(category, name)?;
        Ok(link_target(&dir.join(CURRENT)).map(|v| dir.join(v)))
    }

    /// Every installed `(category, name, current version)`.
    pub fn list(&self) -> Vec<(Category, String, String)> {
        let mut out = Vec::new();
        for c in Category::ALL {
            let Ok(entries) = fs::read_dir(self.root.join(c.as_str())) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| safe("name", n).is_ok())
                .collect();
            names.sort();
            for n in names {
                if let Ok(Some(v)) = self.current(c, &n) {
                    out.push((c, n, v));
                }
            }
        }
        out
    }

    /// Starts installing `version`: files go into [`Stage::path`]; nothing is visible until
    /// [`Stage::commit`].
    ///
    /// # Errors
    /// Unsafe name or version, or the stage directory cannot be created.
    pub fn stage(
        &self,
        category: Category,
        name: &str,
        version: &str,
    ) -> Result<Stage, InstallError> {
        safe("version", version)?;
        let item = self.item_dir(category, name)?;
        fs::create_dir_all(&item).map_err(io_err("create", &item))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{STAGE_PREFIX}{version}-"))
            .tempdir_in(&item)
            .map_err(io_err("create stage in", &item))?
            .keep();
        Ok(Stage {
            item,
            dir,
            version: version.to_owned(),
            done: false,
        })
    }

    /// Switches back to the previous version; the version rolled back from becomes the
    /// previous one, so a second rollback undoes the first.
    ///
    /// # Errors
    /// No previous version, or a file-system error (then the current version is unchanged).
    pub fn rollback(&self, category: Category, name: &str) -> Result<String, InstallError> {
        let item = self.item_dir(category, name)?;
        let prev = link_target(&item.join(PREVIOUS))
            .ok_or_else(|| InstallError::NoPrevious(format!("{category}/{name}")))?;
        let cur = link_target(&item.join(CURRENT));
        point(&item, CURRENT, &prev)?;
        if let Some(cur) = cur {
            point(&item, PREVIOUS, &cur)?;
        }
        sync_dir(&item).map_err(io_err("sync", &item))?;
        Ok(prev)
    }

    /// Removes stages left by a crash and versions that are neither current nor previous.
    ///
    /// # Errors
    /// A directory that cannot be read or removed.
    pub fn clean(&self) -> Result<(), InstallError> {
        for c in Category::ALL {
            let cat_dir = self.root.join(c.as_str());
            let Ok(items) = fs::read_dir(&cat_dir) else {
                continue;
            };
            for item in items.filter_map(Result::ok) {
                prune_item(&item.path())?;
            }
        }
        Ok(())
    }
}

/// A version being installed. Dropping it without [`Stage::commit`] removes it.
#[derive(Debug)]
pub struct Stage {
    item: PathBuf,
    dir: PathBuf,
    version: String,
    done: bool,
}

impl Stage {
    /// Where to put the new version's files.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Makes the staged version current: fsync every file and the stage, rename it to
    /// `VERSION`, point `previous` at the old current version, then `current` at the new
    /// one, and drop versions older than `previous`. Each switch is one atomic rename.
    ///
    /// # Errors
    /// A file-system error; the old version then stays current.
    pub fn commit(mut self) -> Result<(), InstallError> {
        for entry in fs::read_dir(&self.dir).map_err(io_err("read", &self.dir))? {
            let path = entry.map_err(io_err("read", &self.dir))?.path();
            if path.is_file() {
                fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err("sync", &path))?;
            }
        }
        sync_dir(&self.dir).map_err(io_err("sync", &self.dir))?;
        let dest = self.item.join(&self.version);
        let old = link_target(&self.item.join(CURRENT));
        if old.as_deref() == Some(self.version.as_str()) {
            // Reinstalling the current version: keep what is there.
            return Ok(());
        }
        if dest.exists() {
            // A leftover from an earlier crash after the rename: replace it with this stage.
            fs::remove_dir_all(&dest).map_err(io_err("remove", &dest))?;
        }
        fs::rename(&self.dir, &dest).map_err(io_err("rename", &dest))?;
        self.done = true;
        if let Some(old) = old {
            point(&self.item, PREVIOUS, &old)?;
        }
        point(&self.item, CURRENT, &self.version)?;
        sync_dir(&self.item).map_err(io_err("sync", &self.item))?;
        prune_item(&self.item)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn safe(what: &'static str, value: &str) -> Result<(), InstallError> {
    let reserved = matches!(value, CURRENT | PREVIOUS);
    if reserved || check_segment(what, value).is_err() {
        return Err(InstallError::Unsafe {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// The version a symlink points to (only a plain, safe directory name counts).
fn link_target(link: &Path) -> Option<String> {
    let target = fs::read_link(link)
        .ok()?
        .into_os_string()
        .into_string()
        .ok()?;
    (safe("version", &target).is_ok() && link.with_file_name(&target).is_dir()).then_some(target)
}

/// Atomically points `item/link` at `version` (a relative symlink, swapped in by rename).
fn point(item: &Path, link: &str, version: &str) -> Result<(), InstallError> {
    let tmp = item.join(format!(".{link}.new"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).map_err(io_err("symlink", &tmp))?;
    let dest = item.join(link);
    fs::rename(&tmp, &dest).map_err(io_err("rename", &dest))
}

fn prune_item(item: &Path) -> Result<(), InstallError> {
    let keep: Vec<String> = [CURRENT, PREVIOUS]
        .iter()
        .filter_map(|l| link_target(&item.join(l)))
        .collect();
    for entry in fs::read_dir(item)
        .map_err(io_err("read", item))?
        .filter_map(Result::ok)
    {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == CURRENT || name == PREVIOUS || keep.contains(&name) {
            continue;
        }
        if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
        } else {
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
    }
    Ok(())
}
