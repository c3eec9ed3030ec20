//! The send buffer: bytes the application queued, from the oldest unacknowledged one on.

use std::collections::VecDeque;

use crate::seq::SeqNumber;

/// Application data not yet acknowledged, with the sequence number of its first byte.
/// Grows on demand up to `capacity`, so an idle connection holds no buffer memory.
#[derive(Debug)]
pub(crate) struct SendBuffer {
    bytes: VecDeque<u8>,
    /// Sequence number of `bytes[0]`.
    start: SeqNumber,
    capacity: usize,
}

impl SendBuffer {
    pub(crate) fn new(start: SeqNumber, capacity: usize) -> SendBuffer {
        SendBuffer { bytes: VecDeque::new(), start, capacity }
    }

    /// Sequence number of the first unacknowledged data byte.
    pub(crate) fn start(&self) -> SeqNumber {
        self.start
    }

    /// Sequence number just past the last queued byte.
    pub(crate) fn end(&self) -> SeqNumber {
        self.start + self.bytes.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Room for more application data.
    pub(crate) fn free(&self) -> usize {
        self.capacity.saturating_sub(self.bytes.len())
    }

    /// Queues as much of `data` as fits; returns how much.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        self.bytes.extend(&data[..n]);
        n
    }

    /// Drops data acknowledged up to `ack` (which may also cover SYN or FIN, which hold no
    /// bytes here); returns the number of bytes freed.
    pub(crate) fn acknowledge(&mut self, ack: SeqNumber) -> usize {
        let n = ack.min(self.end()).saturating_sub(self.start);
        self.bytes.drain(..n);
        self.start += n;
        if self.bytes.is_empty() {
            // Give the memory back: idle connections should cost no buffer.
            self.bytes = VecDeque::new();
        }
        n
    }

    /// Copies up to `len` bytes starting at `seq` into `out` (cleared first).
    pub(crate) fn copy_out(&self, seq: SeqNumber, len: usize, out: &mut Vec<u8>) {
        out.clear();
        let from = seq.saturating_sub(self.start).min(self.bytes.len());
        let to = (from + len).min(self.bytes.len());
        let (front, back) = self.bytes.as_slices();
        let split = front.len();
        if from < split {
            out.extend_from_slice(&front[from..to.min(split)]);
        }
        if to > split {
            out.extend_from_slice(&back[from.max(split) - split..to - split]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_is_bounded_and_ack_frees() {
        let mut buf = SendBuffer::new(SeqNumber::new(u32::MAX - 1), 8);
        assert_eq!(buf.push(b"0123456789"), 8);
        assert_eq!(buf.free(), 0);
        assert_eq!(buf.end(), SeqNumber::new(6));
        let mut out = Vec::new();
        buf.copy_out(SeqNumber::new(0), 3, &mut out);
        assert_eq!(out, b"234");
        assert_eq!(buf.acknowledge(SeqNumber::new(1)), 3);
        assert_eq!(buf.start(), SeqNumber::new(1));
        // An ACK that also covers a FIN past the data frees only the data.
        assert_eq!(buf.acknowledge(SeqNumber::new(7)), 5);
        assert!(buf.is_empty());
    }
}
