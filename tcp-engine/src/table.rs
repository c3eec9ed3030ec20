//! Many connections keyed by 4-tuple, with one timer heap for all of them.
//!
//! Built for a million mostly idle connections: connections sit in a slab, the index maps
//! the tuple to a slot, and the heap holds one `(deadline, slot, generation)` entry per
//! connection. Deadlines that move later are not updated in the heap: the early entry
//! fires, finds nothing due, and is pushed again at the real deadline (lazy rescheduling),
//! so segment processing never touches the heap unless a deadline moves earlier.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::conn::{
    CloseError, ConnStats, Connection, CookieHandshake, Event, RecvError, Segment, SendError,
    reset_reply,
};
use crate::seq::SeqNumber;
use crate::state::State;
use crate::time::Instant;
use crate::tuple::FourTuple;
use crate::wire::{Packet, TcpRepr};

/// A segment to send on a connection's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The connection (local is the source of the segment).
    pub tuple: FourTuple,
    /// Header and payload; emit with [`Segment::emit_into`] and
    /// [`FourTuple::outgoing_pseudo_header`].
    pub segment: Segment,
}

/// An application event of one connection.
///
/// `Event::Closed` also means the table removed the connection: the shell should delete
/// the flow from the XDP flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEvent {
    /// The connection.
    pub tuple: FourTuple,
    /// What happened.
    pub event: Event,
}

/// Why a table operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A connection with this tuple exists.
    #[error("connection exists")]
    Exists,
    /// No connection with this tuple.
    #[error("no such connection")]
    NotFound,
    /// The application call failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The application call failed.
    #[error(transparent)]
    Recv(#[from] RecvError),
    /// The application call failed.
    #[error(transparent)]
    Close(#[from] CloseError),
}

/// Aggregate counters for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Live connections per state, indexed by [`State::index`].
    pub by_state: [usize; 11],
    /// Counters of live and finished connections together.
    pub totals: ConnStats,
    /// Segments that reached no connection.
    pub no_connection: u64,
    /// RSTs sent for them (RFC 9293 section 3.10.7.1).
    pub resets_for_no_connection: u64,
    /// Segments that failed to parse or verify.
    pub malformed: u64,
    /// Connections created (cookie, active or passive open).
    pub opened: u64,
    /// Connections removed after `Event::Closed`.
    pub closed: u64,
}

impl TableStats {
    /// Adds `other` into `self` (summing the tables of several queues).
    pub fn accumulate(&mut self, other: &TableStats) {
        for (a, b) in self.by_state.iter_mut().zip(other.by_state) {
            *a += b;
        }
        self.totals.accumulate(&other.totals);
        self.no_connection += other.no_connection;
        self.resets_for_no_connection += other.resets_for_no_connection;
        self.malformed += other.malformed;
        self.opened += other.opened;
        self.closed += other.closed;
    }
}

#[derive(Debug)]
struct Slot {
    conn: Option<Connection>,
    generation: u32,
    /// The earliest heap entry for this slot, if any.
    scheduled: Option<Instant>,
}

/// Connections keyed by [`FourTuple`].
#[derive(Debug)]
pub struct ConnectionTable {
    config: Arc<Config>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    index: HashMap<FourTuple, u32>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    listeners: HashSet<SocketAddr>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TableEvent>,
    isn_secret: u64,
    /// Counters of removed connections.
    finished: ConnStats,
    no_connection: u64,
    resets_for_no_connection: u64,
    malformed: u64,
    opened: u64,
    closed: u64,
}

impl ConnectionTable {
    /// An empty table; `isn_secret` keys initial sequence numbers of connections it opens
    /// (RFC 6528).
    #[must_use]
    pub fn new(config: Arc<Config>, isn_secret: u64) -> ConnectionTable {
        ConnectionTable {
            config,
            slots: Vec::new(),
            free_slots: Vec::new(),
            index: HashMap::new(),
            timers: BinaryHeap::new(),
            listeners: HashSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            isn_secret,
            finished: ConnStats::default(),
            no_connection: 0,
            resets_for_no_connection: 0,
            malformed: 0,
            opened: 0,
            closed: 0,
        }
    }

