//! TCP options: MSS (RFC 9293 section 3.2), window scale and timestamps (RFC 7323),
//! SACK-permitted and SACK (RFC 2018). One parser for the XDP program, where it runs as a
//! global BPF function over a zero-padded copy of the options, and for the host (the engine and
//! the data path), where it also returns the SACK blocks: one core, two instances
//! (`parse_options` without SACK blocks, `parse_options_with_sack` with them).
//!
//! Decisions, the same in both worlds:
//! - Stricter than Linux's `tcp_parse_options`, which skips what it does not like: an option
//!   whose length is below 2 or runs past the header, or a known option with the wrong length
//!   (SACK: 2 + 8n bytes with n from 1 to 4), makes the segment malformed (a real stack never
//!   sends one; the XDP program drops it, the engine counts it).
//! - No limit on the number of options other than the 40-byte area: the parser has a slot for
//!   each of the 40 one-byte options (NOPs) the area can hold, so a SYN whose options a
//!   middlebox overwrote with NOPs is read like any other.
//! - A window scale shift above 14 is used as 14 (RFC 7323 section 2.3, "MUST use 14"; Linux
//!   does the same): [`TcpOptions::wscale`] clamps, so no user sees the raw value.
//! - Unknown kinds are skipped by their length (RFC 9293 section 3.1); End of Option List
//!   ends the list; a repeated option overwrites the earlier one.

use crate::wire::{SackRanges, SeqNumber, TcpTimestamp};

/// Most bytes of options a TCP header can hold (a data offset of 15 words).
pub const MAX_OPTIONS_LEN: usize = 40;

/// The largest window scale shift (RFC 7323 section 2.3); larger ones are used as this.
pub const MAX_WINDOW_SHIFT: u8 = 14;

/// Option kinds (IANA "TCP Option Kind Numbers").
pub mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// The options area copied into a zero-padded buffer: bytes past the options read as End of
/// Option List, and every index the parser computes is masked into range (no bounds-check
/// panics, nothing for the verifier to doubt).
pub const OPTIONS_BUF_LEN: usize = 64;

/// A zero-padded options buffer from a slice of at most 40 bytes (the host and tests).
#[must_use]
pub fn options_buf(options: &[u8]) -> [u8; OPTIONS_BUF_LEN] {
    let mut b = [0; OPTIONS_BUF_LEN];
    let n = options.len().min(MAX_OPTIONS_LEN);
    b[..n].copy_from_slice(&options[..n]);
    b
}

#[inline(always)]
fn at(b: &[u8; OPTIONS_BUF_LEN], i: usize) -> u8 {
    b[i & (OPTIONS_BUF_LEN - 1)]
}

/// The options of a segment, SACK blocks aside.
///
/// Flat, `#[repr(C)]`, every byte defined, with a bit per option seen (rather than `Option`
/// fields): the XDP program's global parser function returns it through a pointer, and the
/// verifier needs the pointee to be a sized, plain type. (An `Option`'s undefined payload
/// bytes, copied through memory, once carried half a packet pointer, which the verifier
/// refused.)
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOptions {
    ts_val: u32,
    ts_ecr: u32,
    mss: u16,
    wscale: u8,
    present: u8,
}

const HAS_MSS: u8 = 1;
const HAS_WSCALE: u8 = 2;
const HAS_SACK_PERMITTED: u8 = 4;
const HAS_TIMESTAMPS: u8 = 8;

impl TcpOptions {
    /// Options with the given values (for tests and userspace).
    #[must_use]
    pub fn new(
        mss: Option<u16>,
        wscale: Option<u8>,
        sack_permitted: bool,
        timestamps: Option<TcpTimestamp>,
    ) -> TcpOptions {
        let mut o = TcpOptions::default();
        if let Some(m) = mss {
            o.set_mss(m);
        }
        if let Some(w) = wscale {
            o.set_wscale(w);
        }
        if sack_permitted {
            o.present |= HAS_SACK_PERMITTED;
        }
        if let Some(t) = timestamps {
            o.set_timestamps(t);
        }
        o
    }

