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

use crate::loader::{
    LocalAddrsWriter, interface_addresses, interface_exists, interface_mtu, local_addrs,
};

/// `RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` (linux/rtnetlink.h).
const ADDRESS_GROUPS: u32 = 0x1 | 0x10 | 0x100;

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

    /// Reads every queued notification; returns whether one concerned interface `ifindex`
    /// (or one was lost, which may have).
    fn drain(&self, ifindex: u32) -> io::Result<bool> {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            // SAFETY: our socket and a buffer of the length we pass.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if let Ok(n) = usize::try_from(n) {
                any |= concerns(&buf[..n.min(buf.len())], ifindex);
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

/// Whether a datagram of rtnetlink notifications concerns interface `ifindex`: a link or
/// address message for it, or anything that does not parse (then the list is read again,
/// which is always safe). Other interfaces' changes (containers coming and going) cost no
/// re-read. Every message starts with `nlmsghdr` (16 bytes), then `ifinfomsg` or
/// `ifaddrmsg`, both with the interface index at their byte 4.
fn concerns(datagram: &[u8], ifindex: u32) -> bool {
    const HEADER: usize = 16;
    let mut rest = datagram;
    while !rest.is_empty() {
        let Some(len) = rest.first_chunk::<4>().map(|b| u32::from_ne_bytes(*b) as usize) else {
            return true;
        };
        let Some(message) = rest.get(..len).filter(|_| len >= HEADER) else { return true };
        let kind = u16::from_ne_bytes([message[4], message[5]]);
        match kind {
            // RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR.
            16 | 17 | 20 | 21 => {
                let Some(index) = message.get(HEADER + 4..HEADER + 8) else { return true };
                if u32::from_ne_bytes([index[0], index[1], index[2], index[3]]) == ifindex {
                    return true;
                }
            }
            // NLMSG_NOOP, NLMSG_DONE; nothing else is subscribed to.
            1 | 3 => {}
            _ => return true,
        }
        // NLMSG_ALIGN: messages start on 4-byte boundaries.
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    false
}

/// Keeps the XDP program's address list equal to `iface`'s addresses plus `extra`, for as long
/// as the returned future runs. It ends with `Ok` when interface `ifindex` (the one the program
/// is attached to) no longer exists in this namespace. `current` is what the loader wrote. A
/// list that no longer fits the map is logged and the old one kept. A change of the MTU from
/// `mtu` (what the SYN-ACKs' MSS was clamped to) is logged once per change: the MSS follows
/// it only after a restart.
///
/// # Errors
///
/// The netlink socket failed; the list written last stays in force.
pub async fn follow(
    watch: AddressWatch,
    (iface, ifindex, mut mtu): (String, u32, Option<u32>),
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
        let changed = ready.get_inner().drain(ifindex)?;
        ready.clear_ready();
        if !changed {
            continue;
        }
        if !interface_exists(ifindex) {
            return Ok(());
        }
        let now_mtu = interface_mtu(&iface);
        if now_mtu != mtu {
            if let (Some(was), Some(now)) = (mtu, now_mtu) {
                tracing::warn!(
                    iface,
                    was,
                    now,
                    "the interface's MTU changed; SYN-ACKs still advertise the MSS for the old one: restart synshield to apply it"
                );
            }
            mtu = now_mtu;
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
    mtu: Option<u32>,
}

impl Follower {
    /// `watch` must have been opened before the loader read the addresses it wrote (`current`)
    /// on interface `ifindex`, whose MTU the configuration was made for (`mtu`).
    pub fn new(
        watch: AddressWatch,
        writer: LocalAddrsWriter,
        current: LocalAddrs,
        (ifindex, mtu): (u32, Option<u32>),
    ) -> Follower {
        Follower { watch, writer, current, ifindex, mtu }
    }

    /// Runs [`follow`] on the current tokio runtime. The task ends when the interface is gone
    /// (see [`follow`]), and only then: a netlink failure is logged once, the last list stays
    /// in force, and the task waits for ever.
    pub fn spawn(self, iface: String, extra: Vec<IpAddr>) -> tokio::task::JoinHandle<()> {
        let Follower { watch, writer, current, ifindex, mtu } = self;
        tokio::spawn(async move {
            match follow(watch, (iface.clone(), ifindex, mtu), extra, writer, current).await {
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
    fn a_quiet_subscription_reports_no_change() {
        let watch = AddressWatch::open().expect("netlink address subscription");
        assert!(!watch.drain(1).expect("reading the subscription"));
    }

    /// An rtnetlink message of `kind` about interface `index`, `body` bytes after the header.
    fn message(kind: u16, index: u32, body: usize) -> Vec<u8> {
        let len = 16 + body;
        let mut m = vec![0u8; len];
        m[..4].copy_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        if body >= 8 {
            m[20..24].copy_from_slice(&index.to_ne_bytes());
        }
        m
    }

    #[test]
    fn only_messages_about_our_interface_or_unreadable_ones_concern_it() {
        const RTM_NEWLINK: u16 = 16;
        const RTM_DELLINK: u16 = 17;
        const RTM_NEWADDR: u16 = 20;
        const RTM_DELADDR: u16 = 21;
        // Another interface's link and address changes: nothing to read again.
        let mut others = message(RTM_NEWLINK, 9, 16 + 1); // an unaligned length
        others.resize(others.len().next_multiple_of(4), 0);
        others.extend(message(RTM_NEWADDR, 9, 8));
        assert!(!concerns(&others, 3));
        assert!(!concerns(&[], 3));
        // Ours, first or after another's.
        for kind in [RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR] {
            assert!(concerns(&message(kind, 3, 16), 3), "kind {kind}");
            let mut two = others.clone();
            two.extend(message(kind, 3, 8));
            assert!(concerns(&two, 3), "kind {kind} second");
        }
        // Whatever does not parse is read again: short, too long, a body without an index,
        // an unexpected kind.
        assert!(concerns(&[16, 0], 3));
        assert!(concerns(&message(RTM_NEWADDR, 9, 8)[..20], 3));
        assert!(concerns(&message(RTM_NEWADDR, 9, 4), 3));
        let mut zero = message(RTM_NEWADDR, 9, 8);
        zero[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert!(concerns(&zero, 3));
        assert!(concerns(&message(2, 9, 8), 3));
    }
}
