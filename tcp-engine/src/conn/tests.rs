//! One test per transition: a fixture per state, segments written as values, time explicit.

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;
use crate::config::KeepaliveConfig;
use crate::wire::SackRanges;

const LOCAL: &str = "10.0.0.1:80";
const REMOTE: &str = "10.0.0.2:40000";
/// Our ISS and the peer's.
const ISS: u32 = 1000;
const IRS: u32 = 5000;
const WIN: u16 = 65535;

fn tuple() -> FourTuple {
    let local: SocketAddr = LOCAL.parse().expect("addr");
    let remote: SocketAddr = REMOTE.parse().expect("addr");
    FourTuple::new(local, remote)
}

/// Timestamps, SACK and window scaling off so segments stay short; turned on per test.
fn config() -> Config {
    Config { timestamps: false, sack: false, window_scale: 0, ..Config::default() }
}

fn at_ms(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn seq(n: u32) -> SeqNumber {
    SeqNumber::new(n)
}

/// A segment from the peer.
fn from_peer(seq_n: u32, ack: Option<u32>, flags: Flags) -> TcpRepr {
    TcpRepr {
        ack_number: ack.map(SeqNumber::new),
        flags,
        window_len: WIN,
        ..TcpRepr::new(40000, 80, seq(seq_n))
    }
}

/// A segment we send, after the handshake.
fn to_peer(seq_n: u32, ack: u32, flags: Flags) -> TcpRepr {
    TcpRepr {
        ack_number: Some(seq(ack)),
        flags,
        window_len: WIN,
        ..TcpRepr::new(80, 40000, seq(seq_n))
    }
}

struct Fixture {
    conn: Connection,
    now: Instant,
}

impl Fixture {
    fn at(&mut self, ms: u64) -> &mut Fixture {
        self.now = at_ms(ms);
        self
    }

    /// Delivers a segment from the peer.
    fn recv(&mut self, repr: TcpRepr, payload: &[u8]) {
        self.conn.handle_segment(self.now, &repr, payload);
    }

    /// Everything the connection sends now.
    fn sent(&mut self) -> Vec<Segment> {
        std::iter::from_fn(|| self.conn.poll_segment(self.now)).collect()
    }

    /// Exactly one segment, and returns it.
    fn sent_one(&mut self) -> Segment {
        let mut segs = self.sent();
        assert_eq!(segs.len(), 1, "expected one segment, got {segs:#?}");
        segs.remove(0)
    }

    fn sent_nothing(&mut self) {
        let segs = self.sent();
        assert!(segs.is_empty(), "expected nothing, got {segs:#?}");
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    /// Runs the timers due at the next deadline, which must be `ms`.
    fn fire(&mut self, ms: u64) {
        assert_eq!(self.conn.poll_timeout(), Some(at_ms(ms)), "next deadline");
        self.now = at_ms(ms);
        self.conn.handle_timeout(self.now);
    }

    /// Runs the timers due at the next deadline, whatever it is; returns it in ms.
    fn fire_next(&mut self) -> u64 {
        let at = self.conn.poll_timeout().expect("a timer is set");
        self.now = at;
        self.conn.handle_timeout(at);
        at.total_millis()
    }

    fn state(&self) -> State {
        self.conn.state
    }

    fn read_all(&mut self) -> Vec<u8> {
        let mut buf = vec![0; 1 << 20];
        match self.conn.recv(&mut buf) {
            Ok(n) => buf.truncate(n),
            Err(e) => panic!("recv: {e}"),
        }
        buf
    }
}

fn fixture(conn: Connection) -> Fixture {
    Fixture { conn, now: Instant::ZERO }
}

fn handshake() -> CookieHandshake {
    CookieHandshake {
        tuple: tuple(),
        iss: seq(ISS),
        irs: seq(IRS),
        peer_mss: 1460,
        peer_wscale: None,
        our_wscale: None,
        sack_permitted: false,
        timestamps: None,
        peer_window: u32::from(WIN),
    }
}

fn established_with(config: Config) -> Fixture {
    let mut f = fixture(Connection::from_cookie(Instant::ZERO, &handshake(), Arc::new(config)));
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), &[]);
    assert_eq!(f.events(), [Event::Connected]);
    f.sent_nothing();
    f
}

fn established() -> Fixture {
    established_with(config())
}

fn listen() -> Fixture {
    fixture(Connection::listen(Instant::ZERO, tuple(), seq(ISS), Arc::new(config())))
}

fn syn_ack(window_len: u16) -> TcpRepr {
    TcpRepr {
        flags: Flags::SYN,
        max_seg_size: Some(1460),
        window_len,
        ..to_peer(ISS, IRS + 1, Flags::NONE)
    }
}

fn syn_received() -> Fixture {
    let mut f = listen();
    f.recv(TcpRepr { max_seg_size: Some(1460), ..from_peer(IRS, None, Flags::SYN) }, &[]);
    assert_eq!(f.state(), State::SynReceived);
    assert_eq!(f.sent_one().repr, syn_ack(WIN));
    f
}

fn syn_sent() -> Fixture {
    let mut f = fixture(Connection::connect(Instant::ZERO, tuple(), seq(ISS), Arc::new(config())));
    let syn = f.sent_one();
    assert_eq!(
        syn.repr,
        TcpRepr {
            flags: Flags::SYN,
            window_len: WIN,
            max_seg_size: Some(1460),
            window_scale: Some(0),
            ..TcpRepr::new(80, 40000, seq(ISS))
        }
    );
    assert_eq!(f.state(), State::SynSent);
    f
}

/// ESTABLISHED, then `shutdown()`: FIN 1001 is out.
fn fin_wait_1() -> Fixture {
    let mut f = established();
    f.conn.shutdown().expect("shutdown");
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::FIN));
    assert_eq!(f.state(), State::FinWait1);
    f
}

fn fin_wait_2() -> Fixture {
    let mut f = fin_wait_1();
    f.recv(from_peer(IRS + 1, Some(ISS + 2), Flags::NONE), &[]);
    assert_eq!(f.state(), State::FinWait2);
    f.sent_nothing();
    f
}

fn closing() -> Fixture {
    let mut f = fin_wait_1();
    // The peer's FIN crosses ours: it does not acknowledge our FIN.
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::FIN), &[]);
    assert_eq!(f.state(), State::Closing);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 2, IRS + 2, Flags::NONE));
    f
}

fn time_wait() -> Fixture {
    let mut f = fin_wait_2();
    f.at(10).recv(from_peer(IRS + 1, Some(ISS + 2), Flags::FIN), &[]);
    assert_eq!(f.state(), State::TimeWait);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 2, IRS + 2, Flags::NONE));
    f
}

fn close_wait() -> Fixture {
    let mut f = established();
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::FIN), &[]);
    assert_eq!(f.state(), State::CloseWait);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 2, Flags::NONE));
    assert_eq!(f.events(), [Event::PeerClosed]);
    f
}

fn last_ack() -> Fixture {
    let mut f = close_wait();
    f.conn.shutdown().expect("shutdown");
    assert_eq!(f.state(), State::LastAck);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 2, Flags::FIN));
    f
}

// ---------------------------------------------------------------- CLOSED

#[test]
fn closed_answers_segments_with_rst() {
    let mut f = established();
    f.conn.abort();
    f.sent_one();
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), b"late");
    assert_eq!(
        f.sent_one().repr,
        TcpRepr { flags: Flags::RST, ..TcpRepr::new(80, 40000, seq(ISS + 1)) }
    );
    // RST is never answered.
    f.recv(from_peer(IRS + 1, None, Flags::RST), &[]);
    f.sent_nothing();
}

#[test]
fn reset_reply_follows_rfc9293() {
    // Without ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; SYN and FIN count.
    let syn = from_peer(IRS, None, Flags::SYN | Flags::FIN);
    let rst = reset_reply(&syn, 10).expect("reply");
    assert_eq!(
        rst,
        TcpRepr {
            ack_number: Some(seq(IRS + 12)),
            flags: Flags::RST,
            ..TcpRepr::new(80, 40000, seq(0))
        }
    );
    assert_eq!(
        reset_reply(&from_peer(1, Some(77), Flags::NONE), 0).map(|r| r.seq_number),
        Some(seq(77))
    );
    assert_eq!(reset_reply(&from_peer(1, Some(77), Flags::RST), 0), None);
}

// ---------------------------------------------------------------- LISTEN

#[test]
fn listen_syn_goes_to_syn_received() {
    let mut f = syn_received();
    assert_eq!(f.conn.rcv_nxt, seq(IRS + 1));
    f.sent_nothing();
}

#[test]
fn listen_ignores_rst_and_answers_ack_with_rst() {
    let mut f = listen();
    f.recv(from_peer(IRS, None, Flags::RST), &[]);
    f.sent_nothing();
    f.recv(from_peer(IRS, Some(4242), Flags::NONE), &[]);
    assert_eq!(
        f.sent_one().repr,
        TcpRepr { flags: Flags::RST, ..TcpRepr::new(80, 40000, seq(4242)) }
    );
    assert_eq!(f.state(), State::Listen);
}

