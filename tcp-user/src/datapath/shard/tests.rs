//! The shard without a kernel: frames built with etherparse, the XDP program's metadata
//! written as it writes it, an in-memory flow map, and a vector of frames as the TX ring.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

use super::*;
use crate::app::{App, AppKind, HttpConfig};
use tcp_engine::State;

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SHIELD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SHIELD: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 7000;
const PORT: u16 = 7;

type Flows = HashMap<FlowKey, FlowValue>;

fn shard_with(app: AppKind, queue: u32, max_conns: usize) -> (Shard<Flows>, InboxSender) {
    let table = ConnectionTable::new(Arc::new(tcp_engine::Config::default()), 1);
    let app = App::new(app, &HttpConfig::default(), None).unwrap();
    Shard::new(queue, table, app, Flows::new(), max_conns).unwrap()
}

fn shard() -> Shard<Flows> {
    shard_with(AppKind::Echo, 0, 100).0
}

fn tuple(client_port: u16) -> FourTuple {
    FourTuple::new((SHIELD, PORT).into(), (CLIENT, client_port).into())
}

fn cookie_flow(queue: u8) -> FlowValue {
    FlowValue {
        server_isn: SERVER_ISN,
        client_isn: CLIENT_ISN,
        mss: 1460,
        peer_window: 64240,
        peer_wscale: FlowValue::NO_WSCALE,
        queue,
        ..FlowValue::default()
    }
}

fn meta(kind: u32, flow: FlowValue) -> [u8; RxMeta::LEN] {
    RxMeta::new(kind, flow).to_bytes()
}

/// A segment from the client, built by etherparse.
fn from_client(port: u16, seq: u32, ack: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC, SHIELD_MAC)
        .ipv4(CLIENT.octets(), SHIELD.octets(), 64)
        .tcp(port, PORT, seq, 64240)
        .ack(ack);
    if fin {
        b = b.fin();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

#[derive(Debug)]
struct Seen {
    dst_mac: [u8; 6],
    seq: u32,
    ack: u32,
    rst: bool,
    fin: bool,
    payload: Vec<u8>,
}

fn decode(frame: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("not TCP") };
    let dst_mac = p.link.unwrap().to_header().unwrap().ethernet2().unwrap().destination;
    Seen {
        dst_mac,
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        rst: t.rst(),
        fin: t.fin(),
        payload: t.payload().to_vec(),
    }
}

/// One loop iteration after the frames: timers, events, transmit.
fn run(s: &mut Shard<Flows>, now: Instant) -> Vec<Seen> {
    s.handle_timeout(now);
    s.handle_events(now);
    let mut out: Vec<Vec<u8>> = Vec::new();
    assert!(s.transmit(now, &mut out));
    // What sending finished (TIME-WAIT records, connections gone after their last segment).
    s.handle_events(now);
    out.iter().map(|f| decode(f)).collect()
}

#[test]
fn unvalidated_segments_are_not_admitted_and_get_a_reset() {
    let mut s = shard();
    let now = Instant::from_millis(1);
    s.handle_frame(now, &[], &from_client(40000, CLIENT_ISN + 1, SERVER_ISN + 1, false, b"x"));
    let out = run(&mut s, now);
    assert_eq!(s.stats().frames_without_meta, 1);
    assert_eq!(s.stats().admitted, 0);
    assert_eq!(s.open_connections(), 0);
    assert_eq!(out.len(), 1);
    assert!(out[0].rst);
    assert_eq!(out[0].dst_mac, CLIENT_MAC, "the reply goes back the way the segment came");
    assert_eq!(out[0].seq, SERVER_ISN + 1, "RST takes its sequence number from the ACK");
}

#[test]
fn malformed_frames_are_counted_drops() {
    let mut s = shard();
    let now = Instant::from_millis(1);
    let good = from_client(40000, CLIENT_ISN + 1, SERVER_ISN + 1, false, b"");
    let m = meta(RxMeta::NEW_FLOW, cookie_flow(0));
    s.handle_frame(now, &m, &good[..30]);
    let mut bad_sum = good.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0xff; // TCP checksum (urgent pointer low byte) now wrong
    s.handle_frame(now, &m, &bad_sum);
    assert_eq!(s.stats().frames_malformed, 2);
    assert_eq!(s.open_connections(), 0, "a segment with a bad checksum admits nothing");
    assert!(run(&mut s, now).is_empty());
}

