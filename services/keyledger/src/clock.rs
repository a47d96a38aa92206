//! The injectable clock every time-driven rule reads (invariant 7 of the brief).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A clock: milliseconds since the Unix epoch. The service uses [`Clock::system`]; tests use
/// [`Clock::shifted`] and move it with [`Clock::advance_ms`].
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads the system clock plus an offset that tests can move.
    pub fn shifted(offset_ms: i64) -> Self {
        Self { offset_ms: Arc::new(AtomicI64::new(offset_ms)) }
    }

    /// Moves this clock (and every clone of it) forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_unix_ms(&self) -> u64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        (wall + self.offset_ms.load(Ordering::SeqCst)).max(0) as u64
    }
}