#[test]
fn listen_negotiates_options_from_the_syn() {
    let mut f = fixture(Connection::listen(
        Instant::ZERO,
        tuple(),
        seq(ISS),
        Arc::new(Config { window_scale: 7, ..Config::default() }),
    ));
    let syn = TcpRepr {
        max_seg_size: Some(1400),
        window_scale: Some(3),
        sack_permitted: true,
        timestamp: Some(TcpTimestamp { tsval: 777, tsecr: 0 }),
        ..from_peer(IRS, None, Flags::SYN)
    };
    f.recv(syn, &[]);
    let synack = f.sent_one().repr;
    assert_eq!(synack.max_seg_size, Some(1460));
    assert_eq!(synack.window_scale, Some(7));
    assert!(synack.sack_permitted);
    assert_eq!(synack.timestamp.map(|t| t.tsecr), Some(777));
    assert_eq!(f.conn.send_mss, 1400);
    assert_eq!(f.conn.snd_shift, 3);
}

use crate::wire::TcpTimestamp;

// ---------------------------------------------------------------- SYN-SENT

#[test]
fn syn_sent_syn_ack_goes_to_established() {
    let mut f = syn_sent();
    f.at(30).recv(
        TcpRepr { max_seg_size: Some(1460), ..from_peer(IRS, Some(ISS + 1), Flags::SYN) },
        &[],
    );
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    assert_eq!(f.events(), [Event::Connected]);
    // The SYN timed the round trip.
    assert_eq!(f.conn.srtt(), Some(Duration::from_millis(30)));
}

#[test]
fn syn_sent_syn_goes_to_syn_received() {
    // Simultaneous open (RFC 9293 figure 7).
    let mut f = syn_sent();
    f.recv(from_peer(IRS, None, Flags::SYN), &[]);
    assert_eq!(f.state(), State::SynReceived);
    let synack = f.sent_one().repr;
    assert_eq!((synack.flags, synack.ack_number), (Flags::SYN, Some(seq(IRS + 1))));
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), &[]);
    assert_eq!(f.state(), State::Established);
}

#[test]
fn syn_sent_rst_with_acceptable_ack_is_refused() {
    let mut f = syn_sent();
    // Without an ACK the RST is not believed (RFC 5961 section 3.2).
    f.recv(from_peer(0, None, Flags::RST), &[]);
    assert_eq!(f.state(), State::SynSent);
    f.recv(from_peer(0, Some(ISS + 1), Flags::RST), &[]);
    assert_eq!(f.state(), State::Closed);
    assert_eq!(f.events(), [Event::Closed(CloseReason::Reset)]);
}

#[test]
fn syn_sent_bad_ack_is_answered_with_rst() {
    let mut f = syn_sent();
    f.recv(from_peer(IRS, Some(ISS + 100), Flags::SYN), &[]);
    assert_eq!(
        f.sent_one().repr,
        TcpRepr { flags: Flags::RST, ..TcpRepr::new(80, 40000, seq(ISS + 100)) }
    );
    assert_eq!(f.state(), State::SynSent);
}

#[test]
fn syn_sent_retransmits_syn_with_backoff_then_times_out() {
    let mut f = syn_sent();
    for (ms, _) in [(1_000, 1), (3_000, 2), (7_000, 3), (15_000, 4), (31_000, 5)] {
        f.fire(ms);
        let syn = f.sent_one().repr;
        assert_eq!((syn.flags, syn.seq_number), (Flags::SYN, seq(ISS)));
    }
    f.fire(63_000);
    f.sent_nothing();
    assert_eq!(f.events(), [Event::Closed(CloseReason::TimedOut)]);
}

// ---------------------------------------------------------------- SYN-RECEIVED

#[test]
fn syn_received_ack_goes_to_established() {
    let mut f = syn_received();
    f.at(5).recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), b"hello");
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.events(), [Event::Connected, Event::Readable]);
    assert_eq!(f.read_all(), b"hello");
}

#[test]
fn syn_received_retransmits_syn_ack_then_gives_up() {
    // Seed: the server resends SYN-ACK a configured number of times, then frees the
    // half-open connection (Linux tcp_synack_retries).
    let mut f = syn_received();
    for ms in [1_000, 3_000, 7_000, 15_000, 31_000] {
        f.fire(ms);
        assert_eq!(f.sent_one().repr, syn_ack(WIN));
    }
    f.fire(63_000);
    f.sent_nothing();
    assert_eq!(f.state(), State::Closed);
    assert_eq!(f.events(), [Event::Closed(CloseReason::TimedOut)]);
}

#[test]
fn syn_received_duplicate_syn_resends_syn_ack() {
    let mut f = syn_received();
    f.recv(TcpRepr { max_seg_size: Some(1460), ..from_peer(IRS, None, Flags::SYN) }, &[]);
    assert_eq!(f.sent_one().repr, syn_ack(WIN));
}

#[test]
fn syn_received_bad_ack_is_answered_with_rst() {
    let mut f = syn_received();
    f.recv(from_peer(IRS + 1, Some(ISS + 50), Flags::NONE), &[]);
    assert_eq!(
        f.sent_one().repr,
        TcpRepr { flags: Flags::RST, ..TcpRepr::new(80, 40000, seq(ISS + 50)) }
    );
    assert_eq!(f.state(), State::SynReceived);
}

#[test]
fn syn_received_fin_on_the_third_segment_goes_to_close_wait() {
    // The third segment may acknowledge our SYN, carry data and close the peer's side at once.
    let mut f = syn_received();
    f.at(5).recv(from_peer(IRS + 1, Some(ISS + 1), Flags::FIN), b"bye");
    assert_eq!(f.state(), State::CloseWait);
    assert_eq!(f.events(), [Event::Connected, Event::Readable, Event::PeerClosed]);
    assert_eq!(f.read_all(), b"bye");
    // Its FIN is acknowledged at once: seq + 3 bytes + FIN.
    assert_eq!(f.sent_one().repr.ack_number, Some(seq(IRS + 1 + 3 + 1)));
}

#[test]
fn listen_over_ipv6_announces_the_ipv6_mss() {
    // 20 bytes less than over IPv4: the IPv6 header is 40 bytes (a 1500-byte MTU carries 1440).
    let v6 = FourTuple::new(
        "[2001:2::2]:80".parse().expect("addr"),
        "[2001:2::1]:40000".parse().expect("addr"),
    );
    let mut f = fixture(Connection::listen(Instant::ZERO, v6, seq(ISS), Arc::new(config())));
    f.recv(TcpRepr { max_seg_size: Some(1440), ..from_peer(IRS, None, Flags::SYN) }, &[]);
    assert_eq!(f.sent_one().repr.max_seg_size, Some(1440));
}

#[test]
fn syn_received_rst_closes() {
    let mut f = syn_received();
    f.recv(from_peer(IRS + 1, None, Flags::RST), &[]);
    assert_eq!(f.events(), [Event::Closed(CloseReason::Reset)]);
}

#[test]
fn syn_received_discarded_sends_nothing_and_closes() {
    let mut f = syn_received();
    f.conn.discard();
    assert_eq!(f.state(), State::Closed);
    assert_eq!(f.events(), [Event::Closed(CloseReason::Aborted)]);
    f.sent_nothing();
    assert_eq!(f.conn.poll_timeout(), None, "no SYN-ACK retransmission left");
}

// ---------------------------------------------------------------- ESTABLISHED

#[test]
fn established_from_cookie_delivers_data_on_the_third_ack() {
    let mut f = fixture(Connection::from_cookie(Instant::ZERO, &handshake(), Arc::new(config())));
    assert_eq!(f.state(), State::Established);
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::PSH), b"GET /");
    assert_eq!(f.events(), [Event::Connected, Event::Readable]);
    assert_eq!(f.read_all(), b"GET /");
    // Delayed ACK.
    f.sent_nothing();
    f.fire(40);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 6, Flags::NONE));
}

#[test]
fn established_acks_every_second_full_segment_at_once() {
    let mut f = established();
    let full = vec![7u8; 1460];
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), &full);
    f.sent_nothing();
    f.recv(from_peer(IRS + 1 + 1460, Some(ISS + 1), Flags::NONE), &full);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1 + 2920, Flags::NONE));
}

#[test]
fn established_sends_data_and_retransmits_with_backoff() {
    let mut f = established();
    assert_eq!(f.conn.send(b"hello"), Ok(5));
    assert_eq!(
        f.sent_one(),
        Segment { repr: to_peer(ISS + 1, IRS + 1, Flags::PSH), payload: b"hello".to_vec() }
    );
    f.fire(1_000);
    assert_eq!(f.sent_one().payload, b"hello");
    f.fire(3_000);
    assert_eq!(f.sent_one().payload, b"hello");
    assert_eq!(f.conn.stats().retransmits, 2);
    f.at(3_100).recv(from_peer(IRS + 1, Some(ISS + 6), Flags::NONE), &[]);
    assert_eq!(f.conn.send_queue_len(), 0);
    // The emptied send buffer is kept a while, then given back.
    assert!(f.conn.buffer_bytes() > 0);
    f.fire(3_300);
    assert_eq!(f.conn.buffer_bytes(), 0);
    // Nothing in flight: only keepalive remains.
    assert_eq!(f.conn.poll_timeout(), Some(at_ms(3_100) + Duration::from_secs(7200)));
}

