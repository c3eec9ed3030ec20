//! Tunables of the engine. One [`Config`] is shared (behind an `Arc`) by every connection
//! of a table, so it costs a connection eight bytes.

use crate::time::Duration;

/// Which congestion controller a connection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CongestionAlgorithm {
    /// RFC 5681 slow start and congestion avoidance with RFC 6582 NewReno recovery.
    NewReno,
    /// RFC 9438 CUBIC window growth with the same loss recovery.
    #[default]
    Cubic,
}

/// TCP keepalive (RFC 9293 section 3.8.4; values as the seed and Linux use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Whether idle connections are probed at all.
    pub enabled: bool,
    /// Silence before the first probe (2 h).
    pub idle: Duration,
    /// Gap between unanswered probes (75 s).
    pub interval: Duration,
    /// Unanswered probes after which the connection is reset (10).
    pub probes: u32,
}

impl Default for KeepaliveConfig {
    fn default() -> KeepaliveConfig {
        KeepaliveConfig {
            enabled: true,
            idle: Duration::from_secs(2 * 60 * 60),
            interval: Duration::from_secs(75),
            probes: 10,
        }
    }
}

/// Engine configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Our maximum segment size over IPv4: what we announce, and the most we send.
    pub mss: u16,
    /// Our maximum segment size over IPv6 (20 bytes less per MTU: the IPv6 header is 40).
    pub mss_v6: u16,
    /// Most TIME-WAIT records a table holds; beyond it a connection that would enter
    /// TIME-WAIT ends at once, as Linux does past `tcp_max_tw_buckets` ("time wait bucket
    /// table overflow"): a peer that makes us close first cannot grow our memory for 2 MSL.
    pub max_time_wait: usize,
    /// Bytes the application may queue for sending (unacknowledged data included).
    pub send_buffer_size: usize,
    /// Bytes of received data we hold (in order and out of order); bounds our window.
    pub recv_buffer_size: usize,
    /// Most out-of-order ranges (runs of bytes with a gap before each) a connection keeps
    /// for reassembly; beyond it the highest range is dropped, as Linux prunes its
    /// out-of-order queue (see `conn/assembler.rs`). With the receive buffer, this bounds a
    /// connection's receive memory whatever order segments arrive in.
    pub reassembly_max_ranges: usize,
    /// Our window scale shift when we may choose it (active and ordinary passive open).
    pub window_scale: u8,
    /// Offer and use SACK (RFC 2018).
    pub sack: bool,
    /// Offer and use timestamps (RFC 7323).
    pub timestamps: bool,
    /// Maximum segment lifetime; TIME-WAIT lasts twice this (default 30 s).
    pub msl: Duration,
    /// Keepalive probing.
    pub keepalive: KeepaliveConfig,
    /// Close (with RST) a connection that has neither sent nor received data for this long.
    pub idle_timeout: Option<Duration>,
    /// After `close()`, how long FIN-WAIT-2 may last without the peer's FIN (Linux
    /// `tcp_fin_timeout`, 60 s).
    pub fin_wait_2_timeout: Duration,
    /// Nagle's algorithm (RFC 9293 section 3.7.4), in Minshall's variant as Linux: the
    /// default of every connection, which [`crate::Connection::set_nodelay`] changes.
    pub nagle: bool,
    /// Longest an ACK for in-order data is delayed (RFC 9293 section 3.8.6.3: under 500 ms).
    pub delayed_ack: Duration,
    /// Least time between two challenge ACKs of one connection (RFC 5961 section 7; Linux
    /// `tcp_invalid_ratelimit`, 500 ms): spoofed RSTs, SYNs or old ACKs against an open
    /// connection then draw at most one ACK per interval, not one per packet.
    pub challenge_ack_interval: Duration,
    /// Lower bound of the retransmission timeout (RFC 6298 says 1 s; Linux uses 200 ms).
    pub rto_min: Duration,
    /// Upper bound of the retransmission timeout.
    pub rto_max: Duration,
    /// Retransmission timeout before any RTT sample (RFC 6298: 1 s).
    pub rto_initial: Duration,
    /// Retransmissions of SYN or SYN-ACK before giving up (Linux `tcp_synack_retries` 5).
    pub syn_retries: u8,
    /// Retransmissions of data or FIN before giving up (Linux `tcp_retries2` 15: about
    /// 924 s with a 200 ms RTO), and unanswered zero-window probes before giving up.
    pub data_retries: u8,
    /// The same limits once the application closed the connection (an orphan): Linux
    /// `tcp_orphan_retries`, whose 0 means 8 (over 100 s with a 200 ms RTO), and no more
    /// once retransmissions or probes are `rto_max` apart.
    pub orphan_retries: u8,
    /// Congestion controller.
    pub congestion: CongestionAlgorithm,
    /// How long an emptied send or receive buffer is kept after the connection's last data
    /// before its memory is given back. Long enough that a steady transfer, whose buffers
    /// empty and refill every round trip, keeps them (no allocation per segment); short
    /// enough that an idle connection holds no buffer memory. Zero frees a buffer the
    /// moment it empties.
    pub buffer_reclaim_delay: Duration,
}

impl Config {
    /// Our maximum segment size on a connection of `tuple`'s address family.
    #[must_use]
    pub fn mss_for(&self, tuple: &crate::tuple::FourTuple) -> u16 {
        if tuple.remote.is_ipv4() { self.mss } else { self.mss_v6 }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mss: 1460,
            mss_v6: 1440,
            max_time_wait: 262_144,
            send_buffer_size: 256 * 1024,
            recv_buffer_size: 256 * 1024,
            reassembly_max_ranges: crate::conn::DEFAULT_REASSEMBLY_MAX_RANGES,
            window_scale: 7,
            sack: true,
            timestamps: true,
            msl: Duration::from_secs(30),
            keepalive: KeepaliveConfig::default(),
            idle_timeout: None,
            fin_wait_2_timeout: Duration::from_secs(60),
            nagle: true,
            delayed_ack: Duration::from_millis(40),
            challenge_ack_interval: Duration::from_millis(500),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(120),
            rto_initial: Duration::from_secs(1),
            syn_retries: 5,
            data_retries: 15,
            orphan_retries: 8,
            congestion: CongestionAlgorithm::default(),
            buffer_reclaim_delay: Duration::from_millis(200),
        }
    }
}

impl Config {
    /// TIME-WAIT duration: 2 MSL.
    #[must_use]
    pub fn time_wait(&self) -> Duration {
        self.msl * 2
    }
}
