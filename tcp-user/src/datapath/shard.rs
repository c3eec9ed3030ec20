//! One shard: everything one RX queue needs, on one thread, sharing nothing on the packet path.
//!
//! A shard owns its queue's AF_XDP socket, a [`ConnectionTable`] whose payload per connection
//! is a [`Conn`] (the L2 route back to the peer and the application's state), the
//! applications' backend sockets (in its poll set), and the XDP flow-map entries of its
//! connections. Frames come in with the XDP program's [`RxMeta`] in front of them, so a frame
//! costs one lookup in the table and no map read.
//!
//! Call order per iteration of the queue thread's loop (`run_shard` in `datapath::run`):
//! 1. the poll set's reports (backend sockets, wake-ups);
//! 2. a batch of received frames, and frames other shards forwarded;
//! 3. the engine's and the applications' timers;
//! 4. the table's events, each dispatched to its connection's application;
//! 5. every segment the table has ready, written into TX frames.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;

use tcp_common::wire::Frame;
use tcp_common::{FlowKey, FlowValue, RxKind, RxMeta};
use tcp_engine::wire::TcpRepr;
use tcp_engine::{
    CloseReason, ConnId, Connection, ConnectionTable, CookieHandshake, Event, FourTuple, Instant,
    SeqNumber, State, TableEvent, TableStats, TsInfo,
};

use super::flows::FlowMap;
use super::frame::{HEADROOM, Route, write_headers};
use super::inbox::{Inbox, InboxSender, Message};
use super::limit::SourceLimit;
use super::poller::{Poller, Ready, TOKEN_WAKE, TOKEN_XSK, WakeFd};
use crate::app::{App, AppConn, AppEvent, Backends, StreamIo};

/// A connection's payload in the table.
#[derive(Debug)]
pub struct Conn {
    /// How to reach the peer at layer 2.
    route: Route,
    /// The application's state.
    app: AppConn,
    /// The application's deadline, if it asked for one.
    app_deadline: Option<Instant>,
    /// Opened from a SYN (a stateful handshake): its flow-map entry is marked HALF_OPEN
    /// until the handshake completes.
    half_open: bool,
}

impl Conn {
    fn new(route: Route, app: AppConn) -> Conn {
        Conn { route, app, app_deadline: None, half_open: false }
    }
}

/// Tells the XDP program whether this shard takes SYNs for a stateful answer (its queue's
/// half-open room flag); returns whether the write worked.
pub type RoomFlag = Box<dyn FnMut(bool) -> bool + Send>;

/// What a shard counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Frames received (own queue and forwarded).
    pub frames_in: u64,
    /// Frames that were not a whole TCP segment over IP, or whose checksum failed: dropped.
    pub frames_malformed: u64,
    /// Frames without the XDP program's metadata (looked up in the flow map instead).
    pub frames_without_meta: u64,
    /// Frames handed to the shard that owns their connection.
    pub frames_forwarded: u64,
    /// Frames that could not be forwarded (the owner's inbox was full): dropped.
    pub forward_dropped: u64,
    /// Connections admitted from a validated cookie (reopens included).
    pub admitted: u64,
    /// Tuples in TIME-WAIT reopened by a new handshake (RFC 6191).
    pub reopened: u64,
    /// New connections refused with RST because `max_conns` were held.
    pub refused_full: u64,
    /// New connections refused with RST because their source held its limit.
    pub refused_per_source: u64,
    /// Connections admitted from a segment of a known flow because the frame of their third
    /// ACK was lost before the shard saw it (its AF_XDP ring was full).
    pub admitted_late: u64,
    /// Flow-map entries that had no connection (a frame found them): removed.
    pub orphans_removed: u64,
    /// Flow-map updates the kernel refused.
    pub map_errors: u64,
    /// SYNs answered statefully: half-open connections opened (SYN-RECEIVED).
    pub half_open_opened: u64,
    /// SYNs handed over for a stateful answer and dropped: the half-open table or the
    /// connection table was full (the client retransmits; the XDP program then answers it
    /// with a cookie).
    pub syns_dropped: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Segments for which no route was known: dropped.
    pub no_route: u64,
}

