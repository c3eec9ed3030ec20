//! Emitting TCP segments (host only): the option layout Linux uses, the header, the payload
//! and the checksum over the pseudo-header. Parsing is the shared wire layer's
//! (`tcp_common::wire`), so [`EmitSegment`] extends its [`TcpRepr`].

use tcp_common::wire::options::kind;

use super::{Flags, HEADER_LEN, MAX_OPTIONS_LEN, Packet, PseudoHeader, TcpRepr, WireError};

/// Writing a [`TcpRepr`] as a segment. Bring it into scope to call its methods
/// (`use tcp_engine::wire::EmitSegment as _;`).
pub trait EmitSegment {
    /// Header length in bytes as emitted.
    ///
    /// The options must fit in 40 bytes; [`EmitSegment::fit_options`] trims SACK blocks so
    /// that they do.
    #[must_use]
    fn header_len(&self) -> usize;

    /// Header length in bytes as emitted (smoltcp's name for it).
    #[must_use]
    fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// Drops SACK blocks from the end until the options fit in 40 bytes.
    fn fit_options(&mut self);

    /// Writes the header into `packet` (which must be exactly header plus `payload` long),
    /// copies `payload` and fills in the checksum.
    fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        payload: &[u8],
        pseudo: &PseudoHeader,
    ) -> Result<(), WireError>;

    /// Emits header and payload into the front of `buf`, returning the segment length.
    fn emit_segment(
        &self,
        buf: &mut [u8],
        payload: &[u8],
        pseudo: &PseudoHeader,
    ) -> Result<usize, WireError> {
        self.emit_with(buf, payload.len(), pseudo, |out| out.copy_from_slice(payload))
    }

    /// Emits the header into the front of `buf`, lets `fill` write the `payload_len` bytes of
    /// payload behind it, then fills in the checksum; returns the segment length.
    ///
    /// For payload that is not one slice (say, the two halves of a ring buffer): it is
    /// copied once, straight into the output. The one header writer: the other emitters
    /// call it.
    fn emit_with(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        pseudo: &PseudoHeader,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, WireError>;
}

impl EmitSegment for TcpRepr {
    fn header_len(&self) -> usize {
        HEADER_LEN + options_len(self)
    }

    fn fit_options(&mut self) {
        while packed_options_len(self) > MAX_OPTIONS_LEN && !self.sack_ranges.is_empty() {
            self.sack_ranges.truncate(self.sack_ranges.len() - 1);
        }
    }

    fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        payload: &[u8],
        pseudo: &PseudoHeader,
    ) -> Result<(), WireError> {
        let mut repr = *self;
        repr.fit_options();
        let header_len = repr.header_len();
        if packet.total_len() != header_len + payload.len() {
            return Err(WireError::BufferTooSmall);
        }
        write_header(&repr, packet, header_len)?;
        packet.payload_mut().copy_from_slice(payload);
        packet.fill_checksum(pseudo);
        Ok(())
    }

    fn emit_with(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        pseudo: &PseudoHeader,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, WireError> {
        let mut repr = *self;
        repr.fit_options();
        let header_len = repr.header_len();
        let len = header_len + payload_len;
        let out = buf.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        let mut packet = Packet::new_unchecked(out);
        write_header(&repr, &mut packet, header_len)?;
        fill(packet.payload_mut());
        packet.fill_checksum(pseudo);
        Ok(len)
    }
}

/// The header fields and options of `repr` (options already fitted) into `packet`.
fn write_header<T: AsRef<[u8]> + AsMut<[u8]>>(
    repr: &TcpRepr,
    packet: &mut Packet<T>,
    header_len: usize,
) -> Result<(), WireError> {
    packet.set_src_port(repr.src_port);
    packet.set_dst_port(repr.dst_port);
    packet.set_seq_number(repr.seq_number);
    packet.set_ack_number(repr.ack_number.unwrap_or_default());
    packet.set_header_len(u8::try_from(header_len).map_err(|_| WireError::BufferTooSmall)?);
    let ack = if repr.ack_number.is_some() { Flags::ACK } else { Flags::NONE };
    packet.set_flags(repr.flags.without(Flags::ACK) | ack);
    packet.set_window_len(repr.window_len);
    packet.set_urgent_at(repr.urgent_at);
    emit_options(repr, packet.options_mut());
    Ok(())
}

