//! The frame dissector: Ethernet, up to two VLAN tags (802.1ad outer, 802.1Q inner), IPv4 or
//! IPv6, and the fixed TCP header. One implementation for two byte sources:
//!
//! - XDP packet memory (`tcp-ebpf`'s `XdpFrame`), where every access must be proven in bounds
//!   to the verifier;
//! - a slice on the host ([`Frame::parse`]), where the same checks make a clear error of bad
//!   input and no read can go out of bounds (a slice read past its end would give zero, and
//!   never happens: every read is behind the same check as in XDP).
//!
//! The frame layout is a const generic: once the VLAN tags and the IP version are known, the
//! dissector continues in one of six instances (`L2` = IP header offset 14, 18 or 22; `L4` =
//! TCP header offset), so every header offset is a compile-time constant, the form of packet
//! access the verifier checks most reliably. Each layer does one bounds check over its whole
//! header block and then reads at fixed offsets (per-field checks were reordered by LLVM and
//! rejected by the verifier).
//!
//! The dissector decides what is not TCP to one of our ports before looking further (the XDP
//! program passes it to the kernel untouched) and what is malformed. A segment to one of our
//! ports with whole headers goes to a [`TcpSink`], which continues with the layout's constants:
//! the XDP program's SYN and ACK paths, or [`Frame`] on the host.
//!
//! What is refused, in order (each a [`FrameError`], each a counter in the XDP program):
//! no IP ethertype after up to two tags, or an IP version or IPv4 header length that makes no
//! sense (`NotIp`); not TCP (`NotTcp`, ESP included: IPsec is the kernel's); an IPv4 fragment
//! after the first, or an IPv6 fragment after the first (`NoTcpHeader`); an IPv6 chain of more
//! than four extension headers, whatever the port behind it (`Ipv6ExtHeaderChain`); another
//! port (`OtherPort`); then, for our ports: IPv4 options (`IpOptions`), IPv6 extension headers
//! (`Ipv6ExtHeader`), the first fragment of a fragmented packet (`IpFragment`), a bad IPv4
//! header checksum (`BadIpChecksum`), a data offset below 5 (`BadTcpHeader`), and anything
//! shorter than its headers or lengths claim (`Truncated`). A segment is exactly the IP payload:
//! Ethernet padding after it is not part of it.
//!
//! # IPv6 extension headers
//!
//! The dissector walks up to four extension headers (hop-by-hop, routing, destination options,
//! fragment, AH) to find the TCP port behind them: TCP to one of our ports behind any of them is
//! dropped (we serve plain TCP only), TCP to another port is passed. A chain longer than four
//! cannot be walked here, so its port is unknown: passing it would let a client reach the
//! kernel's TCP on a protected port past the shield, so it is **dropped, whatever the port**
//! (RFC 7045 section 2.2 lets a node drop what it cannot inspect; chains that long are not seen
//! in practice, RFC 7872). Later fragments carry no TCP header and are passed: the kernel cannot
//! reassemble them without the first fragment, which the shield drops if its port is ours (RFC
//! 8200 section 4.5 puts the whole chain and the TCP header in the first fragment, RFC 7112).

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum::{Sum, verifies};
use crate::config::{Config, PortSet};
use crate::cookie::{TupleV4, TupleV6};
use crate::counters::Counter;
use crate::flow::FlowKey;
use crate::local::AddrWords;
use crate::proto::{
    ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN,
    TCP_HLEN, VLAN_HLEN,
};
use crate::wire::{PseudoHeader, TcpRepr, WireError};

/// IPv4 "more fragments" flag and fragment offset (RFC 791).
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;
/// IPv4 "don't fragment" flag.
const IP_DF: u16 = 0x4000;
/// IPv6 fragment header (RFC 8200 section 4.5).
const IPV6_FRAGMENT: u8 = 44;
/// IPv6 extension headers walked to find the TCP port behind them; a longer chain is dropped.
pub const IPV6_MAX_EXT_HEADERS: usize = 4;
/// IPv6 Authentication Header (RFC 4302): walked (its length is in 4-byte units).
const IPV6_AH: u8 = 51;

/// The bytes of a frame, from the first byte of the Ethernet header.
///
/// Reads are `unsafe` because on XDP they are raw packet loads: the caller must have checked
/// [`FrameBytes::has`] for every byte read. The slice implementation is safe either way.
pub trait FrameBytes {
    /// Whether the first `n` bytes are in the frame.
    fn has(&self, n: usize) -> bool;
    /// The frame's length in bytes.
    fn frame_len(&self) -> usize;
    /// The byte at `at`.
    ///
    /// # Safety
    /// `has(at + 1)` held.
    unsafe fn u8_at(&self, at: usize) -> u8;
    /// The big-endian `u16` at `at`.
    ///
    /// # Safety
    /// `has(at + 2)` held.
    unsafe fn be16_at(&self, at: usize) -> u16;
    /// The big-endian `u32` at `at`.
    ///
    /// # Safety
    /// `has(at + 4)` held.
    unsafe fn be32_at(&self, at: usize) -> u32;
    /// The big-endian `u64` at `at`.
    ///
    /// # Safety
    /// `has(at + 8)` held.
    unsafe fn be64_at(&self, at: usize) -> u64;
    /// The big-endian `u32` at a variable offset, if the frame holds it: the bounds check
    /// and the load through one pointer (`data + off`), the form the verifier tracks for a
    /// variable offset (a check on `data + 8 + off` and a load from `data + off`, as LLVM
    /// otherwise forms them, are two unrelated pointers to it).
    fn be32_var(&self, off: usize) -> Option<u32>;
    /// As [`FrameBytes::be32_var`], eight bytes.
    fn be64_var(&self, off: usize) -> Option<u64>;
}

