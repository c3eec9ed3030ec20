//! The lab's link impairments (`tcp_user::impair`) between two kernel TCP stacks: loss at
//! the configured rate both ways, reordering that the receiver sees, oversized frames
//! counted, and nothing left behind once the guard is dropped.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use tcp_user::impair::{Impaired, Impairment, offloads_off};
use tcp_user::lab::{CLIENT_IF, Lab, Netns, SHIELD_IF, SHIELD_V4};

const PORT: u16 = 5001;

/// A kernel TCP server in the shield namespace that reads everything and sends back how
/// many bytes it got, then returns the receiving stack's out-of-order queue count.
fn transfer(lab: &Lab, len: usize) -> u64 {
    let listener = lab
        .shield
        .enter(|| TcpListener::bind(SocketAddr::new(SHIELD_V4.into(), PORT)).unwrap())
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
        let mut total = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = loop {
                // A socket read with a timeout ends with EINTR on any signal: read again.
                match s.read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r.unwrap(),
                }
            };
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&b| b == 0x5a), "content intact");
            total += n as u64;
        }
        s.write_all(&total.to_be_bytes()).unwrap();
    });
    let mut c = lab.client.enter(|| TcpStream::connect((SHIELD_V4, PORT)).unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
    let chunk = vec![0x5a; 1 << 16];
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        c.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = [0u8; 8];
    c.read_exact(&mut got).unwrap();
    server.join().unwrap();
    assert_eq!(u64::from_be_bytes(got), len as u64);
    netstat(&lab.shield, "TCPOFOQueue")
}

/// A `TcpExt` counter of the namespace's kernel.
fn netstat(ns: &Netns, name: &str) -> u64 {
    let text = ns.run("cat", &["/proc/net/netstat"]).unwrap();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let at = names.split_whitespace().position(|n| n == name).unwrap();
        return values.split_whitespace().nth(at).unwrap().parse().unwrap();
    }
    panic!("no TcpExt {name}");
}

fn lab() -> Lab {
    let lab = Lab::new().unwrap();
    // The peer's TSO would hand the client's ingress 64 KiB packets: one frame per packet.
    offloads_off(&lab.shield, SHIELD_IF).unwrap();
    lab
}

#[test]
fn loss_drops_the_configured_share_of_tcp_frames_both_ways() {
    let lab = lab();
    let imp = Impaired::attach(&lab.client, CLIENT_IF, Impairment::loss(50), Impairment::loss(50))
        .unwrap();
    transfer(&lab, 16 << 20);
    let counts = imp.counts().unwrap();
    eprintln!("5 % loss: {counts:?}");
    for (way, c) in [("egress", counts.egress), ("ingress", counts.ingress)] {
        assert!(c.frames > 1_000, "{way}: {c:?}");
        #[expect(clippy::cast_precision_loss, reason = "a ratio")]
        let share = c.dropped as f64 / c.frames as f64;
        assert!((0.035..0.065).contains(&share), "{way}: dropped {share:.4} of {c:?}");
        assert_eq!(c.oversized, 0, "{way}: {c:?}");
        assert_eq!(c.reordered, 0);
    }
}

#[test]
fn reordering_holds_frames_back_and_the_receiver_sees_them_out_of_order() {
    let lab = lab();
    let before = netstat(&lab.shield, "TCPOFOQueue");
    let reorder = Impairment {
        reorder_permille: 20,
        reorder_delay: Duration::from_millis(3),
        ..Impairment::NONE
    };
    let imp = Impaired::attach(&lab.client, CLIENT_IF, reorder, Impairment::NONE).unwrap();
    let after = transfer(&lab, 8 << 20);
    let counts = imp.counts().unwrap();
    eprintln!("reordering: {counts:?}; receiver's TCPOFOQueue {before} -> {after}");
    assert!(counts.egress.reordered > 10, "{counts:?}");
    assert_eq!(counts.egress.dropped, 0);
    assert!(after > before, "the receiver queued segments out of order: {before} -> {after}");
    // Gone with the guard: the delay line's taps, and the programs (a transfer is clean).
    drop(imp);
    let links = lab.client.run("ip", &["-o", "link", "show"]).unwrap();
    assert!(!links.contains("-re") && !links.contains("-ri"), "{links}");
}

#[test]
fn frames_over_the_mtu_are_counted() {
    let lab = lab();
    // Count against a 1000-byte MTU: full-sized frames of a 1500-byte link exceed it.
    let small = Impairment { mtu: 1000, ..Impairment::NONE };
    let imp = Impaired::attach(&lab.client, CLIENT_IF, small, Impairment::NONE).unwrap();
    transfer(&lab, 1 << 20);
    let c = imp.counts().unwrap().egress;
    assert!(c.oversized > 100 && c.oversized <= c.frames, "{c:?}");
}