#[test]
fn a_validated_ack_with_data_is_served_and_closed() {
    let mut s = shard();
    let now = Instant::from_millis(1);
    s.handle_frame(
        now,
        &meta(RxMeta::NEW_FLOW, cookie_flow(0)),
        &from_client(40000, CLIENT_ISN + 1, SERVER_ISN + 1, false, b"hello"),
    );
    assert_eq!(s.stats().admitted, 1);
    let out = run(&mut s, now);
    let data = out.iter().find(|o| !o.payload.is_empty()).expect("the echo");
    assert_eq!(data.payload, b"hello");
    assert_eq!(data.seq, SERVER_ISN + 1);
    assert_eq!(data.ack, CLIENT_ISN + 1 + 5, "acknowledges the data of the third ACK");
    assert_eq!(data.dst_mac, CLIENT_MAC);
    // The client ACKs the echo and closes: the echo closes too.
    let fin = meta(RxMeta::FLOW, cookie_flow(0));
    s.handle_frame(now, &fin, &from_client(40000, CLIENT_ISN + 6, SERVER_ISN + 6, true, b""));
    let out = run(&mut s, now);
    assert!(out.iter().any(|o| o.fin), "FIN after the peer's FIN: {out:?}");
    // The client ACKs our FIN: gone, and its flow-map entry with it.
    s.flows.insert(flow_key(&tuple(40000)), cookie_flow(0));
    let last = meta(RxMeta::FLOW, cookie_flow(0));
    s.handle_frame(now, &last, &from_client(40000, CLIENT_ISN + 7, SERVER_ISN + 7, false, b""));
    run(&mut s, now);
    assert_eq!(s.open_connections(), 0);
    assert!(s.flows.is_empty(), "the entry goes with the connection");
    assert_eq!(s.table_stats().by_state.iter().sum::<usize>(), 0);
}

#[test]
fn server_close_leaves_a_time_wait_record_and_marks_the_flow() {
    let (mut s, _) = shard_with(AppKind::Http, 0, 100);
    let now = Instant::from_millis(1);
    let t = tuple(40001);
    s.flows.insert(flow_key(&t), cookie_flow(0));
    let req = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    s.handle_frame(
        now,
        &meta(RxMeta::NEW_FLOW, cookie_flow(0)),
        &from_client(40001, CLIENT_ISN + 1, SERVER_ISN + 1, false, req),
    );
    let out = run(&mut s, now);
    let n = out.iter().map(|o| o.payload.len()).sum::<usize>();
    let fin_seq = SERVER_ISN + 1 + u32::try_from(n).unwrap();
    assert!(out.iter().any(|o| o.fin), "the server closes after the response");
    // The client ACKs everything and sends its own FIN: we are in TIME-WAIT.
    let ack = CLIENT_ISN + 1 + u32::try_from(req.len()).unwrap();
    let fl = meta(RxMeta::FLOW, cookie_flow(0));
    s.handle_frame(now, &fl, &from_client(40001, ack, fin_seq + 1, true, b""));
    let out = run(&mut s, now);
    assert!(out.iter().any(|o| !o.rst && o.ack == ack + 1), "our last ACK: {out:?}");
    assert_eq!(s.open_connections(), 0);
    assert_eq!(s.table_stats().by_state[State::TimeWait.index()], 1);
    let entry = s.flows[&flow_key(&t)];
    assert_ne!(entry.flags & FlowValue::TIME_WAIT, 0, "new handshakes now come as reopens");
    // The client retransmits its FIN: the record answers with an ACK, along the frame's route.
    s.handle_frame(now, &fl, &from_client(40001, ack, fin_seq + 1, true, b""));
    let out = run(&mut s, now);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].ack, out[0].dst_mac, out[0].rst), (ack + 1, CLIENT_MAC, false));
}

