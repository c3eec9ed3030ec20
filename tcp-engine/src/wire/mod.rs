//! Wire formats: the TCP header and its options (RFC 9293 section 3.1, RFC 7323, RFC 2018),
//! and the Internet checksum with the IPv4 and IPv6 pseudo-headers.
//!
//! Two layers, as in smoltcp: [`Packet`] is a zero-copy view over bytes with a getter and a
//! setter per field, and [`TcpRepr`] is the owned, validated meaning of a header. Payload
//! bytes stay outside the repr so parsing never copies them.

mod checksum;
mod tcp;

pub use checksum::{PseudoHeader, internet_checksum};
pub use tcp::{Flags, HEADER_LEN, MAX_OPTIONS_LEN, Packet, SackRanges, TcpRepr, TcpTimestamp};

/// Why bytes could not be read or written as a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the header (or its declared length) needs.
    #[error("segment truncated")]
    Truncated,
    /// The data offset field is below 5 words.
    #[error("data offset below the minimum header length")]
    BadHeaderLength,
    /// The checksum over the pseudo-header and segment does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// An option's length byte is impossible for its kind or runs past the header.
    #[error("malformed option of kind {kind}")]
    MalformedOption {
        /// The option kind byte.
        kind: u8,
    },
    /// The pseudo-header addresses are not both IPv4 or both IPv6.
    #[error("source and destination address families differ")]
    AddressFamilyMismatch,
    /// The output buffer cannot hold the segment.
    #[error("buffer too small for the segment")]
    BufferTooSmall,
}
