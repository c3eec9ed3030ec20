//! The Internet checksum (RFC 1071) and the TCP pseudo-headers (RFC 9293 section 3.1 for
//! IPv4, RFC 8200 section 8.1 for IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    fn sum(&self, tcp_len: usize) -> u64 {
        let len = u64::try_from(tcp_len).unwrap_or(u64::MAX);
        match self {
            PseudoHeader::V4 { src, dst } => {
                sum_bytes(&src.octets()) + sum_bytes(&dst.octets()) + u64::from(PROTOCOL_TCP) + len
            }
            PseudoHeader::V6 { src, dst } => {
                sum_bytes(&src.octets())
                    + sum_bytes(&dst.octets())
                    + (len >> 16)
                    + (len & 0xffff)
                    + u64::from(PROTOCOL_TCP)
            }
        }
    }

    /// The value for the checksum field of `segment`, whose checksum field must be zero.
    #[must_use]
    pub fn tcp_checksum(&self, segment: &[u8]) -> u16 {
        !fold(self.sum(segment.len()) + sum_bytes(segment))
    }

    /// Whether `segment` (checksum field included) verifies.
    #[must_use]
    pub fn verify_tcp(&self, segment: &[u8]) -> bool {
        fold(self.sum(segment.len()) + sum_bytes(segment)) == 0xffff
    }
}

/// The one's complement of the one's complement sum of `data` (RFC 1071).
#[must_use]
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_bytes(data))
}

/// Sums `data` as big-endian 16-bit words, eight bytes at a time, without folding.
fn sum_bytes(data: &[u8]) -> u64 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_be_bytes(word);
        // Add the four 16-bit words in two 32-bit halves so nothing overflows.
        sum += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for pair in &mut rest {
        sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = rest.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a wide sum to 16 bits with end-around carry.
#[expect(clippy::cast_possible_truncation, reason = "the loop leaves at most 16 bits")]
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
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
    fn wide_sum_matches_naive_sum() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect();
        let mut naive: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            naive += hi + pair.get(1).map_or(0, |b| u64::from(*b));
        }
        assert_eq!(fold(sum_bytes(&data)), fold(naive));
    }

    #[test]
    fn mixed_families_are_rejected() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(PseudoHeader::new(v4, v6), Err(WireError::AddressFamilyMismatch));
    }
}
