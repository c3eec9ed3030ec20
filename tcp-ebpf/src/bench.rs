//! Reference programs for `cargo xtask bench` (`BPF_PROG_TEST_RUN`, live frames): what our SYN
//! path is measured against. They are small, live in the same object so that one build and one
//! load serve the benchmark, and are never attached by the loader.
//!
//! - `synshield_bench_drop`: `XDP_DROP`, the floor (the harness's own cost).
//! - `synshield_bench_kernel_cookie`: answers an untagged IPv4 SYN without options (the
//!   benchmark's frame) using the kernel's cookie (`bpf_tcp_raw_gen_syncookie_ipv4`, Linux's
//!   `__cookie_v4_init_sequence`: SipHash-2-4, two hashes) and `bpf_csum_diff` for the
//!   checksums, as `xdp_synproxy_kern.c` does; it reads the same config map to decide the port
//!   is protected, so both programs do one lookup.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    helpers::{bpf_csum_diff, bpf_tcp_raw_gen_syncookie_ipv4, bpf_xdp_adjust_tail},
    macros::xdp,
    programs::XdpContext,
};
use tcp_common::synack::flags;

use crate::{
    CONFIG,
    packet::{in_bounds, load_be16, load_be32, load8, store_be16, store_be32, swap_macs},
};

/// `XDP_DROP`: the cost of the test harness itself.
#[xdp]
pub fn synshield_bench_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}

/// The kernel-helper SYN-ACK (IPv4, untagged, SYN without options).
#[xdp]
pub fn synshield_bench_kernel_cookie(ctx: XdpContext) -> u32 {
    kernel_cookie_synack(&ctx)
}

const ETH: usize = 14;
const IP: usize = ETH;
const TCP: usize = IP + 20;
const SYNACK_FRAME: usize = TCP + 24;

#[inline(always)]
fn fold(csum: i64) -> u16 {
    #[expect(clippy::cast_sign_loss, reason = "bpf_csum_diff's sum is a 32-bit value")]
    let mut s = csum as u64 & 0xffff_ffff;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    #[expect(clippy::cast_possible_truncation, reason = "folded")]
    let r = !(s as u16);
    r
}

#[inline(always)]
fn kernel_cookie_synack(ctx: &XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if !in_bounds(data, end, TCP + 20) {
        return XDP_PASS;
    }
    // SAFETY: 54 bytes checked.
    let (ethertype, vihl, proto, dport, off_flags, seq) = unsafe {
        (
            load_be16(data + 12),
            load8(data + IP),
            load8(data + IP + 9),
            load_be16(data + TCP + 2),
            load_be16(data + TCP + 12),
            load_be32(data + TCP + 4),
        )
    };
    if ethertype != 0x0800 || vihl != 0x45 || proto != 6 {
        return XDP_PASS;
    }
    let Some(cfg) = CONFIG.get(0) else { return XDP_PASS };
    if !cfg.ports.contains(dport) {
        return XDP_PASS;
    }
    if off_flags != (5 << 12) | u16::from(flags::SYN) {
        return XDP_DROP;
    }
    // SAFETY: iph and th point at 20 checked bytes each; th_len equals doff * 4 as required.
    let r = unsafe {
        bpf_tcp_raw_gen_syncookie_ipv4((data + IP) as *mut _, (data + TCP) as *mut _, 20)
    };
    if r < 0 {
        return XDP_DROP;
    }
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "helper ABI")]
    let (cookie, mss) = (r as u32, (r >> 32) as u16);
    #[expect(clippy::cast_possible_wrap, clippy::cast_possible_truncation, reason = "small")]
    let delta = SYNACK_FRAME as i32 - (end - data) as i32;
    // SAFETY: the context pointer the kernel gave us.
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return XDP_DROP;
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    if !in_bounds(data, end, SYNACK_FRAME) {
        return XDP_DROP;
    }
    // SAFETY: 58 bytes checked.
    unsafe {
        swap_macs(data);
        let (saddr, daddr) = (load_be32(data + IP + 12), load_be32(data + IP + 16));
        store_be32(data + IP + 12, daddr);
        store_be32(data + IP + 16, saddr);
        let (sport, dport) = (load_be16(data + TCP), load_be16(data + TCP + 2));
        store_be16(data + TCP, dport);
        store_be16(data + TCP + 2, sport);
        store_be16(data + IP + 2, 44);
        store_be16(data + IP + 8, (64 << 8) | 6);
        store_be16(data + IP + 10, 0);
        let ip_sum = bpf_csum_diff(core::ptr::null_mut(), 0, (data + IP) as *mut _, 20, 0);
        // bpf_csum_diff sums words as loaded (native order): store the result the same way.
        core::ptr::write((data + IP + 10) as *mut u16, fold(ip_sum));
        store_be32(data + TCP + 4, cookie);
        store_be32(data + TCP + 8, seq.wrapping_add(1));
        store_be16(data + TCP + 12, (6 << 12) | u16::from(flags::SYN | flags::ACK));
        store_be16(data + TCP + 14, 65535);
        store_be32(data + TCP + 16, 0);
        store_be32(data + TCP + 20, 0x0204_0000 | u32::from(mss));
        // Pseudo-header: both addresses, protocol and length, as 32-bit words in network order.
        let pseudo = [
            core::ptr::read((data + IP + 12) as *const u32),
            core::ptr::read((data + IP + 16) as *const u32),
            u32::to_be((6 << 16) | 24),
        ];
        #[expect(clippy::cast_possible_truncation, reason = "a 32-bit partial sum")]
        let seed =
            bpf_csum_diff(core::ptr::null_mut(), 0, pseudo.as_ptr().cast_mut(), 12, 0) as u32;
        let sum = bpf_csum_diff(core::ptr::null_mut(), 0, (data + TCP) as *mut _, 24, seed);
        core::ptr::write((data + TCP + 16) as *mut u16, fold(sum));
    }
    XDP_TX
}
