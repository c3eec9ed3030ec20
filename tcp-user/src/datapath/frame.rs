//! Ethernet and IP of the frames the data path receives and sends. The TCP segment inside is
//! the engine's business (`tcp_engine::wire`); this module finds it with the shared dissector
//! (`tcp_common::wire::Frame`), and wraps the engine's segments back into frames.
//!
//! A reply goes back the way the request came: MAC addresses swapped and the same VLAN tags,
//! kept per connection as a [`Route`].

use std::net::IpAddr;

use tcp_common::proto::{
    ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN, VLAN_HLEN,
};
use tcp_common::wire::Frame;

/// TTL / hop limit of what we send (Linux's default).
pub const DEFAULT_TTL: u8 = 64;

/// How to reach the peer of a connection at layer 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Our MAC address (the destination of the frames we received).
    pub local_mac: [u8; 6],
    /// The peer's (or its router's) MAC address.
    pub remote_mac: [u8; 6],
    /// VLAN tags, outermost first: (TPID, TCI).
    pub vlans: [(u16, u16); 2],
    /// How many of `vlans` are used (0 to 2).
    pub vlan_count: u8,
}

impl Route {
    fn l2_len(&self) -> usize {
        ETH_HLEN + VLAN_HLEN * usize::from(self.vlan_count)
    }
}

/// A received frame carrying TCP, split at its layers.
#[derive(Debug, PartialEq, Eq)]
pub struct TcpFrame<'a> {
    /// The route back to the sender.
    pub route: Route,
    /// Source address (the peer).
    pub src: IpAddr,
    /// Destination address (us).
    pub dst: IpAddr,
    /// The TCP segment: exactly the IP payload, without Ethernet padding.
    pub tcp: &'a [u8],
}

/// Why a frame is not a TCP segment we can hand to the engine (each a counted drop): the
/// shared dissector's reasons.
pub use tcp_common::wire::FrameError;

/// Splits a received Ethernet frame into route, addresses and TCP segment, with the shared
/// dissector (`tcp_common::wire::frame`, the XDP program's own): what XDP redirected dissects
/// here the same way. Every TCP port counts as ours.
pub fn parse(frame: &[u8]) -> Result<TcpFrame<'_>, FrameError> {
    let f = Frame::parse(frame)?;
    Ok(TcpFrame {
        route: Route {
            local_mac: f.dst_mac,
            remote_mac: f.src_mac,
            vlans: f.vlans,
            vlan_count: f.vlan_count,
        },
        src: f.src,
        dst: f.dst,
        tcp: f.tcp,
    })
}

/// Room in front of a TCP segment for the largest Ethernet, VLAN and IP headers we write: the
/// engine writes each segment at this offset of a TX frame and [`write_headers`] fills the
/// headers in front of it, so the segment is never moved.
pub const HEADROOM: usize = ETH_HLEN + 2 * VLAN_HLEN + IPV6_HLEN;

/// Writes Ethernet (the route's MACs and VLAN tags) and an IPv4 or IPv6 header from `src` to
/// `dst` into `buf` right before `buf[tcp_at..]`, where a TCP segment of `tcp_len` bytes already
/// is. Returns where the frame starts.
pub fn write_headers(
    buf: &mut [u8],
    tcp_at: usize,
    route: &Route,
    src: IpAddr,
    dst: IpAddr,
    tcp_len: usize,
) -> Result<usize, BuildError> {
    let ip_hlen = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => IPV4_HLEN,
        (IpAddr::V6(_), IpAddr::V6(_)) => IPV6_HLEN,
        _ => return Err(BuildError::FamilyMismatch),
    };
    let l2 = route.l2_len();
    let start = tcp_at.checked_sub(l2 + ip_hlen).ok_or(BuildError::TooLong)?;
    if tcp_at.checked_add(tcp_len).is_none_or(|end| end > buf.len()) {
        return Err(BuildError::TooLong);
    }
    let frame = &mut buf[start..tcp_at];
    frame[0..6].copy_from_slice(&route.remote_mac);
    frame[6..12].copy_from_slice(&route.local_mac);
    let mut at = 12;
    for &(tpid, tci) in &route.vlans[..usize::from(route.vlan_count.min(2))] {
        frame[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
        frame[at + 2..at + 4].copy_from_slice(&tci.to_be_bytes());
        at += VLAN_HLEN;
    }
    let ethertype = if ip_hlen == IPV4_HLEN { ETH_P_IP } else { ETH_P_IPV6 };
    frame[at..at + 2].copy_from_slice(&ethertype.to_be_bytes());
    write_ip(&mut frame[l2..], src, dst, tcp_len)?;
    Ok(start)
}

