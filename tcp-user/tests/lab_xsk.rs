//! Root tests of the AF_XDP layer on a lab veth (copy mode).
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

use std::net::UdpSocket;
use std::time::Duration;

use etherparse::PacketBuilder;
use tcp_user::lab::{CLIENT_IF, CLIENT_V4, Lab, SHIELD_IF, SHIELD_V4};
use tcp_user::xsk::{XskConfig, XskMode, XskSocket};

#[test]
fn frames_sent_through_the_tx_ring_reach_the_peer_stack() {
    let lab = Lab::new().unwrap();
    let client_mac = Lab::mac(&lab.client, CLIENT_IF).unwrap();
    let shield_mac = Lab::mac(&lab.shield, SHIELD_IF).unwrap();
    let udp = lab
        .client
        .enter(|| {
            let s = UdpSocket::bind((CLIENT_V4, 5555)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .unwrap();
    let config =
        XskConfig { frame_count: 64, frame_size: 2048, ring_size: 32, mode: XskMode::Copy };
    let mut xsk = lab.shield.enter(|| XskSocket::open(SHIELD_IF, 0, &config)).unwrap().unwrap();
    assert!(!xsk.is_zero_copy());

    // More frames than the TX half of the UMEM (32), so completions must recycle frames; each
    // starts inside its chunk (the data path writes a segment at a headroom and its headers in
    // front of it), at a different offset each time.
    let total = 100u32;
    let mut sent = 0u32;
    let mut received = Vec::new();
    while received.len() < total as usize {
        while sent < total {
            let payload = sent.to_be_bytes();
            let builder = PacketBuilder::ethernet2(shield_mac, client_mac)
                .ipv4(SHIELD_V4.octets(), CLIENT_V4.octets(), 64)
                .udp(4444, 5555);
            let start = (sent % 7) as usize * 9;
            let queued = xsk.send_with(|buf| {
                let mut cursor = std::io::Cursor::new(&mut buf[start..]);
                builder.write(&mut cursor, &payload).unwrap();
                Some((start, usize::try_from(cursor.position()).unwrap(), ()))
            });
            if queued.is_none() {
                break;
            }
            sent += 1;
        }
        xsk.flush();
        let mut buf = [0u8; 16];
        let (n, from) = udp.recv_from(&mut buf).expect("a frame sent through AF_XDP");
        assert_eq!(from, (SHIELD_V4, 4444).into());
        received.push(u32::from_be_bytes(buf[..n].try_into().unwrap()));
    }
    received.sort_unstable();
    assert_eq!(received, (0..total).collect::<Vec<_>>(), "every frame once");
    assert_eq!(xsk.stats().unwrap().tx_invalid_descs, 0);
}

#[test]
fn opening_on_a_missing_interface_fails_cleanly() {
    let lab = Lab::new().unwrap();
    let err = lab.shield.enter(|| XskSocket::open("nosuch0", 0, &XskConfig::default())).unwrap();
    assert_eq!(err.err().map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
}
