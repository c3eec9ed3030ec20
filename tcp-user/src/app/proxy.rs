//! A TCP proxy: each accepted connection is spliced to a new kernel TCP connection to the
//! backend, opened without blocking from the shard and watched in its poll set.
//!
//! Bytes move without an intermediate buffer: client to backend is `write(2)` straight from the
//! engine's receive buffer (consumed only as far as the kernel took it), backend to client is
//! `read(2)` straight into the engine's send buffer. So a slow side throttles the other through
//! the windows instead of growing memory: a full backend socket leaves client data unconsumed
//! (our receive window closes), a full send buffer leaves the backend unread (its window closes).
//!
//! A half-close on either side is carried to the other (the client's FIN becomes a shutdown of
//! the backend's write side, the backend's end of file our FIN), and the other direction keeps
//! flowing. A reset on either side resets the other: a failed connect or a backend error
//! resets the client; a client reset closes the backend with RST (`SO_LINGER` 0).

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use super::{AppEvent, Backends, StreamIo};
use tcp_engine::CloseReason;

const CONNECTED: u8 = 1;
/// The backend may have bytes to read (edge-triggered: set by an event, cleared by WouldBlock).
const READABLE: u8 = 2;
/// The backend may take bytes.
const WRITABLE: u8 = 4;
/// The client's FIN was passed on (backend write side shut).
const CLIENT_EOF_SENT: u8 = 8;
/// The backend ended its stream (our FIN is queued).
const BACKEND_EOF: u8 = 16;

/// One proxied connection: its backend socket and where each direction is.
#[derive(Debug, Default)]
pub struct ProxyConn {
    backend: Option<TcpStream>,
    flags: u8,
}

impl ProxyConn {
    pub(super) fn on_event(
        &mut self,
        upstream: SocketAddr,
        io: &mut dyn StreamIo,
        event: AppEvent,
        backends: &mut dyn Backends,
    ) {
        match event {
            AppEvent::Opened => {
                match connect_nonblocking(upstream) {
                    Ok(s) if backends.register(s.as_raw_fd()).is_ok() => self.backend = Some(s),
                    // No socket (out of file descriptors, say) or no room in the poll set:
                    // refuse the client as an unreachable backend would.
                    _ => {
                        io.abort();
                        return;
                    }
                }
            }
            AppEvent::Closed(reason) => {
                if let Some(s) = self.backend.take() {
                    if matches!(reason, CloseReason::Normal) {
                        let _ = s.shutdown(std::net::Shutdown::Write);
                    } else {
                        reset_on_close(&s);
                    }
                    backends.deregister(s.as_raw_fd());
                }
                return;
            }
            AppEvent::Backend { readable, writable } => {
                if readable {
                    self.flags |= READABLE;
                }
                if writable {
                    self.flags |= WRITABLE;
                }
                if self.flags & CONNECTED == 0 && (readable || writable) {
                    match self.backend.as_ref().map(TcpStream::take_error) {
                        Some(Ok(None)) => self.flags |= CONNECTED,
                        _ => return self.fail(io, backends),
                    }
                }
            }
            AppEvent::Ready | AppEvent::Timer => {}
        }
        if self.flags & CONNECTED != 0 && self.pump(io).is_err() {
            self.fail(io, backends);
        }
        if self.flags & (CLIENT_EOF_SENT | BACKEND_EOF) == CLIENT_EOF_SENT | BACKEND_EOF
            && let Some(s) = self.backend.take()
        {
            // Both directions ended: the backend socket has nothing left to do.
            backends.deregister(s.as_raw_fd());
        }
    }

