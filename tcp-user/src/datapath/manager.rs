//! The connection manager of one RX queue: frames in, the engine in the middle, frames and
//! application bytes out.
//!
//! It holds no protocol logic of its own. It admits a connection only when the XDP program's
//! flow table has the tuple (the third ACK carried a valid cookie), builds the engine's
//! connection from what the cookie decoded, remembers the L2 route back to the peer, moves
//! bytes between the engine and the application's [`Pipe`]s, and deletes the flow from the
//! XDP flow table when the engine reports the connection closed (after TIME-WAIT).
//!
//! Call order per loop iteration (see [`super::run`]): [`Manager::handle_frame`] for each
//! received frame, [`Manager::handle_timeout`] when [`Manager::poll_timeout`] has passed,
//! then [`Manager::drain`], which services the applications and writes every segment the
//! engine has to send.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};

use tcp_common::cookie::{CookieSecrets, TupleV4, TupleV6};
use tcp_common::{FlowKey, FlowValue};
use tcp_engine::wire::TcpRepr;
use tcp_engine::{
    CloseReason, ConnId, Connection, ConnectionTable, CookieHandshake, FourTuple, Instant, Segment,
    SeqNumber, State, TableEvent, TsInfo,
};
use tokio::sync::mpsc;

use super::frame::{self, Route};
use super::stream::{Doorbell, Shared, TcpStream};

/// The XDP program's flow table, as the manager needs it.
pub trait FlowTable {
    /// What the cookie of a validated third ACK decoded, if the XDP program admitted `key`.
    fn lookup(&mut self, key: &FlowKey) -> Option<FlowValue>;
    /// Forgets `key` (the connection is gone).
    fn remove(&mut self, key: &FlowKey);
    /// Records a new incarnation of `key` (a cookie ACK reopened a tuple in TIME-WAIT).
    fn insert(&mut self, key: FlowKey, value: FlowValue);
}

impl<S: std::hash::BuildHasher> FlowTable for HashMap<FlowKey, FlowValue, S> {
    fn lookup(&mut self, key: &FlowKey) -> Option<FlowValue> {
        self.get(key).copied()
    }

    fn insert(&mut self, key: FlowKey, value: FlowValue) {
        HashMap::insert(self, key, value);
    }

    fn remove(&mut self, key: &FlowKey) {
        HashMap::remove(self, key);
    }
}

/// Checks SYN cookies in userspace, with the secrets the XDP program uses (kept current by
/// the key rotation task). Needed for one case only: a new handshake's ACK for a tuple whose
/// old connection is still in TIME-WAIT, which the XDP program (seeing a known flow)
/// redirects without checking.
#[derive(Debug)]
pub struct CookieVerifier {
    secrets: RwLock<CookieSecrets>,
    local_wscale: u8,
}

impl CookieVerifier {
    /// A verifier with the current secrets and our window scale (as the SYN-ACK offers it).
    pub fn new(secrets: CookieSecrets, local_wscale: u8) -> CookieVerifier {
        CookieVerifier { secrets: RwLock::new(secrets), local_wscale }
    }

    /// Takes new secrets (after a counter tick or a key rotation).
    pub fn update(&self, secrets: CookieSecrets) {
        *self.secrets.write().unwrap_or_else(PoisonError::into_inner) = secrets;
    }

    /// The flow a segment's cookie establishes, if it is a pure ACK whose `ack - 1` is a valid
    /// cookie for `seq - 1` and the tuple, exactly as the XDP program decides.
    pub fn validate(&self, tuple: &FourTuple, repr: &TcpRepr) -> Option<FlowValue> {
        let ack = repr.ack_number?.raw();
        if repr.flags.syn() || repr.flags.rst() || repr.flags.fin() {
            return None;
        }
        let seq = repr.seq_number.raw();
        let secrets = *self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        let (rp, lp) = (tuple.remote.port(), tuple.local.port());
        let (client_isn, cookie) = (seq.wrapping_sub(1), ack.wrapping_sub(1));
        let valid = match (tuple.remote.ip(), tuple.local.ip()) {
            (IpAddr::V4(c), IpAddr::V4(s)) => {
                let t = TupleV4 {
                    client: c.octets(),
                    server: s.octets(),
                    client_port: rp,
                    server_port: lp,
                };
                secrets.check(&t, client_isn, cookie)
            }
            (IpAddr::V6(c), IpAddr::V6(s)) => {
                secrets.check(&TupleV6::new(c.octets(), s.octets(), rp, lp), client_isn, cookie)
            }
            _ => return None,
        }
        .ok()?;
        let ts = repr.timestamp.map(|t| (t.tsval, t.tsecr));
        Some(FlowValue::from_cookie(&valid, seq, ack, repr.window_len, ts, self.local_wscale))
    }
}

