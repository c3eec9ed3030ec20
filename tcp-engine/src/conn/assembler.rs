//! Which sequence ranges above `RCV.NXT` hold out-of-order data. The bytes themselves sit in
//! the receive ring at their offset (see `recv.rs`), so this keeps ranges only: memory for
//! the data is bounded by the window, whatever the arrival pattern.
//!
//! # Bounds
//!
//! - **Time**: the ranges are a B-tree ordered by start, so each segment costs O(log n):
//!   one search for the range before it, one for each range it swallows (a range is
//!   swallowed at most once after being added once), one insertion. Taking the lowest range
//!   when the gap before it fills, and dropping the highest, are O(log n) too.
//! - **Memory**: at most `max_ranges` ranges (a [`crate::Config`] setting, 256 by default).
//!   A range is two 32-bit offsets in a B-tree node: about 40 bytes per range with the
//!   nodes' slack, so some 10 KiB at the cap, whatever the window.
//! - **Beyond the cap** (RFC 9293 leaves the policy to the receiver): a range that would
//!   touch none of the others and so add one is refused if it lies above all of them;
//!   otherwise the highest range is dropped to make room. Linux's `tcp_prune_ofo_queue`
//!   also drops from the highest sequence number: that data is the furthest from being
//!   delivered. Dropping data already reported in a SACK block is reneging, which RFC 2018
//!   section 8 allows: the sender keeps it until it is cumulatively acknowledged and sends
//!   it again.
//!
//! Keys are offsets from a base sequence number below every range, so that plain integer
//! order is the modular order of RFC 9293 section 3.4; the base slides up (re-keying every
//! range, once per gigabyte received at most) when ranges move too far above it.

use std::collections::BTreeMap;

use crate::seq::SeqNumber;

/// The default cap on out-of-order ranges.
pub(crate) const DEFAULT_MAX_RANGES: usize = 256;

/// How far below the first range the base is put: more than any window (RFC 7323: 2^30).
const SPAN: u32 = 1 << 30;

/// What [`Assembler::make_room`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Room {
    /// The range can be added as it is.
    Fits,
    /// The highest range, `[start, end)`, was dropped to make room.
    Dropped(SeqNumber, SeqNumber),
    /// No room: the range would have been the highest.
    Refused,
}

/// Out-of-order ranges `[start, end)`.
#[derive(Debug)]
pub(crate) struct Assembler {
    /// Start offset to end offset, both from `base`.
    ranges: BTreeMap<u32, u32>,
    base: SeqNumber,
    max_ranges: usize,
    /// Ranges dropped or refused for the cap, ever.
    dropped: u64,
}

impl Default for Assembler {
    fn default() -> Assembler {
        Assembler::new(DEFAULT_MAX_RANGES)
    }
}

