//! Every path of the seed (../shared/seed/) between two engines, each its own test, with the
//! sequence and acknowledgment numbers the seed names. Client ISS x = 1000, server ISS
//! y = 9000.

mod common;

use std::sync::Arc;

use common::{Pair, assert_counts_match, client_tuple, over_the_wire};
use tcp_engine::wire::Flags;
use tcp_engine::{
    CloseReason, Config, ConnectionTable, Duration, Event, FourTuple, Instant, KeepaliveConfig,
    Segment, SeqNumber, State, TableEvent,
};

const X: u32 = 1000;
const Y: u32 = 9000;

fn config() -> Config {
    Config::default()
}

fn seq_ack(seg: &Segment) -> (u32, Option<u32>) {
    (seg.repr.seq_number.raw(), seg.repr.ack_number.map(SeqNumber::raw))
}

fn only(mut segs: Vec<Segment>) -> Segment {
    assert_eq!(segs.len(), 1, "expected one segment: {segs:#?}");
    segs.remove(0)
}

#[test]
fn three_way_handshake() {
    let mut p = Pair::new(config());
    // (1) SYN, seq = x.
    let syn = only(p.client_out());
    assert_eq!((syn.repr.flags, seq_ack(&syn)), (Flags::SYN, (X, None)));
    assert_eq!(p.client.state(), State::SynSent);
    p.deliver_to_server(&[syn]);
    assert_eq!(p.server.state(), State::SynReceived);
    // (2) SYN+ACK, seq = y, ack = x + 1.
    let syn_ack = only(p.server_out());
    assert_eq!((syn_ack.repr.flags, seq_ack(&syn_ack)), (Flags::SYN, (Y, Some(X + 1))));
    p.deliver_to_client(&[syn_ack]);
    assert_eq!(p.client.state(), State::Established);
    // (3) ACK, seq = x + 1, ack = y + 1.
    let ack = only(p.client_out());
    assert_eq!((ack.repr.flags, seq_ack(&ack)), (Flags::NONE, (X + 1, Some(Y + 1))));
    p.deliver_to_server(&[ack]);
    assert_eq!(p.server.state(), State::Established);
    assert_eq!(p.client_events(), [Event::Connected]);
    assert_eq!(p.server_events(), [Event::Connected]);
}

/// Client sends "abc" so u = x + 4; the close follows segments 4 to 7 of the seed.
#[test]
fn four_way_close() {
    let mut p = Pair::established(config());
    p.client.send(b"abc").expect("send");
    p.exchange();
    assert_eq!(p.read_server(), b"abc");
    let u = X + 4;
    let v = Y + 1;

    // (4) Client FIN, seq = u: FIN-WAIT-1.
    p.client.shutdown().expect("shutdown");
    assert_eq!(p.client.state(), State::FinWait1);
    let fin = only(p.client_out());
    assert_eq!((fin.repr.flags, seq_ack(&fin)), (Flags::FIN, (u, Some(v))));
    p.deliver_to_server(&[fin]);
    // (5) Server ACK, seq = v, ack = u + 1: CLOSE-WAIT.
    assert_eq!(p.server.state(), State::CloseWait);
    let ack = only(p.server_out());
    assert_eq!((ack.repr.flags, seq_ack(&ack)), (Flags::NONE, (v, Some(u + 1))));
    p.deliver_to_client(&[ack]);
    assert_eq!(p.client.state(), State::FinWait2);
    assert_eq!(p.server_events(), [Event::Readable, Event::PeerClosed]);

    // (6) Server FIN, seq = w, ack = u + 1 again: LAST-ACK.
    p.server.shutdown().expect("shutdown");
    assert_eq!(p.server.state(), State::LastAck);
    let w = v;
    let fin = only(p.server_out());
    assert_eq!((fin.repr.flags, seq_ack(&fin)), (Flags::FIN, (w, Some(u + 1))));
    p.deliver_to_client(&[fin]);
    // (7) Client ACK, seq = u + 1, ack = w + 1: TIME-WAIT.
    assert_eq!(p.client.state(), State::TimeWait);
    let ack = only(p.client_out());
    assert_eq!((ack.repr.flags, seq_ack(&ack)), (Flags::NONE, (u + 1, Some(w + 1))));
    p.deliver_to_server(&[ack]);
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(p.server_events(), [Event::Closed(CloseReason::Normal)]);

    // The client waits 2 MSL (2 x 30 s) before CLOSED.
    p.advance_to(Instant::from_secs(59));
    assert_eq!(p.client.state(), State::TimeWait);
    p.advance_to(Instant::from_secs(60));
    assert_eq!(p.client.state(), State::Closed);
    assert_eq!(p.client_events(), [Event::PeerClosed, Event::Closed(CloseReason::Normal)]);
}