impl ShardStats {
    /// Adds `other` into `self`.
    pub fn accumulate(&mut self, o: &ShardStats) {
        self.frames_in += o.frames_in;
        self.frames_malformed += o.frames_malformed;
        self.frames_without_meta += o.frames_without_meta;
        self.frames_forwarded += o.frames_forwarded;
        self.forward_dropped += o.forward_dropped;
        self.admitted += o.admitted;
        self.reopened += o.reopened;
        self.refused_full += o.refused_full;
        self.refused_per_source += o.refused_per_source;
        self.admitted_late += o.admitted_late;
        self.orphans_removed += o.orphans_removed;
        self.map_errors += o.map_errors;
        self.half_open_opened += o.half_open_opened;
        self.syns_dropped += o.syns_dropped;
        self.frames_out += o.frames_out;
        self.no_route += o.no_route;
    }
}

/// Writes a frame into a TX chunk: returns where in the chunk it starts and how long it is,
/// or `None` to send nothing.
pub type WriteFrame<'a> = dyn FnMut(&mut [u8]) -> Option<(usize, usize)> + 'a;

/// Where a shard's frames go: an AF_XDP TX ring, or a vector in tests.
pub trait FrameSink {
    /// Lends a free TX chunk to `write`. Returns `false`, without calling `write`, when no
    /// chunk is free.
    fn send_frame(&mut self, write: &mut WriteFrame<'_>) -> bool;
}

impl FrameSink for crate::xsk::XskSocket {
    fn send_frame(&mut self, write: &mut WriteFrame<'_>) -> bool {
        self.send_with(|chunk| write(chunk).map(|(start, len)| (start, len, ()))).is_some()
    }
}

impl FrameSink for Vec<Vec<u8>> {
    fn send_frame(&mut self, write: &mut WriteFrame<'_>) -> bool {
        let mut chunk = vec![0u8; 4096];
        if let Some((start, len)) = write(&mut chunk) {
            self.push(chunk[start..start + len].to_vec());
        }
        true
    }
}

/// A connection's id as a poll token (and back).
fn token(id: ConnId) -> u64 {
    id.to_u64()
}

/// One RX queue's connections and applications.
pub struct Shard<F> {
    queue: u32,
    table: ConnectionTable<Conn>,
    app: App,
    flows: F,
    poller: Poller,
    wake: Arc<WakeFd>,
    inbox: Inbox,
    /// Inboxes of the other shards, by RX queue.
    peers: HashMap<u32, InboxSender>,
    app_timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// The poll set's reports of one wait (kept: no allocation per wait).
    ready: Vec<Ready>,
    /// Flow-map entries the reconciler found without a connection, and in which scan.
    suspects: HashMap<FlowKey, u64>,
    /// Routes for segments that go to no live connection (answers of TIME-WAIT records,
    /// resets), from the frames that caused them; kept until they are sent.
    stray_routes: HashMap<FourTuple, Route>,
    max_conns: usize,
    /// Connections per source address, shared by every shard (`--max-conns-per-source`).
    source_limit: Option<Arc<SourceLimit>>,
    /// Most half-open connections (SYN-RECEIVED) at once; 0 when SYNs are not answered
    /// statefully.
    max_half_open: usize,
    /// The queue's half-open room flag, and what it was last set to.
    room_flag: Option<RoomFlag>,
    room_open: Option<bool>,
    stats: ShardStats,
}

impl<F: FlowMap> Shard<F> {
    /// A shard for RX queue `queue`, serving `app`, holding at most `max_conns` connections.
    pub fn new(
        queue: u32,
        table: ConnectionTable<Conn>,
        app: App,
        flows: F,
        max_conns: usize,
    ) -> std::io::Result<(Shard<F>, InboxSender)> {
        let poller = Poller::new(256)?;
        let wake = Arc::new(WakeFd::new()?);
        poller.add_readable(wake.raw_fd(), TOKEN_WAKE)?;
        let (inbox, sender) = Inbox::new(Arc::clone(&wake));
        Ok((
            Shard {
                queue,
                table,
                app,
                flows,
                poller,
                wake,
                inbox,
                peers: HashMap::new(),
                app_timers: BinaryHeap::new(),
                ready: Vec::new(),
                suspects: HashMap::new(),
                stray_routes: HashMap::new(),
                max_conns,
                source_limit: None,
                max_half_open: 0,
                room_flag: None,
                room_open: None,
                stats: ShardStats::default(),
            },
            sender,
        ))
    }

    /// Bounds the connections of each source address (with every other shard).
    pub fn set_source_limit(&mut self, limit: Arc<SourceLimit>) {
        self.source_limit = Some(limit);
    }

