//! The frame generator of the XDP tests (tcp-user/tests/xdp_differential.rs,
//! xdp_adversarial.rs): valid frames built with etherparse (VLAN tags, IPv4 with and without
//! options, IPv6 with and without extension headers, TCP flags, options of every kind, payload,
//! Ethernet padding), then mutated: any byte, the header fields that steer the dissector,
//! lengths, option bytes, truncation and extension, with the IPv4 header checksum fixed up
//! half the time so that the paths behind it are reached.
#![allow(dead_code, reason = "each test file uses a different subset")]

use etherparse::{
    IpHeaders, Ipv4Extensions, Ipv4Header, Ipv4Options, PacketBuilder, TcpOptionElement, VlanId,
};
use proptest::prelude::*;

/// The ports the generated frames' configuration protects (a third of the frames go to them).
pub const PROTECTED: [u16; 2] = [8080, 443];

/// A valid frame, as etherparse writes it, and where its IP header starts.
#[derive(Clone, Debug)]
pub struct Built {
    pub bytes: Vec<u8>,
    pub ip_at: usize,
    pub v4: bool,
}

pub fn option_element() -> impl Strategy<Value = TcpOptionElement> {
    prop_oneof![
        Just(TcpOptionElement::Noop),
        any::<u16>().prop_map(TcpOptionElement::MaximumSegmentSize),
        any::<u8>().prop_map(TcpOptionElement::WindowScale),
        Just(TcpOptionElement::SelectiveAcknowledgementPermitted),
        (any::<(u32, u32)>(), any::<[Option<(u32, u32)>; 3]>())
            .prop_map(|(first, rest)| TcpOptionElement::SelectiveAcknowledgement(first, rest)),
        any::<(u32, u32)>().prop_map(|(v, e)| TcpOptionElement::Timestamp(v, e)),
    ]
}

/// A valid frame between random addresses.
pub fn valid_frame() -> impl Strategy<Value = Built> {
    valid_frame_between(any::<([u8; 16], [u8; 16])>().boxed())
}

prop_compose! {
    /// A valid frame between `addrs` (source, destination; IPv4 takes the first four bytes).
    pub fn valid_frame_between(addrs: BoxedStrategy<([u8; 16], [u8; 16])>)(
        vlans in 0usize..3,
        v4 in any::<bool>(),
        ip_options in prop::option::weighted(0.1, prop::collection::vec(any::<u8>(), 1..=10)),
        ipv6_ext in prop::option::weighted(0.1, prop_oneof![Just(0u8), Just(43), Just(60), Just(44)]),
        addrs in addrs,
        sport in any::<u16>(),
        dport in prop_oneof![Just(PROTECTED[0]), Just(PROTECTED[1]), Just(22u16), any::<u16>()],
        seq in any::<u32>(),
        ack in prop::option::of(any::<u32>()),
        window in any::<u16>(),
        flags in any::<u8>(),
        options in prop::collection::vec(option_element(), 0..8),
        payload in prop::collection::vec(any::<u8>(), 0..40),
        padding in prop::option::weighted(0.3, 1usize..12),
        frag in prop::option::weighted(0.1, prop_oneof![Just(0x2000u16), Just(0x3fff), any::<u16>()]),
    ) -> Built {
        let (src, dst) = addrs;
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let v4_src = [src[0], src[1], src[2], src[3]];
        let v4_dst = [dst[0], dst[1], dst[2], dst[3]];
        let ip_header = |opts: &Option<Vec<u8>>| {
            let mut h = Ipv4Header::new(0, 64, etherparse::IpNumber::TCP, v4_src, v4_dst).unwrap();
            if let Some(o) = opts {
                let mut o = o.clone();
                o.resize(o.len().div_ceil(4) * 4, 0);
                h.options = Ipv4Options::try_from(&o[..]).unwrap();
            }
            IpHeaders::Ipv4(h, Ipv4Extensions::default())
        };
        let ip = match (vlans, v4) {
            (0, true) => eth.ip(ip_header(&ip_options)),
            (0, false) => eth.ipv6(src, dst, 64),
            (1, true) => eth.single_vlan(VlanId::try_new(100).unwrap()).ip(ip_header(&ip_options)),
            (1, false) => eth.single_vlan(VlanId::try_new(100).unwrap()).ipv6(src, dst, 64),
            (_, true) => eth
                .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
                .ip(ip_header(&ip_options)),
            (_, false) => eth
                .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
                .ipv6(src, dst, 64),
        };
        let mut tcp = ip.tcp(sport, dport, seq, window);
        if flags & 1 != 0 { tcp = tcp.fin(); }
        if flags & 2 != 0 { tcp = tcp.syn(); }
        if flags & 4 != 0 { tcp = tcp.rst(); }
        if flags & 8 != 0 { tcp = tcp.psh(); }
        if flags & 0x40 != 0 { tcp = tcp.ece(); }
        if flags & 0x80 != 0 { tcp = tcp.cwr(); }
        if let Some(a) = ack { tcp = tcp.ack(a); }
        // As many options as fit in 40 bytes.
        let mut options = options;
        while options.iter().map(option_len).sum::<usize>() > 40 {
            options.pop();
        }
        let tcp = tcp.options(&options).unwrap();
        let mut bytes = Vec::new();
        tcp.write(&mut bytes, &payload).unwrap();
        let ip_at = 14 + 4 * vlans.min(2);
        if let (true, Some(frag)) = (v4, frag) {
            bytes[ip_at + 6..ip_at + 8].copy_from_slice(&frag.to_be_bytes());
            fix_ipv4_checksum(&mut bytes, ip_at);
        }
        if let (false, Some(next)) = (v4, ipv6_ext) {
            bytes = with_ipv6_ext_header(&bytes, ip_at, next);
        }
        if let Some(n) = padding {
            bytes.resize(bytes.len() + n, 0);
        }
        Built { bytes, ip_at, v4 }
    }
}

