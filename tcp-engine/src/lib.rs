//! A sans-IO TCP (RFC 9293) engine: segments and time in, segments and events out.
//!
//! After the XDP program validated a SYN cookie's ACK, the connection lives here. The
//! engine never touches a socket or a clock: the I/O shell (`tcp-user`) parses L2/L3, hands
//! over TCP headers and payload, and sends the segments the engine writes into its buffers.
//!
//! - [`wire`]: zero-copy [`wire::Packet`] view and owned [`wire::TcpRepr`], options and
//!   checksums for IPv4 and IPv6.
//! - [`SeqNumber`], [`State`], [`Instant`]/[`Duration`]: the vocabulary.
//! - [`Connection`]: one connection's state machine; see its module docs for the call
//!   order.
//! - [`ConnectionTable`]: the connections of one shard, each with the caller's payload,
//!   keyed by [`FourTuple`], with one timer heap, [`TimeWait`] records, RST for segments
//!   that reach no connection, optional listening; see its module docs for the call order.
//! - [`testing`]: segments as owned values, for tests.
//!
//! Building a connection from a cookie:
//!
//! ```
//! use std::sync::Arc;
//! use tcp_engine::{Config, ConnectionTable, CookieHandshake, FourTuple, Instant, SeqNumber, State};
//! use tcp_engine::wire::TcpRepr;
//!
//! let tuple = FourTuple::new("10.0.0.1:80".parse().unwrap(), "10.0.0.2:40000".parse().unwrap());
//! // The payload of each connection: here, a name.
//! let mut table: ConnectionTable<&str> = ConnectionTable::new(Arc::new(Config::default()), 0x5eed);
//! let handshake = CookieHandshake {
//!     tuple,
//!     iss: SeqNumber::new(1000),
//!     irs: SeqNumber::new(5000),
//!     peer_mss: 1460,
//!     peer_wscale: Some(7),
//!     our_wscale: Some(7),
//!     sack_permitted: true,
//!     timestamps: None,
//!     peer_window: 64240 << 7,
//! };
//! // The third ACK, carrying a request.
//! let ack = TcpRepr {
//!     ack_number: Some(SeqNumber::new(1001)),
//!     window_len: 64240,
//!     ..TcpRepr::new(40000, 80, SeqNumber::new(5001))
//! };
//! let now = Instant::from_millis(1);
//! let id = table.insert_from_cookie(now, &handshake, &ack, b"GET / HTTP/1.0\r\n\r\n", "web").unwrap();
//! assert_eq!(table.lookup(&tuple), Some(id));
//! assert_eq!(table.user(id), Some(&"web"));
//! // The request, read in place.
//! let request = table.with_connection(now, id, |conn, _| {
//!     assert_eq!(conn.state(), State::Established);
//!     let (first, _) = conn.recv_slices();
//!     let request = first.to_vec();
//!     conn.consume(request.len());
//!     request
//! });
//! assert_eq!(request.unwrap(), b"GET / HTTP/1.0\r\n\r\n");
//! ```

pub mod config;
pub mod conn;
#[doc(hidden)]
pub mod fuzzing;
pub mod seq;
pub mod state;
pub mod table;
pub mod testing;
pub mod time;
pub mod time_wait;
pub mod tuple;
pub mod wire;

pub use config::{Config, CongestionAlgorithm, KeepaliveConfig};
pub use conn::{
    CloseError, CloseReason, ConnStats, Connection, CookieHandshake, Event, MIN_TRANSMIT_BUFFER,
    RecvError, Segment, SendError, TsInfo, reset_reply,
};
pub use seq::SeqNumber;
pub use state::State;
pub use table::{ConnId, ConnectionTable, TableError, TableEvent, TableStats, Transmit};
pub use time::{Duration, Instant};
pub use time_wait::TimeWait;
pub use tuple::FourTuple;
