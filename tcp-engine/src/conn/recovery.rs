//! Loss recovery on the sender's side: which sent segments the peer has (cumulatively or
//! selectively acknowledged), which are lost, and what to send again.
//!
//! - [`Scoreboard`]: one record per segment sent and not yet cumulatively acknowledged, with
//!   its SACK, lost and retransmitted marks and its last transmission time: RFC 6675's
//!   scoreboard (section 3) with the per-segment times RACK needs. Bytes in flight
//!   ([`Scoreboard::in_flight`]) are RFC 6675's `pipe`, kept as counters (Linux's
//!   `packets_out - sacked_out - lost_out + retrans_out`, in bytes); the first lost segment
//!   not yet resent ([`Scoreboard::next_lost`]) is rule 1 of its `NextSeg()`.
//! - [`Rack`]: RACK (RFC 8985 section 6): a segment is lost when a segment sent after it has
//!   been delivered and more than an RTT plus a reordering window has passed since it was
//!   sent. It judges originals and retransmissions alike, so a lost retransmission is found
//!   without waiting for the retransmission timer. RFC 6675's `IsLost()` (DupThresh SACKed
//!   segments above a hole) is folded into it as RFC 8985 section 6.2 step 4 and Linux do:
//!   while no reordering has been seen, DupThresh SACKed segments make the reordering
//!   window zero, so such a hole is lost at once.
//! - [`Prr`]: Proportional Rate Reduction (RFC 6937), how much may be sent per ACK during
//!   fast recovery, as Linux's `tcp_cwnd_reduction`.
//!
//! The connection (`mod.rs`) drives these: it feeds ACKs and SACK blocks in, runs the
//! tail loss probe (RFC 8985 section 7), the timers and the state machine (open, fast
//! recovery, after a timeout), and asks the congestion controller for the window.
//!
//! The Linux sources followed: `net/ipv4/tcp_recovery.c` (`tcp_rack_detect_loss`,
//! `tcp_rack_advance`, `tcp_rack_reo_wnd`), `tcp_input.c` (`tcp_sacktag_write_queue`,
//! `tcp_clean_rtx_queue`, `tcp_cwnd_reduction`, `tcp_timeout_mark_lost`).

use std::collections::VecDeque;

use crate::seq::SeqNumber;
use crate::time::{Duration, Instant};

/// DupThresh of RFC 5681 and RFC 6675.
pub(crate) const DUP_THRESH: u32 = 3;

/// Marks of a sent segment.
mod mark {
    /// Selectively acknowledged.
    pub const SACKED: u8 = 1 << 0;
    /// Considered lost: to be sent again.
    pub const LOST: u8 = 1 << 1;
    /// A retransmission of it is in flight (Linux `TCPCB_SACKED_RETRANS`).
    pub const RETRANS: u8 = 1 << 2;
    /// Retransmitted at least once (Linux `TCPCB_EVER_RETRANS`): its ACK is ambiguous.
    pub const EVER_RETRANS: u8 = 1 << 3;
    /// Carries the FIN (its last sequence number).
    pub const FIN: u8 = 1 << 4;
}

/// One segment sent and not yet cumulatively acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    /// First sequence number.
    pub(crate) start: SeqNumber,
    /// One past the last (the FIN counts one).
    pub(crate) end: SeqNumber,
    /// When it was last sent.
    pub(crate) xmit: Instant,
    /// Transmission order, to tell apart segments sent in the same microsecond (a
    /// retransmission goes after everything sent before it, whatever its sequence number).
    pub(crate) order: u32,
    marks: u8,
}

impl Sent {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn has(&self, m: u8) -> bool {
        self.marks & m != 0
    }

    pub(crate) fn fin(&self) -> bool {
        self.has(mark::FIN)
    }

    pub(crate) fn sacked(&self) -> bool {
        self.has(mark::SACKED)
    }

    pub(crate) fn ever_retransmitted(&self) -> bool {
        self.has(mark::EVER_RETRANS)
    }