    /// Moves what can move, both ways.
    fn pump(&mut self, io: &mut dyn StreamIo) -> io::Result<()> {
        let Some(backend) = self.backend.as_mut() else { return Ok(()) };
        // Client to backend.
        while self.flags & WRITABLE != 0 {
            let (front, _) = io.readable();
            if front.is_empty() {
                break;
            }
            match backend.write(front) {
                Ok(n) => io.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.flags &= !WRITABLE,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let (a, b) = io.readable();
        if a.is_empty() && b.is_empty() && io.peer_finished() && self.flags & CLIENT_EOF_SENT == 0 {
            backend.shutdown(std::net::Shutdown::Write)?;
            self.flags |= CLIENT_EOF_SENT;
        }
        // Backend to client, until the backend has nothing or our send buffer no room (then
        // the engine reports Ready when it has).
        while self.flags & READABLE != 0 && self.flags & BACKEND_EOF == 0 {
            match io.send_from(&mut |spare| backend.read(spare)) {
                Ok(None) => break,
                Ok(Some(0)) => {
                    io.shutdown();
                    self.flags |= BACKEND_EOF;
                }
                Ok(Some(_)) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.flags &= !READABLE,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The backend failed (refused, reset, unreachable): reset the client, drop the backend.
    fn fail(&mut self, io: &mut dyn StreamIo, backends: &mut dyn Backends) {
        io.abort();
        if let Some(s) = self.backend.take() {
            backends.deregister(s.as_raw_fd());
        }
    }
}

/// A non-blocking TCP socket with a connect to `addr` under way.
fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    stream.set_nodelay(true)?;
    let (storage, len) = sockaddr(addr);
    // SAFETY: a socket we own and a sockaddr of the length we pass.
    let r = unsafe { libc::connect(fd, std::ptr::from_ref(&storage).cast(), len) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(stream)
}

#[expect(clippy::cast_possible_truncation, reason = "AF_INET is 2 and AF_INET6 10")]
const FAMILY_INET: libc::sa_family_t = libc::AF_INET as libc::sa_family_t;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET is 2 and AF_INET6 10")]
const FAMILY_INET6: libc::sa_family_t = libc::AF_INET6 as libc::sa_family_t;

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: FAMILY_INET,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: FAMILY_INET6,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, libc::socklen_t::try_from(len).unwrap_or(0))
}

/// `SO_LINGER` with a zero timeout: closing the socket sends RST (the client reset us).
fn reset_on_close(s: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket we own with a linger of the size we pass.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            libc::socklen_t::try_from(size_of::<libc::linger>()).unwrap_or(0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testio::{MemIo, NoBackends};
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    /// Drives the proxy against a real kernel backend on loopback, standing in for the shard's
    /// poll set: waits up to 10 ms for the backend socket and reports what poll(2) saw.
    fn step(p: &mut ProxyConn, io: &mut MemIo, b: &mut NoBackends) {
        let ev = match &p.backend {
            Some(s) => {
                let mut fd = libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN | libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&raw mut fd, 1, 10) };
                let readable = fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
                let writable = fd.revents & (libc::POLLOUT | libc::POLLERR) != 0;
                AppEvent::Backend { readable, writable }
            }
            None => AppEvent::Ready,
        };
        p.on_event("127.0.0.1:1".parse().unwrap(), io, ev, b);
    }

    #[test]
    fn splices_both_ways_with_half_close() {
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = backend.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = backend.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            s.write_all(format!("got {}", all.len()).as_bytes()).unwrap();
        });
        let mut io = MemIo::new(1 << 16);
        let mut b = NoBackends::default();
        let mut p = ProxyConn::default();
        p.on_event(addr, &mut io, AppEvent::Opened, &mut b);
        assert_eq!(b.registered.len(), 1, "the backend socket joins the poll set");
        io.push(&[1u8; 5000]);
        io.fin = true;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !io.shut && std::time::Instant::now() < deadline {
            step(&mut p, &mut io, &mut b);
        }
        server.join().unwrap();
        assert!(io.incoming.is_empty(), "everything went to the backend");
        assert_eq!(io.sent, b"got 5000");
        assert!(io.shut, "the backend's end of file became our FIN");
        assert!(b.registered.is_empty(), "both directions ended: the backend is let go");
    }

    #[test]
    fn a_full_send_buffer_pauses_the_backend_until_there_is_room() {
        const TOTAL: usize = 1 << 20;
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = backend.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = backend.accept().unwrap();
            s.write_all(&vec![9u8; TOTAL]).unwrap();
        });
        let mut io = MemIo::new(10_000);
        let mut b = NoBackends::default();
        let mut p = ProxyConn::default();
        p.on_event(addr, &mut io, AppEvent::Opened, &mut b);
        let mut got = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !io.shut && std::time::Instant::now() < deadline {
            step(&mut p, &mut io, &mut b);
            assert!(io.sent.len() <= 10_000, "never more than the send buffer holds");
            // The peer acknowledges what was sent: room again, and the engine says so.
            got += io.take_sent().len();
            p.on_event(addr, &mut io, AppEvent::Ready, &mut b);
            got += io.take_sent().len();
        }
        server.join().unwrap();
        assert_eq!(got, TOTAL, "everything the backend sent, through a 10 kB buffer");
        assert!(io.shut, "then its end of file as our FIN");
    }

    #[test]
    fn a_refused_backend_resets_the_client() {
        // A port nobody listens on: bind, learn the port, close.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut io = MemIo::new(1024);
        let mut b = NoBackends::default();
        let mut p = ProxyConn::default();
        p.on_event(addr, &mut io, AppEvent::Opened, &mut b);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !io.aborted && std::time::Instant::now() < deadline {
            step(&mut p, &mut io, &mut b);
        }
        assert!(io.aborted);
        assert!(b.registered.is_empty());
    }
}
