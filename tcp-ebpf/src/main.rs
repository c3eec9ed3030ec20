//! The synshield XDP program: answers SYNs to protected ports with SYN-cookie SYN-ACKs
//! (`XDP_TX`), validates third ACKs and hands their flows to userspace (`XDP_REDIRECT` to an
//! AF_XDP socket), and passes everything that is not ours to the kernel.
//!
//! Pipeline (after Linux's `xdp_synproxy_kern.c`):
//!
//! ```text
//! frame::dissect ─ ipv4 / ipv6 ─ tcp ┬─ syn_to_synack            SYN:
//!  (VLAN tags)    (per layout)  Shield│   ├─ check_syn            flags, payload, checksum, options
//!                                    │   ├─ check_answerable     our address, not multicast, not
//!                                    │   │                       from a martian or ourselves
//!                                    │   ├─ (flow map)           a tuple we hold: redirect (FLOW)
//!                                    │   ├─ syn_answer           stateful / adaptive: redirect
//!                                    │   │                       (SYN) or drop
//!                                    │   └─ write_synack         XDP_TX a cookie SYN-ACK, in place
//!                                    └─ flow_or_cookie_ack       known flow: redirect (FLOW)
//!                                        ├─ reopen_or_flow       TIME-WAIT tuple, bare ACK with a
//!                                        │                       valid cookie: redirect (REOPEN)
//!                                        ├─ validate_cookie_ack  valid third ACK whose checksum
//!                                        │                       verifies: insert, redirect
//!                                        │                       (NEW_FLOW)
//!                                        └─ ack_to_rst           invalid ACK: drop, or RST if asked
//! ```
//!
//! The frame dissector (Ethernet, VLAN tags, IPv4, IPv6, the fixed TCP header) is the shared
//! wire layer's (`tcp_common::wire::frame`), run here over packet memory ([`XdpFrame`]); this
//! file is its continuation for our ports. `options.rs` reads TCP options (a fast path for
//! Linux's layout, the shared parser as a global BPF function), `packet.rs` does the packet
//! accesses, `bench.rs` holds the reference programs `cargo xtask bench` compares with,
//! `probes.rs` the programs only tests load. The cookie, the SYN-ACK's layout, the option
//! parser and the checksums are `tcp-common`'s, shared with userspace and its tests.
//!
//! Actions: DROP for bad or hostile input, PASS for traffic that is not ours, TX for our
//! answers, REDIRECT for the flows userspace serves, each with an `RxMeta` in front of the
//! frame (`tcp_common::meta`) so userspace needs no map lookup. Each frame adds one to `RxFrames` and one
//! to exactly one verdict counter.
//!
//! The frame layout (untagged, one or two VLAN tags; IPv4 or IPv6) is a const generic of the
//! dissector and of everything after it: every header offset is a compile-time constant, the
//! form of packet access the verifier checks most reliably (see `packet.rs`). The six
//! instances cost code size, not time.
#![no_std]
#![no_main]

