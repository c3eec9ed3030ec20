//! The receive side: in-order bytes waiting for the application, and out-of-order
//! segments waiting for the gap before them to fill (RFC 9293 section 3.10.7.4, seventh
//! step), from which SACK blocks are reported (RFC 2018 section 4).

use std::collections::VecDeque;

use crate::seq::SeqNumber;
use crate::wire::SackRanges;

/// A run of out-of-order bytes `[start, start + bytes.len())`.
#[derive(Debug)]
struct Run {
    start: SeqNumber,
    bytes: Vec<u8>,
}

impl Run {
    fn end(&self) -> SeqNumber {
        self.start + self.bytes.len()
    }
}

/// Received data. Everything held (readable plus out of order) stays within the window we
/// advertised, which never exceeds `capacity` minus the readable bytes.
#[derive(Debug)]
pub(crate) struct RecvBuffer {
    readable: VecDeque<u8>,
    /// Sorted, disjoint, non-adjacent runs above `rcv_nxt`.
    out_of_order: Vec<Run>,
    /// Start of the run that received the most recent segment: its block goes first.
    latest: Option<SeqNumber>,
    capacity: usize,
}

impl RecvBuffer {
    pub(crate) fn new(capacity: usize) -> RecvBuffer {
        RecvBuffer { readable: VecDeque::new(), out_of_order: Vec::new(), latest: None, capacity }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the application can read.
    pub(crate) fn readable_len(&self) -> usize {
        self.readable.len()
    }

    /// Space not taken by readable bytes: the most window we may offer.
    pub(crate) fn free(&self) -> usize {
        self.capacity.saturating_sub(self.readable.len())
    }

    pub(crate) fn has_out_of_order(&self) -> bool {
        !self.out_of_order.is_empty()
    }

    /// Stores `data` starting at `seq` (with `seq >= rcv_nxt`, trimmed to the window);
    /// returns the new `rcv_nxt`.
    pub(crate) fn insert(&mut self, rcv_nxt: SeqNumber, seq: SeqNumber, data: &[u8]) -> SeqNumber {
        if data.is_empty() {
            return rcv_nxt;
        }
        if seq != rcv_nxt {
            self.insert_out_of_order(seq, data);
            return rcv_nxt;
        }
        self.readable.extend(data);
        let mut next = rcv_nxt + data.len();
        // Pull runs the new bytes reached.
        while let Some(run) = self.out_of_order.first() {
            if run.start > next {
                break;
            }
            let run = self.out_of_order.remove(0);
            if run.end() > next {
                let skip = next - run.start;
                self.readable.extend(&run.bytes[skip..]);
                next = run.end();
            }
            if self.latest == Some(run.start) {
                self.latest = None;
            }
        }
        if self.out_of_order.is_empty() {
            self.out_of_order = Vec::new();
        }
        next
    }

    fn insert_out_of_order(&mut self, seq: SeqNumber, data: &[u8]) {
        let end = seq + data.len();
        // Runs that overlap or touch [seq, end) merge with it.
        let first = self
            .out_of_order
            .iter()
            .position(|r| r.end() >= seq)
            .unwrap_or(self.out_of_order.len());
        let last = self.out_of_order[first..]
            .iter()
            .position(|r| r.start > end)
            .map_or(self.out_of_order.len(), |i| first + i);
        let merged: Vec<Run> = self.out_of_order.drain(first..last).collect();
        let start = merged.first().map_or(seq, |r| r.start.min(seq));
        let stop = merged.last().map_or(end, |r| r.end().max(end));
        let mut bytes = vec![0; stop - start];
        bytes[seq - start..end - start].copy_from_slice(data);
        for run in &merged {
            bytes[run.start - start..run.end() - start].copy_from_slice(&run.bytes);
        }
        self.out_of_order.insert(first, Run { start, bytes });
        self.latest = Some(start);
    }

    /// Moves readable bytes into `out`; returns how many.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.readable.len());
        for (dst, src) in out.iter_mut().zip(self.readable.drain(..n)) {
            *dst = src;
        }
        if self.readable.is_empty() {
            self.readable = VecDeque::new();
        }
        n
    }

    /// SACK blocks for an outgoing segment: the run with the latest arrival first, then the
    /// others in order (RFC 2018 section 4), at most `max`.
    pub(crate) fn sack_blocks(&self, max: usize) -> SackRanges {
        let mut ranges = SackRanges::new();
        let latest = self.latest.and_then(|s| self.out_of_order.iter().find(|r| r.start == s));
        if let Some(run) = latest {
            ranges.push(run.start, run.end());
        }
        for run in &self.out_of_order {
            if ranges.len() >= max {
                break;
            }
            if Some(run.start) != latest.map(|r| r.start) {
                ranges.push(run.start, run.end());
            }
        }
        ranges.truncate(max);
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> SeqNumber {
        SeqNumber::new(n)
    }

    #[test]
    fn reassembles_out_of_order_runs() {
        let mut buf = RecvBuffer::new(100);
        let mut nxt = seq(u32::MAX - 2);
        nxt = buf.insert(nxt, nxt + 6, b"ghi");
        nxt = buf.insert(nxt, nxt + 3, b"def");
        nxt = buf.insert(nxt, nxt + 12, b"mn");
        assert_eq!(buf.sack_blocks(4).as_slice(), [(seq(9), seq(11)), (seq(0), seq(6))]);
        nxt = buf.insert(nxt, nxt, b"abc");
        assert_eq!(nxt, seq(6));
        assert_eq!(buf.sack_blocks(4).as_slice(), [(seq(9), seq(11))]);
        // In-order bytes that cover a queued run swallow it.
        nxt = buf.insert(nxt, nxt, b"jklmnop");
        assert_eq!(nxt, seq(13));
        assert!(!buf.has_out_of_order());
        let mut out = [0u8; 32];
        let n = buf.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghijklmnop");
    }

    #[test]
    fn overlapping_out_of_order_runs_merge() {
        let mut buf = RecvBuffer::new(100);
        let nxt = seq(0);
        buf.insert(nxt, seq(10), b"klm");
        buf.insert(nxt, seq(20), b"uv");
        buf.insert(nxt, seq(12), b"mnopqrst");
        assert_eq!(buf.sack_blocks(4).as_slice(), [(seq(10), seq(22))]);
        let nxt = buf.insert(nxt, nxt, b"abcdefghij");
        assert_eq!(nxt, seq(22));
        let mut out = [0u8; 32];
        let n = buf.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghijklmnopqrstuv");
    }
}
