//! Congestion control: slow start and congestion avoidance (RFC 5681), NewReno fast
//! recovery (RFC 6582), CUBIC window growth (RFC 9438) with HyStart++ (RFC 9406) in its
//! slow start, and the restart after idle (RFC 5681 section 4.1). Loss detection lives in
//! `recovery.rs` and the connection; this module only answers "how large may the window
//! be".

use super::hystart::{CSS_GROWTH_DIVISOR, HyStart, Phase};
use crate::config::CongestionAlgorithm;
use crate::seq::SeqNumber;
use crate::time::{Duration, Instant};

/// CUBIC's multiplicative decrease factor (RFC 9438 section 4.6).
const BETA_CUBIC: f64 = 0.7;
/// CUBIC's scaling constant C (RFC 9438 section 5).
const C_CUBIC: f64 = 0.4;

/// Window state of one connection, in bytes.
#[derive(Clone, Debug)]
pub(crate) struct Congestion {
    algorithm: CongestionAlgorithm,
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acknowledged in congestion avoidance not yet turned into growth (RFC 5681
    /// section 3.1, byte counting).
    acked_in_ca: u32,
    cubic: Cubic,
    /// HyStart++ for CUBIC's slow start.
    hystart: HyStart,
}

#[derive(Clone, Debug, Default)]
struct Cubic {
    /// Window before the last reduction, in segments.
    w_max: f64,
    /// Time to grow back to `w_max`, in seconds.
    k: f64,
    /// Start of the current avoidance epoch.
    epoch_start: Option<Instant>,
    /// The Reno-friendly estimate, in segments (RFC 9438 section 4.3).
    w_est: f64,
}

impl Congestion {
    /// Initial window of RFC 6928: min(10 MSS, max(2 MSS, 14600)).
    pub(crate) fn new(algorithm: CongestionAlgorithm, mss: u32) -> Congestion {
        Congestion {
            algorithm,
            cwnd: Congestion::initial_window(mss),
            ssthresh: u32::MAX,
            acked_in_ca: 0,
            cubic: Cubic::default(),
            hystart: HyStart::default(),
        }
    }

    /// The initial window of RFC 6928 for `mss`.
    fn initial_window(mss: u32) -> u32 {
        (10 * mss).min((2 * mss).max(14_600))
    }

    /// Whether the window grows in slow start.
    pub(crate) fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// Sets the window (PRR's per-ACK window during recovery), at least one MSS.
    pub(crate) fn set_window(&mut self, cwnd: u32, mss: u32) {
        self.cwnd = cwnd.max(mss);
    }

    /// An RTT sample from an ACK of `ack` (while `snd_nxt` is the next sequence number to
    /// send), for HyStart++ (RFC 9406) during CUBIC's slow start.
    pub(crate) fn on_rtt_sample(&mut self, ack: SeqNumber, snd_nxt: SeqNumber, rtt: Duration) {
        if self.algorithm != CongestionAlgorithm::Cubic || !self.in_slow_start() {
            return;
        }
        if self.hystart.on_ack(ack, snd_nxt, rtt) == Phase::Done {
            // RFC 9406 section 4.2: CSS ran its rounds: congestion avoidance from here.
            self.ssthresh = self.cwnd;
        }
    }

    pub(crate) fn window(&self) -> u32 {
        self.cwnd
    }

    pub(crate) fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    /// New data was acknowledged outside loss recovery.
    pub(crate) fn on_ack(&mut self, now: Instant, acked: u32, mss: u32, srtt: Option<Duration>) {
        if self.cwnd < self.ssthresh {
            // Slow start (RFC 5681 section 3.1), with the L = 2 SMSS limit of RFC 3465; a
            // quarter of that in HyStart++'s Conservative Slow Start (RFC 9406 section 4.2).
            let mut grow = acked.min(2 * mss);
            if matches!(self.hystart.phase(), Phase::Conservative { .. }) {
                grow = grow.div_ceil(CSS_GROWTH_DIVISOR);
            }
            self.cwnd = self.cwnd.saturating_add(grow);
            return;
        }
        match self.algorithm {
            CongestionAlgorithm::NewReno => self.reno_avoidance(acked, mss),
            CongestionAlgorithm::Cubic => {
                self.cubic_avoidance(now, acked, mss, srtt.unwrap_or(Duration::from_millis(100)));
            }
        }
    }