/// The host's byte source. Reads past the end give zero (never happens: see the module docs).
impl FrameBytes for [u8] {
    #[inline]
    fn has(&self, n: usize) -> bool {
        n <= self.len()
    }

    #[inline]
    fn frame_len(&self) -> usize {
        self.len()
    }

    #[inline]
    unsafe fn u8_at(&self, at: usize) -> u8 {
        self.get(at).copied().unwrap_or_default()
    }

    #[inline]
    unsafe fn be16_at(&self, at: usize) -> u16 {
        self.get(at..).and_then(<[u8]>::first_chunk).map_or(0, |b| u16::from_be_bytes(*b))
    }

    #[inline]
    unsafe fn be32_at(&self, at: usize) -> u32 {
        self.get(at..).and_then(<[u8]>::first_chunk).map_or(0, |b| u32::from_be_bytes(*b))
    }

    #[inline]
    unsafe fn be64_at(&self, at: usize) -> u64 {
        self.get(at..).and_then(<[u8]>::first_chunk).map_or(0, |b| u64::from_be_bytes(*b))
    }

    #[inline]
    fn be32_var(&self, off: usize) -> Option<u32> {
        self.get(off..).and_then(<[u8]>::first_chunk).map(|b| u32::from_be_bytes(*b))
    }

    #[inline]
    fn be64_var(&self, off: usize) -> Option<u64> {
        self.get(off..).and_then(<[u8]>::first_chunk).map(|b| u64::from_be_bytes(*b))
    }
}

/// Frame bytes that can be written (the XDP program rewrites a SYN into its SYN-ACK).
pub trait FrameBytesMut: FrameBytes {
    /// Stores a big-endian `u16` at `at`.
    ///
    /// # Safety
    /// `has(at + 2)` held (after the last resize of the frame).
    unsafe fn set_be16(&mut self, at: usize, v: u16);
    /// Stores a big-endian `u32` at `at`.
    ///
    /// # Safety
    /// `has(at + 4)` held.
    unsafe fn set_be32(&mut self, at: usize, v: u32);
    /// Stores a big-endian `u64` at `at`.
    ///
    /// # Safety
    /// `has(at + 8)` held.
    unsafe fn set_be64(&mut self, at: usize, v: u64);
}

/// Writes past the end do nothing (never happens: the caller checked).
impl FrameBytesMut for [u8] {
    unsafe fn set_be16(&mut self, at: usize, v: u16) {
        if let Some(b) = self.get_mut(at..).and_then(<[u8]>::first_chunk_mut::<2>) {
            *b = v.to_be_bytes();
        }
    }

    unsafe fn set_be32(&mut self, at: usize, v: u32) {
        if let Some(b) = self.get_mut(at..).and_then(<[u8]>::first_chunk_mut::<4>) {
            *b = v.to_be_bytes();
        }
    }

    unsafe fn set_be64(&mut self, at: usize, v: u64) {
        if let Some(b) = self.get_mut(at..).and_then(<[u8]>::first_chunk_mut::<8>) {
            *b = v.to_be_bytes();
        }
    }
}

/// Why a frame is not a TCP segment to one of our ports with whole headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// Not IPv4 or IPv6 after up to two VLAN tags, or an IP header that is not one.
    NotIp,
    /// IP, but not TCP.
    NotTcp,
    /// A fragment after the first: no TCP header.
    NoTcpHeader,
    /// More IPv6 extension headers than the dissector walks: the port is unknown.
    Ipv6ExtHeaderChain,
    /// TCP to a port that is not ours.
    OtherPort,
    /// Shorter than its headers or lengths claim.
    Truncated,
    /// The first fragment of a fragmented IPv4 packet (to one of our ports).
    IpFragment,
    /// IPv4 header with options (to one of our ports).
    IpOptions,
    /// IPv6 extension headers before TCP (to one of our ports).
    Ipv6ExtHeader,
    /// The IPv4 header checksum does not verify.
    BadIpChecksum,
    /// TCP data offset below 5 words.
    BadTcpHeader,
}

impl FrameError {
    /// The XDP program's counter for it.
    #[inline(always)]
    #[must_use]
    pub const fn counter(self) -> Counter {
        match self {
            FrameError::NotIp => Counter::PassNotIp,
            FrameError::NotTcp => Counter::PassNotTcp,
            FrameError::NoTcpHeader => Counter::PassNoTcpHeader,
            FrameError::OtherPort => Counter::PassOtherPort,
            FrameError::Truncated => Counter::DropTruncated,
            FrameError::IpFragment => Counter::DropIpFragment,
            FrameError::IpOptions => Counter::DropIpOptions,
            FrameError::Ipv6ExtHeader => Counter::DropIpv6ExtHeader,
            FrameError::Ipv6ExtHeaderChain => Counter::DropIpv6ExtHeaderChain,
            FrameError::BadIpChecksum => Counter::DropBadChecksum,
            FrameError::BadTcpHeader => Counter::DropBadTcpHeader,
        }
    }

