//! Test support: outgoing segments as owned values, and a cross-check of the table's
//! incremental counters. These allocate per segment or walk every connection: for tests
//! and tools, never for the data path.

use crate::conn::MIN_TRANSMIT_BUFFER;
use crate::conn::{ConnStats, Connection, Segment};
use crate::table::{ConnectionTable, Transmit};
use crate::time::Instant;

/// Room for any segment the engine sends: a header with the most options and 64 KiB.
const SEGMENT_BUFFER: usize = MIN_TRANSMIT_BUFFER + (1 << 16);

fn parse_back(tuple: &crate::FourTuple, bytes: &[u8]) -> Segment {
    let pseudo = match tuple.outgoing_pseudo_header() {
        Ok(pseudo) => pseudo,
        Err(e) => panic!("a connection's tuple has one address family: {e}"),
    };
    match Segment::parse(bytes, &pseudo) {
        Ok(segment) => segment,
        Err(e) => panic!("what the engine emits must parse, checksum included: {e}"),
    }
}

impl Connection {
    /// [`Connection::poll_transmit`] into a fresh buffer, parsed back (checksum verified)
    /// into a [`Segment`].
    pub fn poll_segment(&mut self, now: Instant) -> Option<Segment> {
        let mut buf = vec![0u8; SEGMENT_BUFFER];
        let len = self.poll_transmit(now, &mut buf)?;
        Some(parse_back(self.tuple(), &buf[..len]))
    }
}

impl<T> ConnectionTable<T> {
    /// [`ConnectionTable::poll_transmit`] into a fresh buffer, parsed back (checksum
    /// verified) into a [`Segment`].
    pub fn poll_segment(&mut self, now: Instant) -> Option<(Transmit, Segment)> {
        let mut buf = vec![0u8; SEGMENT_BUFFER];
        let tx = self.poll_transmit(now, &mut buf)?;
        let segment = parse_back(&tx.tuple, &buf[..tx.len]);
        Some((tx, segment))
    }

    /// Per-state counts and counter totals found by walking every connection and record,
    /// for checking [`ConnectionTable::stats`] (kept incrementally) against.
    #[must_use]
    pub fn counts_by_walking(&self) -> ([usize; 11], ConnStats) {
        self.walk_counts()
    }
}
