//! Credentials. Three kinds of bearer token, each `cascade_<kind>_<id>_<secret>`: a user's
//! API token (`adm`; it acts as its user, with the user's role, until it expires or is
//! revoked), enrollment (`enr`) and a client's own credential (`cli`, the id is the client
//! id). Every token's secret is 256 random bits made by the server ([`new_token`]), so it is
//! stored as a fast keyed hash, HMAC-SHA256 keyed by a random per-row salt
//! (`$hmac-sha256$<salt>$<mac>`, hex), and compared in constant time: a slow KDF protects
//! guessable secrets against a stolen database, and 2^256 secrets are not guessable, so
//! argon2 would only cost CPU on every check (`docs/architecture.md#credentials`). Users'
//! passwords are chosen by people and stay argon2id. Token rows made before this form hold
//! an argon2id PHC string; they still verify (with argon2, bounded as below) and are
//! replaced by the fast form on their first successful verification (a compare-and-swap
//! update, so a rotation at the same moment wins). A verified token is remembered in memory
//! for a minute so that not even the fast hash or the database is paid on every request.
//! Rotating, revoking or changing a user clears it on this replica; other replicas sharing
//! the database notice within that minute.
//!
//! Roles (`docs/operating.md#users-roles-and-tokens`): the [`Viewer`], [`Operator`] and
//! [`Admin`] extractors each admit a user whose role is at least that one and refuse
//! anyone else with 403, logged.
//!
//! Argon2 is bounded (`docs/operating.md#limits`): at most one argon2 computation per core
//! runs at a time, password hashing included (a semaphore; each in working memory kept per
//! permit and reused, 19 MiB by default, so their memory is bounded whatever threads run
//! them: an argon2 that allocates its own memory on a blocking thread leaves it in that
//! thread's allocator arena). The memory of verified tokens is keyed by kind and id and
//! compares the secret in constant time, and an unknown id is verified against a dummy hash
//! of the same kind (the fast form for tokens, argon2 at the server's cost for passwords),
//! so a wrong secret costs the same whether the id exists or not (an id whose row still holds
//! an argon2 hash costs an argon2 until its first success upgrades it).
//!
//! Console sessions (`docs/architecture.md#credentials`) plug in at [`authenticate`] (token
//! login) and [`check_password`] (user name and password): a session cookie plus a CSRF
//! header on unsafe methods yields the same [`Actor`] a bearer token does.
//!
//! The pieces, one module each: `secret` (token format and stored hashes), `verifier` (the
//! bounded, remembering checker), `bearer` (bearer tokens), `password` (user name and
//! password), `extractors` (the role extractors).

use cascade_proto::UserRole;

mod bearer;
mod extractors;
mod password;
mod secret;
mod verifier;

pub use bearer::authenticate;
pub use extractors::{Admin, AdminActor, ClientAuth, Enroller, Operator, Viewer};
pub use password::check_password;
pub use secret::{fast_hash, new_token, random_hex};
pub use verifier::{Verifier, VerifyStats};

/// A user acting through an API token or a console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user's name.
    pub user: String,
    /// The token's id (empty for a password login).
    pub token: String,
    /// The user's role.
    pub role: UserRole,
}

impl Actor {
    /// How writes record this actor (`user:<name>`).
    pub fn label(&self) -> String {
        format!("user:{}", self.user)
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user, through one of its API tokens.
    User(Actor),
    /// A holder of the enrollment token, by token id.
    Enroll(String),
    /// An enrolled client, by client id.
    Client(String),
}
