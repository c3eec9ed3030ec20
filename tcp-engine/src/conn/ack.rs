//! The sender's side of an ACK, and of the timers that stand in for ACKs that do not come.
//!
//! On an acceptable ACK: acknowledged segments leave the scoreboard and the send buffer
//! (with an RTT sample when Karn allows), SACK blocks mark the scoreboard, RACK looks for
//! losses, the recovery state machine moves (open, fast recovery, recovery after a
//! timeout), PRR (with SACK) or NewReno (without) sets the window during fast recovery,
//! slow start or congestion avoidance grow it otherwise, the tail loss probe learns whether
//! it repaired a loss, and the retransmission timer is rearmed: RTO, RACK's reordering
//! timer or the loss probe, one slot as Linux's `icsk_pending`.
//!
//! The algorithms are in `recovery.rs` (scoreboard, RACK, PRR) and `congestion.rs`; this
//! file is their order of play, which follows Linux's `tcp_ack` and `tcp_fastretrans_alert`
//! (net/ipv4/tcp_input.c) and its timers (net/ipv4/tcp_timer.c).

use super::recovery::{DUP_THRESH, Prr};
use super::timers::Timer;
use super::{CloseReason, ConnFlags, Connection, pending, to_u32};
use crate::seq::SeqNumber;
use crate::state::State;
use crate::time::{Duration, Instant};
use crate::wire::TcpRepr;

/// Where loss recovery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Recovery {
    /// Nothing is being repaired.
    Open,
    /// Fast recovery (RFC 6675 with SACK, RFC 6582 without) until `recover` (SND.MAX when
    /// it began, RFC 6675's RecoveryPoint) is acknowledged.
    Fast { recover: SeqNumber },
    /// After a retransmission timeout, until `recover` is acknowledged (Linux's `Loss`).
    Timeout { recover: SeqNumber },
}

/// What the retransmission timer slot is armed for. One slot, as in Linux: at most one of
/// these matters at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RtxTimer {
    /// The retransmission timeout (RFC 6298), also for SYN and SYN-ACK.
    Rto,
    /// RACK's reordering timer (RFC 8985 section 6.2): segments become lost when it fires.
    Reorder,
    /// The tail loss probe (RFC 8985 section 7).
    Probe,
}

/// Added to RACK's and the probe's deadlines (Linux `TCP_TIMEOUT_MIN`, two jiffies).
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// Least wait before acting on a peer that reneged (Linux `tcp_check_sack_reneging`).
const RENEGE_MIN_WAIT: Duration = Duration::from_millis(10);

impl Connection {
    /// Bytes in flight: RFC 6675's `pipe`.
    pub(super) fn in_flight(&self) -> usize {
        self.sb.in_flight(self.snd_max.saturating_sub(self.snd_una))
    }

    /// Payload bytes per full segment: the MSS minus the timestamp option.
    pub(super) fn payload_mss(&self) -> usize {
        usize::from(self.send_mss) - if self.ts.is_some() { 12 } else { 0 }
    }

    fn sack(&self) -> bool {
        self.flags.has(ConnFlags::SACK)
    }

    /// The RTT in milliseconds that the peer's echoed timestamp gives (RFC 7323 section 4.1).
    pub(super) fn timestamp_rtt(&self, now: Instant, repr: &TcpRepr) -> Option<Duration> {
        let (ts, theirs) = (self.ts?, repr.timestamp?);
        let ms = ts.tsval(now).wrapping_sub(theirs.tsecr);
        (ms < 60_000).then(|| Duration::from_millis(u64::from(ms)))
    }

