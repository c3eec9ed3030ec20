//! The SYN cookie: our initial sequence number is a MAC over the connection, so answering a SYN
//! needs no state, and the third ACK proves that its sender saw our SYN-ACK.
//!
//! One implementation, three users: the XDP program makes cookies (SYN path) and checks them
//! (ACK path), userspace checks them in tests, and the property tests below pin the behaviour.
//!
//! # Bit layout of the cookie (our ISN)
//!
//! ```text
//!   31   30   29  28  27                                                   0
//! +----+----+-------+-------------------------------------------------------+
//! | K  | T  |  MSS  |                  MAC (28 bits)                         |
//! +----+----+-------+-------------------------------------------------------+
//!
//! h   = SipHash-1-3(keys[K], client addr | server addr | client port | server port
//!                            | client ISN | time counter)           (64 bits)
//! K   = key slot that made the cookie        (Config keys[K]; see "Keys" below)
//! T   = time counter & 1                     (tells the checker which counter to use)
//! MSS = MSS class index XOR h[28..30]        (index into MSS_TABLE_V4 / MSS_TABLE_V6)
//! MAC = h[0..28]
//!
//! TS offset = h[32..64]: added to our TSval, so the timestamp clock seen by each peer starts
//!             at a random point (RFC 7323 section 7.1), and subtracted from TSecr on the ACK.
//! ```
//!
//! `K` and `T` are in clear because the checker needs them to pick the key and the counter
//! before it can compute `h`: that is what makes checking cost exactly one hash, on the ACK
//! path as on the SYN path. One bit of counter is enough: a cookie is valid for the current
//! and the previous counter period only, and the counter is 32 bits inside the MAC, so a
//! cookie from period `c - 2` that shows the parity of `c` is checked against `c` and fails.
//! The MSS class is not in the MAC, only whitened: a peer that flips those bits in its own
//! cookie gets another MSS class on its own connection, which it could have asked for in its
//! SYN (Linux's cookie has the same property: its MSS index is recovered by subtraction).
//!
//! # Probability that a forged ACK is accepted
//!
//! For any ACK, the checker derives exactly one candidate (key `K`, counter from `T`) and
//! accepts iff 28 bits of a keyed PRF match, so a forger who has not seen our SYN-ACK succeeds
//! with probability 2^-28 (about 3.7e-9) per ACK, whatever it puts in `K`, `T` and `MSS`.
//! At 1 M forged ACKs per second that is one accepted ACK every 268 s on average; each costs
//! one flow-table entry and a hand-off to userspace, which times the half-open flow out.
//! (Linux's cookie, `net/ipv4/syncookies.c`, accepts a random ACK with about
//! 2/256 * 4/2^24 = 2^-29.) Seeing cookies for its own address does not help a forger with
//! another tuple: SipHash is a PRF under the secret key.
//!
//! Unpredictability (RFC 6528): 30 of the 32 bits look random to an off-path observer; `K`
//! and `T` follow the key rotation and the clock, which are public in coarse terms.
//!
//! # Why SipHash-1-3 over a 20-byte (IPv4) or 44-byte (IPv6) message
//!
//! The message is packed into 64-bit words (addresses, then ports and client ISN, then the
//! 32-bit counter). SipHash handles a tail of up to 7 bytes in the length block for free, so
//! the IPv4 message costs 3 compressions, the same as a bare 16-byte block would. SipHash-1-3
//! (one round per word, three to finalize) is what Rust's `std` and Linux's `hsiphash` use
//! against hash flooding: half the rounds of SipHash-2-4 on the SYN path, which is the path a
//! flood exercises. The MAC is truncated to 28 bits and the key rotates hourly, so a forger's
//! best strategy is guessing (2^-28 above), not attacking the PRF; no attack on SipHash-1-3
//! that recovers the key or forges better than guessing is known.
//!
//! # Keys
//!
//! [`CookieSecrets`] holds two 128-bit keys and the slot of the current one. Rotation is done
//! in two map updates so that the XDP program, which may read the map while userspace writes
//! it, never makes a cookie with a half-written key: [`CookieSecrets::install_next_key`]
//! writes the new key into the other slot (retiring the previous key, whose cookies are older
//! than one rotation period and so expired by the counter already), and
//! [`CookieSecrets::activate_next_key`], a moment later, flips the slot. The previous key
//! stays valid for one rotation, as long as the rotation period is at least two counter
//! periods ([`MIN_KEY_ROTATION_PERIODS`]).
//!
//! # Fleet schedule
//!
//! Hosts behind ECMP share one key schedule (`synshield serve --key-file`; `FleetKeeper` in
//! `tcp-user/src/secrets.rs`, the key file in `keyfile.rs`), so any of them checks a cookie any
//! other made; they agree without talking, through their wall clocks, which may disagree by
//! some skew. With
//! [`CookieSecrets::schedule`] = [`CookieSecrets::FLEET`], userspace keeps:
//!
//! ```text
//!   counter  = UNIX seconds / (R / 2)        half-epochs; R = key rotation period
//!   epoch    = counter >> 1                  key of epoch e = HKDF(secret, e), in slot e & 1
//!   current  = epoch & 1                     so K = bit 1 of the counter, T = bit 0
//!   other slot: key of epoch - 1 in the first half of an epoch, of epoch + 1 in the second
//! ```
//!
//! so the two clear bits `K T` are the counter modulo 4, and the checker takes the one counter
//! of that residue among `{c - 1, c, c + 1, c + 2}` (`c` its own counter): still one hash.
//! `c - 1 ..= c + 1` always finds its key in the slots (first half: epochs `e - 1, e`;
//! second half: `e, e + 1`), `c + 2` only in the second half. Two hosts whose clocks differ
//! by less than `R / 2` are at most one half-epoch apart, so a cookie from either is accepted
//! by the other while it is less than `R / 2 - skew` old; with no skew a cookie lives `R / 2`
//! to `R`, and a counter of `c - 2` or older never passes (its residue names `c + 2`, whose
//! MAC input differs). The forgery bound stays 2^-28 per ACK: one candidate per ACK.
//!
//! The TSval's clock must not go backwards when a connection moves to another host (the
//! client's PAWS check, RFC 7323 section 5, would drop every segment of the new host), so in
//! a fleet each host adds [`CookieSecrets::ts_base`] (its wall clock minus its monotonic clock,
//! in milliseconds) to every connection's timestamp offset: the hosts' timestamp clocks then
//! agree as their wall clocks do. It is a multiple of 64 so that the options kept in the
//! TSval's low six bits decode on any host.

