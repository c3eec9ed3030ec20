//! Wire formats. The TCP vocabulary and its parser are the shared wire layer's
//! (`tcp_common::wire`, the same code the XDP program and the data path use), re-exported here
//! under the engine's paths; what is host-only stays here: emitting segments ([`EmitSegment`]).
//!
//! As in smoltcp, [`Packet`] is a zero-copy view over bytes with a getter and a setter per
//! field, and [`TcpRepr`] is the owned, validated meaning of a header. Payload bytes stay
//! outside the repr so parsing never copies them.

mod emit;

pub use emit::EmitSegment;
pub use tcp_common::checksum::internet_checksum;
pub use tcp_common::wire::{
    Flags, HEADER_LEN, MAX_OPTIONS_LEN, Packet, PseudoHeader, SackRanges, TcpRepr, TcpTimestamp,
    WireError,
};
