//! The flow table (`SYNSHIELD_FLOWS`, an LRU hash map `FlowKey -> FlowValue`): connections whose
//! third ACK carried a valid cookie. The XDP program inserts them and redirects their segments
//! to userspace; userspace removes them when the connection is gone.
//!
//! # Size: evict, never refuse
//!
//! The map is an LRU hash (`BPF_MAP_TYPE_LRU_HASH`): an insert into a full map evicts the least
//! recently used entry instead of failing, so a full map never turns a new client away
//! silently. The loader sizes it at load time from what userspace promises to hold at once
//! ([`FlowTableSize::entries`]):
//!
//! ```text
//! entries = max_conns + max_time_wait + max_half_open + (possible CPUs + 1) * 128
//! ```
//!
//! - `max_conns` (`--max-conns`): live connections; userspace refuses new handshakes beyond it;
//! - `max_time_wait`: TIME-WAIT records, each still an entry (flag [`FlowValue::TIME_WAIT`]);
//! - `max_half_open`: stateful half-open connections (flag [`FlowValue::HALF_OPEN`]);
//! - the slack: the kernel's LRU keeps free entries in per-CPU lists (up to 128 each,
//!   `LOCAL_FREE_TARGET` in kernel/bpf/bpf_lru_list.c; since Linux 6.16, `target_free`, at most
//!   that) and starts evicting when its global free list runs short, while the other CPUs'
//!   lists may still hold free entries. With the slack, nothing is evicted while userspace
//!   stays within its three bounds, so `drop_flow_table_full` cannot happen before `--max-conns`
//!   is reached (and an LRU map returns that error only if it can find no entry to evict).
//!
//! An entry costs the kernel about 120 bytes (the element header, the 36-byte key and the
//! 28-byte value, each rounded up to 8) plus its hash bucket, all allocated at load time (an
//! LRU map is preallocated): about 25 MiB for the default `--max-conns 100000`.
//!
//! Eviction picks the least recently used entry (a lookup by the XDP program marks an entry
//! used; userspace's lookups do not): when userspace exceeds its bounds, idle entries (TIME-WAIT
//! records first, as nothing looks them up) go before busy ones. Userspace reconciles the map
//! with its connections, so an evicted entry is at worst a connection whose next segment
//! reaches no flow (dropped as an invalid ACK) and times out.

use crate::cookie::{TsOptions, ValidCookie};
use crate::wire::options::TcpOptions;

/// Entries of the flow table in the object: what a load without sizing (tests, benchmarks)
/// gets. The loader of `synshield serve` sets `max_entries` from [`FlowTableSize`].
pub const FLOW_TABLE_SIZE: u32 = 65536;

/// Free entries the kernel's LRU map may hold back per CPU (`LOCAL_FREE_TARGET`).
pub const LRU_PER_CPU_FREE: u32 = 128;

/// Half-open connections assumed when the caller sets no bound of its own.
pub const DEFAULT_MAX_HALF_OPEN: u32 = 4096;

/// What the flow table must hold at once, for [`FlowTableSize::entries`] (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTableSize {
    /// Live connections (`--max-conns`).
    pub max_conns: u32,
    /// TIME-WAIT records.
    pub max_time_wait: u32,
    /// Half-open (SYN-RECEIVED) connections of the stateful path.
    pub max_half_open: u32,
}

impl FlowTableSize {
    /// The table for `max_conns` live connections, as many TIME-WAIT records (a server that
    /// closes first holds one per connection it closed within 2 MSL) and
    /// [`DEFAULT_MAX_HALF_OPEN`] half-open ones.
    #[must_use]
    pub fn for_max_conns(max_conns: u32) -> FlowTableSize {
        FlowTableSize { max_conns, max_time_wait: max_conns, max_half_open: DEFAULT_MAX_HALF_OPEN }
    }

    /// `max_entries` of the map on a machine with `possible_cpus` CPUs (see the module docs),
    /// saturating at `u32::MAX` (the kernel then refuses the map: too much memory).
    #[must_use]
    pub fn entries(&self, possible_cpus: u32) -> u32 {
        let slack = possible_cpus.saturating_add(1).saturating_mul(LRU_PER_CPU_FREE);
        self.max_conns
            .saturating_add(self.max_time_wait)
            .saturating_add(self.max_half_open)
            .saturating_add(slack)
    }
}