#[test]
fn frames_of_a_flow_another_shard_owns_are_forwarded_to_it() {
    let (mut s0, inbox0) = shard_with(AppKind::Echo, 0, 100);
    let (mut s1, inbox1) = shard_with(AppKind::Echo, 1, 100);
    s0.add_peer(1, inbox1);
    s1.add_peer(0, inbox0);
    let now = Instant::from_millis(1);
    // Admitted on queue 1.
    s1.handle_frame(
        now,
        &meta(RxMeta::NEW_FLOW, cookie_flow(1)),
        &from_client(40002, CLIENT_ISN + 1, SERVER_ISN + 1, false, b""),
    );
    run(&mut s1, now);
    // The next segment arrives on queue 0: forwarded, not answered there.
    s0.handle_frame(
        now,
        &meta(RxMeta::FLOW, cookie_flow(1)),
        &from_client(40002, CLIENT_ISN + 1, SERVER_ISN + 1, false, b"moved"),
    );
    assert!(run(&mut s0, now).is_empty());
    assert_eq!(s0.stats().frames_forwarded, 1);
    assert_eq!(s1.handle_inbox(now, 10), 1);
    let out = run(&mut s1, now);
    assert_eq!(
        out.iter().find(|o| !o.payload.is_empty()).map(|o| o.payload.clone()),
        Some(b"moved".to_vec())
    );
}

#[test]
fn beyond_max_conns_new_connections_are_refused_with_a_reset() {
    let (mut s, _) = shard_with(AppKind::Echo, 0, 1);
    let now = Instant::from_millis(1);
    for port in [40010, 40011] {
        s.flows.insert(flow_key(&tuple(port)), cookie_flow(0));
        s.handle_frame(
            now,
            &meta(RxMeta::NEW_FLOW, cookie_flow(0)),
            &from_client(port, CLIENT_ISN + 1, SERVER_ISN + 1, false, b""),
        );
    }
    let out = run(&mut s, now);
    assert_eq!((s.stats().admitted, s.stats().refused_full), (1, 1));
    assert_eq!(out.iter().filter(|o| o.rst).count(), 1);
    assert!(!s.flows.contains_key(&flow_key(&tuple(40011))), "a refused flow leaves no entry");
    assert!(s.flows.contains_key(&flow_key(&tuple(40010))));
}

#[test]
fn an_entry_without_a_connection_is_an_orphan_and_removed() {
    let mut s = shard();
    let now = Instant::from_millis(1);
    s.flows.insert(flow_key(&tuple(40020)), cookie_flow(0));
    // A segment from further along the connection (say, a duplicate after we closed it).
    s.handle_frame(
        now,
        &meta(RxMeta::FLOW, cookie_flow(0)),
        &from_client(40020, CLIENT_ISN + 501, SERVER_ISN + 1001, false, b"x"),
    );
    let out = run(&mut s, now);
    assert_eq!(s.stats().orphans_removed, 1);
    assert!(s.flows.is_empty());
    assert!(out.iter().all(|o| o.rst));
}

#[test]
fn handshake_carries_what_the_cookie_decoded() {
    let flow = FlowValue {
        server_isn: 1,
        client_isn: 2,
        ts_recent: 3,
        ts_offset: 4,
        mss: 1400,
        peer_window: 100,
        peer_wscale: 7,
        local_wscale: 9,
        flags: FlowValue::TIMESTAMPS | FlowValue::SACK,
        ..FlowValue::default()
    };
    let h = handshake_from_flow(tuple(1), &flow);
    assert_eq!((h.iss, h.irs), (SeqNumber::new(1), SeqNumber::new(2)));
    assert_eq!((h.peer_wscale, h.our_wscale), (Some(7), Some(9)));
    assert_eq!(h.peer_window, 100 << 7);
    assert!(h.sack_permitted);
    assert_eq!(h.timestamps, Some(TsInfo { ts_recent: 3, our_tsval_offset: 4 }));
    let plain =
        handshake_from_flow(tuple(1), &FlowValue { peer_wscale: FlowValue::NO_WSCALE, ..flow });
    assert_eq!((plain.peer_wscale, plain.our_wscale), (None, None));
}

