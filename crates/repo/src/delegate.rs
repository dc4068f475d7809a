//! Delegated program builds (`docs/architecture.md#trust-model`,
//! `docs/operating.md#delegated-program-builds`): the top-level targets role delegates target
//! paths such as `programs/*/*/*` to a build team's keys, which the publisher never holds
//! ([`Publisher::delegate`]). The team signs its role's next version offline
//! ([`sign_delegated`]); the publisher checks it against the delegation (a threshold of the
//! delegated keys, a newer version, not expired, every target inside the delegated paths,
//! every new target's content uploaded with its signed length and hash) and publishes it with
//! a new snapshot and timestamp, which it signs with its online keys
//! ([`Publisher::publish_delegated`]). Clients reach the role's targets through the delegation
//! only (`crate::tuf`).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use cascade_core::Category;
use jiff::Timestamp;
use tough::schema::decoded::Decoded;
use tough::schema::key::Key;
use tough::schema::{
    DelegatedRole, DelegatedTargets, Delegations, Hashes, KeyHolder, PathPattern, PathSet, Signed,
    Target, Targets,
};
use tough::TargetName;

use crate::error::PublishError;
use crate::fsutil::{sha256_hex, write_atomic_in};
use crate::keys::{self, Passphrase};
use crate::layout::{check_segment, versions_of, TargetMeta, TargetPath, CUSTOM_KEY};
use crate::meta::{bump, Change, State, SPEC_VERSION};
use crate::publish::{io, PublishedTarget, Publisher};
use crate::tuf::{delegation_keys_for, is_delegated_path, quote_role, TargetsRole};

/// Role names a delegation may not take (the top-level roles').
const TOP_LEVEL_ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// A delegation of target paths to keys the publisher does not hold.
#[derive(Debug, Clone)]
pub struct Delegation {
    /// The delegated role's name (e.g. `build-team`); its metadata is `ROLE.json`.
    pub role: String,
    /// The keys that may sign it.
    pub keys: Vec<Key>,
    /// How many of them must.
    pub threshold: u64,
    /// The target path patterns it is trusted for, each `programs/NAME/VERSION/FILE` with
    /// shell-style wildcards per segment (e.g. `programs/*/*/*`, `programs/scanner/*/*`).
    pub paths: Vec<String>,
}

fn bad(reason: impl Into<String>) -> PublishError {
    PublishError::BadDelegation(reason.into())
}

fn refused(role: &str, reason: impl Into<String>) -> PublishError {
    PublishError::DelegatedRefused {
        role: role.to_owned(),
        reason: reason.into(),
    }
}

/// Checks a delegated role's name: a name segment, not a top-level role's.
fn check_role(role: &str) -> Result<(), PublishError> {
    check_segment("role", role).map_err(|e| bad(e.to_string()))?;
    if TOP_LEVEL_ROLES.contains(&role) {
        return Err(bad(format!(
            "role `{role}` is a top-level role's name; choose another (e.g. build-team)"
        )));
    }
    Ok(())
}

