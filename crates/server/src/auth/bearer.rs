//! Bearer tokens: who a request's `Authorization: Bearer` token belongs to, answered from
//! the [`Verifier`]'s memory of verified tokens when it can, from the store otherwise.

use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use cascade_proto::UserRole;
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;
use crate::lockout::{self, Attempt, Origin};
use crate::store::TokenKind;

use super::secret::{is_argon2, parse_token};
use super::verifier::{Dummy, Remembered, Verifier};
use super::{Actor, Principal};

/// Who the request's credential belongs to.
///
/// Wrong secrets count towards a lockout of the token id and of the source address
/// ([`crate::lockout`]); a token remembered as verified is answered from memory, without
/// reading or writing the database.
///
/// # Errors
/// 401 when there is no bearer token or it does not verify; 429 while its id or address is
/// locked out.
pub async fn authenticate(state: &Verifier, parts: &Parts) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>`",
        ))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(
            "the Authorization header is not `Bearer <token>`",
        ))?;
    // A full enrollment token (`docs/operating.md#enrollment-token-format`) authenticates with its
    // secret part.
    let full = cascade_proto::enroll_token::secret_of(token);
    let token = full.as_str();
    let now = state.clock.now();
    let origin = Origin::of(parts);
    let Some((kind, id, secret)) = parse_token(token) else {
        // No id to count: the address alone.
        lockout::check(&state.store, Attempt::Token, None, &origin, now)
            .await?
            .failed(&state.store, &state.lockout, now)
            .await;
        return Err(invalid());
    };
    let key = format!("{kind}_{id}");
    let cached = state.verified.lock().ok().and_then(|c| {
        c.get(&key)
            .filter(|r| now.saturating_sub(r.at) < CACHE_SECS && r.until.is_none_or(|u| now < u))
            .filter(|r| bool::from(r.secret.as_bytes().ct_eq(secret.as_bytes())))
            .map(|r| r.principal.clone())
    });
    if let Some(p) = cached {
        return Ok(p);
    }
    let attempt = if kind == "enr" {
        Attempt::Enroll
    } else {
        Attempt::Token
    };
    let guard = lockout::check(&state.store, attempt, Some(&key), &origin, now).await?;
    let mut until = None;
    let (hash, principal) = match kind {
        "adm" => match state.store.token_grant(id).await? {
            // Unknown: verified against the dummy hash below, at the same cost.
            None => (None, Principal::Client(String::new())),
            Some(grant) => {
                until = grant.expires_at;
                // A token made before users existed acts as an admin.
                let role = match (&grant.user, grant.role) {
                    (None, _) => UserRole::Admin,
                    (Some(_), Some(role)) => role,
                    (Some(_), None) => return Err(invalid()),
                };
                let actor = Actor {
                    user: grant.user.unwrap_or_else(|| "admin".to_owned()),
                    token: id.to_owned(),
                    role,
                };
                (Some(grant.hash), Principal::User(actor))
            }
        },
        "enr" => (
            state.store.token_hash(id, TokenKind::Enroll).await?,
            Principal::Enroll(id.to_owned()),
        ),
        "cli" => (
            state.store.credential_hash(id).await?,
            Principal::Client(id.to_owned()),
        ),
        _ => (None, Principal::Client(String::new())),
    };
    let stored = hash.clone();
    if !state.verify(secret, hash, Dummy::Fast).await? {
        guard.failed(&state.store, &state.lockout, now).await;
        return Err(invalid());
    }
    if until.is_some_and(|u| now >= u) {
        tracing::warn!(token = id, "token refused: expired");
        return Err(invalid());
    }
    guard.succeeded(&state.store).await?;
    if let Some(old) = stored.filter(|h| is_argon2(h)) {
        state.upgrade(kind, id, secret, &old).await;
    }
    if let Ok(mut cache) = state.verified.lock() {
        cache.retain(|_, r| now.saturating_sub(r.at) < CACHE_SECS);
        cache.insert(
            key,
            Remembered {
                secret: secret.to_owned(),
                principal: principal.clone(),
                at: now,
                until,
            },
        );
    }
    Ok(principal)
}