impl Assembler {
    /// An empty assembler holding at most `max_ranges` ranges (at least one).
    pub(crate) fn new(max_ranges: usize) -> Assembler {
        Assembler {
            ranges: BTreeMap::new(),
            base: SeqNumber::new(0),
            max_ranges: max_ranges.max(1),
            dropped: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many ranges are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Ranges dropped or refused so far because the assembler was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    fn key(&self, seq: SeqNumber) -> u32 {
        seq.raw().wrapping_sub(self.base.raw())
    }

    fn seq(&self, key: u32) -> SeqNumber {
        self.base + key as usize
    }

    /// Makes sure `start` gets a key in the lower half of the key space, sliding the base
    /// up (and re-keying every range) when the ranges have moved too far above it.
    fn rebase_for(&mut self, start: SeqNumber) {
        if self.ranges.is_empty() {
            self.base = start - SPAN as usize;
            return;
        }
        let delta = self.key(start).saturating_sub(SPAN);
        if self.key(start) < 2 * SPAN || delta == 0 {
            return;
        }
        // Every range lies within a window (under SPAN) of `start`: above the new base.
        let ranges = std::mem::take(&mut self.ranges);
        self.ranges = ranges.into_iter().map(|(s, e)| (s - delta, e - delta)).collect();
        self.base += delta as usize;
    }

    /// The end of the highest range.
    pub(crate) fn end(&self) -> Option<SeqNumber> {
        self.ranges.last_key_value().map(|(_, &end)| self.seq(end))
    }

    /// Makes room for `[start, end)` under the cap on ranges: it fits (it touches a range,
    /// or there is room), the highest range was dropped for it, or it is refused (it would be
    /// the highest range of a full assembler).
    pub(crate) fn make_room(&mut self, start: SeqNumber, end: SeqNumber) -> Room {
        if self.ranges.len() < self.max_ranges {
            return Room::Fits;
        }
        self.rebase_for(start);
        let (s, e) = (self.key(start), self.key(end));
        // The last range starting at or before `end` is the only one that can reach it.
        let touches = self.ranges.range(..=e).next_back().is_some_and(|(_, &re)| re >= s);
        if touches {
            return Room::Fits;
        }
        self.dropped += 1;
        match self.ranges.last_key_value() {
            Some((&highest, _)) if s < highest => match self.ranges.pop_last() {
                Some((hs, he)) => Room::Dropped(self.seq(hs), self.seq(he)),
                None => Room::Fits,
            },
            _ => Room::Refused,
        }
    }

    /// Records `[start, end)` as present, merged with every range it overlaps or touches;
    /// returns the start of the merged range. Call [`Assembler::make_room`] first to keep
    /// within the cap.
    #[cfg(test)]
    pub(crate) fn add(&mut self, start: SeqNumber, end: SeqNumber) -> SeqNumber {
        self.add_range(start, end).0
    }

    /// As [`Assembler::add`], returning the whole merged range.
    pub(crate) fn add_range(&mut self, start: SeqNumber, end: SeqNumber) -> (SeqNumber, SeqNumber) {
        self.rebase_for(start);
        let (s, e) = (self.key(start), self.key(end));
        // The last range starting at or before `end` is the only one that can reach the new
        // one (ranges are disjoint and do not touch): if it does not, the new range stands
        // alone, the common case, and one search suffices.
        match self.ranges.range(..=e).next_back() {
            Some((_, &pe)) if pe >= s => {}
            _ => {
                self.ranges.insert(s, e);
                return (start, end);
            }
        }
        let (mut lo, mut hi) = (s, e);
        // The range before, if it reaches `start` (touching counts).
        if let Some((&ps, &pe)) = self.ranges.range(..=s).next_back()
            && pe >= s
        {
            lo = ps;
            hi = hi.max(pe);
        }
        // Every range starting within [lo, hi] is swallowed.
        while let Some((&ns, &ne)) = self.ranges.range(lo..).next() {
            if ns > hi {
                break;
            }
            hi = hi.max(ne);
            self.ranges.remove(&ns);
        }
        self.ranges.insert(lo, hi);
        (self.seq(lo), self.seq(hi))
    }

    /// Removes and returns the lowest range if it starts at or before `next` (the in-order
    /// data reached it).
    pub(crate) fn pop_reached(&mut self, next: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        let (&start, _) = self.ranges.first_key_value()?;
        if self.seq(start) > next {
            return None;
        }
        let (start, end) = self.ranges.pop_first()?;
        Some((self.seq(start), self.seq(end)))
    }

    /// The range starting at `start`, if there is one.
    #[cfg(test)]
    pub(crate) fn starting_at(&self, start: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        let key = self.key(start);
        self.ranges.get(&key).map(|&end| (start, self.seq(end)))
    }

    /// The ranges, lowest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (self.seq(s), self.seq(e)))
    }

    /// Forgets every range and frees the memory.
    pub(crate) fn clear(&mut self) {
        self.ranges = BTreeMap::new();
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

    #[test]
    fn a_full_assembler_drops_its_highest_range_or_refuses_a_new_highest() {
        let mut a = Assembler::new(3);
        for start in [100, 200, 300] {
            assert_eq!(a.make_room(seq(start), seq(start + 10)), Room::Fits);
            a.add(seq(start), seq(start + 10));
        }
        // Above everything: refused.
        assert_eq!(a.make_room(seq(400), seq(410)), Room::Refused);
        // Touching a range: merged, no new range needed.
        assert_eq!(a.make_room(seq(110), seq(120)), Room::Fits);
        a.add(seq(110), seq(120));
        // Below the highest: the highest goes.
        assert_eq!(a.make_room(seq(150), seq(160)), Room::Dropped(seq(300), seq(310)));
        a.add(seq(150), seq(160));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [(seq(100), seq(120)), (seq(150), seq(160)), (seq(200), seq(210))]
        );
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn the_base_slides_as_the_window_moves_across_the_key_space() {
        // One range always held while the window moves 8 GiB on: order and contents hold
        // as the base slides.
        let mut a = Assembler::default();
        let mut at = seq(1_000);
        a.add(at + 300, at + 400);
        for _ in 0..64 {
            let next = at + (1 << 27);
            a.add(next + 300, next + 400);
            a.add(next + 100, next + 200);
            assert_eq!(a.pop_reached(at + 300), Some((at + 300, at + 400)));
            assert_eq!(a.pop_reached(at + 300), None);
            assert_eq!(a.pop_reached(next + 100), Some((next + 100, next + 200)));
            assert_eq!(a.iter().collect::<Vec<_>>(), [(next + 300, next + 400)]);
            at = next;
        }
    }
}
