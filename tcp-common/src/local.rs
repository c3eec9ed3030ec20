//! Whose SYNs the shield answers: the addresses it serves (`SYNSHIELD_LOCAL_ADDRS`, written by
//! userspace), and the sources and destinations it never answers.
//!
//! A SYN-ACK (and, when configured, a RST) goes back to the SYN's source, from the SYN's
//! destination and with the MAC addresses swapped. So the shield answers only when:
//!
//! - the destination MAC address is not a group address (broadcast or multicast): the answer
//!   would carry it as its source;
//! - the destination address is not multicast or broadcast (IPv4 224.0.0.0/4, 240.0.0.0/4
//!   with 255.255.255.255; IPv6 ff00::/8);
//! - the destination address is one of ours (the interface's, plus `--address`): otherwise the
//!   answer would spoof someone else's address;
//! - the source address could be a peer's: not a martian (IPv4 0.0.0.0/8, 127.0.0.0/8,
//!   224.0.0.0/4 multicast, 240.0.0.0/4 class E with the broadcast address; IPv6 ::, ::1,
//!   ff00::/8, ::ffff:0:0/96 v4-mapped, RFC 4291 section 2.5.5.2), and not one of ours (a
//!   "land" SYN, whose answer we would send to ourselves).
//!
//! Each refusal has its counter, checked in that order. The list is a fixed array with a count,
//! scanned in full for each SYN (no map lookup per address): at most [`MAX_LOCAL_V4`] and
//! [`MAX_LOCAL_V6`] addresses, one compare each.

use crate::counters::Counter;

/// Most IPv4 addresses the shield serves.
pub const MAX_LOCAL_V4: usize = 16;
/// Most IPv6 addresses the shield serves.
pub const MAX_LOCAL_V6: usize = 16;

/// The single entry of `SYNSHIELD_LOCAL_ADDRS`: the addresses whose SYNs are answered.
/// Userspace writes it (loader: the interface's addresses and `--address`) and may rewrite it
/// whole when the interface's addresses change; an empty list answers no SYN.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LocalAddrs {
    /// How many of `v4` are used.
    pub v4_count: u32,
    /// How many of `v6` are used.
    pub v6_count: u32,
    /// IPv4 addresses as `u32::from_be_bytes` of the wire bytes.
    pub v4: [u32; MAX_LOCAL_V4],
    /// IPv6 addresses as big-endian 64-bit halves (as `wire::frame::Ipv6` holds them).
    pub v6: [[u64; 2]; MAX_LOCAL_V6],
}

/// A packet's source and destination as integers: IPv4 as `u32::from_be_bytes`, IPv6 as
/// big-endian 64-bit halves (`wire::frame::IpHeader::addr_words`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrWords {
    /// IPv4.
    V4 {
        /// Source.
        src: u32,
        /// Destination.
        dst: u32,
    },
    /// IPv6.
    V6 {
        /// Source.
        src: [u64; 2],
        /// Destination.
        dst: [u64; 2],
    },
}

/// Why an address cannot be one the shield serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalAddrError {
    /// More than [`MAX_LOCAL_V4`] IPv4 or [`MAX_LOCAL_V6`] IPv6 addresses.
    TooMany,
    /// A multicast, broadcast, unspecified or loopback address.
    NotUnicast,
}

impl core::fmt::Display for LocalAddrError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LocalAddrError::TooMany => "more than 16 IPv4 or 16 IPv6 addresses",
            LocalAddrError::NotUnicast => {
                "not a unicast address a client can reach (multicast, broadcast, unspecified, loopback or v4-mapped)"
            }
        })
    }
}

impl core::error::Error for LocalAddrError {}

impl LocalAddrs {
    /// Adds an IPv4 address (wire bytes).
    pub fn push_v4(&mut self, a: [u8; 4]) -> Result<(), LocalAddrError> {
        let a = u32::from_be_bytes(a);
        if martian_v4(a) {
            return Err(LocalAddrError::NotUnicast);
        }
        let n = self.v4_len();
        if self.v4[..n].contains(&a) {
            return Ok(());
        }
        let slot = self.v4.get_mut(n).ok_or(LocalAddrError::TooMany)?;
        *slot = a;
        self.v4_count += 1;
        Ok(())
    }

