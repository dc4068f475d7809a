//! A clock tests move by hand, for the server (`cascade_server::Clock`, whole seconds) and
//! for the agent's relay (`cascade_agent::clock::Clock`), so no test sleeps to let time pass.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time, in milliseconds since the Unix epoch, moved only by the test.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock at `unix_secs`.
    pub fn at(unix_secs: i64) -> Self {
        ManualClock {
            millis: AtomicI64::new(unix_secs.saturating_mul(1000)),
        }
    }

    /// Moves the clock `secs` seconds on.
    pub fn advance(&self, secs: i64) {
        self.millis
            .fetch_add(secs.saturating_mul(1000), Ordering::SeqCst);
    }

    /// Moves the clock `by` on.
    pub fn advance_by(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }

    /// Now, as whole Unix seconds.
    pub fn unix_secs(&self) -> i64 {
        self.millis.load(Ordering::SeqCst).div_euclid(1000)
    }
}

impl cascade_server::Clock for ManualClock {
    fn now(&self) -> i64 {
        self.unix_secs()
    }
}

impl cascade_agent::clock::Clock for ManualClock {
    fn now(&self) -> SystemTime {
        let ms = self.millis.load(Ordering::SeqCst);
        let since = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        UNIX_EPOCH + since
    }
}