use core::hash::Hasher as _;

use siphasher::sip::SipHasher13;

/// Valid MSS values of an IPv4 cookie, from Linux `net/ipv4/syncookies.c` (`msstab`): the
/// RFC 1122 minimum 536, then 1300, 1440 (PPPoE and tunnels) and 1460 (Ethernet, 1500 - 40).
pub const MSS_TABLE_V4: [u16; 4] = [536, 1300, 1440, 1460];

/// Valid MSS values of an IPv6 cookie, from Linux `net/ipv6/syncookies.c` (`msstab`): MTUs
/// of 1280 (the IPv6 minimum), 1480, 1500 and 9000 (jumbo), minus 60 bytes of headers.
pub const MSS_TABLE_V6: [u16; 4] = [1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60];

/// MSS assumed for an IPv4 peer that sends no MSS option (RFC 9293 section 3.7.1).
pub const DEFAULT_MSS_V4: u16 = 536;
/// MSS assumed for an IPv6 peer that sends no MSS option (RFC 9293 section 3.7.1).
pub const DEFAULT_MSS_V6: u16 = 1220;

/// A rotation period must be at least this many counter periods, so that a key is never
/// overwritten while a cookie it made is still within its two valid counter periods.
pub const MIN_KEY_ROTATION_PERIODS: u32 = 2;

/// Default length of one time-counter period, in seconds: a cookie is valid for 64 to 128 s.
pub const DEFAULT_COUNTER_PERIOD_SECS: u64 = 64;

/// Default key rotation period, in seconds.
pub const DEFAULT_KEY_ROTATION_SECS: u64 = 3600;

const KEY_BIT: u32 = 31;
const COUNTER_BIT: u32 = 30;
const MSS_SHIFT: u32 = 28;
const MAC_MASK: u32 = (1 << MSS_SHIFT) - 1;

/// One 128-bit SipHash key, as its two 64-bit halves (`k0`, `k1` of the SipHash paper).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CookieKey {
    pub k0: u64,
    pub k1: u64,
}

impl CookieKey {
    /// The key from 16 random bytes (little-endian halves, as `SipHasher::new_with_key`).
    #[must_use]
    pub fn from_bytes(b: [u8; 16]) -> CookieKey {
        let mut k0 = [0; 8];
        let mut k1 = [0; 8];
        k0.copy_from_slice(&b[..8]);
        k1.copy_from_slice(&b[8..]);
        CookieKey { k0: u64::from_le_bytes(k0), k1: u64::from_le_bytes(k1) }
    }
}

/// The secrets part of [`crate::Config`]: two key slots, which one is current, and the time
/// counter. Userspace writes it; the XDP program only reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CookieSecrets {
    /// Slot 0 and slot 1. `keys[current]` makes cookies; both check them.
    pub keys: [CookieKey; 2],
    /// Slot of the current key; only its lowest bit is used.
    pub current: u32,
    /// Seconds of `CLOCK_MONOTONIC` divided by the counter period, written by userspace; in
    /// the fleet schedule, UNIX seconds divided by half the key rotation period.
    pub counter: u32,
    /// Milliseconds added to every connection's timestamp offset: 0 on one host; in the fleet
    /// schedule the host's wall clock minus its monotonic clock, a multiple of 64 (see
    /// "Fleet schedule").
    pub ts_base: u32,
    /// [`CookieSecrets::HOST`] or [`CookieSecrets::FLEET`]: whether the key bit `K` is also bit
    /// 1 of the time counter (only the lowest bit is used).
    pub schedule: u32,
}

