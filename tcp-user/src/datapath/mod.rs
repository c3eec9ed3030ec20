//! The data path: frames from the AF_XDP sockets into the TCP engine, the engine's segments
//! back out, and byte streams to the applications. A thin shell: every protocol decision is
//! the engine's (`tcp_engine`) or the XDP program's.
//!
//! - [`frame`]: Ethernet/VLAN/IP around the engine's TCP segments.
//! - [`manager`]: one RX queue's connections: admission from the XDP flow table, routes,
//!   bytes between engine and applications, flow removal after close.
//! - [`stream`]: what applications hold: [`stream::Listener`] and [`stream::TcpStream`].
//! - [`run`]: the queue threads, their AF_XDP sockets and the loop that drives a manager.

pub mod frame;
pub mod manager;
pub mod run;
pub mod stream;
