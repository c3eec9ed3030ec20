//! Counter snapshots and how they are shown.

use std::fmt::Write as _;

use tcp_common::Counter;
use tcp_common::counters::COUNTER_COUNT;

/// The XDP counters at one moment, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterSnapshot {
    values: [u64; COUNTER_COUNT as usize],
}

impl Default for CounterSnapshot {
    fn default() -> Self {
        CounterSnapshot { values: [0; COUNTER_COUNT as usize] }
    }
}

impl CounterSnapshot {
    /// The value of one counter.
    #[must_use]
    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize]
    }

    /// Sets one counter.
    pub fn set(&mut self, c: Counter, v: u64) {
        self.values[c as usize] = v;
    }

    /// Sum of every verdict counter (all but `RxFrames`): equals `RxFrames` when the program
    /// counts each frame exactly once.
    #[must_use]
    pub fn verdict_total(&self) -> u64 {
        Counter::ALL.iter().filter(|c| **c != Counter::RxFrames).map(|c| self.get(*c)).sum()
    }

    /// `self - earlier`, counter by counter (saturating, in case the program was reloaded).
    #[must_use]
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        let mut d = CounterSnapshot::default();
        for &c in Counter::ALL {
            d.set(c, self.get(c).saturating_sub(earlier.get(c)));
        }
        d
    }

    /// One status line: the total and its rate, then every non-zero counter with its rate over
    /// `seconds` (the time since `earlier`).
    #[must_use]
    pub fn status_line(&self, earlier: &CounterSnapshot, seconds: f64) -> String {
        let delta = self.since(earlier);
        let rate = |v: u64| {
            #[expect(clippy::cast_precision_loss, reason = "a rate for people, not accounting")]
            let r = v as f64 / seconds.max(1e-9);
            r
        };
        let mut line = format!(
            "rx {} ({:.0}/s)",
            self.get(Counter::RxFrames),
            rate(delta.get(Counter::RxFrames))
        );
        for &c in Counter::ALL.iter().filter(|c| **c != Counter::RxFrames) {
            if self.get(c) != 0 {
                let _ =
                    write!(line, " | {} {} ({:.0}/s)", c.name(), self.get(c), rate(delta.get(c)));
            }
        }
        line
    }
}

/// `line` cut to `width` characters, with `…` where it was cut: a status line rewritten in
/// place must not wrap, or every second adds a line to the terminal.
#[must_use]
pub fn fit_to_width(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_is_cut_to_the_terminal_width() {
        assert_eq!(fit_to_width("rx 30 (10/s)", 20), "rx 30 (10/s)");
        assert_eq!(fit_to_width("rx 30 (10/s) | tx_synack 10", 10), "rx 30 (10…");
        assert_eq!(fit_to_width("né ü", 3), "né…");
        assert_eq!(fit_to_width("abc", 0), "");
    }

    #[test]
    fn status_line_shows_nonzero_counters_with_rates() {
        let mut a = CounterSnapshot::default();
        a.set(Counter::RxFrames, 10);
        a.set(Counter::PassNotIp, 10);
        let mut b = a.clone();
        b.set(Counter::RxFrames, 30);
        b.set(Counter::PassNotIp, 20);
        b.set(Counter::TxSynAck, 10);
        assert_eq!(b.verdict_total(), 30);
        let line = b.status_line(&a, 2.0);
        assert_eq!(line, "rx 30 (10/s) | pass_not_ip 20 (5/s) | tx_synack 10 (5/s)");
        assert!(!line.contains("drop_"));
    }
}
