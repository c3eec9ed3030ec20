//! The XDP program under `BPF_PROG_TEST_RUN`: crafted frames in (built with etherparse, not
//! with our own writer), the action, the output frame and the counters out.
//!
//! Each test loads its own copy of the program (maps are per load), so tests run in parallel.
#![cfg(feature = "root-tests")]
// Helpers unwrap as the tests do (allow-unwrap-in-tests covers only #[test] functions).
#![cfg_attr(feature = "root-tests", expect(clippy::unwrap_used, reason = "test helpers"))]

use std::net::IpAddr;
use std::os::fd::AsRawFd as _;

use aya::Ebpf;
use aya::maps::{HashMap, XskMap};
use aya::programs::{TestRun as _, TestRunOptions};
use etherparse::{
    IpHeaders, Ipv4Extensions, Ipv4Header, Ipv4Options, NetSlice, PacketBuilder, SlicedPacket,
    TcpOptionElement, TransportSlice, VlanId,
};
use tcp_common::cookie::{self, CookieKey, CookieSecrets, TsOptions, TupleV4, TupleV6};
use tcp_common::flow::FlowTableSize;
use tcp_common::{Config, ConfigFlags, Counter, FlowKey, FlowValue, PortSet, RxKind, RxMeta, maps};
use tcp_user::lab::{Lab, SHIELD_IF};
use tcp_user::loader;
use tcp_user::xsk::{XskConfig, XskMode, XskSocket};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SHIELD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT_V4: [u8; 4] = [198, 18, 0, 1];
const SHIELD_V4: [u8; 4] = [198, 18, 0, 2];
const CLIENT_V6: [u8; 16] = [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const SHIELD_V6: [u8; 16] = [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const PORT: u16 = 8080;
const CLIENT_PORT: u16 = 40000;
const CLIENT_ISN: u32 = 0x1234_5678;
const CLIENT_TSVAL: u32 = 0xa0b0_c0d0;

fn config() -> Config {
    let mut ports = PortSet::EMPTY;
    ports.insert(PORT);
    ports.insert(443);
    Config {
        ports,
        secrets: CookieSecrets {
            keys: [
                CookieKey { k0: 0x0123_4567_89ab_cdef, k1: 0xfedc_ba98_7654_3210 },
                CookieKey { k0: 11, k1: 22 },
            ],
            current: 0,
            counter: 1000,
            ..CookieSecrets::default()
        },
        ..Config::EMPTY
    }
}

/// One loaded copy of the program with its own maps.
struct Xdp {
    ebpf: Ebpf,
}

/// What one run did.
struct Run {
    action: u32,
    frame: Vec<u8>,
    /// The one verdict counter that moved.
    verdict: Counter,
}

impl Xdp {
    fn new(cfg: &Config) -> Xdp {
        Xdp::with_flow_table(cfg, None)
    }

    /// With the flow table sized as `synshield serve` sizes it for `size`.
    fn with_flow_table(cfg: &Config, size: Option<FlowTableSize>) -> Xdp {
        let mut ebpf = loader::load_with(loader::XDP_OBJECT, size).expect("load the XDP object");
        loader::program(&mut ebpf).unwrap().load().expect("verifier accepts the program");
        loader::write_config(&mut ebpf, cfg).unwrap();
        let ours = [IpAddr::from(SHIELD_V4), IpAddr::from(SHIELD_V6)];
        loader::write_local_addrs(&mut ebpf, &loader::local_addrs(&ours, &[]).unwrap()).unwrap();
        Xdp { ebpf }
    }

    fn set_config(&mut self, cfg: &Config) {
        loader::write_config(&mut self.ebpf, cfg).unwrap();
    }

    fn run(&mut self, frame: &[u8]) -> Run {
        let before = loader::read_counters(&self.ebpf).unwrap();
        let mut out = vec![0u8; 4096];
        let prog = loader::program(&mut self.ebpf).unwrap();
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        let d = loader::read_counters(&self.ebpf).unwrap().since(&before);
        assert_eq!(d.get(Counter::RxFrames), 1, "{d:?}");
        assert_eq!(d.verdict_total(), 1, "exactly one verdict: {d:?}");
        let verdict = *Counter::ALL
            .iter()
            .find(|c| **c != Counter::RxFrames && d.get(**c) == 1)
            .expect("a verdict");
        Run { action: r.return_value, frame: out, verdict }
    }

    /// One run without looking at the counters: the action.
    fn action(&mut self, frame: &[u8]) -> u32 {
        let prog = loader::program(&mut self.ebpf).unwrap();
        let r = prog.test_run(TestRunOptions { data_in: Some(frame), ..TestRunOptions::new() });
        r.expect("BPF_PROG_TEST_RUN").return_value
    }

    fn counters(&self) -> tcp_user::stats::CounterSnapshot {
        loader::read_counters(&self.ebpf).unwrap()
    }

    fn flow_count(&self) -> usize {
        let map: HashMap<_, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map(maps::FLOWS).unwrap()).unwrap();
        map.keys().count()
    }

    fn flow(&self, key: &FlowKey) -> Option<FlowValue> {
        let map: HashMap<_, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map(maps::FLOWS).unwrap()).unwrap();
        map.get(key, 0).ok()
    }
}