    /// Payload bytes (the FIN takes sequence space, not payload).
    pub(crate) fn data_len(&self) -> usize {
        self.len() - usize::from(self.fin())
    }
}

/// Whether transmission `(t1, o1)` came after `(t2, o2)` (RFC 8985 `RACK_sent_after`, with
/// the transmission order as the tie-break instead of the sequence number).
fn sent_after(t1: Instant, o1: u32, t2: Instant, o2: u32) -> bool {
    t1 > t2 || (t1 == t2 && o1.wrapping_sub(o2).cast_signed() > 0)
}

/// What a cumulative ACK did to the scoreboard.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Acked {
    /// Sequence bytes newly acknowledged that had not been SACKed (delivered now).
    pub(crate) newly_delivered: usize,
    /// Some acknowledged segment had been retransmitted: its ACK is ambiguous (Karn).
    pub(crate) retransmitted: bool,
    /// Send time of the oldest and the newest acknowledged segment that was neither
    /// retransmitted nor SACKed before: the RTT samples of RFC 6298 (Linux's `seq_rtt` from
    /// the oldest, `ca_rtt` from the newest).
    pub(crate) oldest: Option<Instant>,
    pub(crate) newest: Option<Instant>,
}

/// What a segment's SACK blocks did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sacked {
    /// Sequence bytes newly SACKed.
    pub(crate) bytes: usize,
    /// The first block reported a duplicate (RFC 2883 D-SACK).
    pub(crate) dsack: bool,
}

/// The segments in flight and their marks, with the sums RFC 6675's `pipe` needs.
#[derive(Debug, Default)]
pub(crate) struct Scoreboard {
    segs: VecDeque<Sent>,
    /// Bytes SACKed.
    sacked: usize,
    /// SACKed segments.
    sacked_segs: u32,
    /// Bytes marked lost and not SACKed.
    lost: usize,
    /// Bytes whose retransmission is in flight, not SACKed.
    retrans: usize,
    /// Bytes marked lost, not SACKed and not yet resent.
    lost_unsent: usize,
    /// No lost, unsent segment lies before this index (Linux's retransmit hint).
    lost_hint: usize,
    /// Transmission counter for [`Sent::order`].
    next_order: u32,
}

impl Scoreboard {
    pub(crate) fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Gives the memory back (the connection is idle, or closed).
    pub(crate) fn release(&mut self) {
        *self = Scoreboard { next_order: self.next_order, ..Scoreboard::default() };
    }

    /// Bytes of memory held.
    pub(crate) fn allocated(&self) -> usize {
        self.segs.capacity() * size_of::<Sent>()
    }

    /// Bytes SACKed.
    #[cfg(test)]
    pub(crate) fn sacked_bytes(&self) -> usize {
        self.sacked
    }

    /// Segments SACKed.
    pub(crate) fn sacked_segments(&self) -> u32 {
        self.sacked_segs
    }

    /// Bytes marked lost that wait to be sent again.
    pub(crate) fn lost_unsent(&self) -> usize {
        self.lost_unsent
    }