    /// Reserves room for `n` more connections.
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.index.reserve(n);
        self.timers.reserve(n);
    }

    /// The shared configuration.
    #[must_use]
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Accept passive opens (SYNs) on `local` (for tests and self-play; the shield's real
    /// handshakes arrive through [`ConnectionTable::insert_from_cookie`]).
    pub fn listen(&mut self, local: SocketAddr) {
        self.listeners.insert(local);
    }

    /// Number of live connections.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the table holds no connection.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The connection with this tuple.
    #[must_use]
    pub fn connection(&self, tuple: &FourTuple) -> Option<&Connection> {
        let &i = self.index.get(tuple)?;
        self.slots.get(i as usize)?.conn.as_ref()
    }

    /// Iterates over live connections.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.slots.iter().filter_map(|s| s.conn.as_ref())
    }

    /// RFC 6528: ISN = M + F(4-tuple, secret), M a 4 microsecond clock.
    fn initial_sequence_number(&self, now: Instant, tuple: &FourTuple) -> SeqNumber {
        let mut h = DefaultHasher::new();
        self.isn_secret.hash(&mut h);
        tuple.hash(&mut h);
        let clock = usize::try_from((now.total_micros() / 4) & 0xffff_ffff).unwrap_or(0);
        SeqNumber::new(u32::try_from(h.finish() & 0xffff_ffff).unwrap_or(0)) + clock
    }

    fn insert(&mut self, conn: Connection) -> Result<u32, TableError> {
        let tuple = *conn.tuple();
        if self.index.contains_key(&tuple) {
            return Err(TableError::Exists);
        }
        let i = if let Some(i) = self.free_slots.pop() {
            let slot = &mut self.slots[i as usize];
            slot.conn = Some(conn);
            slot.scheduled = None;
            i
        } else {
            let i = u32::try_from(self.slots.len()).map_err(|_| TableError::Exists)?;
            self.slots.push(Slot { conn: Some(conn), generation: 0, scheduled: None });
            i
        };
        self.index.insert(tuple, i);
        self.opened += 1;
        Ok(i)
    }

    /// Creates a connection from a validated SYN cookie ACK and processes that ACK (with
    /// any data it carries).
    pub fn insert_from_cookie(
        &mut self,
        now: Instant,
        handshake: &CookieHandshake,
        ack: &TcpRepr,
        payload: &[u8],
    ) -> Result<(), TableError> {
        let conn = Connection::from_cookie(now, handshake, Arc::clone(&self.config));
        let i = self.insert(conn)?;
        if let Some(conn) = self.slots[i as usize].conn.as_mut() {
            conn.handle_segment(now, ack, payload);
        }
        self.flush(now, i);
        Ok(())
    }

    /// Starts a new incarnation of a tuple whose connection is in TIME-WAIT, from a validated
    /// cookie ACK. RFC 9293 section 3.10.7.4 (and RFC 6191) let a new SYN reopen a connection
    /// in TIME-WAIT; behind SYN cookies the SYN never reaches the engine, so the validated
    /// ACK that completes the new handshake stands for it. The old connection ends silently:
    /// no `Closed` event, since the tuple lives on. Without a connection for the tuple this
    /// is [`ConnectionTable::insert_from_cookie`]; any state but TIME-WAIT is refused
    /// (`Exists`).
    pub fn reopen_from_cookie(
        &mut self,
        now: Instant,
        handshake: &CookieHandshake,
        ack: &TcpRepr,
        payload: &[u8],
    ) -> Result<(), TableError> {
        if let Some(&i) = self.index.get(&handshake.tuple) {
            let slot = &mut self.slots[i as usize];
            if slot.conn.as_ref().map(Connection::state) != Some(State::TimeWait) {
                return Err(TableError::Exists);
            }
            self.free_slot(i, &handshake.tuple);
        }
        self.insert_from_cookie(now, handshake, ack, payload)
    }

    /// Active open to `tuple.remote` from `tuple.local`.
    pub fn connect(&mut self, now: Instant, tuple: FourTuple) -> Result<(), TableError> {
        let iss = self.initial_sequence_number(now, &tuple);
        let i = self.insert(Connection::connect(now, tuple, iss, Arc::clone(&self.config)))?;
        self.flush(now, i);
        Ok(())
    }

    /// Parses `bytes` (a TCP segment from `tuple.remote` to `tuple.local`), verifying the
    /// checksum, and processes it. Bad segments are counted and dropped.
    pub fn handle_packet(&mut self, now: Instant, tuple: FourTuple, bytes: &[u8]) {
        let parsed = tuple.incoming_pseudo_header().and_then(|pseudo| {
            let packet = Packet::new_checked(bytes)?;
            Ok((TcpRepr::parse(&packet, &pseudo)?, packet))
        });
        match parsed {
            Ok((repr, packet)) => self.handle_segment(now, tuple, &repr, packet.payload()),
            Err(_) => self.malformed += 1,
        }
    }

    /// Routes a parsed segment to its connection; answers RST when there is none
    /// (RFC 9293 section 3.10.7.1), or opens one on a listening address.
    pub fn handle_segment(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        repr: &TcpRepr,
        payload: &[u8],
    ) {
        let i = match self.index.get(&tuple) {
            Some(&i) => i,
            None if self.listeners.contains(&tuple.local)
                && repr.flags.syn()
                && repr.ack_number.is_none()
                && !repr.flags.rst() =>
            {
                let iss = self.initial_sequence_number(now, &tuple);
                match self.insert(Connection::listen(now, tuple, iss, Arc::clone(&self.config))) {
                    Ok(i) => i,
                    Err(_) => return,
                }
            }
            None => {
                self.no_connection += 1;
                if let Some(rst) = reset_reply(repr, payload.len()) {
                    self.resets_for_no_connection += 1;
                    self.transmits.push_back(Transmit {
                        tuple,
                        segment: Segment { repr: rst, payload: Vec::new() },
                    });
                }
                return;
            }
        };
        if let Some(conn) = self.slots[i as usize].conn.as_mut() {
            conn.handle_segment(now, repr, payload);
        }
        self.flush(now, i);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, i, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(i as usize) else { continue };
            if slot.generation != generation || slot.scheduled != Some(at) {
                continue; // stale entry
            }
            slot.scheduled = None;
            if let Some(conn) = slot.conn.as_mut()
                && conn.poll_timeout().is_some_and(|t| t <= now)
            {
                conn.handle_timeout(now);
            }
            self.flush(now, i);
        }
    }

    /// The earliest deadline over all connections.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, i, generation))) = self.timers.peek() {
            let live = self
                .slots
                .get(i as usize)
                .is_some_and(|s| s.generation == generation && s.scheduled == Some(at));
            if live {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// The next segment to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<TableEvent> {
        self.events.pop_front()
    }

    /// Runs `f` on a connection (for application calls), then collects what it produced.
    pub fn with_connection<R>(
        &mut self,
        now: Instant,
        tuple: &FourTuple,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> Result<R, TableError> {
        let &i = self.index.get(tuple).ok_or(TableError::NotFound)?;
        let conn = self.slots[i as usize].conn.as_mut().ok_or(TableError::NotFound)?;
        let result = f(conn);
        self.flush(now, i);
        Ok(result)
    }

    /// [`Connection::send`] on a connection.
    pub fn send(
        &mut self,
        now: Instant,
        tuple: &FourTuple,
        data: &[u8],
    ) -> Result<usize, TableError> {
        Ok(self.with_connection(now, tuple, |c| c.send(data))??)
    }

    /// [`Connection::recv`] on a connection.
    pub fn recv(
        &mut self,
        now: Instant,
        tuple: &FourTuple,
        buf: &mut [u8],
    ) -> Result<usize, TableError> {
        Ok(self.with_connection(now, tuple, |c| c.recv(buf))??)
    }

    /// [`Connection::shutdown`] on a connection.
    pub fn shutdown(&mut self, now: Instant, tuple: &FourTuple) -> Result<(), TableError> {
        Ok(self.with_connection(now, tuple, Connection::shutdown)??)
    }

    /// [`Connection::close`] on a connection.
    pub fn close(&mut self, now: Instant, tuple: &FourTuple) -> Result<(), TableError> {
        Ok(self.with_connection(now, tuple, Connection::close)??)
    }

    /// [`Connection::abort`] on a connection.
    pub fn abort(&mut self, now: Instant, tuple: &FourTuple) -> Result<(), TableError> {
        self.with_connection(now, tuple, Connection::abort)
    }

    /// Removes slot `i`'s connection (keeping its counters in the totals) and frees the slot;
    /// the generation bump makes its heap entries stale.
    fn free_slot(&mut self, i: u32, tuple: &FourTuple) {
        let slot = &mut self.slots[i as usize];
        if let Some(conn) = slot.conn.take() {
            self.finished.accumulate(conn.stats());
        }
        slot.generation = slot.generation.wrapping_add(1);
        slot.scheduled = None;
        self.index.remove(tuple);
        self.free_slots.push(i);
        self.closed += 1;
    }

    /// Collects a connection's segments and events, reschedules its timer, and removes it
    /// once it reported `Closed`.
    fn flush(&mut self, now: Instant, i: u32) {
        let slot = &mut self.slots[i as usize];
        let Some(conn) = slot.conn.as_mut() else { return };
        let tuple = *conn.tuple();
        // An owned segment per transmit, for now: the table writes into the caller's buffer
        // in the next step.
        while let Some(segment) = conn.poll_segment(now) {
            self.transmits.push_back(Transmit { tuple, segment });
        }
        let mut closed = false;
        while let Some(event) = conn.poll_event() {
            closed |= matches!(event, Event::Closed(_));
            self.events.push_back(TableEvent { tuple, event });
        }
        if closed {
            self.free_slot(i, &tuple);
            return;
        }
        if let Some(at) = conn.poll_timeout()
            && slot.scheduled.is_none_or(|s| at < s)
        {
            slot.scheduled = Some(at);
            self.timers.push(Reverse((at, i, slot.generation)));
        }
    }

    /// Aggregate counters (walks every connection: for metrics, not the hot path).
    #[must_use]
    pub fn stats(&self) -> TableStats {
        let mut stats = TableStats {
            totals: self.finished,
            no_connection: self.no_connection,
            resets_for_no_connection: self.resets_for_no_connection,
            malformed: self.malformed,
            opened: self.opened,
            closed: self.closed,
            ..TableStats::default()
        };
        for conn in self.connections() {
            stats.by_state[conn.state().index()] += 1;
            stats.totals.accumulate(conn.stats());
        }
        stats
    }

    /// Live connections in `state`.
    #[must_use]
    pub fn count_in_state(&self, state: State) -> usize {
        self.connections().filter(|c| c.state() == state).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeepaliveConfig;
    use crate::conn::{CloseReason, TsInfo};
    use crate::time::Duration;
    use crate::wire::Flags;

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
            ..TcpRepr::new(h.tuple.remote.port(), h.tuple.local.port(), h.irs + 1)
        }
    }

    fn table(keepalive: KeepaliveConfig) -> ConnectionTable {
        ConnectionTable::new(Arc::new(Config { keepalive, ..Config::default() }), 9)
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
            t.insert_from_cookie(Instant::from_millis(u64::from(i)), &h, &third_ack(&h), &[])
                .expect("new");
        }
        assert_eq!(t.stats().by_state[State::Established.index()], 1000);
        while t.poll_event().is_some() {}
        assert_eq!(t.poll_timeout(), Some(Instant::from_secs(100)));
        let (mut probes, mut resets) = (0, 0);
        while let Some(at) = t.poll_timeout() {
            t.handle_timeout(at);
            while let Some(tx) = t.poll_transmit() {
                if tx.segment.repr.flags.rst() {
                    resets += 1;
                } else {
                    probes += 1;
                }
            }
        }
        assert_eq!((probes, resets), (3000, 1000));
        assert!(t.is_empty());
        let closed: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
        assert_eq!(closed.len(), 1000);
        assert!(closed.iter().all(|e| e.event == Event::Closed(CloseReason::KeepaliveTimeout)));
        assert_eq!(t.stats().closed, 1000);
    }

    #[test]
    fn deadlines_moving_later_do_not_fire_early() {
        let mut t = table(KeepaliveConfig::default());
        let h = handshake(tuple(1));
        t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[]).expect("new");
        // Activity at 1 h pushes the keepalive to 3 h; the stale 2 h entry does nothing.
        let mut ack = third_ack(&h);
        ack.timestamp = Some(crate::wire::TcpTimestamp { tsval: 6, tsecr: 0 });
        t.handle_segment(Instant::from_secs(3600), h.tuple, &ack, &[]);
        t.handle_timeout(Instant::from_secs(7200));
        assert!(t.poll_transmit().is_none());
        assert_eq!(t.poll_timeout(), Some(Instant::from_secs(3 * 3600)));
    }

    #[test]
    fn a_validated_cookie_reopens_a_tuple_in_time_wait_only() {
        let mut t = table(KeepaliveConfig::default());
        let h = handshake(tuple(1));
        t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[]).expect("new");
        // Not in TIME-WAIT: refused.
        assert_eq!(
            t.reopen_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[]),
            Err(TableError::Exists)
        );
        // We close first; the peer ACKs our FIN and sends its own: TIME-WAIT.
        t.close(Instant::from_millis(1), &h.tuple).expect("close");
        let mut fin = third_ack(&h);
        fin.ack_number = Some(h.iss + 2);
        fin.flags = Flags::ACK | Flags::FIN;
        fin.timestamp = Some(crate::wire::TcpTimestamp { tsval: 6, tsecr: 0 });
        t.handle_segment(Instant::from_millis(2), h.tuple, &fin, &[]);
        assert_eq!(t.connection(&h.tuple).map(Connection::state), Some(State::TimeWait));
        while t.poll_event().is_some() {}
        // A new incarnation with other ISNs takes the tuple over, without a Closed event.
        let h2 = CookieHandshake { iss: SeqNumber::new(9000), irs: SeqNumber::new(7000), ..h };
        t.reopen_from_cookie(Instant::from_millis(3), &h2, &third_ack(&h2), b"again")
            .expect("reopen");
        let conn = t.connection(&h.tuple).expect("new connection");
        assert_eq!(conn.state(), State::Established);
        let events: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
        assert!(!events.iter().any(|e| matches!(e.event, Event::Closed(_))), "{events:?}");
        let mut buf = [0u8; 8];
        assert_eq!(t.recv(Instant::from_millis(3), &h.tuple, &mut buf), Ok(5));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn duplicate_tuples_are_refused() {
        let mut t = table(KeepaliveConfig::default());
        let h = handshake(tuple(1));
        t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[]).expect("new");
        assert_eq!(
            t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[]),
            Err(TableError::Exists)
        );
        assert_eq!(t.connect(Instant::ZERO, h.tuple), Err(TableError::Exists));
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
        t.handle_segment(Instant::ZERO, tu, &ack, &[]);
        assert!(t.is_empty(), "an ACK opens nothing");
        assert!(t.poll_transmit().is_some_and(|tx| tx.segment.repr.flags.rst()));
        let syn =
            TcpRepr { flags: Flags::SYN, ..TcpRepr::new(tu.remote.port(), 443, SeqNumber::new(5)) };
        t.handle_segment(Instant::ZERO, tu, &syn, &[]);
        assert_eq!(t.connection(&tu).map(Connection::state), Some(State::SynReceived));
        let synack = t.poll_transmit().expect("SYN-ACK");
        assert_eq!(synack.segment.repr.ack_number, Some(SeqNumber::new(6)));
    }

    #[test]
    fn bytes_are_parsed_and_bad_ones_counted_for_ipv6_too() {
        let mut t = table(KeepaliveConfig::default());
        let tu = FourTuple::new(
            "[2001:db8::1]:443".parse().expect("addr"),
            "[2001:db8::2]:5555".parse().expect("addr"),
        );
        let h = handshake(tu);
        t.insert_from_cookie(Instant::ZERO, &h, &third_ack(&h), &[]).expect("new");
        let data = Segment {
            repr: TcpRepr { flags: Flags::PSH, ..third_ack(&h) },
            payload: b"v6 data".to_vec(),
        };
        let mut bytes = data.to_bytes(&tu.incoming_pseudo_header().expect("v6")).expect("emit");
        t.handle_packet(Instant::ZERO, tu, &bytes);
        assert_eq!(t.connection(&tu).map(Connection::recv_queue_len), Some(7));
        bytes[22] ^= 0xff;
        t.handle_packet(Instant::ZERO, tu, &bytes);
        assert_eq!(t.stats().malformed, 1);
        let mut buf = [0u8; 16];
        assert_eq!(t.recv(Instant::ZERO, &tu, &mut buf), Ok(7));
        assert_eq!(t.send(Instant::ZERO, &tuple(9), b"x"), Err(TableError::NotFound));
    }
}
