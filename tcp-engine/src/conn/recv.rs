//! The receive side: in-order bytes waiting for the application, and out-of-order bytes
//! waiting for the gap before them to fill (RFC 9293 section 3.10.7.4, seventh step), from
//! which SACK blocks are reported (RFC 2018 section 4).
//!
//! Both live in one ring: readable bytes at offsets `[0, readable)`, and a segment that
//! starts `d` bytes above `RCV.NXT` at offset `readable + d`, as in smoltcp. The
//! [`Assembler`] only remembers which ranges are present. So every byte is copied once on
//! arrival, reassembly never copies again, and memory stays within the window we offered:
//! the ring never grows past the configured buffer size.

use super::assembler::{Assembler, Room};
use super::ring::Ring;
use crate::seq::SeqNumber;
use crate::wire::SackRanges;

/// The ranges SACK blocks report, most recently changed first (RFC 2018 section 4: the block
/// with the segment that triggered the ACK first, then the most recently reported ones), kept
/// as segments arrive as Linux keeps `selective_acks` (`tcp_sack_new_ofo_skb`): an ACK copies
/// them and never walks the reassembly ranges. Each entry is exactly one held range.
#[derive(Debug, Default)]
struct Reported {
    blocks: [(SeqNumber, SeqNumber); SackRanges::CAPACITY],
    len: usize,
}

impl Reported {
    /// `[start, end)` is a range now (new, or grown by merging): first, without the entries
    /// it swallowed.
    fn arrived(&mut self, start: SeqNumber, end: SeqNumber) {
        self.remove(|(s, e)| start <= s && e <= end);
        let n = self.len.min(self.blocks.len() - 1);
        self.blocks.copy_within(0..n, 1);
        self.blocks[0] = (start, end);
        self.len = n + 1;
    }

    fn remove(&mut self, gone: impl Fn((SeqNumber, SeqNumber)) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            if !gone(self.blocks[i]) {
                self.blocks[kept] = self.blocks[i];
                kept += 1;
            }
        }
        self.len = kept;
    }

    fn as_slice(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.blocks[..self.len]
    }
}

/// Received data.
#[derive(Debug)]
pub(crate) struct RecvBuffer {
    ring: Ring,
    /// In-order bytes the application has not read, at ring offsets `[0, readable)`.
    readable: usize,
    out_of_order: Assembler,
    /// What the SACK blocks report.
    reported: Reported,
    capacity: usize,
    /// Bytes the ring may hold beyond `capacity`: the window scale rounds our offer up to
    /// its unit (RFC 7323 section 2.4: the right edge never moves left), and what we offered
    /// is always taken, or a full receiver would keep offering a window it never backs.
    slack: usize,
}

impl RecvBuffer {
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> RecvBuffer {
        RecvBuffer::with_max_ranges(capacity, super::assembler::DEFAULT_MAX_RANGES)
    }

    /// A buffer of `capacity` bytes keeping at most `max_ranges` out-of-order ranges.
    pub(crate) fn with_max_ranges(capacity: usize, max_ranges: usize) -> RecvBuffer {
        RecvBuffer {
            ring: Ring::default(),
            readable: 0,
            out_of_order: Assembler::new(max_ranges),
            reported: Reported::default(),
            capacity,
            slack: 0,
        }
    }

