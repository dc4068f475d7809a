//! Progressive rollouts (`docs/operating.md#rollouts`): a program version goes out in rings.
//!
//! - **Who is in a ring** (`rings`): a client matching any of the ring's client ids or
//!   names, IP ranges (its reported IP, else the IP its check-in came from) or percentage (a
//!   stable hash of its id: the same client is always in the same share). Rings are
//!   cumulative: once ring *k* is reached, the clients of rings 1..=*k* may install the
//!   version.
//! - **What each client may install** (`rings`): the newest rollout of a program decides.
//!   Rolling or halted: clients of the rings reached get the new version, everyone else the
//!   previous one; completed: no pin (the newest version); rolled back: the previous version
//!   for everyone. The pins travel in the client's policy answer ([`pins_for`]) and the
//!   rollout revision is folded into its revision, so agents learn of a change at their next
//!   cycle. A pin only chooses among the targets the agent verified.
//! - **Failure reports** (`counts`): a client of a reached ring fails when its last update
//!   report, finished since the rollout started, carries a `programs` failure naming the
//!   program and version (`NAME VERSION` or `NAME/VERSION`): a failed install or an agent
//!   self-update rolled back (`selfupdate.rolled_back`). Only the clients whose report may
//!   say so are read (`crate::store::program_trouble_at`, kept at each check-in); the ring
//!   counts of a view read every client's ring facts, not its report.
//! - **By hand** (`actions`, checked by [`check`]): start, promote, halt, roll back.
//! - **Promotion** (`schedule`): [`run_on_schedule`] looks at every rolling rollout each
//!   tick, by the injected clock: more failing clients than the current ring's
//!   `max_failures` halts it (audit record by `server:rollouts`); its soak time over, it is
//!   promoted to the next ring (or completed after the last). Each change is conditional on
//!   the revision read, so replicas sharing the database change a rollout once.
//! - **Notify** (`notices`): starting and promoting a rollout notifies the clients of the
//!   ring just reached only (the notice carries them to every replica, and the event
//!   streams ask `Notifier::reaches`);
//!   uploading the version of a rollout notifies the clients of the rings it reached; a roll
//!   back notifies everyone.

mod actions;
mod check;
mod counts;
mod notices;
mod rings;
mod schedule;

use std::time::Duration;

pub use actions::{act, start, Action};
pub use check::check;
pub use counts::{failed, list, one, view};
pub use notices::on_publish;
pub use rings::{bucket, client_pins, pins_for};
pub use schedule::{evaluate, run_on_schedule};

/// At most this many rings per rollout.
pub const MAX_RINGS: usize = 20;
/// At most this many clients and ranges per ring.
pub const MAX_RING_ENTRIES: usize = 10_000;
/// How often rolling rollouts are looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// The actor of automatic changes in the audit log.
pub const AUTO_ACTOR: &str = "server:rollouts";
