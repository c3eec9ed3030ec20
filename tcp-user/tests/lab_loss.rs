//! Against the real Linux stack under loss: the kernel's TCP in the client namespace echoes
//! 64 MiB through synshield (XDP SYN cookies, AF_XDP, the engine, the echo application)
//! with 1 %, 5 % and 10 % of the TCP frames on the client's veth dropped at random in both
//! directions (`tcp_user::impair`; this kernel has no netem), and, over IPv4 and IPv6, with
//! 1 % and 5 % loss and 1 % of the frames reordered (held back 3 ms) in both directions
//! (issue 10). Every byte comes back (SHA-256), and no frame either way is longer than the
//! MTU. The goodput is printed; `cargo xtask bench` (section "loss") puts it next to
//! Linux-to-Linux under the same loss, with release builds.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Synshield;
use tcp_user::impair::{Impaired, Impairment, offloads_off};
use tcp_user::lab::{CLIENT_IF, Lab, LabOptions, SHIELD_IF, SHIELD_V4, SHIELD_V6};

/// synshield's echo port.
const PORT: u16 = 7;
const LEN: usize = 64 << 20;
/// Upper bound for one 64 MiB echo, far above what it takes (seconds): a stall fails the
/// test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_mins(1);

/// Echoes `data` through a fresh connection from the client namespace to `to`, checks
/// what comes back by SHA-256, and returns how long it took.
fn echo(lab: &Lab, to: SocketAddr, data: Vec<u8>) -> Duration {
    let stream = lab
        .client
        .enter(move || TcpStream::connect_timeout(&to, Duration::from_secs(10)))
        .unwrap()
        .unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let start = Instant::now();
    common::echo_checked(stream, data);
    start.elapsed()
}

#[expect(clippy::cast_precision_loss, reason = "a rate for people")]
fn mb_per_s(len: usize, took: Duration) -> f64 {
    len as f64 / 1e6 / took.as_secs_f64()
}

/// A lab with synshield's echo on the shield side, offloads off on both ends.
fn served() -> (Lab, Synshield) {
    let lab =
        Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap();
    // One frame per packet (see `impair`); synshield's own frames leave through AF_XDP.
    offloads_off(&lab.shield, SHIELD_IF).unwrap();
    let port = PORT.to_string();
    let synshield = Synshield::start(
        &lab.shield,
        &["serve", "--iface", SHIELD_IF, "--port", &port, "--xdp-mode", "native", "--quiet"],
    );
    (lab, synshield)
}

/// Echoes 64 MiB to `to` with `imp` on the client's veth both ways; checks and prints.
fn echo_impaired(lab: &Lab, to: SocketAddr, imp: Impairment) {
    let impaired = Impaired::attach(&lab.client, CLIENT_IF, imp, imp).unwrap();
    let data = common::pattern(LEN, u64::from(imp.loss_permille) + u64::from(imp.reorder_permille));
    let took = echo(lab, to, data);
    let counts = impaired.counts().unwrap();
    eprintln!(
        "{:.1} % loss, {:.1} % reordered, to {to}: 64 MiB echoed through synshield in {:.2} s \
         ({:.1} MB/s each way); {counts:?}",
        f64::from(imp.loss_permille) / 10.0,
        f64::from(imp.reorder_permille) / 10.0,
        took.as_secs_f64(),
        mb_per_s(LEN, took),
    );
    for (way, c) in [("to synshield", counts.egress), ("from synshield", counts.ingress)] {
        assert!(c.frames > LEN as u64 / 1500, "{way}: every frame seen: {c:?}");
        assert!(c.dropped > 0, "{way}: loss was injected: {c:?}");
        if imp.reorder_permille > 0 {
            assert!(c.reordered > 0, "{way}: frames were reordered: {c:?}");
        }
        assert_eq!(c.oversized, 0, "{way}: no frame over the 1500-byte MTU: {c:?}");
    }
}

fn echo_under_loss(permille: u16) {
    let (lab, _synshield) = served();
    echo_impaired(&lab, SocketAddr::new(IpAddr::V4(SHIELD_V4), PORT), Impairment::loss(permille));
}

/// 1 % then 5 % loss, each with 1 % of the surviving frames held back 3 ms (the frames
/// behind them overtake them), both ways, through one synshield.
fn echo_under_loss_and_reordering(to: IpAddr) {
    let (lab, _synshield) = served();
    for loss_permille in [10, 50] {
        let imp = Impairment {
            loss_permille,
            reorder_permille: 10,
            reorder_delay: Duration::from_millis(3),
            ..Impairment::NONE
        };
        echo_impaired(&lab, SocketAddr::new(to, PORT), imp);
    }
}

#[test]
fn sixty_four_mib_echoed_through_one_percent_loss() {
    echo_under_loss(10);
}

#[test]
fn sixty_four_mib_echoed_through_five_percent_loss() {
    echo_under_loss(50);
}

#[test]
fn sixty_four_mib_echoed_through_ten_percent_loss() {
    echo_under_loss(100);
}

#[test]
fn sixty_four_mib_echoed_over_ipv4_through_loss_and_reordering() {
    echo_under_loss_and_reordering(IpAddr::V4(SHIELD_V4));
}

#[test]
fn sixty_four_mib_echoed_over_ipv6_through_loss_and_reordering() {
    echo_under_loss_and_reordering(IpAddr::V6(SHIELD_V6));
}