/// Entries of the AF_XDP socket map (`SYNSHIELD_XSKS`): one per RX queue.
pub const MAX_RX_QUEUES: u32 = 64;

/// IPv4 addresses are stored as IPv4-mapped IPv6 addresses (RFC 4291 section 2.5.5.2), so one
/// map holds both families.
pub const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// A connection, seen from the shield: the peer (client) and our address and port.
/// 36 bytes without padding (a hash-map key is compared byte for byte).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// The peer's address, as on the wire (IPv4-mapped for IPv4).
    pub remote_addr: [u8; 16],
    /// Our address, as on the wire (IPv4-mapped for IPv4).
    pub local_addr: [u8; 16],
    /// The peer's port, in host byte order.
    pub remote_port: u16,
    /// Our port, in host byte order.
    pub local_port: u16,
}

impl FlowKey {
    /// The key of an IPv4 connection.
    #[inline(always)]
    #[must_use]
    pub fn v4(remote: [u8; 4], local: [u8; 4], remote_port: u16, local_port: u16) -> FlowKey {
        FlowKey {
            remote_addr: v4_mapped(remote),
            local_addr: v4_mapped(local),
            remote_port,
            local_port,
        }
    }

    /// The key of an IPv6 connection.
    #[inline(always)]
    #[must_use]
    pub fn v6(remote: [u8; 16], local: [u8; 16], remote_port: u16, local_port: u16) -> FlowKey {
        FlowKey { remote_addr: remote, local_addr: local, remote_port, local_port }
    }

    /// The key of an IPv6 connection, addresses as big-endian 64-bit halves.
    #[inline(always)]
    #[must_use]
    pub fn v6_words(
        remote: [u64; 2],
        local: [u64; 2],
        remote_port: u16,
        local_port: u16,
    ) -> FlowKey {
        let join = |a: [u64; 2]| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&a[0].to_be_bytes());
            b[8..].copy_from_slice(&a[1].to_be_bytes());
            b
        };
        FlowKey { remote_addr: join(remote), local_addr: join(local), remote_port, local_port }
    }

    /// Whether the addresses are IPv4 (mapped).
    #[must_use]
    pub fn is_v4(&self) -> bool {
        self.remote_addr[..12] == V4_MAPPED_PREFIX
    }
}

#[inline(always)]
fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]
}

/// What the third ACK and its cookie established. 28 bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    /// Our ISN (the cookie): the ACK acknowledged `server_isn + 1`.
    pub server_isn: u32,
    /// The peer's ISN: its ACK had `seq = client_isn + 1`.
    pub client_isn: u32,
    /// The peer's TSval on the third ACK (to echo), if [`FlowValue::TIMESTAMPS`].
    pub ts_recent: u32,
    /// Our TSval on the SYN-ACK (the ACK's TSecr): our later TSvals must not be smaller.
    pub ts_synack: u32,
    /// Offset of our timestamp clock for this connection: send `ts_clock(now) + ts_offset`.
    pub ts_offset: u32,
    /// MSS we may send with (from the cookie's class, within our clamp).
    pub mss: u16,
    /// The peer's window field on the third ACK (to be shifted by `peer_wscale`).
    pub peer_window: u16,
    /// The peer's window scale shift, or [`FlowValue::NO_WSCALE`].
    pub peer_wscale: u8,
    /// Our window scale shift (what the SYN-ACK offered); meaningful only if the peer's is set.
    pub local_wscale: u8,
    /// [`FlowValue::TIMESTAMPS`] | [`FlowValue::SACK`] | [`FlowValue::ECN`] (what the cookie
    /// negotiated, written by XDP), [`FlowValue::TIME_WAIT`] and [`FlowValue::HALF_OPEN`] (set
    /// and cleared by userspace).
    pub flags: u8,
    /// The RX queue whose AF_XDP socket owns the flow: written by XDP on insert (the queue the
    /// third ACK arrived on), rewritten by userspace if it moves the flow.
    pub queue: u8,
}