    /// Adds an IPv6 address (wire bytes).
    pub fn push_v6(&mut self, a: [u8; 16]) -> Result<(), LocalAddrError> {
        let a = crate::cookie::split_be_u64(&a);
        if martian_v6(a) {
            return Err(LocalAddrError::NotUnicast);
        }
        let n = self.v6_len();
        if self.v6[..n].contains(&a) {
            return Ok(());
        }
        let slot = self.v6.get_mut(n).ok_or(LocalAddrError::TooMany)?;
        *slot = a;
        self.v6_count += 1;
        Ok(())
    }

    fn v4_len(&self) -> usize {
        (self.v4_count as usize).min(MAX_LOCAL_V4)
    }

    fn v6_len(&self) -> usize {
        (self.v6_count as usize).min(MAX_LOCAL_V6)
    }

    /// Whether the list is empty (the shield then answers no SYN).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.v4_count == 0 && self.v6_count == 0
    }

    /// The common case in a few instructions, for the XDP program to inline: a list of one
    /// or two addresses of the family (a host's address, an IPv6 global and link-local pair),
    /// the destination one of them, the source neither and not a martian. `true` means
    /// admitted; `false` means ask [`LocalAddrs::admits`], which also says why not.
    #[inline(always)]
    #[must_use]
    pub fn admits_fast(&self, a: AddrWords) -> bool {
        match a {
            AddrWords::V4 { src, dst } => {
                let n = self.v4_count;
                if n == 0 || n > 2 {
                    return false;
                }
                let (a0, a1) = (self.v4[0], self.v4[usize::from(n == 2)]);
                (dst == a0 || dst == a1) && src != a0 && src != a1 && !martian_v4(src)
            }
            AddrWords::V6 { src, dst } => {
                let n = self.v6_count;
                if n == 0 || n > 2 {
                    return false;
                }
                let (a0, a1) = (self.v6[0], self.v6[usize::from(n == 2)]);
                (dst == a0 || dst == a1) && src != a0 && src != a1 && !martian_v6(src)
            }
        }
    }

    /// Whether the shield answers a SYN with these addresses: [`LocalAddrs::admits_v4`] or
    /// [`LocalAddrs::admits_v6`].
    #[inline(always)]
    pub fn admits(&self, a: AddrWords) -> Result<(), Counter> {
        match a {
            AddrWords::V4 { src, dst } => self.admits_v4(src, dst),
            AddrWords::V6 { src, dst } => self.admits_v6(src, dst),
        }
    }

    /// Whether the shield answers an IPv4 SYN from `src` to `dst` (as `u32::from_be_bytes`);
    /// the refusal's counter if not (see the module docs for the order).
    #[inline(always)]
    pub fn admits_v4(&self, src: u32, dst: u32) -> Result<(), Counter> {
        if dst >> 28 >= 0xe {
            return Err(Counter::DropMulticastDestination);
        }
        let (mut ours, mut own_source) = (false, false);
        for a in self.v4.iter().take(self.v4_count as usize) {
            ours |= *a == dst;
            own_source |= *a == src;
        }
        if !ours {
            return Err(Counter::DropNotLocalDestination);
        }
        if martian_v4(src) {
            return Err(Counter::DropMartianSource);
        }
        if own_source {
            return Err(Counter::DropOwnSource);
        }
        Ok(())
    }

    /// As [`LocalAddrs::admits_v4`] for IPv6 (addresses as big-endian halves).
    #[inline(always)]
    pub fn admits_v6(&self, src: [u64; 2], dst: [u64; 2]) -> Result<(), Counter> {
        if dst[0] >> 56 == 0xff {
            return Err(Counter::DropMulticastDestination);
        }
        let (mut ours, mut own_source) = (false, false);
        for a in self.v6.iter().take(self.v6_count as usize) {
            ours |= a[0] == dst[0] && a[1] == dst[1];
            own_source |= a[0] == src[0] && a[1] == src[1];
        }
        if !ours {
            return Err(Counter::DropNotLocalDestination);
        }
        if martian_v6(src) {
            return Err(Counter::DropMartianSource);
        }
        if own_source {
            return Err(Counter::DropOwnSource);
        }
        Ok(())
    }
}