/// The connection a cookie is bound to, as the client's SYN carried it (client -> server).
pub trait CookieTuple {
    /// Feeds the addresses and ports to the hash, in a fixed order of 64-bit words.
    fn write_to(&self, h: &mut SipHasher13, client_isn: u32);
    /// The MSS table of the address family.
    fn mss_table(&self) -> &'static [u16; 4];
}

/// An IPv4 connection: addresses as on the wire, ports in host byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TupleV4 {
    pub client: [u8; 4],
    pub server: [u8; 4],
    pub client_port: u16,
    pub server_port: u16,
}

/// An IPv6 connection: each address as two big-endian 64-bit halves (kept in registers by the
/// XDP program, where 16-byte arrays cost stack), ports in host byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TupleV6 {
    pub client: [u64; 2],
    pub server: [u64; 2],
    pub client_port: u16,
    pub server_port: u16,
}

impl TupleV6 {
    /// The tuple from addresses as on the wire.
    #[must_use]
    pub fn new(client: [u8; 16], server: [u8; 16], client_port: u16, server_port: u16) -> TupleV6 {
        TupleV6 {
            client: split_be_u64(&client),
            server: split_be_u64(&server),
            client_port,
            server_port,
        }
    }
}

#[inline(always)]
fn ports_and_isn(client_port: u16, server_port: u16, client_isn: u32) -> u64 {
    (u64::from(client_port) << 48) | (u64::from(server_port) << 32) | u64::from(client_isn)
}

impl CookieTuple for TupleV4 {
    #[inline(always)]
    fn write_to(&self, h: &mut SipHasher13, client_isn: u32) {
        let c = u32::from_be_bytes(self.client);
        let s = u32::from_be_bytes(self.server);
        h.write_u64((u64::from(c) << 32) | u64::from(s));
        h.write_u64(ports_and_isn(self.client_port, self.server_port, client_isn));
    }

    #[inline(always)]
    fn mss_table(&self) -> &'static [u16; 4] {
        &MSS_TABLE_V4
    }
}

impl CookieTuple for TupleV6 {
    #[inline(always)]
    fn write_to(&self, h: &mut SipHasher13, client_isn: u32) {
        h.write_u64(self.client[0]);
        h.write_u64(self.client[1]);
        h.write_u64(self.server[0]);
        h.write_u64(self.server[1]);
        h.write_u64(ports_and_isn(self.client_port, self.server_port, client_isn));
    }

    #[inline(always)]
    fn mss_table(&self) -> &'static [u16; 4] {
        &MSS_TABLE_V6
    }
}

/// An IPv6 address as two big-endian 64-bit halves.
#[inline(always)]
#[must_use]
pub fn split_be_u64(a: &[u8; 16]) -> [u64; 2] {
    let hi = u64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let lo = u64::from_be_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    [hi, lo]
}

/// What answering a SYN produces: our ISN and the offset to add to our TSval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynCookie {
    /// Our initial sequence number (the SYN-ACK's `seq`).
    pub isn: u32,
    /// Per-connection offset of our timestamp clock.
    pub ts_offset: u32,
}

/// What a valid cookie tells about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidCookie {
    /// The MSS we may send with (a value of the family's MSS table).
    pub mss: u16,
    /// Index of `mss` in the table.
    pub mss_index: u8,
    /// Per-connection offset of our timestamp clock (the same as when the cookie was made).
    pub ts_offset: u32,
}

/// Why a cookie was refused. The two are indistinguishable without a second hash (a cookie
/// from an expired period or an overwritten key fails its MAC like a forged one), and an ACK
/// flood would make us pay for it, so there is one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieError {
    /// The MAC does not match: forged, expired, or made with a retired key.
    BadMac,
}

impl core::fmt::Display for CookieError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CookieError::BadMac => f.write_str("cookie MAC mismatch (forged, expired or old key)"),
        }
    }
}

/// Index of the largest MSS table entry not above `mss` (index 0 if `mss` is below them all,
/// as Linux does: the table's first entry is the protocol minimum). Branch-free, as the
/// table is sorted.
#[inline(always)]
#[must_use]
pub fn mss_index(table: &[u16; 4], mss: u16) -> u8 {
    u8::from(mss >= table[1]) + u8::from(mss >= table[2]) + u8::from(mss >= table[3])
}

#[inline(always)]
fn mac<T: CookieTuple>(key: &CookieKey, counter: u32, tuple: &T, client_isn: u32) -> u64 {
    let mut h = SipHasher13::new_with_keys(key.k0, key.k1);
    tuple.write_to(&mut h, client_isn);
    h.write_u32(counter);
    h.finish()
}

