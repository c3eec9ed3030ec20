//! The table's own behaviour: handles, payloads, the timer heap, TIME-WAIT records and
//! RFC 6191, output into the caller's buffer, counters.

use super::*;
use crate::config::KeepaliveConfig;
use crate::conn::{Segment, TsInfo};
use crate::time::Duration;
use crate::wire::{Flags, TcpTimestamp};

fn tuple(i: u16) -> FourTuple {
    FourTuple::new(
        "10.0.0.1:443".parse().expect("addr"),
        SocketAddr::new("10.9.0.1".parse().expect("ip"), 1000 + i),
    )
}

fn handshake(tuple: FourTuple) -> CookieHandshake {
    CookieHandshake {
        tuple,
        iss: SeqNumber::new(100),
        irs: SeqNumber::new(200),
        peer_mss: 1460,
        peer_wscale: None,
        our_wscale: None,
        sack_permitted: false,
        timestamps: Some(TsInfo { ts_recent: 5, our_tsval_offset: 77 }),
        peer_window: 65535,
    }
}

fn third_ack(h: &CookieHandshake) -> TcpRepr {
    TcpRepr {
        ack_number: Some(h.iss + 1),
        window_len: 65535,
        timestamp: h.timestamps.map(|ts| TcpTimestamp { tsval: ts.ts_recent, tsecr: 1 }),
        ..TcpRepr::new(h.tuple.remote.port(), h.tuple.local.port(), h.irs + 1)
    }
}

/// A segment from the peer of `h` with the given sequence number offset from `IRS + 1`.
fn from_peer(
    h: &CookieHandshake,
    seq_off: usize,
    ack_off: usize,
    flags: Flags,
    tsval: u32,
) -> TcpRepr {
    TcpRepr {
        ack_number: Some(h.iss + 1 + ack_off),
        flags,
        window_len: 65535,
        timestamp: Some(TcpTimestamp { tsval, tsecr: 1 }),
        ..TcpRepr::new(h.tuple.remote.port(), h.tuple.local.port(), h.irs + 1 + seq_off)
    }
}

fn table(keepalive: KeepaliveConfig) -> ConnectionTable<u32> {
    ConnectionTable::new(Arc::new(Config { keepalive, ..Config::default() }), 9)
}

fn out(t: &mut ConnectionTable<u32>, now: Instant) -> Vec<(Transmit, Segment)> {
    std::iter::from_fn(|| t.poll_segment(now)).collect()
}

fn events(t: &mut ConnectionTable<u32>) -> Vec<TableEvent<u32>> {
    std::iter::from_fn(|| t.poll_event()).collect()
}

fn assert_counts_match<T>(t: &ConnectionTable<T>) {
    let (by_state, totals) = t.counts_by_walking();
    let stats = t.stats();
    assert_eq!(stats.by_state, by_state, "per-state counts");
    assert_eq!(stats.totals, totals, "counter totals");
    let held = usize::try_from(stats.opened - stats.closed).expect("small");
    assert_eq!(held, t.len(), "opened - closed = held");
    assert_eq!(by_state.iter().sum::<usize>(), t.len());
}

/// An established cookie connection with payload `user`, its events taken.
fn established(t: &mut ConnectionTable<u32>, h: &CookieHandshake, user: u32) -> ConnId {
    let id = t.insert_from_cookie(Instant::ZERO, h, &third_ack(h), &[], user).expect("new");
    assert_eq!(events(t), [TableEvent::Conn { id, event: Event::Connected }]);
    id
}

/// We close first; the peer ACKs our FIN and sends its own: the connection is a TIME-WAIT
/// record from then on. Returns the events.
fn into_time_wait(
    t: &mut ConnectionTable<u32>,
    h: &CookieHandshake,
    id: ConnId,
) -> Vec<TableEvent<u32>> {
    let now = Instant::from_millis(1);
    t.with_connection(now, id, |c, _| c.close()).expect("live").expect("close");
    let fin = out(t, now);
    assert_eq!(fin.len(), 1);
    assert!(fin[0].1.repr.flags.fin());
    let now = Instant::from_millis(2);
    t.handle_segment(now, id, &from_peer(h, 0, 1, Flags::FIN, 6), &[]).expect("live");
    // The last ACK goes out with the connection's handle, then it becomes a record.
    let ack = out(t, now);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].0.conn, Some(id));
    assert_eq!(ack[0].1.repr.ack_number, Some(h.irs + 2));
    events(t)
}