/// The IPv4 or IPv6 header of a TCP segment of `tcp_len` bytes, into `ip` (exactly its size).
fn write_ip(ip: &mut [u8], src: IpAddr, dst: IpAddr, tcp_len: usize) -> Result<(), BuildError> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(IPV4_HLEN + tcp_len).map_err(|_| BuildError::TooLong)?;
            ip.fill(0);
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&len.to_be_bytes());
            ip[6] = 0x40; // Don't Fragment: we do path MTU discovery like Linux.
            ip[8] = DEFAULT_TTL;
            ip[9] = IPPROTO_TCP;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let sum = tcp_common::checksum::sum_bytes(ip).checksum();
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u16::try_from(tcp_len).map_err(|_| BuildError::TooLong)?;
            ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&len.to_be_bytes());
            ip[6] = IPPROTO_TCP;
            ip[7] = DEFAULT_TTL;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
        }
        _ => return Err(BuildError::FamilyMismatch),
    }
    Ok(())
}

/// Why a frame could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The buffer cannot hold the headers and the segment.
    #[error("frame does not fit the buffer")]
    TooLong,
    /// Source and destination addresses are of different families.
    #[error("address family mismatch")]
    FamilyMismatch,
    /// The TCP writer failed.
    #[error("segment could not be written")]
    Segment,
}