    /// Whether the frame is simply not ours (the XDP program passes it to the kernel), rather
    /// than bad or hostile input (dropped).
    #[inline(always)]
    #[must_use]
    pub const fn is_not_ours(self) -> bool {
        matches!(
            self,
            FrameError::NotIp
                | FrameError::NotTcp
                | FrameError::NoTcpHeader
                | FrameError::OtherPort
        )
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::NotIp => "not IP",
            FrameError::NotTcp => "not TCP",
            FrameError::NoTcpHeader => "no TCP header (a later fragment)",
            FrameError::Ipv6ExtHeaderChain => "more than four IPv6 extension headers",
            FrameError::OtherPort => "TCP to a port that is not ours",
            FrameError::Truncated => "truncated frame",
            FrameError::IpFragment => "IPv4 fragment",
            FrameError::IpOptions => "IPv4 header with options",
            FrameError::Ipv6ExtHeader => "IPv6 extension headers before TCP",
            FrameError::BadIpChecksum => "bad IPv4 header checksum",
            FrameError::BadTcpHeader => "TCP data offset below 5",
        })
    }
}

impl core::error::Error for FrameError {}

/// The fixed 20 bytes of a TCP header (RFC 9293 section 3.1), as the dissector read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFixed {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// Data offset (4 bits), reserved, flags; as on the wire.
    pub off_flags: u16,
    pub window: u16,
    /// Checksum and urgent pointer word, for the checksum check.
    pub csum_urg: u32,
}

impl TcpFixed {
    /// The header at `at`.
    ///
    /// # Safety
    /// `frame.has(at + 20)` held.
    #[inline(always)]
    pub unsafe fn load<B: FrameBytes + ?Sized>(frame: &B, at: usize) -> TcpFixed {
        // SAFETY: per the caller.
        unsafe {
            TcpFixed {
                sport: frame.be16_at(at),
                dport: frame.be16_at(at + 2),
                seq: frame.be32_at(at + 4),
                ack: frame.be32_at(at + 8),
                off_flags: frame.be16_at(at + 12),
                window: frame.be16_at(at + 14),
                csum_urg: frame.be32_at(at + 16),
            }
        }
    }

    /// Header length in bytes, from the data offset.
    #[inline(always)]
    #[must_use]
    pub fn header_len(&self) -> usize {
        usize::from(self.off_flags >> 12) * 4
    }

    /// The flags byte (CWR ECE URG ACK PSH RST SYN FIN).
    #[inline(always)]
    #[must_use]
    pub fn flags(&self) -> u8 {
        self.off_flags.to_be_bytes()[1]
    }

    /// Ones'-complement sum of the 20 bytes.
    #[inline(always)]
    #[must_use]
    pub fn sum(&self) -> Sum {
        Sum::default()
            .add16(self.sport)
            .add16(self.dport)
            .add32(self.seq)
            .add32(self.ack)
            .add16(self.off_flags)
            .add16(self.window)
            .add32(self.csum_urg)
    }
}

/// What differs between IPv4 and IPv6 above IP: the cookie tuple, the flow key, the
/// pseudo-header sum.
pub trait IpHeader {
    /// The cookie's tuple type.
    type Tuple: crate::cookie::CookieTuple;
    /// The connection as the client sends it.
    fn tuple(&self, sport: u16, dport: u16) -> Self::Tuple;
    /// The flow-map key (the sender is the remote end).
    fn flow_key(&self, sport: u16, dport: u16) -> FlowKey;
    /// Sum of both addresses (for the pseudo-header; unchanged when they are swapped).
    fn addr_sum(&self) -> Sum;
    /// Our MSS for the family.
    fn mss_clamp(cfg: &Config) -> u16;
    /// Source and destination.
    fn addrs(&self) -> (IpAddr, IpAddr);
    /// The ECN field (RFC 3168: the low two bits of TOS / traffic class).
    fn ecn(&self) -> u8;
    /// Source and destination as integers, for the checks of `local::LocalAddrs`.
    fn addr_words(&self) -> AddrWords;
    /// Turns the IP header at `L2` into the reply's: addresses swapped, length for `tcp_len`
    /// bytes of TCP, TTL / hop limit `ttl`, not ECN-capable, Don't Fragment on IPv4.
    ///
    /// # Safety
    /// `frame.has(L2 + h)` held, `h` the header length (20 or 40).
    unsafe fn write_reply<const L2: usize, W: FrameBytesMut + ?Sized>(
        &self,
        frame: &mut W,
        tcp_len: usize,
        ttl: u8,
    );
}

/// The IPv4 header fields above IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// Type of service (DSCP and ECN).
    pub tos: u8,
}

impl IpHeader for Ipv4 {
    type Tuple = TupleV4;

    #[inline(always)]
    fn tuple(&self, sport: u16, dport: u16) -> TupleV4 {
        TupleV4 { client: self.src, server: self.dst, client_port: sport, server_port: dport }
    }

    #[inline(always)]
    fn flow_key(&self, sport: u16, dport: u16) -> FlowKey {
        FlowKey::v4(self.src, self.dst, sport, dport)
    }

    #[inline(always)]
    fn addr_sum(&self) -> Sum {
        Sum::default().add32(u32::from_be_bytes(self.src)).add32(u32::from_be_bytes(self.dst))
    }

