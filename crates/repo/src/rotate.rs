//! Key rotation (`docs/operating.md#keys-and-their-ceremony`): a role gets a new key. A new
//! root version lists it instead of the old one, signed by the threshold of the old root's
//! keys (so clients trusting the old root accept it) and, when root itself rotates, by the
//! new root's keys too (the TUF client checks both). Then targets, snapshot and timestamp are
//! re-signed, so every role is signed by the keys the new root names.
//!
//! Root rotates its first key (`root.pk8`); other root keys of a threshold root stay. Other
//! roles have one key each, and every key the role listed is replaced (which also recovers a
//! lost online key, as long as the root keys are at hand).
//!
//! Order, for crash safety: the new key is made beside the old one (`FILE.new`), the old one
//! is kept as `FILE.retired-vN`, the new root is written, and only then does the new key take
//! the old one's place (one rename). A run killed before the root is written leaves the
//! repository as it was (the `.new` file is replaced by the next run); one killed after it is
//! finished by [`Publisher::finish_rotation`], which every rotation runs first.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::{RoleType, Root, Signed};

use crate::error::PublishError;
use crate::keys::{self, KeyError};
use crate::meta::{expiry, write, Change, State};
use crate::publish::{io, Publisher};

/// What a rotation did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rotated {
    /// The role whose key changed.
    pub role: String,
    /// The new root version that lists the new key.
    pub root_version: u64,
    /// The new key's id (hex).
    pub new_key_id: String,
    /// Where the old key file was kept.
    pub retired: PathBuf,
}

fn sign_err(role: RoleType) -> impl Fn(String) -> PublishError {
    move |reason| PublishError::Sign {
        role: role.to_string(),
        reason,
    }
}

/// The staged new key of the key file `path`.
fn staged(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".new");
    path.with_file_name(name)
}

impl Publisher {
    /// Gives `role` a new key and publishes a root listing it; returns what changed.
    ///
    /// # Errors
    /// Missing or undecryptable root keys (fewer than the old root's threshold: `publish.sign`),
    /// a missing `root.pk8` for a root rotation, I/O errors. The served repository is unchanged
    /// unless the new root was written.
    pub async fn rotate(&self, role: RoleType, now: Timestamp) -> Result<Rotated, PublishError> {
        let _lock = self.lock()?;
        self.finish_rotation_locked()?;
        let mut state = State::load(&self.dirs)?;
        let old = state.root.signed.clone();
        let path = self.keys.path(role);
        let next = staged(&path);
        let pass = self.keys.passphrase.as_ref();
        if next.exists() {
            std::fs::remove_file(&next).map_err(io(&next))?;
        }
        keys::generate(&next, pass)?;
        let new_key = keys::public_key(&next, pass)?;
        let new_id = new_key
            .key_id()
            .map_err(|e| sign_err(role)(e.to_string()))?;
        let mut root = old.clone();
        root.version = root
            .version
            .checked_add(1)
            .ok_or_else(|| PublishError::Time("root version overflow".to_owned()))?;
        root.expires = expiry(now, self.expiries.root)?;
        let listed = root
            .roles
            .get_mut(&role)
            .ok_or_else(|| sign_err(role)("the root lists no keys for it".into()))?;
        if role == RoleType::Root {
            let old_key = keys::public_key(&path, pass).map_err(|e| match e {
                KeyError::Read { .. } => sign_err(role)(format!(
                    "{} is needed to rotate root's first key",
                    path.display()
                )),
                other => PublishError::Key(other),
            })?;
            let old_id = old_key
                .key_id()
                .map_err(|e| sign_err(role)(e.to_string()))?;
            for id in &mut listed.keyids {
                if *id == old_id {
                    *id = new_id.clone();
                }
            }
        } else {
            listed.keyids = vec![new_id.clone()];
        }
        root.keys.insert(new_id.clone(), new_key);
        let still_listed: Vec<_> = root.roles.values().flat_map(|r| r.keyids.clone()).collect();
        root.keys.retain(|id, _| still_listed.contains(id));
        let signed = self.sign_rotated_root(&old, &root, role, &next).await?;
        let retired = path.with_file_name(format!(
            "{}.retired-v{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            old.version
        ));
        if path.exists() {
            std::fs::copy(&path, &retired).map_err(io(&retired))?;
        }
        let bytes = serde_json::to_vec_pretty(&signed)
            .map_err(|e| sign_err(RoleType::Root)(e.to_string()))?;
        let md = self.dirs.metadata();
        let v = root.version.get();
        write(&self.dirs, md.join(format!("{v}.root.json")), &bytes)?;
        write(&self.dirs, md.join("root.json"), &bytes)?;
        std::fs::rename(&next, &path).map_err(io(&path))?;
        state.root = signed;
        let targets = state.targets.signed.clone();
        self.commit(&state, Change::Targets(Box::new(targets)), now)
            .await?;
        Ok(Rotated {
            role: role.to_string(),
            root_version: v,
            new_key_id: hex::encode(&new_id),
            retired,
        })
    }

    /// Signs the new `root` with the old root's keys (at least its threshold) and, for a root
    /// rotation, with the new root's keys too (the new key staged in `next`).
    async fn sign_rotated_root(
        &self,
        old: &Root,
        root: &Root,
        role: RoleType,
        next: &Path,
    ) -> Result<Signed<Root>, PublishError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let fail = sign_err(RoleType::Root);
        let mut sources = self.keys.sources(RoleType::Root)?;
        if role == RoleType::Root {
            sources.push(keys::source(next, self.keys.passphrase.as_ref())?);
        }
        let holders = if role == RoleType::Root {
            vec![old.clone(), root.clone()]
        } else {
            vec![old.clone()]
        };
        let mut signatures: Vec<tough::schema::Signature> = Vec::new();
        for holder in &holders {
            let by = SignedRole::new(
                root.clone(),
                &tough::schema::KeyHolder::Root(holder.clone()),
                &sources as &[Box<dyn KeySource>],
                &rng,
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
            let need = holder
                .roles
                .get(&RoleType::Root)
                .map_or(1, |r| r.threshold.get());
            let have = by.signed().signatures.len() as u64;
            if have < need {
                return Err(fail(format!(
                    "{have} of the {need} root keys needed are present"
                )));
            }
            for s in &by.signed().signatures {
                if !signatures.iter().any(|x| x.keyid == s.keyid) {
                    signatures.push(s.clone());
                }
            }
        }
        Ok(Signed {
            signed: root.clone(),
            signatures,
        })
    }

    /// Finishes a rotation a kill cut short after its new root was written: a staged key
    /// (`FILE.new`) that the current root lists for its role takes the old file's place.
    ///
    /// # Errors
    /// I/O errors.
    pub fn finish_rotation(&self) -> Result<(), PublishError> {
        let _lock = self.lock()?;
        self.finish_rotation_locked()
    }

    fn finish_rotation_locked(&self) -> Result<(), PublishError> {
        let state = State::load(&self.dirs)?;
        let pass = self.keys.passphrase.as_ref();
        for role in [
            RoleType::Root,
            RoleType::Targets,
            RoleType::Snapshot,
            RoleType::Timestamp,
        ] {
            let path = self.keys.path(role);
            let next = staged(&path);
            if !next.exists() {
                continue;
            }
            let Ok(id) = keys::public_key(&next, pass).map(|k| k.key_id()) else {
                continue;
            };
            let listed = state
                .root
                .signed
                .roles
                .get(&role)
                .is_some_and(|r| id.as_ref().is_ok_and(|id| r.keyids.contains(id)));
            if listed {
                std::fs::rename(&next, &path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}