#[test]
fn one_heap_drives_the_timers_of_many_connections() {
    let ka = KeepaliveConfig {
        enabled: true,
        idle: Duration::from_secs(100),
        interval: Duration::from_secs(10),
        probes: 3,
    };
    let mut t = table(ka);
    for i in 0..1000 {
        let h = handshake(tuple(i));
        // Staggered arrivals: connection i is created at i ms.
        t.insert_from_cookie(
            Instant::from_millis(u64::from(i)),
            &h,
            &third_ack(&h),
            &[],
            u32::from(i),
        )
        .expect("new");
    }
    assert_eq!(t.stats().by_state[State::Established.index()], 1000);
    while t.poll_event().is_some() {}
    assert_eq!(t.poll_timeout(), Some(Instant::from_secs(100)));
    let (mut probes, mut resets) = (0, 0);
    let mut buf = [0u8; 1500];
    while let Some(at) = t.poll_timeout() {
        t.handle_timeout(at);
        while let Some(tx) = t.poll_transmit(at, &mut buf) {
            let flags = Packet::new_checked(&buf[..tx.len]).expect("segment").flags();
            if flags.rst() {
                resets += 1;
            } else {
                probes += 1;
            }
        }
    }
    assert_eq!((probes, resets), (3000, 1000));
    assert!(t.is_empty());
    let closed = events(&mut t);
    assert_eq!(closed.len(), 1000);
    let mut users: Vec<u32> = closed
        .into_iter()
        .map(|e| match e {
            TableEvent::Closed { reason: CloseReason::KeepaliveTimeout, user: Some(u), .. } => u,
            other => panic!("{other:?}"),
        })
        .collect();
    users.sort_unstable();
    assert_eq!(users, (0..1000).collect::<Vec<_>>(), "every payload comes back once");
    assert_eq!(t.stats().closed, 1000);
    assert_counts_match(&t);
}

#[test]
fn deadlines_moving_later_do_not_fire_early() {
    let mut t = table(KeepaliveConfig::default());
    let h = handshake(tuple(1));
    let id = t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[], 0).expect("new");
    // Activity at 1 h pushes the keepalive to 3 h; the stale 2 h entry does nothing.
    let mut ack = third_ack(&h);
    ack.timestamp = Some(TcpTimestamp { tsval: 6, tsecr: 0 });
    t.handle_segment(Instant::from_secs(3600), id, &ack, &[]).expect("live");
    t.handle_timeout(Instant::from_secs(7200));
    assert!(out(&mut t, Instant::from_secs(7200)).is_empty());
    assert_eq!(t.poll_timeout(), Some(Instant::from_secs(3 * 3600)));
}

#[test]
fn payloads_travel_with_their_connections() {
    let mut t = table(KeepaliveConfig::default());
    let (h1, h2) = (handshake(tuple(1)), handshake(tuple(2)));
    let a = established(&mut t, &h1, 10);
    let b = established(&mut t, &h2, 20);
    assert_eq!((t.user(a), t.user(b)), (Some(&10), Some(&20)));
    *t.user_mut(a).expect("live") += 1;
    let seen = t.with_connection(Instant::ZERO, a, |conn, user| (*conn.tuple(), *user));
    assert_eq!(seen, Ok((h1.tuple, 11)));
    assert_eq!(t.lookup(&h2.tuple), Some(b));
    // An abort: the RST goes out under the connection's handle (its payload still there to
    // route it), then the payload comes back with `Closed`.
    t.with_connection(Instant::ZERO, a, |conn, _| conn.abort()).expect("live");
    assert!(events(&mut t).is_empty(), "not gone before its RST is out");
    let rst = out(&mut t, Instant::ZERO);
    assert_eq!(rst.len(), 1);
    assert_eq!(rst[0].0.conn, Some(a));
    assert!(rst[0].1.repr.flags.rst());
    assert_eq!(
        events(&mut t),
        [TableEvent::Closed { tuple: h1.tuple, reason: CloseReason::Aborted, user: Some(11) }]
    );
    // Into TIME-WAIT: the payload comes back with `TimeWait`, and `Closed` has none.
    let tw = into_time_wait(&mut t, &h2, b);
    assert!(tw.contains(&TableEvent::TimeWait { tuple: h2.tuple, user: 20 }), "{tw:?}");
    t.handle_timeout(Instant::from_secs(61));
    assert_eq!(
        events(&mut t),
        [TableEvent::Closed { tuple: h2.tuple, reason: CloseReason::Normal, user: None }]
    );
    assert!(t.is_empty());
    assert_counts_match(&t);
}

