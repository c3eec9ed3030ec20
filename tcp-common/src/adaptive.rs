//! How SYNs are answered (`--mode`): with a SYN cookie by the XDP program, or statefully by
//! userspace, or one or the other by the SYN rate (adaptive, as Linux's `tcp_syncookies=1`:
//! a stateful queue in peace, cookies under flood).
//!
//! | mode | a SYN to a protected port (for a tuple not in the flow map) |
//! |---|---|
//! | [`SynMode::Cookies`] | XDP answers with a cookie SYN-ACK (`XDP_TX`). |
//! | [`SynMode::Stateful`] | to userspace (`RxMeta` kind SYN) while the RX queue's half-open table has room, else dropped (`drop_syn_half_open_full`): Linux's `tcp_syncookies=0`. |
//! | [`SynMode::Adaptive`] | to userspace while no CPU's SYN rate is above its share of `--syn-threshold` and the queue's half-open table has room; a cookie SYN-ACK otherwise. |
//!
//! # The rate, per CPU
//!
//! Each CPU counts the SYNs it handles in windows of `2^syn_window_shift` jiffies (the
//! kernel's timer tick, `bpf_jiffies64`, which the verifier turns into one load; userspace
//! picks the shift for about 16 ms from the tick it reads with `clock_getres` on
//! `CLOCK_MONOTONIC_COARSE`, [`window_shift`]) in its own slot of a per-CPU map ([`SynRate`]):
//! no atomic operation and no shared cache line on the SYN path. (`bpf_ktime_get_coarse_ns`
//! cost 23 ns per SYN here, 15 % of the whole cookie path.) Each CPU compares its count
//! against its share of the threshold: `syn_window_limit` = `--syn-threshold` × window / the
//! number of CPUs that receive (the interface's RX queues, at most the online CPUs), computed
//! by userspace ([`window_limit`]). When RSS spreads SYNs
//! evenly, the CPUs pass their limits together at the threshold; when a flood lands on fewer
//! CPUs, those pass theirs earlier, never later. The state is per CPU too, so userspace reads
//! it from every CPU ([`SynRate`]) and shows the aggregate ("k of n CPUs see a flood").
//!
//! # The answer, for the whole host
//!
//! A flood seen by one CPU switches every CPU to cookies, as Linux switches a whole listener
//! when its SYN queue overflows: the CPUs that receive little of it would otherwise answer its
//! SYNs with state, and their legitimate clients would wait on userspace while the flood keeps
//! the machine busy. A flooded CPU writes, once per window, into a shared one-entry array
//! (`SYNSHIELD_SYN_FLOOD`) the window until which every CPU answers with cookies: the current
//! window, once it has seen more than half the limit, plus the calm windows the flooded CPU
//! needs to go back, plus one ([`SynRate::answer_syn`]); so the hold ends when that CPU's own
//! hysteresis would end its flood. Every other CPU reads that line per SYN; it is written a few dozen
//! times a second during a flood and never in peace, so it stays in every CPU's cache. The
//! write is a plain store: two flooded CPUs racing write windows within one of each other,
//! either is right.
//!
//! # Hysteresis
//!
//! A CPU switches to cookies as soon as its count in the current window passes the limit (not
//! at the window's end: within `limit` SYNs of the flood's start), and back to stateful only
//! after `syn_calm_windows` windows in a row (default 8, about 130 ms) each with at most half the
//! limit: two levels and a delay, so a rate near the threshold does not flap. A window without
//! any SYN is calm. Every switch is counted ([`SynRate::to_cookies`],
//! [`SynRate::to_stateful`]).

/// How SYNs are answered: [`crate::Config::syn_mode`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SynMode {
    /// Every SYN gets a cookie SYN-ACK from XDP.
    #[default]
    Cookies = 0,
    /// Every SYN goes to userspace while its queue's half-open table has room.
    Stateful = 1,
    /// Stateful below the SYN rate threshold and with room; cookies otherwise.
    Adaptive = 2,
}

impl SynMode {
    /// The mode of a [`crate::Config::syn_mode`] value (unknown values are cookies).
    #[inline(always)]
    #[must_use]
    pub fn from_u8(v: u8) -> SynMode {
        match v {
            1 => SynMode::Stateful,
            2 => SynMode::Adaptive,
            _ => SynMode::Cookies,
        }
    }
}

impl core::fmt::Display for SynMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SynMode::Cookies => "cookies",
            SynMode::Stateful => "stateful",
            SynMode::Adaptive => "adaptive",
        })
    }
}