impl CookieSecrets {
    /// [`CookieSecrets::schedule`]: keys and counter of one host (`K` is only the key slot).
    pub const HOST: u32 = 0;
    /// [`CookieSecrets::schedule`]: the fleet's wall-clock schedule (`K T` is the counter
    /// modulo 4; see "Fleet schedule").
    pub const FLEET: u32 = 1;

    /// Makes the cookie for a SYN with the given client ISN, for the MSS class `mss_index`
    /// (from [`mss_index`]; only its two low bits are used).
    #[inline(always)]
    #[must_use]
    #[expect(clippy::cast_possible_truncation, reason = "the hash is split into halves")]
    pub fn make<T: CookieTuple>(&self, tuple: &T, client_isn: u32, mss_index: u8) -> SynCookie {
        let slot = self.current & 1;
        let counter = self.counter;
        let h = mac(&self.keys[slot as usize], counter, tuple, client_isn);
        let h_lo = h as u32;
        let mss_bits = (u32::from(mss_index) ^ (h_lo >> MSS_SHIFT)) & 3;
        let isn = (slot << KEY_BIT)
            | ((counter & 1) << COUNTER_BIT)
            | (mss_bits << MSS_SHIFT)
            | (h_lo & MAC_MASK);
        SynCookie { isn, ts_offset: ((h >> 32) as u32).wrapping_add(self.ts_base) }
    }

    /// Checks `cookie` (the ACK's `ack - 1`) for the connection whose client ISN was
    /// `client_isn` (the ACK's `seq - 1`). Valid for the current and the previous counter
    /// period, under either key slot; in the fleet schedule, for the previous, current and
    /// next counter period (see "Fleet schedule").
    #[inline(always)]
    #[expect(clippy::cast_possible_truncation, reason = "the hash is split into halves")]
    pub fn check<T: CookieTuple>(
        &self,
        tuple: &T,
        client_isn: u32,
        cookie: u32,
    ) -> Result<ValidCookie, CookieError> {
        let clear = cookie >> COUNTER_BIT; // K T
        let slot = clear >> 1;
        // The clear bits that carry the counter: T (0b01) on one host, K T (0b11) in a fleet.
        let bits = 1 | ((self.schedule & 1) << 1);
        // The counter congruent to them among {now - 1, now} (one host) or
        // {now - 1, ..., now + 2} (fleet). Branch-free: the same instructions either way.
        let counter = self
            .counter
            .wrapping_sub(1)
            .wrapping_add(clear.wrapping_sub(self.counter).wrapping_add(1) & bits);
        let h = mac(&self.keys[slot as usize], counter, tuple, client_isn);
        let h_lo = h as u32;
        if (cookie ^ h_lo) & MAC_MASK != 0 {
            return Err(CookieError::BadMac);
        }
        let mss_index = ((cookie ^ h_lo) >> MSS_SHIFT) & 3;
        Ok(ValidCookie {
            mss: tuple.mss_table()[mss_index as usize],
            mss_index: mss_index as u8,
            ts_offset: ((h >> 32) as u32).wrapping_add(self.ts_base),
        })
    }

    /// Rotation, step 1: writes `key` into the slot that is not current. Cookies of the key
    /// it replaces are older than a rotation period, hence expired.
    pub fn install_next_key(&mut self, key: CookieKey) {
        self.keys[((self.current ^ 1) & 1) as usize] = key;
    }

    /// Rotation, step 2 (after the map update of step 1 is visible): the new key becomes
    /// current and the old current key stays valid for checking.
    pub fn activate_next_key(&mut self) {
        self.current = (self.current ^ 1) & 1;
    }

    /// The key that makes cookies now.
    #[must_use]
    pub fn current_key(&self) -> CookieKey {
        self.keys[(self.current & 1) as usize]
    }
}

/// The time counter for `monotonic_secs` seconds of `CLOCK_MONOTONIC` and a period of
/// `period_secs` (at least 1). Truncated to 32 bits; only differences matter.
#[must_use]
#[expect(clippy::cast_possible_truncation, reason = "the counter wraps; only differences matter")]
pub fn counter_at(monotonic_secs: u64, period_secs: u64) -> u32 {
    (monotonic_secs / period_secs.max(1)) as u32
}

/// TCP options negotiated through the low bits of our TSval (Linux `cookie_init_timestamp`
/// in `net/ipv4/syncookies.c`). Without timestamps there is nowhere to keep them, and the
/// connection has no window scaling, no SACK and no ECN, as in Linux.
///
/// ```text
///  TSval - ts_offset, low 6 bits:
///    5     4     3       0
///  +-----+------+---------+
///  | ECN | SACK | WSCALE  |   WSCALE = peer's shift 0..=14, or 15 = no window scaling
///  +-----+------+---------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TsOptions {
    /// The peer's window scale shift (its SYN's option, at most 14), if scaling is on.
    pub wscale: Option<u8>,
    /// SACK permitted on this connection.
    pub sack: bool,
    /// ECN negotiated on this connection.
    pub ecn: bool,
}