#[test]
fn established_data_retry_limit_times_out() {
    let mut f = established_with(Config { data_retries: 3, ..config() });
    f.conn.send(b"x").expect("send");
    f.sent_one();
    for ms in [1_000, 3_000, 7_000] {
        f.fire(ms);
        f.sent_one();
    }
    f.fire(15_000);
    assert_eq!(f.events(), [Event::Closed(CloseReason::TimedOut)]);
}

#[test]
fn established_rtt_from_timestamps() {
    let mut hs = handshake();
    hs.timestamps = Some(TsInfo { ts_recent: 100, our_tsval_offset: 5_000 });
    let mut f = fixture(Connection::from_cookie(Instant::ZERO, &hs, Arc::new(config())));
    f.conn.send(b"ping").expect("send");
    let seg = f.sent_one().repr;
    assert_eq!(seg.timestamp, Some(TcpTimestamp { tsval: 5_000, tsecr: 100 }));
    let ack = TcpRepr {
        timestamp: Some(TcpTimestamp { tsval: 101, tsecr: 5_000 }),
        ..from_peer(IRS + 1, Some(ISS + 5), Flags::NONE)
    };
    f.at(120).recv(ack, &[]);
    assert_eq!(f.conn.srtt(), Some(Duration::from_millis(120)));
    // PAWS: an older TSval is refused and answered with an ACK.
    let old = TcpRepr {
        timestamp: Some(TcpTimestamp { tsval: 50, tsecr: 5_000 }),
        ..from_peer(IRS + 1, Some(ISS + 5), Flags::NONE)
    };
    f.recv(old, b"stale");
    assert_eq!(f.sent_one().repr.ack_number, Some(seq(IRS + 1)));
    assert_eq!(f.conn.recv_queue_len(), 0);
}

#[test]
fn established_out_of_order_data_gets_duplicate_ack_with_sack() {
    let mut hs = handshake();
    hs.sack_permitted = true;
    let mut f = fixture(Connection::from_cookie(Instant::ZERO, &hs, Arc::new(config())));
    f.recv(from_peer(IRS + 11, Some(ISS + 1), Flags::NONE), b"0123456789");
    let mut sack = SackRanges::new();
    sack.push(seq(IRS + 11), seq(IRS + 21));
    assert_eq!(
        f.sent_one().repr,
        TcpRepr { sack_ranges: sack, ..to_peer(ISS + 1, IRS + 1, Flags::NONE) }
    );
    // The gap fills: ACK at once, no SACK left.
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), b"abcdefghij");
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 21, Flags::NONE));
    assert_eq!(f.read_all(), b"abcdefghij0123456789");
}

#[test]
fn established_fast_retransmit_on_third_duplicate_ack() {
    let mut f = established();
    let data = vec![1u8; 5 * 1460];
    f.conn.send(&data).expect("send");
    assert_eq!(f.sent().len(), 5);
    f.at(10).recv(from_peer(IRS + 1, Some(ISS + 1 + 1460), Flags::NONE), &[]);
    for _ in 0..2 {
        f.recv(from_peer(IRS + 1, Some(ISS + 1 + 1460), Flags::NONE), &[]);
        f.sent_nothing();
    }
    f.recv(from_peer(IRS + 1, Some(ISS + 1 + 1460), Flags::NONE), &[]);
    let rtx = f.sent_one();
    assert_eq!((rtx.repr.seq_number, rtx.payload.len()), (seq(ISS + 1 + 1460), 1460));
    assert_eq!(f.conn.stats().fast_retransmits, 1);
    // A partial ACK retransmits the next segment (RFC 6582).
    f.recv(from_peer(IRS + 1, Some(ISS + 1 + 2 * 1460), Flags::NONE), &[]);
    assert_eq!(f.sent_one().repr.seq_number, seq(ISS + 1 + 2 * 1460));
}

#[test]
fn established_sack_recovery_skips_sacked_data() {
    let mut hs = handshake();
    hs.sack_permitted = true;
    let mut f = fixture(Connection::from_cookie(Instant::ZERO, &hs, Arc::new(config())));
    f.conn.send(&vec![1u8; 6 * 1460]).expect("send");
    assert_eq!(f.sent().len(), 6);
    // Segments 1 and 3 are lost; 2, 4, 5, 6 arrive and are SACKed.
    let base = ISS + 1;
    let mut sack = SackRanges::new();
    sack.push(seq(base + 1460), seq(base + 2 * 1460));
    let dup = |sack| TcpRepr { sack_ranges: sack, ..from_peer(IRS + 1, Some(base), Flags::NONE) };
    f.recv(dup(sack), &[]);
    let mut sack = SackRanges::new();
    sack.push(seq(base + 3 * 1460), seq(base + 6 * 1460));
    sack.push(seq(base + 1460), seq(base + 2 * 1460));
    f.recv(dup(sack), &[]);
    // Four segments SACKed: both holes are declared lost (RACK: sent before segments that
    // were delivered) and resent, PRR letting both go (RFC 6937: as much as was
    // delivered); never the SACKed segment 2.
    let rtx: Vec<SeqNumber> = f.sent().iter().map(|s| s.repr.seq_number).collect();
    assert_eq!(rtx, [seq(base), seq(base + 2 * 1460)]);
    // The next duplicate ACK has nothing left to fill: the SACKed data is not resent.
    f.recv(dup(sack), &[]);
    f.sent_nothing();
}

#[test]
fn established_nagle_holds_small_segments_while_data_is_in_flight() {
    let mut f = established();
    f.conn.send(b"a").expect("send");
    assert_eq!(f.sent_one().payload, b"a");
    f.conn.send(b"b").expect("send");
    f.sent_nothing();
    f.recv(from_peer(IRS + 1, Some(ISS + 2), Flags::NONE), &[]);
    assert_eq!(f.sent_one().payload, b"b");

    let mut f = established_with(Config { nagle: false, ..config() });
    f.conn.send(b"a").expect("send");
    f.sent_one();
    f.conn.send(b"b").expect("send");
    assert_eq!(f.sent_one().payload, b"b");
}

#[test]
fn established_zero_window_is_probed() {
    let mut f = established();
    f.recv(TcpRepr { window_len: 0, ..from_peer(IRS + 1, Some(ISS + 1), Flags::NONE) }, &[]);
    f.conn.send(b"blocked").expect("send");
    f.sent_nothing();
    f.fire(1_000);
    // Probe: one below SND.UNA, no data.
    assert_eq!(f.sent_one().repr, to_peer(ISS, IRS + 1, Flags::NONE));
    f.fire(3_000);
    f.sent_one();
    // The window opens: the data goes.
    f.recv(TcpRepr { window_len: 100, ..from_peer(IRS + 1, Some(ISS + 1), Flags::NONE) }, &[]);
    assert_eq!(f.sent_one().payload, b"blocked");
}

#[test]
fn established_bounded_send_buffer_reports_writable() {
    let mut f = established_with(Config { send_buffer_size: 4000, nagle: false, ..config() });
    assert_eq!(f.conn.send(&[0u8; 10_000]), Ok(4000));
    assert_eq!(f.conn.send(b"more"), Ok(0));
    let sent = f.sent();
    assert_eq!(sent.iter().map(|s| s.payload.len()).sum::<usize>(), 4000);
    f.recv(from_peer(IRS + 1, Some(ISS + 1 + 1460), Flags::NONE), &[]);
    assert_eq!(f.events(), [Event::Writable]);
    assert_eq!(f.conn.send_capacity(), 1460);
}

#[test]
fn established_data_is_read_in_place_and_copied_once() {
    let mut f = established();
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::PSH), b"in place");
    assert_eq!(f.conn.stats().bytes_copied, 8, "into the receive buffer");
    assert_eq!(f.conn.recv_slices(), (&b"in place"[..], &b""[..]));
    assert_eq!(f.conn.consume(3), 3);
    assert_eq!(f.conn.recv_slices().0, b"place");
    assert_eq!(f.conn.consume(100), 5, "no more than is readable");
    assert_eq!(f.conn.stats().bytes_copied, 8, "reading in place copies nothing");
    assert!(!f.conn.recv_finished());
    f.recv(from_peer(IRS + 9, Some(ISS + 1), Flags::FIN), &[]);
    assert!(f.conn.recv_finished(), "FIN and everything before it read");
}

