//! The synshield XDP program: answers SYNs to protected ports with SYN-cookie SYN-ACKs
//! (`XDP_TX`), validates third ACKs and hands their flows to userspace (`XDP_REDIRECT` to an
//! AF_XDP socket), and passes everything that is not ours to the kernel.
//!
//! Pipeline (after Linux's `xdp_synproxy_kern.c`):
//!
//! ```text
//! dissect_frame ─ ipv4 / ipv6 ─ tcp ─┬─ syn_to_synack            SYN: XDP_TX a SYN-ACK
//!  (VLAN tags)    (per layout)       │   ├─ check_syn            flags, payload, checksum, options
//!                                    │   └─ write_synack         cookie, options, rewrite in place
//!                                    └─ flow_or_cookie_ack       known flow: redirect
//!                                        ├─ validate_cookie_ack  valid third ACK: insert, redirect
//!                                        └─ ack_to_rst           invalid ACK: drop, or RST if asked
//! ```
//!
//! `options.rs` reads TCP options (a fast path for Linux's layout, the shared parser as a
//! global BPF function), `packet.rs` does the packet accesses, `bench.rs` holds the reference
//! programs `cargo xtask bench` compares with. The cookie, the SYN-ACK's layout, the option
//! parser and the checksums are `tcp-common`'s, shared with userspace and its tests.
//!
//! Actions: DROP for bad or hostile input, PASS for traffic that is not ours, TX for our
//! answers, REDIRECT for the flows userspace serves. Each frame adds one to `RxFrames` and one
//! to exactly one verdict counter.
//!
//! The frame layout (untagged, one or two VLAN tags; IPv4 or IPv6) is a const generic: every
//! header offset is a compile-time constant, the form of packet access the verifier checks
//! most reliably (see `packet.rs`). The six instances cost code size, not time.
#![no_std]
#![no_main]

mod bench;
mod options;
mod packet;
mod probes;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_adjust_tail},
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use tcp_common::{
    Config, ConfigFlags, Counter, FlowKey, FlowValue,
    checksum::{Sum, verifies},
    cookie::{self, CookieTuple, TupleV4, TupleV6},
    counters::COUNTER_COUNT,
    flow::{FLOW_TABLE_SIZE, MAX_RX_QUEUES},
    proto::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPV4_HLEN,
        IPV6_HLEN, TCP_HLEN, VLAN_HLEN,
    },
    synack::{self, flags},
    wire::options::TcpOptions,
};

use crate::packet::{
    in_bounds, load_4, load_be16, load_be32, load_be64, load8, store_4, store_be16, store_be32,
    store_be64, swap_macs,
};

#[map(name = "SYNSHIELD_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "SYNSHIELD_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[map(name = "SYNSHIELD_FLOWS")]
static FLOWS: HashMap<FlowKey, FlowValue> = HashMap::with_max_entries(FLOW_TABLE_SIZE, 0);

#[map(name = "SYNSHIELD_XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_RX_QUEUES, 0);

/// IPv4 "more fragments" flag and fragment offset (RFC 791).
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;
const IP_DF: u16 = 0x4000;

/// The counter to add one to and the XDP action, packed in one register: BPF subprograms
/// return a scalar (a returned struct would be a pointer to the callee's stack, which the
/// verifier refuses).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Verdict(u64);

impl Verdict {
    #[inline(always)]
    fn new(c: Counter, action: u32) -> Verdict {
        Verdict((u64::from(c as u32) << 32) | u64::from(action))
    }

    #[inline(always)]
    fn counter_index(self) -> u32 {
        (self.0 >> 32) as u32
    }

    #[inline(always)]
    fn action(self) -> u32 {
        self.0 as u32
    }
}

#[inline(always)]
fn count(index: u32) {
    if let Some(v) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *v += 1 };
    }
}

#[inline(always)]
fn drop(c: Counter) -> Verdict {
    Verdict::new(c, XDP_DROP)
}

#[inline(always)]
fn pass(c: Counter) -> Verdict {
    Verdict::new(c, XDP_PASS)
}

#[xdp]
pub fn synshield(ctx: XdpContext) -> u32 {
    count(Counter::RxFrames as u32);
    let v = dissect_frame(&ctx);
    count(v.counter_index());
    v.action()
}