/// Where the manager's frames go: an AF_XDP TX ring, or a vector in tests.
pub trait FrameSink {
    /// Writes one frame with `write` (which returns its length); `false` when full.
    fn send_frame(&mut self, write: &mut dyn FnMut(&mut [u8]) -> usize) -> bool;
}

impl FrameSink for crate::xsk::XskSocket {
    fn send_frame(&mut self, write: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        self.send_with(write)
    }
}

impl FrameSink for Vec<Vec<u8>> {
    fn send_frame(&mut self, write: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        let mut buf = vec![0u8; 4096];
        let n = write(&mut buf);
        buf.truncate(n);
        self.push(buf);
        true
    }
}

/// What the manager counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManagerStats {
    /// Frames received.
    pub frames_in: u64,
    /// Frames that were not a well-formed TCP segment over IP: dropped.
    pub frames_malformed: u64,
    /// Segments for a tuple the XDP program never validated (the engine answers RST).
    pub not_validated: u64,
    /// Connections admitted from a validated cookie.
    pub admitted: u64,
    /// Tuples in TIME-WAIT reopened by a new handshake's validated cookie ACK (counted in
    /// `admitted` too).
    pub reopened: u64,
    /// Connections reset because the application's accept queue was full, or the
    /// connection limit was reached.
    pub accept_overflow: u64,
    /// Connections that ended (any reason).
    pub closed: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Segments the engine emitted for which no route was known: dropped.
    pub no_route: u64,
}

struct Conn {
    id: ConnId,
    route: Route,
    shared: Arc<Shared>,
    /// FIN requested from the engine (shutdown or close).
    fin_requested: bool,
    /// The application is gone and the engine was told to close.
    close_requested: bool,
}

/// The connection manager of one RX queue.
pub struct Manager<F> {
    table: ConnectionTable<()>,
    flows: F,
    conns: HashMap<FourTuple, Conn>,
    /// Routes for segments to tuples with no connection (RSTs), valid for one drain.
    stray_routes: HashMap<FourTuple, Route>,
    touched: HashSet<FourTuple>,
    /// The engine writes each segment here; it is copied into a frame once its route is
    /// known.
    tx_buf: Vec<u8>,
    /// A segment in `tx_buf` that did not fit in the sink yet.
    pending_tx: Option<(FourTuple, usize)>,
    accept: mpsc::Sender<TcpStream>,
    doorbell: Arc<Doorbell>,
    scratch: Vec<u8>,
    max_conns: usize,
    cookies: Option<Arc<CookieVerifier>>,
    stats: ManagerStats,
}

impl<F: FlowTable> Manager<F> {
    /// A manager over `table`, admitting flows from `flows`, handing connections to `accept`;
    /// applications ring `doorbell` when they touch a connection.
    pub fn new(
        table: ConnectionTable<()>,
        flows: F,
        accept: mpsc::Sender<TcpStream>,
        doorbell: Arc<Doorbell>,
    ) -> Manager<F> {
        Manager {
            table,
            flows,
            conns: HashMap::new(),
            stray_routes: HashMap::new(),
            touched: HashSet::new(),
            tx_buf: vec![0; TX_SEGMENT_BUFFER],
            pending_tx: None,
            accept,
            doorbell,
            scratch: vec![0; 64 * 1024],
            max_conns: usize::MAX,
            cookies: None,
            stats: ManagerStats::default(),
        }
    }

    /// Lets new handshakes reopen tuples in TIME-WAIT, checking their cookies with `cookies`.
    pub fn set_cookie_verifier(&mut self, cookies: Arc<CookieVerifier>) {
        self.cookies = Some(cookies);
    }

    /// Resets new connections beyond `n` held at once.
    pub fn set_max_connections(&mut self, n: usize) {
        self.max_conns = n;
    }

    /// The counters.
    pub fn stats(&self) -> ManagerStats {
        self.stats
    }

    /// The engine's table (for metrics).
    pub fn table(&self) -> &ConnectionTable<()> {
        &self.table
    }