/// Options of a Linux client's SYN: MSS 1460, SACK-permitted, timestamps, window scale 7.
fn linux_syn_options() -> Vec<TcpOptionElement> {
    vec![
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(CLIENT_TSVAL, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vlan {
    None,
    One,
    Two,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ip {
    V4,
    V6,
}

/// A TCP segment from the client, as etherparse writes it.
#[expect(clippy::struct_excessive_bools, reason = "the TCP flags of a crafted segment")]
struct Segment {
    ip: Ip,
    vlan: Vlan,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    rst: bool,
    ecn_setup: bool,
    options: Vec<TcpOptionElement>,
    payload: Vec<u8>,
    /// Source and destination, if not the client's and the shield's.
    addrs: Option<(IpAddr, IpAddr)>,
    dst_mac: [u8; 6],
}

impl Segment {
    fn syn(ip: Ip, vlan: Vlan, options: Vec<TcpOptionElement>) -> Segment {
        Segment {
            ip,
            vlan,
            sport: CLIENT_PORT,
            dport: PORT,
            seq: CLIENT_ISN,
            ack: None,
            syn: true,
            fin: false,
            rst: false,
            ecn_setup: false,
            options,
            payload: Vec::new(),
            addrs: None,
            dst_mac: SHIELD_MAC,
        }
    }

    fn frame(&self) -> Vec<u8> {
        let (s4, d4, s6, d6) = match self.addrs {
            None => (CLIENT_V4, SHIELD_V4, CLIENT_V6, SHIELD_V6),
            Some((IpAddr::V4(s), IpAddr::V4(d))) => (s.octets(), d.octets(), CLIENT_V6, SHIELD_V6),
            Some((IpAddr::V6(s), IpAddr::V6(d))) => (CLIENT_V4, SHIELD_V4, s.octets(), d.octets()),
            Some(other) => panic!("one family: {other:?}"),
        };
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, self.dst_mac);
        let ip = match (self.vlan, self.ip) {
            (Vlan::None, Ip::V4) => eth.ipv4(s4, d4, 64),
            (Vlan::None, Ip::V6) => eth.ipv6(s6, d6, 64),
            (Vlan::One, Ip::V4) => eth.single_vlan(VlanId::try_new(100).unwrap()).ipv4(s4, d4, 64),
            (Vlan::One, Ip::V6) => eth.single_vlan(VlanId::try_new(100).unwrap()).ipv6(s6, d6, 64),
            (Vlan::Two, Ip::V4) => eth
                .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
                .ipv4(s4, d4, 64),
            (Vlan::Two, Ip::V6) => eth
                .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
                .ipv6(s6, d6, 64),
        };
        let mut tcp = ip.tcp(self.sport, self.dport, self.seq, 64240);
        if self.syn {
            tcp = tcp.syn();
        }
        if self.fin {
            tcp = tcp.fin();
        }
        if self.rst {
            tcp = tcp.rst();
        }
        if self.ecn_setup {
            tcp = tcp.ece().cwr();
        }
        if let Some(a) = self.ack {
            tcp = tcp.ack(a);
        }
        let tcp = tcp.options(&self.options).unwrap();
        let mut buf = Vec::with_capacity(tcp.size(self.payload.len()));
        tcp.write(&mut buf, &self.payload).unwrap();
        buf
    }
}

/// A parsed and checked SYN-ACK.
struct SynAck {
    seq: u32,
    options: Vec<TcpOptionElement>,
    ece: bool,
}

/// Parses `frame` as our answer to `syn` and checks everything an independent parser can:
/// addresses and ports swapped, checksums, flags, ack, TTL; returns what is left to check.
fn parse_synack(frame: &[u8], syn: &Segment) -> SynAck {
    let p = SlicedPacket::from_ethernet(frame).expect("a well-formed frame");
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else { panic!("not Ethernet") };
    assert_eq!((eth.source(), eth.destination()), (SHIELD_MAC, CLIENT_MAC));
    assert_eq!(p.vlan.is_some(), syn.vlan != Vlan::None, "VLAN tags kept");
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else { panic!("not TCP: {p:?}") };
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!((h.source(), h.destination()), (SHIELD_V4, CLIENT_V4));
            assert_eq!(h.ttl(), 64);
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum(), "IP checksum");
            assert_eq!(usize::from(h.total_len()), 20 + tcp.slice().len());
            assert_eq!(
                tcp.checksum(),
                tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap(),
                "TCP checksum"
            );
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            assert_eq!((h.source(), h.destination()), (SHIELD_V6, CLIENT_V6));
            assert_eq!(h.hop_limit(), 64);
            assert_eq!(usize::from(h.payload_length()), tcp.slice().len());
            assert_eq!(
                tcp.checksum(),
                tcp.calc_checksum_ipv6(h.source(), h.destination()).unwrap(),
                "TCP checksum"
            );
        }
        None => panic!("no IP"),
    }
    assert_eq!((tcp.source_port(), tcp.destination_port()), (syn.dport, syn.sport));
    assert!(tcp.syn() && tcp.ack() && !tcp.fin() && !tcp.rst() && !tcp.cwr());
    assert_eq!(tcp.acknowledgment_number(), syn.seq.wrapping_add(1));
    assert!(tcp.payload().is_empty());
    let options = tcp.options_iterator().map(|o| o.unwrap()).collect();
    SynAck { seq: tcp.sequence_number(), options, ece: tcp.ece() }
}

fn check_cookie(cfg: &Config, ip: Ip, isn: u32, cookie: u32) -> cookie::ValidCookie {
    match ip {
        Ip::V4 => cfg.secrets.check(
            &TupleV4 {
                client: CLIENT_V4,
                server: SHIELD_V4,
                client_port: CLIENT_PORT,
                server_port: PORT,
            },
            isn,
            cookie,
        ),
        Ip::V6 => {
            cfg.secrets.check(&TupleV6::new(CLIENT_V6, SHIELD_V6, CLIENT_PORT, PORT), isn, cookie)
        }
    }
    .expect("userspace validates the cookie")
}

fn flow_key(ip: Ip) -> FlowKey {
    match ip {
        Ip::V4 => FlowKey::v4(CLIENT_V4, SHIELD_V4, CLIENT_PORT, PORT),
        Ip::V6 => FlowKey::v6(CLIENT_V6, SHIELD_V6, CLIENT_PORT, PORT),
    }
}

fn find_ts(options: &[TcpOptionElement]) -> Option<(u32, u32)> {
    options.iter().find_map(|o| match o {
        TcpOptionElement::Timestamp(v, e) => Some((*v, *e)),
        _ => None,
    })
}