    #[inline(always)]
    fn mss_clamp(cfg: &Config) -> u16 {
        cfg.mss_v4
    }

    fn addrs(&self) -> (IpAddr, IpAddr) {
        (Ipv4Addr::from(self.src).into(), Ipv4Addr::from(self.dst).into())
    }

    #[inline(always)]
    fn ecn(&self) -> u8 {
        self.tos & 3
    }

    #[inline(always)]
    fn addr_words(&self) -> AddrWords {
        AddrWords::V4 { src: u32::from_be_bytes(self.src), dst: u32::from_be_bytes(self.dst) }
    }

    #[inline(always)]
    unsafe fn write_reply<const L2: usize, W: FrameBytesMut + ?Sized>(
        &self,
        frame: &mut W,
        tcp_len: usize,
        ttl: u8,
    ) {
        // RFC 1624 incremental update of the (verified) header checksum: the fields that
        // change are version/TOS, total length, id, flags/offset and TTL/protocol; swapping
        // the addresses leaves the sum unchanged.
        #[expect(clippy::cast_possible_truncation, reason = "at most 20 + 40 bytes")]
        let new = [0x4500, (IPV4_HLEN + tcp_len) as u16, 0, IP_DF, u16::from(ttl) << 8 | 6];
        // SAFETY (all): the caller checked the 20 bytes of the IP header.
        unsafe {
            let hc = frame.be16_at(L2 + 10);
            let mut s = Sum(u64::from(!hc));
            for (i, n) in new.iter().enumerate() {
                s = s.add16(!frame.be16_at(L2 + 2 * i)).add16(*n);
                frame.set_be16(L2 + 2 * i, *n);
            }
            frame.set_be16(L2 + 10, s.checksum());
            frame.set_be32(L2 + 12, u32::from_be_bytes(self.dst));
            frame.set_be32(L2 + 16, u32::from_be_bytes(self.src));
        }
    }
}

/// The IPv6 header fields above IP; addresses as big-endian 64-bit halves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: [u64; 2],
    pub dst: [u64; 2],
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
}

impl IpHeader for Ipv6 {
    type Tuple = TupleV6;

    #[inline(always)]
    fn tuple(&self, sport: u16, dport: u16) -> TupleV6 {
        TupleV6 { client: self.src, server: self.dst, client_port: sport, server_port: dport }
    }

    #[inline(always)]
    fn flow_key(&self, sport: u16, dport: u16) -> FlowKey {
        FlowKey::v6_words(self.src, self.dst, sport, dport)
    }

    #[inline(always)]
    #[expect(clippy::cast_possible_truncation, reason = "the low 32 bits of each half")]
    fn addr_sum(&self) -> Sum {
        let mut s = Sum::default();
        for w in [self.src[0], self.src[1], self.dst[0], self.dst[1]] {
            s = s.add32((w >> 32) as u32).add32(w as u32);
        }
        s
    }

    #[inline(always)]
    fn mss_clamp(cfg: &Config) -> u16 {
        cfg.mss_v6
    }

    fn addrs(&self) -> (IpAddr, IpAddr) {
        let join = |a: [u64; 2]| Ipv6Addr::from((u128::from(a[0]) << 64) | u128::from(a[1]));
        (join(self.src).into(), join(self.dst).into())
    }

    #[inline(always)]
    fn ecn(&self) -> u8 {
        self.traffic_class & 3
    }

    #[inline(always)]
    fn addr_words(&self) -> AddrWords {
        AddrWords::V6 { src: self.src, dst: self.dst }
    }

    #[inline(always)]
    unsafe fn write_reply<const L2: usize, W: FrameBytesMut + ?Sized>(
        &self,
        frame: &mut W,
        tcp_len: usize,
        ttl: u8,
    ) {
        // SAFETY (all): the caller checked the 40 bytes of the IP header.
        unsafe {
            // Version 6, traffic class 0 (not ECN-capable), flow label 0.
            frame.set_be32(L2, 0x6000_0000);
            #[expect(clippy::cast_possible_truncation, reason = "at most 40 bytes")]
            frame.set_be16(L2 + 4, tcp_len as u16);
            frame.set_be16(L2 + 6, u16::from(IPPROTO_TCP) << 8 | u16::from(ttl));
            frame.set_be64(L2 + 8, self.dst[0]);
            frame.set_be64(L2 + 16, self.dst[1]);
            frame.set_be64(L2 + 24, self.src[0]);
            frame.set_be64(L2 + 32, self.src[1]);
        }
    }
}

/// Where the dissector continues with a TCP segment to one of our ports.
pub trait TcpSink<B: FrameBytes + ?Sized> {
    /// What the continuation returns.
    type Out;
    /// Whether TCP to `dport` is ours. Asked before the checks that only our traffic gets
    /// (IP checksum, options, fragments), so the XDP program leaves the rest untouched.
    fn is_ours(&self, dport: u16) -> bool;
    /// A segment with whole headers: IP at `L2`, TCP at `L4` (its fixed header `th`, of
    /// `th.header_len()` bytes with options, at least 20), and `tcp_len` bytes of TCP in the
    /// IP payload (at least the header length; `L4 + tcp_len` is within the frame).
    fn tcp<const L2: usize, const L4: usize, A: IpHeader>(
        &self,
        frame: &B,
        ip: &A,
        th: &TcpFixed,
        tcp_len: usize,
    ) -> Self::Out;
}