#[test]
fn established_send_received_echoes_with_one_copy_and_stops_when_full() {
    let mut f = established_with(Config { send_buffer_size: 6, nagle: false, ..config() });
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::PSH), b"echo me");
    let copied = f.conn.stats().bytes_copied;
    assert_eq!(f.conn.send_room(), 6);
    assert_eq!(f.conn.send_received(), 6, "as much as the send buffer takes");
    assert_eq!(f.conn.stats().bytes_copied, copied + 6, "one copy, receive to send buffer");
    assert_eq!(f.conn.recv_slices().0, b"e", "the rest stays unread");
    assert_eq!(f.conn.send_room(), 0);
    assert_eq!(f.sent_one().payload, b"echo m");
    assert!(!f.conn.fin_received());
    f.recv(from_peer(IRS + 8, Some(ISS + 7), Flags::FIN), &[]);
    assert!(f.conn.fin_received(), "FIN seen, one byte still unread");
    assert!(!f.conn.recv_finished());
    assert_eq!(f.conn.send_received(), 1);
    assert!(f.conn.recv_finished());
    f.conn.shutdown().expect("shutdown");
    assert_eq!(f.conn.send_room(), 0, "nothing more may be queued after our FIN");
    assert_eq!(f.conn.send_received(), 0);
}

#[test]
fn established_send_with_fills_the_send_buffer_in_place() {
    let mut f = established();
    let queued = f.conn.send_with(5, |spare| {
        spare[..5].copy_from_slice(b"hello");
        5
    });
    assert_eq!(queued, Ok(5));
    assert_eq!(f.conn.stats().bytes_copied, 0, "written in place");
    assert_eq!(
        f.sent_one(),
        Segment { repr: to_peer(ISS + 1, IRS + 1, Flags::PSH), payload: b"hello".to_vec() }
    );
    assert_eq!(f.conn.stats().bytes_copied, 5, "once, into the segment");
    // A full buffer offers no room (and `fill` is not called); the ACK that makes room
    // reports Writable.
    let mut f = established_with(Config { send_buffer_size: 10, ..config() });
    assert_eq!(f.conn.send_with(100, |spare| spare.len()), Ok(10));
    assert_eq!(f.conn.send_with(100, |_| unreachable!("no room to offer")), Ok(0));
    assert_eq!(f.sent_one().payload.len(), 10);
    f.recv(from_peer(IRS + 1, Some(ISS + 11), Flags::NONE), &[]);
    assert_eq!(f.events(), [Event::Writable]);
    assert_eq!(f.conn.send_capacity(), 10);
}

#[test]
fn established_idle_connection_gives_its_buffers_back() {
    let mut f = established();
    assert_eq!(f.conn.buffer_bytes(), 0, "nothing before data");
    f.at(10).recv(from_peer(IRS + 1, Some(ISS + 1), Flags::PSH), b"ping");
    assert!(f.conn.buffer_bytes() > 0);
    assert_eq!(f.read_all(), b"ping");
    // Kept for the reclaim delay after the last data (a steady transfer would refill it),
    // then given back.
    f.fire(50);
    f.sent_one();
    assert!(f.conn.buffer_bytes() > 0);
    f.fire(210);
    assert_eq!(f.conn.buffer_bytes(), 0);
    assert_eq!(f.conn.poll_timeout(), Some(at_ms(10) + Duration::from_secs(7200)));
    // With no delay, an emptied buffer goes at once.
    let zero = Config { buffer_reclaim_delay: Duration::ZERO, ..config() };
    let mut f = established_with(zero);
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::PSH), b"ping");
    assert_eq!(f.read_all(), b"ping");
    assert_eq!(f.conn.buffer_bytes(), 0);
}

#[test]
fn established_receive_window_closes_and_reopens() {
    let mut f = established_with(Config { recv_buffer_size: 4000, ..config() });
    // The cookie connection offered min(buffer, 64 KiB) = 4000.
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), &[9u8; 4000]);
    f.fire(40);
    assert_eq!(
        f.sent_one().repr,
        TcpRepr { window_len: 0, ..to_peer(ISS + 1, IRS + 4001, Flags::NONE) }
    );
    // Beyond the window: dropped and ACKed.
    f.recv(from_peer(IRS + 4001, Some(ISS + 1), Flags::NONE), b"x");
    assert_eq!(f.sent_one().repr.window_len, 0);
    // Reading opens the window: an update goes out.
    assert_eq!(f.read_all().len(), 4000);
    assert_eq!(
        f.sent_one().repr,
        TcpRepr { window_len: 4000, ..to_peer(ISS + 1, IRS + 4001, Flags::NONE) }
    );
}

#[test]
fn established_window_scaling_applies_both_ways() {
    let mut hs = handshake();
    hs.peer_wscale = Some(2);
    hs.our_wscale = Some(7);
    let mut f = fixture(Connection::from_cookie(Instant::ZERO, &hs, Arc::new(config())));
    f.recv(TcpRepr { window_len: 1000, ..from_peer(IRS + 1, Some(ISS + 1), Flags::NONE) }, &[]);
    assert_eq!(f.conn.snd_wnd, 4000);
    f.conn.send(b"x").expect("send");
    // 256 KiB free >> 7.
    assert_eq!(f.sent_one().repr.window_len, 2048);
}

#[test]
fn established_rst_in_window_gets_challenge_ack() {
    let mut f = established();
    f.recv(from_peer(IRS + 100, None, Flags::RST), &[]);
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    assert_eq!(f.conn.stats().challenge_acks, 1);
}

#[test]
fn challenge_acks_are_rate_limited_per_connection() {
    // RFC 5961 section 7: a burst of spoofed in-window RSTs draws one ACK per interval.
    let mut f = established();
    f.at(1_000);
    for _ in 0..10 {
        f.recv(from_peer(IRS + 100, None, Flags::RST), &[]);
    }
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    assert_eq!(f.conn.stats().challenge_acks, 1);
    // Still inside the interval (500 ms): nothing; once it has passed, answered again.
    f.at(1_499).recv(from_peer(IRS + 1, None, Flags::SYN), &[]);
    assert!(f.sent().is_empty());
    f.at(1_500).recv(from_peer(IRS + 1, None, Flags::SYN), &[]);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    assert_eq!(f.conn.stats().challenge_acks, 2);
    assert_eq!(f.state(), State::Established);
}

#[test]
fn time_wait_ignores_rst() {
    // RFC 1337 TW-1: even a RST exactly at RCV.NXT leaves TIME-WAIT running to its end.
    let mut f = time_wait();
    let _ = f.events();
    // RCV.NXT is IRS + 2 after the peer's FIN.
    f.at(20).recv(from_peer(IRS + 2, None, Flags::RST), &[]);
    f.sent_nothing();
    assert_eq!(f.state(), State::TimeWait);
    assert!(f.events().is_empty(), "no Closed(Reset)");
}

#[test]
fn established_rst_out_of_window_is_ignored() {
    let mut f = established();
    f.recv(from_peer(IRS + 100_000, None, Flags::RST), &[]);
    f.sent_nothing();
    assert_eq!(f.state(), State::Established);
}

#[test]
fn established_rst_at_rcv_nxt_resets() {
    let mut f = established();
    f.recv(from_peer(IRS + 1, None, Flags::RST), &[]);
    f.sent_nothing();
    assert_eq!(f.events(), [Event::Closed(CloseReason::Reset)]);
    assert_eq!(f.conn.recv(&mut [0; 4]), Err(RecvError::Closed));
}

#[test]
fn established_syn_gets_challenge_ack() {
    let mut f = established();
    f.recv(from_peer(IRS + 1, None, Flags::SYN), &[]);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.conn.stats().challenge_acks, 1);
}

#[test]
fn established_ack_of_unsent_data_is_acked_and_dropped() {
    let mut f = established();
    f.recv(from_peer(IRS + 1, Some(ISS + 500), Flags::NONE), b"data");
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    assert_eq!(f.conn.recv_queue_len(), 0);
}

#[test]
fn established_ack_too_old_gets_challenge_ack() {
    // RFC 5961 section 5.2: SEG.ACK < SND.UNA - MAX.SND.WND.
    let mut f = established();
    f.recv(from_peer(IRS + 1, Some(ISS.wrapping_sub(70_000)), Flags::NONE), b"data");
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    assert_eq!(f.conn.stats().challenge_acks, 1);
}

#[test]
fn established_fin_goes_to_close_wait() {
    close_wait();
}

#[test]
fn established_shutdown_goes_to_fin_wait_1() {
    fin_wait_1();
}

#[test]
fn established_fin_before_missing_data_waits_for_it() {
    let mut f = established();
    f.recv(from_peer(IRS + 4, Some(ISS + 1), Flags::FIN), b"def");
    assert_eq!(f.state(), State::Established);
    f.sent_one();
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), b"abc");
    assert_eq!(f.state(), State::CloseWait);
    assert_eq!(f.sent_one().repr.ack_number, Some(seq(IRS + 8)));
    assert_eq!(f.read_all(), b"abcdef");
    assert_eq!(f.conn.recv(&mut [0; 8]), Ok(0), "end of stream");
}

#[test]
fn abort_sends_rst() {
    let mut f = established();
    f.conn.abort();
    assert_eq!(
        f.sent_one().repr,
        TcpRepr { flags: Flags::RST, ..TcpRepr::new(80, 40000, seq(ISS + 1)) }
    );
    assert_eq!(f.events(), [Event::Closed(CloseReason::Aborted)]);
}

