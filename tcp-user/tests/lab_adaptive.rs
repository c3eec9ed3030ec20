//! Adaptive mode with the real Linux stack as the client (issue 11): stateful handshakes in
//! peace, with the exact options and SYN-ACK retransmission; cookies from XDP under a flood,
//! and back once it ends; legitimate clients served across both switches.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use common::{Synshield, lab, metric, wait_metric_at_least};
use tcp_user::lab::{Lab, SHIELD_V4};

const PORT: u16 = 7;

fn serve(lab: &Lab, mode: &str, extra: &[&str]) -> Synshield {
    let mut args = common::serve_args("7", &["--mode", mode]);
    args.extend(extra);
    Synshield::start(&lab.shield, &args)
}

/// A client socket (in the calling thread's namespace) that offers `mss` in its SYN.
fn connect_with_mss(to: SocketAddr, mss: libc::c_int) -> TcpStream {
    let SocketAddr::V4(v4) = to else { panic!("IPv4 only") };
    // SAFETY: socket, setsockopt and connect on a fresh descriptor with valid arguments.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        let size = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap();
        let r = libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            std::ptr::from_ref(&mss).cast(),
            size,
        );
        assert_eq!(r, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap(),
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
            sin_zero: [0; 8],
        };
        let size = libc::socklen_t::try_from(size_of::<libc::sockaddr_in>()).unwrap();
        let r = libc::connect(fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), size);
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        let s = TcpStream::from(fd);
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }
}

/// What the client's kernel sees of the connection (`TCP_INFO`).
struct Info {
    options: u8,
    /// The shield's window scale (as the client applies it to what it receives).
    shield_wscale: u8,
    /// The largest segment the client received: the shield's MSS less the options it sends.
    rcv_mss: u32,
}

fn tcp_info(s: &TcpStream) -> Info {
    // SAFETY: an all-zero tcp_info is valid; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(size_of::<libc::tcp_info>()).unwrap();
    // SAFETY: a valid socket, out-pointer and length.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    assert_eq!(r, 0);
    Info {
        options: info.tcpi_options,
        shield_wscale: info.tcpi_snd_rcv_wscale & 0xf,
        rcv_mss: info.tcpi_rcv_mss,
    }
}

/// Connects offering MSS 1400, echoes 64 KiB, and returns what the client's kernel saw.
fn echo_with_mss_1400(lab: &Lab) -> Info {
    let to = SocketAddr::from((SHIELD_V4, PORT));
    lab.client
        .enter(move || {
            let mut s = connect_with_mss(to, 1400);
            let data: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
            s.write_all(&data).unwrap();
            let mut back = vec![0u8; data.len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, data);
            tcp_info(&s)
        })
        .unwrap()
}

#[test]
fn in_peace_the_handshake_is_stateful_and_keeps_the_exact_options() {
    const TIMESTAMPS: u8 = 1;
    const SACK: u8 = 2;
    const WSCALE: u8 = 4;
    let lab = lab();
    let s = serve(&lab, "adaptive", &[]);
    let info = echo_with_mss_1400(&lab);
    // The shield answered the SYN itself, not with a cookie, and sends segments of exactly
    // the MSS the client offered: 1400 less the 12 bytes of the timestamps option.
    assert_eq!(wait_metric_at_least(&lab, "synshield_half_open_opened_total", 1), 1);
    assert_eq!(metric(&lab, "synshield_xdp_frames_total{verdict=\"redirect_new_flow\"}"), 0);
    assert_eq!(info.rcv_mss, 1388, "the exact MSS, not a cookie's class");
    assert_eq!(info.options & (TIMESTAMPS | SACK | WSCALE), TIMESTAMPS | SACK | WSCALE);
    assert_eq!(info.shield_wscale, 7, "our window scale, as offered");
    drop(s);
    // The same client against cookies: the MSS falls to the cookie's class of 1300.
    let _cookies = serve(&lab, "cookies", &[]);
    assert_eq!(echo_with_mss_1400(&lab).rcv_mss, 1288, "a cookie's MSS class");
}

