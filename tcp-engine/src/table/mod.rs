//! The connection table: every connection of one shard in one place, each with the
//! caller's payload `T` (route, application state) beside it.
//!
//! # Call order
//!
//! As for one [`Connection`], the table only reacts; the shell owns I/O and the clock:
//!
//! 1. for every received segment, [`ConnectionTable::lookup`] its tuple (the one hash
//!    lookup per frame), then [`ConnectionTable::handle_segment`] with the [`ConnId`], or
//!    [`ConnectionTable::handle_unknown`] when there is none (TIME-WAIT records, listeners
//!    and the RST of RFC 9293 section 3.10.7.1 live there). Validated SYN-cookie ACKs go to
//!    [`ConnectionTable::insert_from_cookie`] or [`ConnectionTable::reopen_from_cookie`];
//! 2. once the instant of [`ConnectionTable::poll_timeout`] has come, call
//!    [`ConnectionTable::handle_timeout`];
//! 3. drain [`ConnectionTable::poll_transmit`] until it returns `None`, sending what it
//!    wrote into your buffers;
//! 4. drain [`ConnectionTable::poll_event`]; application calls
//!    ([`ConnectionTable::with_connection`]) may come at any time, and after them go back
//!    to 3;
//! 5. re-arm the shell's single timer to [`ConnectionTable::poll_timeout`].
//!
//! # Where a connection lives
//!
//! A slab slot holds the [`Connection`] and its `T` in one allocation; a [`ConnId`] (index
//! and generation) names it, and a stale one is refused. The index maps the tuple's keyed
//! hash to the slot: 8 bytes per connection, the tuple itself is read from the slot. One
//! binary heap holds one timer entry per connection (lazily rescheduled, see
//! [`ConnectionTable::handle_timeout`]). Connections with output wait in a ready queue, so
//! nothing is built before the caller hands a buffer, and nothing is allocated per segment.
//!
//! A connection leaves the slab only once its last segment went out through
//! `poll_transmit` (with `conn: Some(id)`, so the caller can still route it by its `T`):
//! then it either becomes a small [`TimeWait`] record (its `T` is handed back in
//! [`TableEvent::TimeWait`]), or is gone ([`TableEvent::Closed`] with the `T`). A TIME-WAIT
//! record ends with `Closed` without a `T`.
//!
//! Counters, per-state counts included, are kept as they change: [`ConnectionTable::stats`]
//! never walks the connections. When the table empties, the slab, index and heap shrink.

mod slab;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hashbrown::HashTable;

use crate::config::Config;
use crate::conn::{
    CloseError, CloseReason, ConnStats, Connection, CookieHandshake, Event, MIN_TRANSMIT_BUFFER,
    RecvError, SendError, reset_reply,
};
use crate::seq::SeqNumber;
use crate::state::State;
use crate::time::Instant;
use crate::time_wait::TimeWait;
use crate::tuple::FourTuple;
use crate::wire::EmitSegment as _;
use crate::wire::{Packet, TcpRepr};

use slab::Slab;

/// A handle on a connection of a [`ConnectionTable`]: its slot and the generation of the
/// connection in it. Once that connection is gone, the handle is refused, whatever takes
/// the slot next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    /// The slot index: small and dense (freed slots are reused lowest first), for the
    /// caller's side tables.
    #[must_use]
    pub fn index(self) -> u32 {
        self.index
    }

    /// The generation of the connection in the slot.
    #[must_use]
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// The handle as one number (a poll token): generation in the high half. The table still
    /// refuses a handle whose connection is gone, so a number made up by anyone names at
    /// most a live connection.
    #[must_use]
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The handle [`ConnId::to_u64`] made; `None` for numbers it never makes (slot indices
    /// stay below 2^31).
    #[must_use]
    pub fn from_u64(n: u64) -> Option<ConnId> {
        let index = u32::try_from(n & 0xffff_ffff).ok()?;
        let generation = u32::try_from(n >> 32).ok()?;
        (index < 1 << 31).then_some(ConnId { index, generation })
    }
}

/// A segment [`ConnectionTable::poll_transmit`] wrote into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The connection's addresses: the segment goes from `tuple.local` to `tuple.remote`.
    pub tuple: FourTuple,
    /// The connection that sent it, still in the table (its `T` routes the segment); `None`
    /// for the answers of TIME-WAIT records and to segments that reached no connection,
    /// which go back the way the segment that caused them came.
    pub conn: Option<ConnId>,
    /// The segment is `buf[..len]`: header, options, payload, checksum filled in.
    pub len: usize,
}

/// What the table tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableEvent<T> {
    /// An event of a live connection: [`Event::Connected`], [`Event::Readable`],
    /// [`Event::Writable`] or [`Event::PeerClosed`].
    Conn {
        /// The connection.
        id: ConnId,
        /// What happened.
        event: Event,
    },
    /// The connection entered TIME-WAIT and is now a small record; its payload comes back.
    /// The tuple stays taken until a `Closed` for it follows (after 2 MSL), or a new
    /// incarnation reopens it.
    TimeWait {
        /// The connection's addresses.
        tuple: FourTuple,
        /// The connection's payload.
        user: T,
    },
    /// The connection is gone: delete the flow from the XDP flow table.
    Closed {
        /// The connection's addresses.
        tuple: FourTuple,
        /// Why it ended.
        reason: CloseReason,
        /// The payload; `None` after TIME-WAIT, which handed it back already.
        user: Option<T>,
    },
}