    /// RFC 6675 `pipe`: of the `outstanding` bytes (SND.MAX - SND.UNA), those neither SACKed
    /// nor lost, plus the retransmissions in flight.
    pub(crate) fn in_flight(&self, outstanding: usize) -> usize {
        (outstanding + self.retrans).saturating_sub(self.sacked + self.lost)
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Sent> {
        self.segs.get(i)
    }

    pub(crate) fn front(&self) -> Option<&Sent> {
        self.segs.front()
    }

    pub(crate) fn last_index(&self) -> Option<usize> {
        self.segs.len().checked_sub(1)
    }

    fn stamp(&mut self) -> u32 {
        let order = self.next_order;
        self.next_order = self.next_order.wrapping_add(1);
        order
    }

    /// A new segment `[start, end)` went out at `now` (`end` past a FIN).
    pub(crate) fn push(&mut self, start: SeqNumber, end: SeqNumber, now: Instant, fin: bool) {
        debug_assert!(self.segs.back().is_none_or(|s| s.end == start));
        let order = self.stamp();
        let marks = if fin { mark::FIN } else { 0 };
        self.segs.push_back(Sent { start, end, xmit: now, order, marks });
    }

    /// Takes the marks `m` off the sums (before they change or the segment goes).
    fn uncount(&mut self, s: Sent, len: usize) {
        if s.has(mark::SACKED) {
            self.sacked -= len;
            return;
        }
        if s.has(mark::LOST) {
            self.lost -= len;
            if !s.has(mark::RETRANS) {
                self.lost_unsent -= len;
            }
        }
        if s.has(mark::RETRANS) {
            self.retrans -= len;
        }
    }

    /// Adds a segment's marks to the sums.
    fn count(&mut self, s: Sent, len: usize) {
        if s.has(mark::SACKED) {
            self.sacked += len;
            return;
        }
        if s.has(mark::LOST) {
            self.lost += len;
            if !s.has(mark::RETRANS) {
                self.lost_unsent += len;
            }
        }
        if s.has(mark::RETRANS) {
            self.retrans += len;
        }
    }

    fn set_marks(&mut self, i: usize, marks: u8) {
        let s = self.segs[i];
        self.uncount(s, s.len());
        let updated = Sent { marks, ..s };
        self.count(updated, s.len());
        if updated.has(mark::SACKED) != s.has(mark::SACKED) {
            if updated.has(mark::SACKED) {
                self.sacked_segs += 1;
            } else {
                self.sacked_segs -= 1;
            }
        }
        self.segs[i] = updated;
    }

    /// Everything up to `ack` is acknowledged: the segments leave the board.
    pub(crate) fn ack(&mut self, ack: SeqNumber, rack: &mut Rack, now: Instant) -> Acked {
        let mut out = Acked::default();
        let mut popped = 0;
        while let Some(&s) = self.segs.front() {
            if s.end <= ack {
                self.segs.pop_front();
                popped += 1;
                self.uncount(s, s.len());
                if s.sacked() {
                    self.sacked_segs -= 1;
                } else {
                    out.newly_delivered += s.len();
                    rack.on_delivered(&s, now);
                    if s.ever_retransmitted() {
                        out.retransmitted = true;
                    } else {
                        out.oldest.get_or_insert(s.xmit);
                        out.newest = Some(s.xmit);
                    }
                }
            } else if s.start < ack {
                // Partly acknowledged (the peer took part of it): trim.
                let cut = ack - s.start;
                self.uncount(s, cut);
                if !s.sacked() {
                    out.newly_delivered += cut;
                }
                self.segs[0].start = ack;
                break;
            } else {
                break;
            }
        }
        self.lost_hint = self.lost_hint.saturating_sub(popped);
        out
    }

    /// Marks the segments the SACK blocks cover (RFC 2018 section 4, RFC 6675 section 4's
    /// `Update()`); `snd_una` after the cumulative ACK. Only whole segments are marked: a
    /// block edge inside one (rare: the peer took part of a segment) leaves it unmarked, to
    /// be resent if found lost.
    pub(crate) fn sack(
        &mut self,
        blocks: &[(SeqNumber, SeqNumber)],
        snd_una: SeqNumber,
        rack: &mut Rack,
        now: Instant,
    ) -> Sacked {
        let mut out = Sacked::default();
        let mut blocks = blocks;
        // RFC 2883 section 4: the first block reports a duplicate if it lies below the
        // cumulative ACK or inside the second block.
        if let Some(&(l, r)) = blocks.first() {
            let inside_next = blocks.get(1).is_some_and(|&(l2, r2)| l2 <= l && r <= r2);
            if r <= snd_una || inside_next {
                out.dsack = true;
                blocks = &blocks[1..];
            }
        }
        let Some(last_end) = self.segs.back().map(|s| s.end) else { return out };
        for &(left, right) in blocks {
            let left = left.max(snd_una);
            if right <= left || right > last_end {
                continue;
            }
            let mut i = self.segs.partition_point(|s| s.end <= left);
            while let Some(&s) = self.segs.get(i) {
                if s.start >= right {
                    break;
                }
                if !s.sacked() && s.start >= left && s.end <= right {
                    self.set_marks(i, s.marks | mark::SACKED);
                    out.bytes += s.len();
                    rack.on_delivered(&s, now);
                }
                i += 1;
            }
        }
        out
    }

    /// Whether the peer reneged: the cumulative ACK stops at data it had SACKed (RFC 2018
    /// section 8; Linux's `FLAG_SACK_RENEGING`).
    pub(crate) fn reneged(&self) -> bool {
        self.segs.front().is_some_and(Sent::sacked)
    }

    /// Forgets every SACK mark (RFC 2018 section 8: after a timeout, when the peer reneged).
    pub(crate) fn clear_sacks(&mut self) {
        for i in 0..self.segs.len() {
            let s = self.segs[i];
            if s.sacked() {
                self.set_marks(i, s.marks & !mark::SACKED);
            }
        }
        self.lost_hint = 0;
    }

    /// Marks segment `i` lost (again, if its retransmission is what was lost).
    fn mark_lost(&mut self, i: usize) -> usize {
        let s = self.segs[i];
        if s.sacked() || (s.has(mark::LOST) && !s.has(mark::RETRANS)) {
            return 0;
        }
        self.set_marks(i, (s.marks | mark::LOST) & !mark::RETRANS);
        self.lost_hint = self.lost_hint.min(i);
        s.len()
    }

    /// Marks the first segment lost (fast retransmit without SACK, RFC 5681 section 3.2, and
    /// the partial ACKs of RFC 6582).
    pub(crate) fn mark_first_lost(&mut self) -> usize {
        if self.segs.is_empty() { 0 } else { self.mark_lost(0) }
    }

    /// RACK's loss detection (RFC 8985 section 6.2 step 5, Linux `tcp_rack_detect_loss`):
    /// marks lost every segment sent before the most recently delivered one and not
    /// delivered within `rack.rtt + reo_wnd` of being sent. Returns the bytes newly marked
    /// and, for the segments not yet due, when the earliest of them will be.
    pub(crate) fn detect_loss(
        &mut self,
        rack: &Rack,
        reo_wnd: Duration,
        now: Instant,
    ) -> (usize, Option<Instant>) {
        let Some((rack_xmit, rack_order)) = rack.latest else { return (0, None) };
        let mut newly = 0;
        let mut wait: Option<Instant> = None;
        for i in 0..self.segs.len() {
            let s = self.segs[i];
            if s.sacked() || (s.has(mark::LOST) && !s.has(mark::RETRANS)) {
                continue;
            }
            if !sent_after(rack_xmit, rack_order, s.xmit, s.order) {
                // Originals go out in sequence order: once one was sent after the latest
                // delivered segment, so was everything above it (retransmissions included,
                // which are later still).
                if !s.ever_retransmitted() {
                    break;
                }
                continue;
            }
            let deadline = s.xmit + rack.rtt + reo_wnd;
            if deadline <= now {
                newly += self.mark_lost(i);
            } else {
                wait = Some(wait.map_or(deadline, |w| w.max(deadline)));
            }
        }
        (newly, wait)
    }

    /// After a retransmission timeout (RFC 8985 section 6.3, Linux `tcp_timeout_mark_lost`):
    /// the first segment is lost, and so is every other not delivered within RACK's RTT plus
    /// reordering window of being sent (all of them when there is no RTT yet).
    pub(crate) fn mark_lost_on_timeout(&mut self, rack: &Rack, reo_wnd: Duration, now: Instant) {
        for i in 0..self.segs.len() {
            let s = self.segs[i];
            let due = rack.latest.is_none() || s.xmit + rack.rtt + reo_wnd <= now;
            if i == 0 || due {
                self.mark_lost(i);
            }
        }
    }

    /// RFC 6675 `NextSeg()` rule 1: the first segment marked lost and not yet resent.
    pub(crate) fn next_lost(&mut self) -> Option<usize> {
        if self.lost_unsent == 0 {
            return None;
        }
        let start = self.lost_hint.min(self.segs.len());
        let found = self
            .segs
            .range(start..)
            .position(|s| !s.sacked() && s.has(mark::LOST) && !s.has(mark::RETRANS))
            .map(|p| p + start);
        self.lost_hint = found.unwrap_or(self.segs.len());
        found
    }

    /// Segment `i` is sent again at `now`, its first `len` sequence bytes (less than the
    /// whole when this segment's options leave less room than the first time): the record
    /// is split so that each record stays one transmission.
    pub(crate) fn retransmitted(&mut self, i: usize, len: usize, now: Instant) {
        let s = self.segs[i];
        if len < s.len() {
            let mid = s.start + len;
            // The tail keeps the marks (and the FIN); the sums are unchanged by a split.
            let tail = Sent { start: mid, ..s };
            let head = Sent { end: mid, marks: s.marks & !mark::FIN, ..s };
            self.segs[i] = head;
            self.segs.insert(i + 1, tail);
            if s.sacked() {
                self.sacked_segs += 1;
            }
        }
        let order = self.stamp();
        let s = self.segs[i];
        self.set_marks(i, s.marks | mark::RETRANS | mark::EVER_RETRANS);
        self.segs[i].xmit = now;
        self.segs[i].order = order;
    }
}

/// RACK's state (RFC 8985 section 6.1).
#[derive(Clone, Debug)]
pub(crate) struct Rack {
    /// Send time and order of the most recently sent segment that was delivered
    /// (`RACK.xmit_ts`).
    latest: Option<(Instant, u32)>,
    /// The RTT of that segment (`RACK.rtt`).
    rtt: Duration,
    /// The end of the highest segment delivered (`RACK.fack`).
    fack: SeqNumber,
    /// Whether delivery out of sequence order was seen (`RACK.reordering_seen`).
    reordering_seen: bool,
    /// Multiplier of the reordering window, grown by D-SACKs (`RACK.reo_wnd_mult`).
    reo_wnd_mult: u8,
    /// Recoveries left before the multiplier resets (`RACK.reo_wnd_persist`).
    reo_wnd_persist: u8,
    /// While a D-SACK round is open: the sequence number that ends it.
    dsack_round: Option<SeqNumber>,
    /// Minimum RTT over the last five minutes (Linux `tcp_min_rtt`, `tcp_min_rtt_wlen`).
    min_rtt: Option<(Duration, Instant)>,
    /// RACK's state moved: loss detection has something to do.
    advanced: bool,
}

/// How long a minimum RTT stays valid (Linux `tcp_min_rtt_wlen`, 300 s).
const MIN_RTT_WINDOW: Duration = Duration::from_secs(300);

impl Rack {
    pub(crate) fn new(iss: SeqNumber) -> Rack {
        Rack {
            latest: None,
            rtt: Duration::ZERO,
            fack: iss,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
            dsack_round: None,
            min_rtt: None,
            advanced: false,
        }
    }