#[test]
fn close_with_unread_data_resets() {
    let mut f = established();
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), b"unread");
    f.conn.close().expect("close");
    assert!(f.sent().iter().any(|s| s.repr.flags.rst()));
    assert_eq!(f.state(), State::Closed);
}

// ---------------------------------------------------------------- FIN-WAIT-1

#[test]
fn fin_wait_1_ack_goes_to_fin_wait_2() {
    fin_wait_2();
}

#[test]
fn fin_wait_1_fin_ack_goes_straight_to_time_wait() {
    // Seed: FIN+ACK acknowledging our FIN skips FIN-WAIT-2.
    let mut f = fin_wait_1();
    f.recv(from_peer(IRS + 1, Some(ISS + 2), Flags::FIN), &[]);
    assert_eq!(f.state(), State::TimeWait);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 2, IRS + 2, Flags::NONE));
}

#[test]
fn fin_wait_1_fin_goes_to_closing() {
    closing();
}

#[test]
fn fin_wait_1_retransmits_fin() {
    let mut f = fin_wait_1();
    f.fire(1_000);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::FIN));
}

#[test]
fn fin_wait_1_sends_queued_data_before_fin() {
    let mut f = established();
    f.conn.send(b"last words").expect("send");
    f.conn.shutdown().expect("shutdown");
    assert_eq!(f.state(), State::FinWait1);
    assert_eq!(f.conn.send(b"more"), Err(SendError::Closed));
    let seg = f.sent_one();
    assert_eq!(seg.repr, to_peer(ISS + 1, IRS + 1, Flags::FIN | Flags::PSH));
    assert_eq!(seg.payload, b"last words");
}

// ---------------------------------------------------------------- FIN-WAIT-2

#[test]
fn fin_wait_2_still_receives_data() {
    // Half-close: the peer keeps sending after acknowledging our FIN.
    let mut f = fin_wait_2();
    f.recv(from_peer(IRS + 1, Some(ISS + 2), Flags::NONE), b"still talking");
    assert_eq!(f.read_all(), b"still talking");
    assert_eq!(f.state(), State::FinWait2);
}

#[test]
fn fin_wait_2_fin_goes_to_time_wait() {
    time_wait();
}

#[test]
fn fin_wait_2_after_close_times_out() {
    let mut f = established();
    f.conn.close().expect("close");
    f.sent_one();
    f.at(5).recv(from_peer(IRS + 1, Some(ISS + 2), Flags::NONE), &[]);
    assert_eq!(f.state(), State::FinWait2);
    f.fire(60_005);
    assert_eq!(f.events(), [Event::Closed(CloseReason::TimedOut)]);
}

#[test]
fn fin_wait_2_data_after_close_resets() {
    let mut f = established();
    f.conn.close().expect("close");
    f.sent_one();
    f.recv(from_peer(IRS + 1, Some(ISS + 2), Flags::NONE), b"nobody reads this");
    assert_eq!(f.sent_one().repr.flags, Flags::RST);
    assert_eq!(f.events(), [Event::Closed(CloseReason::Aborted)]);
}

// ---------------------------------------------------------------- CLOSING

#[test]
fn closing_ack_goes_to_time_wait() {
    let mut f = closing();
    f.recv(from_peer(IRS + 2, Some(ISS + 2), Flags::NONE), &[]);
    assert_eq!(f.state(), State::TimeWait);
}

// ---------------------------------------------------------------- TIME-WAIT

#[test]
fn time_wait_ends_after_2msl() {
    let mut f = time_wait();
    f.fire(60_010);
    assert_eq!(f.state(), State::Closed);
    assert_eq!(f.events(), [Event::PeerClosed, Event::Closed(CloseReason::Normal)]);
}

#[test]
fn time_wait_reacks_retransmitted_fin_and_restarts_2msl() {
    // Seed: our last ACK was lost, the peer resends its FIN: ACK it again and restart 2 MSL.
    let mut f = time_wait();
    f.at(20_000).recv(from_peer(IRS + 1, Some(ISS + 2), Flags::FIN), &[]);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 2, IRS + 2, Flags::NONE));
    assert_eq!(f.state(), State::TimeWait);
    f.fire(80_000);
    assert_eq!(f.state(), State::Closed);
}

#[test]
fn time_wait_msl_is_configurable() {
    let mut f = established_with(Config { msl: Duration::from_secs(1), ..config() });
    f.conn.shutdown().expect("shutdown");
    f.sent_one();
    f.recv(from_peer(IRS + 1, Some(ISS + 2), Flags::FIN), &[]);
    f.sent_one();
    f.fire(2_000);
    assert_eq!(f.state(), State::Closed);
}

// ---------------------------------------------------------------- CLOSE-WAIT

#[test]
fn close_wait_keeps_sending() {
    // Seed: after the peer's FIN the server may still send (half-close).
    let mut f = close_wait();
    f.conn.send(b"response").expect("send");
    let seg = f.sent_one();
    assert_eq!(seg.repr, to_peer(ISS + 1, IRS + 2, Flags::PSH));
    assert_eq!(seg.payload, b"response");
    assert_eq!(f.conn.recv(&mut [0; 8]), Ok(0));
}

#[test]
fn close_wait_shutdown_goes_to_last_ack() {
    last_ack();
}

// ---------------------------------------------------------------- LAST-ACK

#[test]
fn last_ack_ack_closes() {
    let mut f = last_ack();
    f.recv(from_peer(IRS + 2, Some(ISS + 2), Flags::NONE), &[]);
    assert_eq!(f.state(), State::Closed);
    assert_eq!(f.events(), [Event::Closed(CloseReason::Normal)]);
}

#[test]
fn last_ack_retransmits_fin() {
    let mut f = last_ack();
    f.fire(1_000);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 2, Flags::FIN));
    f.fire(3_000);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 2, Flags::FIN));
    f.recv(from_peer(IRS + 2, Some(ISS + 2), Flags::NONE), &[]);
    assert_eq!(f.state(), State::Closed);
}

// ---------------------------------------------------------------- keepalive and idle

#[test]
fn keepalive_probes_every_75s_then_resets_after_10() {
    // Seed: 2 h of silence, then a probe every 75 s; after 10 unanswered, RST.
    let mut f = established();
    let idle = 2 * 3600 * 1000;
    for probe in 0..10 {
        f.fire(idle + probe * 75_000);
        assert_eq!(f.sent_one().repr, to_peer(ISS, IRS + 1, Flags::NONE), "probe {probe}");
    }
    f.fire(idle + 10 * 75_000);
    assert_eq!(
        f.sent_one().repr,
        TcpRepr { flags: Flags::RST, ..TcpRepr::new(80, 40000, seq(ISS + 1)) }
    );
    assert_eq!(f.events(), [Event::Closed(CloseReason::KeepaliveTimeout)]);
}

#[test]
fn keepalive_answered_keeps_the_connection() {
    let mut f = established();
    let idle = 2 * 3600 * 1000;
    f.fire(idle);
    f.sent_one();
    f.fire(idle + 75_000);
    f.sent_one();
    // The peer answers the probe with an ACK: the count starts over.
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), &[]);
    assert_eq!(f.conn.poll_timeout(), Some(at_ms(idle + 75_000 + idle)));
    assert_eq!(f.state(), State::Established);
}

#[test]
fn keepalive_answers_a_probe_from_the_peer() {
    let mut f = established();
    f.recv(from_peer(IRS, Some(ISS + 1), Flags::NONE), &[]);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
}

#[test]
fn keepalive_is_configurable() {
    let ka = KeepaliveConfig {
        enabled: true,
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(1),
        probes: 2,
    };
    let mut f = established_with(Config { keepalive: ka, ..config() });
    f.fire(10_000);
    f.sent_one();
    f.fire(11_000);
    f.sent_one();
    f.fire(12_000);
    assert_eq!(f.sent_one().repr.flags, Flags::RST);
}

#[test]
fn idle_timeout_resets() {
    let ka = KeepaliveConfig { enabled: false, ..KeepaliveConfig::default() };
    let mut f = established_with(Config {
        keepalive: ka,
        idle_timeout: Some(Duration::from_secs(60)),
        ..config()
    });
    f.at(30_000).recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), b"x");
    f.fire(30_040);
    f.sent_one();
    // The idle deadline moves lazily: at 60 s it finds the activity at 30 s and re-arms.
    f.fire(60_000);
    f.sent_nothing();
    f.fire(90_000);
    assert_eq!(f.sent_one().repr.flags, Flags::RST);
    assert_eq!(f.events(), [Event::Readable, Event::Closed(CloseReason::IdleTimeout)]);
}

// ---------------------------------------------------------------- issue 9: the audit's RFC gaps

use crate::wire::EmitSegment as _;
use crate::wire::HEADER_LEN;

/// A connection with SACK and timestamps, as Linux negotiates them.
fn established_sack_ts() -> Fixture {
    let mut hs = handshake();
    hs.sack_permitted = true;
    hs.timestamps = Some(TsInfo { ts_recent: 1, our_tsval_offset: 0 });
    let config = Config { sack: true, timestamps: true, ..config() };
    let mut f = fixture(Connection::from_cookie(Instant::ZERO, &hs, Arc::new(config)));
    f.recv(with_ts(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), 1), &[]);
    assert_eq!(f.events(), [Event::Connected]);
    f
}

