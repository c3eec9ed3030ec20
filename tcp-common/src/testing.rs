//! Programs and maps in the XDP object that only tests load (never attached by synshield), and
//! the report of the dissector probe, built the same way on both sides.
//!
//! The dissector probe runs the shared frame dissector and the XDP program's option reader
//! (fast path, `bpf_xdp_load_bytes`, the parser as a global function) on a frame and writes a
//! [`DissectReport`] to [`REPORT_MAP`]; [`host_report`] builds the same report with the host's
//! instances (a slice, `parse_options_with_sack`). tcp-user/tests/xdp_differential.rs compares
//! them on random and mutated frames.

use crate::checksum::{Sum, sum_bytes};
use crate::config::PortSet;
use crate::flow::FlowKey;
use crate::synack::pseudo_header_sum;
use crate::wire::frame::{self, FrameError, IpHeader, TcpFixed, TcpSink};
use crate::wire::options::{TcpOptions, options_buf, parse_options_with_sack};

/// Redirects IPv4 UDP frames to [`META_PROBE_PORT`] to the queue's AF_XDP socket with an
/// [`crate::RxMeta`] of kind FLOW whose `server_isn` is the frame length and `client_isn`
/// [`META_PROBE_MARK`]; passes everything else.
pub const META_PROBE_PROGRAM: &str = "synshield_test_meta";
/// The UDP port the metadata probe redirects.
pub const META_PROBE_PORT: u16 = 9;
/// A value the metadata probe writes, to recognise its metadata.
pub const META_PROBE_MARK: u32 = 0x5eed_f00d;

/// Dissects the frame with the ports of the config map, reads the options as the SYN path
/// does, and writes a [`DissectReport`] to [`REPORT_MAP`]. Returns XDP_PASS.
pub const DISSECT_PROBE_PROGRAM: &str = "synshield_test_dissect";
/// `Array<DissectReport>` with one entry, written by the dissector probe.
pub const REPORT_MAP: &str = "SYNSHIELD_TEST_REPORT";

/// [`DissectReport::outcome`]: the dissector refused the frame (`error` says why).
pub const OUTCOME_ERROR: u32 = 1;
/// [`DissectReport::outcome`]: a TCP segment to one of our ports.
pub const OUTCOME_TCP: u32 = 2;

/// [`DissectReport::options_status`]: parsed.
pub const OPTIONS_OK: u32 = 0;
/// [`DissectReport::options_status`]: malformed.
pub const OPTIONS_MALFORMED: u32 = 1;
/// [`DissectReport::options_status`]: could not be read (truncated).
pub const OPTIONS_TRUNCATED: u32 = 2;

/// What the dissector and the option reader made of a frame. Plain `#[repr(C)]` integers, no
/// padding (a map value). Fields after `outcome` are zero unless they apply.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DissectReport {
    /// [`OUTCOME_ERROR`] or [`OUTCOME_TCP`].
    pub outcome: u32,
    /// The [`FrameError`]'s counter index, for [`OUTCOME_ERROR`].
    pub error: u32,
    /// IP header offset (the layout's `L2`).
    pub l2: u32,
    /// TCP header offset (the layout's `L4`).
    pub l4: u32,
    /// Bytes of TCP in the IP payload.
    pub tcp_len: u32,
    /// The ECN field of the IP header.
    pub ecn: u32,
    /// Ports, in one word (source high).
    pub ports: u32,
    pub seq: u32,
    pub ack: u32,
    /// Data offset, reserved bits and flags (high), window (low).
    pub off_flags_window: u32,
    /// Checksum and urgent pointer.
    pub csum_urg: u32,
    /// Folded sum of the pseudo-header, the fixed header and the options (what the SYN path
    /// checks against 0xffff).
    pub header_sum: u32,
    /// [`OPTIONS_OK`], [`OPTIONS_MALFORMED`] or [`OPTIONS_TRUNCATED`].
    pub options_status: u32,
    /// The options, if [`OPTIONS_OK`].
    pub options: TcpOptions,
    /// The flow-map key.
    pub flow_key: FlowKey,
}

impl DissectReport {
    /// The report of a refused frame.
    #[inline(always)]
    #[must_use]
    pub fn refused(e: FrameError) -> DissectReport {
        DissectReport { outcome: OUTCOME_ERROR, error: e.counter() as u32, ..Default::default() }
    }

    /// The report of a segment, without its options (`options_status` OK, no options).
    #[inline(always)]
    #[must_use]
    pub fn segment<const L2: usize, const L4: usize, A: IpHeader>(
        ip: &A,
        th: &TcpFixed,
        tcp_len: usize,
    ) -> DissectReport {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "offsets below 64, lengths below 64 KiB"
        )]
        DissectReport {
            outcome: OUTCOME_TCP,
            error: 0,
            l2: L2 as u32,
            l4: L4 as u32,
            tcp_len: tcp_len as u32,
            ecn: u32::from(ip.ecn()),
            ports: u32::from(th.sport) << 16 | u32::from(th.dport),
            seq: th.seq,
            ack: th.ack,
            off_flags_window: u32::from(th.off_flags) << 16 | u32::from(th.window),
            csum_urg: th.csum_urg,
            header_sum: 0,
            options_status: OPTIONS_OK,
            options: TcpOptions::default(),
            flow_key: ip.flow_key(th.sport, th.dport),
        }
    }

    /// Adds the options (or why not) and the header sum, given the options' sum.
    #[inline(always)]
    pub fn set_options<A: IpHeader>(
        &mut self,
        ip: &A,
        th: &TcpFixed,
        tcp_len: usize,
        options: Result<(TcpOptions, Sum), u32>,
    ) {
        match options {
            Ok((o, sum)) => {
                self.options = o;
                #[expect(clippy::cast_possible_truncation, reason = "below 64 KiB")]
                let s = pseudo_header_sum(ip.addr_sum(), tcp_len as u16).add_sum(th.sum());
                self.header_sum = u32::from(s.add_sum(sum).fold());
            }
            Err(status) => self.options_status = status,
        }
    }
}

/// The report the host's instances make of `frame`, with `ports` ours.
#[must_use]
pub fn host_report(frame: &[u8], ports: &PortSet) -> DissectReport {
    match frame::dissect(frame, &HostProbe { frame, ports }) {
        Ok(r) => r,
        Err(e) => DissectReport::refused(e),
    }
}

struct HostProbe<'a> {
    frame: &'a [u8],
    ports: &'a PortSet,
}

impl TcpSink<[u8]> for HostProbe<'_> {
    type Out = DissectReport;

    fn is_ours(&self, dport: u16) -> bool {
        self.ports.contains(dport)
    }

    fn tcp<const L2: usize, const L4: usize, A: IpHeader>(
        &self,
        _frame: &[u8],
        ip: &A,
        th: &TcpFixed,
        tcp_len: usize,
    ) -> DissectReport {
        let mut r = DissectReport::segment::<L2, L4, A>(ip, th, tcp_len);
        let options = self.frame.get(L4 + 20..L4 + th.header_len()).unwrap_or_default();
        let parsed = parse_options_with_sack(&options_buf(options), options.len())
            .map(|(o, _)| (o, sum_bytes(options)))
            .map_err(|_| OPTIONS_MALFORMED);
        r.set_options(ip, th, tcp_len, parsed);
        r
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers only, no padding (checked by a test).
unsafe impl aya::Pod for DissectReport {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_no_padding() {
        assert_eq!(core::mem::size_of::<DissectReport>(), 13 * 4 + 12 + 36);
    }
}
