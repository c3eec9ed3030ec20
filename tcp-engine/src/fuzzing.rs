//! The segment parser's fuzz property, shared by the libFuzzer target (`fuzz/`) and the
//! corpus replay test, so both check the same thing.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::EmitSegment as _;
use crate::wire::{Packet, PseudoHeader, TcpRepr};

/// Pseudo-headers the corpus checksums are computed for.
pub const PSEUDO_V4: PseudoHeader =
    PseudoHeader::V4 { src: Ipv4Addr::new(192, 0, 2, 1), dst: Ipv4Addr::new(192, 0, 2, 2) };
/// The IPv6 one.
pub const PSEUDO_V6: PseudoHeader = PseudoHeader::V6 {
    src: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    dst: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
};

/// Parses `data` as a TCP segment (with and without checksum verification); whatever
/// parses must re-emit and re-parse to the same header and payload. Panics otherwise.
pub fn parse_segment(data: &[u8]) {
    let Ok(packet) = Packet::new_checked(data) else { return };
    // Accessors cannot panic after `check_len`.
    let _ = (
        packet.src_port(),
        packet.dst_port(),
        packet.seq_number(),
        packet.ack_number(),
        packet.flags(),
    );
    let _ = (
        packet.window_len(),
        packet.checksum(),
        packet.urgent_at(),
        packet.options(),
        packet.payload(),
    );
    for pseudo in [PSEUDO_V4, PSEUDO_V6] {
        if let Ok(repr) = TcpRepr::parse(&packet, &pseudo) {
            assert_eq!(TcpRepr::parse_ignoring_checksum(&packet), Ok(repr));
            roundtrip(&repr, packet.payload(), &pseudo);
        }
    }
    if let Ok(repr) = TcpRepr::parse_ignoring_checksum(&packet) {
        roundtrip(&repr, packet.payload(), &PSEUDO_V4);
    }
}

fn roundtrip(repr: &TcpRepr, payload: &[u8], pseudo: &PseudoHeader) {
    let mut buf = vec![0u8; repr.header_len() + payload.len()];
    let len = match repr.emit_segment(&mut buf, payload, pseudo) {
        Ok(len) => len,
        Err(e) => panic!("a parsed header must re-emit: {e} {repr:?}"),
    };
    let again =
        Packet::new_checked(&buf[..len]).and_then(|p| TcpRepr::parse(&p, pseudo).map(|r| (r, p)));
    match again {
        Ok((again, packet)) => {
            assert_eq!(&again, repr, "re-parse differs");
            assert_eq!(packet.payload(), payload, "payload differs");
        }
        Err(e) => panic!("an emitted segment must parse: {e} {repr:?}"),
    }
}