/// Ethernet and up to two VLAN tags (802.1ad outer, 802.1Q inner), then the IP layer for that
/// layout.
#[inline(always)]
fn dissect_frame(ctx: &XdpContext) -> Verdict {
    let (data, end) = (ctx.data(), ctx.data_end());
    if !in_bounds(data, end, ETH_HLEN + 2 * VLAN_HLEN) {
        // Too short for two tags: untagged only (a SYN is at least 54 bytes anyway).
        if !in_bounds(data, end, ETH_HLEN) {
            return drop(Counter::DropTruncated);
        }
        // SAFETY: 14 bytes checked.
        return match unsafe { load_be16(data + 12) } {
            ETH_P_IP => ipv4::<14, 34>(ctx),
            ETH_P_IPV6 => ipv6::<14, 54>(ctx),
            _ => pass(Counter::PassNotIp),
        };
    }
    // SAFETY: 22 bytes checked.
    let (t0, t1, t2) =
        unsafe { (load_be16(data + 12), load_be16(data + 16), load_be16(data + 20)) };
    let vlan = |t: u16| t == ETH_P_8021Q || t == ETH_P_8021AD;
    match (t0, vlan(t0), t1, vlan(t1), t2) {
        (ETH_P_IP, ..) => ipv4::<14, 34>(ctx),
        (ETH_P_IPV6, ..) => ipv6::<14, 54>(ctx),
        (_, true, ETH_P_IP, ..) => ipv4::<18, 38>(ctx),
        (_, true, ETH_P_IPV6, ..) => ipv6::<18, 58>(ctx),
        (_, true, _, true, ETH_P_IP) => ipv4::<22, 42>(ctx),
        (_, true, _, true, ETH_P_IPV6) => ipv6::<22, 62>(ctx),
        _ => pass(Counter::PassNotIp),
    }
}

#[inline(always)]
fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

/// IPv4 with the IP header at `L2` and TCP at `L4 = L2 + 20`.
#[inline(always)]
fn ipv4<const L2: usize, const L4: usize>(ctx: &XdpContext) -> Verdict {
    const { assert!(L4 == L2 + IPV4_HLEN) };
    let (data, end) = (ctx.data(), ctx.data_end());
    if !in_bounds(data, end, L2 + IPV4_HLEN) {
        return drop(Counter::DropTruncated);
    }
    let ip = data + L2;
    // SAFETY: 20 bytes of IP header checked.
    let (vihl, frag, proto) = unsafe { (load8(ip), load_be16(ip + 6), load8(ip + 9)) };
    if vihl >> 4 != 4 || vihl & 0xf < 5 {
        // Not a valid IPv4 header: the kernel's to count and drop.
        return pass(Counter::PassNotIp);
    }
    if proto != IPPROTO_TCP {
        return pass(Counter::PassNotTcp);
    }
    if frag & IP_OFFSET != 0 {
        return pass(Counter::PassNoTcpHeader);
    }
    let Some(cfg) = config() else { return pass(Counter::PassOtherPort) };
    if vihl & 0xf != 5 {
        // IPv4 options: find the port at a variable offset (one check), drop if it is ours.
        let p = ip + usize::from(vihl & 0xf) * 4;
        if p + 4 > end {
            return drop(Counter::DropTruncated);
        }
        // SAFETY: 4 bytes checked.
        let dport = unsafe { load_be16(p + 2) };
        return if cfg.ports.contains(dport) {
            drop(Counter::DropIpOptions)
        } else {
            pass(Counter::PassOtherPort)
        };
    }
    if !in_bounds(data, end, L4 + 4) {
        return drop(Counter::DropTruncated);
    }
    // SAFETY: TCP ports checked.
    let dport = unsafe { load_be16(data + L4 + 2) };
    if !cfg.ports.contains(dport) {
        return pass(Counter::PassOtherPort);
    }
    if frag & IP_MF != 0 {
        return drop(Counter::DropIpFragment);
    }
    if !in_bounds(data, end, L4 + TCP_HLEN) {
        return drop(Counter::DropTruncated);
    }
    let mut s = Sum::default();
    for i in 0..IPV4_HLEN / 4 {
        // SAFETY: 20 bytes of IP header checked.
        s = s.add32(unsafe { load_be32(ip + 4 * i) });
    }
    if !verifies(s) {
        return drop(Counter::DropBadChecksum);
    }
    // SAFETY: as above.
    let total = usize::from(unsafe { load_be16(ip + 2) });
    if total < IPV4_HLEN + TCP_HLEN || L2 + total > end - data {
        return drop(Counter::DropTruncated);
    }
    // SAFETY: as above.
    let addrs = unsafe { V4 { src: load_4(ip + 12), dst: load_4(ip + 16) } };
    tcp::<L2, L4, V4>(ctx, cfg, &addrs, total - IPV4_HLEN)
}

