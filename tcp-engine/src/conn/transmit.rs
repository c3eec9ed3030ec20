//! Building outgoing segments: what to send next, the header fields every segment carries
//! (ACK, window, timestamps, SACK), and writing it into the caller's buffer.
//!
//! Deciding and writing are two steps: the next segment is chosen as an [`Outgoing`] (a
//! header and how many bytes of the send buffer follow it, cut to fit the caller's buffer),
//! then written with its payload copied straight from the send buffer. Nothing is allocated.

use super::{ConnFlags, Connection};
use crate::seq::SeqNumber;
use crate::state::State;
use crate::time::Instant;
use crate::wire::EmitSegment as _;
use crate::wire::{Flags, HEADER_LEN, MAX_OPTIONS_LEN, SackRanges, TcpRepr, TcpTimestamp};

use super::ack::RtxTimer;
use super::timers::Timer;

/// The smallest buffer [`Connection::poll_transmit`] (and the table's) writes into: a header
/// with the most options. With less, nothing is sent. A full-sized segment needs the MSS
/// plus this.
pub const MIN_TRANSMIT_BUFFER: usize = HEADER_LEN + MAX_OPTIONS_LEN;

/// The next segment: its header, and the payload that follows it (that many bytes of the
/// send buffer from `repr.seq_number` on).
struct Outgoing {
    repr: TcpRepr,
    payload_len: usize,
}

impl Outgoing {
    fn bare(repr: TcpRepr) -> Outgoing {
        Outgoing { repr, payload_len: 0 }
    }
}

