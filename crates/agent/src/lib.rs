//! cascade's client daemon (`cascade agent`) and update agent (`--relay`): it resolves its
//! plan per category from the cached policy and its own IP, tries the steps in order through
//! the verifying repository client, installs atomically with the previous version kept for
//! rollback, reports every attempt, applies its domain's settings, and, as a relay, serves the
//! repository to its neighbours. The daemon also updates itself from its own `programs` target,
//! with automatic rollback (`selfupdate`).

pub mod clock;
pub mod daemon;
pub mod install;
pub mod relay;
pub mod selfupdate;
pub mod served;
pub mod servers;
pub mod settings;
pub mod state;
pub mod update;
pub mod verify;
pub mod warm;