    /// Lets this shard forward frames to the shard of `queue`.
    pub fn add_peer(&mut self, queue: u32, inbox: InboxSender) {
        self.peers.insert(queue, inbox);
    }

    /// Watches the AF_XDP socket's descriptor in the poll set.
    pub fn watch_socket(&self, fd: RawFd) -> std::io::Result<()> {
        self.poller.add_readable(fd, TOKEN_XSK)
    }

    /// The eventfd that wakes this shard (stop requests).
    pub fn waker(&self) -> Arc<WakeFd> {
        Arc::clone(&self.wake)
    }

    /// The shard's counters.
    pub fn stats(&self) -> ShardStats {
        self.stats
    }

    /// The table's counters (O(1)).
    pub fn table_stats(&self) -> TableStats {
        self.table.stats()
    }

    /// Connections not yet finished (TIME-WAIT aside): what `max_conns` bounds.
    pub fn open_connections(&self) -> usize {
        let time_wait = self.table.count_in_state(State::TimeWait);
        self.table.len().saturating_sub(time_wait)
    }

    // ---- frames in ----

    /// Handles one received frame: `meta` is the metadata area in front of it.
    pub fn handle_frame(&mut self, now: Instant, meta: &[u8], bytes: &[u8]) {
        self.stats.frames_in += 1;
        let meta = RxMeta::read(meta);
        if let Some((RxKind::Flow, flow)) = meta
            && u32::from(flow.queue) != self.queue
            && let Some(owner) = self.peers.get(&u32::from(flow.queue))
        {
            // Another shard owns this connection: hand the frame over as it came.
            let mut forwarded = Vec::with_capacity(RxMeta::LEN + bytes.len());
            forwarded.extend_from_slice(&RxMeta::new(RxMeta::FLOW, flow).to_bytes());
            forwarded.extend_from_slice(bytes);
            if owner.send(&forwarded) {
                self.stats.frames_forwarded += 1;
            } else {
                self.stats.forward_dropped += 1;
            }
            return;
        }
        let Ok(frame) = Frame::parse(bytes) else {
            self.stats.frames_malformed += 1;
            return;
        };
        let Ok((repr, payload)) = frame.segment() else {
            self.stats.frames_malformed += 1;
            return;
        };
        let route = Route {
            local_mac: frame.dst_mac,
            remote_mac: frame.src_mac,
            vlans: frame.vlans,
            vlan_count: frame.vlan_count,
        };
        let tuple = FourTuple::new(
            SocketAddr::new(frame.dst, repr.dst_port),
            SocketAddr::new(frame.src, repr.src_port),
        );
        let key = frame.flow_key;
        let meta = meta.or_else(|| {
            self.stats.frames_without_meta += 1;
            self.slow_meta(&tuple, &key)
        });
        match meta {
            Some((RxKind::NewFlow, flow)) => {
                self.admit(now, tuple, &key, route, &flow, &repr, payload);
            }
            Some((RxKind::Reopen, flow)) => {
                self.reopen(now, tuple, &key, route, &flow, &repr, payload);
            }
            Some((RxKind::Flow, flow)) if is_lost_third_ack(&flow, &repr) => {
                if self.table.lookup(&tuple).is_none() && self.table.time_wait(&tuple).is_none() {
                    self.stats.admitted_late += 1;
                    self.admit(now, tuple, &key, route, &flow, &repr, payload);
                } else {
                    self.segment(now, tuple, &key, route, &repr, payload);
                }
            }
            Some((RxKind::Flow, _)) | None => self.segment(now, tuple, &key, route, &repr, payload),
            Some((RxKind::Syn, _)) => self.syn(now, tuple, &key, route, &repr, payload),
        }
    }

    /// A frame that came without metadata: what the flow map and the table say instead.
    fn slow_meta(&mut self, tuple: &FourTuple, key: &FlowKey) -> Option<(RxKind, FlowValue)> {
        if self.table.lookup(tuple).is_some() {
            return None; // a segment of a live connection
        }
        let flow = self.flows.get(key)?;
        if flow.flags & FlowValue::TIME_WAIT != 0 {
            return None; // the TIME-WAIT record answers
        }
        Some((RxKind::NewFlow, flow))
    }

