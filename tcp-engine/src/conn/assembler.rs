//! Which sequence ranges above `RCV.NXT` hold out-of-order data. The bytes themselves sit in
//! the receive ring at their offset (see `recv.rs`), so this keeps ranges only: memory for
//! the data is bounded by the window, whatever the arrival pattern.
//!
//! Ranges are kept sorted, disjoint and non-touching in a `VecDeque`: found by binary search,
//! taken from the front in O(1) as the gap before them fills. The number of ranges is not
//! bounded here yet; RFC 9293 leaves the policy to the receiver (Linux prunes its
//! out-of-order queue), and a cap belongs in `add`.

use std::collections::VecDeque;

use crate::seq::SeqNumber;

/// Out-of-order ranges `[start, end)`.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    ranges: VecDeque<(SeqNumber, SeqNumber)>,
}

impl Assembler {
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The end of the highest range.
    pub(crate) fn end(&self) -> Option<SeqNumber> {
        self.ranges.back().map(|&(_, end)| end)
    }

    /// Records `[start, end)` as present, merged with every range it overlaps or touches;
    /// returns the start of the merged range.
    pub(crate) fn add(&mut self, start: SeqNumber, end: SeqNumber) -> SeqNumber {
        // The first range that ends at or after `start` (touching counts), and the first
        // one past that which starts after `end`.
        let first = self.ranges.partition_point(|&(_, e)| e < start);
        let mut last = first;
        let (mut lo, mut hi) = (start, end);
        while let Some(&(s, e)) = self.ranges.get(last) {
            if s > end {
                break;
            }
            lo = lo.min(s);
            hi = hi.max(e);
            last += 1;
        }
        self.ranges.drain(first..last);
        self.ranges.insert(first, (lo, hi));
        lo
    }

    /// Removes and returns the lowest range if it starts at or before `next` (the in-order
    /// data reached it).
    pub(crate) fn pop_reached(&mut self, next: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        match self.ranges.front() {
            Some(&(start, _)) if start <= next => self.ranges.pop_front(),
            _ => None,
        }
    }

    /// The range starting at `start`, if there is one.
    pub(crate) fn starting_at(&self, start: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        let i = self.ranges.partition_point(|&(s, _)| s < start);
        self.ranges.get(i).copied().filter(|&(s, _)| s == start)
    }

    /// The ranges, lowest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.ranges.iter().copied()
    }

    /// Forgets every range and frees the memory.
    pub(crate) fn clear(&mut self) {
        self.ranges = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> SeqNumber {
        SeqNumber::new(n)
    }

    #[test]
    fn ranges_merge_when_they_overlap_or_touch() {
        let mut a = Assembler::default();
        assert_eq!(a.add(seq(10), seq(20)), seq(10));
        assert_eq!(a.add(seq(30), seq(40)), seq(30));
        assert_eq!(a.add(seq(50), seq(60)), seq(50));
        // Touches the first, overlaps the second.
        assert_eq!(a.add(seq(20), seq(35)), seq(10));
        assert_eq!(a.iter().collect::<Vec<_>>(), [(seq(10), seq(40)), (seq(50), seq(60))]);
        assert_eq!(a.starting_at(seq(50)), Some((seq(50), seq(60))));
        assert_eq!(a.starting_at(seq(30)), None);
        assert_eq!(a.pop_reached(seq(9)), None);
        assert_eq!(a.pop_reached(seq(10)), Some((seq(10), seq(40))));
        assert_eq!(a.end(), Some(seq(60)));
    }

    #[test]
    fn ranges_work_across_the_sequence_wrap() {
        let mut a = Assembler::default();
        a.add(seq(5), seq(10));
        a.add(seq(u32::MAX - 5), seq(u32::MAX - 1));
        a.add(seq(u32::MAX - 1), seq(5));
        assert_eq!(a.iter().collect::<Vec<_>>(), [(seq(u32::MAX - 5), seq(10))]);
    }
}