/// Why a table operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A connection or TIME-WAIT record holds this tuple.
    #[error("connection exists")]
    Exists,
    /// No such connection: it closed, or the handle is stale.
    #[error("no such connection")]
    NotFound,
    /// The tuple is in TIME-WAIT and the new handshake is not newer than the old
    /// incarnation (RFC 6191): it may be an old duplicate or a replay.
    #[error("not newer than the connection in TIME-WAIT (RFC 6191)")]
    NotNewer,
    /// The table holds as many connections as its index can name (2^31).
    #[error("connection table full")]
    Full,
    /// [`ConnectionTable::insert_from_syn`] was given something else than a SYN.
    #[error("not a SYN")]
    NotASyn,
    /// The tuple's two addresses are not of one family.
    #[error("local and remote address families differ")]
    AddressFamilyMismatch,
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

/// Counters for metrics, all kept as they change (reading them costs a copy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Connections per state, indexed by [`State::index`]; TIME-WAIT records count as
    /// TIME-WAIT.
    pub by_state: [usize; 11],
    /// Counters of live and finished connections together.
    pub totals: ConnStats,
    /// Segments that reached no connection and no TIME-WAIT record.
    pub no_connection: u64,
    /// RSTs sent for them (RFC 9293 section 3.10.7.1).
    pub resets_for_no_connection: u64,
    /// Segments that failed to parse or verify (through `handle_packet`).
    pub malformed: u64,
    /// Connections created (cookie, active or passive open).
    pub opened: u64,
    /// Connections and TIME-WAIT records that ended (`opened - closed` are held now).
    pub closed: u64,
    /// Connections that became TIME-WAIT records.
    pub time_wait_entered: u64,
    /// ACKs sent by TIME-WAIT records.
    pub time_wait_acks: u64,
    /// TIME-WAIT tuples taken over by a new incarnation (RFC 6191).
    pub reopened: u64,
    /// Reopening handshakes refused as not newer (RFC 6191).
    pub reopen_refused: u64,
    /// Answers not sent because too many waited (a flood of segments for no connection).
    pub replies_dropped: u64,
    /// Connections that ended without TIME-WAIT because `Config::max_time_wait` records
    /// were held.
    pub time_wait_overflow: u64,
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
        self.time_wait_entered += other.time_wait_entered;
        self.time_wait_acks += other.time_wait_acks;
        self.reopened += other.reopened;
        self.reopen_refused += other.reopen_refused;
        self.replies_dropped += other.replies_dropped;
        self.time_wait_overflow += other.time_wait_overflow;
    }
}

/// A connection and its payload: one allocation per connection.
#[derive(Debug)]
struct Live<T> {
    conn: Connection,
    user: T,
}

#[derive(Debug)]
struct ConnSlot<T> {
    live: Box<Live<T>>,
    /// The deadline of this slot's live heap entry, in microseconds (`UNSCHEDULED`: none).
    scheduled: u64,
    /// In the ready queue.
    queued: bool,
}

const UNSCHEDULED: u64 = u64::MAX;

/// An index entry: a slot (or, with [`TIME_WAIT_KEY`] set, a TIME-WAIT record) and 32 bits
/// of its tuple's hash, so growing the index never reads a slot.
#[derive(Clone, Copy, Debug)]
struct IndexEntry {
    hash: u32,
    key: u32,
}

const TIME_WAIT_KEY: u32 = 1 << 31;

/// Answers waiting for `poll_transmit` beyond which more are dropped (and counted): a
/// flood of segments for no connection must not grow memory without bound.
const MAX_REPLIES: usize = 4096;

/// Segments one connection sends in a row before the next ready one gets its turn.
const TX_BURST: usize = 8;

/// What a connection was before a call, to settle the counts after it.
struct Before {
    state: State,
    stats: ConnStats,
}

/// Connections keyed by [`FourTuple`], each with a payload `T`.
#[derive(Debug)]
pub struct ConnectionTable<T> {
    config: Arc<Config>,
    conns: Slab<ConnSlot<T>>,
    records: Slab<TimeWait>,
    index: HashTable<IndexEntry>,
    /// Keys the index hash: tuples are chosen by whoever sends us segments.
    hasher: RandomState,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Purge stale heap entries once the heap is longer than this.
    timers_purge_at: usize,
    /// TIME-WAIT deadlines `(expires, record, generation)`, in the order they were set: all
    /// are 2 MSL from the moment they were set, so the queue is sorted and a heap is not
    /// needed. A record whose deadline moved has a newer entry; the old one is skipped.
    time_wait_expiry: VecDeque<(Instant, u32, u32)>,
    ready: VecDeque<ConnId>,
    /// Segments the front of `ready` sent in a row.
    burst: usize,
    replies: VecDeque<(FourTuple, TcpRepr)>,
    events: VecDeque<TableEvent<T>>,
    listeners: HashMap<SocketAddr, fn() -> T>,
    isn_secret: u128,
    next_generation: u32,
    stats: TableStats,
    /// Counters of removed connections (for [`crate::testing`]'s cross-check).
    finished: ConnStats,
}