/// `repr` with the peer's timestamp `tsval` (echoing 0).
fn with_ts(repr: TcpRepr, tsval: u32) -> TcpRepr {
    TcpRepr { timestamp: Some(TcpTimestamp { tsval, tsecr: 0 }), ..repr }
}

#[test]
fn data_segments_carrying_sack_blocks_stay_within_the_mss() {
    // Item 1, RFC 9293 section 3.7.1: the payload is the send MSS minus the options the
    // segment actually carries. Three holes in our receive queue: our data segments carry
    // the timestamp and three SACK blocks (40 option bytes), so 1420 bytes of payload.
    let mut f = established_sack_ts();
    for i in 0..3 {
        f.recv(with_ts(from_peer(IRS + 101 + 200 * i, Some(ISS + 1), Flags::NONE), 2), b"x");
    }
    f.sent();
    f.conn.send(&[7u8; 3 * 1460]).expect("send");
    let segs = f.sent();
    for s in &segs {
        assert_eq!(s.repr.sack_ranges.len(), 3, "{:?}", s.repr);
        let options = s.repr.header_len() - HEADER_LEN;
        assert!(options + s.payload.len() <= 1460, "{options} + {} > MSS", s.payload.len());
    }
    assert_eq!(segs[0].payload.len(), 1420);
    assert_eq!(segs.iter().map(|s| s.payload.len()).sum::<usize>(), 3 * 1460);
}

#[test]
fn out_of_window_acks_are_rate_limited() {
    // Item 9, RFC 5961 section 7 (Linux tcp_oow_rate_limited, tcp_invalid_ratelimit): a burst
    // of out-of-window segments without data draws one ACK per interval, not one each.
    let mut f = established();
    f.at(1_000);
    let mut answers = Vec::new();
    for _ in 0..10 {
        f.recv(from_peer(IRS + 100_000, Some(ISS + 1), Flags::NONE), &[]);
        answers.extend(f.sent());
    }
    assert_eq!(answers.len(), 1, "{answers:#?}");
    assert_eq!(answers[0].repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    f.at(1_499).recv(from_peer(IRS + 100_000, Some(ISS + 1), Flags::NONE), &[]);
    f.sent_nothing();
    f.at(1_500).recv(from_peer(IRS + 100_000, Some(ISS + 1), Flags::NONE), &[]);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    // Data is never limited: it may be a retransmission whose ACK was lost (Linux exempts it
    // too: data segments are not part of an ACK loop).
    f.recv(from_peer(IRS - 10, Some(ISS + 1), Flags::NONE), b"old");
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
}

#[test]
fn acks_of_unsent_data_are_rate_limited() {
    // Item 9, RFC 5961 section 5.2 and 7: SEG.ACK > SND.NXT is answered with an ACK, at most
    // one per interval.
    let mut f = established();
    f.at(1_000);
    let mut answers = Vec::new();
    for _ in 0..10 {
        f.recv(from_peer(IRS + 1, Some(ISS + 500), Flags::NONE), &[]);
        answers.extend(f.sent());
    }
    assert_eq!(answers.len(), 1, "{answers:#?}");
    assert_eq!(answers[0].repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
    f.at(1_500).recv(from_peer(IRS + 1, Some(ISS + 500), Flags::NONE), &[]);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1, Flags::NONE));
}

#[test]
fn delayed_ack_acks_every_second_segment_just_below_the_mss() {
    // Item 10, as Linux's __tcp_ack_snd_check: ACK at once when more than one segment of the
    // peer's (estimated) MSS is unacknowledged, whatever its exact size.
    let mut f = established();
    let seg = [7u8; 1400];
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), &seg);
    f.sent_nothing();
    f.recv(from_peer(IRS + 1 + 1400, Some(ISS + 1), Flags::NONE), &seg);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 1 + 2800, Flags::NONE));
    // Small (interactive) segments still wait for the delayed-ACK timer.
    f.at(100).recv(from_peer(IRS + 2801, Some(ISS + 1), Flags::NONE), b"ab");
    f.recv(from_peer(IRS + 2803, Some(ISS + 1), Flags::NONE), b"cd");
    f.sent_nothing();
    f.fire(140);
    assert_eq!(f.sent_one().repr, to_peer(ISS + 1, IRS + 2805, Flags::NONE));
}

#[test]
fn nagle_minshall_sends_the_tail_of_a_write_at_once() {
    // Item 11, Minshall's variant as Linux (tcp_minshall_check): a small segment waits only
    // while an earlier small segment is unacknowledged, not behind full-sized ones. Echoing
    // 2800 bytes sends both segments at once.
    let mut f = established();
    f.conn.send(&[1u8; 2800]).expect("send");
    let lens: Vec<usize> = f.sent().iter().map(|s| s.payload.len()).collect();
    assert_eq!(lens, [1460, 1340]);
    // A second small write waits for the first small segment's ACK.
    f.conn.send(b"more").expect("send");
    f.sent_nothing();
    f.recv(from_peer(IRS + 1, Some(ISS + 1 + 1460), Flags::NONE), &[]);
    f.sent_nothing();
    f.recv(from_peer(IRS + 1, Some(ISS + 1 + 2800), Flags::NONE), &[]);
    assert_eq!(f.sent_one().payload, b"more");
}

#[test]
fn paws_drops_segments_without_a_timestamp() {
    // Item 13, RFC 7323 section 3.2: once timestamps are negotiated, a non-RST segment
    // without one is silently dropped; a RST is processed regardless.
    let mut f = established_sack_ts();
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::PSH), b"no timestamp");
    f.sent_nothing();
    assert_eq!(f.conn.recv_queue_len(), 0);
    assert!(f.events().is_empty());
    f.recv(from_peer(IRS + 1, None, Flags::RST), &[]);
    assert_eq!(f.events(), [Event::Closed(CloseReason::Reset)]);
}

#[test]
fn paws_forgets_ts_recent_after_24_days_idle() {
    // Item 13, RFC 7323 section 5.5: after more than 24 days idle TS.Recent is invalid, so a
    // timestamp that looks old is accepted (the peer's clock may have wrapped).
    let ka = KeepaliveConfig { enabled: false, ..KeepaliveConfig::default() };
    let mut hs = handshake();
    hs.timestamps = Some(TsInfo { ts_recent: 1_000_000, our_tsval_offset: 0 });
    let config = Config { timestamps: true, keepalive: ka, ..config() };
    let mut f = fixture(Connection::from_cookie(Instant::ZERO, &hs, Arc::new(config)));
    let _ = f.events();
    let day = 24 * 3600 * 1000;
    // One day idle: still PAWS-rejected (and answered with an ACK).
    f.at(day).recv(with_ts(from_peer(IRS + 1, Some(ISS + 1), Flags::PSH), 5), b"old?");
    assert_eq!(f.sent_one().repr.ack_number, Some(seq(IRS + 1)));
    assert_eq!(f.conn.recv_queue_len(), 0);
    // 25 days idle: accepted, and the timestamp becomes TS.Recent.
    f.at(25 * day).recv(with_ts(from_peer(IRS + 1, Some(ISS + 1), Flags::PSH), 5), b"new");
    assert_eq!(f.read_all(), b"new");
    f.at(25 * day + 1).recv(with_ts(from_peer(IRS + 4, Some(ISS + 1), Flags::PSH), 6), b"!");
    assert_eq!(f.read_all(), b"!");
}

#[test]
fn nodelay_sends_every_small_segment_at_once() {
    // Item 11: per connection, from the configured default.
    let mut f = established();
    assert!(!f.conn.nodelay(), "Config::nagle is on by default");
    f.conn.set_nodelay(true);
    f.conn.send(b"a").expect("send");
    assert_eq!(f.sent_one().payload, b"a");
    f.conn.send(b"b").expect("send");
    assert_eq!(f.sent_one().payload, b"b");
    let f = established_with(Config { nagle: false, ..config() });
    assert!(f.conn.nodelay());
}

#[test]
fn urgent_data_is_reported_and_stays_inline() {
    // Item 14, RFC 9293 section 3.8.5: the urgent pointer is reported when it arrives and
    // whenever it advances (MUST-32), the application learns how much urgent data is left
    // (MUST-33), and the urgent bytes are delivered in order, none lost (RFC 6093).
    let mut f = established();
    let urg = |seq_n, at| TcpRepr {
        urgent_at: at,
        ..from_peer(seq_n, Some(ISS + 1), Flags::URG | Flags::PSH)
    };
    f.recv(urg(IRS + 1, 3), b"abcdef");
    assert_eq!(f.events(), [Event::Readable, Event::Urgent]);
    assert_eq!(f.conn.urgent_remaining(), 3);
    let mut two = [0u8; 2];
    assert_eq!(f.conn.recv(&mut two), Ok(2));
    assert_eq!(f.conn.urgent_remaining(), 1);
    assert_eq!(f.read_all(), b"cdef");
    assert_eq!(f.conn.urgent_remaining(), 0);
    // The same pointer again is no news; one beyond the data received so far (MUST-30:
    // urgent data of any length) is.
    f.recv(urg(IRS + 7, 0), b"g");
    assert_eq!(f.events(), [Event::Readable]);
    f.recv(urg(IRS + 8, 1000), b"h");
    assert_eq!(f.events(), [Event::Readable, Event::Urgent]);
    assert_eq!(f.conn.urgent_remaining(), 1001, "from the unread g on");
    assert_eq!(f.read_all(), b"gh");
    assert_eq!(f.conn.urgent_remaining(), 999);
}

