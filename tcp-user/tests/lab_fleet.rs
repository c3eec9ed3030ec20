//! A fleet in the lab: shields that share one key file behind a Linux ECMP router accept
//! each other's cookies (issue 13).
//!
//! ```text
//!   client ns              router ns                                 shield ns i
//!   c0 198.18.100.1/24 ─── r-c 198.18.100.254/24
//!                          r-s<i> 198.18.<101+i>.254/24 [XDP_PASS] ─── shield0 198.18.<101+i>.1/24
//!                          198.18.200.1/32: ECMP over the shields         + 198.18.200.1/32 (service)
//!                          marked ecmp, L4 hash (fib_multipath_hash_policy=1)  synshield --key-file
//! ```
//!
//! Kernel TCP clients spread over the ECMP group by their ports (case a). For the cases where a
//! handshake must change hosts half-way, a raw-socket client in the client namespace sends the
//! SYN and the third ACK itself, and the test re-points the router's route to the service
//! address at one shield or another in between (cases b to e). Every namespace is removed by
//! its guard, also when a test fails; every wait is bounded.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{EVENT_DEADLINE, Synshield, lines, wait_for_line};
use etherparse::{Ipv4HeaderSlice, TcpHeader, TcpHeaderSlice, TcpOptionElement};
use tcp_user::lab::{XdpAction, XdpAttachMode, attach_xdp_action};
use tcp_user::secrets::WallClock;

/// The address every shield holds and the router balances.
const SERVICE: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
const PORT: u16 = 7;
const METRICS: &str = "127.0.0.1:9100";
/// The key rotation period of the fleet under test: short, so that a third of it (case d)
/// and the cookie lifetime (half of it at least) are seconds, not minutes.
const ROTATION_SECS: i64 = 60;
/// Source ports of the raw client: below Linux's ephemeral range, so the client kernel's own
/// connections (case a) never collide with them.
const RAW_PORTS: &str = "20000-20999";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One network namespace, deleted when dropped.
struct Ns(String);

impl Ns {
    fn add(name: String) -> Ns {
        let status = Command::new("ip").args(["netns", "add", &name]).status().unwrap();
        assert!(status.success(), "ip netns add {name}");
        Ns(name)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// Runs a command in the namespace; panics with its stderr if it fails.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} in {}: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread inside the namespace (sockets made there stay there).
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(format!("/run/netns/{}", self.0)).unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on a valid namespace fd; it changes only this new thread.
                assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).stderr(Stdio::null()).status();
    }
}