    /// The fifth step for an acceptable ACK (RFC 9293 section 3.10.7.4), the sender's part.
    pub(super) fn process_ack(&mut self, now: Instant, repr: &TcpRepr, ack: SeqNumber, pure: bool) {
        let prior_in_flight = self.in_flight();
        let prior_una = self.snd_una;
        // Anything from the peer proves it alive: answered zero-window probes do not count
        // towards giving up (RFC 1122 section 4.2.2.17; Linux resets icsk_probes_out).
        self.probes_out = 0;
        self.last_heard = now;
        let window = u32::from(repr.window_len) << self.snd_shift;
        let window_changed = window != self.snd_wnd;

        let mut acked = 0;
        let mut delivered = 0;
        if ack > self.snd_una {
            acked = ack - self.snd_una;
            let a = self.sb.ack(ack, &mut self.rack, now);
            delivered += a.newly_delivered;
            self.sample_rtt(now, repr, ack, a.retransmitted, a.oldest, a.newest);
            self.snd_una = ack;
            if self.snd_nxt < ack {
                self.snd_nxt = ack;
            }
            let freed = self.send.acknowledge(ack);
            if self.snd_up.is_some_and(|up| ack >= up) {
                self.snd_up = None;
            }
            if freed > 0 {
                self.last_activity = now;
                if self.flags.take(ConnFlags::WANT_WRITABLE) {
                    self.events |= pending::WRITABLE;
                }
                if self.send.is_empty() {
                    self.buffer_emptied();
                }
            }
            self.retries = 0;
            self.rtt.reset_backoff();
            self.dupacks = 0;
        }
        let mut dsack = false;
        let mut newly_sacked = 0;
        if self.sack() {
            let s = self.sb.sack(repr.sack_ranges.as_slice(), self.snd_una, &mut self.rack, now);
            newly_sacked = s.bytes;
            delivered += s.bytes;
            dsack = s.dsack;
        }
        // RFC 5681 section 2: a duplicate ACK (counted without SACK, for NewReno).
        let dupack = ack == prior_una && pure && !window_changed && self.snd_max > self.snd_una;
        if dupack && !self.sack() {
            self.dupacks = self.dupacks.saturating_add(1);
        }

        // RACK (RFC 8985 section 6.2) when the latest delivered segment moved.
        let mut newly_lost = 0;
        let mut reorder_at = None;
        if self.sack() {
            let reo = self.rack.reo_wnd(
                dsack,
                self.snd_una,
                self.snd_max,
                self.recovery != Recovery::Open,
                self.sb.sacked_segments(),
                self.rtt.srtt(),
            );
            if self.rack.take_advanced() {
                (newly_lost, reorder_at) = self.sb.detect_loss(&self.rack, reo, now);
            }
        }
        self.update_recovery(now, ack, acked, delivered, prior_in_flight, newly_lost, dupack);
        self.tlp_on_ack(ack, acked > 0 || newly_sacked > 0, dsack);

        // The retransmission timer (RFC 6298 sections 5.2 and 5.3, RFC 8985 section 7.2).
        if acked > 0 {
            self.set_rtx_timer(now);
        }
        if acked > 0 && self.sack() && self.sb.reneged() {
            // RFC 2018 section 8: the peer dropped data it had SACKed. As Linux
            // (tcp_check_sack_reneging), give a late SACK a moment, then the timeout path
            // forgets the SACK marks and resends.
            let half = |s: Duration| Duration::from_micros(s.total_micros() / 2);
            let wait = self.rtt.srtt().map_or(RENEGE_MIN_WAIT, |s| half(s).max(RENEGE_MIN_WAIT));
            self.arm_rtx_timer(RtxTimer::Rto, now + wait);
            self.stats.renegings += 1;
        } else if let Some(at) = reorder_at {
            self.arm_rtx_timer(RtxTimer::Reorder, at + TIMER_SLACK);
        }

        // Window update (RFC 9293 section 3.10.7.4, fifth step, ESTABLISHED).
        if self.snd_wl1 < repr.seq_number
            || (self.snd_wl1 == repr.seq_number && self.snd_wl2 <= ack)
        {
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = repr.seq_number;
            self.snd_wl2 = ack;
            if window > 0 {
                // The window opened: probing ends, and so does its backoff (Linux
                // tcp_ack_probe), which must not carry into the next RTO.
                self.timers.stop(Timer::Persist);
                self.persist_backoff = 0;
            }
        }
    }