    /// A frame another shard forwarded: the metadata and the frame, as it received them.
    pub fn handle_forwarded(&mut self, now: Instant, forwarded: &[u8]) {
        if let Some((meta, frame)) = forwarded.split_at_checked(RxMeta::LEN) {
            // Not forwarded again: if the flow map names another shard than us, it is wrong
            // (the connection is gone), and the frame is handled here as an orphan's.
            let mut meta_bytes = [0u8; RxMeta::LEN];
            meta_bytes.copy_from_slice(meta);
            if let Some((kind, mut flow)) = RxMeta::read(&meta_bytes) {
                flow.queue = self.queue_tag();
                let tag = match kind {
                    RxKind::NewFlow => RxMeta::NEW_FLOW,
                    RxKind::Reopen => RxMeta::REOPEN,
                    RxKind::Flow => RxMeta::FLOW,
                    RxKind::Syn => RxMeta::SYN,
                };
                meta_bytes = RxMeta::new(tag, flow).to_bytes();
            }
            self.handle_frame(now, &meta_bytes, frame);
        }
    }

    /// A segment of a known flow (or of a frame without metadata).
    fn segment(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        key: &FlowKey,
        route: Route,
        repr: &TcpRepr,
        payload: &[u8],
    ) {
        if let Some(id) = self.table.lookup(&tuple) {
            // The path to the peer moves (a router's failover, a new MAC) only on a segment
            // the connection accepted: one that merely names the tuple cannot redirect it.
            if self.table.handle_segment(now, id, repr, payload) == Ok(true)
                && let Some(conn) = self.table.user_mut(id)
            {
                conn.route = route;
            }
            return;
        }
        // No live connection: a TIME-WAIT record answers, or nothing does (RST, unless the
        // segment is one) and the flow-map entry that let the frame through is an orphan.
        if self.table.time_wait(&tuple).is_none() && self.flows.get(key).is_some() {
            self.flows.remove(key);
            self.stats.orphans_removed += 1;
        }
        self.stray_routes.insert(tuple, route);
        self.table.handle_unknown(now, tuple, repr, payload);
    }

    /// A third ACK whose cookie the XDP program validated.
    #[expect(clippy::too_many_arguments, reason = "a frame's parts, parsed once")]
    fn admit(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        key: &FlowKey,
        route: Route,
        flow: &FlowValue,
        repr: &TcpRepr,
        payload: &[u8],
    ) {
        if self.table.lookup(&tuple).is_some() {
            // A retransmitted third ACK the XDP program saw before our entry: a segment.
            return self.segment(now, tuple, key, route, repr, payload);
        }
        if self.open_connections() >= self.max_conns {
            // Refused the way a full listen queue with tcp_abort_on_overflow refuses: RST.
            self.stats.refused_full += 1;
            return self.refuse(now, tuple, key, route, repr, payload);
        }
        if !self.source_admits(tuple.remote.ip()) {
            self.stats.refused_per_source += 1;
            return self.refuse(now, tuple, key, route, repr, payload);
        }
        let handshake = handshake_from_flow(tuple, flow);
        let conn = Conn::new(route, self.app.open());
        if self.table.insert_from_cookie(now, &handshake, repr, payload, conn).is_ok() {
            self.stats.admitted += 1;
        } else {
            self.source_released(tuple.remote.ip());
            self.segment(now, tuple, key, route, repr, payload);
        }
    }

    /// A valid cookie for a tuple in TIME-WAIT: a new incarnation if RFC 6191 allows it.
    #[expect(clippy::too_many_arguments, reason = "a frame's parts, parsed once")]
    fn reopen(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        key: &FlowKey,
        route: Route,
        flow: &FlowValue,
        repr: &TcpRepr,
        payload: &[u8],
    ) {
        if self.table.time_wait(&tuple).is_none() {
            // The record already expired (and removed its entry): an ordinary admission.
            let mut flow = *flow;
            flow.queue = self.queue_tag();
            self.set_flow(key, &flow);
            return self.admit(now, tuple, key, route, &flow, repr, payload);
        }
        if !self.source_admits(tuple.remote.ip()) {
            // The record stays and answers: the source holds its limit.
            self.stats.refused_per_source += 1;
            return self.segment(now, tuple, key, route, repr, payload);
        }
        let handshake = handshake_from_flow(tuple, flow);
        let conn = Conn::new(route, self.app.open());
        if self.table.reopen_from_cookie(now, &handshake, repr, payload, conn).is_ok() {
            let mut flow = *flow;
            flow.queue = self.queue_tag();
            flow.flags &= !FlowValue::TIME_WAIT;
            self.set_flow(key, &flow);
            self.stats.admitted += 1;
            self.stats.reopened += 1;
        } else {
            // Not newer than the old incarnation: the record answers the segment.
            self.source_released(tuple.remote.ip());
            self.segment(now, tuple, key, route, repr, payload);
        }
    }

