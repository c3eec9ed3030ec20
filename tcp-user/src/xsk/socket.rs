//! One AF_XDP socket bound to one RX queue, with its own UMEM and four rings.
//!
//! Frames are split in two pools: the RX half lives in the fill ring and comes back through
//! the RX ring (and goes straight back to the fill ring once the frame has been read); the TX
//! half is a free list that [`XskSocket::send_with`] takes from and the completion ring gives
//! back to. So RX can never starve TX of frames, nor the other way round.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use super::ring::{Backing, ConsumerRing, ProducerRing, RingLayout};
use super::umem::Umem;

/// Bytes of XDP metadata the XDP program may put in front of a redirected frame
/// (`tcp_common`'s `RxMeta`).
pub const META_LEN: usize = 32;

/// Most TX kicks per flush: enough for a full ring at 32 frames a kick.
const MAX_KICKS: u32 = 128;

/// How the socket takes frames from the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XskMode {
    /// Zero-copy if the driver supports it, else copy.
    #[default]
    Auto,
    /// The kernel copies frames between the driver and the UMEM (works everywhere, e.g. veth).
    Copy,
    /// The driver DMAs into the UMEM (needs driver support).
    ZeroCopy,
}

/// Sizes of the UMEM and the rings.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Frames in the UMEM, half for RX and half for TX.
    pub frame_count: u32,
    /// Bytes per frame (2048 or 4096).
    pub frame_size: u32,
    /// Descriptors per ring (a power of two, at least `frame_count / 2`).
    pub ring_size: u32,
    /// Copy or zero-copy.
    pub mode: XskMode,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig { frame_count: 4096, frame_size: 4096, ring_size: 2048, mode: XskMode::Auto }
    }
}

/// Counters the kernel keeps for the socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for reasons other than invalid descriptors.
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
}

/// A bound AF_XDP socket.
pub struct XskSocket {
    // Field order is drop order: rings are unmapped before the socket closes and the UMEM goes.
    fill: ProducerRing<u64>,
    completion: ConsumerRing<u64>,
    rx: ConsumerRing<libc::xdp_desc>,
    tx: ProducerRing<libc::xdp_desc>,
    fd: OwnedFd,
    umem: Umem,
    tx_free: Vec<u64>,
    /// Received frames the fill ring had no room for yet. The kernel publishes how far it has
    /// read the fill ring lazily (`cached_cons` in net/xdp/xsk_queue.h: when its cached entries
    /// run out, and at the end of a NAPI poll after the RX entries it produced), so right after
    /// RX entries appear a full fill ring can still look full. Pushed first on the next
    /// [`XskSocket::recv`]; never lost (each lost frame is one less the kernel can receive
    /// into, until every frame is dropped for an empty fill ring).
    fill_backlog: Vec<u64>,
    zero_copy: bool,
    queue: u32,
    /// RX descriptors that pointed outside the UMEM (a kernel bug if ever non-zero).
    bad_descs: u64,
}