    /// RTT samples from an ACK (RFC 6298): from the acknowledged segments' own send times
    /// unless one of them was retransmitted (Karn, section 3; Linux's
    /// `FLAG_RETRANS_DATA_ACKED`), else from the echoed timestamp, which tells which
    /// transmission it answers (RFC 7323 section 4). The oldest segment times the RTO, the
    /// newest feeds RACK's minimum and HyStart++ (Linux's `seq_rtt` and `ca_rtt`).
    fn sample_rtt(
        &mut self,
        now: Instant,
        repr: &TcpRepr,
        ack: SeqNumber,
        retransmitted: bool,
        oldest: Option<Instant>,
        newest: Option<Instant>,
    ) {
        let (seq_rtt, ca_rtt) = match (retransmitted, oldest, newest) {
            (false, Some(oldest), Some(newest)) => (now - oldest, now - newest),
            _ => match self.timestamp_rtt(now, repr) {
                Some(rtt) => (rtt, rtt),
                None => return,
            },
        };
        self.rtt.on_sample(seq_rtt, self.config.rto_min, self.config.rto_max);
        self.rack.on_rtt_sample(ca_rtt, now);
        self.cc.on_rtt_sample(ack, self.snd_max, ca_rtt);
    }

    /// The recovery state machine and the window (Linux `tcp_fastretrans_alert`,
    /// `tcp_cong_control`).
    #[expect(clippy::too_many_arguments, reason = "what one ACK did, in the ACK's order")]
    fn update_recovery(
        &mut self,
        now: Instant,
        ack: SeqNumber,
        acked: usize,
        delivered: usize,
        prior_in_flight: usize,
        newly_lost: usize,
        dupack: bool,
    ) {
        let mss = u32::from(self.send_mss);
        let sack = self.sack();
        // Recovery ends once what was outstanding when it began is acknowledged.
        match self.recovery {
            Recovery::Fast { recover } if ack >= recover => {
                self.recovery = Recovery::Open;
                if sack {
                    self.cc.on_reduction_end();
                } else {
                    self.cc.on_recovery_end(to_u32(self.in_flight()), mss);
                }
                self.rack.on_recovery_end();
            }
            Recovery::Timeout { recover } if ack >= recover => {
                self.recovery = Recovery::Open;
                self.rack.on_recovery_end();
            }
            _ => {}
        }
        match self.recovery {
            Recovery::Open => {
                let lost = if sack {
                    self.sb.lost_unsent() > 0
                } else {
                    dupack && u32::from(self.dupacks) >= DUP_THRESH
                };
                if lost {
                    self.enter_fast_recovery(prior_in_flight);
                }
            }
            Recovery::Fast { .. } if !sack => {
                if acked > 0 {
                    // RFC 6582 section 3.2 step 5: a partial ACK deflates the window and the
                    // next unacknowledged segment is resent at once.
                    self.cc.on_partial_ack(to_u32(acked), mss);
                    self.sb.mark_first_lost();
                } else if dupack {
                    self.cc.on_dup_ack_in_recovery(mss);
                }
            }
            _ => {}
        }
        if let Recovery::Fast { .. } = self.recovery
            && sack
            && delivered > 0
        {
            // RFC 6937: what this ACK lets out is proportional to what it delivered.
            let safe_ack = acked > 0 && newly_lost == 0;
            let cwnd = self.prr.window(
                delivered,
                self.in_flight(),
                self.cc.ssthresh() as usize,
                self.payload_mss(),
                safe_ack,
            );
            self.cc.set_window(to_u32(cwnd), mss);
        } else if acked > 0 && !matches!(self.recovery, Recovery::Fast { .. }) {
            // Growth, only while the application keeps the window full (RFC 7661).
            if prior_in_flight + self.payload_mss() >= self.cc.window() as usize {
                self.cc.on_ack(now, to_u32(acked), mss, self.rtt.srtt());
            }
        }
    }

