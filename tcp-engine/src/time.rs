//! Time as a value. The engine never reads a clock: every input carries `now`, and every
//! deadline it reports is an [`Instant`] on the caller's timeline.

use core::fmt;
use core::ops::{Add, AddAssign, Mul, Sub};

/// A point in time, in microseconds since an epoch chosen by the caller (for example the
/// start of the process). Only differences and ordering matter to the engine.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    micros: u64,
}

/// A span of time in microseconds. Eight bytes, half of `core::time::Duration`, which
/// matters with a million connections each holding several deadlines.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    micros: u64,
}

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant { micros: 0 };

    /// An instant `micros` microseconds after the epoch.
    #[must_use]
    pub const fn from_micros(micros: u64) -> Instant {
        Instant { micros }
    }

    /// An instant `millis` milliseconds after the epoch.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Instant {
        Instant { micros: millis.saturating_mul(1_000) }
    }

    /// An instant `secs` seconds after the epoch.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Instant {
        Instant { micros: secs.saturating_mul(1_000_000) }
    }

    /// Microseconds since the epoch.
    #[must_use]
    pub const fn total_micros(self) -> u64 {
        self.micros
    }

    /// Whole milliseconds since the epoch (the TCP timestamp clock ticks in these).
    #[must_use]
    pub const fn total_millis(self) -> u64 {
        self.micros / 1_000
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    #[must_use]
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration { micros: self.micros.saturating_sub(earlier.micros) }
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration { micros: 0 };
    /// The longest representable span.
    pub const MAX: Duration = Duration { micros: u64::MAX };

    /// A span of `micros` microseconds.
    #[must_use]
    pub const fn from_micros(micros: u64) -> Duration {
        Duration { micros }
    }

    /// A span of `millis` milliseconds.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Duration {
        Duration { micros: millis.saturating_mul(1_000) }
    }

    /// A span of `secs` seconds.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Duration {
        Duration { micros: secs.saturating_mul(1_000_000) }
    }

    /// The span in microseconds.
    #[must_use]
    pub const fn total_micros(self) -> u64 {
        self.micros
    }

    /// The span in whole milliseconds.
    #[must_use]
    pub const fn total_millis(self) -> u64 {
        self.micros / 1_000
    }

    /// The span in seconds, as a float (for congestion control arithmetic).
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "spans here are far below 2^52 microseconds")]
    pub fn as_secs_f64(self) -> f64 {
        self.micros as f64 / 1e6
    }
}

impl From<core::time::Duration> for Duration {
    fn from(d: core::time::Duration) -> Duration {
        Duration { micros: u64::try_from(d.as_micros()).unwrap_or(u64::MAX) }
    }
}

impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> core::time::Duration {
        core::time::Duration::from_micros(d.micros)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant { micros: self.micros.saturating_add(rhs.micros) }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        Instant { micros: self.micros.saturating_sub(rhs.micros) }
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero: a deadline in the past is simply due.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration { micros: self.micros.saturating_add(rhs.micros) }
    }
}

impl Sub for Duration {
    type Output = Duration;
    fn sub(self, rhs: Duration) -> Duration {
        Duration { micros: self.micros.saturating_sub(rhs.micros) }
    }
}

impl Mul<u32> for Duration {
    type Output = Duration;
    fn mul(self, rhs: u32) -> Duration {
        Duration { micros: self.micros.saturating_mul(u64::from(rhs)) }
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.micros / 1_000_000, self.micros % 1_000_000)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.micros.is_multiple_of(1_000) {
            write!(f, "{}ms", self.micros / 1_000)
        } else {
            write!(f, "{}us", self.micros)
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!(t + Duration::from_millis(10), Instant::from_millis(15));
        assert_eq!(t - Instant::from_millis(10), Duration::ZERO);
        assert_eq!(Instant::from_secs(1) - t, Duration::from_millis(995));
        assert_eq!(Duration::from_millis(300) * 4, Duration::from_millis(1200));
        assert_eq!(
            Instant::from_micros(u64::MAX) + Duration::from_secs(1),
            Instant::from_micros(u64::MAX)
        );
    }
}
