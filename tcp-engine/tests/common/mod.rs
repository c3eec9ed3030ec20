//! Test harness: two engines joined through the wire format, either directly (`Pair`, for
//! scripted close paths) or through a seeded lossy network (`SimNet`, for self-play).
#![allow(dead_code, reason = "shared by several test crates; each uses a part")]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;

use tcp_engine::{
    CloseReason, Config, ConnId, Connection, ConnectionTable, Duration, Event, FourTuple, Instant,
    Segment, SeqNumber, State, TableEvent,
};

pub const CLIENT: &str = "192.0.2.1:40000";
pub const SERVER: &str = "192.0.2.2:80";

/// The connection seen from the client.
pub fn client_tuple() -> FourTuple {
    let client: SocketAddr = CLIENT.parse().expect("addr");
    let server: SocketAddr = SERVER.parse().expect("addr");
    FourTuple::new(client, server)
}

/// Emits to bytes with the checksum and parses back, so every test also crosses the wire
/// format.
pub fn over_the_wire(from: &FourTuple, seg: &Segment) -> Segment {
    let out = from.outgoing_pseudo_header().expect("same family");
    let bytes = seg.to_bytes(&out).expect("emit");
    let back = from.reversed().incoming_pseudo_header().expect("same family");
    Segment::parse(&bytes, &back).expect("what we emit parses")
}

/// SplitMix64: small, seeded, reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        #[expect(clippy::cast_precision_loss, reason = "53 bits of randomness are plenty")]
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// An index below `n`.
    pub fn pick(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }
}

/// A reproducible byte stream (a hash of the position, so shifts and repeats show).
pub fn stream(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let mut r = Rng::new(seed ^ (i as u64 / 8).wrapping_mul(0x2545_f491_4f6c_dd1d));
            r.next_u64().to_le_bytes()[i % 8]
        })
        .collect()
}

// ------------------------------------------------------------------ Pair

/// Client and server connections wired back to back; the test decides what is delivered.
pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
}

impl Pair {
    /// A client in SYN-SENT and a server in LISTEN; nothing exchanged yet.
    pub fn new(config: Config) -> Pair {
        let config = Arc::new(config);
        let tuple = client_tuple();
        Pair {
            client: Connection::connect(
                Instant::ZERO,
                tuple,
                SeqNumber::new(1_000),
                Arc::clone(&config),
            ),
            server: Connection::listen(
                Instant::ZERO,
                tuple.reversed(),
                SeqNumber::new(9_000),
                config,
            ),
            now: Instant::ZERO,
        }
    }

    /// Completes the handshake.
    pub fn established(config: Config) -> Pair {
        let mut p = Pair::new(config);
        p.exchange();
        assert_eq!(p.client.state(), State::Established);
        assert_eq!(p.server.state(), State::Established);
        assert_eq!(p.client_events(), [Event::Connected]);
        assert_eq!(p.server_events(), [Event::Connected]);
        p
    }

    pub fn client_out(&mut self) -> Vec<Segment> {
        let tuple = *self.client.tuple();
        std::iter::from_fn(|| self.client.poll_segment(self.now))
            .map(|s| over_the_wire(&tuple, &s))
            .collect()
    }

    pub fn server_out(&mut self) -> Vec<Segment> {
        let tuple = *self.server.tuple();
        std::iter::from_fn(|| self.server.poll_segment(self.now))
            .map(|s| over_the_wire(&tuple, &s))
            .collect()
    }

    pub fn deliver_to_server(&mut self, segs: &[Segment]) {
        for s in segs {
            self.server.handle_segment(self.now, &s.repr, &s.payload);
        }
    }

    pub fn deliver_to_client(&mut self, segs: &[Segment]) {
        for s in segs {
            self.client.handle_segment(self.now, &s.repr, &s.payload);
        }
    }

    /// Delivers everything both ways until both are quiet (no time passes).
    pub fn exchange(&mut self) {
        for _ in 0..10_000 {
            let c = self.client_out();
            let s = self.server_out();
            if c.is_empty() && s.is_empty() {
                return;
            }
            self.deliver_to_server(&c);
            self.deliver_to_client(&s);
        }
        panic!("no quiescence");
    }