    /// The MSS option's value.
    #[inline(always)]
    #[must_use]
    pub fn mss(&self) -> Option<u16> {
        (self.present & HAS_MSS != 0).then_some(self.mss)
    }

    /// The window scale shift, clamped to [`MAX_WINDOW_SHIFT`] (RFC 7323 section 2.3).
    #[inline(always)]
    #[must_use]
    pub fn wscale(&self) -> Option<u8> {
        let shift = if self.wscale > MAX_WINDOW_SHIFT { MAX_WINDOW_SHIFT } else { self.wscale };
        (self.present & HAS_WSCALE != 0).then_some(shift)
    }

    /// Whether SACK-permitted was present.
    #[inline(always)]
    #[must_use]
    pub fn sack_permitted(&self) -> bool {
        self.present & HAS_SACK_PERMITTED != 0
    }

    /// The timestamps option.
    #[inline(always)]
    #[must_use]
    pub fn timestamps(&self) -> Option<TcpTimestamp> {
        (self.present & HAS_TIMESTAMPS != 0)
            .then_some(TcpTimestamp { tsval: self.ts_val, tsecr: self.ts_ecr })
    }

    /// Sets the MSS option.
    #[inline(always)]
    pub fn set_mss(&mut self, mss: u16) {
        self.mss = mss;
        self.present |= HAS_MSS;
    }

    /// Sets the window scale option (as sent; [`TcpOptions::wscale`] clamps).
    #[inline(always)]
    pub fn set_wscale(&mut self, shift: u8) {
        self.wscale = shift;
        self.present |= HAS_WSCALE;
    }

    /// Sets SACK-permitted.
    #[inline(always)]
    pub fn set_sack_permitted(&mut self) {
        self.present |= HAS_SACK_PERMITTED;
    }

    /// Removes the timestamps option.
    pub fn clear_timestamps(&mut self) {
        self.present &= !HAS_TIMESTAMPS;
        self.ts_val = 0;
        self.ts_ecr = 0;
    }

    /// Sets the timestamps option.
    #[inline(always)]
    pub fn set_timestamps(&mut self, t: TcpTimestamp) {
        self.ts_val = t.tsval;
        self.ts_ecr = t.tsecr;
        self.present |= HAS_TIMESTAMPS;
    }
}

/// The options area is malformed: an option length below 2, past the end of the options, or
/// wrong for its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedOptions;

/// The options of a Linux client's SYN in Linux's own layout (`tcp_options_write` in
/// net/ipv4/tcp_output.c): MSS, SACK-permitted, timestamps, NOP, window scale, 20 bytes as five
/// big-endian words. `None` for any other layout (the general parser handles it).
///
/// The XDP program tries this first: most legitimate SYNs are Linux's, and three comparisons
/// cost a fraction of the general parser.
#[inline(always)]
#[must_use]
pub fn parse_linux_syn_options(w: [u32; 5]) -> Option<TcpOptions> {
    if w[0] >> 16 != 0x0204 || w[1] != 0x0402_080a || w[4] >> 8 != 0x01_0303 {
        return None;
    }
    let mut o = TcpOptions::default();
    o.set_mss((w[0] & 0xffff) as u16);
    o.present |= HAS_SACK_PERMITTED;
    o.set_timestamps(TcpTimestamp { tsval: w[2], tsecr: w[3] });
    o.set_wscale((w[4] & 0xff) as u8);
    Some(o)
}

/// Parses the first `len` bytes of `buf` (`len` = data offset * 4 - 20, at most 40); the
/// rest of `buf` must be zero (see [`options_buf`]). SACK options are checked but their
/// blocks not read: the XDP program's instance (a SYN or a third ACK carries none).
#[inline(always)]
pub fn parse_options(
    buf: &[u8; OPTIONS_BUF_LEN],
    len: usize,
) -> Result<TcpOptions, MalformedOptions> {
    let mut unused = SackRanges::new();
    parse::<false>(buf, len, &mut unused)
}

