//! The synshield XDP program. Skeleton: parse, count, pass.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use tcp_common::{Config, Counter, counters::COUNTER_COUNT};

#[map(name = "SYNSHIELD_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "SYNSHIELD_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;

#[inline(always)]
fn count(c: Counter) {
    if let Some(v) = COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *v += 1 };
    }
}

#[xdp]
pub fn synshield(ctx: XdpContext) -> u32 {
    count(Counter::RxFrames);
    let (verdict, action) = classify(&ctx);
    count(verdict);
    action
}

#[inline(always)]
fn byte(ctx: &XdpContext, off: usize) -> Option<u8> {
    let p = ctx.data() + off;
    if p + 1 > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds checked against data_end just above.
    Some(unsafe { *(p as *const u8) })
}

#[inline(always)]
fn be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([byte(ctx, off)?, byte(ctx, off + 1)?]))
}

fn classify(ctx: &XdpContext) -> (Counter, u32) {
    let pass = xdp_action::XDP_PASS;
    let Some(mut ethertype) = be16(ctx, 12) else {
        return (Counter::DropTruncated, xdp_action::XDP_DROP);
    };
    let mut l3 = ETH_HLEN;
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner).
    for _ in 0..2 {
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            let Some(t) = be16(ctx, l3 + 2) else {
                return (Counter::DropTruncated, xdp_action::XDP_DROP);
            };
            ethertype = t;
            l3 += 4;
        }
    }
    let (proto, l4) = match ethertype {
        ETH_P_IP => {
            let (Some(vihl), Some(proto)) = (byte(ctx, l3), byte(ctx, l3 + 9)) else {
                return (Counter::DropTruncated, xdp_action::XDP_DROP);
            };
            (proto, l3 + usize::from(vihl & 0x0f) * 4)
        }
        ETH_P_IPV6 => {
            let Some(next) = byte(ctx, l3 + 6) else {
                return (Counter::DropTruncated, xdp_action::XDP_DROP);
            };
            (next, l3 + 40)
        }
        _ => return (Counter::PassNotIp, pass),
    };
    if proto != IPPROTO_TCP {
        return (Counter::PassNotTcp, pass);
    }
    let Some(dport) = be16(ctx, l4 + 2) else {
        return (Counter::DropTruncated, xdp_action::XDP_DROP);
    };
    let Some(config) = CONFIG.get(0) else {
        return (Counter::PassOtherPort, pass);
    };
    if config.ports.contains(dport) {
        (Counter::PassProtected, pass)
    } else {
        (Counter::PassOtherPort, pass)
    }
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
