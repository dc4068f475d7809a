//! A bandwidth cap shared by every stream that uses it: a token bucket in virtual time. Each
//! chunk of `n` bytes reserves `n / rate` seconds of the link, after the reservations before
//! it; the caller holds the chunk until its reservation starts being due. The rate can change
//! at any time ([`Throttle::set_rate`]); 0 turns the cap off. Agents cap their downloads and
//! their relay with it (`docs/operating.md#domains-and-their-settings`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How far ahead of the cap a stream may run after an idle spell (a one-second burst).
const BURST: Duration = Duration::from_secs(1);

/// A shared bandwidth cap in bytes per second.
#[derive(Debug, Default)]
pub struct Throttle {
    rate: AtomicU64,
    /// When the link is free again: the end of the last reservation.
    free_at: Mutex<Option<Instant>>,
}

impl Throttle {
    /// A cap of `rate` bytes per second (0: none).
    pub fn new(rate: u64) -> Self {
        Throttle {
            rate: AtomicU64::new(rate),
            free_at: Mutex::new(None),
        }
    }

    /// Changes the cap (0: none); reservations already made keep their times.
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// The cap in bytes per second (0: none).
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Reserves `n` bytes of the link; returns how long to hold them before passing them on
    /// (zero when the cap is off or the bucket has room).
    pub fn reserve(&self, n: u64) -> Duration {
        let rate = self.rate();
        if rate == 0 || n == 0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        // n / rate seconds, in nanoseconds without floating point.
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(rate);
        let cost = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let Ok(mut free_at) = self.free_at.lock() else {
            return Duration::ZERO;
        };
        // An idle link has at most a burst's worth of credit.
        let floor = now.checked_sub(BURST).unwrap_or(now);
        let start = free_at.map_or(floor, |t| t.max(floor));
        let end = start + cost;
        *free_at = Some(end);
        end.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reservations queue up behind each other: at 1,000 B/s, chunks of 1,000 bytes reserved
    // back to back are held 0 s (the one-second burst), then 1 s, 2 s, 3 s…; a higher rate set
    // midway makes the next ones shorter; rate 0 holds nothing. (Only microseconds pass
    // between the calls, hence the tolerance.)
    #[tokio::test]
    async fn holds_bytes_to_the_rate() {
        let near = |got: Duration, secs: f64| {
            let want = Duration::from_secs_f64(secs);
            let diff = got.abs_diff(want);
            assert!(diff < Duration::from_millis(50), "{got:?} vs {want:?}");
        };
        let t = Throttle::new(1000);
        for i in 0..5 {
            near(t.reserve(1000), f64::from(i));
        }
        t.set_rate(10_000);
        // The link is booked 4 s ahead; 1,000 more bytes at 10,000 B/s take 0.1 s.
        near(t.reserve(1000), 4.1);
        t.set_rate(0);
        assert_eq!(t.reserve(1 << 30), Duration::ZERO);
    }
}