mod bench;
mod options;
mod packet;
mod probes;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_xdp_adjust_tail},
    macros::{map, xdp},
    maps::{Array, LruHashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use tcp_common::{
    Config, ConfigFlags, Counter, FlowKey, FlowValue, RxMeta, SynMode,
    adaptive::SynRate,
    checksum::{Sum, verifies},
    cookie,
    counters::COUNTER_COUNT,
    flow::{FLOW_TABLE_SIZE, MAX_RX_QUEUES},
    local::{AddrWords, LocalAddrs, is_group_mac},
    proto::{ETH_HLEN, TCP_HLEN},
    synack::{self, flags},
    wire::{
        frame::{self, IpHeader, TcpFixed, TcpSink},
        options::TcpOptions,
    },
};

use tcp_common::wire::frame::FrameBytes as _;

use crate::packet::{XdpFrame, payload_sum, store_be16, store_be32, swap_macs, write_meta};

#[map(name = "SYNSHIELD_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "SYNSHIELD_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// An LRU hash: a full map evicts instead of refusing; the loader sets its size
/// (`tcp_common::flow` explains the formula).
#[map(name = "SYNSHIELD_FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(FLOW_TABLE_SIZE, 0);

/// Per RX queue: 1 while its half-open table has room (`tcp_common::meta`).
#[map(name = "SYNSHIELD_HALF_OPEN_ROOM")]
static HALF_OPEN_ROOM: Array<u32> = Array::with_max_entries(MAX_RX_QUEUES, 0);

/// Each CPU's SYN rate and answer in adaptive mode (`tcp_common::adaptive`).
#[map(name = "SYNSHIELD_SYN_RATE")]
static SYN_RATE: PerCpuArray<SynRate> = PerCpuArray::with_max_entries(1, 0);

/// The window until which every CPU answers SYNs with cookies in adaptive mode, written by a
/// flooded CPU (`tcp_common::adaptive`, "The answer, for the whole host").
#[map(name = "SYNSHIELD_SYN_FLOOD")]
static SYN_FLOOD: Array<u64> = Array::with_max_entries(1, 0);

/// The addresses whose SYNs are answered (`tcp_common::local`).
#[map(name = "SYNSHIELD_LOCAL_ADDRS")]
static LOCAL_ADDRS: Array<LocalAddrs> = Array::with_max_entries(1, 0);

#[map(name = "SYNSHIELD_XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_RX_QUEUES, 0);

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

    /// A drop counted by the counter at index `counter` (from a global function).
    #[inline(always)]
    fn refused(counter: u32) -> Verdict {
        Verdict((u64::from(counter) << 32) | u64::from(XDP_DROP))
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
    let v = handle_frame(&ctx);
    count(v.counter_index());
    v.action()
}

#[inline(always)]
fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

/// The frame through the shared dissector (`tcp_common::wire::frame`); a segment to a
/// protected port continues in [`Shield::tcp`].
#[inline(always)]
fn handle_frame(ctx: &XdpContext) -> Verdict {
    let Some(cfg) = config() else { return pass(Counter::PassOtherPort) };
    match frame::dissect(&XdpFrame::new(ctx), &Shield { ctx, cfg }) {
        Ok(v) => v,
        Err(e) if e.is_not_ours() => pass(e.counter()),
        Err(e) => drop(e.counter()),
    }
}

/// The XDP program's continuation of the dissector: the SYN and ACK paths.
struct Shield<'a> {
    ctx: &'a XdpContext,
    cfg: &'a Config,
}

impl TcpSink<XdpFrame> for Shield<'_> {
    type Out = Verdict;

    #[inline(always)]
    fn is_ours(&self, dport: u16) -> bool {
        self.cfg.ports.contains(dport)
    }

    /// A SYN is answered; anything else is a known flow's or must be a third ACK.
    #[inline(always)]
    fn tcp<const L2: usize, const L4: usize, A: IpHeader>(
        &self,
        _frame: &XdpFrame,
        ip: &A,
        th: &TcpFixed,
        tcp_len: usize,
    ) -> Verdict {
        if th.flags() & flags::SYN != 0 {
            return syn_to_synack::<L2, L4, A>(self.ctx, self.cfg, ip, th, tcp_len);
        }
        flow_or_cookie_ack::<L2, L4, A>(self.ctx, self.cfg, ip, th, tcp_len)
    }
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
fn syn_to_synack<const L2: usize, const L4: usize, F: IpHeader>(
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
    let refused = check_answerable(ctx, ip);
    if refused != 0 {
        return Verdict::refused(refused);
    }
    let queue = ctx.rx_queue_index();
    if let Some(value) = live_flow(cfg, ip, th) {
        return redirect_to_userspace(ctx, queue, RxMeta::FLOW, Counter::RedirectSynFlow, value);
    }
    match syn_answer(cfg, queue) {
        SYN_STATEFUL => {
            let ecn_setup = th.flags() & (flags::ECE | flags::CWR) == flags::ECE | flags::CWR;
            #[expect(clippy::cast_possible_truncation, reason = "at most MAX_RX_QUEUES (64)")]
            let offer = FlowValue::syn_offer(th.seq, th.window, &opts, ecn_setup, queue as u8);
            redirect_to_userspace(ctx, queue, RxMeta::SYN, Counter::RedirectSyn, &offer)
        }
        SYN_DROP => drop(Counter::DropSynHalfOpenFull),
        _ => write_synack::<L2, L4, F>(ctx, cfg, ip, th, &opts),
    }
}

