//! Per-CPU outcome counters of the XDP program.
//!
//! The XDP program adds one to exactly one "verdict" counter per frame (every counter here but
//! [`Counter::RxFrames`]), so the verdicts sum to `RxFrames`: a test can check that nothing is
//! counted twice or lost.

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $variant:ident => $name:literal, )*) => {
        /// Index of a counter in the `SYNSHIELD_COUNTERS` per-CPU array.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Counter {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// Stable `snake_case` name, used in the status line and in metrics.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }
        }
    };
}

counters! {
    /// Every frame the program saw.
    RxFrames => "rx_frames",
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): the kernel's business.
    PassNotIp => "pass_not_ip",
    /// IP but not TCP (ICMP, UDP, ...): the kernel's business.
    PassNotTcp => "pass_not_tcp",
    /// TCP to a port we do not protect.
    PassOtherPort => "pass_other_port",
    /// No TCP header to judge: an IPv4 or IPv6 fragment after the first. The kernel cannot
    /// reassemble it without the first fragment, which is dropped if its port is ours.
    PassNoTcpHeader => "pass_no_tcp_header",
    /// Shorter than its headers claim: dropped.
    DropTruncated => "drop_truncated",
    /// IPv4 fragment (a fragment cannot be a SYN we answer): dropped.
    DropIpFragment => "drop_ip_fragment",
    /// IPv4 header with options: dropped on protected ports.
    DropIpOptions => "drop_ip_options",
    /// IPv6 extension header before TCP: dropped on protected ports.
    DropIpv6ExtHeader => "drop_ipv6_ext_header",
    /// More than four IPv6 extension headers: the port behind them is unknown, and passing them
    /// could reach the kernel's TCP on a protected port, so they are dropped, whatever the port.
    DropIpv6ExtHeaderChain => "drop_ipv6_ext_header_chain",
    /// IPv4 header or TCP checksum wrong: dropped.
    DropBadChecksum => "drop_bad_checksum",
    /// SYN (or an ACK we would answer with RST) to a broadcast or multicast MAC or IP address
    /// (IPv4 class E included): never answered, as the answer would come from that address.
    DropMulticastDestination => "drop_multicast_destination",
    /// SYN (or an ACK we would answer with RST) to an address that is not ours (the
    /// interface's or `--address`): never answered, as the answer would spoof it.
    DropNotLocalDestination => "drop_not_local_destination",
    /// SYN (or an ACK we would answer with RST) from a martian source (IPv4 0/8, 127/8,
    /// 224/4, 240/4; IPv6 ::, ::1, ff00::/8, v4-mapped): dropped.
    DropMartianSource => "drop_martian_source",
    /// SYN (or an ACK we would answer with RST) from one of our own addresses (a "land"
    /// attack): dropped.
    DropOwnSource => "drop_own_source",
    /// SYN carrying payload (a SYN flood's favourite): dropped.
    DropSynWithPayload => "drop_syn_with_payload",
    /// SYN with FIN, RST or ACK set (not a client's SYN): dropped.
    DropSynBadFlags => "drop_syn_bad_flags",
    /// TCP header shorter than 20 bytes (data offset below 5): dropped.
    DropBadTcpHeader => "drop_bad_tcp_header",
    /// TCP options malformed: dropped.
    DropBadOptions => "drop_bad_options",
    /// RST for a flow we do not know: dropped.
    DropRstUnknown => "drop_rst_unknown",
    /// Segment without ACK for a flow we do not know: dropped.
    DropNoAckUnknown => "drop_no_ack_unknown",
    /// ACK whose cookie does not validate (forged, expired or made with a retired key: one
    /// hash cannot tell them apart): dropped.
    DropAckInvalid => "drop_ack_invalid",
    /// Third ACK whose cookie validated but whose TCP checksum does not verify: dropped before
    /// any flow is inserted.
    DropAckBadChecksum => "drop_ack_bad_checksum",
    /// Third ACK whose cookie validated but whose TSecr claims an option (window scale, SACK,
    /// ECN) or timestamps that the configuration does not offer: dropped, as Linux does.
    DropAckOptionNotOffered => "drop_ack_option_not_offered",
    /// Valid ACK, but the flow table refused the insert: dropped. The table is an LRU map sized
    /// for `--max-conns` (see `flow`): it evicts rather than refuses, so this means the kernel
    /// found no entry to evict (or no memory): it should stay at zero.
    DropFlowTableFull => "drop_flow_table_full",
    /// Redirect to the AF_XDP socket failed (no socket on this queue): dropped.
    DropNoSocket => "drop_no_socket",
    /// `bpf_xdp_adjust_tail` refused to resize the frame for our answer (no tailroom): dropped.
    DropResizeFailed => "drop_resize_failed",
    /// SYN answered with a SYN-cookie SYN-ACK (XDP_TX).
    TxSynAck => "tx_synack",
    /// Invalid ACK answered with a RST (only when configured).
    TxRst => "tx_rst",
    /// Third-handshake ACK validated; flow inserted and redirected to userspace (metadata
    /// NEW_FLOW).
    RedirectNewFlow => "redirect_new_flow",
    /// Segment of a known flow redirected to userspace (metadata FLOW).
    RedirectFlow => "redirect_flow",
    /// SYN for a tuple in the flow map that is half-open (a retransmitted SYN: the shard
    /// answers with its SYN-ACK again) or, when userspace marks TIME-WAIT entries, established
    /// (RFC 5961 section 4: the engine answers with a challenge ACK): redirected to userspace
    /// (metadata FLOW).
    RedirectSynFlow => "redirect_syn_known_flow",
    /// SYN redirected to userspace to be answered statefully (stateful or adaptive mode;
    /// metadata SYN).
    RedirectSyn => "redirect_syn",
    /// SYN dropped in stateful mode: the RX queue's half-open table has no room (userspace
    /// said so), as Linux drops SYNs on a full queue without cookies.
    DropSynHalfOpenFull => "drop_syn_half_open_full",
    /// Bare ACK with a valid cookie for a tuple in TIME-WAIT, redirected to userspace to decide
    /// on a reopen (metadata REOPEN; the map is not written).
    RedirectReopen => "redirect_reopen",
    /// Redirected to userspace without metadata (`bpf_xdp_adjust_meta` refused: no headroom);
    /// counted instead of the redirect's kind. Userspace looks the flow up in the map.
    RedirectWithoutMeta => "redirect_without_meta",
}

/// Number of counters: the size of the counters map.
#[expect(clippy::cast_possible_truncation, reason = "a few dozen counters")]
pub const COUNTER_COUNT: u32 = Counter::ALL.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            for d in &Counter::ALL[..i] {
                assert_ne!(c.name(), d.name());
            }
        }
    }
}
