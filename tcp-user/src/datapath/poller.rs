//! The shard's one wait: an epoll set with its AF_XDP socket, its wake-up eventfd and the
//! applications' backend sockets, so that a shard sleeps in one system call until a frame, a
//! forwarded frame, a stop request, a backend socket or its next deadline needs it.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};

/// What an event is about.
pub type Token = u64;

/// The shard's AF_XDP socket.
pub const TOKEN_XSK: Token = u64::MAX;
/// The shard's wake-up eventfd (forwarded frames, stop requests).
pub const TOKEN_WAKE: Token = u64::MAX - 1;

/// An epoll instance.
pub struct Poller {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

/// One readiness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Whose.
    pub token: Token,
    /// Readable, or at end of file, or in error.
    pub readable: bool,
    /// Writable, or in error.
    pub writable: bool,
}

impl Poller {
    /// An empty set reporting up to `batch` events per wait.
    pub fn new(batch: usize) -> io::Result<Poller> {
        // SAFETY: plain epoll_create1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Poller {
            // SAFETY: a fresh descriptor we own.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; batch.max(1)],
        })
    }

    /// Watches `fd` for input (level-triggered): the socket and the eventfd.
    pub fn add_readable(&self, fd: RawFd, token: Token) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, flags(libc::EPOLLIN), token)
    }

    /// Watches `fd` for input and output, edge-triggered: the owner reads and writes until
    /// `WouldBlock` and remembers what is pending.
    pub fn add_edge(&self, fd: RawFd, token: Token) -> io::Result<()> {
        let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        self.ctl(libc::EPOLL_CTL_ADD, fd, flags(events), token)
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: RawFd) {
        // Failure means it was not watched: nothing to undo.
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: Token) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: epoll_ctl with our epoll descriptor and a valid event.
        let r = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &raw mut ev) };
        if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// Waits up to `timeout_ms` (0: do not wait) and calls `on` for each report.
    pub fn wait(&mut self, timeout_ms: i32, mut on: impl FnMut(Ready)) -> io::Result<usize> {
        let max = libc::c_int::try_from(self.events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: the kernel writes at most `max` events into our buffer.
        let n = unsafe {
            libc::epoll_wait(self.epoll.as_raw_fd(), self.events.as_mut_ptr(), max, timeout_ms)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        let n = usize::try_from(n).unwrap_or(0);
        let (input, output, error) = (
            flags(libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP),
            flags(libc::EPOLLOUT),
            flags(libc::EPOLLERR),
        );
        for ev in &self.events[..n] {
            let bits = ev.events;
            on(Ready {
                token: ev.u64,
                readable: bits & (input | error) != 0,
                writable: bits & (output | error) != 0,
            });
        }
        Ok(n)
    }
}

/// epoll's flags (C ints, `EPOLLET` the sign bit) as the `u32` of `epoll_event`.
#[expect(clippy::cast_sign_loss, reason = "the same bits, as the u32 the ABI holds")]
const fn flags(f: libc::c_int) -> u32 {
    f as u32
}

/// An eventfd: another thread wakes the shard.
pub struct WakeFd(OwnedFd);

impl WakeFd {
    /// A non-blocking eventfd.
    pub fn new() -> io::Result<WakeFd> {
        // SAFETY: plain eventfd(2).
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(WakeFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wakes the waiting side.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a u64 to our eventfd. A full counter (EAGAIN) still
        // leaves it readable, which is all the shard needs.
        unsafe { libc::write(self.0.as_raw_fd(), std::ptr::from_ref(&one).cast(), 8) };
    }

    /// Clears the wake-up.
    pub fn clear(&self) {
        let mut n: u64 = 0;
        // SAFETY: reading 8 bytes into a u64 from our non-blocking eventfd.
        unsafe { libc::read(self.0.as_raw_fd(), std::ptr::from_mut(&mut n).cast(), 8) };
    }

    /// The descriptor, for the poll set.
    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_is_reported_once_cleared_it_is_not() {
        let mut p = Poller::new(8).unwrap();
        let w = WakeFd::new().unwrap();
        p.add_readable(w.raw_fd(), TOKEN_WAKE).unwrap();
        let mut seen = Vec::new();
        assert_eq!(p.wait(0, |r| seen.push(r)).unwrap(), 0);
        w.wake();
        assert_eq!(p.wait(1000, |r| seen.push(r)).unwrap(), 1);
        assert_eq!(seen, [Ready { token: TOKEN_WAKE, readable: true, writable: false }]);
        w.clear();
        assert_eq!(p.wait(0, |_| {}).unwrap(), 0);
    }

    #[test]
    fn edge_triggered_sockets_report_their_token() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut p = Poller::new(8).unwrap();
        p.add_edge(c.as_raw_fd(), 42).unwrap();
        let mut seen = Vec::new();
        p.wait(1000, |r| seen.push(r)).unwrap();
        assert_eq!(seen.first().map(|r| (r.token, r.writable)), Some((42, true)));
        p.remove(c.as_raw_fd());
        // Edge-triggered and removed: nothing more.
        assert_eq!(p.wait(0, |_| {}).unwrap(), 0);
    }
}