/// Option bytes with NOP alignment as Linux lays them out, unpadded.
fn aligned_options_len(r: &TcpRepr) -> usize {
    let mut len = 0;
    if r.max_seg_size.is_some() {
        len += 4;
    }
    if r.window_scale.is_some() {
        len += 4; // NOP + 3
    }
    if r.sack_permitted {
        len += 4; // NOP NOP + 2
    }
    if r.timestamp.is_some() {
        len += 12; // NOP NOP + 10
    }
    if !r.sack_ranges.is_empty() {
        len += 4 + 8 * r.sack_ranges.len(); // NOP NOP + 2 + blocks
    }
    len
}

/// Option bytes without any alignment NOPs.
fn packed_options_len(r: &TcpRepr) -> usize {
    let mut len = 0;
    if r.max_seg_size.is_some() {
        len += 4;
    }
    if r.window_scale.is_some() {
        len += 3;
    }
    if r.sack_permitted {
        len += 2;
    }
    if r.timestamp.is_some() {
        len += 10;
    }
    if !r.sack_ranges.is_empty() {
        len += 2 + 8 * r.sack_ranges.len();
    }
    len
}

/// Whether the options are laid out with alignment NOPs (they are unless that would not
/// fit in 40 bytes).
fn aligned(r: &TcpRepr) -> bool {
    aligned_options_len(r) <= MAX_OPTIONS_LEN
}

/// Option bytes as emitted, padded to a multiple of four.
fn options_len(r: &TcpRepr) -> usize {
    let raw = if aligned(r) { aligned_options_len(r) } else { packed_options_len(r) };
    raw.div_ceil(4) * 4
}

/// Writes the options into `out`, which is exactly `options_len()` long.
fn emit_options(r: &TcpRepr, out: &mut [u8]) {
    let aligned = aligned(r);
    let mut w = OptionWriter { out, at: 0 };
    if let Some(mss) = r.max_seg_size {
        let [a, b] = mss.to_be_bytes();
        w.put(&[kind::MSS, 4, a, b]);
    }
    if let Some(shift) = r.window_scale {
        if aligned {
            w.put(&[kind::NOP]);
        }
        w.put(&[kind::WINDOW_SCALE, 3, shift]);
    }
    if r.sack_permitted {
        if aligned {
            w.put(&[kind::NOP, kind::NOP]);
        }
        w.put(&[kind::SACK_PERMITTED, 2]);
    }
    if let Some(ts) = r.timestamp {
        if aligned {
            w.put(&[kind::NOP, kind::NOP]);
        }
        w.put(&[kind::TIMESTAMPS, 10]);
        w.put(&ts.tsval.to_be_bytes());
        w.put(&ts.tsecr.to_be_bytes());
    }
    if !r.sack_ranges.is_empty() {
        if aligned {
            w.put(&[kind::NOP, kind::NOP]);
        }
        let len = u8::try_from(2 + 8 * r.sack_ranges.len()).unwrap_or(0);
        w.put(&[kind::SACK, len]);
        for (left, right) in r.sack_ranges.as_slice() {
            w.put(&left.raw().to_be_bytes());
            w.put(&right.raw().to_be_bytes());
        }
    }
    // Pad with EOL (zeros).
    let at = w.at;
    if let Some(rest) = w.out.get_mut(at..) {
        rest.fill(kind::END);
    }
}