/// IPv6 extension headers (RFC 8200 section 4) that have the generic (next, length) form.
#[inline(always)]
fn is_generic_ext_header(next: u8) -> bool {
    // Hop-by-hop options, routing, destination options.
    matches!(next, 0 | 43 | 60)
}
const IPV6_FRAGMENT: u8 = 44;

/// IPv6 with the IP header at `L2` and (without extension headers) TCP at `L4 = L2 + 40`.
#[inline(always)]
fn ipv6<const L2: usize, const L4: usize>(ctx: &XdpContext) -> Verdict {
    const { assert!(L4 == L2 + IPV6_HLEN) };
    let (data, end) = (ctx.data(), ctx.data_end());
    if !in_bounds(data, end, L2 + IPV6_HLEN) {
        return drop(Counter::DropTruncated);
    }
    let ip = data + L2;
    // SAFETY: 40 bytes of IP header checked.
    let (version, payload_len, next) =
        unsafe { (load8(ip) >> 4, usize::from(load_be16(ip + 4)), load8(ip + 6)) };
    if version != 6 {
        return pass(Counter::PassNotIp);
    }
    if next != IPPROTO_TCP {
        if is_generic_ext_header(next) || next == IPV6_FRAGMENT {
            return ipv6_ext_headers::<L4>(ctx, next);
        }
        return pass(Counter::PassNotTcp);
    }
    let Some(cfg) = config() else { return pass(Counter::PassOtherPort) };
    if !in_bounds(data, end, L4 + 4) {
        return drop(Counter::DropTruncated);
    }
    // SAFETY: TCP ports checked.
    let dport = unsafe { load_be16(data + L4 + 2) };
    if !cfg.ports.contains(dport) {
        return pass(Counter::PassOtherPort);
    }
    if !in_bounds(data, end, L4 + TCP_HLEN) || L4 + payload_len > end - data {
        return drop(Counter::DropTruncated);
    }
    // SAFETY: 40 bytes of IP header checked.
    let addrs = unsafe {
        V6 {
            src: [load_be64(ip + 8), load_be64(ip + 16)],
            dst: [load_be64(ip + 24), load_be64(ip + 32)],
        }
    };
    tcp::<L2, L4, V6>(ctx, cfg, &addrs, payload_len)
}

/// Walks up to four IPv6 extension headers to find out whether the segment is TCP to a
/// protected port (then it is dropped: we answer only plain SYNs) or not ours (passed).
#[inline(always)]
fn ipv6_ext_headers<const L4: usize>(ctx: &XdpContext, first: u8) -> Verdict {
    let (data, end) = (ctx.data(), ctx.data_end());
    let mut next = first;
    let mut off = L4;
    for _ in 0..4 {
        // The mask keeps the offset bounded for the verifier; real chains are far shorter.
        let p = data + (off & 0x1fff);
        if next == IPPROTO_TCP {
            if p + 4 > end {
                return drop(Counter::DropTruncated);
            }
            let Some(cfg) = config() else { return pass(Counter::PassOtherPort) };
            // SAFETY: 4 bytes checked.
            let dport = unsafe { load_be16(p + 2) };
            return if cfg.ports.contains(dport) {
                drop(Counter::DropIpv6ExtHeader)
            } else {
                pass(Counter::PassOtherPort)
            };
        }
        if p + 8 > end {
            return drop(Counter::DropTruncated);
        }
        // SAFETY: 8 bytes checked (every extension header is at least 8 bytes).
        let (n, len, frag) = unsafe { (load8(p), load8(p + 1), load_be16(p + 2)) };
        if next == IPV6_FRAGMENT {
            if frag & 0xfff8 != 0 {
                return pass(Counter::PassNoTcpHeader);
            }
            off += 8;
        } else if is_generic_ext_header(next) {
            off += (usize::from(len) + 1) * 8;
        } else {
            return pass(Counter::PassNotTcp);
        }
        next = n;
    }
    pass(Counter::PassNoTcpHeader)
}