    /// A SYN the XDP program handed over for a stateful answer (`--mode stateful` or
    /// `adaptive` in peace): a half-open connection in SYN-RECEIVED answers it with a SYN-ACK
    /// carrying the exact options (not a cookie's classes) and retransmits it as Linux does.
    /// Its flow-map entry is marked HALF_OPEN before the SYN-ACK leaves, so the third ACK
    /// (no cookie) reaches this shard.
    fn syn(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        key: &FlowKey,
        route: Route,
        repr: &TcpRepr,
        payload: &[u8],
    ) {
        if self.table.lookup(&tuple).is_some() {
            // The tuple is a live connection's: it answers the SYN (RFC 5961 section 4).
            return self.segment(now, tuple, key, route, repr, payload);
        }
        let reopens = self.table.time_wait(&tuple).is_some();
        let half_open = self.table.count_in_state(State::SynReceived);
        if half_open >= self.max_half_open || self.open_connections() >= self.max_conns {
            self.stats.syns_dropped += 1;
            return;
        }
        if !self.source_admits(tuple.remote.ip()) {
            self.stats.syns_dropped += 1;
            self.stats.refused_per_source += 1;
            return;
        }
        let entry = FlowValue {
            flags: FlowValue::HALF_OPEN,
            queue: self.queue_tag(),
            ..FlowValue::default()
        };
        if !self.set_flow(key, &entry) {
            // Without its entry the third ACK would meet a cookie check it cannot pass.
            self.source_released(tuple.remote.ip());
            return;
        }
        let mut conn = Conn::new(route, self.app.open());
        conn.half_open = true;
        // A tuple in TIME-WAIT is taken over only by a newer incarnation (RFC 6191).
        let opened = if reopens {
            self.table.reopen_from_syn(now, tuple, repr, conn)
        } else {
            self.table.insert_from_syn(now, tuple, repr, conn)
        };
        if opened.is_ok() {
            self.stats.half_open_opened += 1;
            if reopens {
                self.stats.reopened += 1;
            }
        } else if reopens {
            // Not newer: the record stays, answers the SYN, and keeps its marked entry.
            let marked = FlowValue { flags: FlowValue::TIME_WAIT, ..entry };
            self.set_flow(key, &marked);
            self.source_released(tuple.remote.ip());
            self.segment(now, tuple, key, route, repr, payload);
        } else {
            self.flows.remove(key);
            self.source_released(tuple.remote.ip());
        }
    }

    /// This shard's queue as a flow-map entry names it.
    fn queue_tag(&self) -> u8 {
        u8::try_from(self.queue).unwrap_or(u8::MAX)
    }

    /// Writes a flow-map entry; a failure is counted (`map_errors`). Returns whether it was
    /// written.
    fn set_flow(&mut self, key: &FlowKey, value: &FlowValue) -> bool {
        let written = self.flows.set(key, value).is_ok();
        self.stats.map_errors += u64::from(!written);
        written
    }

    /// Opens or closes the queue's half-open room flag as the half-open table fills and
    /// empties. It closes with room to spare: SYNs already in the ring still arrive.
    pub fn update_room(&mut self) {
        let Some(flag) = self.room_flag.as_mut() else { return };
        let half_open = self.table.count_in_state(State::SynReceived);
        let slack = (self.max_half_open / 4).min(ROOM_SLACK);
        let room = half_open + slack < self.max_half_open;
        if self.room_open != Some(room) && flag(room) {
            self.room_open = Some(room);
        }
    }

    /// Lets this shard answer SYNs statefully, at most `max_half_open` at a time, telling
    /// the XDP program through `flag`.
    pub fn set_half_open(&mut self, max_half_open: usize, flag: RoomFlag) {
        self.max_half_open = max_half_open;
        self.room_flag = Some(flag);
        self.update_room();
    }

    /// Refuses a new connection with RST (RFC 9293 section 3.10.7.1, as for no connection)
    /// and removes its flow-map entry.
    fn refuse(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        key: &FlowKey,
        route: Route,
        repr: &TcpRepr,
        payload: &[u8],
    ) {
        self.flows.remove(key);
        self.stray_routes.insert(tuple, route);
        self.table.handle_unknown(now, tuple, repr, payload);
    }