#[test]
fn send_urgent_marks_segments_up_to_the_pointer() {
    // Item 14, MUST-31: the pointer names the byte after the urgent data; urgent data is
    // pushed past Nagle.
    let mut f = established();
    f.conn.send(b"a").expect("send");
    assert_eq!(f.sent_one().payload, b"a");
    assert_eq!(f.conn.send_urgent(b"!!"), Ok(2));
    let seg = f.sent_one();
    assert_eq!(seg.payload, b"!!");
    assert_eq!((seg.repr.flags, seg.repr.urgent_at), (Flags::URG | Flags::PSH, 2));
    // Once acknowledged, later segments carry no pointer.
    f.recv(from_peer(IRS + 1, Some(ISS + 4), Flags::NONE), &[]);
    f.conn.send(b"b").expect("send");
    let seg = f.sent_one();
    assert_eq!((seg.repr.flags, seg.repr.urgent_at), (Flags::PSH, 0));
}

#[test]
fn reassembly_keeps_at_most_the_configured_ranges() {
    // Item 12: one-byte runs at every other byte, each below all the others (the worst order
    // for a sorted array), then each above all the others. The connection keeps at most
    // `reassembly_max_ranges` ranges (dropping the highest, as Linux prunes its out-of-order
    // queue), its memory stays within the window, and the stream is intact once the peer
    // sends it in order.
    let config = Config { recv_buffer_size: 64 * 1024, reassembly_max_ranges: 100, ..config() };
    let mut f = established_with(config);
    let byte = |i: usize| u8::try_from(i % 251).expect("below 251");
    let stream: Vec<u8> = (0..40_000).map(byte).collect();
    let run = |f: &mut Fixture, i: usize| {
        let at = IRS + 1 + u32::try_from(i).expect("small");
        f.recv(from_peer(at, Some(ISS + 1), Flags::NONE), &stream[i..=i]);
        assert!(f.conn.recv.out_of_order_ranges() <= 100);
    };
    for i in (1..20_000).rev().step_by(2) {
        run(&mut f, i);
    }
    for i in (20_001..40_000).step_by(2) {
        run(&mut f, i);
    }
    assert_eq!(f.conn.recv.out_of_order_ranges(), 100);
    assert!(f.conn.stats().out_of_order_dropped >= 19_900);
    assert!(f.conn.buffer_bytes() <= 64 * 1024);
    // The lowest ranges were kept: SACK reports them.
    let ack = f.sent().pop().expect("duplicate ACK");
    assert_eq!(ack.repr.ack_number, Some(seq(IRS + 1)));
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), &stream);
    assert_eq!(f.read_all(), stream);
    assert!(!f.conn.recv.has_out_of_order());
}

/// A connection with SACK (no timestamps, so segments are 1460 bytes).
fn established_sack() -> Fixture {
    let mut hs = handshake();
    hs.sack_permitted = true;
    let mut f = fixture(Connection::from_cookie(
        Instant::ZERO,
        &hs,
        Arc::new(Config { sack: true, ..config() }),
    ));
    f.recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), &[]);
    assert_eq!(f.events(), [Event::Connected]);
    f
}

/// An ACK from the peer for `ack` with SACK blocks `[(left, right)]` (absolute numbers).
fn sack_ack(ack: u32, blocks: &[(u32, u32)]) -> TcpRepr {
    let mut sack_ranges = SackRanges::new();
    for &(l, r) in blocks {
        sack_ranges.push(seq(l), seq(r));
    }
    TcpRepr { sack_ranges, ..from_peer(IRS + 1, Some(ack), Flags::NONE) }
}

/// Sequence number of the first byte of our `n`th full segment (from 0).
fn seg(n: u32) -> u32 {
    ISS + 1 + n * 1460
}

#[test]
fn sacked_data_is_sent_again_when_the_receiver_reneges() {
    // Item 2, RFC 2018 section 8: a receiver may discard data it SACKed. Linux detects it
    // when the cumulative ACK stops at data it had SACKed (tcp_check_sack_reneging) and
    // then forgets the SACK information (tcp_timeout_mark_lost).
    let mut f = established_sack();
    f.conn.send(&[1u8; 6 * 1460]).expect("send");
    assert_eq!(f.sent().len(), 6);
    // Segment 0 is lost; 1 to 5 are SACKed; segment 0 is retransmitted.
    f.at(10).recv(sack_ack(seg(0), &[(seg(1), seg(6))]), &[]);
    assert!(f.sent().iter().any(|s| s.repr.seq_number == seq(seg(0))));
    // The peer got segment 0 but dropped its out-of-order queue: it acknowledges segment 0
    // alone and reports no SACK block.
    f.at(20).recv(sack_ack(seg(1), &[]), &[]);
    let mut resent = Vec::new();
    for _ in 0..3 {
        f.fire_next();
        resent.extend(f.sent().into_iter().map(|s| s.repr.seq_number));
        if !resent.is_empty() {
            break;
        }
    }
    assert_eq!(resent.first(), Some(&seq(seg(1))), "the reneged data goes again");
    assert!(f.now < at_ms(20) + Duration::from_secs(1), "before the RTO: {:?}", f.now);
}

#[test]
fn zero_window_with_data_in_flight_probes_with_the_head_segment() {
    // Item 3, as Linux's tcp_retransmit_timer: when the peer shrinks its window to zero
    // with data in flight, each retransmission timeout resends the first segment as a
    // zero-window probe, and the connection lives on as long as the peer answers.
    let mut f = established();
    f.conn.send(&[1u8; 2 * 1460]).expect("send");
    assert_eq!(f.sent().len(), 2);
    let zero = |ack| TcpRepr { window_len: 0, ..from_peer(IRS + 1, Some(ack), Flags::NONE) };
    f.at(10).recv(zero(seg(1)), &[]);
    f.sent_nothing();
    for probe in 0..30 {
        f.fire_next();
        let sent = f.sent();
        assert_eq!(sent.len(), 1, "probe {probe} at {:?}: {sent:#?}", f.now);
        assert_eq!(sent[0].repr.seq_number, seq(seg(1)));
        assert_eq!(sent[0].payload.len(), 1460);
        f.recv(zero(seg(1)), &[]);
        assert_eq!(f.state(), State::Established, "answered probes keep it open");
    }
    // A silent peer: given up once nothing was heard for rto_max (Linux: TCP_RTO_MAX).
    let heard = f.now;
    while f.state() == State::Established {
        f.fire_next();
        f.sent();
        assert!(f.now <= heard + Duration::from_secs(2 * 120), "{:?}", f.now);
    }
    assert_eq!(f.events(), [Event::Closed(CloseReason::TimedOut)]);
}

#[test]
fn persist_gives_up_on_a_silent_peer_after_close() {
    // Item 4: window zero, 10 kB queued, close(), the peer silent. Linux ends such an orphan
    // after tcp_orphan_retries (8 while its probes are under TCP_RTO_MAX apart).
    let mut f = established();
    f.recv(TcpRepr { window_len: 0, ..from_peer(IRS + 1, Some(ISS + 1), Flags::NONE) }, &[]);
    f.conn.send(&[1u8; 10_000]).expect("send");
    f.conn.close().expect("close");
    assert_eq!(f.state(), State::FinWait1);
    f.sent_nothing();
    let mut probes = 0;
    while f.state() != State::Closed {
        f.fire_next();
        probes += f.sent().len();
        assert!(probes <= 9 && f.now < at_ms(600_000), "{probes} probes by {:?}", f.now);
    }
    assert_eq!(f.events(), [Event::Closed(CloseReason::TimedOut)]);
}

#[test]
fn persist_gives_up_after_data_retries_unanswered_probes() {
    // Item 4: not closed, the peer silent: tcp_retries2 (15) unanswered probes end it.
    let mut f = established();
    f.recv(TcpRepr { window_len: 0, ..from_peer(IRS + 1, Some(ISS + 1), Flags::NONE) }, &[]);
    f.conn.send(b"blocked").expect("send");
    f.sent_nothing();
    let mut probes = 0;
    while f.state() != State::Closed {
        f.fire_next();
        probes += f.sent().len();
        assert!(probes <= 15, "{probes} probes");
    }
    assert_eq!(probes, 15);
    assert_eq!(f.events(), [Event::Closed(CloseReason::TimedOut)]);
}