    /// A loss was found while all was well: fast recovery begins (RFC 6675 section 5 with
    /// SACK, RFC 5681 section 3.2 and RFC 6582 without).
    fn enter_fast_recovery(&mut self, prior_in_flight: usize) {
        let mss = u32::from(self.send_mss);
        self.stats.fast_retransmits += 1;
        self.recovery = Recovery::Fast { recover: self.snd_max };
        if self.sack() {
            self.cc.on_congestion_event(to_u32(prior_in_flight), mss);
            self.prr = Prr::start(prior_in_flight);
        } else {
            let outstanding = self.snd_max.saturating_sub(self.snd_una);
            self.sb.mark_first_lost();
            self.cc.on_fast_retransmit(to_u32(outstanding), mss, true);
        }
    }

    /// Whether the tail loss probe repaired a loss (RFC 8985 section 7.4.2, Linux
    /// `tcp_process_tlp_ack`): the ACK moves beyond the probe without a D-SACK for it.
    fn tlp_on_ack(&mut self, ack: SeqNumber, progress: bool, dsack: bool) {
        let Some((end, retransmitted)) = self.tlp else { return };
        if ack < end {
            return;
        }
        if !retransmitted || dsack {
            // New data as the probe, or both the original and the probe arrived.
            self.tlp = None;
        } else if ack > end {
            // The probe repaired a loss: the congestion response of one (RFC 8985 7.4.2).
            self.tlp = None;
            self.cc.on_congestion_event(to_u32(self.in_flight()), u32::from(self.send_mss));
            self.cc.on_reduction_end();
            self.stats.tail_loss_probe_recoveries += 1;
        } else if !progress {
            // A pure duplicate ACK at the probe's end: original and probe both arrived.
            self.tlp = None;
        }
    }

    /// Arms the retransmission timer slot for `kind` at `at`.
    pub(super) fn arm_rtx_timer(&mut self, kind: RtxTimer, at: Instant) {
        self.rtx_timer = kind;
        self.timers.set(Timer::Retransmit, at);
    }

    /// When the RTO of the oldest outstanding segment expires (Linux `tcp_rto_delta_us`).
    fn rto_deadline(&self, now: Instant) -> Instant {
        self.sb.front().map_or(now, |s| s.xmit.max(now - self.rto())) + self.rto()
    }

    /// After an ACK for new data: stop the timer if nothing is outstanding (RFC 6298 section
    /// 5.2), else the loss probe or a fresh RTO (section 5.3).
    fn set_rtx_timer(&mut self, now: Instant) {
        if self.snd_una == self.snd_max {
            self.timers.stop(Timer::Retransmit);
        } else if !self.schedule_loss_probe(now) {
            self.arm_rtx_timer(RtxTimer::Rto, now + self.rto());
        }
    }

    /// RFC 8985 section 7.2 (Linux `tcp_schedule_loss_probe`): with SACK, outside recovery,
    /// one probe per episode, armed two RTTs after the last transmission (plus a delayed
    /// ACK's worst case when one segment is in flight), never later than the RTO. In any
    /// state with data in flight: the tail of a response often goes out after the
    /// application's close, in LAST-ACK or FIN-WAIT-1. Returns whether it was armed.
    pub(super) fn schedule_loss_probe(&mut self, now: Instant) -> bool {
        let eligible = self.sack()
            && self.recovery == Recovery::Open
            && self.tlp.is_none()
            && self.state.is_synchronized()
            && self.state != State::TimeWait
            && self.snd_una != self.snd_max
            && self.rtx_timer != RtxTimer::Reorder;
        if !eligible {
            return false;
        }
        let pto = match self.rtt.srtt() {
            Some(srtt) => {
                let delayed_ack = if self.in_flight() <= self.payload_mss() {
                    self.config.rto_min
                } else {
                    TIMER_SLACK
                };
                srtt * 2 + delayed_ack
            }
            None => Duration::from_secs(1),
        };
        let at = (now + pto).min(self.rto_deadline(now));
        self.arm_rtx_timer(RtxTimer::Probe, at);
        true
    }

