//! The clock the reloader reads (see `reload`): whether a change has
//! settled depends on time, so tests move a [`ManualClock`] on instead of
//! sleeping.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where the reloader reads the time, which decides when a change has
/// settled: the real clock in `serve`, a [`ManualClock`] in tests, so a test
/// of the quiet period moves time on instead of sleeping through it.
pub trait Clock: std::fmt::Debug + Send + Sync {
    fn now(&self) -> Instant;
}

/// The real, monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    /// Move the clock on by `by`.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
