//! The TCP pseudo-headers (RFC 9293 section 3.1 for IPv4, RFC 8200 section 8.1 for IPv6)
//! over the one Internet checksum (RFC 1071) the project has: `tcp_common::checksum`, which
//! the XDP program uses too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tcp_common::checksum::{Sum, sum_bytes};

use super::WireError;

const PROTOCOL_TCP: u8 = 6;

/// The addresses that the TCP checksum covers besides the segment itself.
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

    /// The unfolded one's complement sum of the pseudo-header for a segment of `tcp_len`
    /// bytes.
    fn sum(&self, tcp_len: usize) -> Sum {
        let len = u64::try_from(tcp_len).unwrap_or(u64::MAX);
        let (src, dst) = match self {
            PseudoHeader::V4 { src, dst } => (sum_bytes(&src.octets()), sum_bytes(&dst.octets())),
            PseudoHeader::V6 { src, dst } => (sum_bytes(&src.octets()), sum_bytes(&dst.octets())),
        };
        // The length is 16 bits in the IPv4 pseudo-header and 32 in IPv6's: adding its two
        // 16-bit halves covers both.
        src.add_sum(dst).add16(u16::from(PROTOCOL_TCP)).add_sum(Sum((len >> 16) + (len & 0xffff)))
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

/// The one's complement of the one's complement sum of `data` (RFC 1071).
#[must_use]
pub fn internet_checksum(data: &[u8]) -> u16 {
    sum_bytes(data).checksum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(!internet_checksum(&data), 0xddf2);
        // Odd length pads with a zero byte.
        assert_eq!(internet_checksum(&[0x01]), !0x0100);
    }

    #[test]
    fn mixed_families_are_rejected() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(PseudoHeader::new(v4, v6), Err(WireError::AddressFamilyMismatch));
    }
}