/// What differs between IPv4 and IPv6 above TCP: the cookie tuple, the flow key, the
/// pseudo-header and the reply's IP header.
trait Family {
    type Tuple: CookieTuple;
    /// The connection as the client sends it.
    fn tuple(&self, sport: u16, dport: u16) -> Self::Tuple;
    fn flow_key(&self, sport: u16, dport: u16) -> FlowKey;
    /// Sum of both addresses (for the pseudo-header; unchanged when they are swapped).
    fn addr_sum(&self) -> Sum;
    fn mss_clamp(cfg: &Config) -> u16;
    /// Turns the IP header at `L2` into the reply's: addresses swapped, length for `tcp_len`
    /// bytes of TCP, TTL / hop limit `ttl`. Caller: the header is inside the frame.
    unsafe fn write_reply_ip<const L2: usize>(&self, data: usize, tcp_len: usize, ttl: u8);
}

struct V4 {
    src: [u8; 4],
    dst: [u8; 4],
}

impl Family for V4 {
    type Tuple = TupleV4;

    #[inline(always)]
    fn tuple(&self, sport: u16, dport: u16) -> TupleV4 {
        TupleV4 { client: self.src, server: self.dst, client_port: sport, server_port: dport }
    }

    #[inline(always)]
    fn flow_key(&self, sport: u16, dport: u16) -> FlowKey {
        FlowKey::v4(self.src, self.dst, sport, dport)
    }

    #[inline(always)]
    fn addr_sum(&self) -> Sum {
        Sum::default().add32(u32::from_be_bytes(self.src)).add32(u32::from_be_bytes(self.dst))
    }

    #[inline(always)]
    fn mss_clamp(cfg: &Config) -> u16 {
        cfg.mss_v4
    }

    #[inline(always)]
    unsafe fn write_reply_ip<const L2: usize>(&self, data: usize, tcp_len: usize, ttl: u8) {
        let ip = data + L2;
        // RFC 1624 incremental update of the (verified) header checksum: the fields that
        // change are version/TOS, total length, id, flags/offset and TTL/protocol; swapping
        // the addresses leaves the sum unchanged.
        #[expect(clippy::cast_possible_truncation, reason = "at most 20 + 40 bytes")]
        let new = [0x4500, (IPV4_HLEN + tcp_len) as u16, 0, IP_DF, u16::from(ttl) << 8 | 6];
        // SAFETY: the caller checked the IP header is inside the frame.
        unsafe {
            let hc = load_be16(ip + 10);
            let mut s = Sum(u64::from(!hc));
            for (i, n) in new.iter().enumerate() {
                s = s.add16(!load_be16(ip + 2 * i)).add16(*n);
                store_be16(ip + 2 * i, *n);
            }
            store_be16(ip + 10, s.checksum());
            store_4(ip + 12, self.dst);
            store_4(ip + 16, self.src);
        }
    }
}

struct V6 {
    src: [u64; 2],
    dst: [u64; 2],
}

impl Family for V6 {
    type Tuple = TupleV6;

    #[inline(always)]
    fn tuple(&self, sport: u16, dport: u16) -> TupleV6 {
        TupleV6 { client: self.src, server: self.dst, client_port: sport, server_port: dport }
    }

    #[inline(always)]
    fn flow_key(&self, sport: u16, dport: u16) -> FlowKey {
        FlowKey::v6_words(self.src, self.dst, sport, dport)
    }

    #[inline(always)]
    fn addr_sum(&self) -> Sum {
        let mut s = Sum::default();
        for w in [self.src[0], self.src[1], self.dst[0], self.dst[1]] {
            s = s.add32((w >> 32) as u32).add32(w as u32);
        }
        s
    }

    #[inline(always)]
    fn mss_clamp(cfg: &Config) -> u16 {
        cfg.mss_v6
    }