/// How long a verified token is trusted without looking at the database again. Revocation
/// on this replica clears the cache at once; other replicas see it within this time.
const CACHE_SECS: i64 = 60;

fn invalid() -> ApiError {
    tracing::warn!("credential refused: unknown, revoked, expired or mistyped");
    ApiError::Unauthorized("the token is not valid (unknown, revoked or mistyped)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secret::{hash_secret, verify_fast, FAST_TAG};
    use crate::auth::verifier::tests::verifier;
    use crate::lockout::LockoutPolicy;
    use crate::settings::HashCost;

    fn bearer(token: &str) -> Parts {
        let req = axum::http::Request::builder()
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap();
        req.into_parts().0
    }

    // Many wrong secrets at once, for a known id and for unknown ids: every one is refused,
    // every one pays one verification (unknown ids against the dummy hash), and no more
    // than the limit of argon2 runs at the same time (none: tokens are in the fast form).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn verification_is_bounded_and_costs_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (v, token) = verifier(dir.path(), 2).await;
        let wrong = format!("{}ff", &token[..token.len() - 2]);
        let wrong = if wrong == token {
            format!("{}ee", &token[..token.len() - 2])
        } else {
            wrong
        };
        let mut calls = Vec::new();
        for i in 0..40 {
            let v = v.clone();
            let t = if i % 2 == 0 {
                wrong.clone()
            } else {
                format!("cascade_adm_{i:04x}ff_00ff")
            };
            calls.push(tokio::spawn(
                async move { authenticate(&v, &bearer(&t)).await },
            ));
        }
        for c in calls {
            assert!(matches!(c.await.unwrap(), Err(ApiError::Unauthorized(_))));
        }
        let stats = v.stats();
        assert_eq!(stats.verifications, 40, "{stats:?}");
        assert!(stats.peak_concurrent <= 2, "{stats:?}");
        // The right secret verifies once, then comes from memory; a wrong secret for the
        // remembered id is still verified (and refused).
        let p = authenticate(&v, &bearer(&token)).await.unwrap();
        assert!(
            matches!(&p, Principal::User(a) if a.token == "0a0a" && a.role == UserRole::Admin),
            "{p:?}"
        );
        authenticate(&v, &bearer(&token)).await.unwrap();
        assert_eq!(v.stats().verifications, 41);
        assert!(authenticate(&v, &bearer(&wrong)).await.is_err());
        assert_eq!(v.stats().verifications, 42);
        assert_eq!(v.stats().argon2, 0, "{:?}", v.stats());
    }

    /// `token` with its secret's last hex digit changed.
    fn wrong_secret(token: &str) -> String {
        let last = if token.ends_with('0') { "1" } else { "0" };
        format!("{}{last}", &token[..token.len() - 1])
    }

    /// An admin token, an enrollment token and a client credential stored the way they were
    /// before the fast form (argon2id PHC strings), with the verifier and the tokens.
    async fn legacy(dir: &std::path::Path, limit: usize) -> (Verifier, [String; 3]) {
        let (v, _) = verifier(dir, limit).await;
        let cost = HashCost {
            memory_kib: 256,
            iterations: 1,
        };
        let mut memory = Vec::new();
        let mut old = |kind: &str, id: &str, secret: &str| {
            let h = hash_secret(secret, &[9u8; 16], cost, &mut memory).unwrap();
            assert!(is_argon2(&h));
            (format!("cascade_{kind}_{id}_{secret}"), h)
        };
        let (adm, adm_hash) = old("adm", "0b0b", &"ab".repeat(32));
        let (enr, enr_hash) = old("enr", "0c0c", &"cd".repeat(32));
        let (cli, cli_hash) = old("cli", "0d0d", &"ef".repeat(32));
        v.store
            .create_token("0b0b", &adm_hash, "admin", "old", None)
            .await
            .unwrap();
        v.store
            .create_enrollment_token("0c0c", &enr_hash, "old enrollment", None, None, false)
            .await
            .unwrap();
        let enrolled = v
            .store
            .enroll(
                "0c0c",
                &crate::store::NewClient {
                    id: "0d0d",
                    name: "old client",
                    domain: None,
                    agent_address: None,
                    credential_hash: &cli_hash,
                    enrolled_from: "127.0.0.1",
                },
            )
            .await
            .unwrap();
        assert!(matches!(
            enrolled,
            crate::store::Enrollment::Enrolled { .. }
        ));
        (v, [adm, enr, cli])
    }

    /// The stored hash of a token of the legacy set.
    async fn stored(v: &Verifier, token: &str) -> String {
        let (kind, id, _) = parse_token(token).unwrap();
        match kind {
            "adm" => v.store.token_grant(id).await.unwrap().unwrap().hash,
            "enr" => v
                .store
                .token_hash(id, TokenKind::Enroll)
                .await
                .unwrap()
                .unwrap(),
            _ => v.store.credential_hash(id).await.unwrap().unwrap(),
        }
    }

    // Rows holding argon2 hashes still verify (with argon2), refuse wrong secrets without
    // being changed, and are replaced by the fast form on their first success; after that
    // the same token verifies with no argon2 at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn argon2_rows_verify_and_are_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let (v, tokens) = legacy(dir.path(), 2).await;
        for token in &tokens {
            let before = stored(&v, token).await;
            assert!(is_argon2(&before), "{before}");
            let argon2 = v.stats().argon2;
            assert!(authenticate(&v, &bearer(&wrong_secret(token)))
                .await
                .is_err());
            assert_eq!(v.stats().argon2, argon2 + 1);
            assert_eq!(stored(&v, token).await, before, "a refusal changes nothing");

            let p = authenticate(&v, &bearer(token)).await.unwrap();
            let (kind, id, secret) = parse_token(token).unwrap();
            match (kind, &p) {
                ("adm", Principal::User(a)) => assert!(a.token == id && a.user == "admin"),
                ("enr", Principal::Enroll(e)) | ("cli", Principal::Client(e)) => {
                    assert_eq!(e, id);
                }
                _ => panic!("{kind}: {p:?}"),
            }
            assert_eq!(v.stats().argon2, argon2 + 2);
            let after = stored(&v, token).await;
            assert!(after.starts_with(FAST_TAG), "{after}");
            assert_eq!(verify_fast(secret, &after), Some(true));

            // From the database again (memory forgotten): fast, same principal.
            v.forget();
            assert_eq!(authenticate(&v, &bearer(token)).await.unwrap(), p);
            assert!(authenticate(&v, &bearer(&wrong_secret(token)))
                .await
                .is_err());
            assert_eq!(v.stats().argon2, argon2 + 2, "{:?}", v.stats());
        }
    }

    // Unknown ids of every kind and malformed tokens are refused, and wrong secrets still
    // lock the id out after the policy's failures, fast hash or not.
    #[tokio::test]
    async fn unknown_ids_and_lockout() {
        let dir = tempfile::tempdir().unwrap();
        let (v, token) = verifier(dir.path(), 1).await;
        for t in [
            "cascade_cli_0d0d_00ff",
            "cascade_enr_0e0e_00ff",
            "cascade_adm_0f0f_00ff",
            "cascade_xyz_0a0a_00ff",
        ] {
            assert!(matches!(
                authenticate(&v, &bearer(t)).await,
                Err(ApiError::Unauthorized(_))
            ));
        }
        assert_eq!(v.stats().verifications, 4);
        let strict = LockoutPolicy {
            max_failures: 3,
            ..LockoutPolicy::default()
        };
        let v = v.with_lockout(strict);
        let wrong = wrong_secret(&token);
        for _ in 0..3 {
            assert!(matches!(
                authenticate(&v, &bearer(&wrong)).await,
                Err(ApiError::Unauthorized(_))
            ));
        }
        // Locked: even the right secret is answered 429 until the lockout ends.
        assert!(matches!(
            authenticate(&v, &bearer(&token)).await,
            Err(ApiError::LockedOut { .. })
        ));
    }
}