    /// Takes the "state moved" flag.
    pub(crate) fn take_advanced(&mut self) -> bool {
        std::mem::take(&mut self.advanced)
    }

    /// Feeds one RTT sample into the windowed minimum.
    pub(crate) fn on_rtt_sample(&mut self, rtt: Duration, now: Instant) {
        let stale = self.min_rtt.is_none_or(|(min, at)| rtt <= min || now - at > MIN_RTT_WINDOW);
        if stale {
            self.min_rtt = Some((rtt, now));
        }
    }

    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(|(m, _)| m)
    }

    /// Steps 2 and 3 of RFC 8985 section 6.2 for a segment just delivered (cumulatively or
    /// selectively acknowledged): it may become the latest delivered, and delivery below the
    /// highest one delivered is reordering.
    fn on_delivered(&mut self, s: &Sent, now: Instant) {
        if s.end > self.fack {
            self.fack = s.end;
        } else if s.end < self.fack && !s.ever_retransmitted() {
            self.reordering_seen = true;
        }
        let rtt = now - s.xmit;
        // An ACK for a retransmitted segment may be for an earlier transmission; one that
        // came back faster than any RTT seen surely was (RFC 8985 step 2, Linux
        // tcp_rack_advance).
        if s.ever_retransmitted() && self.min_rtt().is_some_and(|min| rtt < min) {
            return;
        }
        if self.latest.is_none_or(|(t, o)| sent_after(s.xmit, s.order, t, o)) {
            self.latest = Some((s.xmit, s.order));
            self.rtt = rtt;
            self.advanced = true;
        }
    }