/// Default `--syn-threshold`, SYNs per second (summed over CPUs).
pub const DEFAULT_SYN_THRESHOLD: u32 = 10_000;
/// The window aimed at: about 16 ms.
pub const TARGET_WINDOW_NS: u64 = 16_000_000;
/// Default calm windows before going back to stateful (8 windows, about 130 ms).
pub const DEFAULT_CALM_WINDOWS: u8 = 8;
/// The kernel tick assumed when none is given: 4 ms (`HZ=250`, Debian's).
pub const DEFAULT_TICK_NS: u64 = 4_000_000;

/// The window shift for a kernel tick of `tick_ns` (`1 / HZ`): the smallest power of two of
/// ticks that lasts at least [`TARGET_WINDOW_NS`] (16 ms at `HZ=250` and 1000, 20 ms at 100).
#[must_use]
pub fn window_shift(tick_ns: u64) -> u8 {
    let tick = tick_ns.max(1);
    let mut shift = 0;
    while shift < 20 && tick << shift < TARGET_WINDOW_NS {
        shift += 1;
    }
    shift
}

/// The per-CPU SYN limit of one window: `syns_per_sec` spread over `receiving_cpus`, for a
/// window of `window_ns`; at least 1 (rounded up).
#[must_use]
pub fn window_limit(syns_per_sec: u32, receiving_cpus: u32, window_ns: u64) -> u32 {
    let per_window = u128::from(syns_per_sec) * u128::from(window_ns);
    let divisor = 1_000_000_000u128 * u128::from(receiving_cpus.max(1));
    u32::try_from(per_window.div_ceil(divisor)).unwrap_or(u32::MAX).max(1)
}

/// What a CPU needs to judge its SYN rate (from [`crate::Config`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateParams {
    /// SYNs per window above which this CPU answers with cookies.
    pub limit: u32,
    /// The window is `2^shift` jiffies.
    pub shift: u8,
    /// Calm windows in a row (at most `limit / 2` SYNs each) before going back to stateful.
    pub calm_windows: u8,
}

/// One CPU's SYN rate and answer: the value of the per-CPU map `SYNSHIELD_SYN_RATE`. Written
/// only by the XDP program on that CPU; userspace reads every CPU's copy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SynRate {
    /// Index of the current window (jiffies >> shift).
    pub window: u64,
    /// SYNs counted in the current window.
    pub syns: u32,
    /// Finished windows in a row with at most half the limit (windows without SYNs included).
    pub calm: u32,
    /// 1 while this CPU answers with cookies (flooded), 0 while stateful.
    pub cookies: u32,
    /// Zero (keeps the layout free of padding).
    pub reserved: u32,
    /// Switches from stateful to cookies on this CPU.
    pub to_cookies: u64,
    /// Switches from cookies back to stateful on this CPU.
    pub to_stateful: u64,
}

impl SynRate {
    /// Counts one SYN at `now` (jiffies) and says whether to answer it with a cookie (this
    /// CPU is flooded). See the module docs for the windows and the hysteresis.
    #[inline(always)]
    pub fn count_syn(&mut self, now: u64, p: &RateParams) -> bool {
        let window = now >> (p.shift & 63);
        if window != self.window {
            // The window that ended, then the windows without any SYN since.
            let empty = window.wrapping_sub(self.window).wrapping_sub(1);
            #[expect(clippy::cast_possible_truncation, reason = "at most 255")]
            let empty = if empty > u64::from(u8::MAX) { u32::from(u8::MAX) } else { empty as u32 };
            let quiet = self.syns <= p.limit / 2;
            self.calm =
                if quiet { self.calm.saturating_add(1).saturating_add(empty) } else { empty };
            self.window = window;
            self.syns = 0;
            if self.cookies != 0 && self.calm >= u32::from(p.calm_windows) {
                self.cookies = 0;
                self.to_stateful += 1;
            }
        }
        self.syns = self.syns.saturating_add(1);
        if self.cookies == 0 && self.syns > p.limit {
            self.cookies = 1;
            self.calm = 0;
            self.to_cookies += 1;
        }
        self.cookies != 0
    }
}

