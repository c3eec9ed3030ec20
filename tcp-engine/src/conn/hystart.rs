//! HyStart++ (RFC 9406): leave slow start before it overshoots, when the round-trip time
//! starts rising (a queue is building), instead of when a loss says so.
//!
//! Each round trip (from one SND.NXT to its acknowledgement) keeps the least RTT sampled in
//! it. Once a round's minimum exceeds the previous round's by a threshold (an eighth of it,
//! 4 to 16 ms), slow start becomes Conservative Slow Start: growth at a quarter of the rate
//! for up to five rounds, after which congestion avoidance begins with ssthresh at the
//! window. If the RTT falls back below the baseline in the meantime, the rise was noise and
//! slow start resumes.

use crate::seq::SeqNumber;
use crate::time::Duration;

/// RFC 9406 section 4.3 constants.
const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
const MIN_RTT_DIVISOR: u64 = 8;
const N_RTT_SAMPLE: u32 = 8;
/// Growth divisor in Conservative Slow Start.
pub(crate) const CSS_GROWTH_DIVISOR: u32 = 4;
const CSS_ROUNDS: u32 = 5;

/// Where slow start stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Ordinary slow start.
    SlowStart,
    /// Conservative Slow Start, with the RTT baseline that started it and the rounds in it.
    Conservative { baseline: Duration, rounds: u32 },
    /// Slow start is over: congestion avoidance from now on.
    Done,
}

/// HyStart++ state of one connection.
#[derive(Clone, Debug)]
pub(crate) struct HyStart {
    phase: Phase,
    /// The round ends when this is acknowledged (`windowEnd`).
    window_end: Option<SeqNumber>,
    last_round_min: Option<Duration>,
    current_round_min: Option<Duration>,
    samples: u32,
}

impl Default for HyStart {
    fn default() -> HyStart {
        HyStart {
            phase: Phase::SlowStart,
            window_end: None,
            last_round_min: None,
            current_round_min: None,
            samples: 0,
        }
    }
}

impl HyStart {
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Slow start begins again (after a timeout: RFC 9406 section 4.2 uses HyStart++ only in
    /// the initial slow start, so it stays off; kept for clarity).
    pub(crate) fn finish(&mut self) {
        self.phase = Phase::Done;
    }

    /// An ACK of `ack` with an RTT sample, while in slow start; `snd_nxt` is where the next
    /// round will end. Returns the phase after it.
    pub(crate) fn on_ack(&mut self, ack: SeqNumber, snd_nxt: SeqNumber, rtt: Duration) -> Phase {
        if self.phase == Phase::Done {
            return self.phase;
        }
        let round_over = self.window_end.is_none_or(|end| ack >= end);
        if round_over {
            self.window_end = Some(snd_nxt);
            self.last_round_min = self.current_round_min.take();
            self.samples = 0;
            if let Phase::Conservative { baseline, rounds } = self.phase {
                let rounds = rounds + 1;
                self.phase = if rounds >= CSS_ROUNDS {
                    // Section 4.2: enough rounds of CSS: congestion avoidance.
                    Phase::Done
                } else if self.last_round_min.is_some_and(|m| m < baseline) {
                    // The RTT fell back: the increase was spurious; slow start resumes.
                    Phase::SlowStart
                } else {
                    Phase::Conservative { baseline, rounds }
                };
            }
        }
        self.current_round_min = Some(self.current_round_min.map_or(rtt, |m| m.min(rtt)));
        self.samples += 1;
        if self.phase == Phase::SlowStart
            && self.samples >= N_RTT_SAMPLE
            && let (Some(last), Some(current)) = (self.last_round_min, self.current_round_min)
        {
            let eighth = Duration::from_micros(last.total_micros() / MIN_RTT_DIVISOR);
            let thresh = eighth.clamp(MIN_RTT_THRESH, MAX_RTT_THRESH);
            if current >= last + thresh {
                self.phase = Phase::Conservative { baseline: current, rounds: 0 };
            }
        }
        self.phase
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HyStart driven round by round: each call is one round of ten ACKs over 10,000 bytes,
    /// every one with the same RTT; returns the phase after the round.
    struct Rounds {
        h: HyStart,
        at: SeqNumber,
    }

    impl Rounds {
        fn new() -> Rounds {
            Rounds { h: HyStart::default(), at: SeqNumber::new(0) }
        }

        fn round(&mut self, rtt: Duration) -> Phase {
            let end = self.at + 10_000;
            let mut phase = Phase::SlowStart;
            for i in 0..10 {
                phase = self.h.on_ack(self.at + i * 1000 + 1, end, rtt);
            }
            self.at = end;
            phase
        }
    }

    #[test]
    fn a_rising_rtt_leads_through_css_to_avoidance() {
        let mut r = Rounds::new();
        let ms = Duration::from_millis;
        // Round 1 at 20 ms, round 2 at 30 ms: 30 >= 20 + max(20/8, 4): CSS after 8 samples.
        assert_eq!(r.round(ms(20)), Phase::SlowStart);
        assert_eq!(r.round(ms(20)), Phase::SlowStart);
        assert_eq!(r.round(ms(30)), Phase::Conservative { baseline: ms(30), rounds: 0 });
        for rounds in 1..CSS_ROUNDS {
            assert_eq!(r.round(ms(31)), Phase::Conservative { baseline: ms(30), rounds });
        }
        assert_eq!(r.round(ms(31)), Phase::Done);
    }

    #[test]
    fn an_rtt_falling_back_resumes_slow_start() {
        let mut r = Rounds::new();
        let ms = Duration::from_millis;
        r.round(ms(20));
        assert!(matches!(r.round(ms(30)), Phase::Conservative { .. }));
        // The next round's minimum (25) is below the baseline (30): back to slow start.
        r.round(ms(25));
        assert_eq!(r.round(ms(25)), Phase::SlowStart);
    }
}