/// As [`parse_options`], with the blocks of the (last) SACK option: the host's instance.
pub fn parse_options_with_sack(
    buf: &[u8; OPTIONS_BUF_LEN],
    len: usize,
) -> Result<(TcpOptions, SackRanges), MalformedOptions> {
    let mut sack = SackRanges::new();
    let o = parse::<true>(buf, len, &mut sack)?;
    Ok((o, sack))
}

/// The blocks of a SACK option of `olen` bytes at `pos` (length checked), if `SACK`.
#[inline(always)]
fn read_sack_blocks<const SACK: bool>(
    buf: &[u8; OPTIONS_BUF_LEN],
    pos: usize,
    olen: usize,
    sack: &mut SackRanges,
) {
    if !SACK {
        return;
    }
    let be32 =
        |i: usize| u32::from_be_bytes([at(buf, i), at(buf, i + 1), at(buf, i + 2), at(buf, i + 3)]);
    let mut blocks = SackRanges::new();
    for i in 0..SackRanges::CAPACITY {
        if 2 + 8 * i < olen {
            let b = pos + 2 + 8 * i;
            blocks.push(SeqNumber::new(be32(b)), SeqNumber::new(be32(b + 4)));
        }
    }
    *sack = blocks;
}

/// The parser core; with `SACK`, the SACK blocks go to `sack`.
///
/// Verifier notes: the parser is unrolled over 40 option slots (the most options 40 bytes can
/// hold). As a loop, the verifier could not prune its states (states inside a loop still being
/// explored are not used for pruning) and gave up after a million instructions; straight-line
/// code prunes normally. Reads are at `pos & 63` in a 64-byte buffer, so no index can fail.
/// `len` is only looked at once, at the end: the zero padding reads as End of Option List, and
/// an option that runs past `len` shows as `pos > len` (branching on `len` at every option
/// split the verifier's paths by ranges of `len` that never merged). Which options were seen
/// is never branched on, so the verifier treats paths that differ only in it as one.
#[inline(always)]
fn parse<const SACK: bool>(
    buf: &[u8; OPTIONS_BUF_LEN],
    len: usize,
    sack: &mut SackRanges,
) -> Result<TcpOptions, MalformedOptions> {
    let mut opts = TcpOptions::default();
    let mut pos = 0;
    let be32 =
        |i: usize| u32::from_be_bytes([at(buf, i), at(buf, i + 1), at(buf, i + 2), at(buf, i + 3)]);
    'slots: {
        macro_rules! option_slot {
            () => {
                if pos >= MAX_OPTIONS_LEN {
                    break 'slots;
                }
                let k = at(buf, pos);
                if k == kind::END {
                    break 'slots;
                }
                if k == kind::NOP {
                    pos += 1;
                } else {
                    let olen = usize::from(at(buf, pos + 1));
                    if olen < 2 {
                        return Err(MalformedOptions);
                    }
                    match (k, olen) {
                        (kind::MSS, 4) => {
                            opts.set_mss(u16::from_be_bytes([at(buf, pos + 2), at(buf, pos + 3)]));
                        }
                        (kind::WINDOW_SCALE, 3) => opts.set_wscale(at(buf, pos + 2)),
                        (kind::SACK_PERMITTED, 2) => opts.present |= HAS_SACK_PERMITTED,
                        (kind::TIMESTAMPS, 10) => {
                            let ts = TcpTimestamp { tsval: be32(pos + 2), tsecr: be32(pos + 6) };
                            opts.set_timestamps(ts);
                        }
                        (kind::SACK, 10 | 18 | 26 | 34) => {
                            read_sack_blocks::<SACK>(buf, pos, olen, sack);
                        }
                        (
                            kind::MSS
                            | kind::WINDOW_SCALE
                            | kind::SACK_PERMITTED
                            | kind::TIMESTAMPS
                            | kind::SACK,
                            _,
                        ) => {
                            return Err(MalformedOptions);
                        }
                        _ => {}
                    }
                    pos += olen;
                }
            };
        }
        macro_rules! ten_slots {
            () => {
                option_slot!();
                option_slot!();
                option_slot!();
                option_slot!();
                option_slot!();
                option_slot!();
                option_slot!();
                option_slot!();
                option_slot!();
                option_slot!();
            };
        }
        // 40 slots: every option 40 bytes can hold (a NOP is one byte).
        ten_slots!();
        ten_slots!();
        ten_slots!();
        ten_slots!();
    }
    if pos > len {
        // The last option ran past the header (into the zero padding).
        return Err(MalformedOptions);
    }
    Ok(opts)
}