/// SYN -> SYN-ACK with every option, then the third ACK is validated and its flow recorded.
fn handshake(ip: Ip, vlan: Vlan) {
    let cfg = config();
    let mut xdp = Xdp::new(&cfg);
    let syn = Segment::syn(ip, vlan, linux_syn_options());
    let r = xdp.run(&syn.frame());
    assert_eq!((r.action, r.verdict), (XDP_TX, Counter::TxSynAck), "{ip:?} {vlan:?}");
    let sa = parse_synack(&r.frame, &syn);
    let valid = check_cookie(&cfg, ip, CLIENT_ISN, sa.seq);
    let expect_mss = match ip {
        Ip::V4 => 1460,
        Ip::V6 => 1440,
    };
    assert_eq!(valid.mss, expect_mss);
    assert_eq!(sa.options[0], TcpOptionElement::MaximumSegmentSize(expect_mss));
    assert!(sa.options.contains(&TcpOptionElement::SelectiveAcknowledgementPermitted));
    assert!(sa.options.contains(&TcpOptionElement::WindowScale(cfg.wscale)));
    let (tsval, tsecr) = find_ts(&sa.options).expect("timestamps answered");
    assert_eq!(tsecr, CLIENT_TSVAL);
    assert_eq!(
        cookie::decode_tsecr(tsval, valid.ts_offset),
        TsOptions { wscale: Some(7), sack: true, ecn: false }
    );
    assert!(!sa.ece);

    // The third ACK, as the client sends it.
    let ack = Segment {
        syn: false,
        seq: CLIENT_ISN + 1,
        ack: Some(sa.seq.wrapping_add(1)),
        options: vec![
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(CLIENT_TSVAL + 5, tsval),
        ],
        ..Segment::syn(ip, vlan, Vec::new())
    };
    let r = xdp.run(&ack.frame());
    // No AF_XDP socket is bound in this test: the redirect fails after the flow is recorded.
    assert_eq!((r.action, r.verdict), (XDP_DROP, Counter::DropNoSocket));
    let flow = xdp.flow(&flow_key(ip)).expect("flow inserted");
    assert_eq!((flow.client_isn, flow.server_isn, flow.mss), (CLIENT_ISN, sa.seq, expect_mss));
    assert_eq!((flow.peer_wscale, flow.local_wscale), (7, cfg.wscale));
    assert_eq!(flow.flags, FlowValue::TIMESTAMPS | FlowValue::SACK);
    assert_eq!(
        (flow.ts_recent, flow.ts_synack, flow.ts_offset),
        (CLIENT_TSVAL + 5, tsval, valid.ts_offset)
    );
}

#[test]
fn handshake_ipv4() {
    handshake(Ip::V4, Vlan::None);
}

#[test]
fn handshake_ipv6() {
    handshake(Ip::V6, Vlan::None);
}

#[test]
fn handshake_ipv4_one_vlan() {
    handshake(Ip::V4, Vlan::One);
}

#[test]
fn handshake_ipv6_two_vlans() {
    handshake(Ip::V6, Vlan::Two);
}

#[test]
fn handshake_ipv4_two_vlans_and_ipv6_one_vlan() {
    handshake(Ip::V4, Vlan::Two);
    handshake(Ip::V6, Vlan::One);
}

#[test]
fn syn_without_options_gets_mss_only_and_default_mss_class() {
    let cfg = config();
    let mut xdp = Xdp::new(&cfg);
    for ip in [Ip::V4, Ip::V6] {
        let syn = Segment::syn(ip, Vlan::None, Vec::new());
        let r = xdp.run(&syn.frame());
        assert_eq!((r.action, r.verdict), (XDP_TX, Counter::TxSynAck));
        let sa = parse_synack(&r.frame, &syn);
        assert_eq!(sa.options.len(), 1, "{:?}", sa.options);
        let valid = check_cookie(&cfg, ip, CLIENT_ISN, sa.seq);
        // RFC 9293 default MSS when the SYN has none: 536 / 1220.
        assert_eq!(valid.mss, if ip == Ip::V4 { 536 } else { 1220 });
    }
}

#[test]
fn syn_without_timestamps_gets_no_window_scaling_or_sack() {
    let cfg = config();
    let mut xdp = Xdp::new(&cfg);
    let syn = Segment::syn(
        Ip::V4,
        Vlan::None,
        vec![
            TcpOptionElement::MaximumSegmentSize(1400),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(8),
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::SelectiveAcknowledgementPermitted,
        ],
    );
    let r = xdp.run(&syn.frame());
    assert_eq!(r.verdict, Counter::TxSynAck);
    let sa = parse_synack(&r.frame, &syn);
    assert_eq!(sa.options, [TcpOptionElement::MaximumSegmentSize(1460)]);
    assert_eq!(check_cookie(&cfg, Ip::V4, CLIENT_ISN, sa.seq).mss, 1300);
}

#[test]
fn mss_is_clamped_by_configuration() {
    let mut cfg = config();
    cfg.clamp_mss_to_mtu(1400);
    let mut xdp = Xdp::new(&cfg);
    let syn = Segment::syn(Ip::V4, Vlan::None, linux_syn_options());
    let r = xdp.run(&syn.frame());
    let sa = parse_synack(&r.frame, &syn);
    assert_eq!(sa.options[0], TcpOptionElement::MaximumSegmentSize(1360));
    assert_eq!(check_cookie(&cfg, Ip::V4, CLIENT_ISN, sa.seq).mss, 1300);
}

#[test]
fn ecn_setup_is_accepted_only_when_enabled() {
    let mut cfg = config();
    let mut syn = Segment::syn(Ip::V4, Vlan::None, linux_syn_options());
    syn.ecn_setup = true;
    let mut xdp = Xdp::new(&cfg);
    let sa = parse_synack(&xdp.run(&syn.frame()).frame, &syn);
    assert!(!sa.ece, "ECN is off by default");
    cfg.flags |= ConfigFlags::ECN.0;
    xdp.set_config(&cfg);
    let sa = parse_synack(&xdp.run(&syn.frame()).frame, &syn);
    assert!(sa.ece);
    let valid = check_cookie(&cfg, Ip::V4, CLIENT_ISN, sa.seq);
    let (tsval, _) = find_ts(&sa.options).unwrap();
    assert!(cookie::decode_tsecr(tsval, valid.ts_offset).ecn);
}

fn third_ack(cookie: u32) -> Segment {
    Segment {
        syn: false,
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(1)),
        ..Segment::syn(Ip::V4, Vlan::None, Vec::new())
    }
}