/// A directory for key files, removed when dropped.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> KeyDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("synshield-fleet-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        KeyDir(dir)
    }

    /// A new key file from `synshield keygen`.
    fn keygen(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        let out = Command::new(env!("CARGO_BIN_EXE_synshield"))
            .args(["keygen", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
        path
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to run one shield.
struct ShieldSpec<'a> {
    key_file: &'a Path,
    /// Seconds the shield's wall clock is ahead (`--test-clock-offset`).
    clock_offset: i64,
    /// Whether the router's ECMP route includes it.
    ecmp: bool,
}

/// One shield host: its namespace and its synshield.
struct Shield {
    // Declared first: the process is killed before its namespace goes.
    synshield: Option<Synshield>,
    ns: Ns,
    args: Vec<String>,
}

impl Shield {
    fn start(&mut self) {
        assert!(self.synshield.is_none());
        self.synshield = Some(Synshield::spawn(
            self.ns
                .command(env!("CARGO_BIN_EXE_synshield"))
                .args(&self.args)
                .env("RUST_LOG", "info"),
        ));
    }

    /// SIGTERM, and wait (bounded) until it exited.
    fn stop(&mut self) -> Synshield {
        let mut s = self.synshield.take().unwrap();
        s.terminate();
        let deadline = Instant::now() + EVENT_DEADLINE;
        while s.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "synshield did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn metrics(&self) -> String {
        self.ns.enter(|| {
            let mut s = TcpStream::connect(METRICS).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
    }

    fn metric(&self, sample: &str) -> u64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
    }

    /// Waits (bounded) until `sample` reaches `value`.
    fn wait_metric(&self, sample: &str, value: u64) {
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            let v = self.metric(sample);
            if v == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {sample} stayed {v}, expected {value}",
                self.ns.0
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const TX_SYNACK: &str = "synshield_xdp_frames_total{verdict=\"tx_synack\"}";
const NEW_FLOW: &str = "synshield_xdp_frames_total{verdict=\"redirect_new_flow\"}";
const ACK_INVALID: &str = "synshield_xdp_frames_total{verdict=\"drop_ack_invalid\"}";
const OPENED: &str = "synshield_connections_opened_total";

/// The router, the client and the shields.
struct Fleet {
    // Drop order: the shields (processes, then namespaces), the router's XDP links, the rest.
    shields: Vec<Shield>,
    /// The router's XDP_PASS programs, detached when these links close.
    router_links: Vec<OwnedFd>,
    router: Ns,
    client: Ns,
}

fn shield_net(i: usize) -> (String, String) {
    (format!("198.18.{}.1", 101 + i), format!("198.18.{}.254", 101 + i))
}

impl Fleet {
    fn new(specs: &[ShieldSpec]) -> Fleet {
        let prefix =
            format!("synfleet-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let client = Ns::add(format!("{prefix}-c"));
        let router = Ns::add(format!("{prefix}-r"));
        let mut fleet = Fleet { shields: Vec::new(), router_links: Vec::new(), router, client };
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().unwrap();
            assert!(status.success(), "ip {args:?}");
        };
        let (c, r) = (&fleet.client, &fleet.router);
        ip(&[
            "link", "add", "c0", "netns", &c.0, "type", "veth", "peer", "name", "r-c", "netns",
            &r.0,
        ]);
        c.run("ip", &["addr", "add", "198.18.100.1/24", "dev", "c0"]);
        r.run("ip", &["addr", "add", "198.18.100.254/24", "dev", "r-c"]);
        for (ns, ifname) in [(c, "c0"), (r, "r-c")] {
            ns.run("ip", &["link", "set", "dev", ifname, "up"]);
            ns.run("ip", &["link", "set", "dev", "lo", "up"]);
            ns.run("ethtool", &["-K", ifname, "tx", "off"]);
        }
        c.run("ip", &["route", "add", "default", "via", "198.18.100.254"]);
        r.run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        r.run("sysctl", &["-q", "-w", "net.ipv4.fib_multipath_hash_policy=1"]);
        // The raw client's handshakes have no socket in the client's kernel: keep it from
        // answering them with RST.
        c.run("nft", &["add table inet fleet"]);
        c.run("nft", &["add chain inet fleet out { type filter hook output priority 0 ; }"]);
        c.run(
            "nft",
            &[&format!("add rule inet fleet out tcp sport {RAW_PORTS} tcp flags rst drop")],
        );

        let mut nexthops = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let ns = fleet.add_shield_host(&prefix, i);
            if spec.ecmp {
                let (addr, _) = shield_net(i);
                nexthops.extend([
                    "nexthop".into(),
                    "via".into(),
                    addr,
                    "dev".into(),
                    format!("r-s{i}"),
                ]);
            }
            fleet.shields.push(Shield { synshield: None, ns, args: serve_args(spec) });
        }
        if !nexthops.is_empty() {
            let mut args = vec!["route".to_owned(), "add".to_owned(), format!("{SERVICE}/32")];
            args.extend(nexthops);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            fleet.router.run("ip", &args);
        }
        for s in &mut fleet.shields {
            s.start();
        }
        fleet
    }

    /// The namespace of shield `i`, its veth pair to the router and its addresses (the
    /// service address too), the router's XDP_PASS on its end.
    fn add_shield_host(&mut self, prefix: &str, i: usize) -> Ns {
        let ns = Ns::add(format!("{prefix}-s{i}"));
        let peer = format!("r-s{i}");
        let (addr, gw) = shield_net(i);
        let r = &self.router;
        let status = Command::new("ip")
            .args(["link", "add", "shield0", "netns", &ns.0, "type", "veth"])
            .args(["peer", "name", &peer, "netns", &r.0])
            .status()
            .unwrap();
        assert!(status.success(), "veth for shield {i}");
        ns.run("ip", &["addr", "add", &format!("{addr}/24"), "dev", "shield0"]);
        ns.run("ip", &["addr", "add", &format!("{SERVICE}/32"), "dev", "shield0"]);
        r.run("ip", &["addr", "add", &format!("{gw}/24"), "dev", &peer]);
        for (n, ifname) in [(&ns, "shield0"), (r, peer.as_str())] {
            n.run("ip", &["link", "set", "dev", ifname, "up"]);
            n.run("ip", &["link", "set", "dev", "lo", "up"]);
            n.run("ethtool", &["-K", ifname, "tx", "off"]);
        }
        ns.run("ip", &["route", "add", "default", "via", &gw]);
        // Native XDP_TX on a veth is delivered only if the peer runs an XDP program.
        let link =
            r.enter(|| attach_xdp_action(&peer, XdpAction::Pass, XdpAttachMode::Native)).unwrap();
        self.router_links.push(link);
        ns
    }

    /// Points the router's route to the service address at shield `i` alone (a next-hop
    /// change, as when an ECMP member goes away or comes back).
    fn route_to(&self, i: usize) {
        let (addr, _) = shield_net(i);
        let dev = format!("r-s{i}");
        self.router
            .run("ip", &["route", "replace", &format!("{SERVICE}/32"), "via", &addr, "dev", &dev]);
    }

    /// A kernel TCP connection from the client to the service.
    fn connect(&self) -> TcpStream {
        connect(&self.client)
    }
}

/// `synshield serve` for one shield: the echo on port 7, metrics, the fleet's key file and
/// rotation period, and the spec's clock offset.
fn serve_args(spec: &ShieldSpec) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--iface",
        "shield0",
        "--port",
        "7",
        "--app",
        "echo",
        "--xdp-mode",
        "native",
        "--quiet",
        "--grace",
        "1",
        "--metrics",
        METRICS,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(format!("--key-rotation={ROTATION_SECS}"));
    args.push(format!("--key-file={}", spec.key_file.display()));
    if spec.clock_offset != 0 {
        args.push(format!("--test-clock-offset={}", spec.clock_offset));
    }
    args
}

/// A kernel TCP connection from the client namespace to the service.
fn connect(client: &Ns) -> TcpStream {
    {
        let s = client
            .enter(|| {
                TcpStream::connect_timeout(
                    &SocketAddr::from((SERVICE, PORT)),
                    Duration::from_secs(10),
                )
            })
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }
}

impl Fleet {
    fn raw_client(&self, sport: u16) -> RawClient {
        let fd = self.client.enter(|| {
            // SAFETY: plain socket call; the fd is owned at once.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            // SAFETY: the kernel just gave us this fd.
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
        // SAFETY: setsockopt on our fd with a valid timeval.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&timeout).cast(),
                u32::try_from(size_of::<libc::timeval>()).unwrap(),
            )
        };
        assert_eq!(r, 0);
        RawClient { fd, sport, isn: 0x1357_9bdf ^ u32::from(sport) }
    }
}

/// A TCP segment the raw client received from the service.
#[derive(Debug)]
struct Segment {
    syn: bool,
    ack: bool,
    rst: bool,
    seq: u32,
    ack_no: u32,
    payload: Vec<u8>,
}

/// A TCP client on a raw socket: it sends the handshake's segments itself, so the test
/// chooses where each goes.
struct RawClient {
    fd: OwnedFd,
    sport: u16,
    isn: u32,
}

impl RawClient {
    fn send(&self, build: impl FnOnce(&mut TcpHeader), payload: &[u8]) {
        let mut h = TcpHeader::new(self.sport, PORT, self.isn, 64240);
        build(&mut h);
        h.checksum = h.calc_checksum_ipv4_raw(CLIENT.octets(), SERVICE.octets(), payload).unwrap();
        let mut bytes = h.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        let to = libc::sockaddr_in {
            sin_family: u16::try_from(libc::AF_INET).unwrap(),
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(SERVICE.octets()) },
            sin_zero: [0; 8],
        };
        // SAFETY: sendto on our fd with a valid buffer and sockaddr_in.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                std::ptr::from_ref(&to).cast(),
                u32::try_from(size_of::<libc::sockaddr_in>()).unwrap(),
            )
        };
        assert_eq!(
            usize::try_from(n).ok(),
            Some(bytes.len()),
            "{}",
            std::io::Error::last_os_error()
        );
    }

    /// The next segment of this connection from the service matching `pred` (bounded).
    fn receive(&self, what: &str, pred: impl Fn(&Segment) -> bool) -> Segment {
        let deadline = Instant::now() + EVENT_DEADLINE;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            // SAFETY: recv into our buffer of its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let Ok(n) = usize::try_from(n) else { continue };
            let Ok(ip) = Ipv4HeaderSlice::from_slice(&buf[..n]) else { continue };
            let l4 = &buf[usize::from(ip.ihl()) * 4..n];
            let Ok(tcp) = TcpHeaderSlice::from_slice(l4) else { continue };
            if ip.source() != SERVICE.octets()
                || tcp.source_port() != PORT
                || tcp.destination_port() != self.sport
            {
                continue;
            }
            let s = Segment {
                syn: tcp.syn(),
                ack: tcp.ack(),
                rst: tcp.rst(),
                seq: tcp.sequence_number(),
                ack_no: tcp.acknowledgment_number(),
                payload: l4[tcp.slice().len()..].to_vec(),
            };
            if pred(&s) {
                return s;
            }
        }
        panic!("no {what} from the service within {EVENT_DEADLINE:?}");
    }

    /// Sends the SYN, returns the cookie of the SYN-ACK that answers it.
    fn syn(&self) -> u32 {
        self.send(
            |h| {
                h.syn = true;
                h.set_options(&[TcpOptionElement::MaximumSegmentSize(1460)]).unwrap();
            },
            &[],
        );
        let synack = self.receive("SYN-ACK", |s| s.syn);
        assert!(synack.ack && synack.ack_no == self.isn.wrapping_add(1), "{synack:?}");
        synack.seq
    }

    /// Sends the third ACK for `cookie`.
    fn third_ack(&self, cookie: u32) {
        self.send(
            |h| {
                h.ack = true;
                h.sequence_number = self.isn.wrapping_add(1);
                h.acknowledgment_number = cookie.wrapping_add(1);
            },
            &[],
        );
    }

    /// Sends `data` on the connection and waits for the echo.
    fn echo(&self, cookie: u32, data: &[u8]) {
        self.send(
            |h| {
                h.ack = true;
                h.psh = true;
                h.sequence_number = self.isn.wrapping_add(1);
                h.acknowledgment_number = cookie.wrapping_add(1);
            },
            data,
        );
        let back = self.receive("echo", |s| !s.payload.is_empty() || s.rst);
        assert!(!back.rst, "reset instead of the echo: {back:?}");
        assert_eq!((back.seq, back.payload.as_slice()), (cookie.wrapping_add(1), data));
        // Acknowledge it, so the server has nothing to retransmit. (No RST: the client's
        // filter drops RSTs from these ports, its kernel's as ours.)
        let len = u32::try_from(data.len()).unwrap();
        self.send(
            |h| {
                h.ack = true;
                h.sequence_number = self.isn.wrapping_add(1).wrapping_add(len);
                h.acknowledgment_number = cookie.wrapping_add(1).wrapping_add(len);
            },
            &[],
        );
    }
}

