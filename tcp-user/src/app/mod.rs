//! The applications synshield serves on the connections it accepts: echo, discard, http and a
//! proxy to a real backend.
//!
//! They run inline on the shard (the thread of one RX queue) as small state machines over
//! [`StreamIo`]: a connection's received bytes as borrowed slices of the engine's receive
//! buffer, its send buffer, and shutdown/close/abort. No task, no buffer and no lock per
//! connection: an idle connection costs its application a few bytes ([`AppConn`]), and payload
//! moves between the engine and the application with at most one copy.
//!
//! The shard calls [`App::on_event`] for every [`AppEvent`] of a connection. Each application
//! "pumps" on any event: it moves as much as it can, and otherwise waits for the next event
//! (more data, room in the send buffer, a backend socket ready, its timer).
//!
//! Per application (RFC 862 echo, RFC 863 discard, HTTP/1.1 with a fixed response, a TCP
//! proxy), see the modules. Segments are sent without Nagle's delay by all four: what they send
//! is either a whole response, an echo of what just arrived, or what a backend handed over, and
//! holding any of it back for an ACK only adds a round trip (Linux's `TCP_NODELAY`).

pub mod discard;
pub mod echo;
pub mod http;
pub mod proxy;

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

use tcp_engine::{CloseReason, Duration, Instant};

/// Which application to serve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AppKind {
    /// Echo (RFC 862).
    #[default]
    Echo,
    /// Discard (RFC 863).
    Discard,
    /// A fixed HTTP/1.1 response.
    Http,
    /// A TCP proxy to `--upstream`.
    Proxy,
}

/// What an application can do with its connection: implemented by the engine's connection in
/// the shard, and by an in-memory double in the applications' tests.
pub trait StreamIo {
    /// Received bytes not yet consumed, in order, as two slices (the buffer is a ring).
    fn readable(&self) -> (&[u8], &[u8]);
    /// Marks the first `n` readable bytes as consumed (opening the receive window).
    fn consume(&mut self, n: usize);
    /// The peer sent FIN: nothing will follow the readable bytes.
    fn peer_finished(&self) -> bool;
    /// Queues as much of `data` as the send buffer takes; returns how much.
    fn send(&mut self, data: &[u8]) -> usize;
    /// Free space in the send buffer.
    fn send_room(&self) -> usize;
    /// Moves readable bytes into the send buffer, as many as fit, and consumes them: one copy,
    /// from the receive buffer straight into the send buffer. Returns how many.
    fn send_received(&mut self) -> usize;
    /// Fills the send buffer straight from a source (a kernel socket's `read`): `fill` gets
    /// contiguous free space and returns how many bytes it wrote, which are queued. Returns
    /// `Ok(Some(n))` with what `fill` returned (`Some(0)` is the source's end of file), or
    /// `Ok(None)` without calling `fill` when the buffer has no room: an [`AppEvent::Ready`]
    /// follows when it has.
    fn send_from(
        &mut self,
        fill: &mut dyn FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Option<usize>>;
    /// Sends FIN after what is queued (half-close: receiving goes on).
    fn shutdown(&mut self);
    /// Closes both directions: FIN after what is queued; unread received data makes it a RST
    /// (RFC 9293 section 3.10.4, as Linux does).
    fn close(&mut self);
    /// Resets the connection now.
    fn abort(&mut self);
}

/// What happened to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEvent {
    /// The connection was just admitted (it may already carry data).
    Opened,
    /// New data arrived, the send buffer has room again, or the peer sent FIN: pump.
    Ready,
    /// The connection's backend socket is ready (proxy).
    Backend {
        /// Readable (or at end of file).
        readable: bool,
        /// Writable (or its connect finished).
        writable: bool,
    },
    /// The application's deadline passed.
    Timer,
    /// The connection is gone (the last event).
    Closed(CloseReason),
}

/// The shard's services for applications: backend sockets in its poll set.
pub trait Backends {
    /// Watches `fd` (edge-triggered: read and write until `WouldBlock`) for the current
    /// connection.
    fn register(&mut self, fd: RawFd) -> io::Result<()>;
    /// Stops watching `fd` (before it is closed).
    fn deregister(&mut self, fd: RawFd);
}

/// Settings of `--app http`.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The body of every 200 response.
    pub body: Arc<[u8]>,
    /// A request's header block must arrive within this time of its first byte (and the first
    /// request within this time of the connection): slowloris clients are closed.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this time.
    pub idle_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            body: Arc::from(&b"synshield\n"[..]),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// An application with its settings; shared by every connection of a shard.
#[derive(Clone, Debug)]
pub enum App {
    /// Echo.
    Echo,
    /// Discard.
    Discard,
    /// HTTP with fixed responses.
    Http(Arc<http::Responses>),
    /// Proxy to this backend.
    Proxy(SocketAddr),
}

/// One connection's application state: a few bytes.
#[derive(Debug)]
pub enum AppConn {
    /// Echo.
    Echo(echo::EchoConn),
    /// Discard.
    Discard(discard::DiscardConn),
    /// HTTP.
    Http(http::HttpConn),
    /// Proxy.
    Proxy(proxy::ProxyConn),
}