impl<T> ConnectionTable<T> {
    /// An empty table; `isn_secret` keys initial sequence numbers of connections it opens
    /// (RFC 6528).
    #[must_use]
    pub fn new(config: Arc<Config>, isn_secret: u128) -> ConnectionTable<T> {
        ConnectionTable {
            config,
            conns: Slab::default(),
            records: Slab::default(),
            index: HashTable::new(),
            hasher: RandomState::new(),
            timers: BinaryHeap::new(),
            timers_purge_at: MIN_PURGE,
            time_wait_expiry: VecDeque::new(),
            ready: VecDeque::new(),
            burst: 0,
            replies: VecDeque::new(),
            events: VecDeque::new(),
            listeners: HashMap::new(),
            isn_secret,
            next_generation: 0,
            stats: TableStats::default(),
            finished: ConnStats::default(),
        }
    }

    /// Reserves room for `n` more connections.
    pub fn reserve(&mut self, n: usize) {
        self.conns.reserve(n);
        self.index.reserve(n, |e| spread(e.hash));
        self.timers.reserve(n);
    }

    /// The shared configuration.
    #[must_use]
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Connections and TIME-WAIT records held (every tuple the table knows).
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the table holds no connection and no TIME-WAIT record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    // ---- the index ----

    /// 32 bits of the keyed hash of a tuple (SipHash-1-3 under a random key).
    fn tuple_hash(&self, tuple: &FourTuple) -> u32 {
        let mut key = [0u8; 36];
        key[..16].copy_from_slice(&v6_octets(tuple.local.ip()));
        key[16..32].copy_from_slice(&v6_octets(tuple.remote.ip()));
        key[32..34].copy_from_slice(&tuple.local.port().to_be_bytes());
        key[34..].copy_from_slice(&tuple.remote.port().to_be_bytes());
        let mut hasher = self.hasher.build_hasher();
        hasher.write(&key);
        let hash = hasher.finish();
        u32::try_from(hash & 0xffff_ffff).unwrap_or_default()
    }

    /// The index key of `tuple`.
    fn find(&self, hash: u32, tuple: &FourTuple) -> Option<u32> {
        let (conns, records) = (&self.conns, &self.records);
        self.index
            .find(spread(hash), |e| {
                e.hash == hash && key_tuple(conns, records, e.key) == Some(tuple)
            })
            .map(|e| e.key)
    }

    fn unindex(&mut self, hash: u32, key: u32) {
        if let Ok(entry) = self.index.find_entry(spread(hash), |e| e.key == key) {
            entry.remove();
        }
    }

    /// The connection with this tuple: the one hash lookup per frame. `None` also for a
    /// tuple in TIME-WAIT (give its segments to [`ConnectionTable::handle_unknown`]).
    #[must_use]
    pub fn lookup(&self, tuple: &FourTuple) -> Option<ConnId> {
        let key = self.find(self.tuple_hash(tuple), tuple)?;
        if key & TIME_WAIT_KEY != 0 {
            return None;
        }
        let (generation, _) = self.conns.at(key)?;
        Some(ConnId { index: key, generation })
    }

    /// The state of whatever holds `tuple` (a TIME-WAIT record says TIME-WAIT).
    #[must_use]
    pub fn state_of(&self, tuple: &FourTuple) -> Option<State> {
        let key = self.find(self.tuple_hash(tuple), tuple)?;
        if key & TIME_WAIT_KEY != 0 {
            return Some(State::TimeWait);
        }
        self.conns.at(key).map(|(_, slot)| slot.live.conn.state())
    }

    /// The TIME-WAIT record of `tuple`, if it has one.
    #[must_use]
    pub fn time_wait(&self, tuple: &FourTuple) -> Option<&TimeWait> {
        let key = self.find(self.tuple_hash(tuple), tuple)?;
        if key & TIME_WAIT_KEY == 0 {
            return None;
        }
        self.records.at(key & !TIME_WAIT_KEY).map(|(_, r)| r)
    }

    // ---- access by handle ----

    /// The connection `id`.
    #[must_use]
    pub fn connection(&self, id: ConnId) -> Option<&Connection> {
        self.conns.get(id.index, id.generation).map(|s| &s.live.conn)
    }

    /// The payload of connection `id`.
    #[must_use]
    pub fn user(&self, id: ConnId) -> Option<&T> {
        self.conns.get(id.index, id.generation).map(|s| &s.live.user)
    }

    /// The payload of connection `id`, to change.
    pub fn user_mut(&mut self, id: ConnId) -> Option<&mut T> {
        self.conns.get_mut(id.index, id.generation).map(|s| &mut s.live.user)
    }