/// (a) 500 kernel connections through the ECMP router: every one is served, and each of the
/// two hosts serves some.
#[test]
fn ecmp_spreads_500_connections_over_two_hosts_and_all_are_served() {
    let keys = KeyDir::new();
    let key = keys.keygen("fleet.key");
    let spec = |ecmp| ShieldSpec { key_file: &key, clock_offset: 0, ecmp };
    let fleet = Fleet::new(&[spec(true), spec(true)]);
    let client = &fleet.client;
    std::thread::scope(|s| {
        for t in 0..4u32 {
            s.spawn(move || {
                for i in 0..125u32 {
                    let mut c = connect(client);
                    let msg = format!("connection {t}-{i}\n");
                    c.write_all(msg.as_bytes()).unwrap();
                    c.shutdown(Shutdown::Write).unwrap();
                    let mut back = String::new();
                    c.read_to_string(&mut back).unwrap();
                    assert_eq!(back, msg);
                }
            });
        }
    });
    // Shards publish their counters a few times a second: wait for the sum.
    let deadline = Instant::now() + EVENT_DEADLINE;
    let (a, b) = loop {
        let (a, b) = (fleet.shields[0].metric(OPENED), fleet.shields[1].metric(OPENED));
        if a + b == 500 || Instant::now() > deadline {
            break (a, b);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(a + b, 500, "host A served {a}, host B {b}");
    assert!(a > 0 && b > 0, "both hosts serve some: A {a}, B {b}");
}

/// (b) A SYN answered by host A whose third ACK reaches host B (the route changed in
/// between) is accepted by B, and the connection then works on B; (c) a host with another
/// key file refuses that ACK.
#[test]
fn a_third_ack_moved_to_another_host_is_accepted_there_and_refused_by_another_key() {
    let keys = KeyDir::new();
    let (key, other) = (keys.keygen("fleet.key"), keys.keygen("other.key"));
    let fleet = Fleet::new(&[
        ShieldSpec { key_file: &key, clock_offset: 0, ecmp: true },
        ShieldSpec { key_file: &key, clock_offset: 0, ecmp: true },
        ShieldSpec { key_file: &other, clock_offset: 0, ecmp: false },
    ]);
    let (a, b, c) = (&fleet.shields[0], &fleet.shields[1], &fleet.shields[2]);
    let client = fleet.raw_client(20_001);
    fleet.route_to(0);
    let cookie = client.syn();
    assert_eq!((a.metric(TX_SYNACK), b.metric(TX_SYNACK)), (1, 0), "host A answered the SYN");

    fleet.route_to(2);
    client.third_ack(cookie);
    c.wait_metric(ACK_INVALID, 1);
    assert_eq!(c.metric(NEW_FLOW), 0, "(c) another key file refuses the cookie");

    fleet.route_to(1);
    client.third_ack(cookie);
    b.wait_metric(NEW_FLOW, 1);
    b.wait_metric(OPENED, 1);
    client.echo(cookie, b"moved to host B\n");
    assert_eq!(a.metric(NEW_FLOW), 0, "host A never saw the ACK");
}

/// (d) A host whose wall clock is ahead by a third of the rotation period accepts the third
/// ACK of a handshake another host answered, and the other host accepts its cookies.
#[test]
fn a_host_whose_clock_is_a_third_of_a_rotation_ahead_still_accepts() {
    let keys = KeyDir::new();
    let key = keys.keygen("fleet.key");
    let fleet = Fleet::new(&[
        ShieldSpec { key_file: &key, clock_offset: 0, ecmp: false },
        ShieldSpec { key_file: &key, clock_offset: ROTATION_SECS / 3, ecmp: false },
    ]);
    let (on_time, ahead) = (&fleet.shields[0], &fleet.shields[1]);
    for (n, (from, to)) in [(0usize, 1usize), (1, 0)].into_iter().enumerate() {
        // Where the host ahead is already in the next half-epoch (cookie counter) and the
        // other is not, a second from either edge for the keepers' once-a-second updates:
        // the checker must take the counter from the cookie's bits, not from its own.
        let half = ROTATION_SECS.unsigned_abs() / 2;
        let offset = ROTATION_SECS.unsigned_abs() / 3;
        let deadline = Instant::now() + Duration::from_secs(half + 1);
        while !(half - offset + 2..half - 2).contains(&(WallClock::default().unix_secs() % half)) {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(100));
        }
        let client = fleet.raw_client(20_100 + u16::try_from(n).unwrap());
        fleet.route_to(from);
        let cookie = client.syn();
        fleet.route_to(to);
        client.third_ack(cookie);
        let checker = &fleet.shields[to];
        checker.wait_metric(NEW_FLOW, 1);
        client.echo(cookie, format!("made on {from}, checked on {to}\n").as_bytes());
    }
    assert_eq!((on_time.metric(ACK_INVALID), ahead.metric(ACK_INVALID)), (0, 0));
}

/// (e) A restarted host accepts the third ACK of a SYN it answered before the restart.
#[test]
fn a_restarted_host_accepts_cookies_it_made_before_the_restart() {
    let keys = KeyDir::new();
    let key = keys.keygen("fleet.key");
    let mut fleet = Fleet::new(&[ShieldSpec { key_file: &key, clock_offset: 0, ecmp: true }]);
    let client = fleet.raw_client(20_200);
    let cookie = client.syn();
    let before = fleet.shields[0].stop();
    drop(before);
    fleet.shields[0].start();
    client.third_ack(cookie);
    fleet.shields[0].wait_metric(NEW_FLOW, 1);
    client.echo(cookie, b"after the restart\n");
}

/// The hex of the secret in a key file.
fn secret_hex(key_file: &Path) -> String {
    let text = std::fs::read_to_string(key_file).unwrap();
    let line = text.lines().find(|l| l.starts_with("synshield-fleet-v1 ")).unwrap();
    line.split(' ').nth(1).unwrap().to_owned()
}

/// Ways a key could be printed: the secret's hex, and each cookie key near now as decimal
/// and hex words.
fn key_material(key_file: &Path) -> Vec<String> {
    let secret = tcp_user::keyfile::read(key_file).unwrap();
    let epoch = WallClock::default().unix_secs() / ROTATION_SECS.unsigned_abs();
    let mut needles = vec![secret_hex(key_file)];
    for e in epoch - 2..=epoch + 2 {
        let k = secret.cookie_key(ROTATION_SECS.unsigned_abs(), e);
        for w in [k.k0, k.k1] {
            needles.extend([w.to_string(), format!("{w:x}"), format!("{w:016x}")]);
        }
    }
    needles
}

/// Nothing synshield prints or serves holds key material: not its logs (at trace level),
/// status, metrics, nor its sentences about a bad key file, through a SIGHUP with a new
/// secret and one with a file it must refuse; a loose key file is refused at start in one
/// sentence.
#[test]
fn no_key_material_in_logs_metrics_or_errors() {
    use std::os::unix::fs::PermissionsExt as _;
    let keys = KeyDir::new();
    let key = keys.keygen("fleet.key");
    let mut needles = key_material(&key);
    let mut fleet = Fleet::new(&[ShieldSpec { key_file: &key, clock_offset: 0, ecmp: true }]);
    // Run it again at trace level, without --quiet.
    drop(fleet.shields[0].stop());
    let shield = &mut fleet.shields[0];
    shield.args.retain(|a| a != "--quiet");
    let mut child = shield
        .ns
        .command(env!("CARGO_BIN_EXE_synshield"))
        .args(&shield.args)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) =
        (lines(child.stdout.take().unwrap()), lines(child.stderr.take().unwrap()));
    shield.synshield = Some(Synshield { child, stdout, stderr });
    let s = shield.synshield.as_ref().unwrap();
    wait_for_line(&s.stdout, |l| l.starts_with("synshield: attached")).unwrap();
    let mut c = fleet.connect();
    c.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    c.read_exact(&mut one).unwrap();
    drop(c);
    let metrics = fleet.shields[0].metrics();

    // A new secret, then SIGHUP: taken (from the next epoch), and said so without it.
    let out = Command::new(env!("CARGO_BIN_EXE_synshield"))
        .args(["keygen", "--force", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    needles.extend(key_material(&key));
    let pid = i32::try_from(fleet.shields[0].synshield.as_ref().unwrap().child.id()).unwrap();
    let hup = || {
        // SAFETY: signalling a child we started and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    };
    let s = fleet.shields[0].synshield.as_ref().unwrap();
    let mut logs = Vec::new();
    hup();
    match wait_for_line(&s.stderr, |l| l.contains("a new fleet secret")) {
        Ok(l) => logs.push(l),
        Err(seen) => panic!("no reload line; stderr {seen:?}"),
    }
    // A file it must refuse: the secret in use stays, the process too.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    hup();
    match wait_for_line(&s.stderr, |l| l.contains("open to its group or others")) {
        Ok(l) => logs.push(l),
        Err(seen) => panic!("no refusal line; stderr {seen:?}"),
    }
    let s = fleet.shields[0].stop();
    logs.extend(s.stdout.try_iter());
    let deadline = Instant::now() + EVENT_DEADLINE;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match s.stderr.recv_timeout(left) {
            Ok(l) => logs.push(l),
            Err(_) => break,
        }
    }
    assert!(
        logs.iter().any(|l| l.contains("status:")
            || l.contains("TRACE")
            || l.contains("fleet key schedule")),
        "{logs:?}"
    );

    // At start, a loose file is refused in one sentence.
    let out = fleet.shields[0]
        .ns
        .command(env!("CARGO_BIN_EXE_synshield"))
        .args(&fleet.shields[0].args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let refusal = String::from_utf8_lossy(&out.stderr).into_owned();
    let refusal_lines: Vec<&str> =
        refusal.lines().filter(|l| l.starts_with("synshield:")).collect();
    assert_eq!(refusal_lines.len(), 1, "{refusal}");
    assert!(refusal_lines[0].contains("chmod 600"), "{refusal}");
    logs.push(refusal);

    for needle in &needles {
        for text in logs.iter().chain(std::iter::once(&metrics)) {
            assert!(!text.contains(needle.as_str()), "key material {needle} in: {text}");
        }
    }
}
