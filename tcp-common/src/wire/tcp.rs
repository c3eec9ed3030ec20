//! The TCP header (RFC 9293 section 3.1): a zero-copy view ([`Packet`]) and its owned,
//! validated meaning ([`TcpRepr`]), whose options come from the one option parser
//! (`wire::options`).

use core::fmt;
use core::ops::BitOr;

use super::options::{MalformedOptions, options_buf, parse_options_with_sack};
use super::{PseudoHeader, SeqNumber, WireError};

/// Byte ranges of the fixed header.
mod field {
    pub type Field = core::ops::Range<usize>;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (4 bits), reserved (4 bits), flags (8 bits).
    pub const FLAGS: Field = 12..14;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;

    pub const fn options(header_len: usize) -> Field {
        URGENT.end..header_len
    }
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::URGENT.end;
pub use super::options::MAX_OPTIONS_LEN;

/// The control bits. The ACK bit is not kept here in a [`TcpRepr`]: there it is
/// `ack_number.is_some()`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// No more data from sender.
    pub const FIN: Flags = Flags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x02);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x04);
    /// Push function.
    pub const PSH: Flags = Flags(0x08);
    /// Acknowledgment field is significant (wire level only).
    pub const ACK: Flags = Flags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: Flags = Flags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: Flags = Flags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: Flags = Flags(0x80);

    /// The flags from the raw flags byte.
    #[must_use]
    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }

    /// The raw flags byte.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    #[must_use]
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags without those of `other`.
    #[must_use]
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// FIN is set.
    #[must_use]
    pub const fn fin(self) -> bool {
        self.contains(Flags::FIN)
    }

    /// SYN is set.
    #[must_use]
    pub const fn syn(self) -> bool {
        self.contains(Flags::SYN)
    }

    /// RST is set.
    #[must_use]
    pub const fn rst(self) -> bool {
        self.contains(Flags::RST)
    }

    /// PSH is set.
    #[must_use]
    pub const fn psh(self) -> bool {
        self.contains(Flags::PSH)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// A read/write view of a TCP segment in a buffer.
///
/// After [`Packet::new_checked`] (or [`Packet::check_len`]) succeeded, no accessor panics.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(data: &[u8], f: field::Field) -> u16 {
    let b = &data[f];
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(data: &[u8], f: field::Field) -> u32 {
    let b = &data[f];
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic until [`Packet::check_len`]
    /// passed.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` and checks that the header fits, so accessors cannot panic.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed header and the declared header length fit in the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            Err(WireError::BadHeaderLength)
        } else if header_len > len {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[must_use]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[must_use]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    #[must_use]
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber::new(be32(self.buffer.as_ref(), field::SEQ_NUM))
    }

    /// Acknowledgment number (meaningful only with the ACK flag).
    #[must_use]
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber::new(be32(self.buffer.as_ref(), field::ACK_NUM))
    }

    /// Header length in bytes, from the data offset field.
    #[must_use]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    /// The control bits, ACK included.
    #[must_use]
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS.start + 1])
    }

    /// Window field, unscaled.
    #[must_use]
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field.
    #[must_use]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer field.
    #[must_use]
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// The option bytes.
    #[must_use]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::options(usize::from(self.header_len()))]
    }

    /// The payload bytes.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..]
    }

    /// Length of header and payload together.
    #[must_use]
    pub fn total_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Whether the checksum verifies for a packet with these pseudo-header addresses.
    #[must_use]
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        pseudo.verify_tcp(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn put16(&mut self, f: field::Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    fn put32(&mut self, f: field::Field, v: u32) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.put16(field::SRC_PORT, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.put16(field::DST_PORT, v);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, v: SeqNumber) {
        self.put32(field::SEQ_NUM, v.raw());
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, v: SeqNumber) {
        self.put32(field::ACK_NUM, v.raw());
    }

    /// Sets the header length (a multiple of 4 from 20 to 60) and clears the reserved bits.
    pub fn set_header_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::FLAGS.start] = (len / 4) << 4;
    }

    /// Sets the control bits.
    pub fn set_flags(&mut self, flags: Flags) {
        self.buffer.as_mut()[field::FLAGS.start + 1] = flags.0;
    }

    /// Sets the window field.
    pub fn set_window_len(&mut self, v: u16) {
        self.put16(field::WIN_SIZE, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.put16(field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, v: u16) {
        self.put16(field::URGENT, v);
    }

    /// The option bytes, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = field::options(usize::from(self.header_len()));
        &mut self.buffer.as_mut()[range]
    }

    /// The payload bytes, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.header_len());
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let sum = pseudo.tcp_checksum(self.buffer.as_ref());
        self.set_checksum(sum);
    }
}

/// The TCP timestamps option (RFC 7323 section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpTimestamp {
    /// The sender's clock.
    pub tsval: u32,
    /// The most recent TSval the sender received.
    pub tsecr: u32,
}