impl FlowValue {
    /// `peer_wscale` when window scaling is off.
    pub const NO_WSCALE: u8 = 0xff;
    /// Timestamps negotiated.
    pub const TIMESTAMPS: u8 = 1;
    /// SACK permitted.
    pub const SACK: u8 = 2;
    /// ECN negotiated.
    pub const ECN: u8 = 4;
    /// The connection is in TIME-WAIT (userspace sets and clears it): a third ACK with a valid
    /// cookie for this tuple reaches userspace as a reopen candidate (RFC 6191) rather than as
    /// a segment of the old connection.
    pub const TIME_WAIT: u8 = 0x80;
    /// A stateful handshake in progress (userspace sets and clears it): the entry of a
    /// half-open connection. The contract:
    ///
    /// - userspace inserts the entry, with this flag, when it answers a SYN statefully (a SYN
    ///   that reached it with `RxMeta` kind SYN), before the SYN-ACK leaves; its `queue` names
    ///   the shard that holds the half-open connection; the other fields are userspace's;
    /// - XDP sends every segment of the tuple to userspace as FLOW, as for an established
    ///   connection: the third ACK (which carries no cookie, so XDP could not validate it), and
    ///   a retransmitted SYN (the shard answers with its SYN-ACK again);
    /// - userspace clears the flag when the handshake completes, and removes the entry when
    ///   the half-open connection is dropped (retries exhausted, RST, timeout);
    /// - XDP never writes such an entry; it counts in the flow table's `max_half_open`.
    pub const HALF_OPEN: u8 = 0x40;

    /// The flow a valid cookie established (`queue` zero: the caller sets it). `timestamps` is the third ACK's (TSval, TSecr);
    /// without it, the connection has no timestamps, window scaling, SACK or ECN, as in Linux
    /// (`cookie_timestamp_decode`).
    #[inline(always)]
    #[must_use]
    pub fn from_cookie(
        cookie: &ValidCookie,
        ack_seq: u32,
        ack_ack: u32,
        peer_window: u16,
        timestamps: Option<(u32, u32)>,
        local_wscale: u8,
    ) -> FlowValue {
        let (opts, ts_recent, ts_synack, mut flags) = match timestamps {
            Some((val, ecr)) => (
                crate::cookie::decode_tsecr(ecr, cookie.ts_offset),
                val,
                ecr,
                FlowValue::TIMESTAMPS,
            ),
            None => (TsOptions::default(), 0, 0, 0),
        };
        if opts.sack {
            flags |= FlowValue::SACK;
        }
        if opts.ecn {
            flags |= FlowValue::ECN;
        }
        FlowValue {
            server_isn: ack_ack.wrapping_sub(1),
            client_isn: ack_seq.wrapping_sub(1),
            ts_recent,
            ts_synack,
            ts_offset: cookie.ts_offset,
            mss: cookie.mss,
            peer_window,
            peer_wscale: opts.wscale.unwrap_or(FlowValue::NO_WSCALE),
            local_wscale: if opts.wscale.is_some() { local_wscale } else { 0 },
            flags,
            queue: 0,
        }
    }

    /// What a SYN offered, for userspace to answer it statefully (`RxMeta` kind SYN): its
    /// ISN (`client_isn`), window, options as they were (no configuration applied: the shard
    /// applies its own) and the RX queue. `server_isn`, `ts_synack`, `ts_offset` and
    /// `local_wscale` are zero: userspace chooses them.
    ///
    /// - `mss`: the SYN's MSS option, 0 if it had none;
    /// - `peer_wscale`: its window scale option (clamped to 14), or [`FlowValue::NO_WSCALE`];
    /// - `ts_recent`: its TSval, with [`FlowValue::TIMESTAMPS`];
    /// - flags [`FlowValue::SACK`] for SACK-permitted, [`FlowValue::ECN`] for an ECN setup SYN
    ///   (ECE and CWR, RFC 3168 section 6.1.1).
    #[inline(always)]
    #[must_use]
    pub fn syn_offer(
        seq: u32,
        window: u16,
        opts: &TcpOptions,
        ecn_setup: bool,
        queue: u8,
    ) -> FlowValue {
        let mut flags = 0;
        let mut ts_recent = 0;
        if let Some(ts) = opts.timestamps() {
            flags |= FlowValue::TIMESTAMPS;
            ts_recent = ts.tsval;
        }
        if opts.sack_permitted() {
            flags |= FlowValue::SACK;
        }
        if ecn_setup {
            flags |= FlowValue::ECN;
        }
        FlowValue {
            server_isn: 0,
            client_isn: seq,
            ts_recent,
            ts_synack: 0,
            ts_offset: 0,
            mss: opts.mss().unwrap_or_default(),
            peer_window: window,
            peer_wscale: match opts.wscale() {
                Some(w) => w,
                None => FlowValue::NO_WSCALE,
            },
            local_wscale: 0,
            flags,
            queue,
        }
    }