/// With an AF_XDP socket on the RX queue, the third ACK is redirected to it (`XDP_REDIRECT`),
/// and so is the next segment of the flow. (The socket is bound to a lab veth; the test run
/// uses queue 0, where it sits.)
#[test]
fn valid_ack_and_known_flow_are_redirected_to_the_queue_socket() {
    let lab = Lab::new().unwrap();
    let cfg = config();
    let mut xdp = Xdp::new(&cfg);
    let socket = lab
        .shield
        .enter(|| {
            XskSocket::open(
                SHIELD_IF,
                0,
                &XskConfig { mode: XskMode::Copy, ..XskConfig::default() },
            )
        })
        .unwrap()
        .expect("AF_XDP socket on the lab veth");
    let mut xsks = XskMap::try_from(xdp.ebpf.map_mut(maps::XSKS).unwrap()).unwrap();
    xsks.set(0, socket.as_raw_fd(), 0).unwrap();

    let syn = Segment::syn(Ip::V4, Vlan::None, linux_syn_options());
    let sa = parse_synack(&xdp.run(&syn.frame()).frame, &syn);
    let (tsval, _) = find_ts(&sa.options).unwrap();
    let mut ack = third_ack(sa.seq);
    ack.options = vec![
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(CLIENT_TSVAL + 1, tsval),
    ];
    let r = xdp.run(&ack.frame());
    assert_eq!((r.action, r.verdict), (XDP_REDIRECT, Counter::RedirectNewFlow));
    let flow = xdp.flow(&flow_key(Ip::V4)).expect("flow inserted");
    assert_eq!(flow.queue, 0, "the queue the ACK arrived on");
    assert_eq!(meta_of(&r.frame, &ack.frame()), (RxKind::NewFlow, flow));
    let mut data = third_ack(sa.seq);
    data.payload = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    let r = xdp.run(&data.frame());
    assert_eq!((r.action, r.verdict), (XDP_REDIRECT, Counter::RedirectFlow));
    assert_eq!(meta_of(&r.frame, &data.frame()), (RxKind::Flow, flow));

    // Userspace marks the connection TIME-WAIT. A new handshake on the tuple: its third ACK
    // comes with REOPEN and the new cookie's flow; the map keeps the old entry.
    let mut flows: HashMap<_, FlowKey, FlowValue> =
        HashMap::try_from(xdp.ebpf.map_mut(maps::FLOWS).unwrap()).unwrap();
    let time_wait = FlowValue { flags: flow.flags | FlowValue::TIME_WAIT, ..flow };
    flows.insert(flow_key(Ip::V4), time_wait, 0).unwrap();
    let mut syn2 = Segment::syn(Ip::V4, Vlan::None, Vec::new());
    syn2.seq = CLIENT_ISN + 100_000;
    let sa2 = parse_synack(&xdp.run(&syn2.frame()).frame, &syn2);
    let mut ack2 = third_ack(sa2.seq);
    ack2.seq = syn2.seq + 1;
    let r = xdp.run(&ack2.frame());
    assert_eq!((r.action, r.verdict), (XDP_REDIRECT, Counter::RedirectReopen));
    let (kind, new) = meta_of(&r.frame, &ack2.frame());
    assert_eq!(kind, RxKind::Reopen);
    assert_eq!((new.client_isn, new.server_isn, new.queue), (syn2.seq, sa2.seq, 0));
    assert_eq!(xdp.flow(&flow_key(Ip::V4)), Some(time_wait), "XDP leaves the map alone");
    // The old connection's last ACK (acking data, so not a cookie) is a FLOW segment, and so
    // is a FIN (not a bare ACK).
    let mut fin = third_ack(sa.seq);
    fin.fin = true;
    for seg in [third_ack(sa.seq.wrapping_add(19)), fin] {
        let r = xdp.run(&seg.frame());
        assert_eq!((r.action, r.verdict), (XDP_REDIRECT, Counter::RedirectFlow));
        assert_eq!(meta_of(&r.frame, &seg.frame()), (RxKind::Flow, time_wait));
    }
    // A retransmission of the old third ACK, with or without data, is a valid cookie again:
    // REOPEN, and userspace tells it apart (RFC 6191).
    let r = xdp.run(&data.frame());
    assert_eq!(meta_of(&r.frame, &data.frame()).0, RxKind::Reopen);
    drop(socket);
}

/// The metadata in front of a redirected frame: `BPF_PROG_TEST_RUN` returns the metadata
/// and the frame together (net/bpf/test_run.c copies from `data_meta`).
fn meta_of(out: &[u8], frame: &[u8]) -> (RxKind, FlowValue) {
    assert_eq!(out.len(), RxMeta::LEN + frame.len(), "metadata + frame");
    assert_eq!(&out[RxMeta::LEN..], frame, "the frame itself is untouched");
    RxMeta::read(&out[..RxMeta::LEN]).expect("a valid tag")
}

/// The cookie our SYN-ACK would carry for a SYN from `sport` with `CLIENT_ISN` (MSS class 0),
/// made on the host: the third ACK then needs no SYN run first.
fn host_cookie(cfg: &Config, ip: Ip, sport: u16) -> cookie::SynCookie {
    match ip {
        Ip::V4 => {
            let t = TupleV4 {
                client: CLIENT_V4,
                server: SHIELD_V4,
                client_port: sport,
                server_port: PORT,
            };
            cfg.secrets.make(&t, CLIENT_ISN, 0)
        }
        Ip::V6 => {
            let t = TupleV6::new(CLIENT_V6, SHIELD_V6, sport, PORT);
            cfg.secrets.make(&t, CLIENT_ISN, 0)
        }
    }
}

/// A third ACK with a valid cookie (no timestamps) from `sport`, carrying `payload`.
fn valid_third_ack(cfg: &Config, ip: Ip, sport: u16, payload: &[u8]) -> Segment {
    Segment {
        syn: false,
        sport,
        seq: CLIENT_ISN + 1,
        ack: Some(host_cookie(cfg, ip, sport).isn.wrapping_add(1)),
        payload: payload.to_vec(),
        ..Segment::syn(ip, Vlan::None, Vec::new())
    }
}

fn flow_key_from(ip: Ip, sport: u16) -> FlowKey {
    match ip {
        Ip::V4 => FlowKey::v4(CLIENT_V4, SHIELD_V4, sport, PORT),
        Ip::V6 => FlowKey::v6(CLIENT_V6, SHIELD_V6, sport, PORT),
    }
}

/// The TCP checksum of the third ACK is verified before its flow is inserted, payload
/// included (any length, odd or beyond one 512-byte chunk): a broken one leaves no entry.
#[test]
fn third_ack_checksum_is_verified_before_the_insert() {
    let cfg = config();
    let mut xdp = Xdp::new(&cfg);
    let mut sport = 20_000;
    for ip in [Ip::V4, Ip::V6] {
        for len in [0usize, 1, 2, 3, 511, 512, 513, 1024, 1025, 1379, 2999] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 1).to_le_bytes()[0]).collect();
            // A good one is admitted (no AF_XDP socket here: the redirect fails after the
            // insert).
            sport += 1;
            let good = valid_third_ack(&cfg, ip, sport, &payload).frame();
            let r = xdp.run(&good);
            assert_eq!((r.action, r.verdict), (XDP_DROP, Counter::DropNoSocket), "{ip:?} {len}");
            assert!(xdp.flow(&flow_key_from(ip, sport)).is_some(), "{ip:?} {len}: inserted");
            // The same with one bit flipped in the checksum, then in the last byte.
            sport += 1;
            let mut bad = valid_third_ack(&cfg, ip, sport, &payload).frame();
            let tcp = bad.len() - len - 20;
            bad[tcp + 17] ^= 0x01;
            let mut bad_last = valid_third_ack(&cfg, ip, sport, &payload).frame();
            *bad_last.last_mut().unwrap() ^= 0x80;
            let broken = if len == 0 { vec![bad] } else { vec![bad, bad_last] };
            for f in &broken {
                let r = xdp.run(f);
                let want = (XDP_DROP, Counter::DropAckBadChecksum);
                assert_eq!((r.action, r.verdict), want, "{ip:?} {len}");
            }
            assert!(xdp.flow(&flow_key_from(ip, sport)).is_none(), "{ip:?} {len}: no entry");
        }
    }
    // A bad IPv4 header checksum is caught by the dissector, before the cookie.
    sport += 1;
    let mut f = valid_third_ack(&cfg, Ip::V4, sport, b"x").frame();
    f[14 + 10] ^= 0x10;
    assert_eq!(xdp.run(&f).verdict, Counter::DropBadChecksum);
    assert!(xdp.flow(&flow_key_from(Ip::V4, sport)).is_none());
}

