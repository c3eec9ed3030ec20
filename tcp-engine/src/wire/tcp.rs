//! The TCP header (RFC 9293 section 3.1) and options: MSS, window scale and timestamps
//! (RFC 7323), SACK-permitted and SACK (RFC 2018), NOP and EOL.

use core::fmt;
use core::ops::BitOr;

use super::{PseudoHeader, WireError};
use crate::seq::SeqNumber;

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

    pub const OPT_END: u8 = 0;
    pub const OPT_NOP: u8 = 1;
    pub const OPT_MSS: u8 = 2;
    pub const OPT_WS: u8 = 3;
    pub const OPT_SACKPERM: u8 = 4;
    pub const OPT_SACKRNG: u8 = 5;
    pub const OPT_TSTAMP: u8 = 8;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::URGENT.end;
/// Most option bytes a header can carry (data offset 15 words).
pub const MAX_OPTIONS_LEN: usize = 40;
/// The largest window shift RFC 7323 section 2.3 allows.
const MAX_WINDOW_SHIFT: u8 = 14;

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
    /// Window scale option (shift count, at most 14).
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

    /// Parses a header without looking at the checksum (for when hardware verified it).
    pub fn parse_ignoring_checksum<T: AsRef<[u8]>>(
        packet: &Packet<T>,
    ) -> Result<TcpRepr, WireError> {
        packet.check_len()?;
        let flags = packet.flags();
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: flags.contains(Flags::ACK).then(|| packet.ack_number()),
            flags: flags.without(Flags::ACK),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            ..TcpRepr::new(0, 0, SeqNumber::new(0))
        };
        repr.parse_options(packet.options())?;
        Ok(repr)
    }

    /// Reads the options area. Unknown kinds are skipped by their length; EOL ends it.
    fn parse_options(&mut self, mut options: &[u8]) -> Result<(), WireError> {
        while let Some((&kind, rest)) = options.split_first() {
            match kind {
                field::OPT_END => break,
                field::OPT_NOP => {
                    options = rest;
                    continue;
                }
                _ => {}
            }
            let Some(&len) = rest.first() else {
                return Err(WireError::MalformedOption { kind });
            };
            let len = usize::from(len);
            if len < 2 || len > options.len() {
                return Err(WireError::MalformedOption { kind });
            }
            let body = &options[2..len];
            let malformed = WireError::MalformedOption { kind };
            match kind {
                field::OPT_MSS => match body {
                    [a, b] => self.max_seg_size = Some(u16::from_be_bytes([*a, *b])),
                    _ => return Err(malformed),
                },
                // RFC 7323 section 2.3: a shift above 14 is used as 14.
                field::OPT_WS => match body {
                    [shift] => self.window_scale = Some((*shift).min(MAX_WINDOW_SHIFT)),
                    _ => return Err(malformed),
                },
                field::OPT_SACKPERM => {
                    if !body.is_empty() {
                        return Err(malformed);
                    }
                    self.sack_permitted = true;
                }
                field::OPT_SACKRNG => {
                    if body.is_empty()
                        || !body.len().is_multiple_of(8)
                        || body.len() / 8 > SackRanges::CAPACITY
                    {
                        return Err(malformed);
                    }
                    let mut ranges = SackRanges::new();
                    for block in body.chunks_exact(8) {
                        let left = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
                        let right = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                        ranges.push(SeqNumber::new(left), SeqNumber::new(right));
                    }
                    self.sack_ranges = ranges;
                }
                field::OPT_TSTAMP => {
                    if body.len() != 8 {
                        return Err(malformed);
                    }
                    self.timestamp = Some(TcpTimestamp {
                        tsval: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        tsecr: u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                    });
                }
                // Unknown kinds: RFC 9293 section 3.1 requires skipping them by length.
                _ => {}
            }
            options = &options[len..];
        }
        Ok(())
    }

    /// Option bytes with NOP alignment as Linux lays them out, unpadded.
    fn aligned_options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4; // NOP + 3
        }
        if self.sack_permitted {
            len += 4; // NOP NOP + 2
        }
        if self.timestamp.is_some() {
            len += 12; // NOP NOP + 10
        }
        if !self.sack_ranges.is_empty() {
            len += 4 + 8 * self.sack_ranges.len(); // NOP NOP + 2 + blocks
        }
        len
    }

    /// Option bytes without any alignment NOPs.
    fn packed_options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 3;
        }
        if self.sack_permitted {
            len += 2;
        }
        if self.timestamp.is_some() {
            len += 10;
        }
        if !self.sack_ranges.is_empty() {
            len += 2 + 8 * self.sack_ranges.len();
        }
        len
    }

    /// Whether the options are laid out with alignment NOPs (they are unless that would not
    /// fit in 40 bytes).
    fn aligned(&self) -> bool {
        self.aligned_options_len() <= MAX_OPTIONS_LEN
    }

    /// Option bytes as emitted, padded to a multiple of four.
    fn options_len(&self) -> usize {
        let raw =
            if self.aligned() { self.aligned_options_len() } else { self.packed_options_len() };
        raw.div_ceil(4) * 4
    }

    /// Header length in bytes as emitted.
    ///
    /// The options must fit in 40 bytes; [`TcpRepr::fit_options`] trims SACK blocks so
    /// that they do.
    #[must_use]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Header length in bytes as emitted (smoltcp's name for it).
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// Drops SACK blocks from the end until the options fit in 40 bytes.
    pub fn fit_options(&mut self) {
        while self.packed_options_len() > MAX_OPTIONS_LEN && !self.sack_ranges.is_empty() {
            self.sack_ranges.truncate(self.sack_ranges.len() - 1);
        }
    }

    /// Writes the header into `packet` (which must be exactly header plus `payload` long),
    /// copies `payload` and fills in the checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        payload: &[u8],
        pseudo: &PseudoHeader,
    ) -> Result<(), WireError> {
        let mut repr = *self;
        repr.fit_options();
        if packet.buffer.as_ref().len() != repr.header_len() + payload.len() {
            return Err(WireError::BufferTooSmall);
        }
        repr.emit_segment(packet.buffer.as_mut(), payload, pseudo)?;
        Ok(())
    }

    /// Emits header and payload into the front of `buf`, returning the segment length.
    pub fn emit_segment(
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
    /// copied once, straight into the output.
    pub fn emit_with(
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
        packet.set_src_port(repr.src_port);
        packet.set_dst_port(repr.dst_port);
        packet.set_seq_number(repr.seq_number);
        packet.set_ack_number(repr.ack_number.unwrap_or_default());
        packet.set_header_len(u8::try_from(header_len).map_err(|_| WireError::BufferTooSmall)?);
        let ack = if repr.ack_number.is_some() { Flags::ACK } else { Flags::NONE };
        packet.set_flags(repr.flags.without(Flags::ACK) | ack);
        packet.set_window_len(repr.window_len);
        packet.set_urgent_at(repr.urgent_at);
        repr.emit_options(packet.options_mut());
        fill(packet.payload_mut());
        packet.fill_checksum(pseudo);
        Ok(len)
    }

    /// Writes the options into `out`, which is exactly `options_len()` long.
    fn emit_options(&self, out: &mut [u8]) {
        let aligned = self.aligned();
        let mut w = OptionWriter { out, at: 0 };
        if let Some(mss) = self.max_seg_size {
            let [a, b] = mss.to_be_bytes();
            w.put(&[field::OPT_MSS, 4, a, b]);
        }
        if let Some(shift) = self.window_scale {
            if aligned {
                w.put(&[field::OPT_NOP]);
            }
            w.put(&[field::OPT_WS, 3, shift]);
        }
        if self.sack_permitted {
            if aligned {
                w.put(&[field::OPT_NOP, field::OPT_NOP]);
            }
            w.put(&[field::OPT_SACKPERM, 2]);
        }
        if let Some(ts) = self.timestamp {
            if aligned {
                w.put(&[field::OPT_NOP, field::OPT_NOP]);
            }
            w.put(&[field::OPT_TSTAMP, 10]);
            w.put(&ts.tsval.to_be_bytes());
            w.put(&ts.tsecr.to_be_bytes());
        }
        if !self.sack_ranges.is_empty() {
            if aligned {
                w.put(&[field::OPT_NOP, field::OPT_NOP]);
            }
            let len = u8::try_from(2 + 8 * self.sack_ranges.len()).unwrap_or(0);
            w.put(&[field::OPT_SACKRNG, len]);
            for (left, right) in self.sack_ranges.as_slice() {
                w.put(&left.raw().to_be_bytes());
                w.put(&right.raw().to_be_bytes());
            }
        }
        // Pad with EOL (zeros).
        let at = w.at;
        if let Some(rest) = w.out.get_mut(at..) {
            rest.fill(field::OPT_END);
        }
    }

    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    #[must_use]
    pub fn segment_len(&self, payload_len: usize) -> usize {
        payload_len + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
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

    fn with_checksum(bytes: &[u8]) -> Vec<u8> {
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
        let mut bytes = LINUX_SYN[..20].to_vec();
        bytes.extend_from_slice(options);
        while !bytes.len().is_multiple_of(4) {
            bytes.push(0);
        }
        bytes[12] = u8::try_from(bytes.len() / 4).expect("small") << 4;
        TcpRepr::parse_ignoring_checksum(&Packet::new_checked(&bytes[..])?)
    }

    #[test]
    fn malformed_options_are_typed_errors() {
        let bad = |kind| Err(WireError::MalformedOption { kind });
        assert_eq!(parse_options(&[2, 3, 5]), bad(2), "MSS of length 3");
        assert_eq!(parse_options(&[3, 4, 7, 0]), bad(3), "WS of length 4");
        assert_eq!(parse_options(&[4, 3, 0, 0]), bad(4), "SACK-permitted with a body");
        assert_eq!(parse_options(&[5, 6, 0, 0, 0, 0]), bad(5), "SACK not a multiple of 8");
        assert_eq!(parse_options(&[5, 2]), bad(5), "SACK with no block");
        assert_eq!(parse_options(&[8, 6, 0, 0, 0, 0]), bad(8), "timestamps of length 6");
        assert_eq!(parse_options(&[99, 1]), bad(99), "length below 2");
        assert_eq!(parse_options(&[99, 9, 0, 0]), bad(99), "length past the header");
        assert_eq!(parse_options(&[1, 1, 1, 2]), bad(2), "kind without a length byte");
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
