//! One TCP connection as a sans-IO state machine (RFC 9293).
//!
//! # Call order
//!
//! The shell owns I/O and the clock; the connection only reacts:
//!
//! 1. feed every segment of the connection to [`Connection::handle_segment`], and call
//!    [`Connection::handle_timeout`] once the instant from [`Connection::poll_timeout`] has
//!    come;
//! 2. after any input or application call, call [`Connection::poll_transmit`] with a buffer
//!    until it returns `None`, and send the segment it wrote each time;
//! 3. drain [`Connection::poll_event`]; after [`Event::Closed`] the connection is finished
//!    and may be dropped;
//! 4. re-arm the shell's single timer to [`Connection::poll_timeout`].
//!
//! Application calls ([`Connection::send`], [`Connection::send_with`],
//! [`Connection::recv`], [`Connection::recv_slices`] and [`Connection::consume`],
//! [`Connection::shutdown`], [`Connection::close`], [`Connection::abort`]) may come at any
//! time in between.
//!
//! # Buffers
//!
//! The send and receive buffers are rings allocated when data arrives and given back once
//! they are empty and the connection has been quiet for [`Config::buffer_reclaim_delay`]:
//! an idle connection holds no buffer memory. Received bytes are copied once, into the
//! receive ring (out-of-order ones at their offset); the application reads them in place
//! with `recv_slices`. Bytes to send are written in place with `send_with` (or copied in by
//! `send`) and copied once more, into the caller's buffer by `poll_transmit`.
//!
//! # Where things are
//!
//! - this file: the state machine of RFC 9293 section 3.10 (segment arrival, application
//!   calls, timers' dispatch);
//! - `transmit.rs`: what to send next (retransmissions, loss probes, new data under the
//!   windows, Nagle in Minshall's variant, probes, ACKs) and the header fields;
//! - `ack.rs`: the sender's side of an ACK and of the retransmission, loss-probe and persist
//!   timers; the recovery state machine;
//! - `recovery.rs`: the per-segment scoreboard, RACK (RFC 8985) and PRR (RFC 6937);
//!   `congestion.rs` and `hystart.rs`: the window (RFC 5681, 6582, 9438, 9406);
//! - `recv.rs`, `assembler.rs`, `ring.rs`, `send.rs`: the buffers and reassembly;
//!   `timers.rs`: the timer table and the RTO estimator (RFC 6298).

mod ack;
mod assembler;
mod congestion;
mod hystart;
mod recovery;
mod recv;
mod ring;
mod send;
mod timers;
mod transmit;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::config::Config;
use crate::seq::SeqNumber;
use crate::state::State;
use crate::time::{Duration, Instant};
use crate::time_wait::TimeWait;
use crate::tuple::FourTuple;
use crate::wire::EmitSegment as _;
use crate::wire::{Flags, Packet, PseudoHeader, TcpRepr, WireError};

use ack::{Recovery, RtxTimer};
use congestion::Congestion;
use recovery::{Prr, Rack, Scoreboard};
use recv::RecvBuffer;
use send::SendBuffer;
use timers::{RttEstimator, Timer, TimerTable};

pub use transmit::MIN_TRANSMIT_BUFFER;

/// The default of [`Config::reassembly_max_ranges`].
pub const DEFAULT_REASSEMBLY_MAX_RANGES: usize = assembler::DEFAULT_MAX_RANGES;

/// An owned outgoing (or parsed incoming) segment: header and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The header.
    pub repr: TcpRepr,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Segment {
    /// Writes the segment to the front of `buf` with its checksum; returns its length.
    pub fn emit_into(&self, buf: &mut [u8], pseudo: &PseudoHeader) -> Result<usize, WireError> {
        self.repr.emit_segment(buf, &self.payload, pseudo)
    }

    /// The segment as bytes, checksum filled in.
    pub fn to_bytes(&self, pseudo: &PseudoHeader) -> Result<Vec<u8>, WireError> {
        let mut buf = vec![0; self.repr.header_len() + self.payload.len()];
        let len = self.emit_into(&mut buf, pseudo)?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Parses bytes, verifying the checksum.
    pub fn parse(bytes: &[u8], pseudo: &PseudoHeader) -> Result<Segment, WireError> {
        let packet = Packet::new_checked(bytes)?;
        let repr = TcpRepr::parse(&packet, pseudo)?;
        Ok(Segment { repr, payload: packet.payload().to_vec() })
    }

    /// Sequence space taken: payload plus SYN and FIN.
    #[must_use]
    pub fn segment_len(&self) -> usize {
        self.repr.segment_len(self.payload.len())
    }
}

/// What the application learns from a connection.
///
/// Peer reset, timeouts and our own aborts all end in [`Event::Closed`] with a
/// [`CloseReason`] saying which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed (or the connection was built from a cookie ACK).
    Connected,
    /// New in-order data can be read.
    Readable,
    /// The peer's urgent pointer arrived or advanced (RFC 9293 section 3.8.5, MUST-32): urgent
    /// data lies ahead in the stream. It is delivered inline, in order, like all data;
    /// [`Connection::urgent_remaining`] says how much of what is unread is urgent (MUST-33).
    Urgent,
    /// Send buffer space opened after a short `send`.
    Writable,
    /// The peer sent FIN: it will send no more (half-close); we may still send.
    PeerClosed,
    /// The connection is finished; the last event it reports.
    Closed(CloseReason),
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both FINs were exchanged and acknowledged (after TIME-WAIT on the side that closed
    /// first).
    Normal,
    /// The peer sent an acceptable RST (or refused our SYN).
    Reset,
    /// The application aborted, or closed with unread data, or data arrived after `close()`.
    Aborted,
    /// SYN, SYN-ACK, data or FIN retransmissions ran out, or FIN-WAIT-2 lasted too long.
    TimedOut,
    /// Keepalive probes went unanswered.
    KeepaliveTimeout,
    /// No data moved for the configured idle timeout.
    IdleTimeout,
}

/// Timestamp state handed over from the XDP program's SYN-ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsInfo {
    /// The peer's TSval from the validated ACK (becomes `TS.Recent`).
    pub ts_recent: u32,
    /// Our TSval is `now` in milliseconds plus this, so our timestamps continue from the
    /// one the SYN-ACK carried.
    pub our_tsval_offset: u32,
}

/// Everything a validated SYN cookie ACK tells us: enough to start in ESTABLISHED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieHandshake {
    /// The connection's addresses.
    pub tuple: FourTuple,
    /// Our initial sequence number (the cookie).
    pub iss: SeqNumber,
    /// The peer's initial sequence number (the ACK's sequence number minus one).
    pub irs: SeqNumber,
    /// The MSS the peer announced (as decoded from the cookie).
    pub peer_mss: u16,
    /// The peer's window scale, if its SYN carried one.
    pub peer_wscale: Option<u8>,
    /// Our window scale, if the SYN-ACK carried one (only when the peer offered).
    pub our_wscale: Option<u8>,
    /// Whether both sides agreed on SACK.
    pub sack_permitted: bool,
    /// Timestamps, if both sides agreed on them.
    pub timestamps: Option<TsInfo>,
    /// The peer's window from the ACK, already scaled by `peer_wscale`.
    pub peer_window: u32,
}

/// Why [`Connection::send`] refused data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Our side is shut down, or the connection is not open.
    #[error("connection is closed for sending")]
    Closed,
}

/// Why [`Connection::recv`] returned no data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// Nothing to read yet.
    #[error("no data available")]
    WouldBlock,
    /// The connection ended without a FIN from the peer (reset, abort or timeout).
    #[error("connection closed")]
    Closed,
}

/// Why a close or shutdown request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// The connection is already closed.
    #[error("connection already closed")]
    AlreadyClosed,
}

