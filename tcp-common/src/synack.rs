//! The SYN-ACK we answer a SYN with: which options (from the SYN's and the configuration),
//! and its TCP header as fixed 32-bit words, so the XDP program writes and checksums a fixed
//! amount of data (6 or 10 words) without reading back what it wrote.
//!
//! Options, in Linux's order (`tcp_options_write`), 4 or 20 bytes:
//!
//! ```text
//! without timestamps:  | MSS 02 04 mm mm |
//! with timestamps:     | MSS 02 04 mm mm | 04 02 (SACK-perm) or 01 01 | 08 0a TSval TSecr |
//!                      | 01 03 03 ws (NOP, window scale) or 01 01 01 01 |
//! ```
//!
//! Without timestamps the cookie has nowhere to keep window scale and SACK, so, as Linux does
//! for a cookie SYN-ACK (`tcp_conn_request` clears the options), we offer neither.

use crate::checksum::Sum;
use crate::config::{Config, ConfigFlags};
use crate::cookie::{self, CookieTuple, SynCookie, TsOptions};
use crate::wire::options::TcpOptions;

/// TCP flags as bits of the flags byte, for the XDP program's header words: the shared
/// vocabulary's [`crate::wire::Flags`].
pub mod flags {
    use crate::wire::Flags;

    pub const FIN: u8 = Flags::FIN.bits();
    pub const SYN: u8 = Flags::SYN.bits();
    pub const RST: u8 = Flags::RST.bits();
    pub const PSH: u8 = Flags::PSH.bits();
    pub const ACK: u8 = Flags::ACK.bits();
    pub const URG: u8 = Flags::URG.bits();
    pub const ECE: u8 = Flags::ECE.bits();
    pub const CWR: u8 = Flags::CWR.bits();
}

/// Length of a SYN-ACK TCP header without timestamps (MSS only).
pub const SYNACK_LEN_NO_TS: usize = 24;
/// Length of a SYN-ACK TCP header with timestamps (all options).
pub const SYNACK_LEN_TS: usize = 40;

/// What we answer a SYN with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynAck {
    /// Our ISN and timestamp offset.
    pub cookie: SynCookie,
    /// The MSS we advertise (what our side can receive).
    pub mss: u16,
    /// Our window field (never scaled in a SYN-ACK, RFC 7323 section 2.2).
    pub window: u16,
    /// (TSval, TSecr), if the SYN had timestamps and they are enabled.
    pub timestamps: Option<(u32, u32)>,
    /// SACK-permitted offered.
    pub sack: bool,
    /// Our window scale shift, if offered.
    pub wscale: Option<u8>,
    /// ECE set: ECN accepted (RFC 3168 section 6.1.1).
    pub ecn: bool,
}

/// The SYN-ACK for a SYN with `client_isn`, options `syn`, and `ecn_setup` (ECE and CWR both
/// set). `mss_clamp` is our MSS for the family (`Config::mss_v4` / `mss_v6`); `now_ts` is
/// [`cookie::ts_clock`] of now.
#[inline(always)]
#[must_use]
pub fn plan_synack<T: CookieTuple>(
    config: &Config,
    tuple: &T,
    client_isn: u32,
    syn: &TcpOptions,
    ecn_setup: bool,
    mss_clamp: u16,
    now_ts: u32,
) -> SynAck {
    let table = tuple.mss_table();
    let peer_mss = match syn.mss() {
        Some(m) if m != 0 => m,
        _ => table[0],
    };
    let send_mss = if peer_mss < mss_clamp { peer_mss } else { mss_clamp };
    let c = config.secrets.make(tuple, client_isn, cookie::mss_index(table, send_mss));
    let f = ConfigFlags(config.flags);
    let (timestamps, sack, wscale, ecn) = match syn.timestamps() {
        Some(ts) if f.contains(ConfigFlags::TIMESTAMPS) => {
            let sack = syn.sack_permitted() && f.contains(ConfigFlags::SACK);
            let ecn = ecn_setup && f.contains(ConfigFlags::ECN);
            // `wscale()` is already clamped to 14 (RFC 7323 section 2.3).
            let peer_ws = if f.contains(ConfigFlags::WINDOW_SCALING) { syn.wscale() } else { None };
            let opts = TsOptions { wscale: peer_ws, sack, ecn };
            let tsval = cookie::encode_tsval(now_ts, c.ts_offset, opts);
            let ours =
                if config.wscale > cookie::MAX_WSCALE { cookie::MAX_WSCALE } else { config.wscale };
            (Some((tsval, ts.tsval)), sack, peer_ws.map(|_| ours), ecn)
        }
        _ => (None, false, None, false),
    };
    SynAck { cookie: c, mss: mss_clamp, window: config.window, timestamps, sack, wscale, ecn }
}

/// A TCP header as big-endian 32-bit words (word `i` is bytes `4i..4i+4`) and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderWords {
    pub words: [u32; 10],
    /// 6 or 10.
    pub len_words: usize,
}

impl HeaderWords {
    /// Ones'-complement sum of the header (checksum field zero).
    #[inline(always)]
    #[must_use]
    pub fn sum(&self) -> Sum {
        let w = &self.words;
        let mut s = Sum::default();
        // Fixed work: words 6..10 are zero when there are only 6.
        for v in w {
            s = s.add32(*v);
        }
        s
    }