#[test]
fn half_close_server_keeps_sending_in_close_wait() {
    let mut p = Pair::established(config());
    p.client.shutdown().expect("shutdown");
    p.exchange();
    assert_eq!((p.client.state(), p.server.state()), (State::FinWait2, State::CloseWait));
    // The server still has a response to send; the client still reads.
    let response = common::stream(5, 200_000);
    let mut sent = 0;
    let mut received = Vec::new();
    while received.len() < response.len() {
        sent += p.server.send(&response[sent..]).expect("CLOSE-WAIT may send");
        p.exchange();
        received.extend(p.read_client());
        p.advance_to(p.now + Duration::from_millis(50));
    }
    assert_eq!(received, response);
    p.server.shutdown().expect("shutdown");
    p.exchange();
    assert_eq!((p.client.state(), p.server.state()), (State::TimeWait, State::Closed));
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let mut p = Pair::established(config());
    p.client.shutdown().expect("shutdown");
    p.server.shutdown().expect("shutdown");
    let client_fin = only(p.client_out());
    let server_fin = only(p.server_out());
    // The FINs cross: each side sees a FIN that does not acknowledge its own.
    p.deliver_to_server(&[client_fin]);
    p.deliver_to_client(&[server_fin]);
    assert_eq!((p.client.state(), p.server.state()), (State::Closing, State::Closing));
    p.exchange();
    assert_eq!((p.client.state(), p.server.state()), (State::TimeWait, State::TimeWait));
    p.advance_to(Instant::from_secs(60));
    assert_eq!((p.client.state(), p.server.state()), (State::Closed, State::Closed));
}

#[test]
fn fin_wait_1_fin_ack_goes_straight_to_time_wait() {
    let mut p = Pair::established(config());
    p.client.shutdown().expect("shutdown");
    let fin = only(p.client_out());
    p.deliver_to_server(&[fin]);
    // The server closes before its ACK leaves: one FIN+ACK acknowledging the client's FIN.
    p.server.shutdown().expect("shutdown");
    let fin_ack = only(p.server_out());
    assert_eq!((fin_ack.repr.flags, seq_ack(&fin_ack)), (Flags::FIN, (Y + 1, Some(X + 2))));
    p.deliver_to_client(&[fin_ack]);
    assert_eq!(p.client.state(), State::TimeWait, "FIN-WAIT-1 skips FIN-WAIT-2");
}

#[test]
fn time_wait_reacks_retransmitted_fin_and_restarts_2msl() {
    let mut p = Pair::established(config());
    p.client.shutdown().expect("shutdown");
    p.exchange();
    p.server.shutdown().expect("shutdown");
    let fin = only(p.server_out());
    p.deliver_to_client(&[fin]);
    assert_eq!(p.client.state(), State::TimeWait);
    // The last ACK is lost.
    drop(p.client_out());
    // The server retransmits its FIN after its RTO.
    let rto = p.server.poll_timeout().expect("retransmit timer");
    p.advance_to(rto);
    let again = only(p.server_out());
    assert!(again.repr.flags.fin());
    p.deliver_to_client(&[again]);
    let ack = only(p.client_out());
    assert_eq!(seq_ack(&ack), (X + 2, Some(Y + 2)));
    // 2 MSL counts from the retransmitted FIN.
    p.advance_to(Instant::from_secs(60));
    assert_eq!(p.client.state(), State::TimeWait);
    p.deliver_to_server(&[ack]);
    assert_eq!(p.server.state(), State::Closed);
    p.advance_to(rto + Duration::from_secs(60));
    assert_eq!(p.client.state(), State::Closed);
}

