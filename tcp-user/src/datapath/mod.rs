//! The data path: frames from the AF_XDP sockets into the TCP engine, the engine's segments
//! back out, and the applications in between. A thin shell: every protocol decision is the
//! engine's (`tcp_engine`) or the XDP program's; parsing is `tcp_common::wire`'s.
//!
//! - [`shard`]: one RX queue's connections and applications, on one thread.
//! - [`run`]: the shard threads, their AF_XDP sockets and the loop that drives a shard.
//! - [`frame`]: the route back to a peer, and the headers written in front of a segment.
//! - [`flows`]: the shard's side of the XDP flow map.
//! - [`poller`]: the shard's one wait (epoll): socket, wake-ups, backend sockets.
//! - [`inbox`]: frames for a connection another shard owns.
//! - [`limit`]: connections per source address, across shards.
//! - [`reconcile`]: the flow map's walk for orphan entries.

pub mod flows;
pub mod frame;
pub mod inbox;
pub mod limit;
pub mod poller;
pub mod reconcile;
pub mod run;
pub mod shard;