    #[inline(always)]
    unsafe fn write_reply_ip<const L2: usize>(&self, data: usize, tcp_len: usize, ttl: u8) {
        let ip = data + L2;
        // SAFETY: the caller checked the IP header is inside the frame.
        unsafe {
            // Version 6, traffic class 0 (not ECN-capable), flow label 0.
            store_be32(ip, 0x6000_0000);
            #[expect(clippy::cast_possible_truncation, reason = "at most 40 bytes")]
            store_be16(ip + 4, tcp_len as u16);
            store_be16(ip + 6, u16::from(IPPROTO_TCP) << 8 | u16::from(ttl));
            store_be64(ip + 8, self.dst[0]);
            store_be64(ip + 16, self.dst[1]);
            store_be64(ip + 24, self.src[0]);
            store_be64(ip + 32, self.src[1]);
        }
    }
}

/// The fixed 20 bytes of a TCP header (RFC 9293 section 3.1).
struct TcpFixed {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    /// Data offset (4 bits), reserved, flags; as on the wire.
    off_flags: u16,
    window: u16,
    /// Checksum and urgent pointer word, for the checksum check.
    csum_urg: u32,
}

impl TcpFixed {
    /// Caller: `[p, p + 20)` is inside the frame.
    #[inline(always)]
    unsafe fn load(p: usize) -> TcpFixed {
        // SAFETY: per the caller.
        unsafe {
            TcpFixed {
                sport: load_be16(p),
                dport: load_be16(p + 2),
                seq: load_be32(p + 4),
                ack: load_be32(p + 8),
                off_flags: load_be16(p + 12),
                window: load_be16(p + 14),
                csum_urg: load_be32(p + 16),
            }
        }
    }

    #[inline(always)]
    fn header_len(&self) -> usize {
        usize::from(self.off_flags >> 12) * 4
    }

    #[inline(always)]
    fn flags(&self) -> u8 {
        self.off_flags.to_be_bytes()[1]
    }

    /// Ones'-complement sum of the 20 bytes.
    #[inline(always)]
    fn sum(&self) -> Sum {
        Sum::default()
            .add16(self.sport)
            .add16(self.dport)
            .add32(self.seq)
            .add32(self.ack)
            .add16(self.off_flags)
            .add16(self.window)
            .add32(self.csum_urg)
    }
}

/// The TCP layer of a segment to a protected port. `tcp_len` is what the IP header says.
#[inline(always)]
fn tcp<const L2: usize, const L4: usize, F: Family>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    tcp_len: usize,
) -> Verdict {
    let (data, end) = (ctx.data(), ctx.data_end());
    if !in_bounds(data, end, L4 + TCP_HLEN) {
        return drop(Counter::DropTruncated);
    }
    // SAFETY: 20 bytes of TCP header checked.
    let th = unsafe { TcpFixed::load(data + L4) };
    let hlen = th.header_len();
    if hlen < TCP_HLEN {
        return drop(Counter::DropBadTcpHeader);
    }
    if hlen > tcp_len {
        return drop(Counter::DropTruncated);
    }
    if th.flags() & flags::SYN != 0 {
        return syn_to_synack::<L2, L4, F>(ctx, cfg, ip, &th, tcp_len);
    }
    flow_or_cookie_ack::<L2, L4, F>(ctx, cfg, ip, &th)
}

/// Resizes the frame to `len` bytes (`bpf_xdp_adjust_tail`); false if the kernel refused.
#[inline(always)]
fn resize(ctx: &XdpContext, len: usize) -> bool {
    // Verifier note: the frame length is `data_end - data` in 64-bit arithmetic (root may
    // subtract packet pointers); the range check keeps LLVM from narrowing the subtraction to
    // 32 bits, which spilled half a pointer to the stack ("invalid size of register spill").
    #[expect(clippy::cast_possible_wrap, reason = "frames are below 4 KiB")]
    let delta = len as i64 - (ctx.data_end() - ctx.data()) as i64;
    if !(-4096..=4096).contains(&delta) {
        return false;
    }
    #[expect(clippy::cast_possible_truncation, reason = "range checked above")]
    let delta = delta as i32;
    // SAFETY: the helper only needs the context pointer the kernel gave us.
    delta == 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } == 0
}

