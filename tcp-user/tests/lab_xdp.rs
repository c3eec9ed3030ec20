//! Root tests of the XDP program's skeleton in the lab: it loads, attaches, counts what
//! arrives from the client namespace, and detaches; the usual mistakes give one clear sentence.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Synshield, wait_for_line};
use tcp_common::{Config, Counter, PortSet};
use tcp_user::lab::{Lab, LabOptions, SHIELD_IF, SHIELD_V4, SHIELD_V6};
use tcp_user::loader::{LoadError, Shield, XdpModeChoice};

fn config(ports: &[u16]) -> Config {
    let mut set = PortSet::EMPTY;
    for p in ports {
        set.insert(*p);
    }
    let mut config = Config::EMPTY;
    config.ports = set;
    config
}

/// Sends one UDP datagram and makes one TCP connection attempt to a port nobody listens on,
/// from the client namespace, over `shield`'s address.
fn client_traffic(lab: &Lab, shield: std::net::IpAddr) {
    lab.client
        .enter(|| {
            let bind: SocketAddr =
                if shield.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap();
            let udp = UdpSocket::bind(bind).unwrap();
            udp.send_to(b"hello", SocketAddr::new(shield, 9)).unwrap();
            // The shield's kernel answers RST: refused.
            let r = TcpStream::connect_timeout(&SocketAddr::new(shield, 9), Duration::from_secs(5));
            assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
        })
        .unwrap();
}

#[test]
fn counters_move_when_client_traffic_arrives() {
    let lab =
        Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap();
    let shield = lab
        .shield
        .enter(|| Shield::attach(SHIELD_IF, XdpModeChoice::Native, &config(&[7])))
        .unwrap()
        .unwrap();
    let before = shield.counters().unwrap();
    client_traffic(&lab, SHIELD_V4.into());
    client_traffic(&lab, SHIELD_V6.into());
    let after = shield.counters().unwrap();
    let d = after.since(&before);
    // ARP and neighbour discovery precede the first datagram; ND is ICMPv6, so "not TCP".
    assert!(d.get(Counter::PassNotIp) >= 1, "{d:?}");
    assert!(d.get(Counter::PassNotTcp) >= 2, "{d:?}");
    // SYN to port 9, then the RST that refused it came back the other way (not through XDP).
    assert!(d.get(Counter::PassOtherPort) >= 2, "{d:?}");
    // Every frame got exactly one verdict.
    assert_eq!(after.get(Counter::RxFrames), after.verdict_total(), "{after:?}");
}

#[test]
fn binary_serves_prints_counters_and_detaches_on_sigterm() {
    let lab = Lab::new().unwrap();
    let mut s = Synshield::start(
        &lab.shield,
        &["serve", "--iface", SHIELD_IF, "--port", "7,8", "--xdp-mode", "generic"],
    );
    let xdp = lab.shield.run("ip", &["link", "show", "dev", SHIELD_IF]).unwrap();
    assert!(xdp.contains("xdpgeneric"), "{xdp}");
    client_traffic(&lab, SHIELD_V4.into());
    let status =
        wait_for_line(&s.stdout, |l| l.starts_with("status:") && l.contains("pass_other_port"));
    assert!(status.is_ok(), "no status line with the traffic: {status:?}");
    s.terminate();
    assert!(
        wait_for_line(&s.stdout, |l| l == format!("synshield: detached from {SHIELD_IF}")).is_ok()
    );
    assert!(s.child.wait().unwrap().success());
    let xdp = lab.shield.run("ip", &["link", "show", "dev", SHIELD_IF]).unwrap();
    assert!(!xdp.contains("xdp"), "program still attached: {xdp}");
}

#[test]
fn missing_interface_is_one_clear_sentence() {
    let lab = Lab::new().unwrap();
    let err = lab
        .shield
        .enter(|| Shield::attach("nosuch0", XdpModeChoice::Auto, &config(&[7])))
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, LoadError::NoSuchInterface(ref n) if n == "nosuch0"), "{err:?}");
    assert_eq!(
        err.to_string(),
        "there is no network interface named \"nosuch0\": pick one that `ip link` lists"
    );
}

#[test]
fn serve_on_a_missing_interface_says_one_sentence_and_nothing_else() {
    let lab = Lab::new().unwrap();
    let out = lab
        .shield
        .command(env!("CARGO_BIN_EXE_synshield"))
        .args(["serve", "--iface", "nosuch0", "--port", "7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [
            "synshield: there is no network interface named \"nosuch0\": pick one that `ip link` lists"
        ],
        "{stderr}"
    );
}

#[test]
fn interface_with_another_xdp_program_is_refused() {
    let lab = Lab::new().unwrap();
    // Someone else's program: here a first synshield on the same interface.
    let _first = lab
        .shield
        .enter(|| Shield::attach(SHIELD_IF, XdpModeChoice::Native, &config(&[7])))
        .unwrap()
        .unwrap();
    let err = lab
        .shield
        .enter(|| Shield::attach(SHIELD_IF, XdpModeChoice::Native, &config(&[7])))
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, LoadError::XdpBusy(ref n) if n == SHIELD_IF), "{err:?}");
}

#[test]
fn not_root_is_one_clear_sentence() {
    let lab = Lab::new().unwrap();
    // A copy nobody can reach wherever the checkout lives (a clone may sit in a directory
    // other users cannot enter).
    let dir = std::env::temp_dir().join(format!("synshield-notroot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("synshield");
    std::fs::copy(env!("CARGO_BIN_EXE_synshield"), &binary).unwrap();
    for path in [&dir, &binary] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let out = lab
        .shield
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(&binary)
        .args(["serve", "--iface", SHIELD_IF, "--port", "7"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("synshield needs root (CAP_BPF and CAP_NET_ADMIN)"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_port_already_served_is_one_clear_sentence() {
    let lab = Lab::new().unwrap();
    // A kernel service on the port, in the shield namespace.
    let _service = lab.shield.enter(|| std::net::TcpListener::bind("0.0.0.0:7")).unwrap().unwrap();
    let out = lab
        .shield
        .command(env!("CARGO_BIN_EXE_synshield"))
        .args(["serve", "--iface", SHIELD_IF, "--port", "7"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("port 7 is already served by a process on this host"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let xdp = lab.shield.run("ip", &["link", "show", "dev", SHIELD_IF]).unwrap();
    assert!(!xdp.contains("xdp"), "nothing attached: {xdp}");
}

#[test]
fn native_mode_without_driver_support_is_one_clear_sentence() {
    let lab = Lab::new().unwrap();
    // Loopback runs XDP only in generic mode.
    let err = lab
        .shield
        .enter(|| Shield::attach("lo", XdpModeChoice::Native, &config(&[7])))
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, LoadError::NativeUnsupported(ref n) if n == "lo"), "{err:?}");
    assert!(err.to_string().contains("use `--xdp-mode generic`"), "{err}");
    // And auto mode falls back to generic on the same interface.
    let shield = lab
        .shield
        .enter(|| Shield::attach("lo", XdpModeChoice::Auto, &config(&[7])))
        .unwrap()
        .unwrap();
    assert_eq!(shield.mode(), tcp_user::loader::AttachedMode::Generic);
}
