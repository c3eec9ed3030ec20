//! The application side of a connection: [`TcpStream`], a tokio `AsyncRead + AsyncWrite`
//! whose bytes the manager thread moves to and from the engine, and [`Listener`], which hands
//! out the connections the XDP program validated.
//!
//! Between the two sides sits a [`Pipe`] per connection: two bounded byte queues and a few
//! flags under one mutex. Back-pressure is end to end: when the application does not read,
//! the RX queue fills, the manager stops taking bytes from the engine, the engine's receive
//! buffer fills and its advertised window closes, and the peer stops; when the peer does not
//! read, the engine's send buffer fills, the manager stops moving bytes out of the TX queue,
//! and the application's writes return `Pending`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tcp_engine::{CloseReason, FourTuple};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes each direction of a pipe holds (on top of the engine's own buffers).
pub const PIPE_CAPACITY: usize = 256 * 1024;

/// Tells the manager thread which connections the applications touched, and wakes it.
pub struct Doorbell {
    touched: Mutex<Vec<FourTuple>>,
    eventfd: OwnedFd,
}

impl Doorbell {
    /// A doorbell with its eventfd.
    pub fn new() -> io::Result<Doorbell> {
        // SAFETY: plain eventfd(2).
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own.
        Ok(Doorbell {
            touched: Mutex::new(Vec::new()),
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Marks `tuple` for service and wakes the manager.
    pub fn ring(&self, tuple: FourTuple) {
        lock(&self.touched).push(tuple);
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a u64 to our eventfd. A full counter (EAGAIN) still
        // leaves it readable, which is all the manager needs.
        unsafe { libc::write(self.eventfd.as_raw_fd(), std::ptr::from_ref(&one).cast(), 8) };
    }

    /// Wakes the manager without a connection (shutdown requests).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: as in `ring`.
        unsafe { libc::write(self.eventfd.as_raw_fd(), std::ptr::from_ref(&one).cast(), 8) };
    }

    /// Takes the touched connections and clears the eventfd.
    pub fn take(&self) -> Vec<FourTuple> {
        let mut n: u64 = 0;
        // SAFETY: reading 8 bytes into a u64 from our non-blocking eventfd.
        unsafe { libc::read(self.eventfd.as_raw_fd(), std::ptr::from_mut(&mut n).cast(), 8) };
        std::mem::take(&mut *lock(&self.touched))
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }
}

/// The state both sides of a connection share.
#[derive(Debug, Default)]
pub struct Pipe {
    /// Bytes from the peer, for the application.
    pub rx: VecDeque<u8>,
    /// The peer sent FIN and every byte before it is in `rx` (or was read).
    pub rx_eof: bool,
    /// Bytes from the application, for the peer.
    pub tx: VecDeque<u8>,
    /// The application shut its write side: send FIN once `tx` is empty.
    pub tx_shutdown: bool,
    /// The application dropped its stream.
    pub app_gone: bool,
    /// The connection ended (reset, timed out, or closed).
    pub ended: Option<CloseReason>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Pipe {
    /// Free space in `rx`.
    pub fn rx_space(&self) -> usize {
        PIPE_CAPACITY.saturating_sub(self.rx.len())
    }

    /// Wakes a task waiting to read.
    pub fn wake_reader(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }

    /// Wakes a task waiting to write.
    pub fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

/// One connection's pipe, its tuple, and the doorbell of the manager that owns it.
pub struct Shared {
    pipe: Mutex<Pipe>,
    tuple: FourTuple,
    doorbell: Arc<Doorbell>,
}

impl Shared {
    /// A new pipe for `tuple`.
    pub fn new(tuple: FourTuple, doorbell: Arc<Doorbell>) -> Arc<Shared> {
        Arc::new(Shared { pipe: Mutex::new(Pipe::default()), tuple, doorbell })
    }

    /// Locks the pipe (the manager side).
    pub fn lock(&self) -> MutexGuard<'_, Pipe> {
        lock(&self.pipe)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data that is still consistent enough to
    // read and close: carry on rather than poison every later call.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection, as the application sees it.
pub struct TcpStream {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").field("tuple", &self.shared.tuple).finish()
    }
}

impl TcpStream {
    /// The stream for a pipe the manager made.
    pub fn new(shared: Arc<Shared>) -> TcpStream {
        TcpStream { shared }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.tuple.remote
    }

    /// Our address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.tuple.local
    }

    fn ended_error(reason: CloseReason) -> io::Error {
        match reason {
            CloseReason::Reset => io::Error::from(io::ErrorKind::ConnectionReset),
            CloseReason::Aborted => io::Error::from(io::ErrorKind::ConnectionAborted),
            CloseReason::TimedOut | CloseReason::KeepaliveTimeout | CloseReason::IdleTimeout => {
                io::Error::from(io::ErrorKind::TimedOut)
            }
            CloseReason::Normal => io::Error::from(io::ErrorKind::BrokenPipe),
        }
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut pipe = self.shared.lock();
        if !pipe.rx.is_empty() {
            let was_full = pipe.rx_space() == 0;
            let n = buf.remaining().min(pipe.rx.len());
            let (a, b) = pipe.rx.as_slices();
            let from_a = n.min(a.len());
            buf.put_slice(&a[..from_a]);
            buf.put_slice(&b[..n - from_a]);
            pipe.rx.drain(..n);
            drop(pipe);
            // Space opened: the manager may now move more bytes out of the engine (which
            // reopens the window). Only worth a wake-up when it had stopped.
            if was_full || n >= PIPE_CAPACITY / 4 {
                self.shared.doorbell.ring(self.shared.tuple);
            }
            return Poll::Ready(Ok(()));
        }
        if pipe.rx_eof {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = pipe.ended {
            // Ended without FIN: reset, timeout or abort.
            return Poll::Ready(Err(Self::ended_error(reason)));
        }
        pipe.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.shared.lock();
        if let Some(reason) = pipe.ended {
            return Poll::Ready(Err(Self::ended_error(reason)));
        }
        if pipe.tx_shutdown {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        let space = PIPE_CAPACITY.saturating_sub(pipe.tx.len());
        if space == 0 {
            pipe.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = space.min(data.len());
        pipe.tx.extend(&data[..n]);
        drop(pipe);
        self.shared.doorbell.ring(self.shared.tuple);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Bytes in the pipe are already on their way: the manager takes them without being
        // asked again.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pipe = self.shared.lock();
        if !pipe.tx_shutdown {
            pipe.tx_shutdown = true;
            drop(pipe);
            self.shared.doorbell.ring(self.shared.tuple);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut pipe = self.shared.lock();
        pipe.app_gone = true;
        pipe.tx_shutdown = true;
        drop(pipe);
        self.shared.doorbell.ring(self.shared.tuple);
    }
}

/// Hands out the connections that the XDP program validated and the engine established.
pub struct Listener {
    rx: tokio::sync::mpsc::Receiver<TcpStream>,
}

impl Listener {
    /// A listener and the sender the managers push new connections into; `backlog` bounds
    /// the connections waiting for `accept` (beyond it, new ones are reset).
    pub fn new(backlog: usize) -> (Listener, tokio::sync::mpsc::Sender<TcpStream>) {
        let (tx, rx) = tokio::sync::mpsc::channel(backlog.max(1));
        (Listener { rx }, tx)
    }

    /// The next connection; `None` once every manager has stopped.
    pub async fn accept(&mut self) -> Option<TcpStream> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn stream() -> (TcpStream, Arc<Shared>, Arc<Doorbell>) {
        let bell = Arc::new(Doorbell::new().unwrap());
        let tuple =
            FourTuple::new("198.18.0.2:7".parse().unwrap(), "198.18.0.1:40000".parse().unwrap());
        let shared = Shared::new(tuple, Arc::clone(&bell));
        (TcpStream::new(Arc::clone(&shared)), shared, bell)
    }

    #[tokio::test]
    async fn reads_what_the_manager_puts_then_eof() {
        let (mut s, shared, _bell) = stream();
        {
            let mut p = shared.lock();
            p.rx.extend(b"hello");
            p.rx_eof = true;
        }
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"hello");
    }

    #[tokio::test]
    async fn writes_ring_the_doorbell_and_stop_at_capacity() {
        let (mut s, shared, bell) = stream();
        s.write_all(b"abc").await.unwrap();
        assert_eq!(bell.take(), vec![s.shared.tuple]);
        assert_eq!(shared.lock().tx.iter().copied().collect::<Vec<_>>(), b"abc");
        // Fill the pipe: the next write must not complete until the manager drains it.
        let big = vec![7u8; PIPE_CAPACITY];
        let n = s.write(&big).await.unwrap();
        assert_eq!(n, PIPE_CAPACITY - 3);
        let mut cx = Context::from_waker(Waker::noop());
        let blocked = Pin::new(&mut s).poll_write(&mut cx, b"x");
        assert!(blocked.is_pending(), "a full pipe applies back-pressure");
        assert!(shared.lock().write_waker.is_some(), "and the writer waits to be woken");
    }

    #[tokio::test]
    async fn reset_is_an_error_and_shutdown_is_recorded() {
        let (mut s, shared, bell) = stream();
        s.shutdown().await.unwrap();
        assert!(shared.lock().tx_shutdown);
        assert_eq!(bell.take().len(), 1);
        shared.lock().ended = Some(CloseReason::Reset);
        let mut buf = [0u8; 4];
        assert_eq!(s.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        drop(s);
        assert!(shared.lock().app_gone);
    }
}
