//! The real Linux TCP stack against the XDP program in the lab: `TcpStream::connect` from the
//! client namespace completes its handshake with the SYN cookie alone (nothing listens in the
//! shield namespace), with and without timestamps, window scaling and SACK, and what the client
//! negotiated is what the cookie carried into the flow table. The client's view comes from
//! `TCP_INFO` (what `ss -ti` reads; the `ss` of iproute2 6.1 on this kernel prints `wscale` and
//! `mss` but not `ts` and `sack`, so `ss` is checked against `TCP_INFO` for those two).
#![cfg(feature = "root-tests")]
// Helpers unwrap as the tests do (allow-unwrap-in-tests covers only #[test] functions).
#![cfg_attr(feature = "root-tests", expect(clippy::unwrap_used, reason = "test helpers"))]

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use aya::maps::HashMap;
use tcp_common::{Config, Counter, FlowKey, FlowValue, PortSet, maps};
use tcp_user::lab::{Lab, LabOptions, SHIELD_IF, SHIELD_V4, SHIELD_V6};
use tcp_user::loader::{Shield, XdpModeChoice};
use tcp_user::secrets::{SecretKeeper, SecretsSchedule, monotonic_secs};

const PORT: u16 = 8080;

/// The client's TCP sysctls for one case.
#[derive(Clone, Copy, Debug)]
struct ClientTcp {
    timestamps: bool,
    window_scaling: bool,
    sack: bool,
}

const LINUX_DEFAULTS: ClientTcp = ClientTcp { timestamps: true, window_scaling: true, sack: true };

fn config() -> Config {
    let mut ports = PortSet::EMPTY;
    ports.insert(PORT);
    let keeper = SecretKeeper::new(SecretsSchedule::default(), monotonic_secs()).unwrap();
    Config { ports, secrets: keeper.secrets(), ..Config::EMPTY }
}

/// What the client's kernel negotiated.
#[derive(Debug, PartialEq, Eq)]
struct Negotiated {
    timestamps: bool,
    sack: bool,
    /// `wscale:SND,RCV` in `ss`: the shift the shield announced, and the client's own.
    wscale: Option<(u8, u8)>,
    /// The client's MSS for sending.
    mss: u16,
}

/// `TCP_INFO` of the client's socket (`tcpi_options`, the window scales, `tcpi_snd_mss`).
fn tcp_info(stream: &TcpStream) -> Negotiated {
    const TCPI_OPT_TIMESTAMPS: u8 = 1;
    const TCPI_OPT_SACK: u8 = 2;
    const TCPI_OPT_WSCALE: u8 = 4;
    // SAFETY: an all-zero tcp_info is valid; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>()).unwrap();
    // SAFETY: a valid socket, out-pointer and length.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    let o = info.tcpi_options;
    // tcpi_snd_wscale is the low 4 bits, tcpi_rcv_wscale the high 4 bits.
    let ws = info.tcpi_snd_rcv_wscale;
    Negotiated {
        timestamps: o & TCPI_OPT_TIMESTAMPS != 0,
        sack: o & TCPI_OPT_SACK != 0,
        wscale: (o & TCPI_OPT_WSCALE != 0).then_some((ws & 0xf, ws >> 4)),
        mss: u16::try_from(info.tcpi_snd_mss).unwrap(),
    }
}

/// `wscale` and `mss` from the `ss -ti` line of the connection.
fn parse_ss(info: &str) -> (Option<(u8, u8)>, u16) {
    let words: Vec<&str> = info.split_whitespace().collect();
    let wscale = words.iter().find_map(|w| w.strip_prefix("wscale:")).map(|v| {
        let (s, r) = v.split_once(',').unwrap();
        (s.parse().unwrap(), r.parse().unwrap())
    });
    let mss = words.iter().find_map(|w| w.strip_prefix("mss:")).unwrap().parse().unwrap();
    (wscale, mss)
}

