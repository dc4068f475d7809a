//! Re-checking installed content (`cascade agent verify` and the daemon's periodic check,
//! `docs/operating.md#agent-self-repair`): every file of each installed version is hashed
//! again and compared with the length and SHA-256 its verified metadata signs; a damaged or
//! missing file is fetched again, verified, and put back in place by atomic rename, from the
//! first source of the client's plan that delivers it.

use std::path::Path;

use cascade_core::report::{Attempt, Failure, Outcome, Reason};
use cascade_core::{Category, Policy};
use cascade_repo::{first_success, FailureReason, Loaded, Newest};

use crate::update::{Me, Updater};

/// One installed file found damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// The category.
    pub category: Category,
    /// `NAME VERSION FILE`.
    pub what: String,
    /// What is wrong (`missing`, `12 bytes, signed 4096`, `SHA-256 differs`).
    pub why: String,
    /// Whether it was repaired.
    pub repaired: bool,
}

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Files checked.
    pub checked: usize,
    /// Files found damaged, each repaired or not.
    pub damaged: Vec<Damaged>,
    /// Categories whose metadata no source delivered (nothing could be checked there).
    pub unchecked: Vec<(Category, String)>,
}

impl Verified {
    /// Whether everything checked is intact now (damaged files all repaired).
    pub fn is_intact(&self) -> bool {
        self.unchecked.is_empty() && self.damaged.iter().all(|d| d.repaired)
    }

    /// The findings as report attempts (source `verify`): one per damaged file, `ok` when it
    /// was repaired, `failed` (`install.damaged`) when not; one `failed` per category that
    /// could not be checked.
    pub fn attempts(&self) -> Vec<Attempt> {
        let mut out: Vec<Attempt> = self
            .damaged
            .iter()
            .map(|d| Attempt {
                category: Some(d.category),
                step: 0,
                source: "verify".into(),
                outcome: if d.repaired {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                },
                reason: Some(if d.repaired {
                    Reason::Note(format!("repaired {} ({})", d.what, d.why))
                } else {
                    Reason::Failure(Failure {
                        code: "install.damaged".into(),
                        message: format!("{} is damaged ({}) and was not repaired", d.what, d.why),
                    })
                }),
                bytes: 0,
                millis: 0,
            })
            .collect();
        out.extend(self.unchecked.iter().map(|(c, why)| Attempt {
            category: Some(*c),
            step: 0,
            source: "verify".into(),
            outcome: Outcome::Failed,
            reason: Some(Reason::Failure(Failure {
                code: "install.unverified".into(),
                message: format!("installed files not checked: {why}"),
            })),
            bytes: 0,
            millis: 0,
        }));
        out
    }
}

/// Checks every installed file of every category against verified metadata from the plan's
/// sources, repairing what is damaged.
pub async fn verify_installed(updater: &Updater, policy: &Policy, me: &Me) -> Verified {
    let mut all = Verified::default();
    let installed = updater.installer().list();
    for category in Category::ALL {
        let items: Vec<(String, String)> = installed
            .iter()
            .filter(|(c, _, _)| *c == category)
            .map(|(_, n, v)| (n.clone(), v.clone()))
            .collect();
        if items.is_empty() {
            continue;
        }
        let plan = Updater::plan(policy, me, category);
        let tried = first_success(plan.steps.iter(), |step| {
            let items = &items;
            async move {
                let source = updater.source_for(&step.source, category)?;
                let loaded = updater.client_for(category)?.open(&source).await?;
                check_category(updater, &loaded, category, items).await
            }
        })
        .await;
        if let Some(found) = tried.success {
            all.checked += found.checked;
            all.damaged.extend(found.damaged);
        } else {
            let why = tried.failed.last().map_or_else(
                || "the plan has no source".to_owned(),
                |(_, e)| e.to_string(),
            );
            all.unchecked.push((category, why));
        }
    }
    all
}

/// Checks `items` (`(name, version)`) against `loaded`; repairs from it. `Err` when a damaged
/// file could not be fetched from this source (the next one is tried).
async fn check_category(
    updater: &Updater,
    loaded: &Loaded,
    category: Category,
    items: &[(String, String)],
) -> Result<Verified, FailureReason> {
    let mut out = Verified::default();
    let local = |e: &dyn std::fmt::Display| FailureReason::Local(e.to_string());
    for (name, version) in items {
        let Some(dir) = updater
            .installer()
            .current_dir(category, name)
            .map_err(|e| local(&e))?
        else {
            continue;
        };
        let signed: Vec<_> = loaded
            .files()
            .iter()
            .filter(|f| {
                f.path.category() == category
                    && f.path.name() == name
                    && !f.is_delta()
                    && f.meta.as_ref().is_some_and(|m| &m.version == version)
            })
            .cloned()
            .collect();
        for file in signed {
            out.checked += 1;
            let path = dir.join(file.path.file());
            let Some(why) = damage(&path, file.length, &file.sha256) else {
                continue;
            };
            let newest = Newest {
                category,
                name: name.clone(),
                version: version.clone(),
                files: vec![file.clone()],
            };
            repair(loaded, &newest, &dir, file.path.file()).await?;
            out.damaged.push(Damaged {
                category,
                what: format!("{name} {version} {}", file.path.file()),
                why,
                repaired: true,
            });
        }
    }
    Ok(out)
}

/// What is wrong with the installed file at `path`, `None` when it matches.
fn damage(path: &Path, length: u64, sha256: &[u8]) -> Option<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Some("missing or unreadable".into());
    };
    if bytes.len() as u64 != length {
        return Some(format!("{} bytes, signed {length}", bytes.len()));
    }
    if cascade_repo::fsutil::sha256_hex(&bytes) != hex_of(sha256) {
        return Some("SHA-256 differs from the signed one".into());
    }
    None
}

fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Fetches the one file of `newest` into a stage beside the version directory `dir`, verified,
/// then renames it over the damaged one and syncs the directory.
async fn repair(
    loaded: &Loaded,
    newest: &Newest,
    dir: &Path,
    file: &str,
) -> Result<(), FailureReason> {
    let local = |e: std::io::Error| FailureReason::Local(format!("repair {file}: {e}"));
    let item = dir.parent().unwrap_or(dir);
    // `.stage-*` leftovers are removed by `Installer::clean` at the next cycle.
    let stage = tempfile::Builder::new()
        .prefix(".stage-repair-")
        .tempdir_in(item)
        .map_err(local)?;
    loaded.save_into(newest, None, stage.path()).await?;
    std::fs::rename(stage.path().join(file), dir.join(file)).map_err(local)?;
    cascade_repo::fsutil::sync_dir(dir).map_err(local)
}