    /// Connections the manager holds.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether the manager holds no connection.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Handles one received frame.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) {
        self.stats.frames_in += 1;
        let Ok(f) = frame::parse(bytes) else {
            self.stats.frames_malformed += 1;
            return;
        };
        let (Some(&[s0, s1, d0, d1]), true) = (f.tcp.get(..4), f.tcp.len() >= 20) else {
            self.stats.frames_malformed += 1;
            return;
        };
        let tuple = FourTuple::new(
            SocketAddr::new(f.dst, u16::from_be_bytes([d0, d1])),
            SocketAddr::new(f.src, u16::from_be_bytes([s0, s1])),
        );
        if let Some(conn) = self.conns.get_mut(&tuple) {
            conn.route = f.route;
            let time_wait = self.table.state_of(&tuple) == Some(State::TimeWait);
            if !(time_wait && self.reopen(now, tuple, f.route, f.tcp)) {
                self.table.handle_packet(now, tuple, f.tcp);
            }
            return;
        }
        if let Some(flow) = self.flows.lookup(&flow_key(&tuple)) {
            let Ok(ack) = parse_segment(&tuple, f.tcp) else {
                self.stats.frames_malformed += 1;
                return;
            };
            self.admit(now, tuple, f.route, &flow, &ack);
        } else {
            // Not validated by the XDP program (or long gone): the engine answers as for a
            // segment that reaches no connection (RST unless it is one).
            self.stats.not_validated += 1;
            self.stray_routes.insert(tuple, f.route);
            self.table.handle_packet(now, tuple, f.tcp);
        }
    }

    /// A segment for a tuple in TIME-WAIT: if it is the validated cookie ACK of a new
    /// handshake (the client reused its port), the new connection replaces the old one.
    /// Returns whether it did.
    fn reopen(&mut self, now: Instant, tuple: FourTuple, route: Route, tcp: &[u8]) -> bool {
        let Some(cookies) = &self.cookies else { return false };
        let Ok(ack) = parse_segment(&tuple, tcp) else { return false };
        let Some(flow) = cookies.validate(&tuple, &ack.repr) else { return false };
        let handshake = handshake_from_flow(tuple, &flow);
        let Ok(id) = self.table.reopen_from_cookie(now, &handshake, &ack.repr, &ack.payload, ())
        else {
            return false;
        };
        // The old incarnation ended when the new one took its place.
        if let Some(old) = self.conns.remove(&tuple) {
            let mut pipe = old.shared.lock();
            pipe.rx_eof = true;
            pipe.ended = Some(CloseReason::Normal);
            pipe.wake_reader();
            pipe.wake_writer();
        }
        self.flows.insert(flow_key(&tuple), flow);
        self.stats.reopened += 1;
        self.admitted(now, tuple, route, id);
        true
    }

    fn admit(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        route: Route,
        flow: &FlowValue,
        ack: &Segment,
    ) {
        let handshake = handshake_from_flow(tuple, flow);
        let Ok(id) = self.table.insert_from_cookie(now, &handshake, &ack.repr, &ack.payload, ())
        else {
            return;
        };
        self.admitted(now, tuple, route, id);
    }

    /// The engine holds a new connection: give it a pipe and hand it to the application.
    fn admitted(&mut self, now: Instant, tuple: FourTuple, route: Route, id: ConnId) {
        self.stats.admitted += 1;
        let shared = Shared::new(tuple, Arc::clone(&self.doorbell));
        self.conns.insert(
            tuple,
            Conn {
                id,
                route,
                shared: Arc::clone(&shared),
                fin_requested: false,
                close_requested: false,
            },
        );
        if self.conns.len() > self.max_conns
            || self.accept.try_send(TcpStream::new(shared)).is_err()
        {
            // The application is not accepting fast enough (or is gone), or the limit is
            // reached: refuse with RST, as a full listen backlog would.
            self.stats.accept_overflow += 1;
            let _ = self.table.with_connection(now, id, |c, ()| c.abort());
        }
        self.touched.insert(tuple);
    }

    /// Runs the engine's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.table.handle_timeout(now);
    }

    /// When [`Manager::handle_timeout`] must next run.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.table.poll_timeout()
    }

    /// Sends FIN on every connection (graceful shutdown); [`Manager::abort_all`] after the
    /// grace period.
    pub fn close_all(&mut self, now: Instant) {
        for c in self.conns.values_mut() {
            c.fin_requested = true;
            let _ = self.table.with_connection(now, c.id, |c, ()| c.shutdown());
        }
    }

    /// Resets every connection.
    pub fn abort_all(&mut self, now: Instant) {
        for c in self.conns.values() {
            let _ = self.table.with_connection(now, c.id, |c, ()| c.abort());
        }
    }

    /// Connections not yet finished (TIME-WAIT ones aside).
    pub fn open_connections(&self) -> usize {
        self.conns
            .keys()
            .filter(|t| self.table.state_of(t).is_some_and(|s| s != State::TimeWait))
            .count()
    }

    /// Services the applications and writes out everything the engine has to send. Returns
    /// `false` if the sink filled up with segments still pending.
    pub fn drain(&mut self, now: Instant, sink: &mut impl FrameSink) -> bool {
        // Segments made by received frames and timers go first: an event below may remove a
        // connection, and with it the route its last segment needs.
        let mut flowing = self.transmit(now, sink);
        for t in self.doorbell.take() {
            self.touched.insert(t);
        }
        self.take_events();
        let touched: Vec<FourTuple> = self.touched.drain().collect();
        for tuple in touched {
            self.service(now, tuple);
        }
        // Servicing may have ended connections (close with unread data) or made segments.
        self.take_events();
        flowing &= self.transmit(now, sink);
        self.stray_routes.clear();
        flowing
    }

    /// Drains the engine's events: a closed connection is cleaned up at once; any other
    /// event marks its connection for service.
    fn take_events(&mut self) {
        while let Some(event) = self.table.poll_event() {
            match event {
                TableEvent::Closed { tuple, reason, .. } => self.closed(tuple, reason),
                TableEvent::TimeWait { tuple, .. } => {
                    // The peer's FIN and everything before it were read: end of stream. The
                    // tuple stays ours (TIME-WAIT) until `Closed`.
                    if let Some(conn) = self.conns.get(&tuple) {
                        let mut pipe = conn.shared.lock();
                        pipe.rx_eof = true;
                        pipe.wake_reader();
                    }
                }
                TableEvent::Conn { id, .. } => {
                    if let Some(tuple) = self.table.connection(id).map(Connection::tuple) {
                        self.touched.insert(*tuple);
                    }
                }
            }
        }
    }

    fn closed(&mut self, tuple: FourTuple, reason: CloseReason) {
        self.stats.closed += 1;
        self.flows.remove(&flow_key(&tuple));
        if let Some(conn) = self.conns.remove(&tuple) {
            // The connection's last segments (a RST, a final ACK) may still be queued.
            self.stray_routes.insert(tuple, conn.route);
            let mut pipe = conn.shared.lock();
            if reason == CloseReason::Normal {
                pipe.rx_eof = true;
            }
            pipe.ended = Some(reason);
            pipe.wake_reader();
            pipe.wake_writer();
        }
    }

    /// Moves bytes between a connection's pipe and the engine, and passes on shutdown and
    /// close.
    fn service(&mut self, now: Instant, tuple: FourTuple) {
        let Some(conn) = self.conns.get_mut(&tuple) else { return };
        let mut pipe = conn.shared.lock();
        // Application -> engine.
        let id = conn.id;
        let mut moved = false;
        while !pipe.tx.is_empty() {
            let (front, _) = pipe.tx.as_slices();
            match self.table.with_connection(now, id, |c, ()| c.send(front)) {
                Ok(Ok(0) | Err(_)) | Err(_) => break,
                Ok(Ok(n)) => {
                    pipe.tx.drain(..n);
                    moved = true;
                }
            }
        }
        if moved {
            pipe.wake_writer();
        }
        if pipe.tx.is_empty() && pipe.tx_shutdown && !conn.fin_requested {
            conn.fin_requested = true;
            let _ = self.table.with_connection(now, id, |c, ()| c.shutdown());
        }
        // Engine -> application, as far as the pipe has room (back-pressure), or into the
        // void once the application is gone.
        let mut delivered = false;
        loop {
            let room = if pipe.app_gone {
                self.scratch.len()
            } else {
                pipe.rx_space().min(self.scratch.len())
            };
            if room == 0 || pipe.rx_eof {
                break;
            }
            let scratch = &mut self.scratch[..room];
            match self.table.with_connection(now, id, |c, ()| c.recv(scratch)) {
                Ok(Ok(0)) => {
                    pipe.rx_eof = true;
                    delivered = true;
                    break;
                }
                Ok(Ok(n)) => {
                    if !pipe.app_gone {
                        pipe.rx.extend(&self.scratch[..n]);
                        delivered = true;
                    }
                }
                // Nothing now (WouldBlock), ended without FIN (Closed: the Closed event tells
                // the application), or gone from the table.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if delivered {
            pipe.wake_reader();
        }
        if pipe.app_gone && pipe.tx.is_empty() && !conn.close_requested {
            conn.close_requested = true;
            conn.fin_requested = true;
            let _ = self.table.with_connection(now, id, |c, ()| c.close());
        }
    }

    fn transmit(&mut self, now: Instant, sink: &mut impl FrameSink) -> bool {
        loop {
            let (tuple, len) = match self.pending_tx.take() {
                Some(pending) => pending,
                None => match self.table.poll_transmit(now, &mut self.tx_buf) {
                    Some(t) => (t.tuple, t.len),
                    None => return true,
                },
            };
            let route = self
                .conns
                .get(&tuple)
                .map(|c| c.route)
                .or_else(|| self.stray_routes.get(&tuple).copied());
            let Some(route) = route else {
                self.stats.no_route += 1;
                continue;
            };
            let (src, dst) = (tuple.local.ip(), tuple.remote.ip());
            let segment = &self.tx_buf[..len];
            let sent = sink.send_frame(&mut |buf| {
                frame::build(buf, &route, src, dst, |tcp| {
                    tcp.get_mut(..len)?.copy_from_slice(segment);
                    Some(len)
                })
                .unwrap_or(0)
            });
            if !sent {
                self.pending_tx = Some((tuple, len));
                return false;
            }
            self.stats.frames_out += 1;
        }
    }
}