/// Dissects `frame` and continues in `sink` with a TCP segment to one of its ports.
#[inline(always)]
pub fn dissect<B: FrameBytes + ?Sized, S: TcpSink<B>>(
    frame: &B,
    sink: &S,
) -> Result<S::Out, FrameError> {
    if !frame.has(ETH_HLEN + 2 * VLAN_HLEN) {
        // Too short for two tags: untagged only (a SYN is at least 54 bytes anyway).
        if !frame.has(ETH_HLEN) {
            return Err(FrameError::Truncated);
        }
        // SAFETY: 14 bytes checked.
        return match unsafe { frame.be16_at(12) } {
            ETH_P_IP => ipv4::<14, 34, B, S>(frame, sink),
            ETH_P_IPV6 => ipv6::<14, 54, B, S>(frame, sink),
            _ => Err(FrameError::NotIp),
        };
    }
    // SAFETY: 22 bytes checked.
    let (t0, t1, t2) = unsafe { (frame.be16_at(12), frame.be16_at(16), frame.be16_at(20)) };
    let vlan = |t: u16| t == ETH_P_8021Q || t == ETH_P_8021AD;
    match (t0, vlan(t0), t1, vlan(t1), t2) {
        (ETH_P_IP, ..) => ipv4::<14, 34, B, S>(frame, sink),
        (ETH_P_IPV6, ..) => ipv6::<14, 54, B, S>(frame, sink),
        (_, true, ETH_P_IP, ..) => ipv4::<18, 38, B, S>(frame, sink),
        (_, true, ETH_P_IPV6, ..) => ipv6::<18, 58, B, S>(frame, sink),
        (_, true, _, true, ETH_P_IP) => ipv4::<22, 42, B, S>(frame, sink),
        (_, true, _, true, ETH_P_IPV6) => ipv6::<22, 62, B, S>(frame, sink),
        _ => Err(FrameError::NotIp),
    }
}

/// IPv4 with the IP header at `L2` and TCP at `L4 = L2 + 20`.
#[inline(always)]
fn ipv4<const L2: usize, const L4: usize, B: FrameBytes + ?Sized, S: TcpSink<B>>(
    frame: &B,
    sink: &S,
) -> Result<S::Out, FrameError> {
    const { assert!(L4 == L2 + IPV4_HLEN) };
    if !frame.has(L2 + IPV4_HLEN) {
        return Err(FrameError::Truncated);
    }
    // SAFETY: 20 bytes of IP header checked.
    let (vihl, frag, proto) =
        unsafe { (frame.u8_at(L2), frame.be16_at(L2 + 6), frame.u8_at(L2 + 9)) };
    if vihl >> 4 != 4 || vihl & 0xf < 5 {
        // Not a valid IPv4 header: the kernel's to count and drop.
        return Err(FrameError::NotIp);
    }
    if proto != IPPROTO_TCP {
        return Err(FrameError::NotTcp);
    }
    if frag & IP_OFFSET != 0 {
        return Err(FrameError::NoTcpHeader);
    }
    if vihl & 0xf != 5 {
        // IPv4 options: find the port at a variable offset (one check); refuse if it is ours.
        let ports = frame.be32_var(L2 + usize::from(vihl & 0xf) * 4);
        let Some(ports) = ports else { return Err(FrameError::Truncated) };
        #[expect(clippy::cast_possible_truncation, reason = "the low 16 bits")]
        let dport = ports as u16;
        return Err(if sink.is_ours(dport) {
            FrameError::IpOptions
        } else {
            FrameError::OtherPort
        });
    }
    if !frame.has(L4 + 4) {
        return Err(FrameError::Truncated);
    }
    // SAFETY: TCP ports checked.
    let dport = unsafe { frame.be16_at(L4 + 2) };
    if !sink.is_ours(dport) {
        return Err(FrameError::OtherPort);
    }
    if frag & IP_MF != 0 {
        return Err(FrameError::IpFragment);
    }
    if !frame.has(L4 + TCP_HLEN) {
        return Err(FrameError::Truncated);
    }
    let mut s = Sum::default();
    for i in 0..IPV4_HLEN / 4 {
        // SAFETY: 20 bytes of IP header checked.
        s = s.add32(unsafe { frame.be32_at(L2 + 4 * i) });
    }
    if !verifies(s) {
        return Err(FrameError::BadIpChecksum);
    }
    // SAFETY: as above.
    let total = usize::from(unsafe { frame.be16_at(L2 + 2) });
    if total < IPV4_HLEN + TCP_HLEN || L2 + total > frame.frame_len() {
        return Err(FrameError::Truncated);
    }
    // SAFETY: as above.
    let ip = unsafe {
        Ipv4 {
            src: frame.be32_at(L2 + 12).to_be_bytes(),
            dst: frame.be32_at(L2 + 16).to_be_bytes(),
            tos: frame.u8_at(L2 + 1),
        }
    };
    tcp::<L2, L4, B, S, Ipv4>(frame, sink, &ip, total - IPV4_HLEN)
}

/// IPv6 extension headers (RFC 8200 section 4) that have the generic (next, length) form:
/// hop-by-hop options, routing, destination options.
#[inline(always)]
fn is_generic_ext_header(next: u8) -> bool {
    matches!(next, 0 | 43 | 60)
}