    /// Congestion avoidance: one MSS per window of acknowledged bytes.
    fn reno_avoidance(&mut self, acked: u32, mss: u32) {
        self.acked_in_ca = self.acked_in_ca.saturating_add(acked);
        if self.acked_in_ca >= self.cwnd {
            self.acked_in_ca -= self.cwnd;
            self.cwnd = self.cwnd.saturating_add(mss);
        }
    }

    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "window arithmetic in floating point, clamped back to u32"
    )]
    fn cubic_avoidance(&mut self, now: Instant, acked: u32, mss: u32, srtt: Duration) {
        let mss_f = f64::from(mss);
        let cwnd = f64::from(self.cwnd) / mss_f;
        let c = &mut self.cubic;
        let epoch = *c.epoch_start.get_or_insert_with(|| {
            // RFC 9438 section 4.2: a new epoch starts at the first ACK after a reduction.
            c.k = if cwnd < c.w_max { ((c.w_max - cwnd) / C_CUBIC).cbrt() } else { 0.0 };
            if c.w_max < cwnd {
                c.w_max = cwnd;
            }
            c.w_est = cwnd;
            now
        });
        let t = (now - epoch).as_secs_f64();
        let w_cubic = |t: f64| C_CUBIC * (t - c.k).powi(3) + c.w_max;
        // RFC 9438 section 4.3: the Reno-friendly region.
        let alpha = 3.0 * (1.0 - BETA_CUBIC) / (1.0 + BETA_CUBIC);
        c.w_est += alpha * (f64::from(acked) / mss_f) / cwnd;
        let next = if w_cubic(t) < c.w_est {
            c.w_est
        } else {
            // RFC 9438 section 4.4 and 4.5: aim at W_cubic(t + RTT), at most 1.5 cwnd.
            let target = w_cubic(t + srtt.as_secs_f64()).clamp(cwnd, 1.5 * cwnd);
            cwnd + (target - cwnd) / cwnd * (f64::from(acked) / mss_f)
        };
        let bytes = (next * mss_f).min(f64::from(u32::MAX));
        self.cwnd = self.cwnd.max(bytes as u32);
    }

    /// Loss detected by duplicate ACKs: halve (Reno) or reduce by beta (CUBIC) and enter
    /// recovery with the window inflated by the three segments that left the network
    /// (RFC 5681 section 3.2 steps 2 and 3).
    pub(crate) fn on_fast_retransmit(&mut self, flight: u32, mss: u32, inflate: bool) {
        self.reduce(flight, mss);
        self.cwnd = if inflate { self.ssthresh.saturating_add(3 * mss) } else { self.ssthresh };
    }

    /// RFC 5681 section 3.2 step 4: each further duplicate ACK inflates the window.
    pub(crate) fn on_dup_ack_in_recovery(&mut self, mss: u32) {
        self.cwnd = self.cwnd.saturating_add(mss);
    }

    /// RFC 6582 section 3.2 step 5: a partial ACK deflates the window by what it acked and
    /// adds back one MSS if that was at least one MSS.
    pub(crate) fn on_partial_ack(&mut self, acked: u32, mss: u32) {
        self.cwnd = self.cwnd.saturating_sub(acked);
        if acked >= mss {
            self.cwnd = self.cwnd.saturating_add(mss);
        }
        self.cwnd = self.cwnd.max(mss);
    }

    /// RFC 6582 section 3.2 step 3, full ACK: cwnd = min(ssthresh, max(flight, MSS) + MSS).
    pub(crate) fn on_recovery_end(&mut self, flight: u32, mss: u32) {
        self.cwnd = self.ssthresh.min(flight.max(mss).saturating_add(mss));
    }

    /// A loss was detected (fast recovery with SACK, or a loss repaired by a tail loss
    /// probe): ssthresh and CUBIC's state take the reduction; the window itself follows
    /// PRR during recovery ([`Congestion::set_window`]) and ends at ssthresh.
    pub(crate) fn on_congestion_event(&mut self, flight: u32, mss: u32) {
        self.reduce(flight, mss);
    }

    /// Fast recovery (with SACK) ended: the window is ssthresh (RFC 6675 section 5, RFC
    /// 6937; Linux `tcp_end_cwnd_reduction`), and a new CUBIC epoch starts with the next ACK.
    pub(crate) fn on_reduction_end(&mut self) {
        self.cwnd = self.ssthresh;
        self.cubic.epoch_start = None;
    }

    /// Retransmission timeout: loss window of one segment (RFC 5681 section 3.1).
    pub(crate) fn on_timeout(&mut self, flight: u32, mss: u32) {
        self.reduce(flight, mss);
        self.cwnd = mss;
    }

    /// A timeout of a segment the timer already resent: RFC 5681 section 3.1 holds ssthresh
    /// ("the value of ssthresh is held constant"); the window is one segment again.
    pub(crate) fn on_repeated_timeout(&mut self, mss: u32) {
        self.cwnd = mss;
    }

    /// Nothing was sent for `idle`, longer than `rto`: RFC 5681 section 4.1 restarts from
    /// min(IW, cwnd). As Linux's `tcp_cwnd_restart`, ssthresh first keeps three quarters of
    /// the window (`tcp_current_ssthresh`), and the window halves per RTO of idleness down to
    /// that restart window rather than dropping to it at once.
    pub(crate) fn restart_after_idle(&mut self, idle: Duration, rto: Duration, mss: u32) {
        self.ssthresh = self.ssthresh.max(self.cwnd / 4 * 3);
        let restart = Congestion::initial_window(mss).min(self.cwnd);
        let mut cwnd = self.cwnd;
        let mut left = idle.total_micros();
        let rto = rto.total_micros().max(1);
        while left > rto && cwnd > restart {
            left -= rto;
            cwnd /= 2;
        }
        self.cwnd = cwnd.max(restart);
        self.acked_in_ca = 0;
        self.cubic.epoch_start = None;
    }

    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "window arithmetic in floating point, clamped back to u32"
    )]
    fn reduce(&mut self, flight: u32, mss: u32) {
        self.acked_in_ca = 0;
        // RFC 9406 section 4.2: a loss in slow start ends HyStart++ too.
        self.hystart.finish();
        match self.algorithm {
            // RFC 5681 equation (4).
            CongestionAlgorithm::NewReno => self.ssthresh = (flight / 2).max(2 * mss),
            CongestionAlgorithm::Cubic => {
                let c = &mut self.cubic;
                let cwnd = f64::from(self.cwnd) / f64::from(mss);
                // RFC 9438 section 4.7, fast convergence.
                c.w_max = if cwnd < c.w_max { cwnd * (1.0 + BETA_CUBIC) / 2.0 } else { cwnd };
                c.epoch_start = None;
                let reduced = (f64::from(self.cwnd) * BETA_CUBIC) as u32;
                self.ssthresh = reduced.max(2 * mss);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    #[test]
    fn reno_slow_start_then_linear() {
        let mut cc = Congestion::new(CongestionAlgorithm::NewReno, MSS);
        assert_eq!(cc.window(), 10 * MSS);
        cc.on_ack(Instant::ZERO, MSS, MSS, None);
        assert_eq!(cc.window(), 11 * MSS);
        cc.on_timeout(20 * MSS, MSS);
        assert_eq!((cc.window(), cc.ssthresh()), (MSS, 10 * MSS));
        for _ in 0..9 {
            cc.on_ack(Instant::ZERO, MSS, MSS, None);
        }
        assert_eq!(cc.window(), 10 * MSS);
        // Avoidance: a whole window of ACKs adds one MSS.
        for _ in 0..10 {
            cc.on_ack(Instant::ZERO, MSS, MSS, None);
        }
        assert_eq!(cc.window(), 11 * MSS);
    }

    #[test]
    fn newreno_recovery_inflates_and_deflates() {
        let mut cc = Congestion::new(CongestionAlgorithm::NewReno, MSS);
        cc.on_fast_retransmit(10 * MSS, MSS, true);
        assert_eq!((cc.ssthresh(), cc.window()), (5 * MSS, 8 * MSS));
        cc.on_dup_ack_in_recovery(MSS);
        assert_eq!(cc.window(), 9 * MSS);
        cc.on_partial_ack(2 * MSS, MSS);
        assert_eq!(cc.window(), 8 * MSS);
        cc.on_recovery_end(3 * MSS, MSS);
        assert_eq!(cc.window(), 4 * MSS);
    }

    #[test]
    fn cubic_reduces_by_beta_and_grows_back() {
        let mut cc = Congestion::new(CongestionAlgorithm::Cubic, MSS);
        cc.cwnd = 100 * MSS;
        cc.on_fast_retransmit(100 * MSS, MSS, false);
        assert_eq!(cc.window(), 70 * MSS);
        let mut now = Instant::ZERO;
        let rtt = Duration::from_millis(100);
        // K = cbrt(30 / 0.4) ~ 4.2 s: after ~5 s of ACKs the window is back near 100.
        for _ in 0..50 {
            for _ in 0..(cc.window() / MSS) {
                cc.on_ack(now, MSS, MSS, Some(rtt));
            }
            now += rtt;
        }
        let w = cc.window() / MSS;
        assert!((95..=140).contains(&w), "window {w} segments");
    }
}

#[cfg(test)]
mod hystart_tests {
    use super::*;

    const MSS: u32 = 1000;

    #[test]
    fn hystart_leaves_slow_start_when_the_rtt_rises() {
        // Issue 9, item 15, RFC 9406: CUBIC's slow start ends when the RTT rises by more
        // than the threshold, through five rounds of Conservative Slow Start, with ssthresh
        // at the window and no loss.
        let mut cc = Congestion::new(CongestionAlgorithm::Cubic, MSS);
        let mut at = SeqNumber::new(0);
        let mut grown: Vec<f64> = Vec::new();
        for round in 0..12u64 {
            // The RTT rises from the third round on (a queue builds).
            let rtt = Duration::from_millis(if round < 2 { 20 } else { 30 + round });
            let before = cc.window();
            let segments = cc.window() / MSS;
            let end = at + (segments * MSS) as usize;
            for i in 0..segments {
                let ack = at + ((i + 1) * MSS) as usize;
                cc.on_rtt_sample(ack, end, rtt);
                cc.on_ack(Instant::ZERO, MSS, MSS, Some(rtt));
            }
            at = end;
            grown.push(f64::from(cc.window() - before) / f64::from(before));
        }
        assert!(cc.ssthresh() < u32::MAX, "left slow start without a loss");
        // Doubling per round at first, a quarter of that in CSS, then congestion avoidance.
        assert!((grown[1] - 1.0).abs() < 0.01, "{grown:?}");
        assert!((grown[4] - 0.25).abs() < 0.01, "{grown:?}");
        assert!(grown[11] < 0.1, "{grown:?}");
        assert!(!cc.in_slow_start());
    }
}