    /// Moves time to `at`, running both sides' timers due on the way (without delivering
    /// what they send: the caller decides).
    pub fn advance_to(&mut self, at: Instant) {
        self.now = at;
        self.client.handle_timeout(at);
        self.server.handle_timeout(at);
    }

    pub fn client_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    pub fn server_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    pub fn read_server(&mut self) -> Vec<u8> {
        read_all(&mut self.server)
    }

    pub fn read_client(&mut self) -> Vec<u8> {
        read_all(&mut self.client)
    }
}

pub fn read_all(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.recv(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

// ------------------------------------------------------------------ SimNet

/// Impairments of the simulated network, applied independently per packet.
#[derive(Clone, Copy, Debug)]
pub struct Impairments {
    pub drop: f64,
    pub duplicate: f64,
    /// Chance of an extra delay that reorders the packet behind later ones.
    pub reorder: f64,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Impairments {
    pub const PERFECT: Impairments = Impairments {
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Client,
    Server,
}

/// Checks the table's incremental counters (per-state counts, totals) against a walk over
/// everything it holds.
pub fn assert_counts_match<T>(table: &ConnectionTable<T>) {
    let (by_state, totals) = table.counts_by_walking();
    let stats = table.stats();
    assert_eq!(stats.by_state, by_state, "per-state counts");
    assert_eq!(stats.totals, totals, "counter totals");
    assert_eq!(stats.opened - stats.closed, table.len() as u64, "opened - closed = held");
}

/// What an application on one side does: send `data`, then shut down; read until EOF.
/// With `in_place`, it writes into the send buffer (`send_with`) and reads the receive
/// buffer where it lies (`recv_slices` + `consume`); otherwise it copies (`send`, `recv`).
/// It reads nothing while `stalled` says so (a slow reader: the window closes), and with
/// `close_early` it closes (an orphan) as soon as it has queued what fits.
#[expect(clippy::struct_excessive_bools, reason = "a test application's switches")]
struct App {
    id: Option<ConnId>,
    in_place: bool,
    stalled: Option<(Instant, Instant)>,
    close_early: bool,
    data: Vec<u8>,
    sent: usize,
    received: Vec<u8>,
    eof: bool,
    shut: bool,
    closed: Option<CloseReason>,
    last_state: Option<State>,
}

impl App {
    fn new(data: Vec<u8>, in_place: bool) -> App {
        App {
            id: None,
            in_place,
            stalled: None,
            close_early: false,
            data,
            sent: 0,
            received: Vec::new(),
            eof: false,
            shut: false,
            closed: None,
            last_state: None,
        }
    }

    fn pump(&mut self, now: Instant, table: &mut ConnectionTable<()>) {
        let Some(id) = self.id else { return };
        if self.closed.is_some() {
            return;
        }
        let state = table.with_connection(now, id, |conn, ()| {
            while self.sent < self.data.len() {
                let rest = &self.data[self.sent..];
                let queued = if self.in_place {
                    conn.send_with(rest.len(), |spare| {
                        let n = spare.len().min(rest.len());
                        spare[..n].copy_from_slice(&rest[..n]);
                        n
                    })
                } else {
                    conn.send(rest)
                };
                match queued {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.sent += n,
                }
            }
            if self.close_early && !self.shut {
                self.shut = conn.close().is_ok();
                return conn.state();
            }
            if self.sent == self.data.len() && !self.shut {
                self.shut = conn.shutdown().is_ok();
            }
            if self.stalled.is_some_and(|(from, to)| from <= now && now < to) {
                return conn.state();
            }
            if self.in_place {
                loop {
                    let (a, b) = conn.recv_slices();
                    let n = a.len() + b.len();
                    if n == 0 {
                        self.eof |= conn.recv_finished();
                        break;
                    }
                    self.received.extend_from_slice(a);
                    self.received.extend_from_slice(b);
                    assert_eq!(conn.consume(n), n);
                }
            } else {
                let mut buf = [0u8; 16 * 1024];
                while !self.eof {
                    match conn.recv(&mut buf) {
                        Ok(0) => self.eof = true,
                        Ok(n) => self.received.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
            }
            conn.state()
        });
        if let Ok(state) = state {
            self.last_state = Some(state);
        }
    }

    fn on_event(&mut self, ev: &TableEvent<()>) {
        match *ev {
            TableEvent::Conn { id, event: Event::Connected } => self.id = Some(id),
            TableEvent::TimeWait { .. } => self.last_state = Some(State::TimeWait),
            TableEvent::Closed { reason, .. } => self.closed = Some(reason),
            TableEvent::Conn { .. } => {}
        }
    }
}

/// Outcome of a self-play run.
pub struct Outcome {
    pub client_received: Vec<u8>,
    pub server_received: Vec<u8>,
    pub client_closed: Option<CloseReason>,
    pub server_closed: Option<CloseReason>,
    /// Each side's state when it last had a connection (TIME-WAIT or LAST-ACK at the end).
    pub client_last_state: Option<State>,
    pub server_last_state: Option<State>,
    pub elapsed: Instant,
    pub packets: u64,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("client_received", &self.client_received.len())
            .field("server_received", &self.server_received.len())
            .field("client_closed", &self.client_closed)
            .field("server_closed", &self.server_closed)
            .field("client_last_state", &self.client_last_state)
            .field("server_last_state", &self.server_last_state)
            .field("elapsed", &self.elapsed)
            .field("packets", &self.packets)
            .finish()
    }
}

type InFlight = Reverse<(Instant, u64, Side, Vec<u8>)>;

/// Two tables (client and server) joined by a seeded, impaired network.
///
/// Every segment is checked against the path MTU (`mtu`, the IPv4 packet size: the MSS
/// plus 40 by default): one larger is a test failure, as a router would drop it (DF set).
/// The engines transmit into buffers far larger, so only the MSS they respect limits them.
pub struct SimNet {
    pub client: ConnectionTable<()>,
    pub server: ConnectionTable<()>,
    net: Impairments,
    rng: Rng,
    in_flight: BinaryHeap<InFlight>,
    order: u64,
    pub now: Instant,
    pub packets: u64,
    /// Largest IPv4 packet the path carries.
    pub mtu: usize,
    /// Chance, per segment delivered to the server, that the server's connection then drops
    /// its out-of-order queue (a reneging receiver, RFC 2018 section 8).
    pub renege: f64,
    /// The server application reads nothing in this interval (its window closes).
    pub server_stall: Option<(Instant, Instant)>,
    /// The client application closes as soon as it queued what fits (an orphan with data
    /// left to send).
    pub client_closes_early: bool,
    /// From this instant on the network delivers nothing (the peer went silent).
    pub blackhole_from: Option<Instant>,
    /// Out-of-order ranges the reneging server dropped.
    pub reneged_ranges: usize,
}

impl SimNet {
    pub fn new(config: Config, net: Impairments, seed: u64) -> SimNet {
        let config_mss = config.mss;
        let config = Arc::new(config);
        let mut server = ConnectionTable::new(Arc::clone(&config), u128::from(seed ^ 1));
        server.listen(client_tuple().remote);
        SimNet {
            client: ConnectionTable::new(config, u128::from(seed ^ 2)),
            server,
            net,
            rng: Rng::new(seed),
            in_flight: BinaryHeap::new(),
            order: 0,
            now: Instant::ZERO,
            packets: 0,
            mtu: usize::from(config_mss) + 40,
            renege: 0.0,
            server_stall: None,
            client_closes_early: false,
            blackhole_from: None,
            reneged_ranges: 0,
        }
    }

    fn delay(&mut self) -> Duration {
        let span =
            self.net.max_delay.total_micros().saturating_sub(self.net.min_delay.total_micros());
        let mut d = self.net.min_delay + Duration::from_micros(self.rng.below(span + 1));
        if self.rng.chance(self.net.reorder) {
            d = d + Duration::from_micros(self.rng.below(4 * span + 1_000));
        }
        d
    }

    /// Moves what both tables want to send into the network.
    fn collect(&mut self) {
        for side in [Side::Client, Side::Server] {
            loop {
                let table = match side {
                    Side::Client => &mut self.client,
                    Side::Server => &mut self.server,
                };
                let mut buf = [0u8; 9000];
                let Some(t) = table.poll_transmit(self.now, &mut buf) else { break };
                let bytes = buf[..t.len].to_vec();
                self.packets += 1;
                // The tuple is IPv4: a 20-byte IP header in front.
                assert!(
                    bytes.len() + 20 <= self.mtu,
                    "{side:?} sent a {}-byte segment: over the {}-byte MTU",
                    bytes.len(),
                    self.mtu
                );
                if self.rng.chance(self.net.drop)
                    || self.blackhole_from.is_some_and(|t| self.now >= t)
                {
                    continue;
                }
                let copies = if self.rng.chance(self.net.duplicate) { 2 } else { 1 };
                for _ in 0..copies {
                    let at = self.now + self.delay();
                    self.order += 1;
                    self.in_flight.push(Reverse((at, self.order, side, bytes.clone())));
                }
            }
        }
    }

    /// Runs client and server applications exchanging `to_server` and `to_client` until
    /// both connections are gone or `limit` passes.
    pub fn run(&mut self, to_server: Vec<u8>, to_client: Vec<u8>, limit: Instant) -> Outcome {
        let mut client_app = App::new(to_server, false);
        let mut server_app = App::new(to_client, true);
        client_app.close_early = self.client_closes_early;
        server_app.stalled = self.server_stall;
        let tuple = client_tuple();
        self.client.connect(self.now, tuple, ()).expect("connect");
        loop {
            while let Some(ev) = self.client.poll_event() {
                client_app.on_event(&ev);
            }
            while let Some(ev) = self.server.poll_event() {
                server_app.on_event(&ev);
            }
            client_app.pump(self.now, &mut self.client);
            server_app.pump(self.now, &mut self.server);
            while let Some(ev) = self.client.poll_event() {
                client_app.on_event(&ev);
            }
            while let Some(ev) = self.server.poll_event() {
                server_app.on_event(&ev);
            }
            self.collect();
            assert_counts_match(&self.client);
            assert_counts_match(&self.server);
            if self.client.is_empty() && self.server.is_empty() && self.in_flight.is_empty() {
                break;
            }
            let next = [
                self.in_flight.peek().map(|Reverse((at, ..))| *at),
                self.client.poll_timeout(),
                self.server.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { break };
            if next > limit {
                break;
            }
            self.now = self.now.max(next);
            while let Some(Reverse((at, ..))) = self.in_flight.peek() {
                if *at > self.now {
                    break;
                }
                let Some(Reverse((_, _, from, bytes))) = self.in_flight.pop() else { break };
                match from {
                    Side::Client => {
                        self.server.handle_packet(self.now, tuple.reversed(), &bytes);
                        if let Some(id) = server_app.id
                            && self.renege > 0.0
                            && self.rng.chance(self.renege)
                        {
                            let dropped = self
                                .server
                                .with_connection(self.now, id, |c, ()| c.discard_out_of_order());
                            self.reneged_ranges += dropped.unwrap_or(0);
                        }
                    }
                    Side::Server => self.client.handle_packet(self.now, tuple, &bytes),
                }
            }
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
        }
        Outcome {
            client_received: client_app.received,
            server_received: server_app.received,
            client_closed: client_app.closed,
            server_closed: server_app.closed,
            client_last_state: client_app.last_state,
            server_last_state: server_app.last_state,
            elapsed: self.now,
            packets: self.packets,
        }
    }
}

// ------------------------------------------------------------------ TablePair

/// A client table and a listening server table joined through the wire format; the test
/// decides what is delivered. Each side's payload is a number (the client's connection
/// carries 1, the server's `u32::default()`), so tests see payloads come back. Every step
/// checks both tables' incremental counters against a walk.
pub struct TablePair {
    pub client: ConnectionTable<u32>,
    pub server: ConnectionTable<u32>,
    pub now: Instant,
    pub client_id: ConnId,
    pub server_id: Option<ConnId>,
    pub client_events: Vec<TableEvent<u32>>,
    pub server_events: Vec<TableEvent<u32>>,
}

impl TablePair {
    pub fn new(config: Config) -> TablePair {
        let config = Arc::new(config);
        let mut server = ConnectionTable::new(Arc::clone(&config), 3);
        server.listen(client_tuple().remote);
        let mut client = ConnectionTable::new(config, 4);
        let client_id = client.connect(Instant::ZERO, client_tuple(), 1).expect("connect");
        let mut p = TablePair {
            client,
            server,
            now: Instant::ZERO,
            client_id,
            server_id: None,
            client_events: Vec::new(),
            server_events: Vec::new(),
        };
        p.check();
        p
    }

    /// Handshake completed.
    pub fn established(config: Config) -> TablePair {
        let mut p = TablePair::new(config);
        p.exchange();
        assert!(p.server_id.is_some(), "server connected");
        p
    }

    fn check(&mut self) {
        assert_counts_match(&self.client);
        assert_counts_match(&self.server);
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            if let TableEvent::Conn { id, event: Event::Connected } = e {
                self.server_id = Some(id);
            }
            self.server_events.push(e);
        }
    }

    fn out(table: &mut ConnectionTable<u32>, now: Instant) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 1600];
        std::iter::from_fn(|| table.poll_transmit(now, &mut buf).map(|t| buf[..t.len].to_vec()))
            .collect()
    }

    pub fn client_out(&mut self) -> Vec<Vec<u8>> {
        let out = TablePair::out(&mut self.client, self.now);
        self.check();
        out
    }

    pub fn server_out(&mut self) -> Vec<Vec<u8>> {
        let out = TablePair::out(&mut self.server, self.now);
        self.check();
        out
    }

    pub fn deliver_to_server(&mut self, segments: &[Vec<u8>]) {
        for s in segments {
            self.server.handle_packet(self.now, client_tuple().reversed(), s);
            self.check();
        }
    }

    pub fn deliver_to_client(&mut self, segments: &[Vec<u8>]) {
        for s in segments {
            self.client.handle_packet(self.now, client_tuple(), s);
            self.check();
        }
    }

    /// Delivers everything both ways until both are quiet (no time passes).
    pub fn exchange(&mut self) {
        for _ in 0..10_000 {
            let c = self.client_out();
            let s = self.server_out();
            if c.is_empty() && s.is_empty() {
                return;
            }
            self.deliver_to_server(&c);
            self.deliver_to_client(&s);
        }
        panic!("no quiescence");
    }

    /// Runs both tables' timers up to `at`, one deadline at a time; with `deliver`, what
    /// they send is exchanged after each, otherwise it is lost.
    pub fn run_until(&mut self, at: Instant, deliver: bool) {
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|&t| t <= at) else { break };
            self.now = self.now.max(next);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.check();
            if deliver {
                self.exchange();
            } else {
                self.client_out();
                self.server_out();
            }
        }
        self.now = self.now.max(at);
    }

    /// Application call on the client's connection.
    pub fn on_client<R>(&mut self, f: impl FnOnce(&mut Connection) -> R) -> R {
        let r = self.client.with_connection(self.now, self.client_id, |c, _| f(c)).expect("live");
        self.check();
        r
    }

    /// Application call on the server's connection.
    pub fn on_server<R>(&mut self, f: impl FnOnce(&mut Connection) -> R) -> R {
        let id = self.server_id.expect("server connected");
        let r = self.server.with_connection(self.now, id, |c, _| f(c)).expect("live");
        self.check();
        r
    }

    /// The end events of one side: `(reason, payload)` of `Closed`, and the payloads that
    /// came back with `TimeWait`.
    pub fn ends(events: &[TableEvent<u32>]) -> (Vec<(CloseReason, Option<u32>)>, Vec<u32>) {
        let closed = events
            .iter()
            .filter_map(|e| match e {
                TableEvent::Closed { reason, user, .. } => Some((*reason, *user)),
                _ => None,
            })
            .collect();
        let time_wait = events
            .iter()
            .filter_map(|e| match e {
                TableEvent::TimeWait { user, .. } => Some(*user),
                _ => None,
            })
            .collect();
        (closed, time_wait)
    }

    /// Both tables are empty and everything they opened is accounted closed.
    pub fn assert_all_gone(&self) {
        for table in [&self.client, &self.server] {
            assert!(table.is_empty());
            let stats = table.stats();
            assert_eq!(stats.opened, stats.closed);
            assert_eq!(stats.by_state, [0; 11]);
        }
    }
}