/// Number of low TSval bits that carry [`TsOptions`].
pub const TS_OPTION_BITS: u32 = 6;
const TS_WSCALE_MASK: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;
const TS_ECN: u32 = 1 << 5;
/// Largest window scale shift (RFC 7323 section 2.3).
pub const MAX_WSCALE: u8 = 14;

impl TsOptions {
    /// The 6-bit encoding.
    #[inline(always)]
    #[must_use]
    pub fn bits(self) -> u32 {
        let ws = match self.wscale {
            Some(s) if s <= MAX_WSCALE => u32::from(s),
            Some(_) => u32::from(MAX_WSCALE),
            None => TS_WSCALE_MASK,
        };
        ws | if self.sack { TS_SACK } else { 0 } | if self.ecn { TS_ECN } else { 0 }
    }

    /// From the 6-bit encoding.
    #[inline(always)]
    #[must_use]
    pub fn from_bits(bits: u32) -> TsOptions {
        let ws = bits & TS_WSCALE_MASK;
        TsOptions {
            wscale: if ws == TS_WSCALE_MASK { None } else { Some(ws as u8) },
            sack: bits & TS_SACK != 0,
            ecn: bits & TS_ECN != 0,
        }
    }
}

/// Our TSval for the SYN-ACK: the clock `now_ts` (milliseconds) rounded down to 64 with the
/// options in the low bits, never ahead of the clock (so the next TSval the connection sends,
/// from the clock, is not smaller), plus the connection's offset.
#[inline(always)]
#[must_use]
pub fn encode_tsval(now_ts: u32, ts_offset: u32, options: TsOptions) -> u32 {
    let bits = options.bits();
    let mut ts = (now_ts & !((1 << TS_OPTION_BITS) - 1)) | bits;
    if bits > now_ts & ((1 << TS_OPTION_BITS) - 1) {
        ts = ts.wrapping_sub(1 << TS_OPTION_BITS);
    }
    ts.wrapping_add(ts_offset)
}

/// The options our SYN-ACK's TSval carried, from the TSecr the peer echoes on its ACK.
#[inline(always)]
#[must_use]
pub fn decode_tsecr(tsecr: u32, ts_offset: u32) -> TsOptions {
    TsOptions::from_bits(tsecr.wrapping_sub(ts_offset) & ((1 << TS_OPTION_BITS) - 1))
}

/// Our timestamp clock: milliseconds of `CLOCK_MONOTONIC`, truncated to 32 bits, as Linux's
/// `tcp_ns_to_ts`. Add the connection's `ts_offset`. The XDP program feeds it
/// `CLOCK_MONOTONIC_COARSE` (`bpf_ktime_get_coarse_ns`, cheaper, at most a tick behind), so the
/// TSvals userspace sends later from `CLOCK_MONOTONIC` never go backwards.
#[inline(always)]
#[must_use]
#[expect(clippy::cast_possible_truncation, reason = "TCP timestamps wrap (RFC 7323)")]
pub fn ts_clock(monotonic_ns: u64) -> u32 {
    (monotonic_ns / 1_000_000) as u32
}

#[cfg(test)]
#[expect(clippy::cast_possible_truncation, reason = "test data")]
mod tests {
    extern crate std;

    use proptest::prelude::*;

    use super::*;

    const KEY_A: CookieKey = CookieKey { k0: 0x0706_0504_0302_0100, k1: 0x0f0e_0d0c_0b0a_0908 };
    const KEY_B: CookieKey = CookieKey { k0: 0xdead_beef_0000_0001, k1: 0x1234_5678_9abc_def0 };

    fn secrets(counter: u32) -> CookieSecrets {
        CookieSecrets { keys: [KEY_A, KEY_B], current: 0, counter, ..CookieSecrets::default() }
    }

    const V4: TupleV4 = TupleV4 {
        client: [10, 0, 0, 2],
        server: [10, 0, 0, 1],
        client_port: 40000,
        server_port: 80,
    };

    fn v6() -> TupleV6 {
        TupleV6::new(
            "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            40000,
            443,
        )
    }

    /// The hash is SipHash-1-3 of the documented byte string: pin it against the byte-wise
    /// `write` of siphasher, so the word packing is exactly what the docs say.
    #[test]
    fn mac_is_siphash13_of_documented_message() {
        let mut msg = std::vec::Vec::new();
        msg.extend_from_slice(&u64::from_be_bytes([10, 0, 0, 2, 10, 0, 0, 1]).to_le_bytes());
        msg.extend_from_slice(&((40000u64 << 48) | (80u64 << 32) | 0x1122_3344).to_le_bytes());
        msg.extend_from_slice(&7u32.to_le_bytes());
        let mut h = SipHasher13::new_with_keys(KEY_A.k0, KEY_A.k1);
        h.write(&msg);
        assert_eq!(mac(&KEY_A, 7, &V4, 0x1122_3344), h.finish());
    }

