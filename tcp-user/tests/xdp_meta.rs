//! Where AF_XDP delivers the metadata the XDP program writes with `bpf_xdp_adjust_meta`: in the
//! UMEM, in the 32 bytes right before the frame (`desc.addr - 32 .. desc.addr`), in copy mode,
//! with the program attached in native and in generic mode on a lab veth.
//!
//! The XDP side is the object's metadata probe (`tcp_common::testing::META_PROBE_PROGRAM`),
//! which uses the real program's `write_meta`. The AF_XDP side is a minimal receiver written
//! here on raw syscalls (UMEM, fill and RX rings), because the data path's socket hands out
//! only the frame, not the bytes before it.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

use std::net::UdpSocket;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aya::maps::XskMap;
use aya::programs::{Xdp, XdpMode};
use etherparse::{SlicedPacket, TransportSlice};
use tcp_common::testing::{META_PROBE_MARK, META_PROBE_PORT, META_PROBE_PROGRAM};
use tcp_common::{RxKind, RxMeta, maps};
use tcp_user::lab::{CLIENT_V4, Lab, SHIELD_IF, SHIELD_V4};
use tcp_user::loader;

const FRAMES: u32 = 16;
const FRAME_SIZE: u32 = 4096;

/// One mmapped ring: producer and consumer indices and the descriptors.
struct Ring {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    descs: *mut u8,
    map: (*mut libc::c_void, usize),
}