/// Appends bytes to the options area; silently stops at its end (lengths are computed
/// beforehand, so that never happens).
struct OptionWriter<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl OptionWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.out.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.at += bytes.len();
        }
    }
}
#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::SeqNumber;
    use crate::wire::{SackRanges, TcpTimestamp};

    const PSEUDO: PseudoHeader =
        PseudoHeader::V4 { src: Ipv4Addr::new(192, 168, 1, 1), dst: Ipv4Addr::new(192, 168, 1, 2) };

    fn full_repr() -> TcpRepr {
        let mut sack = SackRanges::new();
        sack.push(SeqNumber::new(100), SeqNumber::new(200));
        sack.push(SeqNumber::new(300), SeqNumber::new(400));
        TcpRepr {
            ack_number: Some(SeqNumber::new(7)),
            flags: Flags::PSH | Flags::FIN,
            window_len: 1000,
            timestamp: Some(TcpTimestamp { tsval: 1, tsecr: 2 }),
            sack_ranges: sack,
            ..TcpRepr::new(1, 2, SeqNumber::new(u32::MAX))
        }
    }

    #[test]
    fn emit_then_parse_roundtrips() {
        let payload = b"hello";
        for repr in [
            full_repr(),
            TcpRepr {
                flags: Flags::SYN,
                max_seg_size: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: Some(TcpTimestamp { tsval: 9, tsecr: 0 }),
                ..TcpRepr::new(80, 50000, SeqNumber::new(5))
            },
            TcpRepr { flags: Flags::RST, ..TcpRepr::new(3, 4, SeqNumber::new(6)) },
        ] {
            let mut buf = vec![0u8; 100];
            let len = repr.emit_segment(&mut buf, payload, &PSEUDO).expect("fits");
            assert_eq!(len, repr.header_len() + payload.len());
            assert_eq!(repr.header_len() % 4, 0);
            let packet = Packet::new_checked(&buf[..len]).expect("valid");
            assert_eq!(TcpRepr::parse(&packet, &PSEUDO), Ok(repr));
            assert_eq!(packet.payload(), payload);
        }
    }

    #[test]
    fn emit_packs_options_when_alignment_would_overflow() {
        let mut repr = full_repr();
        repr.max_seg_size = Some(536);
        repr.sack_ranges.push(SeqNumber::new(500), SeqNumber::new(600));
        // 4 + 10 + 26 packed = 40: fits only without NOPs.
        assert_eq!(repr.header_len(), 60);
        let mut buf = [0u8; 60];
        repr.emit_segment(&mut buf, &[], &PSEUDO).expect("fits");
        let parsed = TcpRepr::parse(&Packet::new_checked(&buf[..]).expect("valid"), &PSEUDO);
        assert_eq!(parsed, Ok(repr));
        // A fourth block cannot fit next to timestamps: it is dropped.
        repr.sack_ranges.push(SeqNumber::new(700), SeqNumber::new(800));
        repr.emit_segment(&mut buf, &[], &PSEUDO).expect("fits");
        let parsed = TcpRepr::parse(&Packet::new_checked(&buf[..]).expect("valid"), &PSEUDO)
            .expect("parses");
        assert_eq!(parsed.sack_ranges.len(), 3);
    }

    #[test]
    fn ipv6_checksum_roundtrips() {
        let pseudo = PseudoHeader::V6 {
            src: "2001:db8::1".parse().expect("addr"),
            dst: "2001:db8::2".parse().expect("addr"),
        };
        let repr = full_repr();
        let mut buf = [0u8; 80];
        let len = repr.emit_segment(&mut buf, b"v6 payload", &pseudo).expect("fits");
        let packet = Packet::new_checked(&buf[..len]).expect("valid");
        assert_eq!(TcpRepr::parse(&packet, &pseudo), Ok(repr));
        assert_eq!(TcpRepr::parse(&packet, &PSEUDO), Err(WireError::BadChecksum));
    }

    #[test]
    fn emit_into_small_buffer_fails() {
        let mut buf = [0u8; 20];
        assert_eq!(
            full_repr().emit_segment(&mut buf, b"x", &PSEUDO),
            Err(WireError::BufferTooSmall)
        );
    }
}
