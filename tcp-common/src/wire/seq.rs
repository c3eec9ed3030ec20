//! Sequence numbers and their modulo-2^32 comparison (RFC 9293 section 3.4).
//!
//! This is the one place that does raw `u32` arithmetic on sequence numbers; everything else
//! (the engine, the data path) goes through [`SeqNumber`]. (The XDP program's cookie code works
//! on the raw fields of one segment and compares nothing.)

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A TCP sequence number. Ordering is modular: `a < b` when `b` is less than 2^31 ahead of
/// `a`, so the order is only meaningful between numbers less than 2^31 apart, which a window
/// (at most 2^30, RFC 7323) always is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(u32);

impl SeqNumber {
    /// Wraps a raw on-the-wire value.
    #[must_use]
    pub const fn new(raw: u32) -> SeqNumber {
        SeqNumber(raw)
    }

    /// The raw on-the-wire value.
    #[must_use]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The signed distance `self - other` in the modular order.
    #[must_use]
    #[expect(clippy::cast_possible_wrap, reason = "modular distance: the wrap is the point")]
    pub const fn distance(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `self - other` as a byte count, or zero when `other` is ahead of `self`.
    #[must_use]
    pub fn saturating_sub(self, other: SeqNumber) -> usize {
        usize::try_from(self.distance(other)).unwrap_or(0)
    }

    /// The later of two sequence numbers.
    #[must_use]
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self > other { self } else { other }
    }

    /// The earlier of two sequence numbers.
    #[must_use]
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self < other { self } else { other }
    }

    /// Whether `start <= self < end`.
    #[must_use]
    pub fn in_range(self, start: SeqNumber, end: SeqNumber) -> bool {
        start <= self && self < end
    }
}

#[expect(clippy::cast_possible_truncation, reason = "sequence space is modulo 2^32")]
fn wrap(n: usize) -> u32 {
    n as u32
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(wrap(rhs)))
    }
}

impl AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(wrap(rhs)))
    }
}

impl Sub for SeqNumber {
    type Output = usize;
    /// The byte count from `rhs` to `self`. Callers compare first; a negative distance is a
    /// logic error, caught in debug builds and clamped to zero in release builds.
    fn sub(self, rhs: SeqNumber) -> usize {
        debug_assert!(self >= rhs, "sequence subtraction underflow: {self} - {rhs}");
        self.saturating_sub(rhs)
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.distance(*other).cmp(&0))
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_across_wrap() {
        let a = SeqNumber::new(u32::MAX - 5);
        let b = a + 10;
        assert_eq!(b.raw(), 4);
        assert!(a < b);
        assert!(b > a);
        assert_eq!(b - a, 10);
        assert_eq!(a.saturating_sub(b), 0);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        assert!((a + 3).in_range(a, b));
        assert!(!b.in_range(a, b));
    }

    proptest::proptest! {
        #[test]
        fn add_then_sub_roundtrips(raw: u32, n in 0usize..(1 << 31)) {
            let a = SeqNumber::new(raw);
            proptest::prop_assert_eq!((a + n) - a, n);
            proptest::prop_assert!(a + n >= a);
        }
    }
}