    /// The options as the cookie carried them.
    #[must_use]
    pub fn ts_options(&self) -> TsOptions {
        TsOptions {
            wscale: (self.peer_wscale != FlowValue::NO_WSCALE).then_some(self.peer_wscale),
            sack: self.flags & FlowValue::SACK != 0,
            ecn: self.flags & FlowValue::ECN != 0,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers only, no padding (36 bytes, alignment 2).
unsafe impl aya::Pod for FlowKey {}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers only, no padding (28 bytes, alignment 4).
unsafe impl aya::Pod for FlowValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<FlowKey>(), 36);
        assert_eq!(core::mem::size_of::<FlowValue>(), 28);
    }

    #[test]
    fn table_size_covers_live_time_wait_half_open_and_the_lru_slack() {
        let s = FlowTableSize { max_conns: 1000, max_time_wait: 200, max_half_open: 30 };
        assert_eq!(s.entries(2), 1000 + 200 + 30 + 3 * 128);
        let d = FlowTableSize::for_max_conns(100_000);
        assert_eq!(d.entries(4), 200_000 + DEFAULT_MAX_HALF_OPEN + 5 * 128);
        assert_eq!(FlowTableSize::for_max_conns(u32::MAX).entries(8), u32::MAX);
    }

    #[test]
    fn a_syn_offer_is_the_syn_as_it_was() {
        let o = TcpOptions::new(
            Some(1460),
            Some(200),
            true,
            Some(crate::wire::TcpTimestamp { tsval: 77, tsecr: 0 }),
        );
        let v = FlowValue::syn_offer(1000, 64240, &o, true, 3);
        assert_eq!((v.client_isn, v.peer_window, v.mss, v.peer_wscale), (1000, 64240, 1460, 14));
        assert_eq!((v.ts_recent, v.queue, v.server_isn), (77, 3, 0));
        assert_eq!(v.flags, FlowValue::TIMESTAMPS | FlowValue::SACK | FlowValue::ECN);
        let bare = FlowValue::syn_offer(5, 1, &TcpOptions::default(), false, 0);
        assert_eq!((bare.mss, bare.peer_wscale, bare.flags), (0, FlowValue::NO_WSCALE, 0));
        assert_eq!(bare.flags & (FlowValue::HALF_OPEN | FlowValue::TIME_WAIT), 0);
    }

    #[test]
    fn v4_is_mapped() {
        let k = FlowKey::v4([10, 0, 0, 2], [10, 0, 0, 1], 40000, 80);
        assert!(k.is_v4());
        assert_eq!(k.remote_addr[12..], [10, 0, 0, 2]);
    }

    #[test]
    fn without_timestamps_nothing_is_negotiated() {
        let c = ValidCookie { mss: 1460, mss_index: 3, ts_offset: 99 };
        let v = FlowValue::from_cookie(&c, 1001, 5001, 512, None, 7);
        assert_eq!((v.client_isn, v.server_isn, v.mss), (1000, 5000, 1460));
        assert_eq!(v.ts_options(), TsOptions::default());
        assert_eq!((v.flags, v.local_wscale), (0, 0));
    }

    #[test]
    fn with_timestamps_options_come_from_tsecr() {
        let c = ValidCookie { mss: 536, mss_index: 0, ts_offset: 1_000_000 };
        let o = TsOptions { wscale: Some(9), sack: true, ecn: false };
        let tsval = crate::cookie::encode_tsval(5000, c.ts_offset, o);
        let v = FlowValue::from_cookie(&c, 1, 1, 100, Some((77, tsval)), 7);
        assert_eq!(v.ts_options(), o);
        assert_eq!((v.ts_recent, v.ts_synack, v.local_wscale), (77, tsval, 7));
        assert_eq!(v.flags, FlowValue::TIMESTAMPS | FlowValue::SACK);
    }
}