#[test]
fn a_lost_third_ack_is_recovered_from_the_segment_behind_it() {
    // The NEW_FLOW frame never reached the shard (its AF_XDP ring was full); the client is
    // established and sends its request: a FLOW frame that still acknowledges ISN + 1.
    let mut s = shard();
    let now = Instant::from_millis(1);
    s.flows.insert(flow_key(&tuple(40030)), cookie_flow(0));
    s.handle_frame(
        now,
        &meta(RxMeta::FLOW, cookie_flow(0)),
        &from_client(40030, CLIENT_ISN + 1, SERVER_ISN + 1, false, b"late"),
    );
    assert_eq!((s.stats().admitted, s.stats().admitted_late), (1, 1));
    let out = run(&mut s, now);
    assert_eq!(
        out.iter().find(|o| !o.payload.is_empty()).map(|o| o.payload.clone()),
        Some(b"late".to_vec())
    );
    assert!(s.flows.contains_key(&flow_key(&tuple(40030))), "the entry stays with its connection");
}

#[test]
fn a_source_at_its_limit_is_refused_on_every_shard() {
    let limit = Arc::new(SourceLimit::new(2));
    let (mut s0, _) = shard_with(AppKind::Echo, 0, 100);
    let (mut s1, _) = shard_with(AppKind::Echo, 1, 100);
    s0.set_source_limit(Arc::clone(&limit));
    s1.set_source_limit(Arc::clone(&limit));
    let now = Instant::from_millis(1);
    let open = |s: &mut Shard<Flows>, port: u16, q: u8| {
        s.flows.insert(flow_key(&tuple(port)), cookie_flow(q));
        s.handle_frame(
            now,
            &meta(RxMeta::NEW_FLOW, cookie_flow(q)),
            &from_client(port, CLIENT_ISN + 1, SERVER_ISN + 1, false, b""),
        );
        run(s, now)
    };
    open(&mut s0, 40040, 0);
    open(&mut s1, 40041, 1);
    let refused = open(&mut s0, 40042, 0);
    assert_eq!(s0.stats().refused_per_source, 1, "two held across both shards");
    assert!(refused.iter().any(|o| o.rst));
    assert!(!s0.flows.contains_key(&flow_key(&tuple(40042))));
    // One of the two ends (the client resets it): room again.
    let mut rst = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SHIELD_MAC)
        .ipv4(CLIENT.octets(), SHIELD.octets(), 64)
        .tcp(40041, PORT, CLIENT_ISN + 1, 0)
        .rst()
        .ack(SERVER_ISN + 1)
        .write(&mut rst, &[])
        .unwrap();
    s1.handle_frame(now, &meta(RxMeta::FLOW, cookie_flow(1)), &rst);
    run(&mut s1, now);
    assert_eq!(s1.open_connections(), 0);
    assert_eq!(limit.count(CLIENT.into()), 1);
    open(&mut s0, 40043, 0);
    assert_eq!(s0.stats().admitted, 2);
}

#[test]
fn the_reconciler_removes_an_entry_only_after_two_scans_without_a_connection() {
    let mut s = shard();
    let now = Instant::from_millis(1);
    let (orphan, live) = (flow_key(&tuple(40050)), flow_key(&tuple(40051)));
    s.flows.insert(orphan, cookie_flow(0));
    s.flows.insert(live, cookie_flow(0));
    s.handle_frame(
        now,
        &meta(RxMeta::NEW_FLOW, cookie_flow(0)),
        &from_client(40051, CLIENT_ISN + 1, SERVER_ISN + 1, false, b""),
    );
    run(&mut s, now);
    for scan in 1..=2 {
        for key in [orphan, live] {
            s.check_entry(&key, scan);
        }
        // After the first scan the orphan is only a suspect: its third ACK could still be
        // in the ring.
        assert_eq!(s.flows.contains_key(&orphan), scan == 1, "scan {scan}");
    }
    assert_eq!(s.stats().orphans_removed, 1);
    assert!(s.flows.contains_key(&live), "a live connection's entry stays");
    // Suspicion is not carried across a scan that did not see the entry.
    s.flows.insert(orphan, cookie_flow(0));
    s.check_entry(&orphan, 5);
    s.check_entry(&orphan, 7);
    assert!(s.flows.contains_key(&orphan));
    s.check_entry(&orphan, 8);
    assert!(!s.flows.contains_key(&orphan));
}