/// A SYN to a protected port: answer it in place with a SYN-cookie SYN-ACK.
///
/// A BPF subprogram with its own stack frame (as [`validate_cookie_ack`]): the frames of a
/// call chain share the 512-byte BPF stack, and inlined into the entry (which holds the IP
/// layer of all six frame layouts) it exceeded it. Frames now: entry 136 bytes, this 216,
/// the option parser 32.
#[inline(never)]
fn syn_to_synack<const L2: usize, const L4: usize, F: Family>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
    tcp_len: usize,
) -> Verdict {
    let mut opts = TcpOptions::default();
    if let Err(c) = check_syn::<L4, F>(ctx, ip, th, tcp_len, &mut opts) {
        return drop(c);
    }
    write_synack::<L2, L4, F>(ctx, cfg, ip, th, &opts)
}

/// Whether the SYN may be answered (flags, no payload, checksum, options); its options into
/// `opts`.
#[inline(always)]
fn check_syn<const L4: usize, F: Family>(
    ctx: &XdpContext,
    ip: &F,
    th: &TcpFixed,
    tcp_len: usize,
    opts: &mut TcpOptions,
) -> Result<(), Counter> {
    if th.flags() & (flags::FIN | flags::RST | flags::ACK) != 0 {
        return Err(Counter::DropSynBadFlags);
    }
    let hlen = th.header_len();
    if tcp_len != hlen {
        return Err(Counter::DropSynWithPayload);
    }
    let (o, opts_sum) = options::read_options::<L4>(ctx, hlen - TCP_HLEN)?;
    // Checksum over the pseudo-header and the whole header (no payload: checked above).
    #[expect(clippy::cast_possible_truncation, reason = "at most 60")]
    let s = synack::pseudo_header_sum(ip.addr_sum(), tcp_len as u16)
        .add_sum(th.sum())
        .add_sum(opts_sum);
    if !verifies(s) {
        return Err(Counter::DropBadChecksum);
    }
    *opts = o;
    Ok(())
}

/// Rewrites the checked SYN into our SYN-ACK.
#[inline(always)]
fn write_synack<const L2: usize, const L4: usize, F: Family>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
    opts: &TcpOptions,
) -> Verdict {
    let ecn_setup = th.flags() & (flags::ECE | flags::CWR) == flags::ECE | flags::CWR;
    let now_ts = if opts.timestamps().is_some() {
        // The coarse clock (CLOCK_MONOTONIC_COARSE, a tick behind at most) is enough for a
        // millisecond timestamp and cheaper than reading the TSC.
        // SAFETY: no preconditions.
        cookie::ts_clock(unsafe { bpf_ktime_get_coarse_ns() })
    } else {
        0
    };
    let tuple = ip.tuple(th.sport, th.dport);
    let plan = synack::plan_synack(cfg, &tuple, th.seq, opts, ecn_setup, F::mss_clamp(cfg), now_ts);
    let hdr = synack::synack_header(th.sport, th.dport, th.seq, &plan);
    let out_len = hdr.len_words * 4;
    #[expect(clippy::cast_possible_truncation, reason = "24 or 40")]
    let csum = synack::pseudo_header_sum(ip.addr_sum(), out_len as u16).add_sum(hdr.sum());
    if !resize(ctx, L4 + out_len) {
        return drop(Counter::DropResizeFailed);
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let tcp = data + L4;
    // Two fixed-size writes, each after its own bounds check.
    if hdr.len_words == 10 {
        if !in_bounds(data, end, L4 + synack::SYNACK_LEN_TS) {
            return drop(Counter::DropResizeFailed);
        }
        for i in 0..10 {
            // SAFETY: 40 bytes checked.
            unsafe { store_be32(tcp + 4 * i, hdr.words[i]) };
        }
    } else {
        if !in_bounds(data, end, L4 + synack::SYNACK_LEN_NO_TS) {
            return drop(Counter::DropResizeFailed);
        }
        for i in 0..6 {
            // SAFETY: 24 bytes checked.
            unsafe { store_be32(tcp + 4 * i, hdr.words[i]) };
        }
    }
    // SAFETY: Ethernet, IP and 24 bytes of TCP are inside the frame (checked above).
    unsafe {
        store_be16(tcp + 16, csum.checksum());
        ip.write_reply_ip::<L2>(data, out_len, cfg.ttl);
        swap_macs(data);
    }
    Verdict::new(Counter::TxSynAck, XDP_TX)
}

/// A non-SYN segment to a protected port: a known flow goes to userspace; otherwise it must be
/// a third ACK with a valid cookie.
#[inline(always)]
fn flow_or_cookie_ack<const L2: usize, const L4: usize, F: Family>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
) -> Verdict {
    let key = ip.flow_key(th.sport, th.dport);
    if FLOWS.get_ptr(&key).is_some() {
        return redirect_to_userspace(ctx, Counter::RedirectFlow);
    }
    if th.flags() & flags::RST != 0 {
        return drop(Counter::DropRstUnknown);
    }
    if th.flags() & flags::ACK == 0 {
        return drop(Counter::DropNoAckUnknown);
    }
    validate_cookie_ack::<L2, L4, F>(ctx, cfg, ip, th, &key)
}