    /// Every live connection's handle (for shutdown loops, not the packet path).
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.iter().map(|(index, generation, _)| ConnId { index, generation })
    }

    /// Every live connection (walks them all: for tests and tools, not the packet path).
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.conns.iter().map(|(_, _, slot)| &slot.live.conn)
    }

    /// Runs `f` on a connection and its payload (application calls: `send`, `recv_slices`,
    /// `close`...), then collects what it changed: output, events, timer, counts.
    pub fn with_connection<R>(
        &mut self,
        now: Instant,
        id: ConnId,
        f: impl FnOnce(&mut Connection, &mut T) -> R,
    ) -> Result<R, TableError> {
        self.call(now, id, f).ok_or(TableError::NotFound)
    }

    // ---- opening connections ----

    fn next_generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    /// RFC 6528: ISN = M + F(4-tuple, secret), M a 4 microsecond clock and F a keyed hash
    /// (SipHash-1-3 under the table's 128-bit secret): unpredictable to anyone without the
    /// secret, increasing for one tuple across incarnations (so RFC 6191 can tell a new
    /// connection from an old duplicate).
    fn initial_sequence_number(&self, now: Instant, tuple: &FourTuple) -> SeqNumber {
        let key = self.isn_secret.to_le_bytes();
        let mut h = siphasher::sip::SipHasher13::new_with_key(&key);
        tuple.hash(&mut h);
        let clock = usize::try_from((now.total_micros() / 4) & 0xffff_ffff).unwrap_or(0);
        SeqNumber::new(u32::try_from(h.finish() & 0xffff_ffff).unwrap_or(0)) + clock
    }

    /// A passive open (RFC 9293 section 3.10.7.2): the SYN `syn` from `tuple.remote` makes
    /// a connection in SYN-RECEIVED with an ISN per RFC 6528, which answers with a SYN-ACK
    /// carrying our options (as the peer offered them and the configuration allows) and
    /// retransmits it on the retransmission timer (`Config::syn_retries` times, from
    /// `Config::rto_initial`), then gives up (`Closed(TimedOut)`). Data on the SYN is not
    /// taken (no TCP Fast Open): the peer sends it again once its SYN is acknowledged.
    pub fn insert_from_syn(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        syn: &TcpRepr,
        user: T,
    ) -> Result<ConnId, (TableError, T)> {
        if !syn.flags.syn() || syn.ack_number.is_some() || syn.flags.rst() {
            return Err((TableError::NotASyn, user));
        }
        let iss = self.initial_sequence_number(now, &tuple);
        let conn = Connection::listen(now, tuple, iss, Arc::clone(&self.config));
        let id = self.insert(now, conn, user)?;
        self.call(now, id, |conn, _| conn.handle_segment(now, syn, &[]));
        Ok(id)
    }

    fn insert(
        &mut self,
        now: Instant,
        conn: Connection,
        user: T,
    ) -> Result<ConnId, (TableError, T)> {
        let tuple = *conn.tuple();
        if tuple.outgoing_pseudo_header().is_err() {
            return Err((TableError::AddressFamilyMismatch, user));
        }
        let hash = self.tuple_hash(&tuple);
        if self.find(hash, &tuple).is_some() {
            return Err((TableError::Exists, user));
        }
        let before = Before { state: conn.state(), stats: *conn.stats() };
        let generation = self.next_generation();
        let slot =
            ConnSlot { live: Box::new(Live { conn, user }), scheduled: UNSCHEDULED, queued: false };
        let index = match self.conns.insert(slot, generation) {
            Ok(index) => index,
            Err(slot) => return Err((TableError::Full, slot.live.user)),
        };
        self.index.insert_unique(spread(hash), IndexEntry { hash, key: index }, |e| spread(e.hash));
        self.stats.by_state[before.state.index()] += 1;
        self.stats.totals.accumulate(&before.stats);
        self.stats.opened += 1;
        let id = ConnId { index, generation };
        self.settle(now, id, &before, false);
        Ok(id)
    }

    /// Creates a connection from a validated SYN cookie ACK and processes that ACK (with any
    /// data it carries). The tuple must be free: a tuple in TIME-WAIT goes through
    /// [`ConnectionTable::reopen_from_cookie`].
    pub fn insert_from_cookie(
        &mut self,
        now: Instant,
        handshake: &CookieHandshake,
        ack: &TcpRepr,
        payload: &[u8],
        user: T,
    ) -> Result<ConnId, (TableError, T)> {
        let conn = Connection::from_cookie(now, handshake, Arc::clone(&self.config));
        let id = self.insert(now, conn, user)?;
        self.call(now, id, |conn, _| conn.handle_segment(now, ack, payload));
        Ok(id)
    }

    /// Starts a new incarnation of a tuple in TIME-WAIT from a validated cookie ACK. Behind
    /// SYN cookies the SYN never reaches the engine, so the validated ACK that completes the
    /// new handshake stands for it. RFC 6191 decides (see
    /// [`TimeWait::allows_new_incarnation`]): the handshake's TSval must be newer than the
    /// record's `TS.Recent`, or without timestamps its sequence number above the record's
    /// `RCV.NXT`; otherwise it may be an old duplicate or a replayed ACK, and is refused
    /// with [`TableError::NotNewer`]. The old incarnation ends silently (its payload went back
    /// with [`TableEvent::TimeWait`], and its tuple lives on).
    ///
    /// Without anything for the tuple this is [`ConnectionTable::insert_from_cookie`]. A live
    /// connection is refused ([`TableError::Exists`]), also one in TIME-WAIT that still holds
    /// data its application has not read.
    pub fn reopen_from_cookie(
        &mut self,
        now: Instant,
        handshake: &CookieHandshake,
        ack: &TcpRepr,
        payload: &[u8],
        user: T,
    ) -> Result<ConnId, (TableError, T)> {
        let tsval = handshake.timestamps.map(|ts| ts.ts_recent);
        if let Err(e) = self.retire_time_wait(&handshake.tuple, handshake.irs, tsval) {
            return Err((e, user));
        }
        self.insert_from_cookie(now, handshake, ack, payload, user)
    }

    /// [`ConnectionTable::insert_from_syn`] for a tuple that may be in TIME-WAIT: a SYN
    /// whose timestamp (or, without timestamps, sequence number) is newer than the old
    /// incarnation's takes the tuple over (RFC 6191, as Linux's `tcp_timewait_state_process`
    /// accepts a SYN in TIME-WAIT); an older one is refused (`NotNewer`) and the record
    /// stays to answer it.
    pub fn reopen_from_syn(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        syn: &TcpRepr,
        user: T,
    ) -> Result<ConnId, (TableError, T)> {
        let tsval = syn.timestamp.map(|ts| ts.tsval);
        if let Err(e) = self.retire_time_wait(&tuple, syn.seq_number, tsval) {
            return Err((e, user));
        }
        self.insert_from_syn(now, tuple, syn, user)
    }

    /// Frees `tuple` of its TIME-WAIT record for a new incarnation starting at `irs` (with
    /// TSval `tsval`), if RFC 6191 allows it. Nothing to do without a record; a live
    /// connection is `Exists`.
    fn retire_time_wait(
        &mut self,
        tuple: &FourTuple,
        irs: SeqNumber,
        tsval: Option<u32>,
    ) -> Result<(), TableError> {
        let hash = self.tuple_hash(tuple);
        let Some(key) = self.find(hash, tuple) else { return Ok(()) };
        if key & TIME_WAIT_KEY == 0 {
            return Err(TableError::Exists);
        }
        let record = key & !TIME_WAIT_KEY;
        let newer =
            self.records.at(record).is_some_and(|(_, tw)| tw.allows_new_incarnation(irs, tsval));
        if !newer {
            self.stats.reopen_refused += 1;
            return Err(TableError::NotNewer);
        }
        self.records.remove(record);
        self.unindex(hash, key);
        self.stats.by_state[State::TimeWait.index()] -= 1;
        self.stats.closed += 1;
        self.stats.reopened += 1;
        Ok(())
    }

    /// Active open to `tuple.remote` from `tuple.local`.
    pub fn connect(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        user: T,
    ) -> Result<ConnId, (TableError, T)> {
        let iss = self.initial_sequence_number(now, &tuple);
        self.insert(now, Connection::connect(now, tuple, iss, Arc::clone(&self.config)), user)
    }

    // ---- input ----

    /// Parses `bytes` (a TCP segment from `tuple.remote` to `tuple.local`), verifying the
    /// checksum, and hands it to its connection or to [`ConnectionTable::handle_unknown`].
    /// Bad segments are counted and dropped.
    pub fn handle_packet(&mut self, now: Instant, tuple: FourTuple, bytes: &[u8]) {
        let parsed = tuple.incoming_pseudo_header().and_then(|pseudo| {
            let packet = Packet::new_checked(bytes)?;
            Ok((TcpRepr::parse(&packet, &pseudo)?, packet))
        });
        let Ok((repr, packet)) = parsed else {
            self.stats.malformed += 1;
            return;
        };
        match self.lookup(&tuple) {
            Some(id) => {
                self.call(now, id, |conn, _| conn.handle_segment(now, &repr, packet.payload()));
            }
            None => self.handle_unknown(now, tuple, &repr, packet.payload()),
        }
    }

    /// Processes a segment of connection `id` (found by [`ConnectionTable::lookup`]).
    /// `Ok(true)` when the connection accepted it (see [`Connection::handle_segment`]): only
    /// then may the caller update what it keeps about the peer's path.
    pub fn handle_segment(
        &mut self,
        now: Instant,
        id: ConnId,
        repr: &TcpRepr,
        payload: &[u8],
    ) -> Result<bool, TableError> {
        self.call(now, id, |conn, _| conn.handle_segment(now, repr, payload))
            .ok_or(TableError::NotFound)
    }

    /// Processes a segment whose tuple has no connection: a TIME-WAIT record answers it
    /// (RFC 9293 section 3.10.7.4), a SYN to a listening address opens a connection, and
    /// anything else but a RST is answered with a RST (section 3.10.7.1) and counted.
    pub fn handle_unknown(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        repr: &TcpRepr,
        payload: &[u8],
    ) {
        let hash = self.tuple_hash(&tuple);
        match self.find(hash, &tuple) {
            Some(key) if key & TIME_WAIT_KEY != 0 => {
                self.time_wait_segment(now, key & !TIME_WAIT_KEY, repr, payload.len());
                return;
            }
            Some(key) => {
                // A connection after all (the caller did not look it up).
                if let Some((generation, _)) = self.conns.at(key) {
                    let id = ConnId { index: key, generation };
                    self.call(now, id, |conn, _| conn.handle_segment(now, repr, payload));
                }
                return;
            }
            None => {}
        }
        let opens = repr.flags.syn() && repr.ack_number.is_none() && !repr.flags.rst();
        if let (true, Some(&make_user)) = (opens, self.listeners.get(&tuple.local)) {
            let iss = self.initial_sequence_number(now, &tuple);
            let conn = Connection::listen(now, tuple, iss, Arc::clone(&self.config));
            if let Ok(id) = self.insert(now, conn, make_user()) {
                self.call(now, id, |conn, _| conn.handle_segment(now, repr, payload));
            }
            return;
        }
        self.stats.no_connection += 1;
        if let Some(rst) = reset_reply(repr, payload.len()) {
            self.stats.resets_for_no_connection += 1;
            self.queue_reply(tuple, rst);
        }
    }

    fn time_wait_segment(&mut self, now: Instant, record: u32, repr: &TcpRepr, payload_len: usize) {
        let Some((generation, tw)) = self.records.at_mut(record) else { return };
        let expires = tw.expires;
        let reply = tw.on_segment(now, repr, payload_len, &self.config);
        let (tuple, restarted) = (tw.tuple, tw.expires);
        if restarted != expires {
            self.time_wait_expiry.push_back((restarted, record, generation));
        }
        if let Some(ack) = reply {
            self.stats.time_wait_acks += 1;
            self.queue_reply(tuple, ack);
        }
    }

    fn queue_reply(&mut self, tuple: FourTuple, repr: TcpRepr) {
        if self.replies.len() >= MAX_REPLIES {
            self.stats.replies_dropped += 1;
        } else {
            self.replies.push_back((tuple, repr));
        }
    }

    // ---- timers ----

    /// Runs every timer due at `now`: connections' timers and TIME-WAIT expiry.
    ///
    /// A connection has at most one live heap entry, for its earliest deadline. Deadlines
    /// that move later are not updated in the heap: the early entry fires, finds nothing
    /// due, and is pushed again at the real deadline (lazy rescheduling), so segment
    /// processing touches the heap only when a deadline moves earlier.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, index, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.conns.get_mut(index, generation) else { continue };
            if slot.scheduled != at.total_micros() {
                continue; // stale entry
            }
            slot.scheduled = UNSCHEDULED;
            let due = slot.live.conn.poll_timeout().is_some_and(|t| t <= now);
            self.call(now, ConnId { index, generation }, |conn, _| {
                if due {
                    conn.handle_timeout(now);
                }
            });
        }
        while let Some(&(at, record, generation)) = self.time_wait_expiry.front() {
            if at > now {
                break;
            }
            self.time_wait_expiry.pop_front();
            if self.records.get(record, generation).is_some_and(|tw| tw.expires <= now) {
                self.expire_time_wait(record);
            }
        }
        self.maintain();
    }

    /// The earliest deadline over all connections and TIME-WAIT records.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, index, generation))) = self.timers.peek() {
            let live =
                self.conns.get(index, generation).is_some_and(|s| s.scheduled == at.total_micros());
            if live {
                break;
            }
            self.timers.pop();
        }
        while let Some(&(at, record, generation)) = self.time_wait_expiry.front() {
            if self.records.get(record, generation).is_some_and(|tw| tw.expires == at) {
                break;
            }
            self.time_wait_expiry.pop_front();
        }
        let conn = self.timers.peek().map(|Reverse((at, ..))| *at);
        let time_wait = self.time_wait_expiry.front().map(|&(at, ..)| at);
        conn.into_iter().chain(time_wait).min()
    }

    // ---- output ----

    /// Writes the next segment to send into `buf` (one complete TCP segment: header,
    /// options, payload, checksum over the pseudo-header) and says whose it is; `None` when
    /// nothing is waiting. Never more than `buf.len()` bytes: a payload is cut to fit, and a
    /// buffer shorter than [`MIN_TRANSMIT_BUFFER`] gets nothing.
    ///
    /// Answers of TIME-WAIT records and to unknown segments come first, then connections
    /// with output in turn, each up to a few segments at a time.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if buf.len() < MIN_TRANSMIT_BUFFER {
            return None;
        }
        while let Some((tuple, repr)) = self.replies.pop_front() {
            let Ok(pseudo) = tuple.outgoing_pseudo_header() else { continue };
            if let Ok(len) = repr.emit_segment(buf, &[], &pseudo) {
                return Some(Transmit { tuple, conn: None, len });
            }
        }
        while let Some(&id) = self.ready.front() {
            let Some(slot) = self.conns.get_mut(id.index, id.generation) else {
                self.ready.pop_front();
                self.burst = 0;
                continue;
            };
            let conn = &mut slot.live.conn;
            let before = Before { state: conn.state(), stats: *conn.stats() };
            let tuple = *conn.tuple();
            if let Some(len) = conn.poll_transmit(now, buf) {
                self.settle(now, id, &before, false);
                self.burst += 1;
                if self.burst >= TX_BURST {
                    self.ready.rotate_left(1);
                    self.burst = 0;
                }
                return Some(Transmit { tuple, conn: Some(id), len });
            }
            slot.queued = false;
            self.ready.pop_front();
            self.burst = 0;
            self.settle(now, id, &before, true);
        }
        self.maintain();
        None
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TableEvent<T>> {
        let event = self.events.pop_front();
        if event.is_none() {
            // After a burst (say, a million connections closing), give the room back.
            shrink_queue(&mut self.events);
        }
        event
    }

    // ---- settling a connection after a call ----

    /// Runs `f` on connection `id`, then settles what it changed.
    fn call<R>(
        &mut self,
        now: Instant,
        id: ConnId,
        f: impl FnOnce(&mut Connection, &mut T) -> R,
    ) -> Option<R> {
        let live = &mut *self.conns.get_mut(id.index, id.generation)?.live;
        let before = Before { state: live.conn.state(), stats: *live.conn.stats() };
        let result = f(&mut live.conn, &mut live.user);
        self.settle(now, id, &before, false);
        Some(result)
    }

    /// After any call into connection `id`: updates the per-state counts and totals, takes
    /// its events, reschedules its timer, queues it for output, and once it has nothing
    /// left to send (`drained`: `poll_transmit` just found nothing) turns it into a
    /// TIME-WAIT record or removes it.
    fn settle(&mut self, now: Instant, id: ConnId, before: &Before, drained: bool) {
        let Some(slot) = self.conns.get_mut(id.index, id.generation) else { return };
        let conn = &mut slot.live.conn;
        let state = conn.state();
        if state != before.state {
            self.stats.by_state[before.state.index()] -= 1;
            self.stats.by_state[state.index()] += 1;
        }
        self.stats.totals.accumulate_growth(&before.stats, conn.stats());
        while let Some(event) = conn.poll_event() {
            // `Closed` is the table's to report, with the payload, once the connection
            // leaves.
            if !matches!(event, Event::Closed(_)) {
                self.events.push_back(TableEvent::Conn { id, event });
            }
        }
        if let Some(at) = conn.poll_timeout()
            && at.total_micros() < slot.scheduled
        {
            slot.scheduled = at.total_micros();
            self.timers.push(Reverse((at, id.index, id.generation)));
        }
        let output = !drained && conn.has_output();
        if output && !slot.queued {
            slot.queued = true;
            self.ready.push_back(id);
        }
        // A queued connection's last segment may still be on its way out: `poll_transmit`
        // decides when it leaves.
        let stays = slot.queued;
        let readable = conn.recv_queue_len();
        if self.timers.len() > self.timers_purge_at {
            self.purge_timers();
        }
        if stays {
            return;
        }
        match state {
            State::Closed => self.remove_closed(id),
            State::TimeWait if readable == 0 => self.enter_time_wait(now, id),
            _ => {}
        }
    }

    /// Takes connection `id` out of the slab and the index, keeping its counters.
    fn remove(&mut self, id: ConnId) -> Option<Live<T>> {
        self.conns.get(id.index, id.generation)?;
        let slot = self.conns.remove(id.index)?;
        let live = *slot.live;
        let hash = self.tuple_hash(live.conn.tuple());
        self.unindex(hash, id.index);
        self.stats.by_state[live.conn.state().index()] -= 1;
        self.finished.accumulate(live.conn.stats());
        Some(live)
    }

    fn remove_closed(&mut self, id: ConnId) {
        let Some(Live { conn, user }) = self.remove(id) else { return };
        self.stats.closed += 1;
        self.events.push_back(TableEvent::Closed {
            tuple: *conn.tuple(),
            reason: conn.close_reason().unwrap_or(CloseReason::Aborted),
            user: Some(user),
        });
        self.maintain();
    }

    /// Replaces connection `id`, in TIME-WAIT with nothing left to send or read, by a
    /// record, and hands its payload back.
    fn enter_time_wait(&mut self, now: Instant, id: ConnId) {
        let Some(Live { conn, user }) = self.remove(id) else { return };
        let record = conn.time_wait_record(now);
        let tuple = record.tuple;
        let generation = self.next_generation();
        let full = self.records.len() >= self.config.max_time_wait;
        let inserted = if full { Err(record) } else { self.records.insert(record, generation) };
        let Ok(index) = inserted else {
            // No room for a record: the tuple is free now (the peer's retransmitted FIN
            // would draw a RST, as without TIME-WAIT).
            self.stats.closed += 1;
            self.stats.time_wait_overflow += 1;
            let user = Some(user);
            self.events.push_back(TableEvent::Closed { tuple, reason: CloseReason::Normal, user });
            return;
        };
        let hash = self.tuple_hash(&tuple);
        let key = index | TIME_WAIT_KEY;
        self.index.insert_unique(spread(hash), IndexEntry { hash, key }, |e| spread(e.hash));
        self.stats.by_state[State::TimeWait.index()] += 1;
        self.stats.time_wait_entered += 1;
        self.time_wait_expiry.push_back((record.expires, index, generation));
        self.events.push_back(TableEvent::TimeWait { tuple, user });
    }

    /// 2 MSL passed (RFC 9293 section 3.10.8): the tuple is free.
    fn expire_time_wait(&mut self, record: u32) {
        let Some(tw) = self.records.remove(record) else { return };
        let hash = self.tuple_hash(&tw.tuple);
        self.unindex(hash, record | TIME_WAIT_KEY);
        self.stats.by_state[State::TimeWait.index()] -= 1;
        self.stats.closed += 1;
        self.events.push_back(TableEvent::Closed {
            tuple: tw.tuple,
            reason: CloseReason::Normal,
            user: None,
        });
    }

    // ---- memory ----

    /// Drops heap entries of connections that are gone or rescheduled, so the heap stays
    /// within twice the live entries (amortized: it runs after the heap doubled).
    fn purge_timers(&mut self) {
        let conns = &self.conns;
        self.timers.retain(|&Reverse((at, index, generation))| {
            conns.get(index, generation).is_some_and(|s| s.scheduled == at.total_micros())
        });
        if self.timers.capacity() > 4 * self.timers.len().max(MIN_PURGE) {
            self.timers.shrink_to(2 * self.timers.len());
        }
        self.timers_purge_at = (2 * self.timers.len()).max(MIN_PURGE);
    }

    /// Gives memory back once the table has emptied substantially: the slabs' vacant tails,
    /// the index, stale timer entries and idle queues. Cheap when there is nothing to do.
    fn maintain(&mut self) {
        self.conns.shrink();
        self.records.shrink();
        let held = self.index.len();
        if self.index.capacity() > MIN_PURGE && held < self.index.capacity() / 4 {
            self.index.shrink_to(held, |e| spread(e.hash));
        }
        if self.conns.len() == 0 {
            // Every heap entry is stale: drop them all, and the heap's memory.
            self.timers = BinaryHeap::new();
            self.timers_purge_at = MIN_PURGE;
        } else if self.timers.len() > 2 * self.conns.len() + MIN_PURGE {
            self.purge_timers();
        }
        if self.records.len() == 0 {
            self.time_wait_expiry = VecDeque::new();
        }
        shrink_queue(&mut self.time_wait_expiry);
        shrink_queue(&mut self.ready);
        shrink_queue(&mut self.replies);
        shrink_queue(&mut self.events);
    }

    // ---- counters ----

    /// The counters: copied, nothing is walked.
    #[must_use]
    pub fn stats(&self) -> TableStats {
        self.stats.clone()
    }

    /// Connections (and TIME-WAIT records) in `state`.
    #[must_use]
    pub fn count_in_state(&self, state: State) -> usize {
        self.stats.by_state[state.index()]
    }

    /// For [`crate::testing`]: per-state counts and counter totals found by walking
    /// everything, to check the incremental ones against.
    pub(crate) fn walk_counts(&self) -> ([usize; 11], ConnStats) {
        let mut by_state = [0; 11];
        let mut totals = self.finished;
        for (_, _, slot) in self.conns.iter() {
            by_state[slot.live.conn.state().index()] += 1;
            totals.accumulate(slot.live.conn.stats());
        }
        by_state[State::TimeWait.index()] += self.records.len();
        (by_state, totals)
    }
}