    #[test]
    fn siphash13_reference_vector() {
        // Reference SipHash-1-3 output for the key 00..0f and the empty message, from the
        // SipHash authors' `vectors.h` (as also checked by Rust's libcore tests).
        let h = SipHasher13::new_with_keys(KEY_A.k0, KEY_A.k1);
        assert_eq!(h.finish(), 0xabac_0158_050f_c4dc);
    }

    #[test]
    fn mss_index_picks_largest_entry_not_above() {
        let t = &MSS_TABLE_V4;
        assert_eq!(mss_index(t, 0), 0);
        assert_eq!(mss_index(t, 536), 0);
        assert_eq!(mss_index(t, 1299), 0);
        assert_eq!(mss_index(t, 1300), 1);
        assert_eq!(mss_index(t, 1460), 3);
        assert_eq!(mss_index(t, 9000), 3);
        assert_eq!(mss_index(&MSS_TABLE_V6, 1440), 2);
        assert_eq!(mss_index(&MSS_TABLE_V6, 8960), 3);
    }

    #[test]
    fn cookie_valid_now_and_in_next_period_only() {
        let c = secrets(100).make(&V4, 1000, 3);
        assert_eq!(secrets(100).check(&V4, 1000, c.isn).unwrap().mss, 1460);
        assert_eq!(secrets(101).check(&V4, 1000, c.isn).unwrap().ts_offset, c.ts_offset);
        assert_eq!(secrets(102).check(&V4, 1000, c.isn), Err(CookieError::BadMac));
        assert_eq!(secrets(99).check(&V4, 1000, c.isn), Err(CookieError::BadMac));
    }

    #[test]
    fn counter_wraps() {
        let c = secrets(u32::MAX).make(&V4, 1, 0);
        assert!(secrets(0).check(&V4, 1, c.isn).is_ok());
    }

    #[test]
    fn rotation_keeps_previous_key_for_one_rotation() {
        let mut s = secrets(5);
        let before = s.make(&V4, 9, 1);
        s.install_next_key(KEY_B);
        // Between the two steps, the current key still makes and checks cookies.
        assert!(s.check(&V4, 9, before.isn).is_ok());
        s.activate_next_key();
        let after = s.make(&V4, 9, 1);
        assert_ne!(before.isn >> KEY_BIT, after.isn >> KEY_BIT);
        assert!(s.check(&V4, 9, before.isn).is_ok(), "previous key still checks");
        assert!(s.check(&V4, 9, after.isn).is_ok());
        s.install_next_key(CookieKey { k0: 1, k1: 2 });
        s.activate_next_key();
        assert_eq!(s.check(&V4, 9, before.isn), Err(CookieError::BadMac), "two rotations");
        assert!(s.check(&V4, 9, after.isn).is_ok());
    }

    #[test]
    fn ts_options_linux_examples() {
        // Linux client defaults: wscale 7, SACK, no ECN.
        let o = TsOptions { wscale: Some(7), sack: true, ecn: false };
        assert_eq!(o.bits(), 0x17);
        assert_eq!(TsOptions::from_bits(0x0f), TsOptions::default());
        let ts = encode_tsval(1000, 0, o);
        // 1000 = 15 * 64 + 40; bits 0x17 = 23 <= 40: same block.
        assert_eq!(ts, 960 + 0x17);
        let ts = encode_tsval(1000, 0, TsOptions { wscale: Some(14), sack: true, ecn: true });
        // bits 0x3e = 62 > 40: previous block, never ahead of the clock.
        assert_eq!(ts, 896 + 0x3e);
        assert!(ts <= 1000);
    }

    /// The key of fleet epoch `e` (any distinct keys do: userspace derives them with HKDF).
    fn epoch_key(e: u32) -> CookieKey {
        CookieKey { k0: u64::from(e).wrapping_mul(0x9e37_79b9_7f4a_7c15), k1: !u64::from(e) }
    }

    /// What userspace writes in the fleet schedule at half-epoch `counter` (see "Fleet
    /// schedule"), with timestamp base `ts_base`.
    fn fleet(counter: u32, ts_base: u32) -> CookieSecrets {
        let e = counter >> 1;
        let other = if counter & 1 == 0 { e.wrapping_sub(1) } else { e.wrapping_add(1) };
        let mut keys = [CookieKey::default(); 2];
        keys[(e & 1) as usize] = epoch_key(e);
        keys[(other & 1) as usize] = epoch_key(other);
        CookieSecrets { keys, current: e & 1, counter, ts_base, schedule: CookieSecrets::FLEET }
    }

