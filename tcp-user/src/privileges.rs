//! Giving up privileges once `serve` is set up.
//!
//! Root (or CAP_BPF, CAP_NET_ADMIN, ...) is needed to load and attach the XDP program, open the
//! AF_XDP sockets and bind a low port. After that, everything synshield does goes through
//! descriptors it already holds: the maps (`bpf(2)` on a map descriptor), the AF_XDP sockets,
//! the metrics listener, and outgoing connections to a proxy's backend, which need nothing.
//! So, before any other thread exists, [`drop_capabilities`] makes the process keep nothing:
//! no effective, permitted, inheritable or ambient capability, an empty bounding set, and
//! `no_new_privs` (nothing it executes could gain any back). Threads started afterwards (the
//! shards, the async runtime) inherit that.
//!
//! One exception, by kernel: before Linux 6.5, with unprivileged BPF disabled (Debian's
//! default), every `bpf(2)` command needed CAP_BPF, map updates through a descriptor included;
//! 6.5 moved that check into map creation and program loading. On an older kernel CAP_BPF is
//! kept, and nothing else.
//!
//! The user ID stays 0: files the process opens later (a fleet key file on SIGHUP) are root's.

use std::io;

/// `CAP_BPF` (include/uapi/linux/capability.h).
pub const CAP_BPF: u32 = 39;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets, two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The capabilities to keep on this kernel (see the module docs).
#[must_use]
pub fn capabilities_to_keep() -> Vec<u32> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if kernel_at_least(&release, 6, 5) { Vec::new() } else { vec![CAP_BPF] }
}

/// Whether a kernel release string (`6.18.44-...`) is at least `major.minor`.
fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        // Unreadable: keep what an old kernel needs.
        _ => false,
    }
}

/// Drops every capability but `keep` from this thread (and so from every thread started
/// after it) and sets `no_new_privs`. Call it before starting other threads. Returns the
/// effective set it leaves, as `/proc/thread-self/status` shows it.
pub fn drop_capabilities(keep: &[u32]) -> io::Result<u64> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(63)
        .min(63);
    for cap in (0..=last).filter(|c| !keep.contains(c)) {
        // Needs CAP_SETPCAP, which is dropped last (below). Without it (a service manager
        // already narrowed the bounding set) this fails and the manager's set stands.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    }
    // SAFETY: prctl with integer arguments only; fails harmlessly on kernels without ambient
    // capabilities (before 4.3), which then have none.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::c_ulong::try_from(libc::PR_CAP_AMBIENT_CLEAR_ALL).unwrap_or(4),
            0,
            0,
            0,
        )
    };
    let mut data = [CapData::default(); 2];
    for &cap in keep.iter().filter(|c| **c < 64) {
        let word = &mut data[(cap / 32) as usize];
        word.effective |= 1 << (cap % 32);
        word.permitted |= 1 << (cap % 32);
    }
    let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    // SAFETY: capset(2) with a version 3 header and the two data words that version needs.
    let r = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    effective_capabilities()
}

/// This thread's effective capability set.
pub fn effective_capabilities() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| io::Error::other("no CapEff in /proc/thread-self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_compare() {
        assert!(kernel_at_least("6.18.44-fc-v669", 6, 5));
        assert!(kernel_at_least("6.5.0", 6, 5));
        assert!(!kernel_at_least("6.4.16-arch1", 6, 5));
        assert!(!kernel_at_least("5.15.0-91-generic", 6, 5));
        assert!(kernel_at_least("7.0", 6, 5));
        assert!(!kernel_at_least("garbage", 6, 5));
    }

    #[test]
    fn a_thread_that_drops_everything_keeps_nothing() {
        // On a thread of its own: capabilities are per thread, so the test process keeps its.
        let (eff, bpf) = std::thread::spawn(|| {
            let eff = drop_capabilities(&[]).expect("dropping capabilities");
            // SAFETY: prctl with integer arguments only.
            let no_new_privs = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
            assert_eq!(no_new_privs, 1);
            (eff, effective_capabilities().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!((eff, bpf), (0, 0));
    }
}
