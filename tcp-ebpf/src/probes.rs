//! Programs that only tests load (`tcp_common::testing`): they live in the object so that the
//! tests exercise the very code the real program runs. Never attached by the loader.
//!
//! - `synshield_test_meta`: puts an [`RxMeta`] in front of IPv4 UDP frames to
//!   [`META_PROBE_PORT`] and redirects them to the queue's AF_XDP socket; proves where AF_XDP
//!   delivers the metadata (tcp-user/tests/xdp_meta.rs).
//! - `synshield_test_dissect`: the shared dissector and the SYN path's option reader on a
//!   frame, their findings written to a map as a [`DissectReport`], for the differential test
//!   against the host's instances (tcp-user/tests/xdp_differential.rs).

use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS},
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};
use tcp_common::{
    Config, Counter, FlowValue, RxMeta,
    proto::{ETH_HLEN, ETH_P_IP, IPV4_HLEN, TCP_HLEN},
    testing::{
        DissectReport, META_PROBE_MARK, META_PROBE_PORT, OPTIONS_MALFORMED, OPTIONS_TRUNCATED,
    },
    wire::frame::{self, IpHeader, TcpFixed, TcpSink},
};

use crate::{
    CONFIG, XSKS, options,
    packet::{XdpFrame, in_bounds, load_be16, load8, write_meta},
};

#[map(name = "SYNSHIELD_TEST_REPORT")]
static REPORT: Array<DissectReport> = Array::with_max_entries(1, 0);

/// See the module docs.
#[xdp]
pub fn synshield_test_dissect(ctx: XdpContext) -> u32 {
    let (Some(cfg), Some(out)) = (CONFIG.get(0), REPORT.get_ptr_mut(0)) else {
        return XDP_ABORTED;
    };
    if let Err(e) = frame::dissect(&XdpFrame::new(&ctx), &DissectProbe { ctx: &ctx, cfg, out }) {
        // SAFETY: the map's only slot; tests run one frame at a time.
        unsafe { *out = DissectReport::refused(e) };
    }
    XDP_PASS
}

struct DissectProbe<'a> {
    ctx: &'a XdpContext,
    cfg: &'a Config,
    out: *mut DissectReport,
}

impl TcpSink<XdpFrame> for DissectProbe<'_> {
    type Out = ();

    #[inline(always)]
    fn is_ours(&self, dport: u16) -> bool {
        self.cfg.ports.contains(dport)
    }

    #[inline(always)]
    fn tcp<const L2: usize, const L4: usize, A: IpHeader>(
        &self,
        _frame: &XdpFrame,
        ip: &A,
        th: &TcpFixed,
        tcp_len: usize,
    ) {
        report_segment::<L2, L4, A>(self.ctx, self.out, ip, th, tcp_len);
    }
}

/// The report of a segment, written to `out`. A subprogram: inlined into the six layouts of
/// the entry, the reports' stack slots exceeded the 512-byte stack.
#[inline(never)]
fn report_segment<const L2: usize, const L4: usize, A: IpHeader>(
    ctx: &XdpContext,
    out: *mut DissectReport,
    ip: &A,
    th: &TcpFixed,
    tcp_len: usize,
) {
    let mut r = DissectReport::segment::<L2, L4, A>(ip, th, tcp_len);
    let options = options::read_options::<L4>(ctx, th.header_len() - TCP_HLEN).map_err(|c| {
        if c == Counter::DropBadOptions { OPTIONS_MALFORMED } else { OPTIONS_TRUNCATED }
    });
    r.set_options(ip, th, tcp_len, options);
    // SAFETY: the report map's only slot (from the entry).
    unsafe { *out = r };
}

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
    let flow = FlowValue {
        server_isn: (end - data) as u32,
        client_isn: META_PROBE_MARK,
        queue: ctx.rx_queue_index() as u8,
        ..FlowValue::default()
    };
    if !write_meta(&ctx, RxMeta::MAGIC | RxMeta::FLOW, &flow) {
        return XDP_DROP;
    }
    XSKS.redirect(ctx.rx_queue_index(), 0).unwrap_or(XDP_DROP)
}