/// The flow-map entry of a live connection on the SYN's tuple, which the SYN goes to:
/// RFC 5961 section 4, a SYN for a connection we hold draws a challenge ACK from it, and a
/// retransmitted SYN of a stateful handshake goes to its shard (`FlowValue::HALF_OPEN`). A
/// TIME-WAIT tuple may be reopened by a new handshake: its SYN is answered as any other.
///
/// Telling TIME-WAIT entries apart needs userspace to mark them
/// (`ConfigFlags::TIME_WAIT_MARKED`); without the mark only half-open entries are live, and
/// in cookie mode there are none (userspace answers no SYN itself), so the lookup, a hash of
/// the 36-byte key (18 ns per SYN here), is made only when its answer can matter.
#[inline(always)]
fn live_flow<F: IpHeader>(cfg: &Config, ip: &F, th: &TcpFixed) -> Option<&'static FlowValue> {
    let marked = ConfigFlags(cfg.flags).contains(ConfigFlags::TIME_WAIT_MARKED);
    if !marked && cfg.syn_mode == SynMode::Cookies as u8 {
        return None;
    }
    let entry = FLOWS.get_ptr(ip.flow_key(th.sport, th.dport))?;
    // SAFETY: a value of the map, read in place (see `flow_or_cookie_ack`).
    let value = unsafe { &*entry };
    let live = if marked {
        value.flags & FlowValue::TIME_WAIT == 0
    } else {
        value.flags & FlowValue::HALF_OPEN != 0
    };
    live.then_some(value)
}

/// [`syn_answer`]: a cookie SYN-ACK from XDP.
const SYN_COOKIE: u32 = 0;
/// [`syn_answer`]: to userspace, to be answered statefully.
const SYN_STATEFUL: u32 = 1;
/// [`syn_answer`]: dropped (stateful mode, no room).
const SYN_DROP: u32 = 2;

/// How to answer a SYN for a new tuple that arrived on RX queue `queue`
/// (`tcp_common::adaptive`): [`SYN_COOKIE`], [`SYN_STATEFUL`] or [`SYN_DROP`]. Cookie mode
/// costs one comparison; the other modes are a global function.
#[inline(always)]
fn syn_answer(cfg: &Config, queue: u32) -> u32 {
    if cfg.syn_mode == SynMode::Cookies as u8 {
        return SYN_COOKIE;
    }
    synshield_syn_answer(queue)
}

/// [`syn_answer`] in stateful and adaptive modes: the queue's room
/// (`SYNSHIELD_HALF_OPEN_ROOM`), and in adaptive mode this CPU's SYN rate
/// (`SYNSHIELD_SYN_RATE`, counted here in windows of jiffies: `bpf_jiffies64`, which the
/// verifier inlines as one load, where `bpf_ktime_get_coarse_ns` cost 23 ns per SYN) and the
/// host's flood hold (`SYNSHIELD_SYN_FLOOD`).
///
/// A *global* BPF function (see `synshield_tcp_options`): verified once, not in each of the
/// six SYN paths.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synshield_syn_answer(queue: u32) -> u32 {
    let Some(cfg) = config() else { return SYN_COOKIE };
    let room = HALF_OPEN_ROOM.get(queue).is_some_and(|r| *r != 0);
    match SynMode::from_u8(cfg.syn_mode) {
        SynMode::Cookies => SYN_COOKIE,
        SynMode::Stateful if room => SYN_STATEFUL,
        SynMode::Stateful => SYN_DROP,
        SynMode::Adaptive => {
            // SAFETY: no preconditions.
            let now = unsafe { bpf_jiffies64() };
            let flooded = match (SYN_RATE.get_ptr_mut(0), SYN_FLOOD.get_ptr_mut(0)) {
                (Some(rate), Some(hold)) => {
                    // SAFETY: `rate` is this CPU's slot, which only this CPU writes while the
                    // program runs; `hold` is a valid u64 in the map, which other CPUs may
                    // store to at the same time: read and written as one volatile 8-byte
                    // access each (either value is a right answer).
                    unsafe {
                        let (cookie, store) = (*rate).answer_syn(
                            now,
                            &cfg.rate_params(),
                            core::ptr::read_volatile(hold),
                        );
                        if let Some(until) = store {
                            core::ptr::write_volatile(hold, until);
                        }
                        cookie
                    }
                }
                _ => true,
            };
            if flooded || !room { SYN_COOKIE } else { SYN_STATEFUL }
        }
    }
}