    #[test]
    fn fleet_accepts_the_previous_current_and_next_half_epoch() {
        for c in [100u32, 101, 102, 103, 1, 2, u32::MAX - 1] {
            let checker = fleet(c, 0);
            for made_at in [c.wrapping_sub(1), c, c.wrapping_add(1)] {
                let cookie = fleet(made_at, 0).make(&V4, 5, 1);
                assert!(
                    checker.check(&V4, 5, cookie.isn).is_ok(),
                    "made at {made_at}, checked at {c}"
                );
            }
            // Two half-epochs ahead: its key is already in the spare slot in the second half.
            let ahead = fleet(c.wrapping_add(2), 0).make(&V4, 5, 1);
            assert_eq!(checker.check(&V4, 5, ahead.isn).is_ok(), c & 1 == 1, "c + 2 at {c}");
            for made_at in [c.wrapping_sub(2), c.wrapping_sub(3), c.wrapping_add(3)] {
                let cookie = fleet(made_at, 0).make(&V4, 5, 1);
                assert_eq!(
                    checker.check(&V4, 5, cookie.isn),
                    Err(CookieError::BadMac),
                    "made at {made_at}, checked at {c}"
                );
            }
        }
    }

    #[test]
    fn fleet_clear_bits_are_the_counter_modulo_4() {
        for c in 0..16u32 {
            let cookie = fleet(c, 0).make(&V4, 9, 0);
            assert_eq!(cookie.isn >> COUNTER_BIT, c & 3, "K T at {c}");
        }
    }

    #[test]
    fn fleet_timestamp_base_survives_a_move_between_hosts() {
        let opts = TsOptions { wscale: Some(7), sack: true, ecn: false };
        // Two hosts whose wall clocks stand 6400 ms apart from their monotonic clocks.
        let (a, b) = (fleet(40, 64 * 1000), fleet(40, 64 * 1100));
        let made = a.make(&V4, 77, 3);
        let tsval = encode_tsval(123_456, made.ts_offset, opts);
        let checked = b.check(&V4, 77, made.isn).unwrap();
        assert_eq!(checked.ts_offset.wrapping_sub(made.ts_offset), 64 * 100);
        assert_eq!(decode_tsecr(tsval, checked.ts_offset), opts);
        // The connection's timestamp clock on host b: its own clock plus the offset.
        assert_eq!(
            made.ts_offset.wrapping_sub(a.ts_base),
            checked.ts_offset.wrapping_sub(b.ts_base)
        );
    }

    fn any_v4() -> impl Strategy<Value = TupleV4> {
        (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<u16>(), any::<u16>()).prop_map(
            |(client, server, client_port, server_port)| TupleV4 {
                client,
                server,
                client_port,
                server_port,
            },
        )
    }

    fn any_v6() -> impl Strategy<Value = TupleV6> {
        (any::<[u8; 16]>(), any::<[u8; 16]>(), any::<u16>(), any::<u16>()).prop_map(
            |(client, server, client_port, server_port)| {
                TupleV6::new(client, server, client_port, server_port)
            },
        )
    }

    fn any_key() -> impl Strategy<Value = CookieKey> {
        (any::<u64>(), any::<u64>()).prop_map(|(k0, k1)| CookieKey { k0, k1 })
    }

    fn any_ts_options() -> impl Strategy<Value = TsOptions> {
        (proptest::option::of(0..=MAX_WSCALE), any::<bool>(), any::<bool>())
            .prop_map(|(wscale, sack, ecn)| TsOptions { wscale, sack, ecn })
    }

    fn roundtrip<T: CookieTuple>(
        s: &CookieSecrets,
        t: &T,
        isn: u32,
        peer_mss: u16,
        opts: TsOptions,
        now_ts: u32,
        ticks: u32,
    ) -> Result<(), TestCaseError> {
        let idx = mss_index(t.mss_table(), peer_mss);
        let c = s.make(t, isn, idx);
        let tsval = encode_tsval(now_ts, c.ts_offset, opts);
        let mut later = *s;
        later.counter = s.counter.wrapping_add(ticks);
        let v = later.check(t, isn, c.isn).map_err(|e| TestCaseError::fail(std::format!("{e}")))?;
        prop_assert_eq!(u32::from(v.mss_index), u32::from(idx));
        prop_assert!(v.mss <= peer_mss.max(t.mss_table()[0]));
        prop_assert_eq!(v.ts_offset, c.ts_offset);
        prop_assert_eq!(decode_tsecr(tsval, v.ts_offset), opts);
        // Our TSval never runs ahead of our clock.
        prop_assert!(now_ts.wrapping_sub(tsval.wrapping_sub(c.ts_offset)) < 64);
        Ok(())
    }