/// Up to four SACK blocks (RFC 2018), each `[left, right)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SackRanges {
    blocks: [(SeqNumber, SeqNumber); 4],
    len: u8,
}

impl SackRanges {
    /// The most blocks one segment can carry.
    pub const CAPACITY: usize = 4;

    /// No blocks.
    #[must_use]
    pub const fn new() -> SackRanges {
        SackRanges { blocks: [(SeqNumber::new(0), SeqNumber::new(0)); 4], len: 0 }
    }

    /// Appends a block; returns `false` when all four slots are taken.
    pub fn push(&mut self, left: SeqNumber, right: SeqNumber) -> bool {
        match self.blocks.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = (left, right);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Keeps only the first `len` blocks.
    pub fn truncate(&mut self, len: usize) {
        if len < usize::from(self.len) {
            self.len = u8::try_from(len).unwrap_or(0);
        }
    }

    /// The blocks.
    #[must_use]
    pub fn as_slice(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.blocks[..usize::from(self.len)]
    }

    /// Number of blocks.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are no blocks.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for SackRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The owned meaning of a TCP header. The payload is not part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: SeqNumber,
    /// Acknowledgment number; `Some` exactly when the ACK flag is set.
    pub ack_number: Option<SeqNumber>,
    /// Control bits other than ACK.
    pub flags: Flags,
    /// Window field, unscaled (RFC 7323: never scaled on a SYN).
    pub window_len: u16,
    /// Urgent pointer, carried but not interpreted.
    pub urgent_at: u16,
    /// Maximum segment size option.
    pub max_seg_size: Option<u16>,
    /// Window scale option (shift count, at most 14: larger ones are used as 14, RFC 7323
    /// section 2.3).
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// SACK blocks.
    pub sack_ranges: SackRanges,
    /// Timestamps option.
    pub timestamp: Option<TcpTimestamp>,
}

impl TcpRepr {
    /// A bare header with ports and sequence number and nothing else.
    #[must_use]
    pub const fn new(src_port: u16, dst_port: u16, seq_number: SeqNumber) -> TcpRepr {
        TcpRepr {
            src_port,
            dst_port,
            seq_number,
            ack_number: None,
            flags: Flags::NONE,
            window_len: 0,
            urgent_at: 0,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: SackRanges::new(),
            timestamp: None,
        }
    }