impl<T: Default> ConnectionTable<T> {
    /// Accept passive opens (SYNs) on `local`, each connection with `T::default()` (for
    /// tests and self-play; the shield's handshakes arrive through
    /// [`ConnectionTable::insert_from_cookie`]).
    pub fn listen(&mut self, local: SocketAddr) {
        self.listeners.insert(local, T::default);
    }
}

/// Below this, heaps and queues are not worth shrinking.
const MIN_PURGE: usize = 1024;

fn shrink_queue<E>(queue: &mut VecDeque<E>) {
    if queue.capacity() > MIN_PURGE && queue.len() < queue.capacity() / 4 {
        queue.shrink_to(2 * queue.len());
    }
}

/// The 64-bit hash the index uses for a 32-bit tuple hash. The multiply spreads every bit
/// of `hash` into the top bits (the index's 7-bit tags) and keeps the low bits (the bucket)
/// a bijection of `hash`'s low bits.
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn key_tuple<'a, T>(
    conns: &'a Slab<ConnSlot<T>>,
    records: &'a Slab<TimeWait>,
    key: u32,
) -> Option<&'a FourTuple> {
    if key & TIME_WAIT_KEY != 0 {
        records.at(key & !TIME_WAIT_KEY).map(|(_, tw)| &tw.tuple)
    } else {
        conns.at(key).map(|(_, slot)| slot.live.conn.tuple())
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