/// 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4 (255.255.255.255 included): never the
/// source of a SYN we answer.
#[inline(always)]
#[must_use]
pub fn martian_v4(a: u32) -> bool {
    let first = a >> 24;
    first == 0 || first == 127 || first >= 224
}

/// ::, ::1, ff00::/8 and ::ffff:0:0/96 (v4-mapped: IPv4 has its own header).
#[inline(always)]
#[must_use]
pub fn martian_v6(a: [u64; 2]) -> bool {
    a[0] >> 56 == 0xff || a[0] == 0 && (a[1] <= 1 || a[1] >> 32 == 0xffff)
}

/// Whether a destination MAC address's first byte marks a group (broadcast or multicast)
/// address (IEEE 802: the least significant bit of the first octet).
#[inline(always)]
#[must_use]
pub fn is_group_mac(first_byte: u8) -> bool {
    first_byte & 1 != 0
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers only, no padding (8 + 64 + 256 bytes, alignment 8).
unsafe impl aya::Pod for LocalAddrs {}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    fn v6(s: &str) -> [u64; 2] {
        crate::cookie::split_be_u64(&s.parse::<Ipv6Addr>().unwrap().octets())
    }

    fn ours() -> LocalAddrs {
        let mut l = LocalAddrs::default();
        l.push_v4([198, 18, 0, 2]).unwrap();
        l.push_v4([10, 0, 0, 1]).unwrap();
        l.push_v6("2001:2::2".parse::<Ipv6Addr>().unwrap().octets()).unwrap();
        l.push_v6("fe80::2".parse::<Ipv6Addr>().unwrap().octets()).unwrap();
        l
    }

    #[test]
    fn layout_has_no_padding() {
        assert_eq!(core::mem::size_of::<LocalAddrs>(), 8 + 4 * 16 + 16 * 16);
    }

    #[test]
    fn ipv4_sources_and_destinations() {
        let l = ours();
        let client = v4("198.18.0.1");
        assert_eq!(l.admits_v4(client, v4("198.18.0.2")), Ok(()));
        assert_eq!(l.admits_v4(client, v4("10.0.0.1")), Ok(()));
        for (src, dst, why) in [
            ("198.18.0.1", "198.18.0.3", Counter::DropNotLocalDestination),
            ("198.18.0.1", "198.18.0.255", Counter::DropNotLocalDestination),
            ("198.18.0.1", "255.255.255.255", Counter::DropMulticastDestination),
            ("198.18.0.1", "224.0.0.1", Counter::DropMulticastDestination),
            ("198.18.0.1", "239.255.255.250", Counter::DropMulticastDestination),
            ("198.18.0.1", "240.0.0.1", Counter::DropMulticastDestination),
            ("0.0.0.0", "198.18.0.2", Counter::DropMartianSource),
            ("0.1.2.3", "198.18.0.2", Counter::DropMartianSource),
            ("127.0.0.1", "198.18.0.2", Counter::DropMartianSource),
            ("224.0.0.5", "198.18.0.2", Counter::DropMartianSource),
            ("240.1.1.1", "198.18.0.2", Counter::DropMartianSource),
            ("255.255.255.255", "198.18.0.2", Counter::DropMartianSource),
            ("198.18.0.2", "198.18.0.2", Counter::DropOwnSource),
            ("10.0.0.1", "198.18.0.2", Counter::DropOwnSource),
        ] {
            assert_eq!(l.admits_v4(v4(src), v4(dst)), Err(why), "{src} -> {dst}");
        }
        assert_eq!(
            LocalAddrs::default().admits_v4(client, v4("198.18.0.2")),
            Err(Counter::DropNotLocalDestination),
            "an empty list answers nothing"
        );
    }

    #[test]
    fn ipv6_sources_and_destinations() {
        let l = ours();
        let client = v6("2001:2::1");
        assert_eq!(l.admits_v6(client, v6("2001:2::2")), Ok(()));
        assert_eq!(l.admits_v6(v6("fe80::1"), v6("fe80::2")), Ok(()));
        for (src, dst, why) in [
            ("2001:2::1", "2001:2::3", Counter::DropNotLocalDestination),
            ("2001:2::1", "ff02::1", Counter::DropMulticastDestination),
            ("2001:2::1", "ff05::1:3", Counter::DropMulticastDestination),
            ("::", "2001:2::2", Counter::DropMartianSource),
            ("::1", "2001:2::2", Counter::DropMartianSource),
            ("ff02::1", "2001:2::2", Counter::DropMartianSource),
            ("::ffff:198.18.0.1", "2001:2::2", Counter::DropMartianSource),
            ("2001:2::2", "2001:2::2", Counter::DropOwnSource),
            ("fe80::2", "2001:2::2", Counter::DropOwnSource),
        ] {
            assert_eq!(l.admits_v6(v6(src), v6(dst)), Err(why), "{src} -> {dst}");
        }
        assert_eq!(l.admits_v6(v6("::2"), v6("2001:2::2")), Ok(()), "only :: and ::1");
    }

    /// The fast path never admits what the full check refuses, and admits the common case.
    #[test]
    fn fast_path_agrees_with_the_full_check() {
        let mut one = LocalAddrs::default();
        one.push_v4([198, 18, 0, 2]).unwrap();
        one.push_v6("2001:2::2".parse::<Ipv6Addr>().unwrap().octets()).unwrap();
        let mut three = ours();
        three.push_v4([10, 0, 0, 9]).unwrap();
        let v4s = ["198.18.0.1", "198.18.0.2", "10.0.0.1", "10.0.0.9", "0.0.0.0", "224.0.0.1"];
        let v6s = ["2001:2::1", "2001:2::2", "fe80::2", "::", "ff02::1", "::ffff:1.2.3.4"];
        for l in [LocalAddrs::default(), one, ours(), three] {
            for (src, dst) in v4s.iter().flat_map(|s| v4s.iter().map(move |d| (*s, *d))) {
                let a = AddrWords::V4 { src: v4(src), dst: v4(dst) };
                if l.admits_fast(a) {
                    assert_eq!(l.admits(a), Ok(()), "{src} -> {dst} with {l:?}");
                }
            }
            for (src, dst) in v6s.iter().flat_map(|s| v6s.iter().map(move |d| (*s, *d))) {
                let a = AddrWords::V6 { src: v6(src), dst: v6(dst) };
                if l.admits_fast(a) {
                    assert_eq!(l.admits(a), Ok(()), "{src} -> {dst} with {l:?}");
                }
            }
        }
        let client = AddrWords::V4 { src: v4("198.18.0.1"), dst: v4("198.18.0.2") };
        assert!(one.admits_fast(client) && ours().admits_fast(client));
        assert!(!three.admits_fast(client), "three addresses: the full check");
        let client6 = AddrWords::V6 { src: v6("2001:2::1"), dst: v6("2001:2::2") };
        assert!(one.admits_fast(client6) && ours().admits_fast(client6));
    }

    #[test]
    fn list_refuses_non_unicast_and_overflow_and_ignores_repeats() {
        let mut l = LocalAddrs::default();
        assert!(l.is_empty());
        for bad in [[0, 0, 0, 0], [127, 0, 0, 1], [224, 0, 0, 1], [255, 255, 255, 255]] {
            assert_eq!(l.push_v4(bad), Err(LocalAddrError::NotUnicast), "{bad:?}");
        }
        for bad in ["::", "::1", "ff02::1", "::ffff:1.2.3.4"] {
            let a = bad.parse::<Ipv6Addr>().unwrap().octets();
            assert_eq!(l.push_v6(a), Err(LocalAddrError::NotUnicast), "{bad}");
        }
        for i in 0..16u8 {
            l.push_v4([10, 0, 0, i + 1]).unwrap();
            l.push_v4([10, 0, 0, i + 1]).unwrap();
        }
        assert_eq!(l.v4_count, 16);
        assert_eq!(l.push_v4([10, 0, 1, 1]), Err(LocalAddrError::TooMany));
        assert!(!l.is_empty());
    }

    #[test]
    fn group_macs() {
        assert!(is_group_mac(0xff) && is_group_mac(0x01) && is_group_mac(0x33));
        assert!(!is_group_mac(0x02) && !is_group_mac(0x00));
    }
}