impl XskSocket {
    /// Opens a socket on `ifname`'s RX queue `queue` (in the calling thread's network
    /// namespace), registers its UMEM, maps its rings and fills the fill ring.
    pub fn open(ifname: &str, queue: u32, config: &XskConfig) -> io::Result<XskSocket> {
        let ifindex = crate::loader::interface_index(ifname).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}"))
        })?;
        if !config.ring_size.is_power_of_two() || config.ring_size < config.frame_count / 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring size must be a power of two holding at least half the frames",
            ));
        }
        match config.mode {
            XskMode::Copy => Self::open_mode(ifindex, queue, config, false),
            XskMode::ZeroCopy => Self::open_mode(ifindex, queue, config, true),
            XskMode::Auto => Self::open_mode(ifindex, queue, config, true)
                .or_else(|_| Self::open_mode(ifindex, queue, config, false)),
        }
    }

    fn open_mode(
        ifindex: u32,
        queue: u32,
        config: &XskConfig,
        zero_copy: bool,
    ) -> io::Result<XskSocket> {
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Umem::new(config.frame_count, config.frame_size)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: config.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::XDP_UMEM_REG, &reg)?;
        for opt in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            setsockopt(&fd, opt, &config.ring_size)?;
        }
        let off: libc::xdp_mmap_offsets = getsockopt(&fd, libc::XDP_MMAP_OFFSETS)?;
        let size = config.ring_size;
        // SAFETY (all four): each ring is mapped at its page offset with room for `size`
        // descriptors of its type, as the kernel documents; this socket is the only user-space
        // side of each ring.
        let (fill, completion, rx, tx) = unsafe {
            let (l, b) =
                map_ring(&fd, &off.fr, size, size_of::<u64>(), libc::XDP_UMEM_PGOFF_FILL_RING)?;
            let fill = ProducerRing::new(&l, size, b);
            let (l, b) = map_ring(
                &fd,
                &off.cr,
                size,
                size_of::<u64>(),
                libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            )?;
            let completion = ConsumerRing::new(&l, size, b);
            let (l, b) = map_ring(
                &fd,
                &off.rx,
                size,
                size_of::<libc::xdp_desc>(),
                libc::XDP_PGOFF_RX_RING as u64,
            )?;
            let rx = ConsumerRing::new(&l, size, b);
            let (l, b) = map_ring(
                &fd,
                &off.tx,
                size,
                size_of::<libc::xdp_desc>(),
                libc::XDP_PGOFF_TX_RING as u64,
            )?;
            let tx = ProducerRing::new(&l, size, b);
            (fill, completion, rx, tx)
        };
        let sa = libc::sockaddr_xdp {
            sxdp_family: AF_XDP_FAMILY,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP
                | if zero_copy { libc::XDP_ZEROCOPY } else { libc::XDP_COPY },
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: a valid sockaddr_xdp of the size we pass.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&sa).cast(),
                socklen::<libc::sockaddr_xdp>(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let half = config.frame_count / 2;
        let mut sock = XskSocket {
            fill,
            completion,
            rx,
            tx,
            fd,
            tx_free: (half..config.frame_count).map(|i| umem.frame_addr(i)).rev().collect(),
            fill_backlog: Vec::with_capacity(half as usize),
            umem,
            zero_copy,
            queue,
            bad_descs: 0,
        };
        for i in 0..half {
            let pushed = sock.fill.push(sock.umem.frame_addr(i));
            debug_assert!(pushed, "the fill ring holds half the frames");
        }
        sock.fill.publish();
        Ok(sock)
    }

    /// Whether the driver runs the socket in zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The RX queue the socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// RX descriptors that pointed outside the UMEM and were skipped.
    pub fn bad_descs(&self) -> u64 {
        self.bad_descs
    }

    /// Receives up to `budget` frames, calling `on_frame` with the metadata area the XDP
    /// program may have written in front of each frame ([`META_LEN`] bytes, or fewer when the
    /// frame starts closer to its chunk's start) and the frame's bytes. After the call the
    /// metadata's first word is zeroed (chunks are reused, and a frame without metadata must not
    /// show an earlier frame's), and the frame goes back to the fill ring. Returns how many
    /// frames were received.
    pub fn recv(&mut self, budget: usize, mut on_frame: impl FnMut(&[u8], &[u8])) -> usize {
        let mut n = 0;
        let mut refilled = false;
        while let Some(&base) = self.fill_backlog.last() {
            if !self.fill.push(base) {
                break;
            }
            self.fill_backlog.pop();
            refilled = true;
        }
        let frame_size = u64::from(self.umem.frame_size());
        while n < budget {
            let Some(desc) = self.rx.pop() else { break };
            let base = desc.addr - desc.addr % frame_size;
            let meta_len = (desc.addr - base).min(META_LEN as u64);
            let meta_addr = desc.addr - meta_len;
            #[expect(clippy::cast_possible_truncation, reason = "at most META_LEN")]
            let meta_len = meta_len as u32;
            match (self.umem.bytes(meta_addr, meta_len), self.umem.bytes(desc.addr, desc.len)) {
                (Some(meta), Some(frame)) => on_frame(meta, frame),
                _ => self.bad_descs += 1,
            }
            if meta_len >= 4
                && let Some(meta) = self.umem.frame_mut(meta_addr)
            {
                meta[..4].fill(0);
            }
            // Recycle the frame: its base address, whatever offset the kernel used.
            if !self.fill.push(base) {
                self.fill_backlog.push(base);
            }
            n += 1;
        }
        if n > 0 {
            self.rx.release();
        }
        if n > 0 || refilled {
            self.fill.publish();
        }
        if self.fill.needs_wakeup() {
            self.wake_rx();
        }
        n
    }

    /// Lends a free TX frame (the whole chunk) to `write`, which returns where in it the frame
    /// to send starts and how long it is, or `None` to send nothing (the chunk goes back to the
    /// free list). Returns `None`, without calling `write`, when no chunk or TX slot is free
    /// (call [`XskSocket::flush`] and try again later), else `Some` of what `write` returned.
    pub fn send_with<R>(
        &mut self,
        write: impl FnOnce(&mut [u8]) -> Option<(usize, usize, R)>,
    ) -> Option<Option<R>> {
        if self.tx_free.is_empty() {
            self.reclaim();
        }
        if self.tx.free(1) == 0 {
            return None;
        }
        let addr = self.tx_free.pop()?;
        let Some(buf) = self.umem.frame_mut(addr) else {
            self.tx_free.push(addr);
            return None;
        };
        let chunk = buf.len();
        let Some((start, len, r)) = write(buf) else {
            self.tx_free.push(addr);
            return Some(None);
        };
        match (u32::try_from(len), start.checked_add(len)) {
            (Ok(len32), Some(end)) if end <= chunk => {
                let pushed = self.tx.push(libc::xdp_desc {
                    addr: addr + start as u64,
                    len: len32,
                    options: 0,
                });
                debug_assert!(pushed, "checked free above");
                Some(Some(r))
            }
            _ => {
                self.tx_free.push(addr);
                Some(None)
            }
        }
    }

    /// Publishes queued TX frames and kicks the kernel to send them; takes back the frames of
    /// sent ones.
    ///
    /// Copy mode needs a kick (a zero-length `sendto`) and one kick sends at most 32 frames
    /// (`MAX_PER_SOCKET_BUDGET` in net/xdp/xsk.c), so it kicks until the ring is empty or a
    /// kick moved nothing (the device is busy: the frames wait for the next flush). Zero-copy
    /// drivers send on their own and need a kick only when they ask for one.
    pub fn flush(&mut self) {
        self.tx.publish();
        let mut kicks = 0;
        while self.tx.pending() > 0
            && (!self.zero_copy || self.tx.needs_wakeup())
            && kicks < MAX_KICKS
        {
            let before = self.tx.pending();
            // SAFETY: a zero-length send on our socket is AF_XDP's TX doorbell.
            unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                );
            }
            kicks += 1;
            if self.tx.pending() >= before {
                break;
            }
        }
        self.reclaim();
    }

    /// Frames queued for TX and not yet sent.
    pub fn tx_pending(&self) -> u32 {
        self.tx.pending()
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> io::Result<XskStats> {
        let s: libc::xdp_statistics = getsockopt(&self.fd, libc::XDP_STATISTICS)?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
            tx_invalid_descs: s.tx_invalid_descs,
        })
    }

    fn reclaim(&mut self) {
        let mut any = false;
        let frame_size = u64::from(self.umem.frame_size());
        while let Some(addr) = self.completion.pop() {
            // A sent frame may start inside its chunk (headroom): free the chunk.
            self.tx_free.push(addr - addr % frame_size);
            any = true;
        }
        if any {
            self.completion.release();
        }
    }

    fn wake_rx(&self) {
        // SAFETY: a zero-length non-blocking recvfrom is AF_XDP's RX doorbell.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `AF_XDP` (44) as the `u16` a sockaddr wants.
#[expect(clippy::cast_possible_truncation, reason = "AF_XDP is 44")]
const AF_XDP_FAMILY: u16 = libc::AF_XDP as u16;

/// The size of a kernel structure as a `socklen_t`.
#[expect(clippy::cast_possible_truncation, reason = "AF_XDP structures are a few dozen bytes")]
const fn socklen<T>() -> libc::socklen_t {
    size_of::<T>() as libc::socklen_t
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid T of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            std::ptr::from_ref(value).cast(),
            socklen::<T>(),
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn getsockopt<T: Copy>(fd: &OwnedFd, opt: libc::c_int) -> io::Result<T> {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = socklen::<T>();
    // SAFETY: the kernel writes at most `len` bytes into `value`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            value.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<T>() {
        return Err(io::Error::other(
            "the kernel's AF_XDP structures are older than this program expects",
        ));
    }
    // SAFETY: zero-initialised and fully written by the kernel (length checked).
    Ok(unsafe { value.assume_init() })
}

/// # Safety
/// `off` must be the kernel's offsets for the ring at `pgoff` of `fd`.
unsafe fn map_ring(
    fd: &OwnedFd,
    off: &libc::xdp_ring_offset,
    size: u32,
    desc_size: usize,
    pgoff: u64,
) -> io::Result<(RingLayout, Backing)> {
    let len = usize::try_from(off.desc).map_err(io::Error::other)? + size as usize * desc_size;
    // SAFETY: mapping the socket's ring as the AF_XDP ABI prescribes.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            libc::off_t::try_from(pgoff).map_err(io::Error::other)?,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = addr.cast::<u8>();
    let at = |o: u64| -> io::Result<*mut u8> {
        let o = usize::try_from(o).map_err(io::Error::other)?;
        // SAFETY: the kernel's offsets lie inside the mapping.
        Ok(unsafe { base.add(o) })
    };
    let layout = RingLayout {
        producer: at(off.producer)?,
        consumer: at(off.consumer)?,
        flags: at(off.flags)?,
        descs: at(off.desc)?,
    };
    let addr = NonNull::new(addr).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
    Ok((layout, Backing::Mmap { addr, len }))
}
