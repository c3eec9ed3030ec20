//! TIME-WAIT as a small fixed record (RFC 9293 section 3.10.7.4; Linux keeps a
//! `tcp_timewait_sock` for the same reason).
//!
//! A connection in TIME-WAIT has nothing left to send or deliver: for its 2 MSL it only has
//! to acknowledge the peer's FIN again if the peer did not get our last ACK, and to keep old
//! duplicates of this incarnation from being taken for a new one. That needs the sequence
//! numbers, the peer's latest timestamp, the window we offered and the deadline, not a whole
//! [`Connection`](crate::Connection): the table turns a connection into a [`TimeWait`] once
//! it entered TIME-WAIT and everything was sent and read.

use crate::config::Config;
use crate::seq::SeqNumber;
use crate::time::Instant;
use crate::tuple::FourTuple;
use crate::wire::{Flags, TcpRepr, TcpTimestamp};

/// What remains of a connection in TIME-WAIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWait {
    /// The connection's addresses.
    pub tuple: FourTuple,
    /// When the record is dropped: 2 MSL after the peer's FIN (or its latest repeat).
    pub expires: Instant,
    /// When we last answered a segment that carried no data (RFC 5961 section 7 limit).
    pub last_ack: Option<Instant>,
    /// One past the peer's FIN.
    pub rcv_nxt: SeqNumber,
    /// One past our FIN: the sequence number of our ACKs.
    pub snd_nxt: SeqNumber,
    /// The peer's latest TSval (`TS.Recent`), if the connection used timestamps.
    pub ts_recent: u32,
    /// Our TSval is the millisecond clock plus this.
    pub ts_offset: u32,
    /// The window field of our last segment (already scaled).
    pub window: u16,
    /// Whether the connection used timestamps (RFC 7323).
    pub timestamps: bool,
}

impl TimeWait {
    /// Handles a segment for the tuple; returns the ACK to send, if any. Restarts the 2 MSL
    /// (`expires` moves) when the peer sends its FIN again.
    pub fn on_segment(
        &mut self,
        now: Instant,
        repr: &TcpRepr,
        payload_len: usize,
        config: &Config,
    ) -> Option<TcpRepr> {
        // RFC 1337 (fix TW-1): a RST must not cut TIME-WAIT short, or an old duplicate
        // could be accepted by a new incarnation.
        if repr.flags.rst() {
            return None;
        }
        let seg_len = repr.segment_len(payload_len);
        // RFC 7323 section 5.3: PAWS applies in TIME-WAIT too (an old duplicate is answered
        // with an ACK, never accepted).
        let paws_reject = match (self.timestamps, repr.timestamp) {
            (true, Some(theirs)) => theirs.tsval.wrapping_sub(self.ts_recent).cast_signed() < 0,
            _ => false,
        };
        // RFC 7323 section 4.3: the segment covers Last.ACK.sent (RCV.NXT here).
        let covers_last_ack =
            repr.seq_number <= self.rcv_nxt && self.rcv_nxt <= repr.seq_number + seg_len;
        if !paws_reject
            && covers_last_ack
            && let Some(theirs) = repr.timestamp
            && self.timestamps
        {
            self.ts_recent = theirs.tsval;
        }
        let fin_again = repr.flags.fin() && repr.seq_number + seg_len == self.rcv_nxt;
        if fin_again && !paws_reject && !repr.flags.syn() {
            // The peer sent its FIN again, so our ACK of it was lost: acknowledge it again
            // and restart the 2 MSL (RFC 9293 section 3.10.7.4, fifth and eighth steps).
            self.expires = now + config.time_wait();
            return Some(self.ack(now));
        }
        if !paws_reject && seg_len == 0 && repr.seq_number == self.rcv_nxt {
            // In window and nothing in it (a duplicate of the ACK of our FIN): nothing to do.
            return None;
        }
        // Anything else (an old duplicate, data, a SYN) draws an ACK (first step:
        // "unacceptable", RFC 5961 section 4 for a SYN). One without data or FIN could be
        // part of an ACK loop or a spoofed flood: at most one per interval (RFC 5961
        // section 7, as Linux's tcp_timewait_check_oow_rate_limit).
        let carries_data = payload_len > 0 || (repr.flags.fin() && !repr.flags.syn());
        if !carries_data {
            let interval = config.challenge_ack_interval;
            if self.last_ack.is_some_and(|t| now.saturating_duration_since(t) < interval) {
                return None;
            }
            self.last_ack = Some(now);
        }
        Some(self.ack(now))
    }

    /// <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> with our window and timestamps.
    fn ack(&self, now: Instant) -> TcpRepr {
        TcpRepr {
            ack_number: Some(self.rcv_nxt),
            flags: Flags::NONE,
            window_len: self.window,
            timestamp: self.timestamps.then(|| TcpTimestamp {
                tsval: ms_clock(now).wrapping_add(self.ts_offset),
                tsecr: self.ts_recent,
            }),
            ..TcpRepr::new(self.tuple.local.port(), self.tuple.remote.port(), self.snd_nxt)
        }
    }