#[test]
fn stale_handles_are_refused() {
    let mut t = table(KeepaliveConfig::default());
    let h = handshake(tuple(1));
    let old = established(&mut t, &h, 1);
    t.with_connection(Instant::ZERO, old, |conn, _| conn.abort()).expect("live");
    out(&mut t, Instant::ZERO);
    events(&mut t);
    // The slot is reused by the next connection, under a new generation.
    let new = established(&mut t, &handshake(tuple(2)), 2);
    assert_eq!(new.index(), old.index());
    assert_ne!(new, old);
    assert_eq!(t.user(old), None);
    assert!(t.connection(old).is_none());
    assert_eq!(t.with_connection(Instant::ZERO, old, |_, _| ()), Err(TableError::NotFound));
    let ack = third_ack(&h);
    assert_eq!(t.handle_segment(Instant::ZERO, old, &ack, &[]), Err(TableError::NotFound));
    assert_eq!(t.user(new), Some(&2));
}

#[test]
fn time_wait_is_a_record_that_reacks_the_fin_and_ignores_rst() {
    let mut t = table(KeepaliveConfig::default());
    let h = handshake(tuple(1));
    let id = established(&mut t, &h, 7);
    let tw = into_time_wait(&mut t, &h, id);
    assert_eq!(tw.last(), Some(&TableEvent::TimeWait { tuple: h.tuple, user: 7 }));
    assert!(t.connection(id).is_none(), "no connection any more");
    assert_eq!(t.lookup(&h.tuple), None);
    assert_eq!(t.state_of(&h.tuple), Some(State::TimeWait));
    assert_eq!(t.count_in_state(State::TimeWait), 1);
    let record = *t.time_wait(&h.tuple).expect("record");
    assert_eq!((record.rcv_nxt, record.snd_nxt), (h.irs + 2, h.iss + 2));
    assert_eq!(record.expires, Instant::from_millis(2) + Duration::from_secs(60));
    // The peer did not get our ACK and sends its FIN again: ACKed again, as the connection
    // would, and 2 MSL start over (RFC 9293 section 3.10.7.4).
    let at = Instant::from_secs(30);
    t.handle_unknown(at, h.tuple, &from_peer(&h, 0, 1, Flags::FIN, 7), &[]);
    let reack = out(&mut t, at);
    assert_eq!(reack.len(), 1);
    let (tx, ack) = &reack[0];
    assert_eq!((tx.tuple, tx.conn), (h.tuple, None));
    assert_eq!((ack.repr.seq_number, ack.repr.ack_number), (h.iss + 2, Some(h.irs + 2)));
    assert_eq!(ack.repr.flags, Flags::NONE);
    assert_eq!(ack.repr.timestamp, Some(TcpTimestamp { tsval: 30_077, tsecr: 7 }));
    assert_eq!(t.stats().time_wait_acks, 1);
    // RFC 1337: a RST does not end TIME-WAIT, not even one at RCV.NXT.
    let rst = TcpRepr { ack_number: None, ..from_peer(&h, 1, 0, Flags::RST, 8) };
    t.handle_unknown(at, h.tuple, &rst, &[]);
    assert!(out(&mut t, at).is_empty());
    assert_eq!(t.state_of(&h.tuple), Some(State::TimeWait));
    // The first deadline passed, the restarted one holds.
    t.handle_timeout(Instant::from_secs(61));
    assert_eq!(t.state_of(&h.tuple), Some(State::TimeWait));
    assert_eq!(t.poll_timeout(), Some(at + Duration::from_secs(60)));
    t.handle_timeout(at + Duration::from_secs(60));
    assert!(t.is_empty());
    assert_eq!(
        events(&mut t),
        [TableEvent::Closed { tuple: h.tuple, reason: CloseReason::Normal, user: None }]
    );
    // Gone for good: a segment now draws a RST.
    t.handle_unknown(
        at + Duration::from_secs(61),
        h.tuple,
        &from_peer(&h, 1, 1, Flags::NONE, 9),
        &[],
    );
    let rst = out(&mut t, at);
    assert!(rst.len() == 1 && rst[0].1.repr.flags.rst());
    assert_counts_match(&t);
}