    proptest! {
        #[test]
        fn v4_roundtrips_every_mss_and_option(
            key in any_key(), t in any_v4(), isn in any::<u32>(), mss in any::<u16>(),
            opts in any_ts_options(), now_ts in any::<u32>(), counter in any::<u32>(),
            slot in 0u32..2, ticks in 0u32..2,
        ) {
            let mut s = CookieSecrets { keys: [key, key], current: slot, counter, ..CookieSecrets::default() };
            s.keys[(slot ^ 1) as usize] = CookieKey { k0: key.k1, k1: key.k0 };
            roundtrip(&s, &t, isn, mss, opts, now_ts, ticks)?;
        }

        #[test]
        fn v6_roundtrips_every_mss_and_option(
            key in any_key(), t in any_v6(), isn in any::<u32>(), mss in any::<u16>(),
            opts in any_ts_options(), now_ts in any::<u32>(), counter in any::<u32>(),
            ticks in 0u32..2,
        ) {
            let s = CookieSecrets { keys: [key, key], current: 1, counter, ..CookieSecrets::default() };
            roundtrip(&s, &t, isn, mss, opts, now_ts, ticks)?;
        }

        #[test]
        fn expired_cookies_are_rejected(
            key in any_key(), t in any_v4(), isn in any::<u32>(), counter in any::<u32>(),
            age in 2u32..1000, idx in 0u8..4,
        ) {
            let s = CookieSecrets { keys: [key, key], current: 0, counter, ..CookieSecrets::default() };
            let c = s.make(&t, isn, idx);
            let mut later = s;
            later.counter = counter.wrapping_add(age);
            prop_assert_eq!(later.check(&t, isn, c.isn), Err(CookieError::BadMac));
            // A clock that went backwards does not revive anything either.
            let mut earlier = s;
            earlier.counter = counter.wrapping_sub(1);
            prop_assert_eq!(earlier.check(&t, isn, c.isn), Err(CookieError::BadMac));
        }

        #[test]
        fn fleet_cookies_pass_within_one_half_epoch_and_never_two_back(
            t in any_v4(), isn in any::<u32>(), counter in any::<u32>(), idx in 0u8..4,
            skew in -1i32..=1, age in 2u32..1000,
        ) {
            let made = fleet(counter, 0).make(&t, isn, idx);
            let there = fleet(counter.wrapping_add_signed(skew), 0);
            prop_assert_eq!(u32::from(there.check(&t, isn, made.isn).unwrap().mss_index), u32::from(idx));
            let later = fleet(counter.wrapping_add(age), 0);
            prop_assert_eq!(later.check(&t, isn, made.isn), Err(CookieError::BadMac));
        }

        #[test]
        fn wrong_key_is_rejected(
            key in any_key(), other in any_key(), t in any_v6(), isn in any::<u32>(),
            counter in any::<u32>(), idx in 0u8..4,
        ) {
            prop_assume!(key != other);
            let s = CookieSecrets { keys: [key, key], current: 0, counter, ..CookieSecrets::default() };
            let c = s.make(&t, isn, idx);
            let wrong = CookieSecrets { keys: [other, other], current: 0, counter, ..CookieSecrets::default() };
            prop_assert_eq!(wrong.check(&t, isn, c.isn), Err(CookieError::BadMac));
        }

        #[test]
        fn any_change_to_tuple_or_isn_is_rejected(
            key in any_key(), t in any_v4(), isn in any::<u32>(), counter in any::<u32>(),
            which in 0usize..6, flip in 1u32..,
        ) {
            let s = CookieSecrets { keys: [key, key], current: 0, counter, ..CookieSecrets::default() };
            let c = s.make(&t, isn, 2);
            let mut t2 = t;
            let mut isn2 = isn;
            let mut cookie = c.isn;
            match which {
                0 => t2.client[0] ^= flip as u8 | 1,
                1 => t2.server[3] ^= flip as u8 | 1,
                2 => t2.client_port ^= flip as u16 | 1,
                3 => t2.server_port ^= flip as u16 | 1,
                4 => isn2 ^= flip,
                _ => cookie ^= flip & MAC_MASK | 1,
            }
            prop_assert_eq!(s.check(&t2, isn2, cookie), Err(CookieError::BadMac));
        }
    }

    /// The acceptance rate of random ACKs is about 2^-28: none in a million, on one host and
    /// in the fleet schedule (whose clear bits pick among four counters, still one candidate).
    #[test]
    fn random_acks_are_rejected() {
        for s in [secrets(42), fleet(42, 0)] {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let mut accepted = 0;
            for _ in 0..1_000_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if s.check(&V4, x as u32, (x >> 32) as u32).is_ok() {
                    accepted += 1;
                }
            }
            assert_eq!(accepted, 0);
        }
    }

    #[test]
    fn v6_cookie_uses_v6_table_and_whole_addresses() {
        let s = secrets(7);
        let c = s.make(&v6(), 77, mss_index(&MSS_TABLE_V6, 1440));
        assert_eq!(s.check(&v6(), 77, c.isn).unwrap().mss, 1440);
        let mut other = v6();
        other.client[1] ^= 1; // the low half of the address is hashed too
        assert_eq!(s.check(&other, 77, c.isn), Err(CookieError::BadMac));
    }
}