#[test]
fn last_ack_retransmits_fin_until_acknowledged() {
    let mut p = Pair::established(config());
    p.client.shutdown().expect("shutdown");
    p.exchange();
    p.server.shutdown().expect("shutdown");
    let mut fins = 0;
    // Two FINs are lost on the way to the client.
    for _ in 0..2 {
        let fin = only(p.server_out());
        assert!(fin.repr.flags.fin());
        fins += 1;
        let at = p.server.poll_timeout().expect("retransmit timer");
        p.advance_to(at);
    }
    let fin = only(p.server_out());
    fins += 1;
    p.deliver_to_client(&[fin]);
    p.exchange();
    assert_eq!(fins, 3);
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(p.server.stats().retransmits, 2);
}

#[test]
fn abort_resets_the_peer() {
    let mut p = Pair::established(config());
    p.client.abort();
    let rst = only(p.client_out());
    assert!(rst.repr.flags.rst());
    p.deliver_to_server(&[rst]);
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(p.server_events(), [Event::Closed(CloseReason::Reset)]);
}

fn listening_server(config: Config) -> ConnectionTable<()> {
    let mut t = ConnectionTable::new(Arc::new(config), 42);
    t.listen(client_tuple().remote);
    t
}

/// Everything the table sends now (its counters checked first).
fn table_out(t: &mut ConnectionTable<()>, now: Instant) -> Vec<Segment> {
    assert_counts_match(t);
    std::iter::from_fn(|| t.poll_segment(now))
        .map(|(tx, seg)| over_the_wire(&tx.tuple, &seg))
        .collect()
}

/// The table's events as the connection's: `Closed` as `Event::Closed`.
fn table_events(t: &mut ConnectionTable<()>) -> Vec<Event> {
    std::iter::from_fn(|| t.poll_event())
        .filter_map(|e| match e {
            TableEvent::Conn { event, .. } => Some(event),
            TableEvent::Closed { reason, .. } => Some(Event::Closed(reason)),
            TableEvent::TimeWait { .. } => None,
        })
        .collect()
}

/// Hands a segment to the table as a shell would: its connection, or `handle_unknown`.
fn deliver(t: &mut ConnectionTable<()>, now: Instant, tuple: FourTuple, seg: &Segment) {
    match t.lookup(&tuple) {
        Some(id) => {
            t.handle_segment(now, id, &seg.repr, &seg.payload).expect("live");
        }
        None => t.handle_unknown(now, tuple, &seg.repr, &seg.payload),
    }
}

#[test]
fn syn_received_retransmits_syn_ack_then_gives_up() {
    let mut p = Pair::new(config());
    let mut server = listening_server(config());
    let tuple = client_tuple().reversed();
    let syn = only(p.client_out());
    deliver(&mut server, Instant::ZERO, tuple, &syn);
    assert_eq!(only(table_out(&mut server, p.now)).repr.flags, Flags::SYN);
    let mut retransmissions = 0;
    while let Some(at) = server.poll_timeout() {
        server.handle_timeout(at);
        for seg in table_out(&mut server, at) {
            assert_eq!(seg.repr.flags, Flags::SYN, "SYN-ACK again");
            retransmissions += 1;
        }
    }
    assert_eq!(retransmissions, 5);
    assert!(server.is_empty(), "half-open connection freed");
    assert_eq!(table_events(&mut server), [Event::Closed(CloseReason::TimedOut)]);
}