/// IPv6 with the IP header at `L2` and (without extension headers) TCP at `L4 = L2 + 40`.
#[inline(always)]
fn ipv6<const L2: usize, const L4: usize, B: FrameBytes + ?Sized, S: TcpSink<B>>(
    frame: &B,
    sink: &S,
) -> Result<S::Out, FrameError> {
    const { assert!(L4 == L2 + IPV6_HLEN) };
    if !frame.has(L2 + IPV6_HLEN) {
        return Err(FrameError::Truncated);
    }
    // SAFETY: 40 bytes of IP header checked.
    let (first, payload_len, next) =
        unsafe { (frame.be16_at(L2), usize::from(frame.be16_at(L2 + 4)), frame.u8_at(L2 + 6)) };
    if first >> 12 != 6 {
        return Err(FrameError::NotIp);
    }
    if next != IPPROTO_TCP {
        if is_generic_ext_header(next) || next == IPV6_FRAGMENT || next == IPV6_AH {
            return ipv6_ext_headers::<L4, B, S>(frame, sink, next);
        }
        return Err(FrameError::NotTcp);
    }
    if !frame.has(L4 + 4) {
        return Err(FrameError::Truncated);
    }
    // SAFETY: TCP ports checked.
    let dport = unsafe { frame.be16_at(L4 + 2) };
    if !sink.is_ours(dport) {
        return Err(FrameError::OtherPort);
    }
    if !frame.has(L4 + TCP_HLEN) || L4 + payload_len > frame.frame_len() {
        return Err(FrameError::Truncated);
    }
    // SAFETY: 40 bytes of IP header checked.
    let ip = unsafe {
        Ipv6 {
            src: [frame.be64_at(L2 + 8), frame.be64_at(L2 + 16)],
            dst: [frame.be64_at(L2 + 24), frame.be64_at(L2 + 32)],
            #[expect(clippy::cast_possible_truncation, reason = "the 8 bits after the version")]
            traffic_class: (first >> 4) as u8,
        }
    };
    tcp::<L2, L4, B, S, Ipv6>(frame, sink, &ip, payload_len)
}

/// Walks up to four IPv6 extension headers to find out whether the segment is TCP to one of
/// our ports (refused: we serve only plain TCP) or not ours; a longer chain is refused whatever
/// its port (see the module docs).
#[inline(always)]
fn ipv6_ext_headers<const L4: usize, B: FrameBytes + ?Sized, S: TcpSink<B>>(
    frame: &B,
    sink: &S,
    first: u8,
) -> Result<S::Out, FrameError> {
    let mut next = first;
    let mut off = L4;
    // One more step than headers: the last only looks for TCP behind the fourth header.
    for step in 0..=IPV6_MAX_EXT_HEADERS {
        // The mask keeps the offset bounded for the verifier; real chains are far shorter.
        let at = off & 0x1fff;
        if next == IPPROTO_TCP {
            let Some(ports) = frame.be32_var(at) else { return Err(FrameError::Truncated) };
            #[expect(clippy::cast_possible_truncation, reason = "the low 16 bits")]
            let dport = ports as u16;
            return Err(if sink.is_ours(dport) {
                FrameError::Ipv6ExtHeader
            } else {
                FrameError::OtherPort
            });
        }
        let walkable = is_generic_ext_header(next) || next == IPV6_FRAGMENT || next == IPV6_AH;
        if !walkable {
            return Err(FrameError::NotTcp);
        }
        if step == IPV6_MAX_EXT_HEADERS {
            return Err(FrameError::Ipv6ExtHeaderChain);
        }
        // Every extension header is at least 8 bytes.
        let Some(h) = frame.be64_var(at) else { return Err(FrameError::Truncated) };
        let [n, len, frag_hi, frag_lo, ..] = h.to_be_bytes();
        let frag = u16::from_be_bytes([frag_hi, frag_lo]);
        if next == IPV6_FRAGMENT {
            if frag & 0xfff8 != 0 {
                return Err(FrameError::NoTcpHeader);
            }
            off += 8;
        } else if next == IPV6_AH {
            // RFC 4302 section 2.2: the length is in 4-byte units, minus 2.
            off += (usize::from(len) + 2) * 4;
        } else {
            off += (usize::from(len) + 1) * 8;
        }
        next = n;
    }
    Err(FrameError::Ipv6ExtHeaderChain)
}

/// The fixed TCP header and its lengths, then the sink.
#[inline(always)]
fn tcp<const L2: usize, const L4: usize, B: FrameBytes + ?Sized, S: TcpSink<B>, A: IpHeader>(
    frame: &B,
    sink: &S,
    ip: &A,
    tcp_len: usize,
) -> Result<S::Out, FrameError> {
    if !frame.has(L4 + TCP_HLEN) {
        return Err(FrameError::Truncated);
    }
    // SAFETY: 20 bytes of TCP header checked.
    let th = unsafe { TcpFixed::load(frame, L4) };
    let hlen = th.header_len();
    if hlen < TCP_HLEN {
        return Err(FrameError::BadTcpHeader);
    }
    if hlen > tcp_len {
        return Err(FrameError::Truncated);
    }
    Ok(sink.tcp::<L2, L4, A>(frame, ip, &th, tcp_len))
}