/// Per-connection counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Segments received.
    pub segments_in: u64,
    /// Segments sent.
    pub segments_out: u64,
    /// Payload bytes delivered in order to the receive buffer.
    pub bytes_in: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes_out: u64,
    /// Segments retransmitted (timeouts, fast retransmit and recovery).
    pub retransmits: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
    /// Fast recoveries entered (a loss found by RACK, or the third duplicate ACK without
    /// SACK).
    pub fast_retransmits: u64,
    /// Tail loss probes sent (RFC 8985 section 7).
    pub tail_loss_probes: u64,
    /// Losses a tail loss probe repaired (RFC 8985 section 7.4).
    pub tail_loss_probe_recoveries: u64,
    /// Times the peer dropped data it had SACKed (RFC 2018 section 8).
    pub renegings: u64,
    /// Challenge ACKs sent (RFC 5961).
    pub challenge_acks: u64,
    /// ACKs not sent to unacceptable segments without data, held back by the rate limit of
    /// RFC 5961 section 7 (out of window, PAWS, ACK of unsent data).
    pub acks_rate_limited: u64,
    /// Segments dropped as unacceptable, out of window or invalid for the state.
    pub dropped: u64,
    /// Segments that arrived out of order.
    pub out_of_order: u64,
    /// Out-of-order ranges dropped or refused because the connection held
    /// [`Config::reassembly_max_ranges`] of them already.
    pub out_of_order_dropped: u64,
    /// Payload bytes the engine copied: into the receive buffer, out of the send buffer into
    /// segments, through `send` and `recv`, and when a buffer grew.
    pub bytes_copied: u64,
}

impl ConnStats {
    /// Adds `other` to these counters.
    pub fn accumulate(&mut self, other: &ConnStats) {
        self.segments_in += other.segments_in;
        self.segments_out += other.segments_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.retransmits += other.retransmits;
        self.timeouts += other.timeouts;
        self.fast_retransmits += other.fast_retransmits;
        self.tail_loss_probes += other.tail_loss_probes;
        self.tail_loss_probe_recoveries += other.tail_loss_probe_recoveries;
        self.renegings += other.renegings;
        self.challenge_acks += other.challenge_acks;
        self.acks_rate_limited += other.acks_rate_limited;
        self.dropped += other.dropped;
        self.out_of_order += other.out_of_order;
        self.out_of_order_dropped += other.out_of_order_dropped;
        self.bytes_copied += other.bytes_copied;
    }

    /// Adds what the counters grew by from `before` to `after` (snapshots of one
    /// connection's counters, which only grow).
    pub fn accumulate_growth(&mut self, before: &ConnStats, after: &ConnStats) {
        let grew = |b: u64, a: u64| a.wrapping_sub(b);
        self.segments_in += grew(before.segments_in, after.segments_in);
        self.segments_out += grew(before.segments_out, after.segments_out);
        self.bytes_in += grew(before.bytes_in, after.bytes_in);
        self.bytes_out += grew(before.bytes_out, after.bytes_out);
        self.retransmits += grew(before.retransmits, after.retransmits);
        self.timeouts += grew(before.timeouts, after.timeouts);
        self.fast_retransmits += grew(before.fast_retransmits, after.fast_retransmits);
        self.tail_loss_probes += grew(before.tail_loss_probes, after.tail_loss_probes);
        self.tail_loss_probe_recoveries +=
            grew(before.tail_loss_probe_recoveries, after.tail_loss_probe_recoveries);
        self.renegings += grew(before.renegings, after.renegings);
        self.challenge_acks += grew(before.challenge_acks, after.challenge_acks);
        self.acks_rate_limited += grew(before.acks_rate_limited, after.acks_rate_limited);
        self.dropped += grew(before.dropped, after.dropped);
        self.out_of_order += grew(before.out_of_order, after.out_of_order);
        self.out_of_order_dropped += grew(before.out_of_order_dropped, after.out_of_order_dropped);
        self.bytes_copied += grew(before.bytes_copied, after.bytes_copied);
    }
}

/// Booleans of a connection, packed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ConnFlags(u16);

impl ConnFlags {
    /// An ACK must go out at the next `poll_transmit`.
    const ACK_NOW: u16 = 1 << 0;
    /// The application called `close()`: no more reading.
    const APP_CLOSED: u16 = 1 << 1;
    /// A `send` was cut short: report `Writable` when space opens.
    const WANT_WRITABLE: u16 = 1 << 2;
    /// SACK was negotiated.
    const SACK: u16 = 1 << 3;
    /// Send a zero-window probe.
    const WINDOW_PROBE: u16 = 1 << 4;
    /// Send a keepalive probe.
    const KEEPALIVE_PROBE: u16 = 1 << 5;
    /// Send the next segment even if small (persist timer overrode SWS avoidance).
    const FORCE_SEND: u16 = 1 << 6;
    /// The peer's FIN was received (EOF for the reader).
    const FIN_RECEIVED: u16 = 1 << 7;
    /// Window scaling was negotiated.
    const WSCALE: u16 = 1 << 8;
    /// Nagle's algorithm is off for this connection (`TCP_NODELAY`).
    const NODELAY: u16 = 1 << 9;
    /// Send a tail loss probe (RFC 8985 section 7.3).
    const LOSS_PROBE: u16 = 1 << 10;

    fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }

    fn set(&mut self, bit: u16) {
        self.0 |= bit;
    }

    fn clear(&mut self, bit: u16) {
        self.0 &= !bit;
    }

    /// Clears `bit` and says whether it was set.
    fn take(&mut self, bit: u16) -> bool {
        let was = self.has(bit);
        self.clear(bit);
        was
    }
}

/// Pending application events, as bits, delivered in this order.
mod pending {
    pub const CONNECTED: u8 = 1 << 0;
    pub const READABLE: u8 = 1 << 1;
    pub const WRITABLE: u8 = 1 << 2;
    pub const PEER_CLOSED: u8 = 1 << 3;
    /// `close_reason` is set and not yet reported.
    pub const CLOSED: u8 = 1 << 4;
    pub const URGENT: u8 = 1 << 5;
}

/// Our timestamp clock and the peer's latest (RFC 7323 section 4.3 and 5.3).
#[derive(Clone, Copy, Debug)]
struct Timestamps {
    recent: u32,
    offset: u32,
    /// When `recent` was last set: it is invalid after 24 days (RFC 7323 section 5.5).
    recent_at: Instant,
}

/// RFC 7323 section 5.5: TS.Recent of a connection idle this long is no longer valid
/// (Linux `TCP_PAWS_24DAYS`).
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 60 * 60);

/// A TCP connection.
#[derive(Debug)]
pub struct Connection {
    config: Arc<Config>,
    tuple: FourTuple,
    state: State,
    flags: ConnFlags,
    events: u8,
    close_reason: Option<CloseReason>,

    // Send sequence space (RFC 9293 section 3.3.1).
    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    /// Highest sequence number sent so far (`snd_nxt` moves back on timeout).
    snd_max: SeqNumber,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// The peer's window, scaled.
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_shift: u8,
    rcv_shift: u8,
    /// The peer's MSS, capped by ours.
    send_mss: u16,
    /// Sequence number of our FIN once the application shut down.
    fin_seq: Option<SeqNumber>,
    send: SendBuffer,

    // Receive sequence space.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// Right edge of the window we advertised; it never moves left.
    rcv_adv: SeqNumber,
    last_ack_sent: SeqNumber,
    recv: RecvBuffer,
    /// Sequence number of a FIN that arrived before all data preceding it.
    fin_at: Option<SeqNumber>,
    /// Estimate of the peer's segment size: the largest payload it sent, at most our MSS
    /// (Linux `icsk_ack.rcv_mss`).
    rcv_mss: u16,
    /// Segments of at least `rcv_mss` received since our last ACK (delayed ACK).
    unacked_segments: u8,
    /// The peer's urgent pointer (RCV.UP of RFC 9293), while urgent data lies ahead.
    rcv_up: Option<SeqNumber>,
    /// Our urgent pointer (SND.UP): the byte after the last urgent one, until acknowledged.
    snd_up: Option<SeqNumber>,
    /// End of the last segment sent shorter than a full one (Minshall's `snd_sml`).
    snd_sml: SeqNumber,
    ts: Option<Timestamps>,