#[test]
fn time_wait_waits_for_the_application_to_read() {
    // Half-close: we shut down, the peer's last data comes with its FIN. TIME-WAIT begins,
    // but the connection stays whole until the application has read that data.
    let mut t = table(KeepaliveConfig::default());
    let h = handshake(tuple(1));
    let id = established(&mut t, &h, 3);
    let now = Instant::from_millis(1);
    t.with_connection(now, id, |c, _| c.shutdown()).expect("live").expect("shutdown");
    out(&mut t, now);
    t.handle_segment(now, id, &from_peer(&h, 0, 1, Flags::FIN, 6), b"bye").expect("live");
    out(&mut t, now);
    assert_eq!(t.connection(id).map(Connection::state), Some(State::TimeWait));
    assert_eq!(
        events(&mut t),
        [
            TableEvent::Conn { id, event: Event::Readable },
            TableEvent::Conn { id, event: Event::PeerClosed }
        ]
    );
    let read = t.with_connection(now, id, |conn, _| {
        let (a, b) = conn.recv_slices();
        let data = [a, b].concat();
        conn.consume(data.len());
        data
    });
    assert_eq!(read, Ok(b"bye".to_vec()));
    assert_eq!(events(&mut t), [TableEvent::TimeWait { tuple: h.tuple, user: 3 }]);
    assert!(t.time_wait(&h.tuple).is_some());
    assert_counts_match(&t);
}

#[test]
fn rfc6191_reopens_time_wait_only_for_a_newer_incarnation() {
    let mut t = table(KeepaliveConfig::default());
    let h = handshake(tuple(1));
    let id = established(&mut t, &h, 1);
    // Not in TIME-WAIT: refused.
    assert_eq!(
        t.reopen_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[], 9).map_err(|e| e.0),
        Err(TableError::Exists)
    );
    into_time_wait(&mut t, &h, id);
    // TS.Recent is 6 (the peer's FIN). A replay of the old third ACK (TSval 5, old ISN) is
    // refused, and so is any handshake whose TSval is not newer.
    let now = Instant::from_millis(3);
    let replay = t.reopen_from_cookie(now, &h, &third_ack(&h), b"replay", 2);
    assert_eq!(replay, Err((TableError::NotNewer, 2)), "refused, payload handed back");
    let old_ts = CookieHandshake {
        irs: SeqNumber::new(90_000),
        timestamps: Some(TsInfo { ts_recent: 4, our_tsval_offset: 1 }),
        ..h
    };
    let refused = t.reopen_from_cookie(now, &old_ts, &third_ack(&old_ts), &[], 3);
    assert_eq!(refused.map_err(|e| e.0), Err(TableError::NotNewer));
    assert_eq!(t.stats().reopen_refused, 2);
    assert_eq!(t.state_of(&h.tuple), Some(State::TimeWait));
    // A newer TSval takes the tuple over, whatever its ISN, without a Closed event.
    let newer = CookieHandshake {
        iss: SeqNumber::new(9000),
        irs: SeqNumber::new(7),
        timestamps: Some(TsInfo { ts_recent: 7, our_tsval_offset: 1 }),
        ..h
    };
    let id = t.reopen_from_cookie(now, &newer, &third_ack(&newer), b"again", 4).expect("reopen");
    assert_eq!(t.state_of(&h.tuple), Some(State::Established));
    let events = events(&mut t);
    assert!(!events.iter().any(|e| matches!(e, TableEvent::Closed { .. })), "{events:?}");
    let mut buf = [0u8; 8];
    let n = t.with_connection(now, id, |c, _| c.recv(&mut buf)).expect("live");
    assert_eq!(n, Ok(5));
    assert_eq!((t.len(), t.stats().reopened), (1, 1));
    assert_counts_match(&t);
}