    /// The retransmission timer slot fired.
    pub(super) fn on_rtx_timer(&mut self, now: Instant) {
        match self.rtx_timer {
            RtxTimer::Rto => self.on_retransmit_timeout(now),
            RtxTimer::Reorder => self.on_reorder_timeout(now),
            RtxTimer::Probe => self.on_loss_probe_timeout(now),
        }
    }

    /// RACK's reordering timer (Linux `tcp_rack_reo_timeout`): the segments it waited for
    /// are lost now; recovery begins if it had not.
    fn on_reorder_timeout(&mut self, now: Instant) {
        let prior_in_flight = self.in_flight();
        let in_recovery = self.recovery != Recovery::Open;
        let reo = self.rack.window(in_recovery, self.sb.sacked_segments(), self.rtt.srtt());
        let (lost, wait) = self.sb.detect_loss(&self.rack, reo, now);
        if lost > 0 && self.recovery == Recovery::Open {
            self.enter_fast_recovery(prior_in_flight);
            let smss = self.payload_mss();
            let cwnd =
                self.prr.window(smss, self.in_flight(), self.cc.ssthresh() as usize, smss, false);
            self.cc.set_window(to_u32(cwnd), u32::from(self.send_mss));
        }
        if let Some(at) = wait {
            self.arm_rtx_timer(RtxTimer::Reorder, at + TIMER_SLACK);
        } else {
            let at = self.rto_deadline(now);
            self.arm_rtx_timer(RtxTimer::Rto, at);
        }
    }

    /// The tail loss probe timer (RFC 8985 section 7.3): the next `poll_transmit` sends one
    /// new segment if the peer's window allows, else the last segment again; then a full RTO
    /// from now (Linux `tcp_send_loss_probe` restarts it from the probe: with one segment in
    /// flight the probe is due no earlier than the RTO, and an RTO right behind it would
    /// undo what the probe is for).
    fn on_loss_probe_timeout(&mut self, now: Instant) {
        if self.snd_una == self.snd_max {
            return;
        }
        if self.tlp.is_none() {
            self.flags.set(ConnFlags::LOSS_PROBE);
        }
        self.arm_rtx_timer(RtxTimer::Rto, now + self.rto());
    }