impl Delegation {
    /// A delegation of `paths` to `role` whose keys are given as TUF key objects (JSON, as
    /// `cascade repo team-key` writes `FILE.pub.json`), checked ([`Delegation::check`]).
    ///
    /// # Errors
    /// [`PublishError::BadDelegation`] naming the key (1-based) that is not a TUF public key,
    /// or what [`Delegation::check`] finds.
    pub fn from_json_keys(
        role: &str,
        keys: &[serde_json::Value],
        threshold: u64,
        paths: &[String],
    ) -> Result<Delegation, PublishError> {
        let keys = keys
            .iter()
            .enumerate()
            .map(|(n, k)| {
                serde_json::from_value::<Key>(k.clone()).map_err(|e| {
                    bad(format!(
                        "keys: key {} is not a TUF public key ({{\"keytype\", \"scheme\", \"keyval\"}}): {e}",
                        n + 1
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let d = Delegation {
            role: role.to_owned(),
            keys,
            threshold,
            paths: paths.to_vec(),
        };
        d.check()?;
        Ok(d)
    }

    /// Checks the role name, the threshold and the paths (programs only, four segments).
    ///
    /// # Errors
    /// [`PublishError::BadDelegation`] naming what is wrong.
    pub fn check(&self) -> Result<(), PublishError> {
        check_role(&self.role)?;
        if self.keys.is_empty() {
            return Err(bad("key: give at least one public key"));
        }
        if self.threshold == 0 || self.threshold > self.keys.len() as u64 {
            return Err(bad(format!(
                "threshold: {} with {} key(s); use 1 <= threshold <= keys",
                self.threshold,
                self.keys.len()
            )));
        }
        if self.paths.is_empty() {
            return Err(bad("paths: give at least one pattern, e.g. programs/*/*/*"));
        }
        for (n, p) in self.paths.iter().enumerate() {
            let segs: Vec<&str> = p.split('/').collect();
            if segs.len() != 4 || segs[0] != Category::Programs.to_string() {
                return Err(bad(format!(
                    "paths: pattern {} `{p}` is not programs/NAME/VERSION/FILE (wildcards \
                     allowed per segment, e.g. programs/*/*/*)",
                    n + 1
                )));
            }
            if segs.iter().any(|s| s.is_empty()) {
                return Err(bad(format!(
                    "paths: pattern {} `{p}` has an empty segment",
                    n + 1
                )));
            }
        }
        Ok(())
    }
}

/// What a build team adds to its role.
#[derive(Debug, Clone, Copy)]
pub struct DelegatedBuild<'a> {
    /// The program.
    pub name: &'a str,
    /// The new version.
    pub version: &'a str,
    /// The build (published under its file name).
    pub file: &'a Path,
    /// Marked as a hotfix.
    pub hotfix: bool,
}

/// The next version of a delegated role, signed by the team.
#[derive(Debug, Clone)]
pub struct SignedDelegated {
    /// The role's metadata, to send to the publisher.
    pub metadata: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// The target added (`programs/NAME/VERSION/FILE`).
    pub target: String,
    /// Its length.
    pub length: u64,
    /// Its SHA-256, lowercase hex (the name its uploaded content is staged under).
    pub sha256: String,
}

/// A delegation key holder with just the team's key for `role` (what signing needs).
fn team_holder(
    role: &str,
    key: &Key,
) -> Result<(KeyHolder, Decoded<tough::schema::decoded::Hex>), PublishError> {
    let id = key.key_id().map_err(|e| PublishError::Sign {
        role: role.to_owned(),
        reason: e.to_string(),
    })?;
    let mut d = Delegations::new();
    d.keys.insert(id.clone(), key.clone());
    d.roles.push(DelegatedRole {
        name: role.to_owned(),
        keyids: vec![id.clone()],
        threshold: NonZeroU64::MIN,
        paths: PathSet::Paths(Vec::new()),
        terminating: true,
        targets: None,
    });
    Ok((KeyHolder::Delegations(d), id))
}

/// Signs the next version of delegated role `role` with the team's key `key_file`: the targets
/// of `previous` (the role as served now, which must carry a valid signature of that same key,
/// so the team never signs a list someone else made) plus `build` as a new version of its
/// program, expiring at `expires`. Nothing is written; the result goes to the publisher.
///
/// # Errors
/// A key that cannot be read, a `previous` not signed by the key, a version already listed,
/// a bad name, an unreadable build.
pub async fn sign_delegated(
    role: &str,
    previous: Option<&[u8]>,
    build: DelegatedBuild<'_>,
    key_file: &Path,
    passphrase: Option<&Passphrase>,
    expires: Timestamp,
) -> Result<SignedDelegated, PublishError> {
    check_role(role)?;
    let key = keys::public_key(key_file, passphrase)?;
    let (holder, id) = team_holder(role, &key)?;
    let mut targets = match previous {
        Some(raw) => {
            let env =
                crate::tuf::parse_targets(raw, role).map_err(|e| refused(role, e.to_string()))?;
            let holder_root = delegation_keys_for(&key, &id);
            env.verify_targets(&holder_root).map_err(|e| {
                refused(
                    role,
                    format!(
                        "the served role is not signed by this key, so it is not re-signed: {e}"
                    ),
                )
            })?;
            let t: Signed<Targets> =
                serde_json::from_slice(raw).map_err(|e| refused(role, e.to_string()))?;
            let mut t = t.signed;
            t.version = bump(t.version);
            t
        }
        None => Targets::new(SPEC_VERSION.to_owned(), NonZeroU64::MIN, expires),
    };
    targets.expires = crate::meta::expiry(expires, jiff::SignedDuration::ZERO)?;
    targets.delegations = None;
    let fname = build
        .file
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    let path = TargetPath::new(Category::Programs, build.name, build.version, fname)?;
    let previous_versions = versions_of(&targets, Category::Programs, build.name);
    if previous_versions.iter().any(|(_, v)| v == build.version) {
        return Err(PublishError::VersionExists(format!(
            "programs/{}/{}",
            build.name, build.version
        )));
    }
    let seq = previous_versions.first().map_or(1, |(s, _)| s + 1);
    let bytes = std::fs::read(build.file).map_err(io(build.file))?;
    let meta = TargetMeta {
        version: build.version.to_owned(),
        seq,
        delta_from: None,
        delta_of: None,
        hotfix: build.hotfix,
    };
    let custom = HashMap::from([(
        CUSTOM_KEY.to_owned(),
        serde_json::to_value(&meta).map_err(|e| refused(role, e.to_string()))?,
    )]);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let target = Target {
        length: bytes.len() as u64,
        hashes: Hashes {
            sha256: Decoded::from(digest.as_ref().to_vec()),
            _extra: HashMap::new(),
        },
        custom,
        _extra: HashMap::new(),
    };
    let tn = TargetName::new(path.to_string())
        .map_err(|_| crate::layout::LayoutError::BadTargetName(path.to_string()))?;
    targets.targets.insert(tn, target);
    let version = targets.version.get();
    let role_doc = DelegatedTargets {
        name: role.to_owned(),
        targets,
    };
    let source = keys::source(key_file, passphrase)?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signed = tough::editor::signed::SignedRole::new(role_doc, &holder, &[source], &rng)
        .await
        .map_err(|e| PublishError::Sign {
            role: role.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(SignedDelegated {
        metadata: signed.buffer().clone(),
        version,
        target: path.to_string(),
        length: bytes.len() as u64,
        sha256: hex::encode(digest.as_ref()),
    })
}

/// The TUF public key in `file`: either a key's JSON (`{"keytype": …}`, as
/// `cascade repo team-key` writes it) or a private key file, whose public half is used.
///
/// # Errors
/// [`PublishError::BadDelegation`] when it is neither.
pub fn read_public_key(file: &Path, passphrase: Option<&Passphrase>) -> Result<Key, PublishError> {
    let bytes = std::fs::read(file).map_err(io(file))?;
    if let Ok(key) = serde_json::from_slice::<Key>(&bytes) {
        return Ok(key);
    }
    keys::public_key(file, passphrase).map_err(|e| {
        bad(format!(
            "key: {} is neither a public key's JSON nor a private key: {e}",
            file.display()
        ))
    })
}

/// Creates a team key: the private key in `private` (mode 0600, encrypted with `passphrase`
/// when given) and its public key's JSON beside it as `PRIVATE.pub.json`; returns that path.
///
/// # Errors
/// The file exists, or I/O and key errors.
pub fn generate_team_key(
    private: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<PathBuf, PublishError> {
    keys::generate(private, passphrase)?;
    let key = keys::public_key(private, passphrase)?;
    let mut public = private.as_os_str().to_owned();
    public.push(".pub.json");
    let public = PathBuf::from(public);
    let json = serde_json::to_vec_pretty(&key).map_err(|e| bad(e.to_string()))?;
    std::fs::write(&public, json).map_err(io(&public))?;
    Ok(public)
}

impl Publisher {
    /// Makes (or replaces) delegation `d` in the top-level targets role, signed with the
    /// targets key; the delegation is terminating (its paths are the team's alone).
    ///
    /// # Errors
    /// [`PublishError::BadDelegation`], or signing and I/O errors.
    pub async fn delegate(&self, d: &Delegation, now: Timestamp) -> Result<(), PublishError> {
        d.check()?;
        let mut ids = Vec::new();
        let mut keys = HashMap::new();
        for key in &d.keys {
            let id = key.key_id().map_err(|e| bad(format!("key: {e}")))?;
            keys.insert(id.clone(), key.clone());
            ids.push(id);
        }
        let paths = d
            .paths
            .iter()
            .map(|p| PathPattern::new(p.clone()).map_err(|e| bad(format!("paths: `{p}`: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let threshold = NonZeroU64::new(d.threshold).unwrap_or(NonZeroU64::MIN);
        self.edit_targets(now, |targets| {
            let delegations = targets.delegations.get_or_insert_with(Delegations::new);
            delegations.roles.retain(|r| r.name != d.role);
            delegations.keys.extend(keys);
            delegations.roles.push(DelegatedRole {
                name: d.role.clone(),
                keyids: ids,
                threshold,
                paths: PathSet::Paths(paths),
                terminating: true,
                targets: None,
            });
            // Keys no role uses any more go.
            let used: std::collections::HashSet<_> = delegations
                .roles
                .iter()
                .flat_map(|r| r.keyids.iter().cloned())
                .collect();
            delegations.keys.retain(|id, _| used.contains(id));
            Ok(())
        })
        .await
    }

    /// Every full target of `category` served now, the top-level role's and those of each
    /// role it delegates to (inside the paths delegated to it), by name, newest (highest
    /// publish sequence) first.
    ///
    /// # Errors
    /// The served metadata cannot be read.
    pub fn listed(&self, category: Category) -> Result<Vec<crate::layout::Listed>, PublishError> {
        let state = State::load(&self.dirs)?;
        let mut out = crate::layout::full_targets(&state.targets.signed, category);
        let roles = state
            .targets
            .signed
            .delegations
            .as_ref()
            .map(|d| d.roles.clone())
            .unwrap_or_default();
        for role in roles {
            let Some(raw) = self.delegated_bytes(&state, &role.name)? else {
                continue;
            };
            let Ok(t) = serde_json::from_slice::<Signed<Targets>>(&raw) else {
                continue;
            };
            out.extend(
                crate::layout::full_targets(&t.signed, category)
                    .into_iter()
                    .filter(|l| is_delegated_path(&role.paths, &l.path.to_string())),
            );
        }
        out.sort_by(|a, b| {
            (a.path.name(), std::cmp::Reverse(a.meta.seq), a.path.file()).cmp(&(
                b.path.name(),
                std::cmp::Reverse(b.meta.seq),
                b.path.file(),
            ))
        });
        Ok(out)
    }

    /// The signed metadata of delegated role `role` served now, if it was ever published.
    ///
    /// # Errors
    /// The served metadata cannot be read.
    pub fn delegated_role(&self, role: &str) -> Result<Option<Vec<u8>>, PublishError> {
        let state = State::load(&self.dirs)?;
        self.delegated_bytes(&state, role)
    }

    fn delegated_bytes(&self, state: &State, role: &str) -> Result<Option<Vec<u8>>, PublishError> {
        let Some(listed) = state.snapshot.signed.meta.get(&format!("{role}.json")) else {
            return Ok(None);
        };
        let path =
            self.dirs
                .metadata()
                .join(format!("{}.{}.json", listed.version, quote_role(role)));
        std::fs::read(&path).map(Some).map_err(io(&path))
    }

    /// Publishes `signed`, the next version of delegated role `role`, as the build team
    /// signed it: checked against the top-level targets' delegation (a threshold of its
    /// keys, a version newer than the one served, not expired at `now`, every target a
    /// `programs/NAME/VERSION/FILE` name inside the delegated paths, no further delegation),
    /// the content of every target not served yet taken from `incoming/SHA256` (uploaded
    /// before, checked against its signed length and hash); then a new snapshot and
    /// timestamp. Returns the targets it added. The served repository is unchanged on error.
    ///
    /// # Errors
    /// [`PublishError::NotDelegated`], [`PublishError::DelegatedRefused`],
    /// [`PublishError::DelegatedFileMissing`], signing and I/O errors.
    pub async fn publish_delegated(
        &self,
        role: &str,
        signed: &[u8],
        incoming: &Path,
        now: Timestamp,
    ) -> Result<Vec<PublishedTarget>, PublishError> {
        self.place_delegated(role, signed, incoming, now, true)
            .await
    }

    /// Like [`Publisher::publish_delegated`] without checking the role's signature or its
    /// paths: what a compromised publisher (holding the snapshot and timestamp keys, not the
    /// team's) could serve. Tests use it to show that clients refuse such a role.
    ///
    /// # Errors
    /// As [`Publisher::publish_delegated`].
    pub async fn publish_delegated_unchecked(
        &self,
        role: &str,
        signed: &[u8],
        incoming: &Path,
        now: Timestamp,
    ) -> Result<Vec<PublishedTarget>, PublishError> {
        self.place_delegated(role, signed, incoming, now, false)
            .await
    }

    async fn place_delegated(
        &self,
        role: &str,
        signed: &[u8],
        incoming: &Path,
        now: Timestamp,
        check: bool,
    ) -> Result<Vec<PublishedTarget>, PublishError> {
        let _lock = self.lock()?;
        let state = State::load(&self.dirs)?;
        let delegation = state
            .targets
            .signed
            .delegations
            .as_ref()
            .and_then(|d| Some((d, d.roles.iter().find(|r| r.name == role)?)))
            .ok_or_else(|| PublishError::NotDelegated(role.to_owned()))?;
        let env =
            crate::tuf::parse_targets(signed, role).map_err(|e| refused(role, e.to_string()))?;
        if check {
            let (d, r) = delegation;
            let holder = crate::tuf::delegation_root(&d.keys, &r.keyids, r.threshold);
            env.verify_targets(&holder)
                .map_err(|e| refused(role, e.to_string()))?;
        }
        let new: TargetsRole = env.typed().map_err(|e| refused(role, e.to_string()))?;
        let served = state.snapshot.signed.meta.get(&format!("{role}.json"));
        if let Some(m) = served {
            if new.version <= m.version {
                return Err(refused(
                    role,
                    format!(
                        "version {} is not newer than the served version {}",
                        new.version, m.version
                    ),
                ));
            }
        }
        if new.expires <= now {
            return Err(refused(role, format!("it expired at {}", new.expires)));
        }
        if check
            && new
                .delegations
                .as_ref()
                .is_some_and(|d| !d.roles.is_empty())
        {
            return Err(refused(
                role,
                "a delegated role may not delegate further here",
            ));
        }
        let before: Option<TargetsRole> = match self.delegated_bytes(&state, role)? {
            Some(raw) => serde_json::from_slice::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| serde_json::from_value(v.get("signed")?.clone()).ok()),
            None => None,
        };
        let mut added = Vec::new();
        for (name, t) in &new.targets {
            if check && !is_delegated_path(&delegation.1.paths, name) {
                return Err(refused(
                    role,
                    format!("target {name} is outside the paths delegated to it"),
                ));
            }
            let path: TargetPath = name
                .parse()
                .map_err(|e: crate::layout::LayoutError| refused(role, e.to_string()))?;
            let sha = t
                .sha256()
                .ok_or_else(|| refused(role, format!("target {name} lists no sha256")))?;
            let sha = hex::encode(sha);
            let disk = self.dirs.targets().join(path.stored_path(&sha));
            if !disk.is_file() {
                let staged = incoming.join(&sha);
                let bytes = std::fs::read(&staged)
                    .map_err(|_| PublishError::DelegatedFileMissing(name.clone()))?;
                if bytes.len() as u64 != t.length || sha256_hex(&bytes) != sha {
                    return Err(PublishError::DelegatedFileMissing(name.clone()));
                }
                write_atomic_in(&disk, &bytes, &self.dirs.tmp()).map_err(io(&disk))?;
            }
            if before
                .as_ref()
                .is_none_or(|b| !b.targets.contains_key(name))
            {
                added.push(PublishedTarget {
                    name: name.clone(),
                    length: t.length,
                    delta_from: None,
                });
            }
        }
        self.commit(
            &state,
            Change::Delegated {
                role: role.to_owned(),
                bytes: signed.to_vec(),
                version: new.version,
            },
            now,
        )
        .await?;
        Ok(added)
    }
}