    /// RFC 6191 section 2: whether a new incarnation whose initial sequence number is `irs`
    /// (and whose handshake carried TSval `tsval`, if timestamps are on for it) may take the
    /// tuple over. With timestamps on both incarnations, the new TSval must be newer than
    /// `TS.Recent` (or equal, with a higher sequence number); otherwise the new ISN must be
    /// above `RCV.NXT`. Anything else may be an old duplicate (or a replayed handshake), and
    /// the tuple stays in TIME-WAIT.
    #[must_use]
    pub fn allows_new_incarnation(&self, irs: SeqNumber, tsval: Option<u32>) -> bool {
        let newer_seq = irs > self.rcv_nxt;
        match (self.timestamps, tsval) {
            (true, Some(tsval)) => {
                let ahead = tsval.wrapping_sub(self.ts_recent).cast_signed();
                ahead > 0 || (ahead == 0 && newer_seq)
            }
            _ => newer_seq,
        }
    }
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "the TCP timestamp clock is modulo 2^32 milliseconds"
)]
fn ms_clock(now: Instant) -> u32 {
    now.total_millis() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    fn record(timestamps: bool) -> TimeWait {
        TimeWait {
            tuple: FourTuple::new(
                "10.0.0.1:80".parse().expect("addr"),
                "10.0.0.2:4000".parse().expect("addr"),
            ),
            expires: Instant::from_secs(60),
            last_ack: None,
            rcv_nxt: SeqNumber::new(5002),
            snd_nxt: SeqNumber::new(1002),
            ts_recent: 700,
            ts_offset: 10,
            window: 512,
            timestamps,
        }
    }

    fn from_peer(seq: u32, flags: Flags, tsval: Option<u32>) -> TcpRepr {
        TcpRepr {
            ack_number: Some(SeqNumber::new(1002)),
            flags,
            timestamp: tsval.map(|tsval| TcpTimestamp { tsval, tsecr: 1 }),
            ..TcpRepr::new(4000, 80, SeqNumber::new(seq))
        }
    }

    #[test]
    fn fin_again_is_acked_and_restarts_2msl() {
        let config = Config::default();
        let mut tw = record(true);
        let now = Instant::from_secs(30);
        let ack = tw.on_segment(now, &from_peer(5001, Flags::FIN, Some(800)), 0, &config);
        let ack = ack.expect("re-ACK");
        assert_eq!(
            (ack.seq_number, ack.ack_number),
            (SeqNumber::new(1002), Some(SeqNumber::new(5002)))
        );
        assert_eq!(ack.timestamp, Some(TcpTimestamp { tsval: 30_010, tsecr: 800 }));
        assert_eq!(tw.expires, now + Duration::from_secs(60));
        // Repeated FINs are all answered: each one means our ACK was lost again.
        assert!(tw.on_segment(now, &from_peer(5001, Flags::FIN, Some(801)), 0, &config).is_some());
    }

    #[test]
    fn rst_is_ignored_and_bare_acks_are_rate_limited() {
        let config = Config::default();
        let mut tw = record(false);
        let now = Instant::from_secs(1);
        assert_eq!(tw.on_segment(now, &from_peer(5002, Flags::RST, None), 0, &config), None);
        assert_eq!(tw.on_segment(now, &from_peer(5002, Flags::NONE, None), 0, &config), None);
        // Old duplicates: one ACK per interval.
        assert!(tw.on_segment(now, &from_peer(4000, Flags::NONE, None), 0, &config).is_some());
        assert!(tw.on_segment(now, &from_peer(4000, Flags::NONE, None), 0, &config).is_none());
        assert!(tw.on_segment(now, &from_peer(5002, Flags::SYN, None), 0, &config).is_none());
        // Data is always answered.
        assert!(tw.on_segment(now, &from_peer(4000, Flags::NONE, None), 10, &config).is_some());
        let later = now + config.challenge_ack_interval;
        assert!(tw.on_segment(later, &from_peer(9000, Flags::SYN, None), 0, &config).is_some());
        assert_eq!(tw.expires, Instant::from_secs(60), "only a FIN restarts 2 MSL");
    }

    #[test]
    fn rfc6191_decides_by_timestamp_then_by_sequence_number() {
        let tw = record(true);
        assert!(tw.allows_new_incarnation(SeqNumber::new(1), Some(701)), "newer TSval");
        assert!(!tw.allows_new_incarnation(SeqNumber::new(9000), Some(699)), "older TSval");
        assert!(
            tw.allows_new_incarnation(SeqNumber::new(9000), Some(700)),
            "same TSval, higher ISN"
        );
        assert!(!tw.allows_new_incarnation(SeqNumber::new(5002), Some(700)));
        assert!(tw.allows_new_incarnation(SeqNumber::new(5003), None), "no timestamps now");
        let plain = record(false);
        assert!(plain.allows_new_incarnation(SeqNumber::new(5003), Some(1)));
        assert!(!plain.allows_new_incarnation(SeqNumber::new(5002), None));
        assert!(!plain.allows_new_incarnation(SeqNumber::new(10), None));
    }
}