    /// Counts a new connection from `source` if its limit allows.
    fn source_admits(&self, source: IpAddr) -> bool {
        self.source_limit.as_ref().is_none_or(|l| l.try_admit(source))
    }

    /// A connection from `source` ended (or became a TIME-WAIT record).
    fn source_released(&self, source: IpAddr) {
        if let Some(l) = &self.source_limit {
            l.release(source);
        }
    }

    // ---- timers ----

    /// When the shard must next run its timers.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let app = self.app_timers.peek().map(|Reverse((at, _))| *at);
        self.table.poll_timeout().into_iter().chain(app).min()
    }

    /// Runs the engine's and the applications' due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.table.handle_timeout(now);
        while let Some(&Reverse((at, id))) = self.app_timers.peek() {
            if at > now {
                break;
            }
            self.app_timers.pop();
            let current = self.table.user(id).is_some_and(|c| c.app_deadline == Some(at));
            if current {
                self.dispatch(now, id, AppEvent::Timer);
            }
        }
    }

    // ---- applications ----

    /// Handles one report of the poll set.
    pub fn handle_ready(&mut self, now: Instant, r: Ready) {
        match r.token {
            TOKEN_XSK => {}
            TOKEN_WAKE => self.wake.clear(),
            t => {
                if let Some(id) = ConnId::from_u64(t) {
                    let ev = AppEvent::Backend { readable: r.readable, writable: r.writable };
                    self.dispatch(now, id, ev);
                }
            }
        }
    }

    /// Dispatches the table's events to the applications and keeps the flow map in step;
    /// returns how many there were.
    pub fn handle_events(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(ev) = self.table.poll_event() {
            n += 1;
            match ev {
                TableEvent::Conn { id, event } => {
                    let app_event = match event {
                        Event::Connected => {
                            self.handshake_completed(id);
                            AppEvent::Opened
                        }
                        _ => AppEvent::Ready,
                    };
                    self.dispatch(now, id, app_event);
                }
                TableEvent::TimeWait { tuple, user } => {
                    self.app_closed(user, CloseReason::Normal, now);
                    self.source_released(tuple.remote.ip());
                    // New handshakes for this tuple now reach us as reopen candidates.
                    let value = FlowValue {
                        flags: FlowValue::TIME_WAIT,
                        queue: self.queue_tag(),
                        ..FlowValue::default()
                    };
                    self.set_flow(&flow_key(&tuple), &value);
                }
                TableEvent::Closed { tuple, reason, user } => {
                    if let Some(user) = user {
                        self.app_closed(user, reason, now);
                        self.source_released(tuple.remote.ip());
                    }
                    self.flows.remove(&flow_key(&tuple));
                }
            }
        }
        n
    }

    /// A stateful handshake completed: the entry is an established connection's from now on.
    fn handshake_completed(&mut self, id: ConnId) {
        let tuple = match self.table.user_mut(id) {
            Some(user) if user.half_open => {
                user.half_open = false;
                self.table.connection(id).map(|c| *c.tuple())
            }
            _ => None,
        };
        // A stateful handshake completed: an admission, as a cookie's third ACK is one.
        self.stats.admitted += u64::from(tuple.is_some());
        if let Some(tuple) = tuple {
            let entry = FlowValue { queue: self.queue_tag(), ..FlowValue::default() };
            self.set_flow(&flow_key(&tuple), &entry);
        }
    }

    /// Tells a finished connection's application, so it lets go of what it holds.
    fn app_closed(&mut self, mut user: Conn, reason: CloseReason, now: Instant) {
        let mut backends = PollBackends { poller: &self.poller, token: 0 };
        self.app.on_event(&mut user.app, &mut Gone, AppEvent::Closed(reason), now, &mut backends);
    }

    /// Runs the application of connection `id` on `event`.
    fn dispatch(&mut self, now: Instant, id: ConnId, event: AppEvent) {
        let Shard { table, app, poller, app_timers, .. } = self;
        let _ = table.with_connection(now, id, |conn, user| {
            let mut io = ConnIo(conn);
            let mut backends = PollBackends { poller, token: token(id) };
            let deadline = app.on_event(&mut user.app, &mut io, event, now, &mut backends);
            if deadline != user.app_deadline {
                user.app_deadline = deadline;
                if let Some(at) = deadline {
                    app_timers.push(Reverse((at, id)));
                }
            }
        });
    }

    // ---- frames out ----

    /// Writes every ready segment into TX frames. Returns `false` if the sink filled up with
    /// segments still waiting.
    pub fn transmit(&mut self, now: Instant, sink: &mut impl FrameSink) -> bool {
        let Shard { table, stray_routes, stats, .. } = self;
        let mut engine_empty = false;
        while !engine_empty {
            let sent = sink.send_frame(&mut |chunk| {
                let Some(tcp) = chunk.get_mut(HEADROOM..) else {
                    engine_empty = true;
                    return None;
                };
                let Some(tx) = table.poll_transmit(now, tcp) else {
                    engine_empty = true;
                    return None;
                };
                let route = match tx.conn {
                    Some(id) => table.user(id).map(|c| c.route),
                    None => stray_routes.get(&tx.tuple).copied(),
                };
                let Some(route) = route else {
                    stats.no_route += 1;
                    return None;
                };
                let (src, dst) = (tx.tuple.local.ip(), tx.tuple.remote.ip());
                if let Ok(start) = write_headers(chunk, HEADROOM, &route, src, dst, tx.len) {
                    stats.frames_out += 1;
                    Some((start, HEADROOM - start + tx.len))
                } else {
                    stats.no_route += 1;
                    None
                }
            });
            if !sent {
                return false;
            }
        }
        stray_routes.clear();
        true
    }

    // ---- stopping ----

    /// Sends FIN on every connection (a graceful stop); drops the half-open ones.
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<ConnId> = self.table.ids().collect();
        for id in ids {
            let _ = self.table.with_connection(now, id, |conn, _| {
                if conn.state() == State::SynReceived {
                    // Half-open (no application has seen it): dropped without a word, as
                    // Linux drops a listener's SYN queue; a FIN would wait for a third ACK
                    // that a flood's forged source never sends.
                    conn.discard();
                } else {
                    let _ = conn.shutdown();
                }
            });
        }
    }

    /// Resets every connection.
    pub fn abort_all(&mut self, now: Instant) {
        let ids: Vec<ConnId> = self.table.ids().collect();
        for id in ids {
            let _ = self.table.with_connection(now, id, |conn, _| conn.abort());
        }
    }

    /// Waits in the poll set up to `timeout_ms` and handles what it reports; returns how many.
    pub fn poll(&mut self, now: Instant, timeout_ms: i32) -> usize {
        let mut ready = std::mem::take(&mut self.ready);
        let n = self.poller.wait(timeout_ms, |r| ready.push(r)).unwrap_or(0);
        for r in ready.drain(..) {
            self.handle_ready(now, r);
        }
        self.ready = ready;
        n
    }

    /// Handles what other shards and the reconciler sent (at most `budget` messages);
    /// returns how many.
    pub fn handle_inbox(&mut self, now: Instant, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            match self.inbox.take() {
                Some(Message::Frame(f)) => self.handle_forwarded(now, &f),
                Some(Message::Check { key, scan }) => self.check_entry(&key, scan),
                None => break,
            }
            n += 1;
        }
        n
    }

    /// The reconciler's question about a flow-map entry this shard owns. An entry whose
    /// tuple has no connection and no TIME-WAIT record in two consecutive scans is an
    /// orphan: removed and counted. Two scans, not one: the third ACK that inserted an entry
    /// may still be on its way to the shard through its ring when the first scan sees it.
    fn check_entry(&mut self, key: &FlowKey, scan: u64) {
        let Some(tuple) = tuple_of(key) else { return };
        if self.table.lookup(&tuple).is_some() || self.table.time_wait(&tuple).is_some() {
            self.suspects.remove(key);
            return;
        }
        match self.suspects.get(key) {
            Some(&seen) if seen + 1 == scan => {
                self.suspects.remove(key);
                self.flows.remove(key);
                self.stats.orphans_removed += 1;
            }
            _ if self.suspects.len() < MAX_SUSPECTS => {
                self.suspects.insert(*key, scan);
            }
            // Too many suspects at once (an attack on the map): forget the oldest scan's.
            _ => self.suspects.retain(|_, seen| *seen + 1 >= scan),
        }
    }
}