    /// RFC 6298 sections 5.4 to 5.7, RFC 5681 section 3.1, RFC 8985 section 6.3, and the
    /// limits on retries.
    pub(super) fn on_retransmit_timeout(&mut self, now: Instant) {
        let syn_phase = matches!(self.state, State::SynSent | State::SynReceived);
        let orphan = self.flags.has(ConnFlags::APP_CLOSED);
        // Linux tcp_retransmit_timer: a peer that shrank its window to zero while data was
        // in flight is probed by the retransmissions and not timed out as long as it
        // answers; an orphan is not spared.
        let zero_window = !syn_phase && !orphan && self.snd_wnd == 0;
        if zero_window {
            if now.saturating_duration_since(self.last_heard) > self.config.rto_max {
                self.finish(CloseReason::TimedOut);
                return;
            }
        } else {
            // tcp_retries2, tcp_orphan_retries (at once for an orphan whose timeouts reached
            // the maximum, Linux tcp_orphan_retries with `alive` false), tcp_synack_retries.
            let limit = if syn_phase {
                self.config.syn_retries
            } else if orphan {
                if self.rto() >= self.config.rto_max { 0 } else { self.config.orphan_retries }
            } else {
                self.config.data_retries
            };
            if self.retries >= limit {
                // Give up without a RST: the peer is unreachable (as Linux does).
                self.finish(CloseReason::TimedOut);
                return;
            }
        }
        if self.snd_una == self.snd_max && !syn_phase {
            return;
        }
        if !zero_window {
            self.retries += 1;
        }
        self.stats.timeouts += 1;
        self.rtt.back_off();
        self.rtt_probe = None;
        if syn_phase {
            // Send SYN (or SYN-ACK) again.
            self.snd_nxt = self.iss;
            self.arm_rtx_timer(RtxTimer::Rto, now + self.rto());
            return;
        }
        let mss = u32::from(self.send_mss);
        // RFC 5681 section 3.1: ssthresh only on the first timeout of a segment; a segment
        // the timer already resent times out again with ssthresh held (Linux
        // tcp_enter_loss).
        let first = !matches!(self.recovery, Recovery::Timeout { .. }) || self.retries <= 1;
        if first {
            self.cc.on_timeout(to_u32(self.in_flight()), mss);
        } else {
            self.cc.on_repeated_timeout(mss);
        }
        if self.sb.reneged() {
            // RFC 2018 section 8: the peer dropped data it SACKed; forget what it said.
            self.sb.clear_sacks();
        }
        let in_recovery = self.recovery != Recovery::Open;
        let reo = self.rack.window(in_recovery, self.sb.sacked_segments(), self.rtt.srtt());
        self.sb.mark_lost_on_timeout(&self.rack, reo, now);
        self.recovery = Recovery::Timeout { recover: self.snd_max };
        self.tlp = None;
        self.dupacks = 0;
        // One segment may go, beside anything still in flight (Linux: in flight + 1).
        let cwnd = to_u32(self.in_flight()).saturating_add(mss);
        self.cc.set_window(cwnd, mss);
        self.arm_rtx_timer(RtxTimer::Rto, now + self.rto());
    }

    /// The zero-window probe interval: the RTO (without its backoff) doubled per probe, at
    /// most `rto_max` (Linux `tcp_probe0_when`).
    fn persist_interval(&self) -> Duration {
        let factor = 1u32 << self.persist_backoff.min(20);
        (self.rtt.base_rto() * factor).min(self.config.rto_max)
    }

    /// Zero-window probing (RFC 9293 section 3.8.6.1) and the SWS override timer. RFC 1122
    /// section 4.2.2.17 (MUST-67) keeps the connection open as long as the peer answers the
    /// probes; as Linux's `tcp_probe_timer`, it ends after `data_retries` probes in a row
    /// went unanswered, and after `orphan_retries` (or once the probes are `rto_max` apart)
    /// when the application closed it: such an orphan must not hang forever.
    pub(super) fn on_persist_timeout(&mut self, now: Instant) {
        if self.send.end() <= self.snd_max {
            self.persist_backoff = 0;
            return;
        }
        if self.snd_wnd == 0 {
            let orphan = self.flags.has(ConnFlags::APP_CLOSED);
            let limit = if orphan { self.config.orphan_retries } else { self.config.data_retries };
            let spaced_out = self.persist_interval() >= self.config.rto_max;
            if self.probes_out >= limit || (orphan && spaced_out) {
                self.finish(CloseReason::TimedOut);
                return;
            }
            self.probes_out = self.probes_out.saturating_add(1);
            self.flags.set(ConnFlags::WINDOW_PROBE);
        } else {
            self.flags.set(ConnFlags::FORCE_SEND);
        }
        self.persist_backoff = self.persist_backoff.saturating_add(1);
        self.timers.set(Timer::Persist, now + self.persist_interval());
    }

    /// Arms the persist timer when data waits, nothing is in flight, and the window (or
    /// SWS avoidance) holds it back.
    pub(super) fn arm_persist(&mut self, now: Instant) {
        if self.snd_una == self.snd_max && !self.timers.is_set(Timer::Persist) {
            self.timers.set(Timer::Persist, now + self.persist_interval());
        }
    }
}