impl SynRate {
    /// The answer of adaptive mode to a SYN at `now` (jiffies): [`SynRate::count_syn`] on
    /// this CPU, then the host's hold (`hold`: the shared `SYNSHIELD_SYN_FLOOD` value, the
    /// window until which every CPU answers with cookies; see "The answer, for the whole
    /// host" above). Returns whether to answer with a cookie, and the new hold to store when
    /// this CPU is flooded, its current window is not calm (more than half the limit), and
    /// the hold is not yet what it says: at most once per window.
    #[inline(always)]
    #[must_use]
    pub fn answer_syn(&mut self, now: u64, p: &RateParams, hold: u64) -> (bool, Option<u64>) {
        let window = now >> (p.shift & 63);
        if !self.count_syn(now, p) {
            return (window < hold, None);
        }
        // Only a window that is not calm (more than half the limit so far) moves the hold:
        // then the hold ends exactly when this CPU's own calm windows would end its flood.
        let until = window.wrapping_add(u64::from(p.calm_windows)).wrapping_add(1);
        (true, (self.syns > p.limit / 2 && hold != until).then_some(until))
    }
}

/// Every CPU's [`SynRate`], summed up for people: the status line, the metrics, the log line
/// of a switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SynDefense {
    /// CPUs answering with cookies now.
    pub cpus_on_cookies: u32,
    /// CPUs read.
    pub cpus: u32,
    /// Switches to cookies, all CPUs.
    pub to_cookies: u64,
    /// Switches back to stateful, all CPUs.
    pub to_stateful: u64,
}