#[test]
fn third_ack_lost_server_answers_data_with_rst() {
    let mut p = Pair::new(config());
    let mut server = listening_server(Config { syn_retries: 2, ..config() });
    let tuple = client_tuple().reversed();
    let syn = only(p.client_out());
    deliver(&mut server, p.now, tuple, &syn);
    let syn_ack = only(table_out(&mut server, p.now));
    p.deliver_to_client(&[syn_ack]);
    assert_eq!(p.client.state(), State::Established);
    // Every ACK from the client is lost, and the server gives up on the half-open
    // connection after its SYN-ACK retries.
    drop(p.client_out());
    while let Some(at) = server.poll_timeout() {
        p.now = at;
        server.handle_timeout(at);
        let synacks = table_out(&mut server, at);
        p.deliver_to_client(&synacks);
        drop(p.client_out());
    }
    assert!(server.is_empty());
    // The client, ESTABLISHED all along, sends data: the server has no connection and
    // answers RST, which resets the client.
    p.client.send(b"hello?").expect("send");
    let data = only(p.client_out());
    deliver(&mut server, p.now, tuple, &data);
    let rst = only(table_out(&mut server, p.now));
    assert_eq!(
        (rst.repr.flags, rst.repr.seq_number),
        (Flags::RST, data.repr.ack_number.expect("ACK"))
    );
    p.deliver_to_client(&[rst]);
    assert_eq!(p.client.state(), State::Closed);
    assert!(p.client_events().contains(&Event::Closed(CloseReason::Reset)));
    assert_eq!(server.stats().resets_for_no_connection, 1);
}

#[test]
fn segment_for_no_connection_gets_rst_but_rst_does_not() {
    let mut server: ConnectionTable<()> = ConnectionTable::new(Arc::new(config()), 1);
    let tuple = client_tuple().reversed();
    let mut p = Pair::established(config());
    p.client.send(b"x").expect("send");
    let data = only(p.client_out());
    deliver(&mut server, Instant::ZERO, tuple, &data);
    assert!(only(table_out(&mut server, p.now)).repr.flags.rst());
    let rst = tcp_engine::reset_reply(&data.repr, 1).expect("reply");
    deliver(&mut server, Instant::ZERO, tuple, &Segment { repr: rst, payload: Vec::new() });
    assert!(table_out(&mut server, Instant::ZERO).is_empty());
    // A SYN to a port nobody listens on: RST+ACK.
    let syn = only(Pair::new(config()).client_out());
    deliver(&mut server, Instant::ZERO, tuple, &syn);
    let rst = only(table_out(&mut server, p.now));
    assert_eq!(
        (rst.repr.flags, rst.repr.ack_number.map(SeqNumber::raw)),
        (Flags::RST, Some(X + 1))
    );
}

#[test]
fn keepalive_resets_a_dead_peer_after_10_probes() {
    let mut p = Pair::established(config());
    let start = p.now;
    // The client vanished: nothing it would send arrives, its timers do not matter.
    let mut probes = Vec::new();
    loop {
        let at = p.server.poll_timeout().expect("keepalive timer");
        p.now = at;
        p.server.handle_timeout(at);
        let segs = p.server_out();
        let seg = only(segs);
        if seg.repr.flags.rst() {
            break;
        }
        probes.push(at - start);
    }
    let idle = Duration::from_secs(2 * 3600);
    let expected: Vec<Duration> = (0..10).map(|k| idle + Duration::from_secs(75) * k).collect();
    assert_eq!(probes, expected);
    assert_eq!(p.now - start, idle + Duration::from_secs(750));
    assert_eq!(p.server_events(), [Event::Closed(CloseReason::KeepaliveTimeout)]);
}

#[test]
fn keepalive_probes_answered_keep_the_connection() {
    let ka = KeepaliveConfig {
        idle: Duration::from_secs(60),
        interval: Duration::from_secs(5),
        ..KeepaliveConfig::default()
    };
    let mut p = Pair::established(Config { keepalive: ka, ..config() });
    for _ in 0..100 {
        let next = [p.client.poll_timeout(), p.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .expect("timers");
        p.advance_to(next);
        p.exchange();
    }
    assert!(p.now > Instant::from_secs(5_000));
    assert_eq!((p.client.state(), p.server.state()), (State::Established, State::Established));
}