/// A third ACK whose echoed timestamp claims an option the configuration does not offer is
/// refused (the bits are outside the cookie's MAC); claiming only what is offered is fine.
#[test]
fn third_ack_claiming_an_option_not_offered_is_refused() {
    let all = TsOptions { wscale: Some(7), sack: true, ecn: true };
    let none = TsOptions::default();
    let cases = [
        (ConfigFlags::TIMESTAMPS, none, false),
        (ConfigFlags::SACK, TsOptions { sack: true, ..none }, false),
        (ConfigFlags::SACK, TsOptions { wscale: Some(7), ..none }, true),
        (ConfigFlags::WINDOW_SCALING, TsOptions { wscale: Some(0), ..none }, false),
        (ConfigFlags::WINDOW_SCALING, TsOptions { sack: true, ..none }, true),
        (ConfigFlags::ECN, TsOptions { ecn: true, ..none }, false),
        (ConfigFlags::ECN, all, false),
        (ConfigFlags(0), all, true),
    ];
    for (i, (off, claim, admitted)) in cases.into_iter().enumerate() {
        let mut cfg = config();
        cfg.flags = (ConfigFlags::DEFAULT.0 | ConfigFlags::ECN.0) & !off.0;
        let mut xdp = Xdp::new(&cfg);
        for ip in [Ip::V4, Ip::V6] {
            let sport = 30_000 + u16::try_from(i).unwrap();
            let c = host_cookie(&cfg, ip, sport);
            let mut ack = valid_third_ack(&cfg, ip, sport, &[]);
            let tsecr = cookie::encode_tsval(5_000_000, c.ts_offset, claim);
            ack.options = vec![
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(CLIENT_TSVAL, tsecr),
            ];
            let r = xdp.run(&ack.frame());
            let key = flow_key_from(ip, sport);
            if admitted {
                assert_eq!(r.verdict, Counter::DropNoSocket, "{off:?} {claim:?} {ip:?}");
                assert_eq!(xdp.flow(&key).unwrap().ts_options(), claim);
            } else {
                let want = (XDP_DROP, Counter::DropAckOptionNotOffered);
                assert_eq!((r.action, r.verdict), want, "{off:?} {claim:?} {ip:?}");
                assert!(xdp.flow(&key).is_none());
            }
        }
    }
}

/// The flow table is an LRU map sized from `--max-conns` (plus TIME-WAIT, half-open and the
/// LRU's per-CPU slack): below `max_conns` nothing is evicted and nothing refused; beyond it,
/// the least recently used entries make room and a new client is still admitted, never
/// `drop_flow_table_full`. (The test thread may run on either CPU, as XDP does.)
#[test]
fn flow_table_holds_max_conns_and_evicts_instead_of_refusing() {
    let cfg = config();
    let size = FlowTableSize { max_conns: 3000, max_time_wait: 0, max_half_open: 0 };
    let mut xdp = Xdp::with_flow_table(&cfg, Some(size));
    let entries = loader::flow_table_entries(&size).unwrap();
    let cpus = u32::try_from(aya::util::nr_cpus().unwrap()).unwrap();
    assert_eq!(entries, 3000 + (cpus + 1) * 128);
    let aya::maps::Map::LruHashMap(data) = xdp.ebpf.map(maps::FLOWS).unwrap() else {
        panic!("the flow table is an LRU hash map")
    };
    assert_eq!(data.info().unwrap().max_entries(), entries);
    let before = xdp.counters();
    for sport in 1..=3000 {
        let f = valid_third_ack(&cfg, Ip::V4, sport, &[]).frame();
        assert_eq!(xdp.action(&f), XDP_DROP, "no socket: dropped after the insert");
    }
    let d = xdp.counters().since(&before);
    assert_eq!(d.get(Counter::DropNoSocket), 3000, "{d:?}");
    assert_eq!(xdp.flow_count(), 3000, "every entry kept up to max_conns");
    // Twice the table's size more: every one admitted, the oldest evicted.
    let more = 2 * entries;
    for i in 0..more {
        let sport = 3001 + u16::try_from(i).unwrap();
        assert_eq!(xdp.action(&valid_third_ack(&cfg, Ip::V4, sport, &[]).frame()), XDP_DROP);
    }
    let d = xdp.counters().since(&before);
    assert_eq!(d.get(Counter::DropNoSocket), u64::from(3000 + more), "{d:?}");
    assert_eq!(d.get(Counter::DropFlowTableFull), 0);
    let held = xdp.flow_count();
    assert!(held <= entries as usize && held >= 3000, "{held} of {entries}");
    let newest = 3000 + u16::try_from(more).unwrap();
    assert!(xdp.flow(&flow_key_from(Ip::V4, newest)).is_some(), "the newest is kept");
    assert!(xdp.flow(&flow_key_from(Ip::V4, 1)).is_none(), "the oldest went first");
}