    /// The header bytes (for userspace and tests).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut b = [0; 40];
        for (i, w) in self.words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        b
    }
}

/// The SYN-ACK's TCP header, checksum zero. Ports are the SYN's (client -> server).
#[inline(always)]
#[must_use]
pub fn synack_header(
    client_port: u16,
    server_port: u16,
    client_isn: u32,
    s: &SynAck,
) -> HeaderWords {
    let mut w = [0u32; 10];
    w[0] = (u32::from(server_port) << 16) | u32::from(client_port);
    w[1] = s.cookie.isn;
    w[2] = client_isn.wrapping_add(1);
    let (len_words, data_offset): (usize, u32) =
        if s.timestamps.is_some() { (10, 10) } else { (6, 6) };
    let fl = flags::SYN | flags::ACK | if s.ecn { flags::ECE } else { 0 };
    w[3] = (data_offset << 28) | (u32::from(fl) << 16) | u32::from(s.window);
    w[4] = 0;
    w[5] = 0x0204_0000 | u32::from(s.mss);
    if let Some((tsval, tsecr)) = s.timestamps {
        w[6] = if s.sack { 0x0402_080a } else { 0x0101_080a };
        w[7] = tsval;
        w[8] = tsecr;
        w[9] = match s.wscale {
            Some(ws) => 0x0103_0300 | u32::from(ws),
            None => 0x0101_0101,
        };
    }
    HeaderWords { words: w, len_words }
}

/// Sum of the TCP pseudo-header (RFC 9293 section 3.1; RFC 8200 section 8.1 for IPv6), given
/// the sum of both addresses (unchanged when they are swapped) and the TCP length.
#[inline(always)]
#[must_use]
pub fn pseudo_header_sum(addr_sum: Sum, tcp_len: u16) -> Sum {
    addr_sum.add16(6).add16(tcp_len)
}

#[cfg(test)]
#[expect(clippy::many_single_char_names, reason = "short names in tests")]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::cookie::{CookieKey, CookieSecrets, TupleV4};
    use crate::wire::TcpTimestamp;
    use crate::wire::options::{options_buf, parse_options};

    const T: TupleV4 = TupleV4 {
        client: [10, 0, 0, 2],
        server: [10, 0, 0, 1],
        client_port: 40000,
        server_port: 80,
    };

    fn config() -> Config {
        let mut c = Config::EMPTY;
        c.secrets = CookieSecrets {
            keys: [CookieKey { k0: 1, k1: 2 }; 2],
            current: 0,
            counter: 3,
            ..CookieSecrets::default()
        };
        c
    }

    fn linux_syn() -> TcpOptions {
        TcpOptions::new(Some(1460), Some(7), true, Some(TcpTimestamp { tsval: 12345, tsecr: 0 }))
    }

    #[test]
    fn full_options_roundtrip_through_our_parser() {
        let c = config();
        let s = plan_synack(&c, &T, 1000, &linux_syn(), false, 1460, 777);
        let h = synack_header(40000, 80, 1000, &s);
        let b = h.to_bytes();
        assert_eq!(h.len_words, 10);
        assert_eq!(b[13], flags::SYN | flags::ACK);
        let o = parse_options(&options_buf(&b[20..40]), 20).unwrap();
        assert_eq!(o.mss(), Some(1460));
        assert_eq!(o.wscale(), Some(c.wscale));
        assert!(o.sack_permitted());
        let ts = o.timestamps().unwrap();
        assert_eq!(ts.tsecr, 12345);
        let v = c.secrets.check(&T, 1000, s.cookie.isn).unwrap();
        assert_eq!(v.mss, 1460);
        let opts = cookie::decode_tsecr(ts.tsval, v.ts_offset);
        assert_eq!(opts, TsOptions { wscale: Some(7), sack: true, ecn: false });
    }

    #[test]
    fn without_timestamps_only_mss() {
        let mut syn = linux_syn();
        syn.clear_timestamps();
        let s = plan_synack(&config(), &T, 1, &syn, true, 1400, 0);
        assert_eq!((s.sack, s.wscale, s.ecn, s.timestamps), (false, None, false, None));
        let h = synack_header(40000, 80, 1, &s);
        assert_eq!(h.len_words, 6);
        // The MSS class is clamped by our MSS: 1400 -> 1300.
        assert_eq!(config().secrets.check(&T, 1, s.cookie.isn).unwrap().mss, 1300);
    }

    #[test]
    fn disabled_features_are_not_offered() {
        let mut c = config();
        c.flags = ConfigFlags::TIMESTAMPS.0;
        let s = plan_synack(&c, &T, 1, &linux_syn(), true, 1460, 0);
        assert_eq!((s.sack, s.wscale, s.ecn), (false, None, false));
        assert!(s.timestamps.is_some());
        c.flags = 0;
        assert_eq!(plan_synack(&c, &T, 1, &linux_syn(), true, 1460, 0).timestamps, None);
    }

    #[test]
    fn huge_wscale_is_clamped_to_14() {
        let mut syn = linux_syn();
        syn.set_wscale(200);
        let c = config();
        let s = plan_synack(&c, &T, 1, &syn, false, 1460, 0);
        let v = c.secrets.check(&T, 1, s.cookie.isn).unwrap();
        let o = cookie::decode_tsecr(s.timestamps.unwrap().0, v.ts_offset);
        assert_eq!(o.wscale, Some(14));
    }
}
