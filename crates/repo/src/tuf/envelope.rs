//! A metadata file as received: the `signed` object kept as raw JSON (so a signature is checked
//! over exactly what was signed, unknown fields included), its signatures, and the checks
//! every role shares: threshold signatures through `tough`'s `Root::verify_role`, and expiry
//! (`docs/architecture.md#trust-model`).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::num::NonZeroU64;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{Role, RoleKeys, RoleType, Root, Signature, Signed};

use super::TufError;

/// Which top-level role's key list a signature check uses.
pub(crate) trait Kind {
    /// The role type in root's `roles`.
    const TYPE: RoleType;
}

/// Checks against root's `root` keys.
pub(crate) struct AsRoot;
/// Checks against root's `timestamp` keys.
pub(crate) struct AsTimestamp;
/// Checks against root's `snapshot` keys.
pub(crate) struct AsSnapshot;
/// Checks against root's `targets` keys (or a delegation's, see [`delegation_keys`]).
pub(crate) struct AsTargets;

impl Kind for AsRoot {
    const TYPE: RoleType = RoleType::Root;
}
impl Kind for AsTimestamp {
    const TYPE: RoleType = RoleType::Timestamp;
}
impl Kind for AsSnapshot {
    const TYPE: RoleType = RoleType::Snapshot;
}
impl Kind for AsTargets {
    const TYPE: RoleType = RoleType::Targets;
}

/// The raw `signed` object as a `tough` role: serialising it gives back exactly the received
/// JSON, which `verify_role` puts in canonical form before checking signatures.
struct RawRole<K>(Value, PhantomData<K>);

impl<K> serde::Serialize for RawRole<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<K: Kind> Role for RawRole<K> {
    const TYPE: RoleType = K::TYPE;
    // Not used by `verify_role`; the typed views carry the real values.
    fn expires(&self) -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH
    }
    fn version(&self) -> NonZeroU64 {
        NonZeroU64::MIN
    }
    fn filename(&self, _consistent_snapshot: bool) -> String {
        String::new()
    }
}

/// The canonical JSON of a `signed` object, the bytes a signature covers.
#[cfg(test)]
pub(crate) fn canonical(signed: &Value) -> Vec<u8> {
    RawRole::<AsTargets>(signed.clone(), PhantomData)
        .canonical_form()
        .unwrap_or_default()
}

/// The outer shape of every metadata file.
#[derive(Deserialize)]
struct Outer {
    signed: Value,
    signatures: Vec<Signature>,
}

/// One received metadata file.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// The role name (for messages).
    pub role: String,
    /// The `signed` object as received.
    pub signed: Value,
    /// Its signatures.
    pub signatures: Vec<Signature>,
}

impl Envelope {
    /// Parse `raw` as metadata of `role` whose `signed._type` must be `kind`.
    ///
    /// # Errors
    /// [`TufError::Malformed`] when it is not JSON of that shape.
    pub fn parse(raw: &[u8], role: &str, kind: &str) -> Result<Self, TufError> {
        let outer: Outer = serde_json::from_slice(raw).map_err(|e| TufError::malformed(role, e))?;
        let ty = outer.signed.get("_type").and_then(Value::as_str);
        if ty != Some(kind) {
            return Err(TufError::malformed(
                role,
                format!("_type is {ty:?}, expected \"{kind}\""),
            ));
        }
        Ok(Self {
            role: role.to_owned(),
            signed: outer.signed,
            signatures: outer.signatures,
        })
    }

    /// The `signed` object as a typed view.
    ///
    /// # Errors
    /// [`TufError::Malformed`] when a field is missing or of the wrong type.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, TufError> {
        serde_json::from_value(self.signed.clone()).map_err(|e| TufError::malformed(&self.role, e))
    }

    /// Check that a threshold of `holder`'s keys for role type `K` signed this file.
    ///
    /// # Errors
    /// [`TufError::BadSignature`].
    pub fn verify<K: Kind>(&self, holder: &Root) -> Result<(), TufError> {
        let signed = Signed {
            signed: RawRole::<K>(self.signed.clone(), PhantomData),
            signatures: self.signatures.clone(),
        };
        holder
            .verify_role(&signed)
            .map_err(|e| TufError::BadSignature {
                role: self.role.clone(),
                reason: e.to_string(),
            })
    }
}

impl Envelope {
    /// Check that a threshold of `holder`'s targets keys signed this file.
    ///
    /// # Errors
    /// [`TufError::BadSignature`].
    pub fn verify_targets(&self, holder: &Root) -> Result<(), TufError> {
        self.verify::<AsTargets>(holder)
    }
}

/// A key holder for a delegated role: `keys` (the delegator's delegation keys) with the
/// delegated role's key IDs and threshold as its `targets` role, so that `Root::verify_role`
/// checks a delegated role exactly as it checks a top-level one.
pub(crate) fn delegation_keys(
    keys: &HashMap<Decoded<Hex>, Key>,
    keyids: &[Decoded<Hex>],
    threshold: NonZeroU64,
) -> Root {
    let role = RoleKeys {
        keyids: keyids.to_vec(),
        threshold,
        _extra: HashMap::new(),
    };
    Root {
        spec_version: "1.0.0".to_owned(),
        consistent_snapshot: false,
        version: NonZeroU64::MIN,
        expires: jiff::Timestamp::UNIX_EPOCH,
        keys: keys.clone(),
        roles: HashMap::from([(RoleType::Targets, role)]),
        _extra: HashMap::new(),
    }
}

/// Fail when `expires` is not after `now` (the spec's freeze-attack check).
///
/// # Errors
/// [`TufError::Expired`].
pub(crate) fn check_expiry(
    role: &str,
    expires: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Result<(), TufError> {
    if expires <= now {
        return Err(TufError::Expired {
            role: role.to_owned(),
            expires,
            now,
        });
    }
    Ok(())
}