/// SYNs are answered only for our addresses, and only from sources a peer can have: each
/// refusal counted by its reason, IPv4 and IPv6; a RST (when configured) likewise.
#[test]
fn syns_are_answered_only_for_our_addresses_and_plausible_sources() {
    let mut cfg = config();
    cfg.flags |= ConfigFlags::RST_INVALID_ACK.0;
    let mut xdp = Xdp::new(&cfg);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let cases = [
        ("198.18.0.1", "198.18.0.2", None),
        ("203.0.113.9", "198.18.0.2", None),
        ("198.18.0.1", "198.18.0.3", Some(Counter::DropNotLocalDestination)),
        ("198.18.0.1", "198.18.0.255", Some(Counter::DropNotLocalDestination)),
        ("198.18.0.1", "255.255.255.255", Some(Counter::DropMulticastDestination)),
        ("198.18.0.1", "224.0.0.1", Some(Counter::DropMulticastDestination)),
        ("198.18.0.1", "240.0.0.9", Some(Counter::DropMulticastDestination)),
        ("0.0.0.0", "198.18.0.2", Some(Counter::DropMartianSource)),
        ("127.0.0.1", "198.18.0.2", Some(Counter::DropMartianSource)),
        ("224.1.2.3", "198.18.0.2", Some(Counter::DropMartianSource)),
        ("250.0.0.1", "198.18.0.2", Some(Counter::DropMartianSource)),
        ("255.255.255.255", "198.18.0.2", Some(Counter::DropMartianSource)),
        ("198.18.0.2", "198.18.0.2", Some(Counter::DropOwnSource)),
        ("2001:2::1", "2001:2::2", None),
        ("2001:2::1", "2001:2::3", Some(Counter::DropNotLocalDestination)),
        ("2001:2::1", "ff02::1", Some(Counter::DropMulticastDestination)),
        ("::", "2001:2::2", Some(Counter::DropMartianSource)),
        ("::1", "2001:2::2", Some(Counter::DropMartianSource)),
        ("ff02::2", "2001:2::2", Some(Counter::DropMartianSource)),
        ("::ffff:198.18.0.1", "2001:2::2", Some(Counter::DropMartianSource)),
        ("2001:2::2", "2001:2::2", Some(Counter::DropOwnSource)),
    ];
    for (src, dst, refused) in cases {
        let family = if ip(src).is_ipv4() { Ip::V4 } else { Ip::V6 };
        for vlan in [Vlan::None, Vlan::Two] {
            let mut syn = Segment::syn(family, vlan, linux_syn_options());
            syn.addrs = Some((ip(src), ip(dst)));
            let r = xdp.run(&syn.frame());
            let mut ack = third_ack(0x5555_0000);
            (ack.ip, ack.vlan, ack.addrs) = (family, vlan, syn.addrs);
            let rst = xdp.run(&ack.frame());
            match refused {
                None => {
                    assert_eq!((r.action, r.verdict), (XDP_TX, Counter::TxSynAck), "{src} {dst}");
                    assert_eq!((rst.action, rst.verdict), (XDP_TX, Counter::TxRst));
                }
                Some(c) => {
                    assert_eq!((r.action, r.verdict), (XDP_DROP, c), "{src} -> {dst}");
                    assert_eq!((rst.action, rst.verdict), (XDP_DROP, c), "RST {src} -> {dst}");
                }
            }
        }
    }
    // To a broadcast or multicast MAC address: the SYN-ACK would come from it.
    for mac in [[0xff; 6], [0x01, 0, 0x5e, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 1]] {
        for family in [Ip::V4, Ip::V6] {
            let mut syn = Segment::syn(family, Vlan::One, Vec::new());
            syn.dst_mac = mac;
            let r = xdp.run(&syn.frame());
            assert_eq!((r.action, r.verdict), (XDP_DROP, Counter::DropMulticastDestination));
        }
    }
}

