//! What userspace tells the XDP program, in one `#[repr(C)]` value so the hot path needs a
//! single map lookup to learn everything it needs.

use crate::adaptive::{self, RateParams, SynMode};
use crate::cookie::{CookieKey, CookieSecrets};
use crate::flow::FlowValue;

/// The set of protected TCP ports, as a 65536-bit bitmap: membership is one load and one
/// bit test, with no loop for the verifier to bound.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PortSet {
    bits: [u64; 1024],
}

impl PortSet {
    /// Most ports one shield protects (a product limit, not a layout limit).
    pub const MAX_PORTS: usize = 64;

    /// The empty set.
    pub const EMPTY: PortSet = PortSet { bits: [0; 1024] };

    /// Adds `port` to the set.
    pub fn insert(&mut self, port: u16) {
        self.bits[usize::from(port >> 6)] |= 1 << (port & 63);
    }

    /// Whether `port` is in the set.
    #[inline(always)]
    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        // `port >> 6` is at most 1023: the index is always in bounds, and the BPF verifier
        // can see that from the shift.
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    /// Number of ports in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// The ports in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|p| self.contains(*p))
    }
}

impl core::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Feature switches in [`Config::flags`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigFlags(pub u32);

impl ConfigFlags {
    /// Answer timestamps (and so carry window scale, SACK and ECN in the cookie).
    pub const TIMESTAMPS: ConfigFlags = ConfigFlags(1);
    /// Offer SACK-permitted when the SYN does (needs timestamps).
    pub const SACK: ConfigFlags = ConfigFlags(2);
    /// Offer window scaling when the SYN does (needs timestamps).
    pub const WINDOW_SCALING: ConfigFlags = ConfigFlags(4);
    /// Accept ECN when the SYN asks for it (needs timestamps; off by default: the data path
    /// must then echo CE marks).
    pub const ECN: ConfigFlags = ConfigFlags(8);
    /// Answer an ACK whose cookie is invalid with a RST (off by default: under an ACK flood a
    /// RST per packet is reflection).
    pub const RST_INVALID_ACK: ConfigFlags = ConfigFlags(16);
    /// Userspace marks the flow-map entries of connections in TIME-WAIT with
    /// [`FlowValue::TIME_WAIT`] (and clears the mark when a new handshake takes the tuple
    /// over). Then a SYN for a tuple in the map that is not marked is a live connection's, and
    /// the XDP program hands it to userspace (FLOW, RFC 5961 section 4: a challenge ACK)
    /// instead of answering it with a cookie; each SYN costs a flow-map lookup. Without it (a
    /// data path that keeps TIME-WAIT entries unmarked) only [`FlowValue::HALF_OPEN`] entries
    /// take SYNs this way (in stateful and adaptive modes; cookie mode skips the lookup), and
    /// other SYNs for known tuples get cookies, so that a client reusing a port in TIME-WAIT
    /// still reopens it with a cookie handshake.
    pub const TIME_WAIT_MARKED: ConfigFlags = ConfigFlags(32);
    /// Linux's defaults: timestamps, SACK and window scaling on.
    pub const DEFAULT: ConfigFlags = ConfigFlags(1 | 2 | 4);

    /// Whether every flag of `f` is set.
    #[inline(always)]
    #[must_use]
    pub fn contains(self, f: ConfigFlags) -> bool {
        self.0 & f.0 == f.0
    }

    /// Whether a connection that negotiated what `flow` says (from a cookie's TSecr bits)
    /// uses only options this configuration offers. The bits are the peer's echo of our TSval,
    /// outside the cookie's MAC, so a client can claim any of them; like Linux
    /// (`cookie_timestamp_decode`, `cookie_ecn_ok`), a third ACK claiming an option we did not
    /// offer is refused.
    #[inline(always)]
    #[must_use]
    pub fn offers(self, flow: &FlowValue) -> bool {
        let claims = |bit: u8| flow.flags & bit != 0;
        !(claims(FlowValue::TIMESTAMPS) && !self.contains(ConfigFlags::TIMESTAMPS)
            || claims(FlowValue::SACK) && !self.contains(ConfigFlags::SACK)
            || claims(FlowValue::ECN) && !self.contains(ConfigFlags::ECN)
            || flow.peer_wscale != FlowValue::NO_WSCALE
                && !self.contains(ConfigFlags::WINDOW_SCALING))
    }
}

/// The single entry of the `SYNSHIELD_CONFIG` array map: everything the XDP program needs, in
/// one lookup.
///
/// Userspace rewrites the whole entry with one map update; the XDP program may read it
/// meanwhile. Fields that change while running (the time counter, the key slot, a key) are
/// naturally aligned words, and key rotation is done in two updates
/// ([`crate::cookie::CookieSecrets::install_next_key`], then `activate_next_key`) so that the
/// key that makes cookies is never one being written.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Ports whose SYNs and ACKs the program handles; all other traffic is passed.
    pub ports: PortSet,
    /// Cookie keys and the time counter.
    pub secrets: CookieSecrets,
    /// [`ConfigFlags`] bits.
    pub flags: u32,
    /// Our MSS over IPv4: advertised in the SYN-ACK and the cap of the cookie's MSS class.
    /// At most the interface MTU - 40 ([`Config::clamp_mss_to_mtu`]).
    pub mss_v4: u16,
    /// Our MSS over IPv6: at most the interface MTU - 60.
    pub mss_v6: u16,
    /// Window field of the SYN-ACK.
    pub window: u16,
    /// Our window scale shift, offered when the SYN offers one (0..=14).
    pub wscale: u8,
    /// TTL (IPv4) / hop limit (IPv6) of what we send.
    pub ttl: u8,
    /// Adaptive mode: SYNs per window on one CPU above which it answers with cookies
    /// (`adaptive::window_limit`).
    pub syn_window_limit: u32,
    /// How SYNs are answered: a [`SynMode`] value.
    pub syn_mode: u8,
    /// Adaptive mode: the window is `2^syn_window_shift` jiffies (kernel ticks).
    pub syn_window_shift: u8,
    /// Adaptive mode: calm windows in a row before a CPU goes back to stateful.
    pub syn_calm_windows: u8,
    /// Zero (keeps the layout free of padding).
    pub reserved: [u8; 5],
}

