//! Sequence numbers (RFC 9293 section 3.4): the shared wire layer's [`SeqNumber`], under the
//! engine's path.

pub use tcp_common::wire::SeqNumber;