/// Whether we may answer the packet at all, going by its addresses (`tcp_common::local`):
/// not to a group MAC address, not to an address that is not ours or is multicast, not from
/// a martian or from ourselves. 0 if so, else the index of the refusal's counter. A list of
/// one or two addresses is checked inline (`admits_fast`); anything else, and every refusal,
/// by the global functions.
#[inline(always)]
fn check_answerable<F: IpHeader>(ctx: &XdpContext, ip: &F) -> u32 {
    // Verifier note: the check covers the Ethernet header, not one byte: LLVM turns
    // `data + 1 <= end` into `data < end`, from which the verifier learns no range.
    let frame = XdpFrame::new(ctx);
    if !frame.has(ETH_HLEN) {
        return Counter::DropTruncated as u32;
    }
    // SAFETY: 14 bytes checked.
    if is_group_mac(unsafe { frame.u8_at(0) }) {
        return Counter::DropMulticastDestination as u32;
    }
    let addrs = ip.addr_words();
    if LOCAL_ADDRS.get(0).is_some_and(|l| l.admits_fast(addrs)) {
        return 0;
    }
    match addrs {
        AddrWords::V4 { src, dst } => synshield_admits_v4(src, dst),
        AddrWords::V6 { src, dst } => synshield_admits_v6(src[0], src[1], dst[0], dst[1]),
    }
}

/// Whether we may answer an IPv4 packet from `src` to `dst` (`u32::from_be_bytes`): 0, or the
/// index of the counter of the refusal (`tcp_common::local::LocalAddrs::admits_v4`).
///
/// A *global* BPF function, as `synshield_tcp_options`: verified once on its own. Inlined
/// into the SYN and RST paths of the six frame layouts, the scan of the address list (each
/// step a branch) left as many states as there were ways out of it, and the verifier walked
/// the rest of the SYN path from each: five times the instructions of the whole program.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synshield_admits_v4(src: u32, dst: u32) -> u32 {
    let Some(local) = LOCAL_ADDRS.get(0) else { return Counter::DropNotLocalDestination as u32 };
    match local.admits_v4(src, dst) {
        Ok(()) => 0,
        Err(c) => c as u32,
    }
}

/// As [`synshield_admits_v4`] for IPv6 (addresses as big-endian halves).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synshield_admits_v6(src_hi: u64, src_lo: u64, dst_hi: u64, dst_lo: u64) -> u32 {
    let Some(local) = LOCAL_ADDRS.get(0) else { return Counter::DropNotLocalDestination as u32 };
    match local.admits_v6([src_hi, src_lo], [dst_hi, dst_lo]) {
        Ok(()) => 0,
        Err(c) => c as u32,
    }
}