/// The loader answers for the interface's own addresses (read in its network namespace) and
/// the `--address` ones; an address that is not unicast is refused with a sentence.
#[test]
fn local_addresses_are_the_interface_s_and_the_extra_ones() {
    let lab = Lab::new().unwrap();
    // The kernel adds the interface's IPv6 link-local address on its own once the link is up;
    // wait for it, or the loader (reading later) would see one address more than we did.
    let read = || lab.shield.enter(|| loader::interface_addresses(SHIELD_IF)).unwrap().unwrap();
    let link_local = |a: &IpAddr| matches!(a, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut found = read();
    while !found.iter().any(link_local) {
        assert!(std::time::Instant::now() < deadline, "no link-local address: {found:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
        found = read();
    }
    assert!(found.contains(&IpAddr::from(SHIELD_V4)), "{found:?}");
    assert!(found.contains(&IpAddr::from(SHIELD_V6)), "{found:?}");
    let extra: IpAddr = "203.0.113.7".parse().unwrap();
    let options = loader::ShieldOptions { addresses: vec![extra], ..Default::default() };
    let shield = lab
        .shield
        .enter(|| {
            loader::Shield::attach_with(
                SHIELD_IF,
                loader::XdpModeChoice::Native,
                &config(),
                &options,
            )
        })
        .unwrap()
        .unwrap();
    let map: aya::maps::Array<_, tcp_common::local::LocalAddrs> =
        aya::maps::Array::try_from(shield.ebpf().map(maps::LOCAL_ADDRS).unwrap()).unwrap();
    let local = map.get(&0, 0).unwrap();
    let want = loader::local_addrs(&found, &[extra]).unwrap();
    assert_eq!(local, want);
    assert_eq!(local.v4_count, 2, "{local:?}");
    assert_eq!(local.v6_count, 2, "ours and the link-local one: {local:?}");
    let err = loader::local_addrs(&found, &["224.0.0.1".parse().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("--address 224.0.0.1: not a unicast address"), "{err}");
}

/// With `--rst-invalid-ack`, an invalid ACK whose checksum does not verify is not answered.
#[test]
fn no_rst_for_a_segment_with_a_bad_checksum() {
    let mut cfg = config();
    cfg.flags |= ConfigFlags::RST_INVALID_ACK.0;
    let mut xdp = Xdp::new(&cfg);
    let mut ack = third_ack(0x5555_0000);
    ack.payload = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    let mut f = ack.frame();
    *f.last_mut().unwrap() ^= 1;
    let r = xdp.run(&f);
    assert_eq!((r.action, r.verdict), (XDP_DROP, Counter::DropBadChecksum));
}

#[test]
fn forged_expired_and_wrong_key_acks_are_rejected() {
    let cfg = config();
    let mut xdp = Xdp::new(&cfg);
    let syn = Segment::syn(Ip::V4, Vlan::None, Vec::new());
    let sa = parse_synack(&xdp.run(&syn.frame()).frame, &syn);
    for forged in [sa.seq ^ 1, sa.seq ^ 0x0100_0000, 0, 0xdead_beef] {
        let r = xdp.run(&third_ack(forged).frame());
        assert_eq!((r.action, r.verdict), (XDP_DROP, Counter::DropAckInvalid));
    }
    // Wrong client ISN for a right cookie.
    let mut ack = third_ack(sa.seq);
    ack.seq += 1;
    assert_eq!(xdp.run(&ack.frame()).verdict, Counter::DropAckInvalid);
    assert!(xdp.flow(&flow_key(Ip::V4)).is_none());
    // Expired: two counter periods later.
    let mut later = cfg;
    later.secrets.counter += 2;
    xdp.set_config(&later);
    assert_eq!(xdp.run(&third_ack(sa.seq).frame()).verdict, Counter::DropAckInvalid);
    // One period later: still valid (and without timestamps nothing is negotiated).
    later.secrets.counter = cfg.secrets.counter + 1;
    xdp.set_config(&later);
    assert_eq!(xdp.run(&third_ack(sa.seq).frame()).verdict, Counter::DropNoSocket);
    let flow = xdp.flow(&flow_key(Ip::V4)).expect("flow");
    assert_eq!((flow.flags, flow.peer_wscale, flow.mss), (0, FlowValue::NO_WSCALE, 536));
}

#[test]
fn previous_key_is_valid_for_one_rotation() {
    let cfg = config();
    let mut xdp = Xdp::new(&cfg);
    let syn = Segment::syn(Ip::V4, Vlan::None, Vec::new());
    let sa = parse_synack(&xdp.run(&syn.frame()).frame, &syn);
    let mut rotated = cfg;
    rotated.secrets.install_next_key(CookieKey { k0: 5, k1: 6 });
    rotated.secrets.activate_next_key();
    xdp.set_config(&rotated);
    assert_eq!(xdp.run(&third_ack(sa.seq).frame()).verdict, Counter::DropNoSocket);
    let mut twice = rotated;
    twice.secrets.install_next_key(CookieKey { k0: 7, k1: 8 });
    twice.secrets.activate_next_key();
    xdp.set_config(&twice);
    // A new tuple, so the flow inserted above does not answer for it.
    let mut ack = third_ack(sa.seq);
    ack.dport = 443;
    assert_eq!(xdp.run(&ack.frame()).verdict, Counter::DropAckInvalid);
}

#[test]
fn invalid_ack_gets_rst_when_configured() {
    let mut cfg = config();
    cfg.flags |= ConfigFlags::RST_INVALID_ACK.0;
    let mut xdp = Xdp::new(&cfg);
    let mut ack = third_ack(0x5555_0000);
    ack.payload = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    let r = xdp.run(&ack.frame());
    assert_eq!((r.action, r.verdict), (XDP_TX, Counter::TxRst));
    let p = SlicedPacket::from_ethernet(&r.frame).unwrap();
    let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) = (&p.net, &p.transport) else {
        panic!("not IPv4/TCP: {p:?}")
    };
    let h = ip.header();
    assert_eq!((h.source(), h.destination()), (SHIELD_V4, CLIENT_V4));
    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    assert!(tcp.rst() && !tcp.ack() && !tcp.syn());
    assert_eq!(tcp.sequence_number(), 0x5555_0001, "<SEQ=SEG.ACK><CTL=RST>");
    assert!(tcp.payload().is_empty());
    assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap());
}

#[test]
fn segments_for_unknown_flows() {
    let mut xdp = Xdp::new(&config());
    let mut rst = third_ack(1);
    rst.rst = true;
    assert_eq!(xdp.run(&rst.frame()).verdict, Counter::DropRstUnknown);
    let mut no_ack = third_ack(1);
    no_ack.ack = None;
    no_ack.payload = b"data".to_vec();
    assert_eq!(xdp.run(&no_ack.frame()).verdict, Counter::DropNoAckUnknown);
}

/// Malformed SYNs are dropped and counted by reason; never answered.
#[test]
fn malformed_syns_are_dropped_by_reason() {
    let mut xdp = Xdp::new(&config());
    let mut with_payload = Segment::syn(Ip::V4, Vlan::None, linux_syn_options());
    with_payload.payload = b"hello".to_vec();
    let mut syn_fin = Segment::syn(Ip::V6, Vlan::None, Vec::new());
    syn_fin.fin = true;
    let mut syn_rst = Segment::syn(Ip::V4, Vlan::One, Vec::new());
    syn_rst.rst = true;
    let mut syn_ack = Segment::syn(Ip::V4, Vlan::None, Vec::new());
    syn_ack.ack = Some(1);
    for (seg, reason) in [
        (&with_payload, Counter::DropSynWithPayload),
        (&syn_fin, Counter::DropSynBadFlags),
        (&syn_rst, Counter::DropSynBadFlags),
        (&syn_ack, Counter::DropSynBadFlags),
    ] {
        let r = xdp.run(&seg.frame());
        assert_eq!((r.action, r.verdict), (XDP_DROP, reason));
    }

    // Bad TCP checksum.
    let mut f = Segment::syn(Ip::V4, Vlan::None, linux_syn_options()).frame();
    f[14 + 20 + 16] ^= 0x40;
    assert_eq!(xdp.run(&f).verdict, Counter::DropBadChecksum);
    let mut f = Segment::syn(Ip::V6, Vlan::Two, Vec::new()).frame();
    f[22 + 40 + 17] ^= 1;
    assert_eq!(xdp.run(&f).verdict, Counter::DropBadChecksum);
    // Bad IPv4 header checksum.
    let mut f = Segment::syn(Ip::V4, Vlan::None, Vec::new()).frame();
    f[14 + 10] ^= 0x10;
    assert_eq!(xdp.run(&f).verdict, Counter::DropBadChecksum);

    // Malformed options: an MSS option of length 3 (and a checksum that matches it).
    let mut f = Segment::syn(Ip::V4, Vlan::None, linux_syn_options()).frame();
    f[14 + 20 + 21] = 3;
    fix_tcp_checksum_v4(&mut f);
    assert_eq!(xdp.run(&f).verdict, Counter::DropBadOptions);
    // Data offset below 5.
    let mut f = Segment::syn(Ip::V4, Vlan::None, Vec::new()).frame();
    f[14 + 20 + 12] = 4 << 4;
    assert_eq!(xdp.run(&f).verdict, Counter::DropBadTcpHeader);
    // Truncated: the IP header claims more than the frame holds.
    let f = Segment::syn(Ip::V4, Vlan::None, linux_syn_options()).frame();
    assert_eq!(xdp.run(&f[..f.len() - 4]).verdict, Counter::DropTruncated);
}

fn fix_tcp_checksum_v4(f: &mut [u8]) {
    let tcp = 14 + 20;
    f[tcp + 16] = 0;
    f[tcp + 17] = 0;
    let len = u16::try_from(f.len() - tcp).unwrap();
    let s = tcp_common::checksum::sum_bytes(&f[14 + 12..14 + 20])
        .add16(6)
        .add16(len)
        .add_sum(tcp_common::checksum::sum_bytes(&f[tcp..]));
    f[tcp + 16..tcp + 18].copy_from_slice(&s.checksum().to_be_bytes());
}

fn ipv4_with_options(dport: u16) -> Vec<u8> {
    let mut h = Ipv4Header::new(20, 64, etherparse::IpNumber::TCP, CLIENT_V4, SHIELD_V4).unwrap();
    h.options = Ipv4Options::try_from(&[1u8, 1, 1, 0][..]).unwrap();
    let b = PacketBuilder::ethernet2(CLIENT_MAC, SHIELD_MAC)
        .ip(IpHeaders::Ipv4(h, Ipv4Extensions::default()))
        .tcp(CLIENT_PORT, dport, CLIENT_ISN, 1000)
        .syn();
    let mut buf = Vec::new();
    b.write(&mut buf, &[]).unwrap();
    buf
}

/// IPv4 fragments, IPv4 options and IPv6 extension headers on protected ports are dropped;
/// on other ports they are the kernel's.
#[test]
fn fragments_ip_options_and_extension_headers() {
    let mut xdp = Xdp::new(&config());
    assert_eq!(xdp.run(&ipv4_with_options(PORT)).verdict, Counter::DropIpOptions);
    assert_eq!(xdp.run(&ipv4_with_options(22)).verdict, Counter::PassOtherPort);

    // First fragment (MF set): its TCP header names the port.
    let mut f = Segment::syn(Ip::V4, Vlan::None, Vec::new()).frame();
    set_ipv4_frag(&mut f, 0x2000);
    assert_eq!(xdp.run(&f).verdict, Counter::DropIpFragment);
    // A later fragment has no TCP header: the kernel's.
    let mut f = Segment::syn(Ip::V4, Vlan::None, Vec::new()).frame();
    set_ipv4_frag(&mut f, 0x0010);
    let r = xdp.run(&f);
    assert_eq!((r.action, r.verdict), (XDP_PASS, Counter::PassNoTcpHeader));

    // IPv6 with a hop-by-hop options header before TCP.
    let f = with_ipv6_hop_by_hop(&Segment::syn(Ip::V6, Vlan::None, Vec::new()).frame());
    assert_eq!(xdp.run(&f).verdict, Counter::DropIpv6ExtHeader);
    let mut other = Segment::syn(Ip::V6, Vlan::None, Vec::new());
    other.dport = 22;
    let r = xdp.run(&with_ipv6_hop_by_hop(&other.frame()));
    assert_eq!((r.action, r.verdict), (XDP_PASS, Counter::PassOtherPort));
}

/// IPv6 extension header chains: up to four are walked (so a protected port behind them is
/// found and dropped, another port passed); a longer chain is dropped whatever its port, never
/// passed to the kernel.
#[test]
fn ipv6_extension_header_chains_never_bypass_the_shield() {
    let mut xdp = Xdp::new(&config());
    let mut other = Segment::syn(Ip::V6, Vlan::None, Vec::new());
    other.dport = 22;
    let ours = Segment::syn(Ip::V6, Vlan::None, Vec::new());
    for n in 1..=4 {
        let r = xdp.run(&with_ipv6_ext_headers(&ours.frame(), n));
        assert_eq!((r.action, r.verdict), (XDP_DROP, Counter::DropIpv6ExtHeader), "{n} headers");
        let r = xdp.run(&with_ipv6_ext_headers(&other.frame(), n));
        assert_eq!((r.action, r.verdict), (XDP_PASS, Counter::PassOtherPort), "{n} headers");
    }
    for n in 5..=8 {
        for seg in [&ours, &other] {
            let r = xdp.run(&with_ipv6_ext_headers(&seg.frame(), n));
            let want = (XDP_DROP, Counter::DropIpv6ExtHeaderChain);
            assert_eq!((r.action, r.verdict), want, "{n} headers, port {}", seg.dport);
        }
    }
}

/// Inserts `n` 8-byte destination-options headers between the IPv6 header (untagged) and TCP.
fn with_ipv6_ext_headers(f: &[u8], n: usize) -> Vec<u8> {
    let ip = 14;
    let mut out = f[..ip + 40].to_vec();
    for i in 0..n {
        let next = if i + 1 == n { 6 } else { 60 };
        out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    out.extend_from_slice(&f[ip + 40..]);
    out[ip + 6] = 60;
    let plen = u16::from_be_bytes([out[ip + 4], out[ip + 5]]) + u16::try_from(8 * n).unwrap();
    out[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
    out
}

fn set_ipv4_frag(f: &mut [u8], frag: u16) {
    let ip = 14;
    f[ip + 6..ip + 8].copy_from_slice(&frag.to_be_bytes());
    f[ip + 10] = 0;
    f[ip + 11] = 0;
    let c = tcp_common::checksum::sum_bytes(&f[ip..ip + 20]).checksum();
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
}

/// Inserts an 8-byte hop-by-hop header (a PadN option) between the IPv6 header and TCP.
fn with_ipv6_hop_by_hop(f: &[u8]) -> Vec<u8> {
    let ip = 14;
    let mut out = f[..ip + 40].to_vec();
    out.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&f[ip + 40..]);
    out[ip + 6] = 0;
    let plen = u16::from_be_bytes([out[ip + 4], out[ip + 5]]) + 8;
    out[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
    out
}

/// What is not ours goes to the kernel.
#[test]
fn other_traffic_is_passed() {
    let mut xdp = Xdp::new(&config());
    let mut other = Segment::syn(Ip::V4, Vlan::One, linux_syn_options());
    other.dport = 22;
    let r = xdp.run(&other.frame());
    assert_eq!((r.action, r.verdict), (XDP_PASS, Counter::PassOtherPort));
    assert_eq!(r.frame, other.frame(), "untouched");

    let mut udp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SHIELD_MAC)
        .ipv4(CLIENT_V4, SHIELD_V4, 64)
        .udp(CLIENT_PORT, PORT)
        .write(&mut udp, b"x")
        .unwrap();
    assert_eq!(xdp.run(&udp).verdict, Counter::PassNotTcp);

    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SHIELD_MAC)
        .ipv6(CLIENT_V6, SHIELD_V6, 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut icmp, b"ping")
        .unwrap();
    assert_eq!(xdp.run(&icmp).verdict, Counter::PassNotTcp);

    // ARP request.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT_V4);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&SHIELD_V4);
    let r = xdp.run(&arp);
    assert_eq!((r.action, r.verdict), (XDP_PASS, Counter::PassNotIp));
}