/// Whether a segment of a known flow is the third ACK (or the data right behind it) of the
/// handshake the flow's cookie made: it acknowledges our ISN + 1 and starts at the client's
/// ISN + 1. Its own frame with NEW_FLOW was then lost before the shard saw it (a full AF_XDP
/// ring), and the client is established: it is admitted now. Any later segment of a flow
/// without a connection is an orphan's.
fn is_lost_third_ack(flow: &FlowValue, repr: &TcpRepr) -> bool {
    flow.flags & FlowValue::TIME_WAIT == 0
        && !repr.flags.syn()
        && !repr.flags.rst()
        && !repr.flags.fin()
        && repr.ack_number == Some(SeqNumber::new(flow.server_isn.wrapping_add(1)))
        && repr.seq_number == SeqNumber::new(flow.client_isn.wrapping_add(1))
}

/// Most SYNs the room flag leaves room for after it closes: those already in the RX ring.
const ROOM_SLACK: usize = 64;

/// Most suspects a shard remembers between two reconciliation scans.
const MAX_SUSPECTS: usize = 1 << 16;

/// The connection a flow-map key names (the inverse of [`flow_key`]).
fn tuple_of(key: &FlowKey) -> Option<FourTuple> {
    let addr = |a: [u8; 16]| -> IpAddr {
        let v6 = std::net::Ipv6Addr::from(a);
        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
    };
    let (local, remote) = (addr(key.local_addr), addr(key.remote_addr));
    (local.is_ipv4() == remote.is_ipv4()).then(|| {
        FourTuple::new(
            SocketAddr::new(local, key.local_port),
            SocketAddr::new(remote, key.remote_port),
        )
    })
}