/// A SYN from the client with an MSS option, as the XDP program hands it over (kind SYN).
fn syn_from_client(port: u16, mss: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SHIELD_MAC)
        .ipv4(CLIENT.octets(), SHIELD.octets(), 64)
        .tcp(port, PORT, CLIENT_ISN, 64240)
        .syn()
        .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(mss)])
        .unwrap()
        .write(&mut v, &[])
        .unwrap();
    v
}

/// The metadata of a SYN handed over for a stateful answer (what it offered).
fn syn_meta() -> [u8; RxMeta::LEN] {
    let offer = FlowValue { client_isn: CLIENT_ISN, mss: 1400, ..FlowValue::default() };
    meta(RxMeta::SYN, offer)
}

/// Records the room flag's writes.
fn room_recorder() -> (RoomFlag, Arc<std::sync::Mutex<Vec<bool>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    (
        Box::new(move |open| {
            s.lock().unwrap().push(open);
            true
        }),
        seen,
    )
}

#[test]
fn a_syn_handed_over_is_answered_statefully_and_its_entry_marked_half_open() {
    let mut s = shard();
    let (flag, _) = room_recorder();
    s.set_half_open(16, flag);
    let now = Instant::from_millis(1);
    s.handle_frame(now, &syn_meta(), &syn_from_client(40060, 1400));
    let out = run(&mut s, now);
    assert_eq!(out.len(), 1, "one SYN-ACK: {out:?}");
    let synack = &out[0];
    assert_eq!(synack.ack, CLIENT_ISN + 1);
    assert_eq!(s.stats().half_open_opened, 1);
    let entry = s.flows[&flow_key(&tuple(40060))];
    assert_ne!(entry.flags & FlowValue::HALF_OPEN, 0, "the third ACK must find the entry");
    assert_eq!(s.table_stats().by_state[State::SynReceived.index()], 1);
    // The third ACK (no cookie: the XDP program sends it as FLOW for a HALF_OPEN entry).
    let iss = synack.seq;
    s.handle_frame(
        now,
        &meta(RxMeta::FLOW, entry),
        &from_client(40060, CLIENT_ISN + 1, iss + 1, false, b"stateful"),
    );
    let out = run(&mut s, now);
    assert_eq!(
        out.iter().find(|o| !o.payload.is_empty()).map(|o| o.payload.clone()),
        Some(b"stateful".to_vec())
    );
    assert_eq!(
        s.flows[&flow_key(&tuple(40060))].flags & FlowValue::HALF_OPEN,
        0,
        "established now"
    );
    assert_eq!(s.table_stats().by_state[State::Established.index()], 1);
}

#[test]
fn a_full_half_open_table_drops_syns_and_closes_the_room_flag() {
    let mut s = shard();
    let (flag, seen) = room_recorder();
    s.set_half_open(2, flag);
    assert_eq!(*seen.lock().unwrap(), [true], "open while there is room");
    let now = Instant::from_millis(1);
    for port in [40070, 40071, 40072] {
        s.handle_frame(now, &syn_meta(), &syn_from_client(port, 1460));
        s.update_room();
    }
    run(&mut s, now);
    assert_eq!((s.stats().half_open_opened, s.stats().syns_dropped), (2, 1));
    assert_eq!(*seen.lock().unwrap(), [true, false], "closed once full");
    assert!(!s.flows.contains_key(&flow_key(&tuple(40072))), "a dropped SYN leaves no entry");
}