    /// Step 4 (reordering window), with the D-SACK adaptation: `dsack` on this ACK,
    /// `in_recovery` after a loss was detected, `sacked_segments` SACKed now.
    pub(crate) fn reo_wnd(
        &mut self,
        dsack: bool,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
        in_recovery: bool,
        sacked_segments: u32,
        srtt: Option<Duration>,
    ) -> Duration {
        if self.dsack_round.is_some_and(|end| snd_una >= end) {
            self.dsack_round = None;
        }
        if self.dsack_round.is_none() && dsack {
            self.dsack_round = Some(snd_max);
            self.reo_wnd_mult = self.reo_wnd_mult.saturating_add(1);
            self.reo_wnd_persist = 16;
        }
        self.window(in_recovery, sacked_segments, srtt)
    }

    /// The reordering window as it stands.
    pub(crate) fn window(
        &self,
        in_recovery: bool,
        sacked_segments: u32,
        srtt: Option<Duration>,
    ) -> Duration {
        if !self.reordering_seen && (in_recovery || sacked_segments >= DUP_THRESH) {
            return Duration::ZERO;
        }
        let quarter = self.min_rtt().map_or(Duration::ZERO, |m| {
            Duration::from_micros(m.total_micros() / 4) * u32::from(self.reo_wnd_mult)
        });
        srtt.map_or(quarter, |s| quarter.min(s))
    }

