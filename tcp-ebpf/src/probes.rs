//! Programs that only tests load (`tcp_common::testing`): they live in the object so that the
//! tests exercise the very code the real program runs. Never attached by the loader.
//!
//! - `synshield_test_meta`: puts an [`RxMeta`] in front of IPv4 UDP frames to
//!   [`META_PROBE_PORT`] and redirects them to the queue's AF_XDP socket; proves where AF_XDP
//!   delivers the metadata (tcp-user/tests/xdp_meta.rs).

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::xdp,
    programs::XdpContext,
};
use tcp_common::{
    FlowValue, RxMeta,
    proto::{ETH_HLEN, ETH_P_IP, IPV4_HLEN},
    testing::{META_PROBE_MARK, META_PROBE_PORT},
};

use crate::{
    XSKS,
    packet::{in_bounds, load_be16, load8, write_meta},
};

const IPPROTO_UDP: u8 = 17;

/// See the module docs.
#[xdp]
pub fn synshield_test_meta(ctx: XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if !in_bounds(data, end, ETH_HLEN + IPV4_HLEN + 8) {
        return XDP_PASS;
    }
    // SAFETY: 42 bytes checked.
    let (ethertype, vihl, proto, dport) = unsafe {
        (load_be16(data + 12), load8(data + ETH_HLEN), load8(data + 23), load_be16(data + 36))
    };
    if ethertype != ETH_P_IP || vihl != 0x45 || proto != IPPROTO_UDP || dport != META_PROBE_PORT {
        return XDP_PASS;
    }
    #[expect(clippy::cast_possible_truncation, reason = "frames are below 64 KiB, queues 64")]
    let meta = RxMeta::new(
        RxMeta::FLOW,
        FlowValue {
            server_isn: (end - data) as u32,
            client_isn: META_PROBE_MARK,
            queue: ctx.rx_queue_index() as u8,
            ..FlowValue::default()
        },
    );
    if !write_meta(&ctx, &meta) {
        return XDP_DROP;
    }
    XSKS.redirect(ctx.rx_queue_index(), 0).unwrap_or(XDP_DROP)
}