#[test]
fn a_handshake_that_never_completes_is_dropped_with_its_entry() {
    let mut s = shard();
    let (flag, seen) = room_recorder();
    s.set_half_open(1, flag);
    s.handle_frame(Instant::from_millis(1), &syn_meta(), &syn_from_client(40080, 1460));
    s.update_room();
    let mut synacks = run(&mut s, Instant::from_millis(1)).len();
    // Linux's schedule: retransmissions at 1, 3, 7, 15, 31 s; given up at 63 s.
    for secs in [1, 3, 7, 15, 31, 63] {
        synacks +=
            run(&mut s, Instant::from_secs(secs) + tcp_engine::Duration::from_millis(1)).len();
    }
    s.update_room();
    assert_eq!(synacks, 6, "the SYN-ACK and five retransmissions");
    assert_eq!(s.table_stats().by_state[State::SynReceived.index()], 0);
    assert!(s.flows.is_empty(), "its HALF_OPEN entry is removed");
    assert_eq!(*seen.lock().unwrap(), [true, false, true], "room again");
}

#[test]
fn a_graceful_stop_drops_half_open_connections_and_closes_the_others_with_fin() {
    let mut s = shard();
    let (flag, _) = room_recorder();
    s.set_half_open(16, flag);
    let now = Instant::from_millis(1);
    s.handle_frame(
        now,
        &meta(RxMeta::NEW_FLOW, cookie_flow(0)),
        &from_client(40090, CLIENT_ISN + 1, SERVER_ISN + 1, false, b""),
    );
    s.handle_frame(now, &syn_meta(), &syn_from_client(40091, 1460));
    assert_eq!(run(&mut s, now).len(), 1, "the SYN-ACK");
    s.close_all(now);
    let out = run(&mut s, now);
    assert_eq!(out.len(), 1, "one FIN, nothing to the half-open peer: {out:?}");
    assert!(out[0].fin && !out[0].rst);
    assert_eq!(s.table_stats().by_state[State::SynReceived.index()], 0);
    assert!(!s.flows.contains_key(&flow_key(&tuple(40091))), "its entry goes with it");
    // Nor does it come back: no SYN-ACK retransmission after the stop.
    assert!(run(&mut s, Instant::from_secs(2)).iter().all(|o| o.fin && !o.rst));
}

/// `from_client`, sent from another MAC address (a router that took over, or an impostor).
fn from_mac(mac: [u8; 6], port: u16, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac, SHIELD_MAC)
        .ipv4(CLIENT.octets(), SHIELD.octets(), 64)
        .tcp(port, PORT, seq, 64240)
        .ack(ack)
        .write(&mut v, payload)
        .unwrap();
    v
}

#[test]
fn the_route_moves_only_on_an_accepted_segment() {
    const OTHER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
    let mut s = shard();
    let now = Instant::from_millis(1);
    let flow = meta(RxMeta::FLOW, cookie_flow(0));
    s.handle_frame(
        now,
        &meta(RxMeta::NEW_FLOW, cookie_flow(0)),
        &from_client(40000, CLIENT_ISN + 1, SERVER_ISN + 1, false, b""),
    );
    assert_eq!(s.open_connections(), 1);
    // Out of the window (and acknowledging nothing we sent): answered with an ACK along
    // the old route, which it does not move.
    s.handle_frame(
        now,
        &flow,
        &from_mac(OTHER_MAC, 40000, CLIENT_ISN + 1_000_000, SERVER_ISN + 1, b"x"),
    );
    let out = run(&mut s, now);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].dst_mac, CLIENT_MAC, "an unaccepted segment does not move the route");
    // An ACK beyond what we sent: not accepted either.
    s.handle_frame(now, &flow, &from_mac(OTHER_MAC, 40000, CLIENT_ISN + 1, SERVER_ISN + 99, b"y"));
    for o in run(&mut s, now) {
        assert_eq!(o.dst_mac, CLIENT_MAC);
    }
    // In the window, acknowledging what we sent: accepted, and its route is the path now.
    s.handle_frame(now, &flow, &from_mac(OTHER_MAC, 40000, CLIENT_ISN + 1, SERVER_ISN + 1, b"hi"));
    let out = run(&mut s, now);
    let echo = out.iter().find(|o| o.payload == b"hi").expect("the echo");
    assert_eq!(echo.dst_mac, OTHER_MAC, "an accepted segment moves the route");
}