/// Whether the SYN may be answered (flags, no payload, checksum, options); its options into
/// `opts`.
#[inline(always)]
fn check_syn<const L4: usize, F: IpHeader>(
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
fn write_synack<const L2: usize, const L4: usize, F: IpHeader>(
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
    let mut frame = XdpFrame::new(ctx);
    let data = frame.data();
    let tcp = data + L4;
    // Two fixed-size writes, each after its own bounds check.
    if hdr.len_words == 10 {
        if !frame.has(L4 + synack::SYNACK_LEN_TS) {
            return drop(Counter::DropResizeFailed);
        }
        for i in 0..10 {
            // SAFETY: 40 bytes checked.
            unsafe { store_be32(tcp + 4 * i, hdr.words[i]) };
        }
    } else {
        if !frame.has(L4 + synack::SYNACK_LEN_NO_TS) {
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
        ip.write_reply::<L2, _>(&mut frame, out_len, cfg.ttl);
        swap_macs(data);
    }
    Verdict::new(Counter::TxSynAck, XDP_TX)
}

/// A non-SYN segment to a protected port: a known flow goes to userspace (FLOW metadata, or
/// REOPEN for a new cookie on a tuple in TIME-WAIT); otherwise it must be a third ACK with a
/// valid cookie.
#[inline(always)]
fn flow_or_cookie_ack<const L2: usize, const L4: usize, F: IpHeader>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
    tcp_len: usize,
) -> Verdict {
    let key = ip.flow_key(th.sport, th.dport);
    if let Some(entry) = FLOWS.get_ptr(&key) {
        // SAFETY: a value of the map, valid while the program runs; read in place (userspace
        // may rewrite it meanwhile: a torn copy only misleads userspace's shortcut, which
        // checks the segment against its own connection anyway).
        let value = unsafe { &*entry };
        let bare_ack =
            th.flags() & (flags::SYN | flags::FIN | flags::RST | flags::ACK) == flags::ACK;
        if value.flags & FlowValue::TIME_WAIT != 0 && bare_ack {
            return reopen_or_flow::<L4, F>(ctx, cfg, ip, th, value);
        }
        let queue = ctx.rx_queue_index();
        return redirect_to_userspace(ctx, queue, RxMeta::FLOW, Counter::RedirectFlow, value);
    }
    if th.flags() & flags::RST != 0 {
        return drop(Counter::DropRstUnknown);
    }
    if th.flags() & flags::ACK == 0 {
        return drop(Counter::DropNoAckUnknown);
    }
    validate_cookie_ack::<L2, L4, F>(ctx, cfg, ip, th, tcp_len)
}

/// The flow a third ACK establishes if `ack - 1` is a valid cookie for `seq - 1` and the
/// tuple, and the sum of its options (for the checksum); its `queue` is `queue`, the RX queue
/// the ACK arrived on. `Err(None)`: the cookie is not valid; `Err(Some(c))`: it is, but the
/// options are malformed or claim one the configuration does not offer (`c` says why).
#[inline(always)]
fn decode_cookie_ack<const L4: usize, F: IpHeader>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
    queue: u32,
) -> Result<(FlowValue, Sum), Option<Counter>> {
    let tuple = ip.tuple(th.sport, th.dport);
    let checked = cfg.secrets.check(&tuple, th.seq.wrapping_sub(1), th.ack.wrapping_sub(1));
    let Ok(valid) = checked else { return Err(None) };
    let (opts, opts_sum) =
        options::read_options::<L4>(ctx, th.header_len() - TCP_HLEN).map_err(Some)?;
    let local_wscale =
        if cfg.wscale > cookie::MAX_WSCALE { cookie::MAX_WSCALE } else { cfg.wscale };
    let mut value = FlowValue::from_cookie(
        &valid,
        th.seq,
        th.ack,
        th.window,
        opts.timestamps().map(|t| (t.tsval, t.tsecr)),
        local_wscale,
    );
    #[expect(clippy::cast_possible_truncation, reason = "at most MAX_RX_QUEUES (64) queues")]
    let queue = queue as u8;
    value.queue = queue;
    if !ConfigFlags(cfg.flags).offers(&value) {
        return Err(Some(Counter::DropAckOptionNotOffered));
    }
    Ok((value, opts_sum))
}

/// Whether the segment's TCP checksum verifies: pseudo-header, fixed header, options (their
/// sum `opts_sum`, from reading them) and payload. The dissector checked the IPv4 header's.
#[inline(always)]
fn checksum_verifies<const L4: usize, F: IpHeader>(
    ctx: &XdpContext,
    ip: &F,
    th: &TcpFixed,
    tcp_len: usize,
    opts_sum: Sum,
) -> bool {
    let hlen = th.header_len();
    let Some(payload) = payload_sum(ctx, L4 + hlen, tcp_len - hlen) else { return false };
    #[expect(clippy::cast_possible_truncation, reason = "an IP payload length")]
    let s = synack::pseudo_header_sum(ip.addr_sum(), tcp_len as u16)
        .add_sum(th.sum())
        .add_sum(opts_sum)
        .add_sum(payload);
    verifies(s)
}