impl Config {
    /// A configuration that protects nothing: the program passes everything. Other fields
    /// hold the defaults; the keys are zero until userspace writes real ones.
    pub const EMPTY: Config = Config {
        ports: PortSet::EMPTY,
        secrets: CookieSecrets {
            keys: [CookieKey { k0: 0, k1: 0 }, CookieKey { k0: 0, k1: 0 }],
            current: 0,
            counter: 0,
            ts_base: 0,
            schedule: CookieSecrets::HOST,
        },
        flags: ConfigFlags::DEFAULT.0,
        mss_v4: 1460,
        mss_v6: 1440,
        window: 65535,
        wscale: 7,
        ttl: 64,
        syn_window_limit: 160,
        syn_mode: SynMode::Cookies as u8,
        syn_window_shift: 2,
        syn_calm_windows: adaptive::DEFAULT_CALM_WINDOWS,
        reserved: [0; 5],
    };

    /// Sets how SYNs are answered: `mode`, and for adaptive mode the threshold in SYNs per
    /// second summed over the `receiving_cpus` CPUs that run the program, on a kernel whose
    /// timer tick is `tick_ns` (the window is about 16 ms of ticks; default calm windows).
    pub fn set_syn_mode(
        &mut self,
        mode: SynMode,
        syn_threshold: u32,
        receiving_cpus: u32,
        tick_ns: u64,
    ) {
        self.syn_mode = mode as u8;
        self.syn_window_shift = adaptive::window_shift(tick_ns);
        self.syn_calm_windows = adaptive::DEFAULT_CALM_WINDOWS;
        let window_ns = tick_ns.max(1) << self.syn_window_shift;
        self.syn_window_limit = adaptive::window_limit(syn_threshold, receiving_cpus, window_ns);
    }

    /// How SYNs are answered.
    #[must_use]
    pub fn syn_mode(&self) -> SynMode {
        SynMode::from_u8(self.syn_mode)
    }

    /// What a CPU judges its SYN rate by (adaptive mode).
    #[inline(always)]
    #[must_use]
    pub fn rate_params(&self) -> RateParams {
        RateParams {
            limit: self.syn_window_limit,
            shift: self.syn_window_shift,
            calm_windows: self.syn_calm_windows,
        }
    }

