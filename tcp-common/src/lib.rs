//! Code and types shared by the XDP program (`tcp-ebpf`, `no_std`, BPF target) and userspace
//! (`tcp-user`). One implementation of each protocol fact lives here: the map layouts, the
//! counter names and the SYN cookie.
#![no_std]

pub mod checksum;
pub mod config;
pub mod cookie;
pub mod counters;
pub mod flow;
pub mod proto;
pub mod synack;
pub mod tcp_options;

pub use config::{Config, ConfigFlags, PortSet};
pub use cookie::{CookieKey, CookieSecrets};
pub use counters::Counter;
pub use flow::{FlowKey, FlowValue};

/// Names of the maps in the XDP object, used by the loader to find them.
pub mod maps {
    /// `Array<Config>` with one entry: everything userspace tells the XDP program.
    pub const CONFIG: &str = "SYNSHIELD_CONFIG";
    /// `PerCpuArray<u64>`, indexed by [`crate::Counter`].
    pub const COUNTERS: &str = "SYNSHIELD_COUNTERS";
    /// `HashMap<FlowKey, FlowValue>`: connections whose third ACK carried a valid cookie.
    pub const FLOWS: &str = "SYNSHIELD_FLOWS";
    /// `XskMap`, indexed by RX queue: the AF_XDP sockets that receive the flows' segments.
    pub const XSKS: &str = "SYNSHIELD_XSKS";
}

/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "synshield";