/// The flow-map key of a connection.
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

/// Most bytes one `send_from` offers a source: a socket read's worth. Less room than this in
/// the send buffer asks the engine for a Writable event when it has more.
const READ_CHUNK: usize = 64 * 1024;

/// The engine's connection as an application sees it.
struct ConnIo<'a>(&'a mut Connection);

impl StreamIo for ConnIo<'_> {
    fn readable(&self) -> (&[u8], &[u8]) {
        self.0.recv_slices()
    }

    fn consume(&mut self, n: usize) {
        self.0.consume(n);
    }

    fn peer_finished(&self) -> bool {
        self.0.fin_received()
    }

    fn send(&mut self, data: &[u8]) -> usize {
        self.0.send(data).unwrap_or(0)
    }

    fn send_room(&self) -> usize {
        if self.0.state().may_send() { self.0.send_room() } else { 0 }
    }

    fn send_received(&mut self) -> usize {
        self.0.send_received()
    }

    fn send_from(
        &mut self,
        fill: &mut dyn FnMut(&mut [u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<Option<usize>> {
        // Asking for a read's worth of room makes the engine report Writable once there is
        // room again if there is less now.
        let mut result = Ok(None);
        let _ = self.0.send_with(READ_CHUNK, |spare| match fill(spare) {
            Ok(n) => {
                result = Ok(Some(n));
                n
            }
            Err(e) => {
                result = Err(e);
                0
            }
        });
        result
    }

    fn shutdown(&mut self) {
        let _ = self.0.shutdown();
    }

    fn close(&mut self) {
        let _ = self.0.close();
    }

    fn abort(&mut self) {
        self.0.abort();
    }
}

/// The connection of an application told it is closed: nothing to read or send.
struct Gone;

impl StreamIo for Gone {
    fn readable(&self) -> (&[u8], &[u8]) {
        (&[], &[])
    }
    fn consume(&mut self, _: usize) {}
    fn peer_finished(&self) -> bool {
        true
    }
    fn send(&mut self, _: &[u8]) -> usize {
        0
    }
    fn send_room(&self) -> usize {
        0
    }
    fn send_received(&mut self) -> usize {
        0
    }
    fn send_from(
        &mut self,
        _: &mut dyn FnMut(&mut [u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<Option<usize>> {
        Ok(None)
    }
    fn shutdown(&mut self) {}
    fn close(&mut self) {}
    fn abort(&mut self) {}
}

/// The shard's poll set, as one connection's application uses it.
struct PollBackends<'a> {
    poller: &'a Poller,
    token: u64,
}

impl Backends for PollBackends<'_> {
    fn register(&mut self, fd: RawFd) -> std::io::Result<()> {
        self.poller.add_edge(fd, self.token)
    }

    fn deregister(&mut self, fd: RawFd) {
        self.poller.remove(fd);
    }
}

#[cfg(test)]
mod tests;
