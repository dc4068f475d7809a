//! cascade's signed repository, the one place that knows the repository format
//! (`docs/architecture.md#repositories`): The Update Framework metadata with consistent
//! snapshots, target names `CATEGORY/NAME/VERSION/FILE`, publishing (via `tough`) with zstd
//! deltas, whole-repository verification, and the client side: the TUF client workflow
//! ([`tuf`], `docs/architecture.md#the-client-workflow`), a transport over ordered sources with
//! timeouts, a throughput floor, an optional bandwidth cap and size caps, and verified, atomic
//! saving of targets.

mod client;
mod delegate;
pub mod delta;
mod error;
mod failure;
pub mod fsutil;
mod keys;
mod layout;
mod meta;
pub mod mirror;
mod publish;
mod renew;
mod rotate;
mod save;
pub mod throttle;
mod transport;
pub mod tuf;
pub mod verify;

pub use client::{
    first_success, valid_root, Fetched, FetchedFile, Installed, Loaded, Newest, RepoClient,
    RepoSource, SignedFile, SystemTrustClock, Tried, TrustClock,
};
pub use delegate::{
    generate_team_key, read_public_key, sign_delegated, DelegatedBuild, Delegation, SignedDelegated,
};
pub use error::PublishError;
pub use failure::{classify, FailureReason};
/// The time type of every expiry and `now` argument (re-exported so callers need no `jiff`).
pub use jiff::Timestamp;
pub use keys::{decrypt_bytes, encrypt_bytes, encrypt_key, KeyError, Passphrase, PASSPHRASE_ENV};
pub use layout::{check_segment, full_targets, LayoutError, Listed, TargetMeta, TargetPath};
pub use meta::Expiries;
pub use publish::{init, init_with, InitOptions, PublishOptions, PublishedTarget, Publisher};
pub use rotate::Rotated;
pub use save::{is_safe_file_name, save_verified, SaveError};
/// The TUF roles (whose keys `Publisher::rotate` replaces).
pub use tough::schema::RoleType;
pub use transport::{find_source_failure, SourceFailure, SourceTransport, TransportLimits};
