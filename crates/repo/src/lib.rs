//! cascade's signed repository, the one place that knows the repository format
//! (`docs/architecture.md#repositories`): The Update Framework metadata (via `tough`) with
//! consistent snapshots, target names `CATEGORY/NAME/VERSION/FILE`, publishing with zstd deltas,
//! whole-repository verification, and the client side: a transport over ordered sources with
//! timeouts, a throughput floor and size caps, and verified, atomic saving of targets.

pub mod client;
pub mod delta;
pub mod failure;
pub mod fsutil;
pub mod keys;
pub mod layout;
pub mod meta;
pub mod mirror;
pub mod publish;
pub mod renew;
pub mod save;
pub mod transport;
pub mod verify;

pub use client::{FailureReason, Fetched, Installed, RepoClient, Source};
/// The time type of every expiry and `now` argument (re-exported so callers need no `jiff`).
pub use jiff::Timestamp;
pub use layout::{TargetMeta, TargetPath};
pub use meta::Expiries;
pub use publish::{init, PublishError, PublishOptions, Publisher};
pub use transport::{SourceFailure, SourceTransport, TransportLimits};