    /// Parses a header, verifying the checksum against `pseudo`.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        pseudo: &PseudoHeader,
    ) -> Result<TcpRepr, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum(pseudo) {
            return Err(WireError::BadChecksum);
        }
        TcpRepr::parse_ignoring_checksum(packet)
    }

    /// Parses a TCP segment (exactly the IP payload) from the sender of `pseudo`, verifying
    /// its checksum: the header and the payload, borrowed.
    pub fn parse_segment<'a>(
        segment: &'a [u8],
        pseudo: &PseudoHeader,
    ) -> Result<(TcpRepr, &'a [u8]), WireError> {
        let packet = Packet::new_checked(segment)?;
        let repr = TcpRepr::parse(&packet, pseudo)?;
        // `check_len` passed: the header length is within the segment.
        let payload = segment.get(usize::from(packet.header_len())..).unwrap_or_default();
        Ok((repr, payload))
    }

    /// Parses a header without looking at the checksum (for when hardware verified it).
    pub fn parse_ignoring_checksum<T: AsRef<[u8]>>(
        packet: &Packet<T>,
    ) -> Result<TcpRepr, WireError> {
        packet.check_len()?;
        let flags = packet.flags();
        let options = packet.options();
        let (opts, sack_ranges) = parse_options_with_sack(&options_buf(options), options.len())
            .map_err(|MalformedOptions| WireError::MalformedOptions)?;
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: flags.contains(Flags::ACK).then(|| packet.ack_number()),
            flags: flags.without(Flags::ACK),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            max_seg_size: opts.mss(),
            window_scale: opts.wscale(),
            sack_permitted: opts.sack_permitted(),
            sack_ranges,
            timestamp: opts.timestamps(),
        })
    }

    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    #[must_use]
    pub fn segment_len(&self, payload_len: usize) -> usize {
        payload_len + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use super::*;

    const PSEUDO: PseudoHeader =
        PseudoHeader::V4 { src: Ipv4Addr::new(192, 168, 1, 1), dst: Ipv4Addr::new(192, 168, 1, 2) };

    /// A SYN from Linux 6.x (`curl` to port 80), captured with tcpdump: MSS 1460, SACK-permitted,
    /// timestamps, NOP, window scale 7.
    const LINUX_SYN: [u8; 40] = [
        0xc3, 0x50, 0x00, 0x50, // ports 50000 -> 80
        0x12, 0x34, 0x56, 0x78, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // data offset 10, SYN, window 64240
        0x00, 0x00, 0x00, 0x00, // checksum (filled in by the test), urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK-permitted
        0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, // TS 66051, 0
        0x01, // NOP
        0x03, 0x03, 0x07, // WS 7
    ];

    fn with_checksum(bytes: &[u8]) -> std::vec::Vec<u8> {
        let mut v = bytes.to_vec();
        Packet::new_unchecked(&mut v[..]).fill_checksum(&PSEUDO);
        v
    }

    #[test]
    fn parses_linux_syn() {
        let bytes = with_checksum(&LINUX_SYN);
        let packet = Packet::new_checked(&bytes[..]).expect("valid");
        let repr = TcpRepr::parse(&packet, &PSEUDO).expect("parses");
        assert_eq!(repr.src_port, 50000);
        assert_eq!(repr.dst_port, 80);
        assert_eq!(repr.seq_number, SeqNumber::new(0x1234_5678));
        assert_eq!(repr.ack_number, None);
        assert_eq!(repr.flags, Flags::SYN);
        assert_eq!(repr.window_len, 64240);
        assert_eq!(repr.max_seg_size, Some(1460));
        assert_eq!(repr.window_scale, Some(7));
        assert!(repr.sack_permitted);
        assert_eq!(repr.timestamp, Some(TcpTimestamp { tsval: 66051, tsecr: 0 }));
        assert!(packet.payload().is_empty());
    }

    #[test]
    fn bad_checksum_is_rejected() {
        let mut bytes = with_checksum(&LINUX_SYN);
        bytes[5] ^= 1;
        let packet = Packet::new_checked(&bytes[..]).expect("length is fine");
        assert_eq!(TcpRepr::parse(&packet, &PSEUDO), Err(WireError::BadChecksum));
        assert!(TcpRepr::parse_ignoring_checksum(&packet).is_ok());
    }

    #[test]
    fn short_buffers_are_rejected() {
        assert_eq!(Packet::new_checked(&LINUX_SYN[..19]).err(), Some(WireError::Truncated));
        // Data offset says 40 bytes, only 30 present.
        assert_eq!(Packet::new_checked(&LINUX_SYN[..30]).err(), Some(WireError::Truncated));
        let mut low = LINUX_SYN;
        low[12] = 0x40;
        assert_eq!(Packet::new_checked(&low[..]).err(), Some(WireError::BadHeaderLength));
    }

    fn parse_options(options: &[u8]) -> Result<TcpRepr, WireError> {
        let mut bytes = [0u8; 60];
        bytes[..20].copy_from_slice(&LINUX_SYN[..20]);
        bytes[20..20 + options.len()].copy_from_slice(options);
        let len = (20 + options.len()).div_ceil(4) * 4;
        bytes[12] = u8::try_from(len / 4).expect("small") << 4;
        TcpRepr::parse_ignoring_checksum(&Packet::new_checked(&bytes[..len])?)
    }

    #[test]
    fn malformed_options_are_errors() {
        let bad = Err(WireError::MalformedOptions);
        assert_eq!(parse_options(&[2, 3, 5]), bad, "MSS of length 3");
        assert_eq!(parse_options(&[3, 4, 7, 0]), bad, "WS of length 4");
        assert_eq!(parse_options(&[4, 3, 0, 0]), bad, "SACK-permitted with a body");
        assert_eq!(parse_options(&[5, 6, 0, 0, 0, 0]), bad, "SACK not a multiple of 8");
        assert_eq!(parse_options(&[5, 2]), bad, "SACK with no block");
        assert_eq!(parse_options(&[8, 6, 0, 0, 0, 0]), bad, "timestamps of length 6");
        assert_eq!(parse_options(&[99, 1]), bad, "length below 2");
        assert_eq!(parse_options(&[99, 9, 0, 0]), bad, "length past the header");
        assert_eq!(parse_options(&[1, 1, 1, 2]), bad, "kind without a length byte");
    }

    #[test]
    fn parse_segment_borrows_the_payload() {
        let mut bytes = LINUX_SYN[..20].to_vec();
        bytes[12] = 5 << 4;
        bytes.extend_from_slice(b"payload");
        let v = with_checksum(&bytes);
        let (repr, payload) = TcpRepr::parse_segment(&v, &PSEUDO).expect("parses");
        assert_eq!((repr.src_port, payload), (50000, &b"payload"[..]));
        assert_eq!(TcpRepr::parse_segment(&v[..19], &PSEUDO), Err(WireError::Truncated));
    }

    #[test]
    fn unknown_options_are_skipped_and_eol_ends_the_list() {
        let repr = parse_options(&[30, 4, 0xaa, 0xbb, 2, 4, 0x05, 0x00]).expect("parses");
        assert_eq!(repr.max_seg_size, Some(1280));
        let repr = parse_options(&[0, 2, 4, 0x05, 0x00]).expect("parses");
        assert_eq!(repr.max_seg_size, None, "nothing after EOL is read");
        let repr = parse_options(&[3, 3, 15]).expect("parses");
        assert_eq!(repr.window_scale, Some(14), "RFC 7323: shifts above 14 count as 14");
    }
}