#[test]
fn rfc6191_without_timestamps_needs_a_higher_sequence_number() {
    let mut t = table(KeepaliveConfig::default());
    let h = CookieHandshake { timestamps: None, ..handshake(tuple(1)) };
    let id = established(&mut t, &h, 1);
    let now = Instant::from_millis(1);
    t.with_connection(now, id, |c, _| c.close()).expect("live").expect("close");
    out(&mut t, now);
    let fin = TcpRepr { timestamp: None, ..from_peer(&h, 0, 1, Flags::FIN, 0) };
    t.handle_segment(now, id, &fin, &[]).expect("live");
    out(&mut t, now);
    events(&mut t);
    // RCV.NXT is IRS + 2 = 202: an ISN at or below it may be an old duplicate.
    for irs in [100, 202] {
        let old = CookieHandshake { irs: SeqNumber::new(irs), ..h };
        let refused = t.reopen_from_cookie(now, &old, &third_ack(&old), &[], 2);
        assert_eq!(refused.map_err(|e| e.0), Err(TableError::NotNewer), "ISN {irs}");
    }
    let newer = CookieHandshake { irs: SeqNumber::new(203), ..h };
    t.reopen_from_cookie(now, &newer, &third_ack(&newer), &[], 3).expect("higher ISN reopens");
    assert_counts_match(&t);
}

#[test]
fn duplicate_tuples_are_refused() {
    let mut t = table(KeepaliveConfig::default());
    let h = handshake(tuple(1));
    t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[], 1).expect("new");
    let again = t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[], 2);
    assert_eq!(again, Err((TableError::Exists, 2)), "refused, payload handed back");
    assert_eq!(t.connect(Instant::ZERO, h.tuple, 3), Err((TableError::Exists, 3)));
    let mixed =
        FourTuple::new("10.0.0.1:1".parse().expect("addr"), "[::1]:2".parse().expect("addr"));
    assert_eq!(t.connect(Instant::ZERO, mixed, 4), Err((TableError::AddressFamilyMismatch, 4)));
}

#[test]
fn listener_opens_on_syn_only() {
    let mut t = table(KeepaliveConfig::default());
    let tu = tuple(1);
    t.listen(tu.local);
    let ack = TcpRepr {
        ack_number: Some(SeqNumber::new(1)),
        ..TcpRepr::new(tu.remote.port(), 443, SeqNumber::new(5))
    };
    t.handle_unknown(Instant::ZERO, tu, &ack, &[]);
    assert!(t.is_empty(), "an ACK opens nothing");
    let rst = out(&mut t, Instant::ZERO);
    assert!(rst.len() == 1 && rst[0].1.repr.flags.rst() && rst[0].0.conn.is_none());
    let syn =
        TcpRepr { flags: Flags::SYN, ..TcpRepr::new(tu.remote.port(), 443, SeqNumber::new(5)) };
    t.handle_unknown(Instant::ZERO, tu, &syn, &[]);
    let id = t.lookup(&tu).expect("opened");
    assert_eq!(t.connection(id).map(Connection::state), Some(State::SynReceived));
    assert_eq!(t.user(id), Some(&0), "T::default()");
    let synack = out(&mut t, Instant::ZERO);
    assert_eq!(synack[0].1.repr.ack_number, Some(SeqNumber::new(6)));
}

#[test]
fn bytes_are_parsed_and_bad_ones_counted_for_ipv6_too() {
    let mut t = table(KeepaliveConfig::default());
    let tu = FourTuple::new(
        "[2001:db8::1]:443".parse().expect("addr"),
        "[2001:db8::2]:5555".parse().expect("addr"),
    );
    let h = handshake(tu);
    let id = t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[], 0).expect("new");
    let data = Segment {
        repr: TcpRepr { flags: Flags::PSH, ..third_ack(&h) },
        payload: b"v6 data".to_vec(),
    };
    let mut bytes = data.to_bytes(&tu.incoming_pseudo_header().expect("v6")).expect("emit");
    t.handle_packet(Instant::ZERO, tu, &bytes);
    assert_eq!(t.connection(id).map(Connection::recv_queue_len), Some(7));
    bytes[22] ^= 0xff;
    t.handle_packet(Instant::ZERO, tu, &bytes);
    assert_eq!(t.stats().malformed, 1);
    let mut buf = [0u8; 16];
    assert_eq!(t.with_connection(Instant::ZERO, id, |c, _| c.recv(&mut buf)), Ok(Ok(7)));
    assert_eq!(t.lookup(&tuple(9)), None);
}