#[test]
fn a_lost_syn_ack_is_retransmitted_and_the_connection_completes() {
    let lab = lab();
    let _s = serve(&lab, "adaptive", &[]);
    // The client's kernel drops the first SYN-ACK from the shield, and only the first.
    let nft = |args: &[&str]| lab.client.run("nft", args).unwrap();
    nft(&["add", "table", "inet", "lossy"]);
    nft(&["add", "set", "inet", "lossy", "seen", "{ type ipv4_addr; flags dynamic; }"]);
    nft(&["add", "chain", "inet", "lossy", "in", "{ type filter hook input priority 0; }"]);
    let synack = ["tcp", "sport", "7", "tcp", "flags", "&", "(syn|ack)", "==", "syn|ack"];
    let mut seen = vec!["add", "rule", "inet", "lossy", "in", "ip", "saddr", "@seen"];
    seen.extend(synack);
    seen.push("accept");
    nft(&seen);
    let mut first = vec!["add", "rule", "inet", "lossy", "in"];
    first.extend(synack);
    first.extend(["add", "@seen", "{ ip saddr }", "counter", "drop"]);
    nft(&first);

    let to = SocketAddr::from((SHIELD_V4, PORT));
    let started = Instant::now();
    let mut c = lab
        .client
        .enter(move || TcpStream::connect_timeout(&to, Duration::from_secs(10)))
        .unwrap()
        .expect("connected after the SYN-ACK came again");
    let took = started.elapsed();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"again").unwrap();
    let mut b = [0u8; 5];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"again");
    let rules = nft(&["list", "chain", "inet", "lossy", "in"]);
    assert!(rules.contains("counter packets 1 "), "exactly one SYN-ACK dropped: {rules}");
    assert_eq!(
        wait_metric_at_least(&lab, "synshield_half_open_opened_total", 1),
        1,
        "one stateful handshake"
    );
    // Linux's schedule: the SYN-ACK (or, racing it, the client's SYN) comes again after 1 s.
    println!("a lost SYN-ACK cost the connection {took:?}");
}

#[test]
fn under_a_flood_syns_get_cookies_and_stateful_handshakes_come_back_after_it() {
    let lab = lab();
    let _s = serve(&lab, "adaptive", &["--syn-threshold", "2000"]);
    let to = SocketAddr::from((SHIELD_V4, PORT));
    // A bounded flood: 4 s of hping3 at full speed from random sources.
    let mut flood = lab
        .client
        .command("timeout")
        .args(["4", "hping3", "-S", "-p", "7", "--flood", "--rand-source", "-q"])
        .arg(SHIELD_V4.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let switched =
        wait_metric_at_least(&lab, "synshield_syn_defense_switches_total{to=\"cookies\"}", 1);
    // Real clients keep connecting while the flood lasts, and after it: every one is served.
    let mut served = 0;
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        let echoed = lab
            .client
            .enter(move || -> std::io::Result<bool> {
                let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
                c.set_read_timeout(Some(Duration::from_secs(5)))?;
                c.write_all(b"x")?;
                let mut b = [0u8; 1];
                c.read_exact(&mut b)?;
                Ok(b == *b"x")
            })
            .unwrap();
        assert!(echoed.unwrap(), "client {served} during or after the flood");
        served += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = flood.wait();
    // A CPU judges its SYN rate when a SYN arrives on it (on a veth, the sender's CPU): one
    // connection from every CPU, so the one the flood came through sees calm again.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    for cpu in 0..cpus {
        lab.client
            .enter(move || {
                // SAFETY: a CPU set with one CPU, for this thread only.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
                }
                drop(TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap());
            })
            .unwrap();
    }
    let back =
        wait_metric_at_least(&lab, "synshield_syn_defense_switches_total{to=\"stateful\"}", 1);
    assert!(
        metric(&lab, "synshield_xdp_frames_total{verdict=\"tx_synack\"}") > 1000,
        "cookies answered the flood"
    );
    // After the flood, a new handshake is stateful again.
    let before = metric(&lab, "synshield_half_open_opened_total");
    let c =
        lab.client.enter(move || TcpStream::connect_timeout(&to, Duration::from_secs(5))).unwrap();
    drop(c.unwrap());
    wait_metric_at_least(&lab, "synshield_half_open_opened_total", before + 1);
    println!("{served} clients served; switches to cookies {switched}, back to stateful {back}");
}
