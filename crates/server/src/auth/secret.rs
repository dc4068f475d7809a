//! Token secrets and their stored hashes: making `cascade_<kind>_<id>_<secret>` tokens and
//! parsing them, the fast keyed hash tokens are stored as, and argon2id hashing and
//! verification (passwords and token rows made before the fast form) in memory the caller
//! keeps.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::hmac;
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;
use crate::settings::{HashCost, RandomFill};

/// A fresh random hex string of `bytes` bytes.
///
/// # Errors
/// When the random source fails.
pub fn random_hex(random: &RandomFill, bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    random(&mut buf).map_err(|e| ApiError::Internal(format!("random source: {e}")))?;
    Ok(hex::encode(buf))
}

/// A new token of `kind` (`adm`, `enr`, `cli`) for `id` with a 256-bit random secret, and
/// its fast hash to store ([`fast_hash`]).
///
/// # Errors
/// When the random source fails.
pub fn new_token(random: &RandomFill, kind: &str, id: &str) -> Result<(String, String), ApiError> {
    let secret = random_hex(random, SECRET_BYTES)?;
    let hash = fast_hash(random, &secret)?;
    Ok((format!("cascade_{kind}_{id}_{secret}"), hash))
}

/// Random bytes in a token's secret.
const SECRET_BYTES: usize = 32;

/// How a stored fast hash begins.
pub(super) const FAST_TAG: &str = "$hmac-sha256$";

/// The fast form of a token's `secret` to store: `$hmac-sha256$<salt>$<mac>`, the MAC of the
/// secret keyed by 16 fresh random bytes of salt.
///
/// # Errors
/// When the random source fails.
pub fn fast_hash(random: &RandomFill, secret: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    random(&mut salt).map_err(|e| ApiError::Internal(format!("random source: {e}")))?;
    Ok(fast_hash_with(secret, &salt))
}

pub(super) fn fast_hash_with(secret: &str, salt: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let mac = hmac::sign(&key, secret.as_bytes());
    format!(
        "{FAST_TAG}{}${}",
        hex::encode(salt),
        hex::encode(mac.as_ref())
    )
}

/// Whether `secret` matches the fast hash `stored` (constant time); `None` when `stored` is
/// not in the fast form.
pub(super) fn verify_fast(secret: &str, stored: &str) -> Option<bool> {
    let rest = stored.strip_prefix(FAST_TAG)?;
    let (salt, mac) = rest.split_once('$')?;
    let (salt, mac) = (hex::decode(salt).ok()?, hex::decode(mac).ok()?);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salt);
    Some(hmac::verify(&key, secret.as_bytes(), &mac).is_ok())
}

/// Whether `stored` is an argon2 PHC string (a row made before the fast form, or a password).
pub(super) fn is_argon2(stored: &str) -> bool {
    stored.starts_with("$argon2")
}

/// The argon2id PHC string of `secret` with `salt` at `cost`, computed in `memory` (grown
/// to the cost and kept by the caller, like [`verify_secret`]'s).
pub(super) fn hash_secret(
    secret: &str,
    salt: &[u8],
    cost: HashCost,
    memory: &mut Vec<Block>,
) -> Result<String, ApiError> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| ApiError::Internal(format!("argon2 params: {e}")))?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt_text = SaltString::encode_b64(salt).map_err(|e| ApiError::Internal(e.to_string()))?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon
            .hash_password_into_with_memory(secret.as_bytes(), salt, out, &mut memory[..blocks])
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| ApiError::Internal(format!("argon2: {e}")))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|e| ApiError::Internal(format!("argon2 params: {e}")))?,
        salt: Some(salt_text.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `secret` matches the argon2 PHC string `hash`, computed in `memory` (grown to the
/// hash's cost and kept by the caller, so a verification allocates nothing: the memory of
/// verifications is a fixed `limit × cost`, whatever the threads that ran them).
pub(super) fn verify_secret(secret: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let Ok(version) = parsed.version.map(Version::try_from).transpose() else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    argon
        .hash_password_into_with_memory(secret.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Splits `cascade_<kind>_<id>_<secret>`.
pub(super) fn parse_token(token: &str) -> Option<(&str, &str, &str)> {
    let rest = token.strip_prefix("cascade_")?;
    let mut parts = rest.splitn(3, '_');
    let kind = parts.next()?;
    let id = parts.next()?;
    let secret = parts.next()?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (ok(id) && ok(secret)).then_some((kind, id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A token splits into kind, id and secret; anything else is refused.
    #[test]
    fn token_format() {
        assert_eq!(
            parse_token("cascade_adm_0a1b_ff00"),
            Some(("adm", "0a1b", "ff00"))
        );
        assert_eq!(parse_token("cascade_adm_0a1b"), None);
        assert_eq!(parse_token("cascade_adm_zz_ff"), None);
        assert_eq!(parse_token("bearer"), None);
    }

    // A hash verifies its own secret and no other.
    #[test]
    fn hash_round_trip() {
        let cost = HashCost {
            memory_kib: 64,
            iterations: 1,
        };
        let mut memory = Vec::new();
        let h = hash_secret("abc", &[7u8; 16], cost, &mut memory).unwrap();
        assert!(verify_secret("abc", &h, &mut memory));
        assert!(!verify_secret("abd", &h, &mut memory));
        assert!(!verify_secret("abc", "not a hash", &mut memory));
        // The argon2 crate's own hashing and verification agree.
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(
            argon2::PasswordVerifier::verify_password(&Argon2::default(), b"abc", &parsed).is_ok()
        );
        let params = Params::new(64, 1, 1, None).unwrap();
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let theirs = argon2::PasswordHasher::hash_password(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            b"abc",
            &salt,
        )
        .unwrap();
        assert_eq!(h, theirs.to_string());
    }

    // A token's fast hash verifies its own secret and no other; other forms are not fast.
    #[test]
    fn fast_round_trip() {
        let random = crate::settings::os_random();
        let (token, hash) = new_token(&random, "cli", "0a0b").unwrap();
        let (_, _, secret) = parse_token(&token).unwrap();
        assert_eq!(secret.len(), 2 * SECRET_BYTES);
        assert!(hash.starts_with(FAST_TAG), "{hash}");
        assert_eq!(verify_fast(secret, &hash), Some(true));
        let mut wrong = secret.to_owned();
        wrong.replace_range(..1, if wrong.starts_with('0') { "1" } else { "0" });
        assert_eq!(verify_fast(&wrong, &hash), Some(false));
        // A fresh salt each time: the same secret hashes differently, and both verify.
        let again = fast_hash(&random, secret).unwrap();
        assert_ne!(again, hash);
        assert_eq!(verify_fast(secret, &again), Some(true));
        // A known HMAC-SHA256 vector (RFC 4231, case 2) through the stored form.
        let key = hex::encode(b"Jefe");
        let stored = format!(
            "{FAST_TAG}{key}$5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            verify_fast("what do ya want for nothing?", &stored),
            Some(true)
        );
        assert_eq!(verify_fast(secret, "$argon2id$v=19$m=64,t=1,p=1$x$y"), None);
        assert_eq!(verify_fast(secret, "$hmac-sha256$zz$00"), None);
        assert_eq!(verify_fast(secret, "$hmac-sha256$00"), None);
        assert!(is_argon2("$argon2id$v=19$m=64,t=1,p=1$x$y") && !is_argon2(&hash));
    }
}