impl Connection {
    /// Writes the next segment to send into the front of `buf` (header, options, payload
    /// and the checksum over the pseudo-header) and returns its length, or `None` when
    /// there is nothing (more) to send now. Call repeatedly until `None` after every input.
    ///
    /// Never writes more than `buf.len()` bytes: the payload is cut to fit (the rest goes in
    /// the next segment). A `buf` shorter than [`MIN_TRANSMIT_BUFFER`] gets nothing.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        // Nothing pending: no header (with its SACK blocks) built for nothing.
        if buf.len() < MIN_TRANSMIT_BUFFER || !self.has_output() {
            return None;
        }
        let out = self.next_segment(now, buf.len())?;
        let pseudo = self.tuple.outgoing_pseudo_header().ok()?;
        let seq = out.repr.seq_number;
        let send = &self.send;
        let len = out
            .repr
            .emit_with(buf, out.payload_len, &pseudo, |payload| {
                send.copy_to(seq, payload);
            })
            .ok()?;
        self.stats.bytes_copied += out.payload_len as u64;
        Some(len)
    }

    /// Whether [`Connection::poll_transmit`] may have something to send. Never false when it
    /// has; it may be true when the windows hold the data back after all.
    pub(crate) fn has_output(&self) -> bool {
        if self.pending_rst.is_some() {
            return true;
        }
        let any = |bits: u16| self.flags.0 & bits != 0;
        match self.state {
            State::Closed | State::Listen => false,
            State::SynSent | State::SynReceived => {
                self.snd_nxt == self.iss || any(ConnFlags::ACK_NOW)
            }
            State::TimeWait => {
                any(ConnFlags::ACK_NOW | ConnFlags::WINDOW_PROBE | ConnFlags::KEEPALIVE_PROBE)
                    || self.sb.lost_unsent() > 0
            }
            _ => {
                any(ConnFlags::ACK_NOW
                    | ConnFlags::WINDOW_PROBE
                    | ConnFlags::KEEPALIVE_PROBE
                    | ConnFlags::LOSS_PROBE)
                    || self.sb.lost_unsent() > 0
                    || self.send.end() > self.snd_nxt
                    || self.fin_seq.is_some_and(|f| self.snd_nxt <= f)
            }
        }
    }

    /// Chooses the next segment for a buffer of `room` bytes and does the bookkeeping of
    /// sending it.
    fn next_segment(&mut self, now: Instant, room: usize) -> Option<Outgoing> {
        if let Some((seq, ack)) = self.pending_rst.take() {
            self.stats.segments_out += 1;
            let repr = TcpRepr {
                ack_number: ack,
                flags: Flags::RST,
                ..TcpRepr::new(self.tuple.local.port(), self.tuple.remote.port(), seq)
            };
            return Some(Outgoing::bare(repr));
        }
        match self.state {
            State::Closed | State::Listen => return None,
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss {
                    return Some(self.emit_syn(now));
                }
                return self.flags.has(ConnFlags::ACK_NOW).then(|| {
                    let template = self.header(now);
                    self.emit_ack(template, self.snd_nxt)
                });
            }
            _ => {}
        }
        // Every segment from here on carries the same header fields; only the payload
        // length depends on the room, so it is known before anything is decided.
        let mut template = self.header(now);
        template.fit_options();
        // RFC 9293 section 3.7.1: the effective send MSS is the peer's MSS less the options
        // this segment actually carries (timestamps, SACK blocks), so a full segment fits
        // the path MTU the peer's MSS stands for (Linux `tcp_current_mss`).
        let options = template.header_len() - HEADER_LEN;
        let max_payload = room
            .saturating_sub(template.header_len())
            .min(usize::from(self.send_mss).saturating_sub(options));
        if self.flags.take(ConnFlags::LOSS_PROBE)
            && let Some(seg) = self.emit_loss_probe(now, &template, max_payload)
        {
            return Some(seg);
        }
        if let Some(seg) = self.emit_retransmission(now, &template, max_payload) {
            return Some(seg);
        }
        if let Some(seg) = self.emit_data(now, &template, max_payload, false) {
            return Some(seg);
        }
        if self.flags.take(ConnFlags::WINDOW_PROBE) || self.flags.take(ConnFlags::KEEPALIVE_PROBE) {
            // A segment one below SND.UNA: the peer finds it unacceptable and answers with
            // an ACK carrying its window (RFC 9293 section 3.8.6.1 and 3.8.4, as Linux).
            return Some(self.emit_ack(template, self.snd_una - 1));
        }
        if self.flags.has(ConnFlags::ACK_NOW) {
            // SND.MAX, not SND.NXT: after a timeout rewound SND.NXT, an older sequence
            // number could fall left of the peer's window (say, below a FIN it already
            // consumed) and the ACK would be refused.
            return Some(self.emit_ack(template, self.snd_max));
        }
        None
    }

    fn emit_ack(&mut self, template: TcpRepr, seq: SeqNumber) -> Outgoing {
        self.finish_segment(TcpRepr { seq_number: seq, ..template }, 0)
    }

    /// SYN (active open) or SYN-ACK (passive or simultaneous open), with our options.
    fn emit_syn(&mut self, now: Instant) -> Outgoing {
        let active = self.state == State::SynSent;
        // RFC 7323 section 2.2: a SYN's window is never scaled.
        let window = self.recv.free().min(usize::from(u16::MAX));
        let mut repr = TcpRepr {
            flags: Flags::SYN,
            ack_number: (!active).then_some(self.rcv_nxt),
            window_len: u16::try_from(window).unwrap_or(u16::MAX),
            max_seg_size: Some(self.local_mss()),
            window_scale: if active || self.flags.has(ConnFlags::WSCALE) {
                Some(self.rcv_shift)
            } else {
                None
            },
            sack_permitted: if active { self.config.sack } else { self.flags.has(ConnFlags::SACK) },
            timestamp: self.ts.map(|ts| TcpTimestamp {
                tsval: ts.tsval(now),
                tsecr: if active { 0 } else { ts.recent },
            }),
            ..TcpRepr::new(self.tuple.local.port(), self.tuple.remote.port(), self.iss)
        };
        if !active {
            self.rcv_adv = self.rcv_adv.max(self.rcv_nxt + window);
            repr.ack_number = Some(self.rcv_nxt);
        }
        if self.snd_max == self.iss && self.rtt_probe.is_none() {
            self.rtt_probe = Some((self.iss + 1, now));
        }
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if !self.timers.is_set(Timer::Retransmit) {
            self.arm_rtx_timer(RtxTimer::Rto, now + self.rto());
        }
        self.flags.clear(ConnFlags::ACK_NOW);
        self.stats.segments_out += 1;
        Outgoing::bare(repr)
    }

    /// The next lost segment again (RFC 6675 `NextSeg()` rule 1), when the windows allow:
    /// the congestion window against the bytes in flight (`pipe`), and the peer's window,
    /// except for the first unacknowledged segment, which goes anyway (as Linux's
    /// `tcp_retransmit_skb`: into a zero window it is the probe).
    fn emit_retransmission(
        &mut self,
        now: Instant,
        template: &TcpRepr,
        max_payload: usize,
    ) -> Option<Outgoing> {
        let i = self.sb.next_lost()?;
        let rec = *self.sb.get(i)?;
        let rwnd_end = self.snd_una + self.snd_wnd as usize;
        if rec.start >= rwnd_end && rec.start != self.snd_una {
            return None;
        }
        // Up to one segment of what this one carried (less if the options grew since).
        let len = rec.data_len().min(max_payload);
        if len == 0 && (rec.data_len() > 0 || max_payload == 0 && !rec.fin()) {
            // No room for data in this buffer: keep it for the next.
            return None;
        }
        let in_flight = self.in_flight();
        if in_flight > 0 && in_flight + len > self.cc.window() as usize {
            return None;
        }
        let fin = rec.fin() && len == rec.data_len();
        self.sb.retransmitted(i, len + usize::from(fin), now);
        self.prr.on_sent(len + usize::from(fin));
        self.stats.retransmits += 1;
        Some(self.data_segment(now, template, rec.start, len, fin))
    }

    /// A tail loss probe (RFC 8985 section 7.3): one new segment if the peer's window allows,
    /// whatever the congestion window says; else the last segment sent, again.
    fn emit_loss_probe(
        &mut self,
        now: Instant,
        template: &TcpRepr,
        max_payload: usize,
    ) -> Option<Outgoing> {
        if self.snd_una == self.snd_max || max_payload == 0 {
            return None;
        }
        let probe = if let Some(seg) = self.emit_data(now, template, max_payload, true) {
            self.tlp = Some((self.snd_max, false));
            seg
        } else {
            let i = self.sb.last_index()?;
            let rec = *self.sb.get(i)?;
            if rec.sacked() {
                return None;
            }
            let len = rec.data_len().min(max_payload);
            let fin = rec.fin() && len == rec.data_len();
            self.sb.retransmitted(i, len + usize::from(fin), now);
            self.stats.retransmits += 1;
            self.tlp = Some((self.snd_max, true));
            self.data_segment(now, template, rec.start, len, fin)
        };
        self.stats.tail_loss_probes += 1;
        Some(probe)
    }

    /// New data, and the FIN. `probe`: a tail loss probe, which the congestion window and
    /// Nagle do not hold back.
    fn emit_data(
        &mut self,
        now: Instant,
        template: &TcpRepr,
        max_payload: usize,
        probe: bool,
    ) -> Option<Outgoing> {
        if !self.state.is_synchronized() || self.state == State::TimeWait {
            return None;
        }
        let seq = self.snd_nxt;
        let avail = self.send.end().saturating_sub(seq);
        let fin_pending = self.fin_seq.is_some_and(|f| seq <= f);
        if avail == 0 && !fin_pending {
            return None;
        }
        if avail > 0 && max_payload == 0 {
            // No room for data in this buffer: not a window matter, nothing to arm.
            return None;
        }
        // A full-sized segment is an MSS less this segment's options, or what the caller's
        // buffer holds if less.
        let mss = max_payload;
        let rwnd_room = (self.snd_una + self.snd_wnd as usize).saturating_sub(seq);
        // RFC 6675 section 5: new data while cwnd - pipe allows it.
        let cwnd_room =
            if probe { mss } else { (self.cc.window() as usize).saturating_sub(self.in_flight()) };
        let len = avail.min(rwnd_room).min(cwnd_room).min(mss);
        if avail > 0 && len == 0 {
            if rwnd_room == 0 && !probe {
                self.arm_persist(now);
            }
            return None;
        }
        if avail > 0 && len < mss && !probe && !self.flags.has(ConnFlags::FORCE_SEND) {
            // Sender-side silly window avoidance and Nagle (RFC 9293 sections 3.8.6.2.1
            // and 3.7.4): a small segment only if it empties the queue and Nagle lets it
            // go; or if it is half the largest window seen. Nagle in Minshall's variant,
            // as Linux (`tcp_nagle_check`, `tcp_minshall_check`): it holds a small segment
            // only while an earlier small one is unacknowledged. Off with `nodelay`, and
            // for the FIN and urgent data, which are pushed.
            let empties_queue = len == avail;
            let nothing_in_flight = self.snd_nxt == self.snd_una;
            let small_in_flight = self.snd_sml > self.snd_una && self.snd_sml <= self.snd_nxt;
            let pushed = empties_queue
                && (self.flags.has(ConnFlags::NODELAY)
                    || !small_in_flight
                    || self.fin_seq.is_some()
                    || self.snd_up.is_some_and(|up| up > seq));
            let half_window = self.max_snd_wnd > 0 && len >= self.max_snd_wnd as usize / 2;
            if !(pushed || half_window) {
                if nothing_in_flight {
                    self.arm_persist(now);
                }
                return None;
            }
        }
        let fin = self.fin_seq.is_some_and(|f| seq + len == f);
        if len == 0 && !fin {
            return None;
        }
        self.flags.clear(ConnFlags::FORCE_SEND);
        if self.snd_una == self.snd_max {
            // RFC 5681 section 4.1: the first data after more than an RTO of silence
            // restarts the congestion window (Linux `tcp_cwnd_restart`).
            let idle = now.saturating_duration_since(self.last_sent);
            if idle > self.rto() {
                self.cc.restart_after_idle(idle, self.rto(), u32::from(self.send_mss));
            }
        }
        if len < mss {
            // Minshall: remember where the last short segment ends.
            self.snd_sml = seq + len;
        }
        let end = seq + len + usize::from(fin);
        self.sb.push(seq, end, now, fin);
        self.prr.on_sent(len + usize::from(fin));
        self.snd_nxt = end;
        self.snd_max = self.snd_max.max(end);
        if !self.timers.is_set(Timer::Retransmit) {
            self.arm_rtx_timer(RtxTimer::Rto, now + self.rto());
        }
        if !probe && matches!(self.rtx_timer, RtxTimer::Rto | RtxTimer::Probe) {
            // RFC 8985 section 7.2: the probe timer runs from the last transmission.
            self.schedule_loss_probe(now);
        }
        Some(self.data_segment(now, template, seq, len, fin))
    }

    fn data_segment(
        &mut self,
        now: Instant,
        template: &TcpRepr,
        seq: SeqNumber,
        len: usize,
        fin: bool,
    ) -> Outgoing {
        let mut flags = if fin { Flags::FIN } else { Flags::NONE };
        if len > 0 && seq + len == self.send.end() {
            flags = flags | Flags::PSH;
        }
        // RFC 9293 section 3.8.5: segments before the urgent pointer carry it, as an offset
        // from their sequence number (at most 0xFFFF: RFC 6093 section 4, as Linux).
        let mut urgent_at = 0;
        if let Some(up) = self.snd_up
            && up > seq
        {
            flags = flags | Flags::URG;
            urgent_at = u16::try_from(up - seq).unwrap_or(u16::MAX);
        }
        self.stats.bytes_out += len as u64;
        self.last_activity = now;
        if len > 0 {
            self.last_sent = now;
        }
        self.finish_segment(TcpRepr { seq_number: seq, flags, urgent_at, ..*template }, len)
    }

    /// The header fields every segment after the handshake carries, with sequence number
    /// and flags still to fill in. Changes nothing: the window it offers is recorded only
    /// when a segment carrying it is sent.
    fn header(&self, now: Instant) -> TcpRepr {
        let sack_ranges = if self.flags.has(ConnFlags::SACK) && self.recv.has_out_of_order() {
            self.recv.sack_blocks(if self.ts.is_some() { 3 } else { SackRanges::CAPACITY })
        } else {
            SackRanges::new()
        };
        TcpRepr {
            ack_number: Some(self.rcv_nxt),
            window_len: self.window_field(),
            sack_ranges,
            timestamp: self.ts.map(|ts| TcpTimestamp { tsval: ts.tsval(now), tsecr: ts.recent }),
            ..TcpRepr::new(self.tuple.local.port(), self.tuple.remote.port(), self.snd_max)
        }
    }

    /// Bookkeeping for any segment carrying our current ACK and window.
    fn finish_segment(&mut self, repr: TcpRepr, payload_len: usize) -> Outgoing {
        // The right edge we offered never moves left (RFC 7323 section 2.4).
        let edge = self.rcv_nxt + (usize::from(repr.window_len) << self.rcv_shift);
        self.rcv_adv = self.rcv_adv.max(edge);
        self.last_ack_sent = self.rcv_nxt;
        self.flags.clear(ConnFlags::ACK_NOW);
        self.timers.stop(Timer::DelayedAck);
        self.unacked_segments = 0;
        self.stats.segments_out += 1;
        Outgoing { repr, payload_len }
    }

    /// The window field: the free buffer space, with receiver-side silly window avoidance
    /// (RFC 9293 section 3.8.6.2.2), never moving the right edge left (RFC 7323 section
    /// 2.4), scaled by our shift.
    ///
    /// Keeping the edge where it was can take rounding the offer up to the scale's unit,
    /// and since the peer fills what was offered in pieces that are not whole units, each
    /// such rounding could push the edge a little further than the buffer reaches. So the
    /// offer is rounded up only as far as the buffer, with its one unit of slack, takes it;
    /// beyond that the edge moves left by less than one unit (the truncation of RFC 7323
    /// section 2.3), rather than offering room that is not there.
    fn window_field(&self) -> u16 {
        let shift = self.rcv_shift;
        let free = self.recv.free();
        let offered = self.rcv_adv.saturating_sub(self.rcv_nxt);
        let threshold = (self.recv.capacity() / 2).min(usize::from(self.local_mss()));
        let window = if free >= offered + threshold { free } else { offered };
        let window = window.min(usize::from(u16::MAX) << shift);
        let mut field = window >> shift;
        if field << shift < offered {
            let up = offered.div_ceil(1 << shift);
            if up << shift <= self.recv.room() {
                field = up;
            }
        }
        u16::try_from(field).unwrap_or(u16::MAX)
    }
}