    /// The window scale in use: the ring may hold up to one unit (less a byte) more.
    pub(crate) fn set_window_shift(&mut self, shift: u8) {
        self.slack = (1usize << shift.min(14)) - 1;
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the application can read.
    pub(crate) fn readable_len(&self) -> usize {
        self.readable
    }

    /// Space not taken by readable bytes: the most window we may offer.
    pub(crate) fn free(&self) -> usize {
        self.capacity.saturating_sub(self.readable)
    }

    /// Space the ring can still take in order: `free` and the scale's rounding slack.
    pub(crate) fn room(&self) -> usize {
        (self.capacity + self.slack).saturating_sub(self.readable)
    }

    pub(crate) fn has_out_of_order(&self) -> bool {
        !self.out_of_order.is_empty()
    }

    /// Out-of-order ranges held.
    #[cfg(test)]
    pub(crate) fn out_of_order_ranges(&self) -> usize {
        self.out_of_order.len()
    }

    /// Out-of-order ranges dropped or refused so far for the cap on ranges.
    pub(crate) fn out_of_order_dropped(&self) -> u64 {
        self.out_of_order.dropped()
    }

    /// Bytes of memory the buffer holds.
    pub(crate) fn allocated(&self) -> usize {
        self.ring.allocated()
    }

    /// Stores `data` starting at `seq` (with `seq >= rcv_nxt`; the caller trimmed it to the
    /// window); returns the new `rcv_nxt`. Out-of-order bytes the cap on ranges turns away
    /// are left for the peer to send again.
    pub(crate) fn insert(
        &mut self,
        rcv_nxt: SeqNumber,
        seq: SeqNumber,
        data: &[u8],
        copied: &mut u64,
    ) -> SeqNumber {
        let offset = seq.saturating_sub(rcv_nxt);
        let room = (self.capacity + self.slack).saturating_sub(self.readable + offset);
        let data = &data[..data.len().min(room)];
        if data.is_empty() {
            return rcv_nxt;
        }
        if offset > 0 {
            match self.out_of_order.make_room(seq, seq + data.len()) {
                Room::Fits => {}
                Room::Dropped(start, end) => self.reported.remove(|(s, e)| s < end && start < e),
                // Refused for the cap on out-of-order ranges (see `assembler.rs`).
                Room::Refused => return rcv_nxt,
            }
        }
        let needed = self.readable + offset + data.len();
        if needed > self.ring.allocated() {
            let ooo_end = self.out_of_order.end().map_or(0, |end| end.saturating_sub(rcv_nxt));
            let limit = self.capacity + self.slack;
            *copied += self.ring.grow(needed, limit, self.readable + ooo_end) as u64;
        }
        let n = self.ring.write(self.readable + offset, data);
        *copied += n as u64;
        if offset > 0 {
            let (start, end) = self.out_of_order.add_range(seq, seq + n);
            self.reported.arrived(start, end);
            return rcv_nxt;
        }
        self.readable += n;
        let mut next = rcv_nxt + n;
        // Ranges the new bytes reached are in place already: they just become readable.
        while let Some((_, end)) = self.out_of_order.pop_reached(next) {
            if end > next {
                self.readable += end - next;
                next = end;
            }
        }
        self.reported.remove(|(s, _)| s <= next);
        next
    }

    /// The readable bytes, as one or two slices.
    pub(crate) fn readable_slices(&self) -> (&[u8], &[u8]) {
        self.ring.slices(0, self.readable)
    }

    /// Drops `n` read bytes (at most what is readable); returns how many.
    pub(crate) fn consume(&mut self, n: usize) -> usize {
        let n = n.min(self.readable);
        self.ring.advance(n);
        self.readable -= n;
        if self.is_empty() {
            self.ring.rewind();
        }
        n
    }

    /// Nothing readable and nothing out of order.
    pub(crate) fn is_empty(&self) -> bool {
        self.readable == 0 && self.out_of_order.is_empty()
    }

    /// Forgets every out-of-order range, as a receiver short of memory may (RFC 2018
    /// section 8); returns how many there were.
    pub(crate) fn discard_out_of_order(&mut self) -> usize {
        let n = self.out_of_order.iter().count();
        self.out_of_order.clear();
        self.reported = Reported::default();
        n
    }

    /// Frees the ring if it holds nothing; returns whether memory was given back.
    pub(crate) fn release_if_empty(&mut self) -> bool {
        if !self.is_empty() || self.ring.allocated() == 0 {
            return false;
        }
        self.ring.release();
        self.out_of_order.clear();
        true
    }

    /// SACK blocks for an outgoing segment, at most `max`: the range the latest segment went
    /// to first, then those reported most recently (RFC 2018 section 4).
    pub(crate) fn sack_blocks(&self, max: usize) -> SackRanges {
        let mut ranges = SackRanges::new();
        for &(start, end) in self.reported.as_slice().iter().take(max) {
            ranges.push(start, end);
        }
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> SeqNumber {
        SeqNumber::new(n)
    }

    fn read_all(buf: &mut RecvBuffer) -> Vec<u8> {
        let (a, b) = buf.readable_slices();
        let out = [a, b].concat();
        buf.consume(out.len());
        out
    }

    #[test]
    fn reassembles_out_of_order_runs() {
        let mut buf = RecvBuffer::new(100);
        let mut nxt = seq(u32::MAX - 2);
        let copied = &mut 0;
        nxt = buf.insert(nxt, nxt + 6, b"ghi", copied);
        nxt = buf.insert(nxt, nxt + 3, b"def", copied);
        nxt = buf.insert(nxt, nxt + 12, b"mn", copied);
        assert_eq!(buf.sack_blocks(4).as_slice(), [(seq(9), seq(11)), (seq(0), seq(6))]);
        nxt = buf.insert(nxt, nxt, b"abc", copied);
        assert_eq!(nxt, seq(6));
        assert_eq!(buf.sack_blocks(4).as_slice(), [(seq(9), seq(11))]);
        // In-order bytes that cover a queued run swallow it.
        nxt = buf.insert(nxt, nxt, b"jklmnop", copied);
        assert_eq!(nxt, seq(13));
        assert!(!buf.has_out_of_order());
        assert_eq!(read_all(&mut buf), b"abcdefghijklmnop");
        assert_eq!(*copied, 3 + 3 + 2 + 3 + 7, "each byte copied once on arrival");
    }

    #[test]
    fn overlapping_out_of_order_runs_merge() {
        let mut buf = RecvBuffer::new(100);
        let nxt = seq(0);
        let copied = &mut 0;
        buf.insert(nxt, seq(10), b"klm", copied);
        buf.insert(nxt, seq(20), b"uv", copied);
        buf.insert(nxt, seq(12), b"mnopqrst", copied);
        assert_eq!(buf.sack_blocks(4).as_slice(), [(seq(10), seq(22))]);
        let nxt = buf.insert(nxt, nxt, b"abcdefghij", copied);
        assert_eq!(nxt, seq(22));
        assert_eq!(read_all(&mut buf), b"abcdefghijklmnopqrstuv");
    }

    #[test]
    fn out_of_order_bytes_survive_growth_and_the_buffer_is_released_empty() {
        let mut buf = RecvBuffer::new(64 * 1024);
        let copied = &mut 0;
        let far = vec![7u8; 100];
        let nxt = buf.insert(seq(0), seq(5000), &far, copied);
        assert_eq!(buf.allocated(), 8192, "room up to the far segment's end");
        let near = vec![1u8; 5000];
        let nxt = buf.insert(nxt, nxt, &near, copied);
        assert_eq!(nxt, seq(5100));
        let (a, b) = buf.readable_slices();
        assert_eq!(a.len() + b.len(), 5100);
        assert!(a.iter().chain(b).skip(5000).all(|&x| x == 7));
        assert_eq!(buf.consume(5100), 5100);
        assert!(buf.release_if_empty());
        assert_eq!(buf.allocated(), 0);
    }

    #[test]
    fn bytes_beyond_the_buffer_are_not_stored() {
        let mut buf = RecvBuffer::new(10);
        let nxt = buf.insert(seq(0), seq(0), b"0123456789abc", &mut 0);
        assert_eq!(nxt, seq(10));
        assert_eq!(buf.insert(nxt, nxt, b"x", &mut 0), nxt, "full");
    }
}