/// Connects from the client to the shield at `shield_ip` with the client's TCP set up as
/// `client`, and checks both ends.
fn handshake(client: ClientTcp, shield_ip: IpAddr) {
    let lab =
        Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap();
    for (key, on) in [
        ("net.ipv4.tcp_timestamps", client.timestamps),
        ("net.ipv4.tcp_window_scaling", client.window_scaling),
        ("net.ipv4.tcp_sack", client.sack),
    ] {
        lab.client.sysctl(key, if on { "1" } else { "0" }).unwrap();
    }
    let cfg = config();
    let mut shield = lab
        .shield
        .enter(|| Shield::attach(SHIELD_IF, XdpModeChoice::Native, &cfg))
        .unwrap()
        .unwrap();
    let to = SocketAddr::new(shield_ip, PORT);
    let stream = lab
        .client
        .enter(move || TcpStream::connect_timeout(&to, Duration::from_secs(10)))
        .unwrap()
        .unwrap_or_else(|e| panic!("{client:?} to {to}: the handshake did not complete: {e}"));
    let local = stream.local_addr().unwrap();

    // The client's side.
    let ss =
        lab.client.run("ss", &["-tinH", "state", "established", "dst", &to.to_string()]).unwrap();
    let info = ss.lines().nth(1).unwrap_or_else(|| panic!("no connection in ss: {ss:?}"));
    let seen = tcp_info(&stream);
    assert_eq!(parse_ss(info), (seen.wscale, seen.mss), "ss and TCP_INFO agree: {info}");

    // The shield's side: the flow the third ACK's cookie made.
    let key = match (local.ip(), shield_ip) {
        (IpAddr::V4(c), IpAddr::V4(s)) => FlowKey::v4(c.octets(), s.octets(), local.port(), PORT),
        (IpAddr::V6(c), IpAddr::V6(s)) => FlowKey::v6(c.octets(), s.octets(), local.port(), PORT),
        _ => unreachable!("one family"),
    };
    let flows: HashMap<_, FlowKey, FlowValue> =
        HashMap::try_from(shield.ebpf_mut().map(maps::FLOWS).unwrap()).unwrap();
    let flow = flows.get(&key, 0).unwrap_or_else(|e| panic!("no flow for {key:?}: {e}"));

    let ts = client.timestamps;
    assert_eq!(seen.timestamps, ts, "{client:?}: {info}");
    assert_eq!(flow.flags & FlowValue::TIMESTAMPS != 0, ts, "{flow:?}");
    // Without timestamps the cookie cannot carry SACK or window scaling: neither is on.
    let sack = ts && client.sack;
    assert_eq!(seen.sack, sack, "{client:?}: {info}");
    assert_eq!(flow.flags & FlowValue::SACK != 0, sack, "{flow:?}");
    if ts && client.window_scaling {
        let (ours, theirs) = seen.wscale.unwrap_or_else(|| panic!("no wscale: {info}"));
        assert_eq!(ours, cfg.wscale, "{info}");
        assert_eq!(flow.local_wscale, cfg.wscale);
        assert_eq!(flow.peer_wscale, theirs, "{flow:?} {info}");
    } else {
        assert_eq!(seen.wscale, None, "{client:?}: {info}");
        assert_eq!(flow.peer_wscale, FlowValue::NO_WSCALE, "{flow:?}");
    }
    // The client sends at most our advertised MSS (less 12 bytes of timestamps); the cookie's
    // class is the client's MSS (the veth's 1500-byte MTU) within our clamp.
    let advertised = if shield_ip.is_ipv4() { cfg.mss_v4 } else { cfg.mss_v6 };
    assert_eq!(seen.mss, advertised - if ts { 12 } else { 0 }, "{info}");
    assert_eq!(flow.mss, if shield_ip.is_ipv4() { 1460 } else { 1440 });

    let c = shield.counters().unwrap();
    assert!(c.get(Counter::TxSynAck) >= 1, "{c:?}");
    // No AF_XDP socket in this test: the flow is recorded, the hand-off fails.
    assert!(c.get(Counter::RedirectNewFlow) + c.get(Counter::DropNoSocket) >= 1, "{c:?}");
    assert_eq!(c.get(Counter::DropAckInvalid), 0, "{c:?}");
    drop(stream);
}

#[test]
fn linux_defaults_ipv4() {
    handshake(LINUX_DEFAULTS, SHIELD_V4.into());
}

#[test]
fn linux_defaults_ipv6() {
    handshake(LINUX_DEFAULTS, SHIELD_V6.into());
}

#[test]
fn without_timestamps() {
    handshake(ClientTcp { timestamps: false, ..LINUX_DEFAULTS }, SHIELD_V4.into());
}

#[test]
fn without_window_scaling() {
    handshake(ClientTcp { window_scaling: false, ..LINUX_DEFAULTS }, SHIELD_V4.into());
}

#[test]
fn without_sack() {
    handshake(ClientTcp { sack: false, ..LINUX_DEFAULTS }, SHIELD_V4.into());
}

#[test]
fn nothing_but_mss() {
    handshake(
        ClientTcp { timestamps: false, window_scaling: false, sack: false },
        SHIELD_V6.into(),
    );
}
