//! Console login by user name and password: the check behind a session, through the
//! [`Verifier`]'s bounded argon2 and the lockout.

use crate::error::ApiError;
use crate::lockout::{self, Attempt, Origin};

use super::verifier::{Dummy, Verifier};
use super::Actor;

/// The user `name` as an [`Actor`] when `password` is theirs; `None` otherwise (unknown
/// user or wrong password, logged alike). The check goes through the [`Verifier`]'s bounded
/// argon2, and an unknown user costs the same as a wrong password (a dummy argon2 hash). Failures count
/// towards a lockout of the name and of `origin`'s address ([`crate::lockout`]).
///
/// # Errors
/// [`ApiError::LockedOut`] while the name or address is locked; database errors.
pub async fn check_password(
    verifier: &Verifier,
    name: &str,
    password: &str,
    origin: &Origin,
) -> Result<Option<Actor>, ApiError> {
    let store = &verifier.store;
    let now = verifier.clock.now();
    let guard = lockout::check(store, Attempt::Login, Some(name), origin, now).await?;
    let (hash, user) = (store.password_hash(name).await?, store.user(name).await?);
    let known = hash.is_some() && user.is_some();
    let ok = verifier.verify(password, hash, Dummy::Argon2).await?;
    let Some(user) = user.filter(|_| ok && known) else {
        tracing::warn!(user = name, "login refused: unknown user or wrong password");
        guard.failed(store, &verifier.lockout, now).await;
        return Ok(None);
    };
    guard.succeeded(store).await?;
    Ok(Some(Actor {
        user: user.name,
        token: String::new(),
        role: user.role,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secret::is_argon2;
    use crate::auth::verifier::tests::verifier;

    // Password hashing and checking (unknown users and wrong passwords) all run argon2 within
    // the bound; the right password logs in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn password_argon2_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = verifier(dir.path(), 2).await;
        let mut calls = Vec::new();
        for i in 0..12 {
            let v = v.clone();
            calls.push(tokio::spawn(async move {
                v.hash_password(&format!("password {i}")).await.map(|_| ())
            }));
        }
        for c in calls {
            c.await.unwrap().unwrap();
        }
        let hash = v.hash_password("right password").await.unwrap();
        assert!(is_argon2(&hash) && hash.contains("m=256,t=1,p=1"), "{hash}");
        assert!(v
            .store
            .update_user("admin", None, Some(&hash))
            .await
            .unwrap());
        let origin = Origin {
            source: None,
            method: "POST".to_owned(),
            path: "/login".to_owned(),
        };
        let mut calls = Vec::new();
        for i in 0..20 {
            let (v, origin) = (v.clone(), origin.clone());
            calls.push(tokio::spawn(async move {
                let name = if i % 2 == 0 { "admin" } else { "nobody" };
                check_password(&v, name, "wrong password", &origin).await
            }));
        }
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap(), None);
        }
        let ok = check_password(&v, "admin", "right password", &origin)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ok.user, "admin");
        let stats = v.stats();
        // 13 hashes, 21 checks, and the dummy made at least once.
        assert!(stats.argon2 > 13 + 21, "{stats:?}");
        assert!(stats.peak_concurrent <= 2, "{stats:?}");
    }
}