/// Writes a frame from `src` to `dst` along `route` into `buf`: Ethernet (swapped MACs, the
/// route's VLAN tags), an IPv4 or IPv6 header, and the TCP segment that `write_tcp` puts into
/// the slice it is given (returning its length). Returns the frame length.
pub fn build(
    buf: &mut [u8],
    route: &Route,
    src: IpAddr,
    dst: IpAddr,
    write_tcp: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> Result<usize, BuildError> {
    let l3 = route.l2_len();
    let ip_hlen = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => IPV4_HLEN,
        (IpAddr::V6(_), IpAddr::V6(_)) => IPV6_HLEN,
        _ => return Err(BuildError::FamilyMismatch),
    };
    let l4 = l3 + ip_hlen;
    if buf.len() < l4 {
        return Err(BuildError::TooLong);
    }
    let tcp_len = write_tcp(&mut buf[l4..]).ok_or(BuildError::Segment)?;
    let total = l4.checked_add(tcp_len).filter(|t| *t <= buf.len()).ok_or(BuildError::TooLong)?;
    write_headers(buf, l4, route, src, dst, tcp_len)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
    use tcp_common::proto::{ETH_P_8021AD, ETH_P_8021Q};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn tcp_frame(
        builder: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
        payload: &[u8],
    ) -> Vec<u8> {
        let b = builder.tcp(40000, 80, 1234, 64240).ack(99);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn parses_ipv4_and_drops_ethernet_padding() {
        let mut f = tcp_frame(
            PacketBuilder::ethernet2(A, B).ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64),
            b"",
        );
        f.resize(60, 0); // the minimum Ethernet frame: 6 bytes of padding after TCP
        let p = parse(&f).unwrap();
        assert_eq!(p.src, IpAddr::from([198, 18, 0, 1]));
        assert_eq!(p.dst, IpAddr::from([198, 18, 0, 2]));
        assert_eq!(p.tcp.len(), 20, "padding is not part of the segment");
        assert_eq!(p.route.remote_mac, A);
        assert_eq!(p.route.local_mac, B);
        assert_eq!(p.route.vlan_count, 0);
    }

    #[test]
    fn parses_ipv6_with_two_vlan_tags() {
        let b = PacketBuilder::ethernet2(A, B)
            .double_vlan(100.try_into().unwrap(), 200.try_into().unwrap())
            .ipv6(
                [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            );
        let f = tcp_frame(b, b"hello");
        let p = parse(&f).unwrap();
        assert_eq!(p.tcp.len(), 25);
        assert_eq!(p.route.vlan_count, 2);
        assert_eq!(p.route.vlans[0].1 & 0x0fff, 100);
        assert_eq!(p.route.vlans[1].1 & 0x0fff, 200);
        assert_eq!(p.route.vlans[0].0, ETH_P_8021AD);
    }

    #[test]
    fn refuses_what_is_not_a_whole_tcp_segment() {
        let f = tcp_frame(
            PacketBuilder::ethernet2(A, B).ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64),
            b"data",
        );
        for cut in 0..f.len() {
            // Every truncation is refused (padding aside, the IP length covers all of it).
            assert!(parse(&f[..cut]).is_err(), "cut at {cut}");
        }
        let mut frag = f.clone();
        frag[14 + 6] |= 0x20; // more fragments
        frag[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let sum = tcp_common::checksum::internet_checksum(&frag[14..34]);
        frag[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse(&frag), Err(FrameError::IpFragment));
        let mut udp = f.clone();
        udp[14 + 9] = 17;
        assert_eq!(parse(&udp), Err(FrameError::NotTcp));
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&arp), Err(FrameError::NotIp));
        let mut bad = f.clone();
        bad[14] = 0x44; // IHL 4 words < 20 bytes
        assert_eq!(parse(&bad), Err(FrameError::NotIp));
        let mut bad_sum = f;
        bad_sum[14 + 10] ^= 1;
        assert_eq!(parse(&bad_sum), Err(FrameError::BadIpChecksum));
    }

    #[test]
    fn built_frames_parse_with_an_independent_parser() {
        for (src, dst) in [
            (IpAddr::from([198, 18, 0, 2]), IpAddr::from([198, 18, 0, 1])),
            ("2001:2::2".parse().unwrap(), "2001:2::1".parse().unwrap()),
        ] {
            let route = Route {
                local_mac: B,
                remote_mac: A,
                vlans: [(ETH_P_8021Q, 7), (0, 0)],
                vlan_count: 1,
            };
            let tuple = tcp_engine::FourTuple::new((src, 80).into(), (dst, 40000).into());
            let seg = tcp_engine::Segment {
                repr: tcp_engine::wire::TcpRepr::new(80, 40000, tcp_engine::SeqNumber::new(7)),
                payload: b"reply".to_vec(),
            };
            let pseudo = tuple.outgoing_pseudo_header().unwrap();
            let mut buf = [0u8; 256];
            let n = build(&mut buf, &route, src, dst, |b| seg.emit_into(b, &pseudo).ok()).unwrap();
            let sliced = SlicedPacket::from_ethernet(&buf[..n]).unwrap();
            let Some(TransportSlice::Tcp(tcp)) = sliced.transport else { panic!("no TCP") };
            assert_eq!(tcp.payload(), b"reply");
            assert_eq!(tcp.source_port(), 80);
            let checksum_ok = match sliced.net {
                Some(NetSlice::Ipv4(ip)) => {
                    assert!(
                        ip.header().header_checksum()
                            == ip.header().to_header().calc_header_checksum()
                    );
                    tcp.calc_checksum_ipv4(ip.header().source(), ip.header().destination()).unwrap()
                        == tcp.checksum()
                }
                Some(NetSlice::Ipv6(ip)) => {
                    tcp.calc_checksum_ipv6(ip.header().source(), ip.header().destination()).unwrap()
                        == tcp.checksum()
                }
                _ => panic!("no IP"),
            };
            assert!(checksum_ok);
            // And our own parser gets back what we put in.
            let p = parse(&buf[..n]).unwrap();
            assert_eq!((p.src, p.dst), (src, dst));
            assert_eq!(p.route.vlans[0], (ETH_P_8021Q, 7));
        }
    }

    #[test]
    fn build_refuses_small_buffers_and_mixed_families() {
        let route = Route { local_mac: B, remote_mac: A, vlans: [(0, 0); 2], vlan_count: 0 };
        let v4 = IpAddr::from([198, 18, 0, 2]);
        let v6: IpAddr = "2001:2::1".parse().unwrap();
        let mut small = [0u8; 40];
        assert_eq!(build(&mut small, &route, v4, v4, |_| Some(20)), Err(BuildError::TooLong));
        assert_eq!(build(&mut small, &route, v4, v6, |_| Some(0)), Err(BuildError::FamilyMismatch));
        assert_eq!(build(&mut small, &route, v4, v4, |_| None), Err(BuildError::Segment));
    }
}