    /// Lowers the MSS values to what an interface MTU allows (IPv4 and TCP headers 40 bytes,
    /// IPv6 and TCP 60).
    pub fn clamp_mss_to_mtu(&mut self, mtu: u32) {
        let cap = |hdr: u32| u16::try_from(mtu.saturating_sub(hdr)).unwrap_or(u16::MAX);
        self.mss_v4 = self.mss_v4.min(cap(40));
        self.mss_v6 = self.mss_v6.min(cap(60));
    }
}

#[cfg(feature = "user")]
// SAFETY: `Config` is `#[repr(C)]`, `Copy`, made only of integers, and has no padding.
unsafe impl aya::Pod for Config {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_set_membership() {
        let mut s = PortSet::EMPTY;
        assert!(s.is_empty());
        for p in [0, 1, 63, 64, 80, 443, 65535] {
            s.insert(p);
        }
        for p in [0, 1, 63, 64, 80, 443, 65535] {
            assert!(s.contains(p), "{p}");
        }
        for p in [2, 62, 65, 79, 81, 65534] {
            assert!(!s.contains(p), "{p}");
        }
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().collect::<std::vec::Vec<_>>(), [0, 1, 63, 64, 80, 443, 65535]);
    }

    #[test]
    fn config_has_no_padding() {
        assert_eq!(core::mem::size_of::<Config>(), 8192 + 48 + 4 + 2 + 2 + 2 + 1 + 1 + 4 + 3 + 5);
    }

    #[test]
    fn options_not_offered_are_refused() {
        let all = FlowValue {
            flags: FlowValue::TIMESTAMPS | FlowValue::SACK | FlowValue::ECN,
            peer_wscale: 7,
            ..FlowValue::default()
        };
        let every = ConfigFlags(ConfigFlags::DEFAULT.0 | ConfigFlags::ECN.0);
        assert!(every.offers(&all));
        assert!(!ConfigFlags::DEFAULT.offers(&all), "ECN is off by default");
        for (off, claim) in [
            (ConfigFlags::TIMESTAMPS, FlowValue { flags: FlowValue::TIMESTAMPS, ..all }),
            (ConfigFlags::SACK, FlowValue { flags: FlowValue::SACK, ..all }),
            (ConfigFlags::ECN, FlowValue { flags: FlowValue::ECN, ..all }),
        ] {
            let claim = FlowValue { peer_wscale: FlowValue::NO_WSCALE, ..claim };
            assert!(every.offers(&claim));
            assert!(!ConfigFlags(every.0 & !off.0).offers(&claim), "{off:?}");
        }
        let ws_only = FlowValue { flags: 0, ..all };
        assert!(!ConfigFlags(every.0 & !ConfigFlags::WINDOW_SCALING.0).offers(&ws_only));
        let nothing = FlowValue { peer_wscale: FlowValue::NO_WSCALE, ..ws_only };
        assert!(ConfigFlags(0).offers(&nothing), "a connection without options is always fine");
    }

    #[test]
    fn syn_mode_and_its_window_limit() {
        let mut c = Config::EMPTY;
        assert_eq!(c.syn_mode(), SynMode::Cookies, "cookies by default");
        let default_window = adaptive::DEFAULT_TICK_NS << c.syn_window_shift;
        assert_eq!(c.rate_params().limit, adaptive::window_limit(10_000, 1, default_window));
        c.set_syn_mode(SynMode::Adaptive, 20_000, 4, 4_000_000);
        assert_eq!(c.syn_mode(), SynMode::Adaptive);
        assert_eq!(c.rate_params(), RateParams { limit: 80, shift: 2, calm_windows: 8 });
        c.set_syn_mode(SynMode::Adaptive, 20_000, 4, 1_000_000);
        assert_eq!(c.rate_params(), RateParams { limit: 80, shift: 4, calm_windows: 8 });
    }

    #[test]
    fn mss_clamp() {
        let mut c = Config::EMPTY;
        c.clamp_mss_to_mtu(1400);
        assert_eq!((c.mss_v4, c.mss_v6), (1360, 1340));
        c.clamp_mss_to_mtu(9000);
        assert_eq!((c.mss_v4, c.mss_v6), (1360, 1340));
    }

    extern crate std;
}