#[test]
fn segments_are_cut_to_the_callers_buffer_with_a_right_checksum() {
    let mut t = table(KeepaliveConfig::default());
    let h = handshake(tuple(1));
    let id = established(&mut t, &h, 0);
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let now = Instant::from_millis(1);
    assert_eq!(t.with_connection(now, id, |c, _| c.send(&data)), Ok(Ok(3000)));
    // 100 bytes: a 32-byte header (timestamps) and 68 bytes of payload each.
    let mut buf = [0u8; 100];
    let pseudo = h.tuple.outgoing_pseudo_header().expect("v4");
    let mut sent = Vec::new();
    let mut next = h.iss + 1;
    while let Some(tx) = t.poll_transmit(now, &mut buf) {
        assert!(tx.len <= buf.len());
        let seg = Segment::parse(&buf[..tx.len], &pseudo).expect("checksum verifies");
        assert_eq!(seg.repr.seq_number, next, "the stream continues where the cut was");
        next += seg.payload.len();
        sent.extend_from_slice(&seg.payload);
        assert!(seg.payload.len() <= 68);
    }
    assert!(!sent.is_empty());
    assert_eq!(sent[..], data[..sent.len()]);
    // Too small for any header: nothing, and nothing lost.
    let before = t.connection(id).map(Connection::send_queue_len);
    assert_eq!(t.poll_transmit(now, &mut [0u8; MIN_TRANSMIT_BUFFER - 1]), None);
    assert_eq!(t.connection(id).map(Connection::send_queue_len), before);
}

#[test]
fn stats_need_no_walk_and_match_one() {
    let mut t = table(KeepaliveConfig::default());
    for i in 0..20 {
        established(&mut t, &handshake(tuple(i)), u32::from(i));
    }
    let ids: Vec<ConnId> = t.ids().collect();
    let now = Instant::from_millis(1);
    for (n, &id) in ids.iter().enumerate() {
        match n % 4 {
            0 => t.with_connection(now, id, |c, _| c.abort()).expect("live"),
            1 => t.with_connection(now, id, |c, _| c.shutdown().expect("open")).expect("live"),
            2 => assert_eq!(t.with_connection(now, id, |c, _| c.send(b"x")), Ok(Ok(1))),
            _ => {}
        }
        assert_counts_match(&t);
    }
    out(&mut t, now);
    events(&mut t);
    assert_counts_match(&t);
    assert_eq!(t.count_in_state(State::Established), 10);
    assert_eq!(t.count_in_state(State::FinWait1), 5);
    assert_eq!(t.stats().closed, 5);
}

#[test]
fn a_table_can_move_to_its_shard_thread() {
    fn assert_send<S: Send>() {}
    assert_send::<ConnectionTable<Box<u32>>>();
    assert_send::<TableEvent<String>>();
    assert_send::<Transmit>();
}

#[test]
fn conn_ids_round_trip_through_a_number() {
    let mut t = table(KeepaliveConfig::default());
    let h = handshake(tuple(1));
    let id = t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[], 7).expect("new");
    assert_eq!(ConnId::from_u64(id.to_u64()), Some(id));
    assert_eq!(ConnId::from_u64(u64::from(u32::MAX)), None, "never made by to_u64");
}

#[test]
fn a_syn_opens_a_half_open_connection_with_an_rfc6528_isn() {
    let mut t = table(KeepaliveConfig::default());
    let syn = |tu: FourTuple| TcpRepr {
        flags: Flags::SYN,
        max_seg_size: Some(1400),
        ..TcpRepr::new(tu.remote.port(), tu.local.port(), SeqNumber::new(5))
    };
    let a = t.insert_from_syn(Instant::ZERO, tuple(1), &syn(tuple(1)), 1).expect("open");
    assert_eq!(t.connection(a).map(Connection::state), Some(State::SynReceived));
    assert_eq!(t.count_in_state(State::SynReceived), 1);
    let mut buf = [0u8; 128];
    let synack = t.poll_transmit(Instant::ZERO, &mut buf).expect("SYN-ACK");
    let (repr, _) =
        TcpRepr::parse_segment(&buf[..synack.len], &tuple(1).outgoing_pseudo_header().expect("v4"))
            .expect("a whole segment");
    assert!(repr.flags.syn() && repr.ack_number == Some(SeqNumber::new(6)));
    let isn_a = repr.seq_number;
    // Another tuple at the same moment: another ISN (keyed hash of the tuple).
    t.insert_from_syn(Instant::ZERO, tuple(2), &syn(tuple(2)), 2).expect("open");
    let synack = t.poll_transmit(Instant::ZERO, &mut buf).expect("SYN-ACK");
    let (repr, _) =
        TcpRepr::parse_segment(&buf[..synack.len], &tuple(2).outgoing_pseudo_header().expect("v4"))
            .expect("a whole segment");
    assert_ne!(repr.seq_number, isn_a);
    // Only a SYN opens; the tuple must be free.
    let ack = TcpRepr { ack_number: Some(SeqNumber::new(1)), ..syn(tuple(3)) };
    assert!(matches!(
        t.insert_from_syn(Instant::ZERO, tuple(3), &ack, 3),
        Err((TableError::NotASyn, 3))
    ));
    assert!(matches!(
        t.insert_from_syn(Instant::ZERO, tuple(1), &syn(tuple(1)), 4),
        Err((TableError::Exists, 4))
    ));
}