/// A received frame carrying a TCP segment, split at its layers (the host's dissection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Destination MAC address (ours, for a frame we receive).
    pub dst_mac: [u8; 6],
    /// Source MAC address (the peer's, or its router's).
    pub src_mac: [u8; 6],
    /// VLAN tags, outermost first: (TPID, TCI); `vlan_count` of them are used.
    pub vlans: [(u16, u16); 2],
    /// How many of `vlans` are used (0 to 2).
    pub vlan_count: u8,
    /// Source address (the peer).
    pub src: IpAddr,
    /// Destination address (us).
    pub dst: IpAddr,
    /// The flow-map key of the connection (the sender is the remote end).
    pub flow_key: FlowKey,
    /// The IP header's ECN field (RFC 3168).
    pub ecn: u8,
    /// The TCP segment: exactly the IP payload, without Ethernet padding; its header is whole
    /// (data offset at least 5, within the segment).
    pub tcp: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Dissects `bytes`; every TCP port counts as ours.
    pub fn parse(bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        Frame::parse_with(bytes, |_| true)
    }

    /// Dissects `bytes` as the XDP program does with `ports` protected.
    pub fn parse_for_ports(bytes: &'a [u8], ports: &PortSet) -> Result<Frame<'a>, FrameError> {
        Frame::parse_with(bytes, |p| ports.contains(p))
    }

    fn parse_with(bytes: &'a [u8], is_ours: impl Fn(u16) -> bool) -> Result<Frame<'a>, FrameError> {
        dissect(bytes, &HostSink { bytes, is_ours })?
    }

    /// The segment's header and payload, its checksum verified.
    pub fn segment(&self) -> Result<(TcpRepr, &'a [u8]), WireError> {
        TcpRepr::parse_segment(self.tcp, &PseudoHeader::new(self.src, self.dst)?)
    }
}

/// The host's continuation: slices the frame.
struct HostSink<'a, F> {
    bytes: &'a [u8],
    is_ours: F,
}

impl<'a, F: Fn(u16) -> bool> TcpSink<[u8]> for HostSink<'a, F> {
    type Out = Result<Frame<'a>, FrameError>;

    fn is_ours(&self, dport: u16) -> bool {
        (self.is_ours)(dport)
    }

