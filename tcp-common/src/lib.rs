//! Code and types shared by the XDP program (`tcp-ebpf`, `no_std`, BPF target) and userspace
//! (`tcp-user`, `tcp-engine`). One implementation of each protocol fact lives here: the wire
//! layer (frame dissector, TCP option parser, sequence numbers, the TCP header), the map
//! layouts and the frame metadata, the counter names and the SYN cookie.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod adaptive;
pub mod checksum;
pub mod config;
pub mod cookie;
pub mod counters;
pub mod flow;
pub mod local;
pub mod meta;
pub mod proto;
pub mod synack;
pub mod wire;

pub use adaptive::SynMode;
pub use config::{Config, ConfigFlags, PortSet};
pub use cookie::{CookieKey, CookieSecrets};
pub use counters::Counter;
pub use flow::{FlowKey, FlowValue};
pub use meta::{RxKind, RxMeta};

/// Names of the maps in the XDP object, used by the loader to find them.
pub mod maps {
    /// `Array<Config>` with one entry: everything userspace tells the XDP program.
    pub const CONFIG: &str = "SYNSHIELD_CONFIG";
    /// `PerCpuArray<u64>`, indexed by [`crate::Counter`].
    pub const COUNTERS: &str = "SYNSHIELD_COUNTERS";
    /// `LruHashMap<FlowKey, FlowValue>`: connections whose third ACK carried a valid cookie,
    /// sized at load time (`flow::FlowTableSize`).
    pub const FLOWS: &str = "SYNSHIELD_FLOWS";
    /// `Array<local::LocalAddrs>` with one entry: the addresses whose SYNs are answered.
    pub const LOCAL_ADDRS: &str = "SYNSHIELD_LOCAL_ADDRS";
    /// `PerCpuArray<adaptive::SynRate>` with one entry: each CPU's SYN rate and answer
    /// (adaptive mode), for userspace to read.
    pub const SYN_RATE: &str = "SYNSHIELD_SYN_RATE";
    /// `Array<u64>` with one entry: the window (of jiffies) until which every CPU answers SYNs
    /// with cookies, written by a flooded CPU (`adaptive`, "The answer, for the whole host").
    pub const SYN_FLOOD: &str = "SYNSHIELD_SYN_FLOOD";
    /// `Array<u32>`, indexed by RX queue: 1 while the queue's half-open table has room for a
    /// stateful SYN, 0 (the initial value) while it has none or no one serves it (written by
    /// userspace, see `meta`).
    pub const HALF_OPEN_ROOM: &str = "SYNSHIELD_HALF_OPEN_ROOM";
    /// `XskMap`, indexed by RX queue: the AF_XDP sockets that receive the flows' segments.
    pub const XSKS: &str = "SYNSHIELD_XSKS";
}

/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "synshield";

pub mod testing;