#[test]
fn the_isn_of_a_tuple_grows_with_the_clock_between_incarnations() {
    // RFC 6528: M + F(tuple, secret); F is the same for the tuple, M counts 4 us ticks.
    let t: ConnectionTable<u32> = table(KeepaliveConfig::default());
    let (a, b) = (
        t.initial_sequence_number(Instant::from_secs(10), &tuple(1)),
        t.initial_sequence_number(Instant::from_secs(11), &tuple(1)),
    );
    assert_eq!(b - a, 250_000, "one second later: 250,000 ticks of 4 us");
    let keyed = ConnectionTable::<u32>::new(Arc::new(Config::default()), 12345);
    assert_ne!(
        keyed.initial_sequence_number(Instant::from_secs(10), &tuple(1)),
        a,
        "another secret, another ISN"
    );
}

#[test]
fn beyond_max_time_wait_a_connection_ends_without_a_record() {
    let mut t = ConnectionTable::new(Arc::new(Config { max_time_wait: 1, ..Config::default() }), 9);
    let (h1, h2) = (handshake(tuple(1)), handshake(tuple(2)));
    let (a, b) = (established(&mut t, &h1, 1), established(&mut t, &h2, 2));
    let first = into_time_wait(&mut t, &h1, a);
    assert_eq!(first.last(), Some(&TableEvent::TimeWait { tuple: h1.tuple, user: 1 }));
    // The second finds the records full: it ends as Linux ends a socket past
    // tcp_max_tw_buckets, and its tuple is free at once.
    let second = into_time_wait(&mut t, &h2, b);
    assert_eq!(
        second.last(),
        Some(&TableEvent::Closed { tuple: h2.tuple, reason: CloseReason::Normal, user: Some(2) })
    );
    assert_eq!(t.state_of(&h2.tuple), None);
    assert_eq!(t.count_in_state(State::TimeWait), 1);
    assert_eq!(t.stats().time_wait_overflow, 1);
    assert_counts_match(&t);
}

#[test]
fn rfc6191_a_newer_syn_reopens_time_wait_statefully_and_an_older_one_is_refused() {
    let mut t = table(KeepaliveConfig::default());
    let h = handshake(tuple(1));
    let id = established(&mut t, &h, 1);
    into_time_wait(&mut t, &h, id);
    let syn = |tsval: u32| TcpRepr {
        flags: Flags::SYN,
        timestamp: Some(TcpTimestamp { tsval, tsecr: 0 }),
        ..TcpRepr::new(h.tuple.remote.port(), h.tuple.local.port(), SeqNumber::new(77))
    };
    let now = Instant::from_millis(3);
    // TS.Recent is 6 (the peer's FIN): a SYN with TSval 6 is not newer.
    let refused = t.reopen_from_syn(now, h.tuple, &syn(6), 2);
    assert_eq!(refused.map_err(|e| e.0), Err(TableError::NotNewer));
    assert_eq!(t.state_of(&h.tuple), Some(State::TimeWait), "the record stays");
    // TSval 7 is: the tuple is a half-open connection now, answering with a SYN-ACK.
    let id = t.reopen_from_syn(now, h.tuple, &syn(7), 3).expect("reopened");
    assert_eq!(t.connection(id).map(Connection::state), Some(State::SynReceived));
    let sent = out(&mut t, now);
    assert!(
        sent.iter()
            .any(|(_, s)| s.repr.flags.syn() && s.repr.ack_number == Some(SeqNumber::new(78)))
    );
    assert_eq!((t.stats().reopened, t.stats().reopen_refused), (1, 1));
    // Without a record it is a plain passive open; a live connection is not taken over.
    assert!(matches!(t.reopen_from_syn(now, h.tuple, &syn(8), 4), Err((TableError::Exists, 4))));
    assert_counts_match(&t);
}
