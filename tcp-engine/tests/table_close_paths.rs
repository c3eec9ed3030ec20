//! Every close path between two connection tables, with each table's per-state counts and
//! counter totals (kept incrementally) checked against a walk after every step, and every
//! payload handed back exactly once.

mod common;

use common::TablePair;
use tcp_engine::{CloseReason, Config, Connection, Duration, Instant, KeepaliveConfig, State};

fn ends(events: &[tcp_engine::TableEvent<u32>]) -> (Vec<(CloseReason, Option<u32>)>, Vec<u32>) {
    TablePair::ends(events)
}

const LATER: Instant = Instant::from_secs(100_000);

#[test]
fn client_closes_first_and_its_time_wait_record_expires() {
    let mut p = TablePair::established(Config::default());
    p.on_client(|c| c.send(b"request")).expect("send");
    p.exchange();
    let read = p.on_server(|c| {
        let (a, b) = c.recv_slices();
        let request = [a, b].concat();
        c.consume(request.len());
        request
    });
    assert_eq!(read, b"request");
    p.on_client(Connection::close).expect("close");
    p.exchange();
    assert_eq!(p.server.count_in_state(State::CloseWait), 1);
    p.on_server(Connection::close).expect("close");
    p.exchange();
    // Server: LAST-ACK, then gone with its payload. Client: a TIME-WAIT record.
    assert_eq!(ends(&p.server_events), (vec![(CloseReason::Normal, Some(0))], vec![]));
    assert_eq!(ends(&p.client_events), (vec![], vec![1]));
    assert_eq!(p.client.count_in_state(State::TimeWait), 1);
    assert!(p.client.connection(p.client_id).is_none());
    p.run_until(LATER, true);
    assert_eq!(ends(&p.client_events), (vec![(CloseReason::Normal, None)], vec![1]));
    p.assert_all_gone();
}

#[test]
fn server_closes_first() {
    let mut p = TablePair::established(Config::default());
    p.on_server(Connection::close).expect("close");
    p.exchange();
    p.on_client(Connection::close).expect("close");
    p.exchange();
    assert_eq!(ends(&p.client_events), (vec![(CloseReason::Normal, Some(1))], vec![]));
    assert_eq!(ends(&p.server_events), (vec![], vec![0]));
    p.run_until(LATER, true);
    p.assert_all_gone();
}

#[test]
fn simultaneous_close_leaves_two_records() {
    let mut p = TablePair::established(Config::default());
    p.on_client(Connection::shutdown).expect("shutdown");
    p.on_server(Connection::shutdown).expect("shutdown");
    let (c, s) = (p.client_out(), p.server_out());
    p.deliver_to_server(&c);
    p.deliver_to_client(&s);
    assert_eq!(p.client.count_in_state(State::Closing), 1);
    p.exchange();
    assert_eq!((ends(&p.client_events).1, ends(&p.server_events).1), (vec![1], vec![0]));
    assert_eq!(p.server.count_in_state(State::TimeWait), 1);
    p.run_until(LATER, true);
    p.assert_all_gone();
}

#[test]
fn abort_resets_the_peer() {
    let mut p = TablePair::established(Config::default());
    p.on_client(Connection::abort);
    p.exchange();
    assert_eq!(ends(&p.client_events).0, [(CloseReason::Aborted, Some(1))]);
    assert_eq!(ends(&p.server_events).0, [(CloseReason::Reset, Some(0))]);
    p.assert_all_gone();
}

#[test]
fn close_with_unread_data_resets() {
    let mut p = TablePair::established(Config::default());
    p.on_client(|c| c.send(b"never read")).expect("send");
    p.exchange();
    p.on_server(Connection::close).expect("close");
    p.exchange();
    assert_eq!(ends(&p.server_events).0, [(CloseReason::Aborted, Some(0))]);
    assert_eq!(ends(&p.client_events).0, [(CloseReason::Reset, Some(1))]);
    p.assert_all_gone();
}

#[test]
fn keepalive_ends_a_silent_peer() {
    let keepalive = KeepaliveConfig {
        enabled: true,
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(1),
        probes: 3,
    };
    let mut p = TablePair::established(Config { keepalive, ..Config::default() });
    // Nothing gets through any more.
    p.run_until(LATER, false);
    assert_eq!(ends(&p.client_events).0, [(CloseReason::KeepaliveTimeout, Some(1))]);
    assert_eq!(ends(&p.server_events).0, [(CloseReason::KeepaliveTimeout, Some(0))]);
    p.assert_all_gone();
}

#[test]
fn retransmissions_run_out() {
    let mut p = TablePair::established(Config { data_retries: 3, ..Config::default() });
    p.on_server(|c| c.send(b"lost")).expect("send");
    p.on_client(Connection::abort);
    p.client_out();
    p.run_until(LATER, false);
    assert_eq!(ends(&p.server_events).0, [(CloseReason::TimedOut, Some(0))]);
    p.assert_all_gone();
}

#[test]
fn fin_wait_2_times_out_after_close() {
    let mut p = TablePair::established(Config::default());
    p.on_server(Connection::close).expect("close");
    p.exchange();
    assert_eq!(p.server.count_in_state(State::FinWait2), 1);
    assert_eq!(p.client.count_in_state(State::CloseWait), 1);
    // The client never closes; the server gives up on its FIN after 60 s.
    p.run_until(p.now + Duration::from_secs(61), true);
    assert_eq!(ends(&p.server_events).0, [(CloseReason::TimedOut, Some(0))]);
    p.on_client(Connection::abort);
    p.client_out();
    p.assert_all_gone();
}

#[test]
fn syn_received_gives_up_and_idle_timeout_resets() {
    let mut p = TablePair::new(Config { syn_retries: 2, ..Config::default() });
    let syn = p.client_out();
    p.deliver_to_server(&syn);
    assert_eq!(p.server.count_in_state(State::SynReceived), 1);
    assert_eq!(p.client.count_in_state(State::SynSent), 1);
    // No SYN-ACK ever arrives, and the client's SYNs are lost: both give up.
    p.run_until(LATER, false);
    assert_eq!(ends(&p.server_events).0, [(CloseReason::TimedOut, Some(0))]);
    assert_eq!(ends(&p.client_events).0, [(CloseReason::TimedOut, Some(1))]);
    p.assert_all_gone();

    let idle = Config { idle_timeout: Some(Duration::from_secs(30)), ..Config::default() };
    let mut p = TablePair::established(idle);
    p.run_until(LATER, true);
    assert_eq!(ends(&p.client_events).0, [(CloseReason::IdleTimeout, Some(1))]);
    assert_eq!(ends(&p.server_events).0.len(), 1);
    p.assert_all_gone();
}