pub fn option_len(o: &TcpOptionElement) -> usize {
    match o {
        TcpOptionElement::Noop => 1,
        TcpOptionElement::MaximumSegmentSize(_) => 4,
        TcpOptionElement::WindowScale(_) => 3,
        TcpOptionElement::SelectiveAcknowledgementPermitted => 2,
        TcpOptionElement::SelectiveAcknowledgement(_, rest) => {
            10 + 8 * rest.iter().filter(|b| b.is_some()).count()
        }
        TcpOptionElement::Timestamp(..) => 10,
    }
}

/// Inserts an 8-byte extension header of type `kind` between the IPv6 header and TCP.
pub fn with_ipv6_ext_header(f: &[u8], ip: usize, kind: u8) -> Vec<u8> {
    let mut out = f[..ip + 40].to_vec();
    // Next header TCP; length 0 (8 bytes); for a fragment header, offset 0 and M clear.
    out.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&f[ip + 40..]);
    out[ip + 6] = kind;
    let plen = u16::from_be_bytes([out[ip + 4], out[ip + 5]]) + 8;
    out[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
    out
}

/// One change to a frame.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Any byte to any value.
    Byte(prop::sample::Index, u8),
    /// A byte of the headers (the first 100) to one of the values that steer the dissector.
    Field(prop::sample::Index, u8),
    /// A 16-bit field (lengths, ethertypes, fragment word) near its valid value.
    Word(prop::sample::Index, i16),
    /// Cut the frame.
    Truncate(prop::sample::Index),
    /// Add bytes at the end.
    Extend(Vec<u8>),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let steering = prop_oneof![
        Just(0u8),
        Just(1),
        Just(2),
        Just(3),
        Just(4),
        Just(5),
        Just(6),
        Just(8),
        Just(10),
        Just(0x45),
        Just(0x46),
        Just(0x4f),
        Just(0x44),
        Just(0x60),
        Just(0x50),
        Just(0xf0),
        Just(0x40),
        Just(0x20),
        Just(0x2c),
        Just(0x3b),
        Just(0x81),
        Just(0x88),
        Just(0xa8),
        Just(0x86),
        Just(0xdd),
        Just(0x11),
        Just(0xff),
        any::<u8>(),
    ];
    prop_oneof![
        3 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Byte(i, v)),
        4 => (any::<prop::sample::Index>(), steering).prop_map(|(i, v)| Mutation::Field(i, v)),
        3 => (any::<prop::sample::Index>(), -80i16..80).prop_map(|(i, d)| Mutation::Word(i, d)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
    ]
}

pub fn apply(frame: &mut Vec<u8>, m: &Mutation) {
    if frame.is_empty() {
        return;
    }
    match m {
        Mutation::Byte(i, v) => {
            let at = i.index(frame.len());
            frame[at] = *v;
        }
        Mutation::Field(i, v) => {
            let at = i.index(frame.len().min(100));
            frame[at] = *v;
        }
        Mutation::Word(_, _) if frame.len() < 2 => {}
        Mutation::Word(i, d) => {
            let at = i.index(frame.len().min(100) - 1);
            let w = u16::from_be_bytes([frame[at], frame[at + 1]]).wrapping_add_signed(*d);
            frame[at..at + 2].copy_from_slice(&w.to_be_bytes());
        }
        Mutation::Truncate(i) => frame.truncate(i.index(frame.len())),
        Mutation::Extend(b) => frame.extend_from_slice(b),
    }
}

/// Recomputes the IPv4 header checksum at `ip` (header length from the IHL byte), so the
/// paths behind the checksum check are reached.
pub fn fix_ipv4_checksum(frame: &mut [u8], ip: usize) {
    let Some(&vihl) = frame.get(ip) else { return };
    let end = ip + usize::from(vihl & 0xf) * 4;
    if vihl >> 4 != 4 || end < ip + 20 || end > frame.len() {
        return;
    }
    frame[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let c = tcp_common::checksum::internet_checksum(&frame[ip..end]);
    frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
}

/// Valid frames between random addresses, mutated (none to three times).
pub fn frames() -> impl Strategy<Value = Vec<u8>> {
    mutated(valid_frame())
}

/// `valid` frames, mutated (none to three times), the IPv4 header checksum fixed up half the
/// time.
pub fn mutated(valid: impl Strategy<Value = Built>) -> impl Strategy<Value = Vec<u8>> {
    (valid, prop::collection::vec(mutation(), 0..4), any::<bool>()).prop_map(
        |(built, mutations, fix)| {
            let mut f = built.bytes;
            for m in &mutations {
                apply(&mut f, m);
            }
            if fix && built.v4 {
                fix_ipv4_checksum(&mut f, built.ip_at);
            }
            f
        },
    )
}