    /// A recovery ended: the D-SACK-grown window decays (RFC 8985 step 4).
    pub(crate) fn on_recovery_end(&mut self) {
        self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
        if self.reo_wnd_persist == 0 {
            self.reo_wnd_mult = 1;
        }
    }
}

/// Proportional Rate Reduction (RFC 6937) during fast recovery.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prr {
    /// Bytes delivered since recovery began (`prr_delivered`).
    delivered: usize,
    /// Bytes sent since recovery began (`prr_out`).
    out: usize,
    /// Bytes in flight when recovery began (`RecoverFS`).
    recover_fs: usize,
}

impl Prr {
    /// Recovery begins with `in_flight` bytes in flight.
    pub(crate) fn start(in_flight: usize) -> Prr {
        Prr { delivered: 0, out: 0, recover_fs: in_flight.max(1) }
    }

    /// Data went out during recovery.
    pub(crate) fn on_sent(&mut self, bytes: usize) {
        self.out += bytes;
    }

    /// An ACK during recovery delivered `delivered` bytes; `pipe` is in flight now. Returns
    /// the congestion window that lets PRR's share go out: `pipe + sndcnt` (RFC 6937
    /// section 3; the slow-start reduction bound PRR-SSRB, with one MSS extra only when
    /// SND.UNA advanced and no further loss was found, as Linux's `tcp_cwnd_reduction`).
    pub(crate) fn window(
        &mut self,
        delivered: usize,
        pipe: usize,
        ssthresh: usize,
        mss: usize,
        safe_ack: bool,
    ) -> usize {
        self.delivered += delivered;
        let sndcnt = if pipe > ssthresh {
            (self.delivered * ssthresh).div_ceil(self.recover_fs).saturating_sub(self.out)
        } else {
            let limit = self.delivered.saturating_sub(self.out).max(delivered)
                + if safe_ack { mss } else { 0 };
            (ssthresh - pipe).min(limit)
        };
        // The first retransmission goes whatever the arithmetic says (RFC 6937 section 3).
        let sndcnt = if self.out == 0 { sndcnt.max(mss) } else { sndcnt };
        // Whole segments, as Linux counts them: a delivered segment a few bytes short of a
        // full one (its options were longer) must still let a full one go.
        pipe + sndcnt.div_ceil(mss) * mss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> SeqNumber {
        SeqNumber::new(n)
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Ten 100-byte segments from 1000, sent 1 ms apart.
    fn board() -> (Scoreboard, Rack) {
        let mut sb = Scoreboard::default();
        for i in 0..10 {
            sb.push(seq(1000 + 100 * i), seq(1100 + 100 * i), ms(u64::from(i)), false);
        }
        (sb, Rack::new(seq(999)))
    }

    #[test]
    fn pipe_counts_what_is_neither_sacked_nor_lost_plus_retransmissions() {
        let (mut sb, mut rack) = board();
        assert_eq!(sb.in_flight(1000), 1000);
        // Segments 5 to 9 SACKed: pipe 500.
        let s = sb.sack(&[(seq(1500), seq(2000))], seq(1000), &mut rack, ms(20));
        assert_eq!((s.bytes, s.dsack), (500, false));
        assert_eq!(sb.in_flight(1000), 500);
        // RACK: everything sent before segment 9 and older than RTT + window is lost. With
        // five SACKed and no reordering the window is zero: 0 to 4 are lost.
        let reo = rack.window(false, sb.sacked_segments(), None);
        assert_eq!(reo, Duration::ZERO);
        let (lost, wait) = sb.detect_loss(&rack, reo, ms(20));
        assert_eq!((lost, wait), (500, None));
        assert_eq!(sb.in_flight(1000), 0);
        // NextSeg: the first lost one; resending it puts it back in flight.
        assert_eq!(sb.next_lost(), Some(0));
        sb.retransmitted(0, 100, ms(21));
        assert_eq!(sb.in_flight(1000), 100);
        assert_eq!(sb.next_lost(), Some(1));
    }

    #[test]
    fn rack_finds_a_lost_retransmission_by_time() {
        let (mut sb, mut rack) = board();
        sb.sack(&[(seq(1100), seq(2000))], seq(1000), &mut rack, ms(20));
        let reo = rack.window(false, sb.sacked_segments(), None);
        sb.detect_loss(&rack, reo, ms(20));
        assert_eq!(sb.next_lost(), Some(0));
        sb.retransmitted(0, 100, ms(20));
        // New data sent after the retransmission is SACKed 20 ms later: the retransmission
        // (sent before it, RTT 20 ms) is lost too once its RTT has passed.
        sb.push(seq(2000), seq(2100), ms(25), false);
        sb.sack(&[(seq(1100), seq(2100))], seq(1000), &mut rack, ms(45));
        let reo = rack.window(true, sb.sacked_segments(), None);
        let (lost, wait) = sb.detect_loss(&rack, reo, ms(45));
        assert_eq!((lost, wait), (100, None), "sent at 20, RACK.rtt 20: due at 40");
        assert_eq!(sb.next_lost(), Some(0));
    }

    #[test]
    fn rack_waits_a_reordering_window_before_few_sacks() {
        let (mut sb, mut rack) = board();
        rack.on_rtt_sample(Duration::from_millis(40), ms(0));
        // One segment SACKed, no reordering seen: window min_rtt / 4 = 10 ms.
        sb.sack(&[(seq(1900), seq(2000))], seq(1000), &mut rack, ms(50));
        let reo = rack.window(false, sb.sacked_segments(), Some(Duration::from_millis(40)));
        assert_eq!(reo, Duration::from_millis(10));
        // RACK.rtt = 50 - 9 = 41 ms. Segment 0 (sent at 0) is due at 51, segment 8 at 59.
        let (lost, wait) = sb.detect_loss(&rack, reo, ms(50));
        assert_eq!((lost, wait), (0, Some(ms(59))));
        let (lost, _) = sb.detect_loss(&rack, reo, ms(55));
        assert_eq!(lost, 500, "segments 0 to 4 are due by 55");
    }

    #[test]
    fn cumulative_acks_give_karn_safe_samples_and_partial_acks_trim() {
        let (mut sb, mut rack) = board();
        sb.mark_first_lost();
        assert_eq!(sb.next_lost(), Some(0));
        sb.retransmitted(0, 100, ms(30));
        let a = sb.ack(seq(1300), &mut rack, ms(40));
        assert!(a.retransmitted);
        assert_eq!((a.newly_delivered, a.oldest, a.newest), (300, Some(ms(1)), Some(ms(2))));
        let a = sb.ack(seq(1350), &mut rack, ms(41));
        assert_eq!((a.newly_delivered, a.retransmitted), (50, false));
        assert_eq!(sb.front().map(|s| s.start), Some(seq(1350)));
        assert_eq!(sb.in_flight(650), 650);
    }

    #[test]
    fn a_retransmission_cut_short_splits_the_record() {
        let mut sb = Scoreboard::default();
        let mut rack = Rack::new(seq(0));
        sb.push(seq(0), seq(1001), ms(0), true);
        sb.mark_first_lost();
        let i = sb.next_lost().expect("lost");
        sb.retransmitted(i, 600, ms(5));
        assert_eq!(sb.get(0).map(|s| (s.start, s.end, s.fin())), Some((seq(0), seq(600), false)));
        assert_eq!(sb.get(1).map(|s| (s.start, s.end, s.fin())), Some((seq(600), seq(1001), true)));
        assert_eq!(sb.in_flight(1001), 600, "the tail is still lost and unsent");
        assert_eq!(sb.next_lost(), Some(1));
        sb.ack(seq(1001), &mut rack, ms(10));
        assert!(sb.is_empty());
        assert_eq!(sb.in_flight(0), 0);
    }

    #[test]
    fn dsack_and_reneging_are_recognised() {
        let (mut sb, mut rack) = board();
        sb.ack(seq(1200), &mut rack, ms(20));
        // A block below the cumulative ACK is a D-SACK.
        let s = sb.sack(
            &[(seq(1100), seq(1200)), (seq(1300), seq(1400))],
            seq(1200),
            &mut rack,
            ms(21),
        );
        assert_eq!((s.bytes, s.dsack), (100, true));
        assert!(!sb.reneged());
        sb.sack(&[(seq(1200), seq(1300))], seq(1200), &mut rack, ms(22));
        assert!(sb.reneged(), "the ACK stops at data SACKed before");
        sb.clear_sacks();
        assert_eq!((sb.sacked_bytes(), sb.in_flight(800)), (0, 800));
    }

    #[test]
    fn prr_sends_in_proportion_then_up_to_ssthresh() {
        // RFC 6937 section 6's example: 20 segments in flight, ssthresh 10, one lost.
        let mss = 100;
        let mut prr = Prr::start(20 * mss);
        // Each ACK delivers one segment: while pipe > ssthresh, one goes out per two ACKs.
        let mut sent = Vec::new();
        let mut pipe = 19 * mss;
        for _ in 0..8 {
            let cwnd = prr.window(mss, pipe, 10 * mss, mss, false);
            // Whole segments only.
            let n = (cwnd.saturating_sub(pipe) / mss) * mss;
            prr.on_sent(n);
            sent.push(n / mss);
            pipe = pipe - mss + n;
        }
        assert_eq!(sent, [1, 0, 1, 0, 1, 0, 1, 0]);
    }
}
