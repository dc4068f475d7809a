//! The policy and rollout revisions held in memory, so that the client cycle's common answer,
//! `GET /api/client/policy` → 304, reads no database (`docs/operating.md#policy-revisions-in-memory`).
//!
//! Both revisions only grow. Every write of this process that changes one (a policy write, a
//! rollout started or changed) raises it here after its commit ([`Revisions::saw`]); every
//! read of them from the database raises them too. What this process cannot see (another
//! replica's write on a shared PostgreSQL) is read again from the database when the last
//! read is older than `max_age`, and at once after a Notify All Clients heard from any
//! replica ([`Revisions::forget`], called before the notice reaches a stream here): a client
//! told to update never gets a 304 for a revision this server could know is old.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long revisions read from the database answer without reading it again, by default:
/// the bound on how stale an answer can be after another replica's change that no notify
/// announced.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// The two revisions and how fresh they are.
#[derive(Debug)]
pub struct Revisions {
    policy: AtomicI64,
    rollouts: AtomicI64,
    validity: Mutex<Validity>,
    max_age: Duration,
}

/// Until when the revisions held answer without a database read.
#[derive(Debug, Default)]
struct Validity {
    /// `None`: never read, or forgotten.
    until: Option<Instant>,
    /// Raised by every [`Revisions::forget`]: a read begun before it does not make the
    /// revisions fresh.
    epoch: u64,
}

/// A database read of the revisions in progress ([`Revisions::begin_read`]).
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    started: Instant,
    epoch: u64,
}

impl Revisions {
    /// Nothing read yet; reads answer for `max_age` each.
    pub fn new(max_age: Duration) -> Self {
        Revisions {
            policy: AtomicI64::new(0),
            rollouts: AtomicI64::new(0),
            validity: Mutex::default(),
            max_age,
        }
    }

    /// The (policy, rollout) revisions when they may answer without a database read.
    pub fn fresh(&self) -> Option<(i64, i64)> {
        let fresh = self
            .validity
            .lock()
            .is_ok_and(|v| v.until.is_some_and(|u| Instant::now() < u));
        fresh.then(|| self.current())
    }

    /// The revisions held (the highest seen of each), fresh or not.
    pub fn current(&self) -> (i64, i64) {
        (
            self.policy.load(Ordering::Acquire),
            self.rollouts.load(Ordering::Acquire),
        )
    }

    /// Raises the revisions to a policy and rollout revision just written or read.
    pub fn saw(&self, policy: i64, rollouts: i64) {
        self.saw_policy(policy);
        self.saw_rollouts(rollouts);
    }

    /// Raises the policy revision to `revision` (written or read).
    pub fn saw_policy(&self, revision: i64) {
        self.policy.fetch_max(revision, Ordering::AcqRel);
    }

    /// Raises the rollout revision to `revision` (written or read).
    pub fn saw_rollouts(&self, revision: i64) {
        self.rollouts.fetch_max(revision, Ordering::AcqRel);
    }

    /// Call before reading the revisions from the database.
    pub fn begin_read(&self) -> Reading {
        Reading {
            started: Instant::now(),
            epoch: self.validity.lock().map_or(0, |v| v.epoch),
        }
    }

    /// Call with what the read begun at `reading` found; returns the revisions held now. They
    /// answer for `max_age` from the read's start, unless forgotten meanwhile.
    pub fn end_read(&self, reading: Reading, policy: i64, rollouts: i64) -> (i64, i64) {
        self.saw(policy, rollouts);
        if let Ok(mut v) = self.validity.lock() {
            if v.epoch == reading.epoch {
                let until = reading.started + self.max_age;
                v.until = Some(v.until.map_or(until, |u| u.max(until)));
            }
        }
        self.current()
    }

    /// The next answer reads the database first (a notify was heard: a write this process
    /// did not make may come with it).
    pub fn forget(&self) {
        if let Ok(mut v) = self.validity.lock() {
            v.until = None;
            v.epoch = v.epoch.wrapping_add(1);
        }
    }
}

impl Default for Revisions {
    fn default() -> Self {
        Revisions::new(MAX_AGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Nothing answers before a read; a read answers until forgotten; a read begun before
    // `forget` does not make the revisions fresh; writes only raise them.
    #[test]
    fn fresh_only_after_a_read_not_overtaken_by_forget() {
        let r = Revisions::new(Duration::from_secs(3600));
        assert_eq!(r.fresh(), None);
        let read = r.begin_read();
        assert_eq!(r.end_read(read, 3, 1), (3, 1));
        assert_eq!(r.fresh(), Some((3, 1)));
        r.saw_policy(5);
        r.saw_policy(4);
        r.saw_rollouts(2);
        assert_eq!(r.fresh(), Some((5, 2)));
        let early = r.begin_read();
        r.forget();
        assert_eq!(r.fresh(), None);
        // The early read found older values; they do not lower what is held, nor answer.
        assert_eq!(r.end_read(early, 4, 1), (5, 2));
        assert_eq!(r.fresh(), None);
        let late = r.begin_read();
        r.end_read(late, 6, 2);
        assert_eq!(r.fresh(), Some((6, 2)));
    }

    // With no time to live every answer reads the database.
    #[test]
    fn zero_max_age_never_answers_from_memory() {
        let r = Revisions::new(Duration::ZERO);
        let read = r.begin_read();
        r.end_read(read, 1, 0);
        assert_eq!(r.fresh(), None);
        assert_eq!(r.current(), (1, 0));
    }
}
