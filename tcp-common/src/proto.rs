//! Protocol numbers and header sizes of the layers around TCP, shared by the XDP program and
//! the userspace data path so each is written once.

/// Ethernet header without tags (IEEE 802.3).
pub const ETH_HLEN: usize = 14;
/// One VLAN tag (IEEE 802.1Q).
pub const VLAN_HLEN: usize = 4;
/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q (customer) VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (service, outer) VLAN tag.
pub const ETH_P_8021AD: u16 = 0x88a8;
/// IPv4 header without options (RFC 791).
pub const IPV4_HLEN: usize = 20;
/// IPv6 fixed header (RFC 8200).
pub const IPV6_HLEN: usize = 40;
/// TCP header without options (RFC 9293).
pub const TCP_HLEN: usize = 20;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