/// A third ACK for an unknown flow: `ack - 1` must be a valid cookie for `seq - 1` and the
/// tuple. Valid: the flow goes into the table and the segment to userspace.
#[inline(never)]
fn validate_cookie_ack<const L2: usize, const L4: usize, F: Family>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
    key: &FlowKey,
) -> Verdict {
    let tuple = ip.tuple(th.sport, th.dport);
    let checked = cfg.secrets.check(&tuple, th.seq.wrapping_sub(1), th.ack.wrapping_sub(1));
    let Ok(valid) = checked else {
        if ConfigFlags(cfg.flags).contains(ConfigFlags::RST_INVALID_ACK) {
            return ack_to_rst::<L2, L4, F>(ctx, cfg, ip, th);
        }
        return drop(Counter::DropAckInvalid);
    };
    let opts = match options::read_options::<L4>(ctx, th.header_len() - TCP_HLEN) {
        Ok((o, _)) => o,
        Err(c) => return drop(c),
    };
    let local_wscale =
        if cfg.wscale > cookie::MAX_WSCALE { cookie::MAX_WSCALE } else { cfg.wscale };
    let value = FlowValue::from_cookie(
        &valid,
        th.seq,
        th.ack,
        th.window,
        opts.timestamps().map(|t| (t.val, t.ecr)),
        local_wscale,
    );
    if FLOWS.insert(key, &value, 0).is_err() {
        return drop(Counter::DropFlowTableFull);
    }
    redirect_to_userspace(ctx, Counter::RedirectNewFlow)
}

/// Hands the frame to the AF_XDP socket of its RX queue.
#[inline(always)]
fn redirect_to_userspace(ctx: &XdpContext, ok: Counter) -> Verdict {
    match XSKS.redirect(ctx.rx_queue_index(), 0) {
        Ok(action) => Verdict::new(ok, action),
        Err(_) => drop(Counter::DropNoSocket),
    }
}

/// Answers an ACK with an invalid cookie with `<SEQ=SEG.ACK><CTL=RST>` (RFC 9293 section
/// 3.10.7.1, an ACK in LISTEN), rewriting it in place. Only when configured: under an ACK
/// flood a RST per packet is reflection.
#[inline(always)]
fn ack_to_rst<const L2: usize, const L4: usize, F: Family>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
) -> Verdict {
    let words: [u32; 5] = [
        u32::from(th.dport) << 16 | u32::from(th.sport),
        th.ack,
        0,
        (5 << 28) | (u32::from(flags::RST) << 16),
        0,
    ];
    let mut s = synack::pseudo_header_sum(ip.addr_sum(), TCP_HLEN as u16);
    for w in words {
        s = s.add32(w);
    }
    if !resize(ctx, L4 + TCP_HLEN) {
        return drop(Counter::DropResizeFailed);
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    if !in_bounds(data, end, L4 + TCP_HLEN) {
        return drop(Counter::DropResizeFailed);
    }
    let tcp = data + L4;
    // SAFETY: Ethernet, IP and 20 bytes of TCP checked just above.
    unsafe {
        for (i, w) in words.iter().enumerate() {
            store_be32(tcp + 4 * i, *w);
        }
        store_be16(tcp + 16, s.checksum());
        ip.write_reply_ip::<L2>(data, TCP_HLEN, cfg.ttl);
        swap_macs(data);
    }
    Verdict::new(Counter::TxRst, XDP_TX)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible licence: the kernel's GPL-only helpers (the syncookie helpers among them)
/// need it.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