impl Ring {
    /// # Safety
    /// `fd` is an AF_XDP socket whose ring at `pgoff` has the offsets `off` and `FRAMES`
    /// descriptors of `desc_size` bytes.
    unsafe fn map(fd: &OwnedFd, off: &libc::xdp_ring_offset, desc_size: usize, pgoff: i64) -> Ring {
        let len = usize::try_from(off.desc).unwrap() + FRAMES as usize * desc_size;
        // SAFETY: mapping the socket's ring as the AF_XDP ABI prescribes.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap ring: {}", std::io::Error::last_os_error());
        let at = |o: u64| base.cast::<u8>().wrapping_add(usize::try_from(o).unwrap());
        Ring {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            descs: at(off.desc),
            map: (base, len),
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: inside the mapping, aligned by the kernel, alive as long as `self`.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`.
        unsafe { libc::munmap(self.map.0, self.map.1) };
    }
}

/// A copy-mode AF_XDP socket with a UMEM of `FRAMES` chunks, all given to the fill ring.
struct RawXsk {
    rx: Ring,
    _fill: Ring,
    fd: OwnedFd,
    umem: (*mut u8, usize),
}

// SAFETY: the raw pointers are into mappings owned by this value.
unsafe impl Send for RawXsk {}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, v: &T) {
    // SAFETY: `v` is a valid T of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            std::ptr::from_ref(v).cast(),
            libc::socklen_t::try_from(size_of::<T>()).unwrap(),
        )
    };
    assert_eq!(r, 0, "setsockopt {opt}: {}", std::io::Error::last_os_error());
}

impl RawXsk {
    /// Opens the socket on `ifname` queue 0 (in the calling thread's namespace).
    fn open(ifname: &str) -> RawXsk {
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "AF_XDP socket: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = (FRAMES * FRAME_SIZE) as usize;
        // SAFETY: anonymous private mapping.
        let area = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert_ne!(area, libc::MAP_FAILED);
        let reg = libc::xdp_umem_reg {
            addr: area as u64,
            len: len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::XDP_UMEM_REG, &reg);
        for opt in [libc::XDP_UMEM_FILL_RING, libc::XDP_UMEM_COMPLETION_RING, libc::XDP_RX_RING] {
            setsockopt(&fd, opt, &FRAMES);
        }
        let mut off = std::mem::MaybeUninit::<libc::xdp_mmap_offsets>::zeroed();
        let mut olen = libc::socklen_t::try_from(size_of::<libc::xdp_mmap_offsets>()).unwrap();
        // SAFETY: the kernel writes at most `olen` bytes.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                off.as_mut_ptr().cast(),
                &raw mut olen,
            )
        };
        assert_eq!(r, 0);
        // SAFETY: zero-initialised and written by the kernel.
        let off = unsafe { off.assume_init() };
        // SAFETY: offsets and page offsets from the kernel, FRAMES descriptors each.
        let (fill, rx) = unsafe {
            (
                Ring::map(&fd, &off.fr, 8, i64::try_from(libc::XDP_UMEM_PGOFF_FILL_RING).unwrap()),
                Ring::map(&fd, &off.rx, 16, libc::XDP_PGOFF_RX_RING),
            )
        };
        for i in 0..FRAMES {
            let addr = u64::from(i * FRAME_SIZE);
            // SAFETY: slot i of FRAMES 8-byte descriptors.
            unsafe { fill.descs.add(8 * i as usize).cast::<u64>().write_unaligned(addr) };
        }
        fill.producer().store(FRAMES, Ordering::Release);
        let c_if = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(c_if.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {ifname}");
        let sa = libc::sockaddr_xdp {
            sxdp_family: u16::try_from(libc::AF_XDP).unwrap(),
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: 0,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: a valid sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&sa).cast(),
                libc::socklen_t::try_from(size_of::<libc::sockaddr_xdp>()).unwrap(),
            )
        };
        assert_eq!(r, 0, "bind AF_XDP: {}", std::io::Error::last_os_error());
        RawXsk { rx, _fill: fill, fd, umem: (area.cast(), len) }
    }

    /// Waits for `n` RX descriptors, returns their (addr, len).
    fn recv(&self, n: usize) -> Vec<(u64, u32)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        let mut cons = self.rx.consumer().load(Ordering::Relaxed);
        while got.len() < n && Instant::now() < deadline {
            let prod = self.rx.producer().load(Ordering::Acquire);
            while cons != prod {
                let slot = (cons % FRAMES) as usize;
                // SAFETY: slot < FRAMES, descriptors published by the kernel (Acquire above).
                let d = unsafe {
                    self.rx.descs.add(16 * slot).cast::<libc::xdp_desc>().read_unaligned()
                };
                got.push((d.addr, d.len));
                cons = cons.wrapping_add(1);
            }
            self.rx.consumer().store(cons, Ordering::Release);
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    }

    /// The UMEM bytes of the chunk containing `addr`, split at `addr`: (before, from).
    fn split_chunk(&self, addr: u64) -> (&[u8], &[u8]) {
        let addr = usize::try_from(addr).unwrap();
        let start = addr - addr % FRAME_SIZE as usize;
        assert!(start + FRAME_SIZE as usize <= self.umem.1);
        // SAFETY: inside the UMEM mapping; the kernel no longer writes a chunk it handed us.
        let chunk =
            unsafe { std::slice::from_raw_parts(self.umem.0.add(start), FRAME_SIZE as usize) };
        chunk.split_at(addr - start)
    }
}

impl Drop for RawXsk {
    fn drop(&mut self) {
        // SAFETY: exactly the UMEM mapping. The socket still has it registered until its fd
        // closes right after this; nothing is received in between (the test is over).
        unsafe { libc::munmap(self.umem.0.cast(), self.umem.1) };
    }
}

fn metadata_arrives_before_the_frame(mode: XdpMode) {
    let lab = Lab::new().unwrap();
    let (_ebpf, xsk) = lab
        .shield
        .enter(|| {
            let mut ebpf = loader::load(loader::XDP_OBJECT).unwrap();
            let xsk = RawXsk::open(SHIELD_IF);
            let mut xsks = XskMap::try_from(ebpf.map_mut(maps::XSKS).unwrap()).unwrap();
            xsks.set(0, xsk.fd.as_raw_fd(), 0).unwrap();
            let prog: &mut Xdp = ebpf.program_mut(META_PROBE_PROGRAM).unwrap().try_into().unwrap();
            prog.load().unwrap();
            prog.attach(SHIELD_IF, mode).unwrap();
            (ebpf, xsk)
        })
        .unwrap();
    let payloads: Vec<Vec<u8>> = [1usize, 100, 1000].iter().map(|n| vec![0x42; *n]).collect();
    lab.client
        .enter(|| {
            let udp = UdpSocket::bind((CLIENT_V4, 0)).unwrap();
            for p in &payloads {
                udp.send_to(p, (SHIELD_V4, META_PROBE_PORT)).unwrap();
            }
        })
        .unwrap();
    let descs = xsk.recv(payloads.len());
    assert_eq!(descs.len(), payloads.len(), "every datagram reached the socket: {descs:?}");
    for ((addr, len), payload) in descs.iter().zip(&payloads) {
        let (before, rest) = xsk.split_chunk(*addr);
        let frame = &rest[..*len as usize];
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(TransportSlice::Udp(udp)) = p.transport else { panic!("not UDP: {p:?}") };
        assert_eq!(udp.payload(), payload.as_slice());
        let (kind, flow) = RxMeta::read(before)
            .unwrap_or_else(|| panic!("no metadata before the frame at {addr}: {before:02x?}"));
        assert_eq!(kind, RxKind::Flow);
        assert_eq!((flow.server_isn, flow.client_isn, flow.queue), (*len, META_PROBE_MARK, 0));
        // The kernel puts RX frames XDP_PACKET_HEADROOM (256) into the chunk (UMEM headroom 0).
        assert_eq!(before.len(), 256, "frame offset in its chunk");
    }
}

#[test]
fn metadata_arrives_before_the_frame_native_copy_mode() {
    metadata_arrives_before_the_frame(XdpMode::Driver);
}

#[test]
fn metadata_arrives_before_the_frame_generic_copy_mode() {
    metadata_arrives_before_the_frame(XdpMode::Skb);
}
