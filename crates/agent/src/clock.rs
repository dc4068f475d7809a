//! The agent's source of time, injected like the server's clock (`cascade_server::Clock`) so
//! that tests move it by hand instead of sleeping through the relay's reuse windows.

use std::time::SystemTime;

/// Now, to the nanosecond the platform gives.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
