//! The one wire layer: what the XDP program, the data path and the engine read off the wire.
//!
//! - [`frame`]: the frame dissector (Ethernet, up to two VLAN tags, IPv4, IPv6, TCP), generic
//!   over the byte source: XDP packet memory with verifier-proof bounds, or a slice on the host.
//! - [`options`]: the TCP option parser, one core with two instances (the XDP program's, which
//!   skips SACK blocks, and the host's).
//! - [`SeqNumber`], [`Flags`], [`TcpTimestamp`], [`SackRanges`], [`TcpRepr`]: the vocabulary
//!   of a TCP segment; [`Packet`] is a zero-copy view of one, smoltcp-style, and
//!   [`TcpRepr::parse_segment`] turns a segment into its header and a borrowed payload,
//!   checksum verified against the [`PseudoHeader`].
//!
//! Emitting segments is the engine's (`tcp_engine::wire`); the XDP program writes its few
//! answers itself (`synack`).

pub mod frame;
pub mod options;
mod seq;
mod tcp;

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use frame::{Frame, FrameError};
pub use seq::SeqNumber;
pub use tcp::{Flags, HEADER_LEN, MAX_OPTIONS_LEN, Packet, SackRanges, TcpRepr, TcpTimestamp};

use crate::checksum::{Sum, sum_bytes};
use crate::proto::IPPROTO_TCP;

/// Why bytes could not be read or written as a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header (or its declared length) needs.
    Truncated,
    /// The data offset field is below 5 words.
    BadHeaderLength,
    /// The checksum over the pseudo-header and segment does not verify.
    BadChecksum,
    /// An option's length is impossible for its kind or runs past the header (see
    /// [`options`] for the rules).
    MalformedOptions,
    /// The pseudo-header addresses are not both IPv4 or both IPv6.
    AddressFamilyMismatch,
    /// The output buffer cannot hold the segment.
    BufferTooSmall,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "segment truncated",
            WireError::BadHeaderLength => "data offset below the minimum header length",
            WireError::BadChecksum => "bad checksum",
            WireError::MalformedOptions => "malformed TCP options",
            WireError::AddressFamilyMismatch => "source and destination address families differ",
            WireError::BufferTooSmall => "buffer too small for the segment",
        })
    }
}

impl core::error::Error for WireError {}

/// The addresses that the TCP checksum covers besides the segment itself (RFC 9293 section
/// 3.1 for IPv4, RFC 8200 section 8.1 for IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PseudoHeader {
    /// Both ends IPv4.
    V4 {
        /// Source address of the IP packet.
        src: Ipv4Addr,
        /// Destination address of the IP packet.
        dst: Ipv4Addr,
    },
    /// Both ends IPv6.
    V6 {
        /// Source address of the IP packet.
        src: Ipv6Addr,
        /// Destination address of the IP packet.
        dst: Ipv6Addr,
    },
}

impl PseudoHeader {
    /// The pseudo-header of a packet from `src` to `dst`; both must be of one family.
    pub fn new(src: IpAddr, dst: IpAddr) -> Result<PseudoHeader, WireError> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Ok(PseudoHeader::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Ok(PseudoHeader::V6 { src, dst }),
            _ => Err(WireError::AddressFamilyMismatch),
        }
    }

    /// The unfolded ones'-complement sum of the pseudo-header for a segment of `tcp_len`
    /// bytes.
    #[must_use]
    pub fn sum(&self, tcp_len: usize) -> Sum {
        let len = u64::try_from(tcp_len).unwrap_or(u64::MAX);
        let (src, dst) = match self {
            PseudoHeader::V4 { src, dst } => (sum_bytes(&src.octets()), sum_bytes(&dst.octets())),
            PseudoHeader::V6 { src, dst } => (sum_bytes(&src.octets()), sum_bytes(&dst.octets())),
        };
        // The length is 16 bits in the IPv4 pseudo-header and 32 in IPv6's: adding its two
        // 16-bit halves covers both.
        src.add_sum(dst).add16(u16::from(IPPROTO_TCP)).add_sum(Sum((len >> 16) + (len & 0xffff)))
    }

    /// The value for the checksum field of `segment`, whose checksum field must be zero.
    #[must_use]
    pub fn tcp_checksum(&self, segment: &[u8]) -> u16 {
        self.sum(segment.len()).add_sum(sum_bytes(segment)).checksum()
    }

    /// Whether `segment` (checksum field included) verifies.
    #[must_use]
    pub fn verify_tcp(&self, segment: &[u8]) -> bool {
        self.sum(segment.len()).add_sum(sum_bytes(segment)).fold() == 0xffff
    }
}