impl SynDefense {
    /// The sum of the CPUs' states.
    pub fn of<'a>(cpus: impl IntoIterator<Item = &'a SynRate>) -> SynDefense {
        let mut d = SynDefense::default();
        for r in cpus {
            d.cpus += 1;
            d.cpus_on_cookies += u32::from(r.cookies != 0);
            d.to_cookies += r.to_cookies;
            d.to_stateful += r.to_stateful;
        }
        d
    }

    /// Whether any CPU answers with cookies (the flood's signal: log it once per change).
    #[must_use]
    pub fn on_cookies(&self) -> bool {
        self.cpus_on_cookies > 0
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers only, no padding (40 bytes, alignment 8).
unsafe impl aya::Pod for SynRate {}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RateParams = RateParams { limit: 20, shift: 10, calm_windows: 3 };
    const W: u64 = 1 << 10;

    /// `n` SYNs at the start of window `w`; the answers (true: cookie).
    fn burst(r: &mut SynRate, w: u64, n: u32) -> std::vec::Vec<bool> {
        (0..n).map(|i| r.count_syn(w * W + u64::from(i), &P)).collect()
    }

    #[test]
    fn layout_has_no_padding() {
        assert_eq!(core::mem::size_of::<SynRate>(), 40);
    }

    #[test]
    fn below_the_limit_stays_stateful() {
        let mut r = SynRate::default();
        for w in 100..200 {
            assert!(burst(&mut r, w, 20).iter().all(|c| !c));
        }
        assert_eq!((r.to_cookies, r.to_stateful), (0, 0));
    }

    #[test]
    fn switches_at_once_when_the_limit_is_passed_and_back_after_calm_windows() {
        let mut r = SynRate::default();
        assert!(burst(&mut r, 100, 15).iter().all(|c| !c));
        // The 21st SYN of a window switches, mid-window.
        let b = burst(&mut r, 101, 30);
        assert!(b[..20].iter().all(|c| !c) && b[20..].iter().all(|c| *c), "{b:?}");
        assert_eq!(r.to_cookies, 1);
        // Between half the limit and the limit: not calm, cookies stay (hysteresis).
        for w in 102..110 {
            assert!(burst(&mut r, w, 15).iter().all(|c| *c), "window {w}");
        }
        // Three calm windows (2 SYNs each), judged when the next one starts.
        for w in 110..113 {
            assert!(burst(&mut r, w, 2).iter().all(|c| *c), "window {w}");
        }
        assert!(burst(&mut r, 113, 2).iter().all(|c| !c), "back to stateful");
        assert_eq!((r.to_cookies, r.to_stateful), (1, 1));
    }

    #[test]
    fn windows_without_syns_are_calm() {
        let mut r = SynRate::default();
        burst(&mut r, 5, 21);
        assert_eq!(r.cookies, 1);
        // A busy window, then silence for two windows: 0 + 2 calm, not enough.
        assert!(burst(&mut r, 6, 20).iter().all(|c| *c));
        assert!(burst(&mut r, 9, 1)[0], "windows 7 and 8 were empty: calm 2 of 3");
        assert!(!burst(&mut r, 10, 1)[0], "window 9 was calm too: back");
        // Long silence: the first SYN is stateful.
        burst(&mut r, 11, 50);
        assert!(!burst(&mut r, 1_000_000, 1)[0]);
        assert_eq!((r.to_cookies, r.to_stateful), (2, 2));
    }

    #[test]
    fn a_flood_on_one_cpu_switches_every_cpu_and_the_hold_ends_with_it() {
        let (mut flooded, mut quiet, mut hold) = (SynRate::default(), SynRate::default(), 0u64);
        let answer = |r: &mut SynRate, w: u64, hold: &mut u64| {
            let (cookie, store) = r.answer_syn(w * W, &P, *hold);
            if let Some(h) = store {
                *hold = h;
            }
            cookie
        };
        assert!(!answer(&mut quiet, 100, &mut hold), "peace: stateful");
        // CPU A passes its limit in window 101: from its 21st SYN on, the hold is set.
        let a: std::vec::Vec<bool> =
            (0..25).map(|_| answer(&mut flooded, 101, &mut hold)).collect();
        assert!(a[..20].iter().all(|c| !c) && a[20..].iter().all(|c| *c), "{a:?}");
        assert_eq!(hold, 101 + 3 + 1);
        // CPU B, with one SYN: a cookie too, for as long as A holds the flood.
        assert!(answer(&mut quiet, 101, &mut hold));
        assert!(answer(&mut quiet, 104, &mut hold));
        assert_eq!((quiet.cookies, quiet.to_cookies), (0, 0), "B's own rate never passed");
        // The flood goes on in 102, above half the limit (A moves the hold on its first SYN
        // of the window, and only then).
        for i in 1..=15 {
            assert!(answer(&mut flooded, 102, &mut hold));
            assert_eq!(hold, if i <= 10 { 105 } else { 106 }, "SYN {i} of window 102");
        }
        assert!(answer(&mut quiet, 105, &mut hold), "within the hold");
        // A's calm windows 103..=105 (no SYN) end its flood in 106, and the hold with it.
        assert!(!answer(&mut flooded, 106, &mut hold), "A back to stateful");
        assert!(!answer(&mut quiet, 106, &mut hold), "B with it");
        // Calm windows with SYNs (at most half the limit) do not move the hold: A goes back
        // when its own calm windows say so, and the hold is over by then.
        hold = 0;
        let a: std::vec::Vec<bool> =
            (0..21).map(|_| answer(&mut flooded, 200, &mut hold)).collect();
        assert!(a[20], "switched on the 21st SYN");
        assert_eq!(hold, 204);
        for w in 201..204 {
            assert!(answer(&mut flooded, w, &mut hold), "calm window {w}: still cookies");
            assert_eq!(hold, 204, "not moved by a calm window");
        }
        // 201..=203 were calm: A is back in 204, and so is every CPU.
        assert!(!answer(&mut flooded, 204, &mut hold));
        assert!(!answer(&mut quiet, 204, &mut hold));
        assert_eq!((flooded.to_cookies, flooded.to_stateful), (2, 2), "two floods, two returns");
    }

    #[test]
    fn limit_is_the_cpus_share_of_the_threshold() {
        // 10,000 SYNs/s over 16 ms windows: 160 per window, 80 each on two CPUs.
        assert_eq!(window_limit(10_000, 1, 16_000_000), 160);
        assert_eq!(window_limit(10_000, 2, 16_000_000), 80);
        assert_eq!(window_limit(1, 64, 16_000_000), 1, "at least one");
        assert_eq!(window_limit(u32::MAX, 1, 1 << 40), u32::MAX);
        assert_eq!(window_limit(1_000_000, 0, 1_000_000), 1000, "no CPU counts as one");
    }

    #[test]
    fn window_is_about_16_ms_of_ticks() {
        assert_eq!(window_shift(4_000_000), 2, "HZ=250: 4 ticks, 16 ms");
        assert_eq!(window_shift(1_000_000), 4, "HZ=1000: 16 ticks");
        assert_eq!(window_shift(10_000_000), 1, "HZ=100: 2 ticks, 20 ms");
        assert_eq!(window_shift(3_333_333), 3, "HZ=300: 8 ticks, 26.7 ms");
        assert_eq!(window_shift(0), 20, "bounded");
    }

    #[test]
    fn defense_sums_the_cpus() {
        let a = SynRate { cookies: 1, to_cookies: 3, to_stateful: 2, ..SynRate::default() };
        let b = SynRate { to_cookies: 1, to_stateful: 1, ..SynRate::default() };
        let d = SynDefense::of([&a, &b]);
        assert_eq!(d, SynDefense { cpus_on_cookies: 1, cpus: 2, to_cookies: 4, to_stateful: 3 });
        assert!(d.on_cookies());
        assert!(!SynDefense::of([&b]).on_cookies());
        assert_eq!(SynMode::from_u8(2), SynMode::Adaptive);
        assert_eq!(SynMode::from_u8(9), SynMode::Cookies);
    }
}