    // Loss recovery.
    rtt: RttEstimator,
    /// The SYN's round trip without timestamps (data segments are timed by the scoreboard).
    rtt_probe: Option<(SeqNumber, Instant)>,
    cc: Congestion,
    /// Consecutive retransmission timeouts.
    retries: u8,
    /// Duplicate ACKs in a row (NewReno, without SACK).
    dupacks: u8,
    /// Segments in flight with their SACK, lost and retransmitted marks and send times.
    sb: Scoreboard,
    rack: Rack,
    recovery: Recovery,
    prr: Prr,
    /// While a tail loss probe is unanswered: SND.MAX after it (`TLP.end_seq`), and
    /// whether it resent old data (RFC 8985 section 7.4).
    tlp: Option<(SeqNumber, bool)>,
    /// What the retransmission timer is armed for.
    rtx_timer: RtxTimer,
    /// When the peer last sent an acceptable ACK (Linux `rcv_tstamp`).
    last_heard: Instant,
    /// When data was last sent (Linux `lsndtime`), for the restart after idle.
    last_sent: Instant,
    /// Exponent of the zero-window probe interval; zero once the window opens.
    persist_backoff: u8,
    /// Zero-window probes in a row the peer has not answered.
    probes_out: u8,

    /// A RST to send (abort, reply to an invalid segment): its sequence number and, for a
    /// RST+ACK, acknowledgment number. Kept compact; the header is built when sent.
    pending_rst: Option<(SeqNumber, Option<SeqNumber>)>,
    timers: TimerTable,
    keepalive_probes: u8,
    /// Last time data moved either way (idle timeout).
    last_activity: Instant,
    /// When the last ACK answering an unacceptable segment went out: challenge ACKs, and
    /// ACKs of out-of-window segments, of PAWS failures and of unsent data share one limit
    /// (RFC 5961 section 7; Linux `last_oow_ack_time`).
    last_oow_ack: Option<Instant>,
    stats: ConnStats,
}

/// The RST that answers `repr` when no connection (or no acceptable state) takes it
/// (RFC 9293 section 3.10.7.1). `None` for a RST, which is never answered.
#[must_use]
pub fn reset_reply(repr: &TcpRepr, payload_len: usize) -> Option<TcpRepr> {
    if repr.flags.rst() {
        return None;
    }
    let reply = TcpRepr::new(repr.dst_port, repr.src_port, SeqNumber::new(0));
    Some(match repr.ack_number {
        // <SEQ=SEG.ACK><CTL=RST>
        Some(ack) => TcpRepr { seq_number: ack, flags: Flags::RST, ..reply },
        // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
        None => TcpRepr {
            ack_number: Some(repr.seq_number + repr.segment_len(payload_len)),
            flags: Flags::RST,
            ..reply
        },
    })
}

/// The default MSS when the peer sends none (RFC 9293 section 3.7.1; RFC 8200 for IPv6).
fn default_mss(tuple: &FourTuple) -> u16 {
    if tuple.remote.is_ipv4() { 536 } else { 1220 }
}