#[cfg(test)]
#[expect(clippy::many_single_char_names, reason = "the reference parser's short names")]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The textbook parser (jump from option to option over a slice), to compare with.
    fn reference(b: &[u8]) -> Result<(TcpOptions, SackRanges), MalformedOptions> {
        let (mut mss, mut ws, mut sack_perm, mut ts) = (None, None, false, None);
        let mut sack = SackRanges::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                kind::END => break,
                kind::NOP => i += 1,
                k => {
                    let l = usize::from(*b.get(i + 1).ok_or(MalformedOptions)?);
                    if l < 2 || i + l > b.len() {
                        return Err(MalformedOptions);
                    }
                    let v = &b[i + 2..i + l];
                    let word =
                        |at: usize| u32::from_be_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
                    match (k, l) {
                        (kind::MSS, 4) => mss = Some(u16::from_be_bytes([v[0], v[1]])),
                        (kind::WINDOW_SCALE, 3) => ws = Some(v[0]),
                        (kind::SACK_PERMITTED, 2) => sack_perm = true,
                        (kind::TIMESTAMPS, 10) => {
                            ts = Some(TcpTimestamp { tsval: word(0), tsecr: word(4) });
                        }
                        (kind::SACK, 10 | 18 | 26 | 34) => {
                            sack = SackRanges::new();
                            for block in 0..(l - 2) / 8 {
                                sack.push(
                                    SeqNumber::new(word(8 * block)),
                                    SeqNumber::new(word(8 * block + 4)),
                                );
                            }
                        }
                        (2 | 3 | 4 | 5 | 8, _) => return Err(MalformedOptions),
                        _ => {}
                    }
                    i += l;
                }
            }
        }
        Ok((TcpOptions::new(mss, ws, sack_perm, ts), sack))
    }

    #[test]
    fn linux_layout_fast_path() {
        let b = [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 3, 3, 7];
        let w = words(&b);
        assert_eq!(parse_linux_syn_options(w), Some(parse_options(&options_buf(&b), 20).unwrap()));
        // Windows' layout is not Linux's.
        let b = [2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_linux_syn_options(words(&b)), None);
    }

    fn words(b: &[u8]) -> [u32; 5] {
        let mut w = [0; 5];
        for (i, c) in b.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        w
    }

    proptest! {
        #[test]
        fn linux_fast_path_agrees_with_parser(w in any::<[u32; 5]>(), mss in any::<u16>(), ws in any::<u8>()) {
            let mut w = w;
            // Half the time, force the Linux layout around the random values.
            if mss % 2 == 0 {
                w[0] = 0x0204_0000 | u32::from(mss);
                w[1] = 0x0402_080a;
                w[4] = 0x0103_0300 | u32::from(ws);
            }
            let mut b = [0u8; 20];
            for (i, x) in w.iter().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
            }
            if let Some(fast) = parse_linux_syn_options(w) {
                prop_assert_eq!(Ok(fast), parse_options(&options_buf(&b), 20));
            }
        }

        #[test]
        fn agrees_with_reference_parser(
            b in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), Just(5), Just(8),
                    Just(10), Just(18), any::<u8>()],
                0..=40,
            ),
        ) {
            let host = parse_options_with_sack(&options_buf(&b), b.len());
            prop_assert_eq!(host, reference(&b));
            // The XDP instance differs only in not reading SACK blocks.
            prop_assert_eq!(parse_options(&options_buf(&b), b.len()), host.map(|(o, _)| o));
        }
    }

    #[test]
    fn linux_syn() {
        // Linux 6.x SYN: MSS 1460, SACK-permitted, TS, NOP, WS 7.
        let b = [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 3, 3, 7];
        let o = parse_options(&options_buf(&b), b.len()).unwrap();
        assert_eq!(o.mss(), Some(1460));
        assert!(o.sack_permitted());
        assert_eq!(o.wscale(), Some(7));
        assert_eq!(o.timestamps(), Some(TcpTimestamp { tsval: 0x1234, tsecr: 0 }));
    }

    #[test]
    fn windows_syn_and_padding() {
        // MSS, NOP, WS 8, NOP, NOP, SACK-permitted; then EOL padding that is never read.
        let b = [2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2, 0, 0xff];
        let o = parse_options(&options_buf(&b), b.len()).unwrap();
        assert_eq!(
            (o.mss(), o.wscale(), o.sack_permitted(), o.timestamps()),
            (Some(1460), Some(8), true, None)
        );
    }

    #[test]
    fn unknown_options_are_skipped() {
        let b = [30, 4, 0xaa, 0xbb, 2, 4, 0x02, 0x18];
        assert_eq!(parse_options(&options_buf(&b), b.len()).unwrap().mss(), Some(536));
    }

    #[test]
    fn window_scale_above_14_is_used_as_14() {
        let o = parse_options(&options_buf(&[3, 3, 15, 0]), 4).unwrap();
        assert_eq!(o.wscale(), Some(14), "RFC 7323 section 2.3");
        assert_eq!(TcpOptions::new(None, Some(200), false, None).wscale(), Some(14));
    }

    #[test]
    fn sack_blocks_are_read_on_the_host_only() {
        // NOP NOP SACK with two blocks.
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&[1, 1, 5, 18]);
        for (i, v) in [100u32, 200, 300, 400].iter().enumerate() {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        let (o, sack) = parse_options_with_sack(&options_buf(&b), b.len()).unwrap();
        assert_eq!(o, TcpOptions::default());
        assert_eq!(
            sack.as_slice(),
            [
                (SeqNumber::new(100), SeqNumber::new(200)),
                (SeqNumber::new(300), SeqNumber::new(400))
            ]
        );
        assert_eq!(parse_options(&options_buf(&b), b.len()), Ok(TcpOptions::default()));
    }

    #[test]
    fn forty_nops_are_forty_options() {
        assert_eq!(parse_options(&options_buf(&[1; 40]), 40), Ok(TcpOptions::default()));
        // A SYN whose timestamps a middlebox overwrote with NOPs: 14 options.
        let b = [2, 4, 5, 0xb4, 4, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 7];
        let o = parse_options(&options_buf(&b), b.len()).unwrap();
        assert_eq!((o.mss(), o.wscale(), o.timestamps()), (Some(1460), Some(7), None));
    }

    #[test]
    fn malformed() {
        let p = |b: &[u8], len| parse_options(&options_buf(b), len);
        assert_eq!(p(&[2, 4, 5], 3), Err(MalformedOptions));
        assert_eq!(p(&[2, 3, 5, 0], 4), Err(MalformedOptions));
        assert_eq!(p(&[30, 1, 0, 0], 4), Err(MalformedOptions));
        assert_eq!(p(&[8, 10, 0, 0], 4), Err(MalformedOptions));
        assert_eq!(p(&[5, 2, 0, 0], 4), Err(MalformedOptions), "SACK without a block");
        assert_eq!(p(&[5, 6, 0, 0, 0, 0, 0, 0], 8), Err(MalformedOptions), "SACK of 6 bytes");
        assert_eq!(p(&[4, 3, 0, 0], 4), Err(MalformedOptions), "SACK-permitted with a body");
        // An option that runs past `len` (into the padding) is malformed.
        assert_eq!(p(&[1, 1, 2, 4], 4), Err(MalformedOptions));
        assert_eq!(p(&[1, 1, 1, 2], 4), Err(MalformedOptions), "kind without its length");
    }
}