#[test]
fn persist_backoff_does_not_carry_into_the_rto() {
    // Item 5: as Linux's tcp_ack_probe, the window opening ends the probe backoff: the
    // retransmission timeout of the data sent then is the plain RTO.
    let mut f = established();
    f.recv(TcpRepr { window_len: 0, ..from_peer(IRS + 1, Some(ISS + 1), Flags::NONE) }, &[]);
    f.conn.send(b"blocked").expect("send");
    f.sent_nothing();
    for ms in [1_000, 3_000, 7_000, 15_000, 31_000] {
        f.fire(ms);
        assert_eq!(f.sent_one().repr.seq_number, seq(ISS), "probe at {ms}");
        f.recv(TcpRepr { window_len: 0, ..from_peer(IRS + 1, Some(ISS + 1), Flags::NONE) }, &[]);
    }
    f.at(31_010).recv(from_peer(IRS + 1, Some(ISS + 1), Flags::NONE), &[]);
    assert_eq!(f.sent_one().payload, b"blocked");
    f.fire(32_010);
    assert_eq!(f.sent_one().payload, b"blocked", "retransmitted after 1 s, not 32");
}

#[test]
fn a_second_timeout_in_a_row_keeps_ssthresh() {
    // Item 6, RFC 5681 section 3.1: ssthresh is held when a segment already retransmitted
    // by the timer times out again.
    let mut f = established();
    f.conn.send(&[1u8; 10 * 1460]).expect("send");
    assert_eq!(f.sent().len(), 10);
    f.fire(1_000);
    f.sent();
    let ssthresh = f.conn.slow_start_threshold();
    assert!(ssthresh < u32::MAX);
    f.fire(3_000);
    f.sent();
    assert_eq!(f.conn.slow_start_threshold(), ssthresh);
    assert_eq!(f.conn.congestion_window(), 1460);
}

#[test]
fn karn_takes_no_rtt_sample_from_an_ack_covering_a_retransmission() {
    // Item 7, RFC 6298 section 3: an ACK that covers retransmitted data (without
    // timestamps) is ambiguous and gives no RTT sample (as Linux's
    // FLAG_RETRANS_DATA_ACKED).
    let mut f = established();
    f.conn.send(&[1u8; 4 * 1460]).expect("send");
    assert_eq!(f.sent().len(), 4);
    for _ in 0..3 {
        f.at(10).recv(from_peer(IRS + 1, Some(seg(0)), Flags::NONE), &[]);
    }
    assert_eq!(f.sent_one().repr.seq_number, seq(seg(0)), "fast retransmit");
    f.at(500).recv(from_peer(IRS + 1, Some(seg(4)), Flags::NONE), &[]);
    assert_eq!(f.conn.srtt(), None);
}

#[test]
fn the_congestion_window_restarts_after_idle() {
    // Item 8, RFC 5681 section 4.1: after more than an RTO without sending, cwnd is at most
    // the restart window, min(IW, cwnd) (Linux tcp_cwnd_restart).
    let mut f = established();
    f.conn.send(&[1u8; 10 * 1460]).expect("send");
    assert_eq!(f.sent().len(), 10);
    f.at(10).recv(from_peer(IRS + 1, Some(seg(10)), Flags::NONE), &[]);
    assert!(f.conn.congestion_window() > 14_600, "grew in slow start");
    f.at(5_000);
    f.conn.send(b"after a pause").expect("send");
    f.sent_one();
    assert_eq!(f.conn.congestion_window(), 14_600);
}

/// `established_sack`, with one segment acknowledged after 10 ms: SRTT 10 ms.
fn established_sack_rtt_10ms() -> Fixture {
    let mut f = established_sack();
    f.conn.send(&[1u8; 1460]).expect("send");
    assert_eq!(f.sent().len(), 1);
    f.at(10).recv(from_peer(IRS + 1, Some(seg(1)), Flags::NONE), &[]);
    assert_eq!(f.conn.srtt(), Some(Duration::from_millis(10)));
    f
}

#[test]
fn rack_resends_a_lost_retransmission_before_the_rto() {
    // Item 15, RFC 8985 section 6: RACK judges retransmissions by time like originals. A
    // retransmission lost in fast recovery is found lost as soon as a segment sent after it
    // is delivered and an RTT has passed, not at the retransmission timeout.
    let mut f = established_sack_rtt_10ms();
    f.conn.send(&vec![1u8; 15 * 1460]).expect("send");
    let first = f.sent().len();
    assert!(first >= 10, "{first} segments");
    // Segment 1 is lost; 2 to 5 are SACKed: it is resent, and PRR lets new data follow.
    f.at(20).recv(sack_ack(seg(1), &[(seg(2), seg(6))]), &[]);
    let sent: Vec<u32> = f.sent().iter().map(|s| s.repr.seq_number.raw()).collect();
    assert_eq!(sent.first(), Some(&seg(1)));
    let after = *sent.last().expect("sent");
    assert!(after >= seg(1 + u32::try_from(first).expect("small")), "new data: {sent:?}");
    // The retransmission is lost too; the new segment sent after it arrives 10 ms later.
    f.at(30).recv(sack_ack(seg(1), &[(after, after + 1460), (seg(2), seg(6))]), &[]);
    let again: Vec<u32> = f.sent().iter().map(|s| s.repr.seq_number.raw()).collect();
    assert_eq!(again.first(), Some(&seg(1)), "resent at 30 ms: {again:?}");
    assert_eq!(f.conn.stats().timeouts, 0);
}

#[test]
fn tail_loss_probe_repairs_a_lost_tail_before_the_rto() {
    // Item 15, RFC 8985 section 7: the last segments of a burst are lost and no ACK will
    // come to reveal it. Two RTTs after the last transmission the last segment goes again
    // as a probe; its SACK lets RACK find the other loss. Without it: a 200 ms RTO.
    let mut f = established_sack_rtt_10ms();
    f.conn.send(&[1u8; 4 * 1460]).expect("send");
    assert_eq!(f.sent().len(), 4);
    f.at(20).recv(from_peer(IRS + 1, Some(seg(3)), Flags::NONE), &[]);
    let at = f.fire_next();
    assert!(at < 20 + 200, "probe at {at} ms");
    let probe = f.sent_one();
    assert_eq!(probe.repr.seq_number, seq(seg(4)), "the last segment");
    assert_eq!(f.conn.stats().tail_loss_probes, 1);
    f.at(at + 10).recv(sack_ack(seg(3), &[(seg(4), seg(5))]), &[]);
    assert_eq!(f.sent_one().repr.seq_number, seq(seg(3)), "RACK found the other loss");
    f.at(at + 20).recv(from_peer(IRS + 1, Some(seg(5)), Flags::NONE), &[]);
    assert_eq!(f.conn.send_queue_len(), 0);
    assert_eq!(f.conn.stats().timeouts, 0);
}

#[test]
fn a_full_receiver_never_offers_room_it_does_not_have() {
    // With a window scale of 7 an offer is a multiple of 128 bytes, and the right edge may
    // not move left, so offers are rounded up. A peer filling the window in 100-byte pieces
    // while nobody reads must find every offered byte taken, and end at a zero window, not
    // at a phantom one it keeps filling in vain (which once ended a stalled transfer after
    // tcp_retries2 timeouts).
    let mut hs = handshake();
    hs.peer_wscale = Some(7);
    hs.our_wscale = Some(7);
    let config = Config { recv_buffer_size: 4000, delayed_ack: Duration::ZERO, ..config() };
    let mut f = fixture(Connection::from_cookie(Instant::ZERO, &hs, Arc::new(config)));
    let _ = f.events();
    let (mut next, mut edge) = (IRS + 1, IRS + 1 + 4000);
    while edge > next {
        let n = (edge - next).min(100);
        f.recv(from_peer(next, Some(ISS + 1), Flags::NONE), &vec![7u8; n as usize]);
        let ack = f.sent().pop().expect("an ACK").repr;
        assert_eq!(ack.ack_number, Some(seq(next + n)), "offered bytes taken");
        next += n;
        edge = edge.max(next + (u32::from(ack.window_len) << 7));
    }
    assert!(f.conn.recv_queue_len() <= 4000 + 127, "{}", f.conn.recv_queue_len());
}

#[test]
fn data_retransmissions_give_up_after_about_924_seconds() {
    // Item 4's reference, Linux with tcp_retries2 = 15 and a 200 ms RTO: fifteen
    // retransmissions backing off to rto_max (120 s), given up 924.6 s after the send.
    let mut f = established();
    f.conn.send(b"x").expect("send");
    f.sent_one();
    f.at(1).recv(from_peer(IRS + 1, Some(ISS + 2), Flags::NONE), &[]);
    assert_eq!(f.conn.rto(), Duration::from_millis(200));
    f.conn.send(b"y").expect("send");
    f.sent_one();
    let mut retransmissions = 0;
    while f.state() == State::Established {
        f.fire_next();
        retransmissions += f.sent().len();
    }
    assert_eq!(retransmissions, 15);
    assert_eq!(f.now, at_ms(1 + 924_600));
    assert_eq!(f.events(), [Event::Closed(CloseReason::TimedOut)]);
}