/// The largest TCP segment the manager asks the engine for: an MSS of 1460 with a full
/// header, within the UMEM frame.
const TX_SEGMENT_BUFFER: usize = 1460 + tcp_engine::MIN_TRANSMIT_BUFFER;

/// Parses a segment from the peer of `tuple`, verifying its checksum.
fn parse_segment(tuple: &FourTuple, tcp: &[u8]) -> Result<Segment, tcp_engine::wire::WireError> {
    Segment::parse(tcp, &tuple.incoming_pseudo_header()?)
}

/// The flow-table key of a connection (as the XDP program writes it).
pub fn flow_key(tuple: &FourTuple) -> FlowKey {
    let (lp, rp) = (tuple.local.port(), tuple.remote.port());
    match (tuple.local.ip(), tuple.remote.ip()) {
        (IpAddr::V4(l), IpAddr::V4(r)) => FlowKey::v4(r.octets(), l.octets(), rp, lp),
        (l, r) => FlowKey::v6(v6(r), v6(l), rp, lp),
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// What the engine needs to start a connection in ESTABLISHED, from what the XDP program
/// decoded out of the cookie.
pub fn handshake_from_flow(tuple: FourTuple, flow: &FlowValue) -> CookieHandshake {
    let wscale = (flow.peer_wscale != FlowValue::NO_WSCALE).then_some(flow.peer_wscale);
    let timestamps = (flow.flags & FlowValue::TIMESTAMPS != 0)
        .then_some(TsInfo { ts_recent: flow.ts_recent, our_tsval_offset: flow.ts_offset });
    CookieHandshake {
        tuple,
        iss: SeqNumber::new(flow.server_isn),
        irs: SeqNumber::new(flow.client_isn),
        peer_mss: flow.mss,
        peer_wscale: wscale,
        our_wscale: wscale.map(|_| flow.local_wscale),
        sack_permitted: flow.flags & FlowValue::SACK != 0,
        timestamps,
        peer_window: u32::from(flow.peer_window) << wscale.unwrap_or(0).min(14),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const SHIELD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const SHIELD: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const CLIENT_ISN: u32 = 1000;
    const SERVER_ISN: u32 = 7000;

    fn manager(
        flows: HashMap<FlowKey, FlowValue>,
    ) -> (Manager<HashMap<FlowKey, FlowValue>>, super::super::stream::Listener) {
        let (listener, accept) = super::super::stream::Listener::new(8);
        let table = ConnectionTable::new(Arc::new(tcp_engine::Config::default()), 1);
        (Manager::new(table, flows, accept, Arc::new(Doorbell::new().unwrap())), listener)
    }

    fn tuple() -> FourTuple {
        FourTuple::new((SHIELD, 7).into(), (CLIENT, 40000).into())
    }

    fn validated() -> HashMap<FlowKey, FlowValue> {
        let flow = FlowValue {
            server_isn: SERVER_ISN,
            client_isn: CLIENT_ISN,
            mss: 1460,
            peer_window: 64240,
            peer_wscale: FlowValue::NO_WSCALE,
            ..FlowValue::default()
        };
        HashMap::from([(flow_key(&tuple()), flow)])
    }

    /// A segment from the client, built by etherparse.
    fn from_client(seq: u32, ack: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(CLIENT_MAC, SHIELD_MAC)
            .ipv4(CLIENT.octets(), SHIELD.octets(), 64)
            .tcp(40000, 7, seq, 64240)
            .ack(ack);
        if fin {
            b = b.fin();
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

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

    #[test]
    fn unvalidated_segments_are_not_admitted_and_get_a_reset() {
        let (mut m, _listener) = manager(HashMap::new());
        let now = Instant::from_millis(1);
        m.handle_frame(now, &from_client(CLIENT_ISN + 1, SERVER_ISN + 1, false, b"x"));
        let mut out = Vec::new();
        assert!(m.drain(now, &mut out));
        assert_eq!(m.stats().not_validated, 1);
        assert_eq!(m.stats().admitted, 0);
        assert!(m.is_empty());
        assert_eq!(out.len(), 1);
        let rst = decode(&out[0]);
        assert!(rst.rst);
        assert_eq!(rst.dst_mac, CLIENT_MAC, "the reply goes back the way the segment came");
        assert_eq!(rst.seq, SERVER_ISN + 1, "RST takes its sequence number from the ACK");
    }

    #[test]
    fn malformed_frames_are_counted_drops() {
        let (mut m, _listener) = manager(validated());
        let now = Instant::from_millis(1);
        let good = from_client(CLIENT_ISN + 1, SERVER_ISN + 1, false, b"");
        m.handle_frame(now, &good[..30]);
        let mut bad_sum = good.clone();
        let last = bad_sum.len() - 1;
        bad_sum[last] ^= 0xff; // TCP checksum (urgent pointer low byte) now wrong
        m.handle_frame(now, &bad_sum);
        assert_eq!(m.stats().frames_malformed, 2);
        assert!(m.is_empty(), "a segment with a bad checksum admits nothing");
    }

    #[tokio::test]
    async fn a_validated_ack_with_data_becomes_a_stream() {
        let (mut m, mut listener) = manager(validated());
        let mut now = Instant::from_millis(1);
        m.handle_frame(now, &from_client(CLIENT_ISN + 1, SERVER_ISN + 1, false, b"hello"));
        let mut out = Vec::new();
        m.drain(now, &mut out);
        assert_eq!(m.stats().admitted, 1);
        let mut stream = listener.accept().await.unwrap();
        assert_eq!(stream.peer_addr(), (CLIENT, 40000).into());
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");

        stream.write_all(b"world").await.unwrap();
        now = Instant::from_millis(2);
        m.drain(now, &mut out);
        let data = out.iter().map(|f| decode(f)).find(|s| !s.payload.is_empty()).unwrap();
        assert_eq!(data.payload, b"world");
        assert_eq!(data.seq, SERVER_ISN + 1);
        assert_eq!(data.ack, CLIENT_ISN + 1 + 5, "acknowledges the data of the third ACK");
        assert_eq!(data.dst_mac, CLIENT_MAC);

        // The client closes (FIN after its 5 bytes, acking ours): the application sees EOF.
        out.clear();
        m.handle_frame(now, &from_client(CLIENT_ISN + 6, SERVER_ISN + 6, true, b""));
        m.drain(now, &mut out);
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        // Dropping the stream closes our side: FIN.
        drop(stream);
        m.drain(now, &mut out);
        assert!(out.iter().map(|f| decode(f)).any(|s| s.fin), "FIN after the application closed");
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
        let h = handshake_from_flow(tuple(), &flow);
        assert_eq!((h.iss, h.irs), (SeqNumber::new(1), SeqNumber::new(2)));
        assert_eq!((h.peer_wscale, h.our_wscale), (Some(7), Some(9)));
        assert_eq!(h.peer_window, 100 << 7);
        assert!(h.sack_permitted);
        assert_eq!(h.timestamps, Some(TsInfo { ts_recent: 3, our_tsval_offset: 4 }));
        let plain =
            handshake_from_flow(tuple(), &FlowValue { peer_wscale: FlowValue::NO_WSCALE, ..flow });
        assert_eq!((plain.peer_wscale, plain.our_wscale), (None, None));
    }
}