/// A third ACK for an unknown flow: valid cookie and checksum, the flow goes into the table
/// and the segment to userspace (NEW_FLOW). The checksum is verified after the cookie (an
/// ACK flood's forgeries cost one hash and no sum) and before the insert, so a corrupted or
/// deliberately broken ACK never leaves an entry that userspace would not claim.
///
/// A subprogram (at most five arguments in BPF: the flow key is made again here rather than
/// passed).
#[inline(never)]
fn validate_cookie_ack<const L2: usize, const L4: usize, F: IpHeader>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
    tcp_len: usize,
) -> Verdict {
    let queue = ctx.rx_queue_index();
    let (value, opts_sum) = match decode_cookie_ack::<L4, F>(ctx, cfg, ip, th, queue) {
        Ok(v) => v,
        Err(Some(c)) => return drop(c),
        Err(None) if ConfigFlags(cfg.flags).contains(ConfigFlags::RST_INVALID_ACK) => {
            return ack_to_rst::<L2, L4, F>(ctx, cfg, ip, th, tcp_len);
        }
        Err(None) => return drop(Counter::DropAckInvalid),
    };
    if !checksum_verifies::<L4, F>(ctx, ip, th, tcp_len, opts_sum) {
        return drop(Counter::DropAckBadChecksum);
    }
    if FLOWS.insert(&ip.flow_key(th.sport, th.dport), &value, 0).is_err() {
        return drop(Counter::DropFlowTableFull);
    }
    redirect_to_userspace(ctx, queue, RxMeta::NEW_FLOW, Counter::RedirectNewFlow, &value)
}

/// A bare ACK for a tuple in TIME-WAIT: with a valid cookie it may open a new incarnation
/// (RFC 6191), which userspace decides (REOPEN, the new cookie's flow; the map is left
/// alone); otherwise it is a segment of the old connection (FLOW).
#[inline(never)]
fn reopen_or_flow<const L4: usize, F: IpHeader>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
    old: &FlowValue,
) -> Verdict {
    let queue = ctx.rx_queue_index();
    match decode_cookie_ack::<L4, F>(ctx, cfg, ip, th, queue) {
        Ok((new, _)) => {
            redirect_to_userspace(ctx, queue, RxMeta::REOPEN, Counter::RedirectReopen, &new)
        }
        Err(_) => redirect_to_userspace(ctx, queue, RxMeta::FLOW, Counter::RedirectFlow, old),
    }
}

/// Hands the frame to the AF_XDP socket of its RX queue `queue`, with an [`RxMeta`] of `kind`
/// for `flow` in front of it (or without, counted, if the kernel has no room for it), counted
/// by `counter`.
///
/// Verifier note: callers read `rx_queue_index` once and pass it: read twice in one function,
/// LLVM kept `ctx + 16` in a register, and the verifier refuses a context access through a
/// modified pointer.
#[inline(always)]
fn redirect_to_userspace(
    ctx: &XdpContext,
    queue: u32,
    kind: u32,
    counter: Counter,
    flow: &FlowValue,
) -> Verdict {
    let counter = if write_meta(ctx, RxMeta::MAGIC | kind, flow) {
        counter
    } else {
        Counter::RedirectWithoutMeta
    };
    match XSKS.redirect(queue, 0) {
        Ok(action) => Verdict::new(counter, action),
        Err(_) => drop(Counter::DropNoSocket),
    }
}

/// Answers an ACK with an invalid cookie with `<SEQ=SEG.ACK><CTL=RST>` (RFC 9293 section
/// 3.10.7.1, an ACK in LISTEN), rewriting it in place. Only when configured: under an ACK
/// flood a RST per packet is reflection. A segment whose checksum does not verify is not
/// answered (RFC 9293 section 3.10.7: it is discarded first).
#[inline(always)]
fn ack_to_rst<const L2: usize, const L4: usize, F: IpHeader>(
    ctx: &XdpContext,
    cfg: &Config,
    ip: &F,
    th: &TcpFixed,
    tcp_len: usize,
) -> Verdict {
    let refused = check_answerable(ctx, ip);
    if refused != 0 {
        return Verdict::refused(refused);
    }
    let opts_sum = match options::read_options::<L4>(ctx, th.header_len() - TCP_HLEN) {
        Ok((_, sum)) => sum,
        Err(c) => return drop(c),
    };
    if !checksum_verifies::<L4, F>(ctx, ip, th, tcp_len, opts_sum) {
        return drop(Counter::DropBadChecksum);
    }
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
    let mut frame = XdpFrame::new(ctx);
    if !frame.has(L4 + TCP_HLEN) {
        return drop(Counter::DropResizeFailed);
    }
    let data = frame.data();
    let tcp = data + L4;
    // SAFETY: Ethernet, IP and 20 bytes of TCP checked just above.
    unsafe {
        for (i, w) in words.iter().enumerate() {
            store_be32(tcp + 4 * i, *w);
        }
        store_be16(tcp + 16, s.checksum());
        ip.write_reply::<L2, _>(&mut frame, TCP_HLEN, cfg.ttl);
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
