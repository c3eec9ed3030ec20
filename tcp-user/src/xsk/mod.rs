//! AF_XDP: the thin layer that moves frames between the XDP program and the connection
//! manager without the kernel's network stack.
//!
//! Written here rather than taken from a crate: the ring protocol is small (four SPSC rings
//! and a UMEM, a few hundred lines), the one maintained pure-Rust crate (xdpilone) is
//! EUPL-licensed, which this MIT/Apache project cannot take, and owning the code lets us keep
//! batching and frame accounting exactly as the data path needs them.
//!
//! - [`ring`]: the producer and consumer sides of a ring, with the ordering rules.
//! - [`umem`]: the shared frame area, with checked access to frames.
//! - [`socket`]: one socket bound to one RX queue: open, receive, send, flush, statistics.

pub mod ring;
pub mod socket;
pub mod umem;

pub use socket::{XskConfig, XskMode, XskSocket, XskStats};
pub use umem::Umem;
