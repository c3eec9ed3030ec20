//! The send buffer: bytes the application queued, from the oldest unacknowledged one on,
//! in a ring that is allocated when data is queued and grows up to the configured size.
//!
//! Segments are written from it straight into the caller's transmit buffer, and
//! [`SendBuffer::spare`] lets the application fill it in place, so a byte is copied at most
//! once on its way out (into the segment), or twice when queued with `send(&[u8])`.

use super::ring::Ring;
use crate::seq::SeqNumber;

/// Application data not yet acknowledged, with the sequence number of its first byte.
#[derive(Debug)]
pub(crate) struct SendBuffer {
    ring: Ring,
    len: usize,
    /// Sequence number of the first byte.
    start: SeqNumber,
    capacity: usize,
}

impl SendBuffer {
    pub(crate) fn new(start: SeqNumber, capacity: usize) -> SendBuffer {
        SendBuffer { ring: Ring::default(), len: 0, start, capacity }
    }

    /// Sequence number of the first unacknowledged data byte.
    pub(crate) fn start(&self) -> SeqNumber {
        self.start
    }

    /// Sequence number just past the last queued byte.
    pub(crate) fn end(&self) -> SeqNumber {
        self.start + self.len
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for more application data.
    pub(crate) fn free(&self) -> usize {
        self.capacity.saturating_sub(self.len)
    }

    /// Bytes of memory the buffer holds.
    pub(crate) fn allocated(&self) -> usize {
        self.ring.allocated()
    }

    /// Makes sure the ring can hold `more` bytes beyond what it has (up to the capacity).
    fn reserve(&mut self, more: usize, copied: &mut u64) {
        if self.len == 0 {
            self.ring.rewind();
        }
        let needed = self.len + more.min(self.free());
        *copied += self.ring.grow(needed, self.capacity, self.len) as u64;
    }

    /// Queues as much of `data` as fits; returns how much.
    pub(crate) fn push(&mut self, data: &[u8], copied: &mut u64) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        self.reserve(n, copied);
        let n = self.ring.write(self.len, &data[..n]);
        self.len += n;
        *copied += n as u64;
        n
    }

    /// Contiguous free space behind the queued data, at most `max` bytes, growing the ring
    /// if that gives more room. Fill it, then [`SendBuffer::commit`] what was written.
    pub(crate) fn spare(&mut self, max: usize, copied: &mut u64) -> &mut [u8] {
        let want = max.min(self.free());
        if want == 0 {
            return &mut [];
        }
        self.reserve(want, copied);
        let spare = self.ring.contiguous_mut(self.len);
        let n = spare.len().min(want);
        &mut spare[..n]
    }

    /// Queues `n` bytes written into [`SendBuffer::spare`].
    pub(crate) fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.ring.allocated()).min(self.capacity);
    }

    /// Drops data acknowledged up to `ack` (which may also cover SYN or FIN, which hold no
    /// bytes here); returns the number of bytes freed.
    pub(crate) fn acknowledge(&mut self, ack: SeqNumber) -> usize {
        let n = ack.min(self.end()).saturating_sub(self.start);
        self.ring.advance(n);
        self.len -= n;
        self.start += n;
        if self.len == 0 {
            self.ring.rewind();
        }
        n
    }

    /// Copies `out.len()` bytes starting at `seq` into `out` (a segment's payload area).
    pub(crate) fn copy_to(&self, seq: SeqNumber, out: &mut [u8]) -> usize {
        let offset = seq.saturating_sub(self.start);
        let n = out.len().min(self.len.saturating_sub(offset));
        self.ring.read(offset, &mut out[..n])
    }

    /// Frees the ring if it holds nothing; returns whether memory was given back.
    pub(crate) fn release_if_empty(&mut self) -> bool {
        if self.len > 0 || self.ring.allocated() == 0 {
            return false;
        }
        self.ring.release();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_is_bounded_and_ack_frees() {
        let mut copied = 0;
        let mut buf = SendBuffer::new(SeqNumber::new(u32::MAX - 1), 8);
        assert_eq!(buf.allocated(), 0, "nothing allocated before data");
        assert_eq!(buf.push(b"0123456789", &mut copied), 8);
        assert_eq!(copied, 8);
        assert_eq!(buf.free(), 0);
        assert_eq!(buf.end(), SeqNumber::new(6));
        let mut out = [0u8; 3];
        assert_eq!(buf.copy_to(SeqNumber::new(0), &mut out), 3);
        assert_eq!(&out, b"234");
        assert_eq!(buf.acknowledge(SeqNumber::new(1)), 3);
        assert_eq!(buf.start(), SeqNumber::new(1));
        // An ACK that also covers a FIN past the data frees only the data.
        assert_eq!(buf.acknowledge(SeqNumber::new(7)), 5);
        assert!(buf.is_empty());
        assert!(buf.release_if_empty());
        assert_eq!(buf.allocated(), 0);
    }

    #[test]
    fn spare_is_filled_in_place_and_wraps() {
        let mut copied = 0;
        let mut buf = SendBuffer::new(SeqNumber::new(0), 4096);
        let spare = buf.spare(3000, &mut copied);
        assert_eq!(spare.len(), 3000);
        spare.fill(b'a');
        buf.commit(3000);
        assert_eq!(copied, 0, "filled in place: no copy");
        assert_eq!(buf.acknowledge(SeqNumber::new(2500)), 2500);
        // 500 bytes queued at ring offset 2500: the contiguous room runs to the end of the
        // 4096-byte ring, the rest wraps.
        let spare = buf.spare(3596, &mut copied);
        assert_eq!(spare.len(), 4096 - 3000);
        spare.fill(b'b');
        buf.commit(4096 - 3000);
        let spare = buf.spare(4096, &mut copied);
        assert_eq!(spare.len(), 2500);
        spare.fill(b'c');
        buf.commit(2500);
        assert_eq!(buf.free(), 0);
        let mut out = vec![0u8; 4096];
        assert_eq!(buf.copy_to(SeqNumber::new(2500), &mut out), 4096);
        assert!(out[..500].iter().all(|&b| b == b'a'));
        assert!(out[500..1596].iter().all(|&b| b == b'b'));
        assert!(out[1596..].iter().all(|&b| b == b'c'));
    }
}
