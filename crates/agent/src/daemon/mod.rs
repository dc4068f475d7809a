//! The agent's life: enroll once, pin the repositories' trusted roots, then update on start,
//! on each notification (after its jitter) and on a schedule, checking in after each cycle.
//! With the server down it keeps updating from its cached policy through relays and mirrors.
//! As an update agent it also runs the relay, keeps the relay's upstreams on its own plan, and
//! reports what the relay served with each check-in (and between cycles when it changed). After
//! each cycle it puts its domain's settings in force ([`crate::settings`]).

mod agent;
mod config;
mod enroll;
mod events;
mod run;

pub use agent::jitter;
pub use config::{AgentConfig, AgentError};
pub use run::{once, once_observed, run, run_self_updating, verify, Ended, Session};