    fn tcp<const L2: usize, const L4: usize, A: IpHeader>(
        &self,
        _frame: &[u8],
        ip: &A,
        th: &TcpFixed,
        tcp_len: usize,
    ) -> Result<Frame<'a>, FrameError> {
        let b = self.bytes;
        let mac = |at: usize| b.get(at..).and_then(<[u8]>::first_chunk).copied();
        // SAFETY (both): the dissector checked the frame up to L4 + 20 > L2.
        let tag = |at: usize| unsafe { (b.be16_at(at), b.be16_at(at + 2)) };
        let vlan_count = (L2 - ETH_HLEN) / VLAN_HLEN;
        let mut vlans = [(0, 0); 2];
        for (i, v) in vlans.iter_mut().enumerate().take(vlan_count) {
            *v = tag(ETH_HLEN - 2 + VLAN_HLEN * i);
        }
        let (src, dst) = ip.addrs();
        Ok(Frame {
            dst_mac: mac(0).ok_or(FrameError::Truncated)?,
            src_mac: mac(6).ok_or(FrameError::Truncated)?,
            vlans,
            vlan_count: u8::try_from(vlan_count).unwrap_or_default(),
            src,
            dst,
            flow_key: ip.flow_key(th.sport, th.dport),
            ecn: ip.ecn(),
            tcp: b.get(L4..L4 + tcp_len).ok_or(FrameError::Truncated)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::checksum::{internet_checksum, sum_bytes};

    const CLIENT: [u8; 4] = [198, 18, 0, 1];
    const SHIELD: [u8; 4] = [198, 18, 0, 2];

    /// Ethernet (with `tags` VLAN tags) + IPv4 + a 20-byte TCP header with `payload`, valid
    /// checksums, then `padding` zero bytes.
    fn ipv4_frame(tags: &[(u16, u16)], payload: &[u8], padding: usize) -> Vec<u8> {
        let mut f = Vec::from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        for (tpid, tci) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ETH_P_IP.to_be_bytes());
        let ip = f.len();
        let total = u16::try_from(40 + payload.len()).expect("small");
        f.extend_from_slice(&[0x45, 0x02, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        f[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&CLIENT);
        f.extend_from_slice(&SHIELD);
        let c = internet_checksum(&f[ip..ip + 20]);
        f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        let tcp = f.len();
        f.extend_from_slice(&[0x9c, 0x40, 0x1f, 0x90, 0, 0, 0, 7, 0, 0, 0, 9, 0x50, 0x10, 1, 0]);
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(payload);
        let pseudo = PseudoHeader::new(CLIENT.into(), SHIELD.into()).expect("one family");
        let c = pseudo.tcp_checksum(&f[tcp..]);
        f[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
        f.resize(f.len() + padding, 0);
        f
    }

    #[test]
    fn splits_a_tagged_padded_frame() {
        let f = ipv4_frame(&[(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)], b"hi", 6);
        let p = Frame::parse(&f).expect("a segment");
        assert_eq!((p.vlan_count, p.vlans), (2, [(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)]));
        assert_eq!((p.dst_mac, p.src_mac), ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]));
        assert_eq!((p.src, p.dst, p.ecn), (IpAddr::from(CLIENT), IpAddr::from(SHIELD), 2));
        assert_eq!(p.tcp.len(), 22, "the IP payload, not the padding");
        assert_eq!(p.flow_key, FlowKey::v4(CLIENT, SHIELD, 40000, 8080));
        let (repr, payload) = p.segment().expect("checksum verifies");
        assert_eq!((repr.src_port, repr.dst_port, payload), (40000, 8080, &b"hi"[..]));
    }

    #[test]
    fn every_cut_is_refused_and_ports_decide_first() {
        let f = ipv4_frame(&[], b"data", 0);
        for cut in 0..f.len() {
            assert!(Frame::parse(&f[..cut]).is_err(), "cut at {cut}");
        }
        let mut ports = PortSet::EMPTY;
        ports.insert(443);
        assert_eq!(Frame::parse_for_ports(&f, &ports), Err(FrameError::OtherPort));
        let mut bad = f.clone();
        bad[14 + 10] ^= 1;
        assert_eq!(Frame::parse_for_ports(&bad, &ports), Err(FrameError::OtherPort));
        assert_eq!(Frame::parse(&bad), Err(FrameError::BadIpChecksum));
    }

    #[test]
    fn reply_ip_header_is_valid() {
        let mut f = ipv4_frame(&[(ETH_P_8021Q, 7)], &[], 0);
        let ip = Ipv4 { src: CLIENT, dst: SHIELD, tos: 0 };
        // SAFETY: the frame holds the IP header at 18.
        unsafe { ip.write_reply::<18, _>(&mut f[..], 24, 61) };
        let h = &f[18..38];
        assert_eq!(sum_bytes(h).fold(), 0xffff, "header checksum verifies");
        assert_eq!((&h[12..16], &h[16..20]), (&SHIELD[..], &CLIENT[..]));
        assert_eq!((u16::from_be_bytes([h[2], h[3]]), h[8], h[1]), (44, 61, 0));
    }

    /// Ethernet + IPv6 + the extension headers `chain` (each 8 bytes, AH 12) + a bare TCP
    /// header to `dport` (checksum not filled: the dissector does not check it).
    fn ipv6_chain(chain: &[u8], dport: u16) -> Vec<u8> {
        let mut f = Vec::from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd]);
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, chain.first().copied().unwrap_or(6), 64]);
        f.extend_from_slice(&[0xfd; 16]);
        f.extend_from_slice(&[0xfe; 16]);
        for (i, kind) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(IPPROTO_TCP);
            if *kind == IPV6_AH {
                // Length 1: (1 + 2) * 4 = 12 bytes.
                f.extend_from_slice(&[next, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            } else {
                f.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
            }
        }
        f.extend_from_slice(&[0x9c, 0x40]);
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        let plen = u16::try_from(f.len() - 54).expect("small");
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        f
    }

    #[test]
    fn ipv6_chains_of_up_to_four_headers_are_walked_and_longer_ones_dropped() {
        let mut ports = PortSet::EMPTY;
        ports.insert(8080);
        let parse = |chain: &[u8], dport| {
            Frame::parse_for_ports(&ipv6_chain(chain, dport), &ports).map(|f| f.flow_key)
        };
        assert!(parse(&[], 8080).is_ok());
        for chain in [&[0u8][..], &[0, 60], &[0, 43, IPV6_AH], &[0, 60, 43, IPV6_FRAGMENT]] {
            assert_eq!(parse(chain, 8080), Err(FrameError::Ipv6ExtHeader), "{chain:?}");
            assert_eq!(parse(chain, 22), Err(FrameError::OtherPort), "{chain:?}");
        }
        let five = [0, 60, 43, 60, IPV6_AH];
        assert_eq!(parse(&five, 8080), Err(FrameError::Ipv6ExtHeaderChain));
        assert_eq!(parse(&five, 22), Err(FrameError::Ipv6ExtHeaderChain), "port unknown");
        assert_eq!(parse(&[0, 60, 43, 60, 60, 60, 60], 22), Err(FrameError::Ipv6ExtHeaderChain));
        assert!(!FrameError::Ipv6ExtHeaderChain.is_not_ours(), "dropped, not passed");
        // ESP is IPsec, the kernel's; a later fragment has no TCP header.
        let mut esp = ipv6_chain(&[0], 8080);
        esp[54] = 50;
        assert_eq!(Frame::parse_for_ports(&esp, &ports), Err(FrameError::NotTcp));
        let mut later = ipv6_chain(&[IPV6_FRAGMENT], 8080);
        later[54 + 3] = 8;
        assert_eq!(Frame::parse_for_ports(&later, &ports), Err(FrameError::NoTcpHeader));
    }

    proptest! {
        /// Any bytes: a frame or a clear error, never a panic; a frame's slices are in range.
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), tags in 0usize..3) {
            let mut f = ipv4_frame(&[(ETH_P_8021Q, 1), (ETH_P_8021Q, 2)][..tags], &[], 0);
            let n = bytes.len().min(f.len());
            // Half the time keep the valid headers' prefix, so deeper layers see junk.
            let keep = if bytes.first().is_some_and(|b| b % 2 == 0) { n / 2 } else { 0 };
            f[keep..n].copy_from_slice(&bytes[keep..n]);
            f.extend_from_slice(&bytes[n..]);
            if let Ok(p) = Frame::parse(&f) {
                prop_assert!(p.tcp.len() >= 20);
                let _ = p.segment();
            }
        }
    }
}
