//! Follows the interface's addresses while `serve` runs.
//!
//! The XDP program answers SYNs only for the addresses in its `LOCAL_ADDRS` map (the
//! interface's own and the `--address` ones); any other destination is dropped
//! (`drop_not_local_destination`), since an answer would spoof it. The loader writes that list
//! when it attaches, but addresses come and go while a shield runs: a service address moved
//! here by keepalived on failover, a DHCP renewal, an IPv6 address leaving its tentative state.
//! Without a follower, SYNs to an address added after the start would go unanswered until a
//! restart.
//!
//! [`AddressWatch`] is a netlink socket subscribed to the kernel's IPv4 and IPv6 address and
//! link notifications (`RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR`, `RTMGRP_LINK`; no capability
//! needed). It is opened before the loader reads the addresses, so that no change between that
//! read and the first wait is missed. On every notification (or a lost one: `ENOBUFS`),
//! [`follow`] reads the interface's addresses again and rewrites the map if the list changed,
//! with one log line.
//!
//! An interface that is deleted, or moved to another network namespace, takes its XDP program
//! with it: nothing is protected any more. [`follow`] then ends, and `serve` exits with one
//! sentence rather than run on, protecting nothing (the systemd unit restarts it, and the
//! restart says whether the interface is back).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use tcp_common::local::LocalAddrs;
use tokio::io::unix::AsyncFd;

use crate::loader::{LocalAddrsWriter, interface_addresses, local_addrs};

/// `RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` (linux/rtnetlink.h).
const ADDRESS_GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// Whether interface `ifindex` exists in the calling thread's network namespace.
#[must_use]
pub fn interface_exists(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: a buffer of IF_NAMESIZE bytes, as if_indextoname requires.
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}

/// The index of interface `name`, if it exists in the calling thread's network namespace.
#[must_use]
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// A netlink socket that becomes readable when any interface's addresses or links change.
#[derive(Debug)]
pub struct AddressWatch {
    fd: OwnedFd,
}

impl AddressWatch {
    /// Subscribes to address changes in the calling thread's network namespace.
    ///
    /// # Errors
    ///
    /// The socket or its subscription failed (a seccomp filter without `AF_NETLINK`, say).
    pub fn open() -> io::Result<AddressWatch> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_nl.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = u16::try_from(libc::AF_NETLINK).unwrap_or(16);
        addr.nl_groups = ADDRESS_GROUPS;
        // SAFETY: our socket and a sockaddr_nl of the size we pass.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast(),
                libc::socklen_t::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(0),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(AddressWatch { fd })
    }

    /// Reads every queued notification; returns whether there was one (or one was lost).
    fn drain(&self) -> io::Result<bool> {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            // SAFETY: our socket and a buffer of the length we pass.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                any = true;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(any),
                Some(libc::EINTR) => {}
                // The kernel dropped notifications (our queue was full): read the list again.
                Some(libc::ENOBUFS) => any = true,
                _ => return Err(e),
            }
        }
    }
}

/// Keeps the XDP program's address list equal to `iface`'s addresses plus `extra`, for as long
/// as the returned future runs. It ends with `Ok` when interface `ifindex` (the one the program
/// is attached to) no longer exists in this namespace. `current` is what the loader wrote. A
/// list that no longer fits the map is logged and the old one kept.
///
/// # Errors
///
/// The netlink socket failed; the list written last stays in force.
pub async fn follow(
    watch: AddressWatch,
    (iface, ifindex): (String, u32),
    extra: Vec<IpAddr>,
    mut writer: LocalAddrsWriter,
    mut current: LocalAddrs,
) -> io::Result<()> {
    // SAFETY: the watch owns its descriptor, which stays open (and is the one `as_raw_fd`
    // returns) until the AsyncFd, which owns the watch, is dropped.
    let watch = unsafe {
        AsyncFd::register_with_interest(watch, tokio::io::Interest::READABLE)
            .map_err(|e| e.into_parts().1)?
    };
    loop {
        let mut ready = watch.readable().await?;
        let changed = ready.get_inner().drain()?;
        ready.clear_ready();
        if !changed {
            continue;
        }
        if !interface_exists(ifindex) {
            return Ok(());
        }
        let found = match interface_addresses(&iface) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(iface, error = %e, "the interface's addresses changed and cannot be read; the previous list stays");
                continue;
            }
        };
        let next = match local_addrs(&found, &extra) {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(iface, error = %e, "the interface's addresses changed and cannot all be protected; the previous list stays");
                continue;
            }
        };
        if next == current {
            continue;
        }
        match writer.write(&next) {
            Ok(()) => {
                tracing::info!(
                    iface,
                    addresses = ?found,
                    "the interface's addresses changed; SYNs are answered for the new list"
                );
                current = next;
            }
            Err(e) => tracing::warn!(iface, error = %e, "writing the new address list failed"),
        }
    }
}

/// What follows the interface's addresses, made before the runtime starts: the subscription,
/// the map writer and the list the loader wrote.
pub struct Follower {
    watch: AddressWatch,
    writer: LocalAddrsWriter,
    current: LocalAddrs,
    ifindex: u32,
}

impl Follower {
    /// `watch` must have been opened before the loader read the addresses it wrote (`current`)
    /// on interface `ifindex`.
    pub fn new(
        watch: AddressWatch,
        writer: LocalAddrsWriter,
        current: LocalAddrs,
        ifindex: u32,
    ) -> Follower {
        Follower { watch, writer, current, ifindex }
    }

    /// Runs [`follow`] on the current tokio runtime. The task ends when the interface is gone
    /// (see [`follow`]), and only then: a netlink failure is logged once, the last list stays
    /// in force, and the task waits for ever.
    pub fn spawn(self, iface: String, extra: Vec<IpAddr>) -> tokio::task::JoinHandle<()> {
        let Follower { watch, writer, current, ifindex } = self;
        tokio::spawn(async move {
            match follow(watch, (iface.clone(), ifindex), extra, writer, current).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(iface, error = %e, "no longer following the interface's addresses; the last list stays");
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

impl std::os::fd::AsRawFd for AddressWatch {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subscription needs no privilege, and with nothing changed there is nothing to read.
    #[test]
    fn loopback_exists_by_name_and_index_and_a_free_index_does_not() {
        let lo = interface_index("lo").expect("every namespace has lo");
        assert!(interface_exists(lo));
        assert!(!interface_exists(u32::MAX));
        assert_eq!(interface_index("no-such-if0"), None);
    }

    #[test]
    fn a_quiet_subscription_reports_no_change() {
        let watch = AddressWatch::open().expect("netlink address subscription");
        assert!(!watch.drain().expect("reading the subscription"));
    }
}
