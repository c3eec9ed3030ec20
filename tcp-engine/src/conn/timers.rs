//! All timers of a connection in one table, and the retransmission timeout estimator
//! (RFC 6298).

use crate::time::{Duration, Instant};

/// The timers a connection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Retransmission of SYN, SYN-ACK, data or FIN (RFC 6298).
    Retransmit,
    /// Zero-window probing (RFC 9293 section 3.8.6.1).
    Persist,
    /// Delayed ACK (RFC 9293 section 3.8.6.3).
    DelayedAck,
    /// TIME-WAIT's 2 MSL, or FIN-WAIT-2 after `close()`.
    Linger,
    /// Keepalive idle time and probe interval.
    Keepalive,
    /// Connection idle timeout.
    Idle,
    /// Give empty buffers back once the connection has been quiet for a while.
    Reclaim,
}

impl Timer {
    const COUNT: usize = 7;
    const ALL: [Timer; Timer::COUNT] = [
        Timer::Retransmit,
        Timer::Persist,
        Timer::DelayedAck,
        Timer::Linger,
        Timer::Keepalive,
        Timer::Idle,
        Timer::Reclaim,
    ];
}

/// Deadlines, `u64::MAX` meaning unset (eight bytes each instead of sixteen).
#[derive(Clone, Debug)]
pub(crate) struct TimerTable {
    deadlines: [u64; Timer::COUNT],
}

const UNSET: u64 = u64::MAX;

impl TimerTable {
    pub(crate) fn new() -> TimerTable {
        TimerTable { deadlines: [UNSET; Timer::COUNT] }
    }

    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = at.total_micros().min(UNSET - 1);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = UNSET;
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [UNSET; Timer::COUNT];
    }

    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.deadlines[timer as usize] != UNSET
    }

    /// When `timer` fires, if it is set.
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        let at = self.deadlines[timer as usize];
        (at != UNSET).then(|| Instant::from_micros(at))
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        let at = self.deadlines.iter().copied().min().unwrap_or(UNSET);
        (at != UNSET).then(|| Instant::from_micros(at))
    }

    /// Unsets and returns the timers due at `now`, in table order.
    pub(crate) fn expire(&mut self, now: Instant) -> impl Iterator<Item = Timer> + use<> {
        let mut due = [None; Timer::COUNT];
        for (slot, timer) in due.iter_mut().zip(Timer::ALL) {
            if self.deadlines[timer as usize] <= now.total_micros() {
                self.deadlines[timer as usize] = UNSET;
                *slot = Some(timer);
            }
        }
        due.into_iter().flatten()
    }
}

/// RFC 6298 smoothed RTT and RTO, with exponential backoff.
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    /// Consecutive timeouts: the RTO in force is `rto * 2^backoff`.
    backoff: u8,
}

/// Clock granularity G of RFC 6298 (the timestamp clock ticks in milliseconds).
const GRANULARITY: Duration = Duration::from_millis(1);

impl RttEstimator {
    pub(crate) fn new(initial: Duration) -> RttEstimator {
        RttEstimator { srtt: None, rttvar: Duration::ZERO, rto: initial, backoff: 0 }
    }

    /// Feeds one RTT measurement (RFC 6298 section 2.2 and 2.3).
    pub(crate) fn on_sample(&mut self, rtt: Duration, min: Duration, max: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = Duration::from_micros(rtt.total_micros() / 2);
            }
            Some(srtt) => {
                let delta = if srtt > rtt { srtt - rtt } else { rtt - srtt };
                self.rttvar = Duration::from_micros(
                    (3 * self.rttvar.total_micros() + delta.total_micros()) / 4,
                );
                self.srtt =
                    Some(Duration::from_micros((7 * srtt.total_micros() + rtt.total_micros()) / 8));
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        let var = Duration::from_micros(4 * self.rttvar.total_micros()).max(GRANULARITY);
        self.rto = (srtt + var).clamp(min, max);
        // RFC 6298 section 5, note after (5.7): a new sample ends the backoff.
        self.backoff = 0;
    }

    /// Doubles the timeout after an expiry (RFC 6298 section 5.5).
    pub(crate) fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    pub(crate) fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// The timeout without its backoff.
    pub(crate) fn base_rto(&self) -> Duration {
        self.rto
    }

    /// The timeout in force.
    pub(crate) fn rto(&self, max: Duration) -> Duration {
        let factor = 1u32 << self.backoff.min(20);
        (self.rto * factor).min(max)
    }

    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_table_reports_earliest_and_expires() {
        let mut t = TimerTable::new();
        assert_eq!(t.next(), None);
        t.set(Timer::Keepalive, Instant::from_secs(7200));
        t.set(Timer::DelayedAck, Instant::from_millis(40));
        assert_eq!(t.next(), Some(Instant::from_millis(40)));
        let due: Vec<Timer> = t.expire(Instant::from_millis(40)).collect();
        assert_eq!(due, [Timer::DelayedAck]);
        assert!(!t.is_set(Timer::DelayedAck));
        assert_eq!(t.next(), Some(Instant::from_secs(7200)));
    }

    #[test]
    fn rto_follows_rfc6298() {
        let (min, max) = (Duration::from_millis(200), Duration::from_secs(60));
        let mut r = RttEstimator::new(Duration::from_secs(1));
        assert_eq!(r.rto(max), Duration::from_secs(1));
        r.on_sample(Duration::from_millis(100), min, max);
        // SRTT 100, RTTVAR 50: RTO = 100 + 4 * 50 = 300 ms.
        assert_eq!(r.rto(max), Duration::from_millis(300));
        r.back_off();
        r.back_off();
        assert_eq!(r.rto(max), Duration::from_millis(1200));
        for _ in 0..30 {
            r.back_off();
        }
        assert_eq!(r.rto(max), max);
        r.on_sample(Duration::from_millis(100), min, max);
        // RTTVAR 3/4 * 50 = 37.5, SRTT 100: RTO 250 ms.
        assert_eq!(r.rto(max), Duration::from_micros(250_000));
    }
}