impl App {
    /// The application for `kind` with its settings.
    pub fn new(kind: AppKind, http: &HttpConfig, upstream: Option<SocketAddr>) -> io::Result<App> {
        Ok(match kind {
            AppKind::Echo => App::Echo,
            AppKind::Discard => App::Discard,
            AppKind::Http => App::Http(Arc::new(http::Responses::new(http))),
            AppKind::Proxy => App::Proxy(upstream.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "--app proxy needs --upstream")
            })?),
        })
    }

    /// The state of a new connection.
    pub fn open(&self) -> AppConn {
        match self {
            App::Echo => AppConn::Echo(echo::EchoConn::default()),
            App::Discard => AppConn::Discard(discard::DiscardConn::default()),
            App::Http(_) => AppConn::Http(http::HttpConn::default()),
            App::Proxy(_) => AppConn::Proxy(proxy::ProxyConn::default()),
        }
    }

    /// Handles one event of a connection; returns the application's deadline (an
    /// [`AppEvent::Timer`] is due then), if it wants one.
    pub fn on_event(
        &self,
        conn: &mut AppConn,
        io: &mut dyn StreamIo,
        event: AppEvent,
        now: Instant,
        backends: &mut dyn Backends,
    ) -> Option<Instant> {
        match (self, conn) {
            (App::Echo, AppConn::Echo(c)) => {
                c.on_event(io, event);
                None
            }
            (App::Discard, AppConn::Discard(c)) => {
                c.on_event(io, event);
                None
            }
            (App::Http(r), AppConn::Http(c)) => c.on_event(r, io, event, now),
            (App::Proxy(upstream), AppConn::Proxy(c)) => {
                c.on_event(*upstream, io, event, backends);
                None
            }
            // A connection is opened by the shard's one App: a mismatch cannot happen.
            (_, _) => {
                io.abort();
                None
            }
        }
    }
}

/// An in-memory [`StreamIo`] for the applications' tests: what the peer sent is `incoming`,
/// what the application sent is `sent`.
#[cfg(test)]
pub(crate) mod testio {
    use std::collections::VecDeque;

    use super::{Backends, StreamIo};

    #[derive(Debug, Default)]
    #[expect(clippy::struct_excessive_bools, reason = "what the application did, one flag each")]
    pub struct MemIo {
        pub incoming: VecDeque<u8>,
        pub fin: bool,
        pub sent: Vec<u8>,
        pub send_capacity: usize,
        pub shut: bool,
        pub closed: bool,
        pub aborted: bool,
    }

    impl MemIo {
        pub fn new(send_capacity: usize) -> MemIo {
            MemIo { send_capacity, ..MemIo::default() }
        }

        pub fn push(&mut self, data: &[u8]) {
            self.incoming.extend(data);
        }

        /// The peer read what was sent: room again.
        pub fn take_sent(&mut self) -> Vec<u8> {
            std::mem::take(&mut self.sent)
        }
    }

    impl StreamIo for MemIo {
        fn readable(&self) -> (&[u8], &[u8]) {
            self.incoming.as_slices()
        }
        fn consume(&mut self, n: usize) {
            self.incoming.drain(..n);
        }
        fn peer_finished(&self) -> bool {
            self.fin
        }
        fn send(&mut self, data: &[u8]) -> usize {
            let n = data.len().min(self.send_room());
            self.sent.extend_from_slice(&data[..n]);
            n
        }
        fn send_room(&self) -> usize {
            if self.shut || self.closed || self.aborted {
                0
            } else {
                self.send_capacity - self.sent.len()
            }
        }
        fn send_received(&mut self) -> usize {
            let n = self.incoming.len().min(self.send_room());
            self.sent.extend(self.incoming.drain(..n));
            n
        }
        fn send_from(
            &mut self,
            fill: &mut dyn FnMut(&mut [u8]) -> std::io::Result<usize>,
        ) -> std::io::Result<Option<usize>> {
            let room = self.send_room();
            if room == 0 {
                return Ok(None);
            }
            let mut buf = vec![0u8; room];
            let n = fill(&mut buf)?;
            self.sent.extend_from_slice(&buf[..n]);
            Ok(Some(n))
        }
        fn shutdown(&mut self) {
            self.shut = true;
        }
        fn close(&mut self) {
            if self.incoming.is_empty() {
                self.closed = true;
            } else {
                self.aborted = true;
            }
        }
        fn abort(&mut self) {
            self.aborted = true;
        }
    }

    /// Records registrations.
    #[derive(Debug, Default)]
    pub struct NoBackends {
        pub registered: Vec<i32>,
    }

    impl Backends for NoBackends {
        fn register(&mut self, fd: i32) -> std::io::Result<()> {
            self.registered.push(fd);
            Ok(())
        }
        fn deregister(&mut self, fd: i32) {
            self.registered.retain(|f| *f != fd);
        }
    }
}