impl Timestamps {
    /// Our TSval at `now`: a millisecond clock plus the per-connection offset.
    fn tsval(self, now: Instant) -> u32 {
        ms_clock(now).wrapping_add(self.offset)
    }
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "the TCP timestamp clock is modulo 2^32 milliseconds"
)]
fn ms_clock(now: Instant) -> u32 {
    now.total_millis() as u32
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Connection {
    fn new(
        now: Instant,
        tuple: FourTuple,
        iss: SeqNumber,
        config: Arc<Config>,
        state: State,
    ) -> Connection {
        let send_mss = config.mss_for(&tuple);
        let mut flags = ConnFlags::default();
        if !config.nagle {
            flags.set(ConnFlags::NODELAY);
        }
        Connection {
            tuple,
            state,
            flags,
            events: 0,
            close_reason: None,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wl1: SeqNumber::new(0),
            snd_wl2: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_shift: 0,
            rcv_shift: 0,
            send_mss,
            fin_seq: None,
            send: SendBuffer::new(iss + 1, config.send_buffer_size),
            irs: SeqNumber::new(0),
            rcv_nxt: SeqNumber::new(0),
            rcv_adv: SeqNumber::new(0),
            last_ack_sent: SeqNumber::new(0),
            recv: RecvBuffer::with_max_ranges(
                config.recv_buffer_size,
                config.reassembly_max_ranges,
            ),
            fin_at: None,
            rcv_mss: send_mss.min(536),
            unacked_segments: 0,
            rcv_up: None,
            snd_up: None,
            snd_sml: iss,
            ts: None,
            rtt: RttEstimator::new(config.rto_initial),
            rtt_probe: None,
            cc: Congestion::new(config.congestion, u32::from(send_mss)),
            retries: 0,
            dupacks: 0,
            sb: Scoreboard::default(),
            rack: Rack::new(iss),
            recovery: Recovery::Open,
            prr: Prr::default(),
            tlp: None,
            rtx_timer: RtxTimer::Rto,
            last_heard: now,
            last_sent: now,
            persist_backoff: 0,
            probes_out: 0,
            pending_rst: None,
            timers: TimerTable::new(),
            keepalive_probes: 0,
            last_activity: now,
            last_oow_ack: None,
            stats: ConnStats::default(),
            config,
        }
    }

    /// Active open: a connection in SYN-SENT whose SYN goes out at the next
    /// `poll_transmit`.
    #[must_use]
    pub fn connect(
        now: Instant,
        tuple: FourTuple,
        iss: SeqNumber,
        config: Arc<Config>,
    ) -> Connection {
        let mut conn = Connection::new(now, tuple, iss, config, State::SynSent);
        if conn.config.timestamps {
            conn.ts = Some(Timestamps { recent: 0, offset: iss.raw(), recent_at: now });
        }
        conn.rcv_shift = conn.config.window_scale.min(14);
        conn
    }

    /// Passive open: a connection in LISTEN for exactly this tuple; a SYN moves it to
    /// SYN-RECEIVED with `iss` as our initial sequence number.
    #[must_use]
    pub fn listen(
        now: Instant,
        tuple: FourTuple,
        iss: SeqNumber,
        config: Arc<Config>,
    ) -> Connection {
        Connection::new(now, tuple, iss, config, State::Listen)
    }

    /// A connection whose handshake the XDP program completed with a SYN cookie. It starts
    /// in ESTABLISHED; feed the validated ACK to [`Connection::handle_segment`] next, so
    /// data it carries is delivered.
    #[must_use]
    pub fn from_cookie(
        now: Instant,
        handshake: &CookieHandshake,
        config: Arc<Config>,
    ) -> Connection {
        let h = handshake;
        let mut conn = Connection::new(now, h.tuple, h.iss, config, State::Established);
        conn.negotiate(h.peer_mss, h.peer_wscale, h.our_wscale, h.sack_permitted);
        conn.ts = h.timestamps.map(|t| Timestamps {
            recent: t.ts_recent,
            offset: t.our_tsval_offset,
            recent_at: now,
        });
        conn.irs = h.irs;
        conn.rcv_nxt = h.irs + 1;
        conn.last_ack_sent = conn.rcv_nxt;
        // The SYN-ACK's window is never scaled and at most 64 KiB.
        conn.rcv_adv = conn.rcv_nxt + conn.recv.free().min(usize::from(u16::MAX));
        conn.snd_una = h.iss + 1;
        conn.snd_nxt = conn.snd_una;
        conn.snd_max = conn.snd_una;
        conn.snd_wnd = h.peer_window;
        conn.max_snd_wnd = h.peer_window;
        // So the ACK's own window counts as an update (RFC 9293 section 3.10.7.4).
        conn.snd_wl1 = h.irs;
        conn.snd_wl2 = conn.snd_una;
        conn.events |= pending::CONNECTED;
        conn.arm_keepalive(now);
        conn
    }

    /// Applies the options of the handshake.
    /// Our MSS for this connection's address family.
    fn local_mss(&self) -> u16 {
        self.config.mss_for(&self.tuple)
    }

    fn negotiate(
        &mut self,
        peer_mss: u16,
        peer_wscale: Option<u8>,
        our_wscale: Option<u8>,
        sack: bool,
    ) {
        self.send_mss = peer_mss.min(self.local_mss()).max(64);
        self.cc = Congestion::new(self.config.congestion, u32::from(self.send_mss));
        if let (Some(peer), Some(ours)) = (peer_wscale, our_wscale) {
            self.snd_shift = peer.min(14);
            self.rcv_shift = ours.min(14);
            self.flags.set(ConnFlags::WSCALE);
        } else {
            self.snd_shift = 0;
            self.rcv_shift = 0;
            self.flags.clear(ConnFlags::WSCALE);
        }
        self.recv.set_window_shift(self.rcv_shift);
        if sack {
            self.flags.set(ConnFlags::SACK);
        }
    }

    // ---- accessors ----

    /// The connection's addresses.
    #[must_use]
    pub fn tuple(&self) -> &FourTuple {
        &self.tuple
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    /// The retransmission timeout in force.
    #[must_use]
    pub fn rto(&self) -> Duration {
        self.rtt.rto(self.config.rto_max)
    }

    /// The smoothed round-trip time, once measured.
    #[must_use]
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// The slow start threshold in bytes (`u32::MAX` until the first loss).
    #[must_use]
    pub fn slow_start_threshold(&self) -> u32 {
        self.cc.ssthresh()
    }

    /// The congestion window in bytes.
    #[must_use]
    pub fn congestion_window(&self) -> u32 {
        self.cc.window()
    }

    /// Bytes that can be read now.
    #[must_use]
    pub fn recv_queue_len(&self) -> usize {
        self.recv.readable_len()
    }

    /// Bytes queued and not yet acknowledged.
    #[must_use]
    pub fn send_queue_len(&self) -> usize {
        self.send.len()
    }

    /// Room in the send buffer.
    #[must_use]
    pub fn send_capacity(&self) -> usize {
        if self.state.may_send() && self.fin_seq.is_none() { self.send.free() } else { 0 }
    }

    /// Why the connection closed, once it did.
    #[must_use]
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// The small record that stands for this connection in TIME-WAIT (see
    /// [`crate::time_wait`]): taken once it has nothing left to send or deliver.
    pub(crate) fn time_wait_record(&self, now: Instant) -> TimeWait {
        let offered = self.rcv_adv.saturating_sub(self.rcv_nxt) >> self.rcv_shift;
        TimeWait {
            tuple: self.tuple,
            expires: self
                .timers
                .deadline(Timer::Linger)
                .unwrap_or_else(|| now + self.config.time_wait()),
            last_ack: self.last_oow_ack,
            rcv_nxt: self.rcv_nxt,
            snd_nxt: self.snd_max,
            ts_recent: self.ts.map_or(0, |ts| ts.recent),
            ts_offset: self.ts.map_or(0, |ts| ts.offset),
            window: u16::try_from(offered).unwrap_or(u16::MAX),
            timestamps: self.ts.is_some(),
        }
    }

    /// The earliest instant at which [`Connection::handle_timeout`] has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        let order = [
            (pending::CONNECTED, Event::Connected),
            (pending::READABLE, Event::Readable),
            (pending::URGENT, Event::Urgent),
            (pending::WRITABLE, Event::Writable),
            (pending::PEER_CLOSED, Event::PeerClosed),
        ];
        for (bit, event) in order {
            if self.events & bit != 0 {
                self.events &= !bit;
                return Some(event);
            }
        }
        if self.events & pending::CLOSED != 0 {
            self.events &= !pending::CLOSED;
            return self.close_reason.map(Event::Closed);
        }
        None
    }

    // ---- application calls ----

    /// Queues data to send; returns how many bytes were taken (fewer than offered when the
    /// buffer is full: [`Event::Writable`] follows when room opens).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        self.check_may_send()?;
        let n = self.send.push(data, &mut self.stats.bytes_copied);
        if n < data.len() {
            self.flags.set(ConnFlags::WANT_WRITABLE);
        }
        Ok(n)
    }

    /// Queues data written in place: `fill` gets contiguous free space of the send buffer
    /// (at most `max` bytes; empty space is never offered, so `fill` is not called when the
    /// buffer is full) and returns how many bytes it wrote there, which are queued. Lets an
    /// application `read(2)` a kernel socket straight into the send buffer.
    ///
    /// Returns the bytes queued. Less room than `max` means the buffer is short of space:
    /// [`Event::Writable`] follows when room opens. Space that wraps around the end of the
    /// ring is offered by the next call.
    pub fn send_with(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize, SendError> {
        self.check_may_send()?;
        if self.send.free() < max {
            self.flags.set(ConnFlags::WANT_WRITABLE);
        }
        let spare = self.send.spare(max, &mut self.stats.bytes_copied);
        if spare.is_empty() {
            return Ok(0);
        }
        let room = spare.len();
        let n = fill(spare).min(room);
        self.send.commit(n);
        Ok(n)
    }

    /// Queues urgent data (RFC 9293 section 3.8.5): like [`Connection::send`], and the urgent
    /// pointer moves to the byte after the last one taken (MUST-31). Segments up to it carry
    /// URG; the data goes out at once, whatever Nagle's algorithm would say.
    pub fn send_urgent(&mut self, data: &[u8]) -> Result<usize, SendError> {
        let n = self.send(data)?;
        if n > 0 {
            self.snd_up = Some(self.send.end());
        }
        Ok(n)
    }

    /// How many of the bytes not yet read are urgent: up to the peer's urgent pointer
    /// (RFC 9293 MUST-33). The bytes are read in order with the rest; zero once the
    /// application has read past the pointer.
    #[must_use]
    pub fn urgent_remaining(&self) -> usize {
        self.rcv_up.map_or(0, |up| up.saturating_sub(self.read_seq()))
    }

    /// Turns Nagle's algorithm off (`true`: small segments go out at once, as
    /// `TCP_NODELAY`) or on. The default is [`Config::nagle`]'s opposite.
    ///
    /// With Nagle on, this engine follows Minshall's variant as Linux does
    /// (`tcp_minshall_check`): a segment shorter than a full one waits only while an earlier
    /// short segment is unacknowledged, so the tail of each write goes out at once and only
    /// a stream of small writes is coalesced. An interactive application, a proxy or a
    /// request/response protocol that writes whole messages wants no delay at all.
    pub fn set_nodelay(&mut self, nodelay: bool) {
        if nodelay {
            self.flags.set(ConnFlags::NODELAY);
        } else {
            self.flags.clear(ConnFlags::NODELAY);
        }
    }

    /// Whether Nagle's algorithm is off for this connection.
    #[must_use]
    pub fn nodelay(&self) -> bool {
        self.flags.has(ConnFlags::NODELAY)
    }

    fn check_may_send(&self) -> Result<(), SendError> {
        if !self.state.may_send() || self.fin_seq.is_some() {
            return Err(SendError::Closed);
        }
        Ok(())
    }

    /// Reads in-order data. `Ok(0)` means end of stream (the peer's FIN was read up to).
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if self.recv.readable_len() == 0 {
            if self.flags.has(ConnFlags::FIN_RECEIVED) {
                return Ok(0);
            }
            return match self.close_reason {
                Some(_) => Err(RecvError::Closed),
                None => Err(RecvError::WouldBlock),
            };
        }
        let (a, b) = self.recv.readable_slices();
        let n_a = a.len().min(buf.len());
        buf[..n_a].copy_from_slice(&a[..n_a]);
        let n_b = b.len().min(buf.len() - n_a);
        buf[n_a..n_a + n_b].copy_from_slice(&b[..n_b]);
        self.stats.bytes_copied += (n_a + n_b) as u64;
        Ok(self.consume(n_a + n_b))
    }

    /// The in-order data waiting to be read, in place: one slice, or two when it wraps
    /// around the end of the buffer. Nothing is copied; [`Connection::consume`] what was
    /// used.
    #[must_use]
    pub fn recv_slices(&self) -> (&[u8], &[u8]) {
        self.recv.readable_slices()
    }

    /// Drops the first `n` readable bytes (after [`Connection::recv_slices`]); returns how
    /// many were dropped (at most what was readable).
    pub fn consume(&mut self, n: usize) -> usize {
        let before = self.rcv_adv.saturating_sub(self.rcv_nxt);
        let n = self.recv.consume(n);
        // Tell the peer when reading opened the window by a useful amount (RFC 9293
        // section 3.8.6.2.2: at least min(buffer / 2, MSS)).
        let threshold = (self.recv.capacity() / 2).min(usize::from(self.local_mss()));
        if n > 0
            && self.state.may_receive()
            && self.recv.free() >= before + threshold
            && before < threshold
        {
            self.flags.set(ConnFlags::ACK_NOW);
        }
        if self.recv.is_empty() {
            self.buffer_emptied();
        }
        n
    }

    /// Whether the peer's FIN arrived (every byte before it is readable or was read): nothing
    /// will follow the readable bytes.
    #[must_use]
    pub fn fin_received(&self) -> bool {
        self.flags.has(ConnFlags::FIN_RECEIVED)
    }

    /// Room left in the send buffer (what [`Connection::send`] would take now).
    #[must_use]
    pub fn send_room(&self) -> usize {
        if self.check_may_send().is_err() { 0 } else { self.send.free() }
    }

    /// Moves readable bytes into the send buffer, as many as fit, and consumes them: one
    /// copy, from the receive buffer straight into the send buffer (an echo). Returns how
    /// many.
    pub fn send_received(&mut self) -> usize {
        if self.check_may_send().is_err() {
            return 0;
        }
        let (a, b) = self.recv.readable_slices();
        let mut moved = self.send.push(a, &mut self.stats.bytes_copied);
        if moved == a.len() {
            moved += self.send.push(b, &mut self.stats.bytes_copied);
        }
        if moved < a.len() + b.len() {
            self.flags.set(ConnFlags::WANT_WRITABLE);
        }
        self.consume(moved)
    }

    /// Drops every out-of-order byte held for reassembly, as Linux's `tcp_prune_ofo_queue`
    /// does under memory pressure: the peer must send it again even if it was SACKed
    /// (reneging, RFC 2018 section 8). For tests of a reneging peer; returns how many
    /// ranges were dropped.
    #[doc(hidden)]
    pub fn discard_out_of_order(&mut self) -> usize {
        self.recv.discard_out_of_order()
    }

    /// Whether the peer's FIN arrived and every byte before it was read: end of stream.
    #[must_use]
    pub fn recv_finished(&self) -> bool {
        self.flags.has(ConnFlags::FIN_RECEIVED) && self.recv.readable_len() == 0
    }

    /// Bytes of memory the send and receive buffers hold now, with the record of segments in
    /// flight (zero for an idle connection once `buffer_reclaim_delay` has passed).
    #[must_use]
    pub fn buffer_bytes(&self) -> usize {
        self.send.allocated() + self.recv.allocated() + self.sb.allocated()
    }

    /// A buffer just emptied: give its memory back now, or once the connection has been
    /// quiet for `buffer_reclaim_delay` (see there why not at once).
    fn buffer_emptied(&mut self) {
        let delay = self.config.buffer_reclaim_delay;
        if delay == Duration::ZERO {
            self.release_empty_buffers();
        } else if !self.timers.is_set(Timer::Reclaim) {
            self.timers.set(Timer::Reclaim, self.last_activity + delay);
        }
    }

    fn release_empty_buffers(&mut self) {
        if self.send.release_if_empty() && self.sb.is_empty() {
            self.sb.release();
        }
        self.recv.release_if_empty();
    }

    fn holds_empty_buffer(&self) -> bool {
        (self.send.is_empty() && self.send.allocated() + self.sb.allocated() > 0)
            || (self.recv.is_empty() && self.recv.allocated() > 0)
    }

    /// Half-close: FIN goes out after the queued data (RFC 9293 section 3.10.4). We keep
    /// receiving.
    pub fn shutdown(&mut self) -> Result<(), CloseError> {
        match self.state {
            State::Closed => return Err(CloseError::AlreadyClosed),
            // Nothing sent yet: just go away.
            State::Listen | State::SynSent => {
                self.finish(CloseReason::Normal);
                return Ok(());
            }
            _ => {}
        }
        if self.fin_seq.is_none() {
            self.fin_seq = Some(self.send.end());
            // RFC 9293 section 3.10.4: ESTABLISHED and SYN-RECEIVED go to FIN-WAIT-1,
            // CLOSE-WAIT goes to LAST-ACK; the FIN itself waits for the queued data.
            // SYN-RECEIVED waits for ESTABLISHED before its FIN (section 3.10.4).
            let next = match self.state {
                State::Established => State::FinWait1,
                State::CloseWait => State::LastAck,
                other => other,
            };
            self.transition(next);
        }
        Ok(())
    }

    /// Full close: shutdown, and the application reads no more. Unread or later-arriving
    /// data makes it an abort (RST), as Linux does (RFC 2525 section 2.17).
    pub fn close(&mut self) -> Result<(), CloseError> {
        if self.state == State::Closed {
            return Err(CloseError::AlreadyClosed);
        }
        self.flags.set(ConnFlags::APP_CLOSED);
        if self.recv.readable_len() > 0 {
            self.abort();
            return Ok(());
        }
        self.shutdown()?;
        if self.state == State::FinWait2 {
            // Application calls carry no clock: count from the last activity.
            self.timers.set(Timer::Linger, self.last_activity + self.config.fin_wait_2_timeout);
        }
        Ok(())
    }

    /// Abort: send RST (in synchronized states and SYN-RECEIVED) and close at once
    /// (RFC 9293 section 3.10.5).
    pub fn abort(&mut self) {
        if matches!(self.state, State::Closed | State::Listen | State::SynSent | State::TimeWait) {
            self.finish(CloseReason::Aborted);
            return;
        }
        self.queue_rst();
        self.finish(CloseReason::Aborted);
    }

    /// Closes at once and sends nothing: no RST, no FIN, no more SYN-ACKs. For a connection
    /// still in SYN-RECEIVED when the server stops, as Linux drops the SYN queue with its
    /// listener: a real client's third ACK then meets no connection and is reset, and a flood's
    /// half-open entries do not each cost a packet to a forged address.
    pub fn discard(&mut self) {
        self.pending_rst = None;
        if self.state != State::Closed {
            self.finish(CloseReason::Aborted);
        }
    }

    /// Queues <SEQ=SND.NXT><CTL=RST> for the next `poll_transmit`.
    fn queue_rst(&mut self) {
        self.pending_rst = Some((self.snd_nxt.max(self.snd_una), None));
    }

    /// Queues the RST that answers `repr` (RFC 9293 section 3.10.7.1), if any.
    fn queue_reset_reply(&mut self, repr: &TcpRepr, payload_len: usize) {
        self.pending_rst = reset_reply(repr, payload_len).map(|r| (r.seq_number, r.ack_number));
    }

    fn transition(&mut self, to: State) {
        self.state = to;
    }

    /// Enters CLOSED for good and reports why.
    fn finish(&mut self, reason: CloseReason) {
        self.transition(State::Closed);
        self.timers.stop_all();
        if self.close_reason.is_none() {
            self.close_reason = Some(reason);
            self.events |= pending::CLOSED;
        }
        // Give the buffers back; nothing more will be sent and a reset loses data anyway.
        // Unread data stays readable.
        self.send = SendBuffer::new(self.send.start(), 0);
        self.recv.release_if_empty();
        self.sb.release();
    }

    // ---- segment arrival (RFC 9293 section 3.10.7) ----

    /// Processes one incoming segment of this connection (ports already matched).
    ///
    /// Returns whether the segment was accepted: it passed the sequence-number, PAWS and
    /// ACK-field tests of a synchronized state (RFC 9293 section 3.10.7.4, RFC 5961), so its
    /// sender knows the connection's state and is on its path. Only such a segment may move
    /// what the caller keeps about the peer's path (its MAC address, VLAN tags).
    pub fn handle_segment(&mut self, now: Instant, repr: &TcpRepr, payload: &[u8]) -> bool {
        self.stats.segments_in += 1;
        match self.state {
            // 3.10.7.1: a closed connection answers everything but RST with RST.
            State::Closed => {
                self.queue_reset_reply(repr, payload.len());
                self.stats.dropped += 1;
                false
            }
            State::Listen => {
                self.on_segment_listen(now, repr);
                false
            }
            State::SynSent => {
                self.on_segment_syn_sent(now, repr, payload);
                false
            }
            _ => self.on_segment_synchronized(now, repr, payload),
        }
    }

    /// RFC 9293 section 3.10.7.2.
    fn on_segment_listen(&mut self, now: Instant, repr: &TcpRepr) {
        if repr.flags.rst() {
            // First: an incoming RST is ignored.
            self.stats.dropped += 1;
        } else if repr.ack_number.is_some() {
            // Second: any ACK is bad: <SEQ=SEG.ACK><CTL=RST>.
            self.queue_reset_reply(repr, 0);
            self.stats.dropped += 1;
        } else if repr.flags.syn() {
            // Third: SYN. Data on a SYN is not queued (no TCP Fast Open): the peer
            // retransmits it once we ACK only the SYN.
            self.irs = repr.seq_number;
            self.rcv_nxt = repr.seq_number + 1;
            self.last_ack_sent = self.rcv_nxt;
            // The right edge offered so far: none beyond RCV.NXT. (Left at its initial zero,
            // the modular `max` with the SYN-ACK's edge would keep zero for half of all
            // initial sequence numbers, offering the peer a window of gigabytes.)
            self.rcv_adv = self.rcv_nxt;
            let ours = repr.window_scale.map(|_| self.config.window_scale);
            let mss = repr.max_seg_size.unwrap_or_else(|| default_mss(&self.tuple));
            self.negotiate(mss, repr.window_scale, ours, self.config.sack && repr.sack_permitted);
            if let (true, Some(ts)) = (self.config.timestamps, repr.timestamp) {
                self.ts =
                    Some(Timestamps { recent: ts.tsval, offset: self.iss.raw(), recent_at: now });
            }
            // RFC 7323 section 2.2: the window of a SYN is never scaled.
            self.snd_wnd = u32::from(repr.window_len);
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = repr.seq_number;
            self.snd_wl2 = self.iss;
            self.transition(State::SynReceived);
            self.last_activity = now;
        } else {
            // Fourth: anything else is dropped.
            self.stats.dropped += 1;
        }
    }

    /// RFC 9293 section 3.10.7.3.
    fn on_segment_syn_sent(&mut self, now: Instant, repr: &TcpRepr, payload: &[u8]) {
        // First: the ACK must acknowledge our SYN.
        let ack_ok = match repr.ack_number {
            Some(ack) if ack <= self.iss || ack > self.snd_max => {
                if !repr.flags.rst() {
                    self.queue_reset_reply(repr, payload.len());
                }
                self.stats.dropped += 1;
                return;
            }
            Some(_) => true,
            None => false,
        };
        // Second: RST counts only with an acceptable ACK (RFC 5961 section 3.2): refused.
        if repr.flags.rst() {
            if ack_ok {
                self.finish(CloseReason::Reset);
            } else {
                self.stats.dropped += 1;
            }
            return;
        }
        // Fourth: SYN.
        if !repr.flags.syn() {
            self.stats.dropped += 1;
            return;
        }
        self.irs = repr.seq_number;
        self.rcv_nxt = repr.seq_number + 1;
        self.last_ack_sent = self.rcv_nxt;
        let mss = repr.max_seg_size.unwrap_or_else(|| default_mss(&self.tuple));
        let ours = Some(self.rcv_shift);
        self.negotiate(mss, repr.window_scale, ours, self.config.sack && repr.sack_permitted);
        self.ts = match (self.ts, repr.timestamp) {
            (Some(ts), Some(theirs)) => {
                Some(Timestamps { recent: theirs.tsval, recent_at: now, ..ts })
            }
            _ => None,
        };
        self.rcv_adv = self.rcv_nxt + self.recv.free().min(usize::from(u16::MAX));
        self.snd_wnd = u32::from(repr.window_len);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = repr.seq_number;
        if let Some(ack) = repr.ack_number {
            // Our SYN is acknowledged: ESTABLISHED, and ACK the SYN-ACK.
            self.snd_wl2 = ack;
            self.on_syn_acked(now, ack, repr);
            self.transition(State::Established);
            self.events |= pending::CONNECTED;
            self.flags.set(ConnFlags::ACK_NOW);
            self.arm_keepalive(now);
            if !payload.is_empty() || repr.flags.fin() {
                self.receive_text_and_fin(now, repr.seq_number + 1, payload, repr.flags.fin());
            }
        } else {
            // Simultaneous open: SYN-RECEIVED, our SYN goes out again with an ACK.
            self.snd_nxt = self.iss;
            self.transition(State::SynReceived);
        }
    }

    /// Our SYN is acknowledged by `ack`: take the RTT sample and restart the clocks.
    fn on_syn_acked(&mut self, now: Instant, ack: SeqNumber, repr: &TcpRepr) {
        self.snd_una = ack;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        // The handshake's round trip: from the timestamps, or (Karn) from a SYN sent once.
        let sample = self.timestamp_rtt(now, repr).or_else(|| {
            self.rtt_probe.take().filter(|&(seq, _)| ack >= seq).map(|(_, sent)| now - sent)
        });
        if let Some(rtt) = sample {
            self.rtt.on_sample(rtt, self.config.rto_min, self.config.rto_max);
            self.rack.on_rtt_sample(rtt, now);
        }
        self.last_heard = now;
        self.retries = 0;
        self.rtt.reset_backoff();
        self.timers.stop(Timer::Retransmit);
        self.last_activity = now;
    }

    /// RFC 9293 section 3.10.7.4, every state from SYN-RECEIVED on.
    #[expect(
        clippy::too_many_lines,
        reason = "one function follows the RFC's eight checks in order"
    )]
    fn on_segment_synchronized(&mut self, now: Instant, repr: &TcpRepr, payload: &[u8]) -> bool {
        let seg_len = repr.segment_len(payload.len());
        let rcv_wnd = self.rcv_adv.saturating_sub(self.rcv_nxt);

        // A repeated SYN in SYN-RECEIVED: our SYN-ACK was lost; send it again.
        if self.state == State::SynReceived
            && repr.flags.syn()
            && repr.ack_number.is_none()
            && repr.seq_number == self.irs
        {
            self.snd_nxt = self.iss;
            return false;
        }

        // First: sequence number acceptability.
        let acceptable = if seg_len == 0 {
            if rcv_wnd == 0 {
                repr.seq_number == self.rcv_nxt
            } else {
                repr.seq_number.in_range(self.rcv_nxt, self.rcv_adv)
            }
        } else if rcv_wnd == 0 {
            false
        } else {
            let last = repr.seq_number + (seg_len - 1);
            repr.seq_number.in_range(self.rcv_nxt, self.rcv_adv)
                || last.in_range(self.rcv_nxt, self.rcv_adv)
        };
        // RFC 7323 section 3.2: once timestamps are in use, a segment without one is
        // silently dropped, except a RST, which is processed regardless.
        if self.ts.is_some() && repr.timestamp.is_none() && !repr.flags.rst() {
            self.stats.dropped += 1;
            return false;
        }
        // RFC 7323 section 5.3: PAWS rejects old timestamps (never a RST), unless TS.Recent
        // is older than 24 days and so no longer valid (section 5.5; Linux tcp_paws_check).
        let paws_reject = match (self.ts, repr.timestamp) {
            (Some(ts), Some(theirs)) => {
                !repr.flags.rst()
                    && theirs.tsval.wrapping_sub(ts.recent).cast_signed() < 0
                    && now.saturating_duration_since(ts.recent_at) <= PAWS_IDLE
            }
            _ => false,
        };
        let mut payload = payload;
        let mut fin = repr.flags.fin();
        if !acceptable || paws_reject {
            self.stats.dropped += 1;
            if repr.flags.rst() {
                return false;
            }
            // TIME-WAIT: the peer retransmitted its FIN, so our last ACK was lost: ACK
            // again and restart 2 MSL (RFC 9293 section 3.10.7.4, eighth step).
            if self.state == State::TimeWait && fin {
                self.timers.set(Timer::Linger, now + self.config.time_wait());
            }
            self.send_oow_ack(now, seg_len > 0 && !repr.flags.syn());
            // A zero window still takes ACKs: process the ACK field, drop the text.
            let zero_window_ack = rcv_wnd == 0 && repr.seq_number == self.rcv_nxt && !paws_reject;
            if !zero_window_ack {
                return false;
            }
            payload = &[];
            fin = false;
        }

        // Second: RST (RFC 5961 section 3.2). In TIME-WAIT a RST is ignored (RFC 1337, fix
        // TW-1): TIME-WAIT exists to absorb old duplicates for 2 MSL, and a RST (say, the
        // peer's answer to our re-ACK after it already closed) must not cut that short.
        if repr.flags.rst() {
            if self.state == State::TimeWait {
                self.stats.dropped += 1;
            } else if repr.seq_number == self.rcv_nxt {
                self.finish(CloseReason::Reset);
            } else {
                self.send_challenge_ack(now);
            }
            return false;
        }

        // Fourth: SYN in a synchronized state (RFC 5961 section 4.2): challenge ACK.
        if repr.flags.syn() {
            self.send_challenge_ack(now);
            return false;
        }

        // Fifth: the ACK field.
        let Some(ack) = repr.ack_number else {
            self.stats.dropped += 1;
            return false;
        };
        if self.state == State::SynReceived {
            if ack > self.snd_una && ack <= self.snd_max {
                // The third ACK: ESTABLISHED (or FIN-WAIT-1 if the application already
                // shut down, RFC 9293 section 3.10.4).
                self.on_syn_acked(now, ack, repr);
                self.transition(if self.fin_seq.is_some() {
                    State::FinWait1
                } else {
                    State::Established
                });
                self.events |= pending::CONNECTED;
                self.snd_wl1 = repr.seq_number;
                self.snd_wl2 = ack;
                self.snd_wnd = u32::from(repr.window_len) << self.snd_shift;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.rcv_adv = self.rcv_adv.max(self.rcv_nxt);
                self.arm_keepalive(now);
            } else {
                // <SEQ=SEG.ACK><CTL=RST>
                self.queue_reset_reply(repr, payload.len());
                self.stats.dropped += 1;
                return false;
            }
        }
        // RFC 5961 section 5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT]; one
        // of unsent data is answered with an ACK (rate-limited, section 7) and dropped.
        if ack > self.snd_max {
            self.stats.dropped += 1;
            self.send_oow_ack(now, seg_len > 0);
            return false;
        }
        if ack < self.snd_una - self.max_snd_wnd as usize {
            self.send_challenge_ack(now);
            return false;
        }
        // Accepted from here on.
        self.update_ts_recent(now, repr, seg_len);
        self.keepalive_heard(now);
        self.process_ack(now, repr, ack, payload.is_empty() && !fin);

        // ACK-driven transitions.
        let fin_acked = self.fin_seq.is_some_and(|f| self.snd_una > f);
        match self.state {
            // Our FIN is acknowledged: the peer may still send (half-close).
            State::FinWait1 if fin_acked => {
                self.transition(State::FinWait2);
                if self.flags.has(ConnFlags::APP_CLOSED) {
                    self.timers.set(Timer::Linger, now + self.config.fin_wait_2_timeout);
                }
            }
            // Simultaneous close: both FINs acknowledged.
            State::Closing if fin_acked => self.enter_time_wait(now),
            // Passive close complete.
            State::LastAck if fin_acked => {
                self.finish(CloseReason::Normal);
                return true;
            }
            _ => {}
        }

        // Sixth: the urgent pointer (RFC 9293 section 3.10.7.4): RCV.UP <- max(RCV.UP,
        // SEG.UP), and the application learns of every advance (MUST-32). The data itself
        // stays inline (RFC 6093 section 3), so none of it is ever lost.
        if repr.flags.contains(Flags::URG) && self.state.may_receive() {
            self.receive_urgent_pointer(repr.seq_number + usize::from(repr.urgent_at));
        }

        // Seventh: segment text; eighth: FIN.
        if !payload.is_empty() || fin {
            // Trim what we already have (RFC 9293 section 3.10.7.4, "trim to window").
            let mut seq = repr.seq_number;
            if seq < self.rcv_nxt {
                let skip = (self.rcv_nxt - seq).min(payload.len());
                payload = &payload[skip..];
                seq += skip;
            }
            let room = self.rcv_adv.saturating_sub(seq);
            if payload.len() > room {
                payload = &payload[..room];
                fin = false;
            }
            self.receive_text_and_fin(now, seq, payload, fin);
        }
        true
    }

    /// Data and FIN processing: reassembly, acknowledgement policy, FIN transitions.
    fn receive_text_and_fin(&mut self, now: Instant, seq: SeqNumber, payload: &[u8], fin: bool) {
        if !payload.is_empty() {
            if self.flags.has(ConnFlags::APP_CLOSED) {
                // Nobody will read this: reset, as Linux does for data after close().
                self.queue_rst();
                self.finish(CloseReason::Aborted);
                return;
            }
            if !self.state.may_receive() {
                // Text after the peer's FIN: nothing to do with it.
                self.stats.dropped += 1;
                return;
            }
            self.last_activity = now;
            let before = self.rcv_nxt;
            let had_gap = self.recv.has_out_of_order();
            self.rcv_nxt =
                self.recv.insert(self.rcv_nxt, seq, payload, &mut self.stats.bytes_copied);
            self.stats.out_of_order_dropped = self.recv.out_of_order_dropped();
            if self.rcv_nxt == before {
                // Out of order: duplicate ACK at once, with SACK (RFC 5681 section 4.2).
                self.stats.out_of_order += 1;
                self.flags.set(ConnFlags::ACK_NOW);
            } else {
                self.stats.bytes_in += (self.rcv_nxt - before) as u64;
                self.events |= pending::READABLE;
                if had_gap {
                    // Filled (part of) a gap: ACK at once.
                    self.flags.set(ConnFlags::ACK_NOW);
                } else {
                    self.schedule_ack(now, payload.len());
                }
            }
        }
        if fin {
            self.fin_at = Some(seq + payload.len());
        }
        if let Some(fin_seq) = self.fin_at
            && fin_seq == self.rcv_nxt
            && self.state.may_receive()
        {
            self.fin_at = None;
            self.receive_fin(now);
        }
    }

    /// The peer's FIN is next in sequence: consume it (RFC 9293 section 3.10.7.4, eighth).
    fn receive_fin(&mut self, now: Instant) {
        self.rcv_nxt += 1;
        self.flags.set(ConnFlags::FIN_RECEIVED | ConnFlags::ACK_NOW);
        self.events |= pending::PEER_CLOSED;
        let fin_acked = self.fin_seq.is_some_and(|f| self.snd_una > f);
        match self.state {
            // Passive close: the peer is done sending; we may go on (half-close).
            State::SynReceived | State::Established => self.transition(State::CloseWait),
            // FIN+ACK covering our FIN: straight to TIME-WAIT, skipping FIN-WAIT-2.
            State::FinWait1 if fin_acked => self.enter_time_wait(now),
            // Simultaneous close: our FIN is not acknowledged yet.
            State::FinWait1 => self.transition(State::Closing),
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.transition(State::TimeWait);
        self.timers.stop_all();
        self.timers.set(Timer::Linger, now + self.config.time_wait());
        // Unread data stays readable during TIME-WAIT; everything else is given back.
        self.sb.release();
        self.release_empty_buffers();
    }

    /// Delayed ACK (RFC 9293 section 3.8.6.3): at least every second full segment, and
    /// within the delayed-ACK timeout. "Full" is measured against the peer's segment size
    /// as seen so far, as Linux does (`tcp_measure_rcv_mss` for the estimate,
    /// `__tcp_ack_snd_check` for the rule), not against our MSS: segments a little short of
    /// it (the peer's options, a smaller path MTU) count as full ones.
    fn schedule_ack(&mut self, now: Instant, len: usize) {
        if len > usize::from(self.rcv_mss) {
            self.rcv_mss = u16::try_from(len).unwrap_or(u16::MAX).min(self.local_mss());
        }
        if len >= usize::from(self.rcv_mss) {
            self.unacked_segments = self.unacked_segments.saturating_add(1);
        }
        if self.unacked_segments >= 2 || self.config.delayed_ack == Duration::ZERO {
            self.flags.set(ConnFlags::ACK_NOW);
        } else if !self.timers.is_set(Timer::DelayedAck) {
            self.timers.set(Timer::DelayedAck, now + self.config.delayed_ack);
        }
    }

    /// Answers an unacceptable RST, SYN or old ACK with an ACK (RFC 5961), at most once per
    /// `challenge_ack_interval` (section 7), so spoofed segments cannot make us reflect one
    /// ACK each.
    fn send_challenge_ack(&mut self, now: Instant) {
        self.stats.dropped += 1;
        if self.oow_ack_allowed(now) {
            self.stats.challenge_acks += 1;
            self.flags.set(ConnFlags::ACK_NOW);
        }
    }

    /// Answers an out-of-window segment, a PAWS failure or an ACK of unsent data with an
    /// ACK (RFC 9293 section 3.10.7.4, RFC 7323 section 5.3, RFC 5961 section 5.2). One
    /// without data shares the challenge-ACK limit (RFC 5961 section 7), as Linux's
    /// `tcp_oow_rate_limited`: two endpoints that disagree about the window would otherwise
    /// ACK each other's ACKs forever, and a spoofer could have us reflect one ACK per
    /// packet. One with data is always answered: it is likely a retransmission whose ACK was
    /// lost, and data is not part of an ACK loop.
    fn send_oow_ack(&mut self, now: Instant, has_data: bool) {
        if has_data || self.oow_ack_allowed(now) {
            self.flags.set(ConnFlags::ACK_NOW);
        } else {
            self.stats.acks_rate_limited += 1;
        }
    }

    /// Whether an ACK to an unacceptable segment may go out now, and if so records it.
    fn oow_ack_allowed(&mut self, now: Instant) -> bool {
        let interval = self.config.challenge_ack_interval;
        if self.last_oow_ack.is_some_and(|t| now.saturating_duration_since(t) < interval) {
            return false;
        }
        self.last_oow_ack = Some(now);
        true
    }

    /// RFC 9293 section 3.10.7.4, sixth step: the urgent pointer `up` arrived.
    fn receive_urgent_pointer(&mut self, up: SeqNumber) {
        let advanced = self.rcv_up.is_none_or(|old| up > old);
        if advanced && up > self.read_seq() {
            self.rcv_up = Some(up);
            self.events |= pending::URGENT;
        }
    }

    /// Sequence number of the next byte the application reads.
    fn read_seq(&self) -> SeqNumber {
        let fin = usize::from(self.flags.has(ConnFlags::FIN_RECEIVED));
        self.rcv_nxt - (self.recv.readable_len() + fin)
    }

    /// RFC 7323 section 4.3: remember the peer's TSval when the segment covers
    /// `Last.ACK.sent`.
    fn update_ts_recent(&mut self, now: Instant, repr: &TcpRepr, seg_len: usize) {
        if let (Some(ts), Some(theirs)) = (self.ts.as_mut(), repr.timestamp) {
            let end = repr.seq_number + seg_len;
            if repr.seq_number <= self.last_ack_sent && self.last_ack_sent <= end {
                ts.recent = theirs.tsval;
                ts.recent_at = now;
            }
        }
    }

    /// Any segment from the peer proves it alive.
    fn keepalive_heard(&mut self, now: Instant) {
        self.keepalive_probes = 0;
        self.arm_keepalive(now);
    }

    fn arm_keepalive(&mut self, now: Instant) {
        let ka = &self.config.keepalive;
        if ka.enabled
            && matches!(self.state, State::Established | State::CloseWait | State::FinWait2)
        {
            self.timers.set(Timer::Keepalive, now + ka.idle);
        }
        if let Some(idle) = self.config.idle_timeout {
            self.timers.set(Timer::Idle, self.last_activity + idle);
        }
    }

    // ---- timers ----

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.expire(now) {
            if self.state == State::Closed {
                return;
            }
            match timer {
                Timer::Retransmit => self.on_rtx_timer(now),
                Timer::Persist => self.on_persist_timeout(now),
                Timer::DelayedAck => self.flags.set(ConnFlags::ACK_NOW),
                Timer::Linger => match self.state {
                    // 2 MSL passed (RFC 9293 section 3.10.8).
                    State::TimeWait => self.finish(CloseReason::Normal),
                    // Orphaned FIN-WAIT-2 (Linux tcp_fin_timeout).
                    State::FinWait2 => self.finish(CloseReason::TimedOut),
                    _ => {}
                },
                Timer::Keepalive => self.on_keepalive_timeout(now),
                Timer::Idle => {
                    let Some(idle) = self.config.idle_timeout else { continue };
                    if now >= self.last_activity + idle {
                        self.abort_with(CloseReason::IdleTimeout);
                    } else {
                        self.timers.set(Timer::Idle, self.last_activity + idle);
                    }
                }
                Timer::Reclaim => {
                    // Lazily moved, as the idle timer: data since the buffer emptied
                    // pushes the deadline on.
                    let at = self.last_activity + self.config.buffer_reclaim_delay;
                    if now >= at {
                        self.release_empty_buffers();
                    } else if self.holds_empty_buffer() {
                        self.timers.set(Timer::Reclaim, at);
                    }
                }
            }
        }
    }

    /// RST and close with `reason`.
    fn abort_with(&mut self, reason: CloseReason) {
        self.queue_rst();
        self.finish(reason);
    }

    /// Keepalive: probe after `idle`, then every `interval`, reset after `probes` silent ones.
    fn on_keepalive_timeout(&mut self, now: Instant) {
        let ka = self.config.keepalive;
        if !ka.enabled
            || !matches!(self.state, State::Established | State::CloseWait | State::FinWait2)
        {
            return;
        }
        if self.snd_max != self.snd_una || !self.send.is_empty() {
            // Data is outstanding: the retransmission timer watches the peer.
            self.timers.set(Timer::Keepalive, now + ka.idle);
            return;
        }
        if u32::from(self.keepalive_probes) >= ka.probes {
            self.abort_with(CloseReason::KeepaliveTimeout);
            return;
        }
        self.keepalive_probes = self.keepalive_probes.saturating_add(1);
        self.flags.set(ConnFlags::KEEPALIVE_PROBE);
        self.timers.set(Timer::Keepalive, now + ka.interval);
    }
}
