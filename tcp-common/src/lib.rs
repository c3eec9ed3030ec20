//! Code and types shared by the XDP program (`tcp-ebpf`, `no_std`, BPF target) and userspace
//! (`tcp-user`). One implementation of each protocol fact lives here: the map layouts, the
//! counter names and the SYN cookie.
#![no_std]

pub mod config;
pub mod counters;

pub use config::{Config, PortSet};
pub use counters::Counter;

/// Names of the maps in the XDP object, used by the loader to find them.
pub mod maps {
    /// `Array<Config>` with one entry: everything userspace tells the XDP program.
    pub const CONFIG: &str = "SYNSHIELD_CONFIG";
    /// `PerCpuArray<u64>`, indexed by [`crate::Counter`].
    pub const COUNTERS: &str = "SYNSHIELD_COUNTERS";
}

/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "synshield";
