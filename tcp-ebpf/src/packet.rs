//! Packet memory: loads and stores at offsets from `ctx.data()`, and the bounds checks the
//! verifier needs.
//!
//! Verifier notes:
//! - Callers do one bounds check over a whole header block (`in_bounds(data, end, N)`) and then
//!   access fixed offsets below `N`: per-field checks were reordered by LLVM and rejected.
//! - Offsets are compile-time constants (the frame layout is a const generic, see
//!   `main.rs`), so every access is `data + const`, which the verifier tracks exactly.
//! - Packet loads and stores are single 16-, 32- or 64-bit BPF instructions through typed
//!   pointers, although packet data is not aligned (the IP header sits at offset 14). With
//!   `read_unaligned` / `write_unaligned`, LLVM's BPF backend splits every access into single
//!   bytes (350 of the 1065 instructions of the SYN-ACK writer were byte stores). The x86-64 JIT
//!   does unaligned accesses natively and the verifier checks the alignment of packet accesses
//!   only under strict alignment, which x86 does not use. (LLVM 22's
//!   `+allows-misaligned-mem-access` would do the same for all memory, but then LLVM also
//!   widened accesses to stack structs of 2-byte alignment, and the verifier requires aligned
//!   stack accesses.) Only this module accesses the packet, and only on the BPF target.

use aya_ebpf::{
    bindings::xdp_md,
    helpers::{bpf_csum_diff, bpf_xdp_adjust_meta, bpf_xdp_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use tcp_common::{
    FlowValue, RxMeta,
    checksum::Sum,
    wire::frame::{FrameBytes, FrameBytesMut},
    wire::options::{MAX_OPTIONS_LEN, OPTIONS_BUF_LEN},
};

/// The frame as the shared dissector's byte source: packet pointers read once from the
/// context (again after every helper that moves them: `bpf_xdp_adjust_tail`, `_meta`).
#[derive(Clone, Copy)]
pub struct XdpFrame {
    data: usize,
    end: usize,
}

impl XdpFrame {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> XdpFrame {
        XdpFrame { data: ctx.data(), end: ctx.data_end() }
    }

    /// The first byte's address, for accesses at `data + offset` below a checked length.
    #[inline(always)]
    pub fn data(&self) -> usize {
        self.data
    }
}

impl FrameBytes for XdpFrame {
    #[inline(always)]
    fn has(&self, n: usize) -> bool {
        in_bounds(self.data, self.end, n)
    }

    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.end - self.data
    }

    #[inline(always)]
    unsafe fn u8_at(&self, at: usize) -> u8 {
        // SAFETY: the caller checked `has(at + 1)`.
        unsafe { load8(self.data + at) }
    }

    #[inline(always)]
    unsafe fn be16_at(&self, at: usize) -> u16 {
        // SAFETY: the caller checked `has(at + 2)`.
        unsafe { load_be16(self.data + at) }
    }

    #[inline(always)]
    unsafe fn be32_at(&self, at: usize) -> u32 {
        // SAFETY: the caller checked `has(at + 4)`.
        unsafe { load_be32(self.data + at) }
    }

    #[inline(always)]
    unsafe fn be64_at(&self, at: usize) -> u64 {
        // SAFETY: the caller checked `has(at + 8)`.
        unsafe { load_be64(self.data + at) }
    }

    #[inline(always)]
    fn be32_var(&self, off: usize) -> Option<u32> {
        let p = self.data + off;
        if p + 4 > self.end {
            return None;
        }
        // SAFETY: 4 bytes at `p` checked.
        Some(unsafe { load_be32(p) })
    }

    #[inline(always)]
    fn be64_var(&self, off: usize) -> Option<u64> {
        let p = self.data + off;
        if p + 8 > self.end {
            return None;
        }
        // SAFETY: 8 bytes at `p` checked.
        Some(unsafe { load_be64(p) })
    }
}

impl FrameBytesMut for XdpFrame {
    #[inline(always)]
    unsafe fn set_be16(&mut self, at: usize, v: u16) {
        // SAFETY: the caller checked `has(at + 2)`.
        unsafe { store_be16(self.data + at, v) }
    }

    #[inline(always)]
    unsafe fn set_be32(&mut self, at: usize, v: u32) {
        // SAFETY: the caller checked `has(at + 4)`.
        unsafe { store_be32(self.data + at, v) }
    }

    #[inline(always)]
    unsafe fn set_be64(&mut self, at: usize, v: u64) {
        // SAFETY: the caller checked `has(at + 8)`.
        unsafe { store_be64(self.data + at, v) }
    }
}

/// Whether `[data, data + len)` is inside the frame.
#[inline(always)]
pub fn in_bounds(data: usize, end: usize, len: usize) -> bool {
    data + len <= end
}

/// Byte at `p`. Caller: `p` is inside the frame.
#[inline(always)]
pub unsafe fn load8(p: usize) -> u8 {
    // SAFETY: the caller checked the bounds.
    unsafe { *(p as *const u8) }
}

/// Big-endian `u16` at `p`. Caller: `[p, p + 2)` is inside the frame.
#[inline(always)]
pub unsafe fn load_be16(p: usize) -> u16 {
    // SAFETY: the caller checked the bounds; a packet access, see the module docs.
    u16::from_be(unsafe { core::ptr::read(p as *const u16) })
}

/// Big-endian `u32` at `p`. Caller: `[p, p + 4)` is inside the frame.
#[inline(always)]
pub unsafe fn load_be32(p: usize) -> u32 {
    // SAFETY: as `load_be16`.
    u32::from_be(unsafe { core::ptr::read(p as *const u32) })
}

/// Big-endian `u64` at `p`. Caller: `[p, p + 8)` is inside the frame.
#[inline(always)]
pub unsafe fn load_be64(p: usize) -> u64 {
    // SAFETY: as `load_be16`.
    u64::from_be(unsafe { core::ptr::read(p as *const u64) })
}

/// Stores a big-endian `u64` at `p`. Caller: `[p, p + 8)` is inside the frame.
#[inline(always)]
pub unsafe fn store_be64(p: usize, v: u64) {
    // SAFETY: as `load_be16`.
    unsafe { core::ptr::write(p as *mut u64, v.to_be()) }
}

/// Stores a big-endian `u16` at `p`. Caller: `[p, p + 2)` is inside the frame.
#[inline(always)]
pub unsafe fn store_be16(p: usize, v: u16) {
    // SAFETY: as `load_be16`.
    unsafe { core::ptr::write(p as *mut u16, v.to_be()) }
}

/// Stores a big-endian `u32` at `p`. Caller: `[p, p + 4)` is inside the frame.
#[inline(always)]
pub unsafe fn store_be32(p: usize, v: u32) {
    // SAFETY: as `load_be16`.
    unsafe { core::ptr::write(p as *mut u32, v.to_be()) }
}

/// Swaps the two MAC addresses of the Ethernet header at `p` (a 4- and a 2-byte access each).
/// Caller: the 12 bytes are inside the frame.
#[inline(always)]
pub unsafe fn swap_macs(p: usize) {
    // SAFETY: as `load_be16`.
    unsafe {
        let (d0, d1) = (core::ptr::read(p as *const u32), core::ptr::read((p + 4) as *const u16));
        let (s0, s1) =
            (core::ptr::read((p + 6) as *const u32), core::ptr::read((p + 10) as *const u16));
        core::ptr::write(p as *mut u32, s0);
        core::ptr::write((p + 4) as *mut u16, s1);
        core::ptr::write((p + 6) as *mut u32, d0);
        core::ptr::write((p + 10) as *mut u16, d1);
    }
}

/// The TCP options area, copied out of the packet: parsing then reads plain memory at masked
/// offsets instead of packet memory behind a bounds check per byte.
///
/// Verifier notes: per-byte packet checks in the parser were rewritten by LLVM into
/// `data_end - 4` (pointer arithmetic on `pkt_end`, refused). A copy in ten bounds-checked
/// word steps split every path eleven ways by options length and packet range, and the
/// verifier then explored all that follows eleven times. `bpf_xdp_load_bytes` copies the
/// variable length in one helper call, and the checksum sums the zero-padded buffer without
/// looking at the length. The buffer is a per-CPU map slot, not the stack: the SYN path's
/// frames already come close to the 512-byte limit.
pub struct OptionsArea {
    /// The options, zero-padded (zero is End of Option List): a per-CPU map slot.
    pub bytes: *mut [u8; OPTIONS_BUF_LEN],
    /// Ones'-complement sum of the options words (for the segment checksum).
    pub sum: Sum,
}

/// Copies `len` bytes of options (at most 40) from frame offset `offset` into `buf`. `None`
/// if the frame ends first.
#[inline(always)]
pub fn load_options(
    ctx: &XdpContext,
    buf: *mut [u8; OPTIONS_BUF_LEN],
    offset: usize,
    len: usize,
) -> Option<OptionsArea> {
    if len > MAX_OPTIONS_LEN {
        return None;
    }
    // SAFETY: `buf` is this CPU's map slot of 64 bytes.
    unsafe { buf.write([0; OPTIONS_BUF_LEN]) };
    if len > 0 {
        // SAFETY: `buf` has room for 64 bytes; `len` is between 1 and 40.
        #[expect(clippy::cast_possible_truncation, reason = "offset < 128, len <= 40")]
        let r = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, buf.cast(), len as u32) };
        if r != 0 {
            return None;
        }
    }
    // Five aligned 8-byte loads (byte-wise, LLVM spilled all forty bytes to the stack).
    let mut sum = Sum::default();
    let words = buf.cast::<u64>();
    for i in 0..MAX_OPTIONS_LEN / 8 {
        // SAFETY: within the 64-byte slot, which map memory aligns to 8.
        let w = u64::from_be(unsafe { words.add(i).read() });
        sum = sum.add32((w >> 32) as u32).add32(w as u32);
    }
    Some(OptionsArea { bytes: buf, sum })
}

/// Bytes of payload summed per step: `bpf_csum_diff`'s limit (net/core/filter.c).
const PAYLOAD_CHUNK: usize = 512;
/// Steps: 4 KiB, more than a single-buffer XDP frame holds (the program does not take
/// multi-buffer frames).
const MAX_PAYLOAD_CHUNKS: usize = 8;

/// Per-CPU buffer for one chunk of payload being summed (see [`payload_sum`]); 8 bytes more
/// than a chunk, see the verifier note there.
#[map(name = "SYNSHIELD_PAYLOAD")]
static PAYLOAD_BUF: PerCpuArray<[u8; PAYLOAD_CHUNK + 8]> = PerCpuArray::with_max_entries(1, 0);

/// Ones'-complement sum of the `len` bytes of payload at frame offset `offset` (a trailing odd
/// byte padded with zero, as RFC 1071 pads), for the checksum of a third ACK that carries data.
/// `None` if the frame ends first or is longer than a single-buffer frame can be.
///
/// Each 512-byte chunk is copied out (`bpf_xdp_load_bytes`, one call for a variable length)
/// and summed by `bpf_csum_diff`, which adds words as they sit in memory (little-endian here):
/// a ones'-complement sum is byte-order independent up to swapping the bytes of the folded
/// result (RFC 1071 section 2(B)), so each chunk's folded sum is swapped into network order.
/// Chunks are even in length, so their 16-bit words line up with the segment's. The result
/// of `bpf_csum_diff` is folded here whatever its width (32 bits before Linux 6.13, 16 after).
///
/// A *global* BPF function (see `synshield_tcp_options` in options.rs): verified once, on its
/// own; a static subprogram was verified again for each of the twelve ACK paths that call it
/// (more than the rest of the program). It returns the folded sum, or [`PAYLOAD_SUM_FAILED`].
///
/// Verifier notes: LLVM tests the loop's end on `done` and `len`, two registers, so the
/// verifier does not learn that a chunk's length is at least 1 (`bpf_xdp_load_bytes` refuses a
/// possibly zero size). The length is read back through a volatile load, which LLVM cannot
/// see through, and mapped onto 1..=512 by arithmetic the verifier follows. Rounded up to whole
/// words its bound is 515 for the verifier (it bounds `x & !3` by `x`), hence the 8 spare
/// bytes of the buffer.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synshield_payload_sum(ctx: *mut xdp_md, offset: u64, len: u64) -> u64 {
    match payload_sum_inner(ctx, offset, len) {
        Some(s) => u64::from(s.fold()),
        None => PAYLOAD_SUM_FAILED,
    }
}

/// [`synshield_payload_sum`]'s answer when the payload could not be read.
pub const PAYLOAD_SUM_FAILED: u64 = u64::MAX;

/// The sum of the payload (see [`synshield_payload_sum`]).
#[inline(always)]
pub fn payload_sum(ctx: &XdpContext, offset: usize, len: usize) -> Option<Sum> {
    if len == 0 {
        return Some(Sum::default());
    }
    let r = synshield_payload_sum(ctx.ctx, offset as u64, len as u64);
    if r == PAYLOAD_SUM_FAILED {
        return None;
    }
    Some(Sum(r))
}

#[inline(always)]
fn payload_sum_inner(ctx: *mut xdp_md, offset: u64, len: u64) -> Option<Sum> {
    if ctx.is_null() || len > (PAYLOAD_CHUNK * MAX_PAYLOAD_CHUNKS) as u64 || offset > 0xffff {
        return None;
    }
    #[expect(clippy::cast_possible_truncation, reason = "both checked just above")]
    let (offset, len) = (offset as usize, len as usize);
    let buf = PAYLOAD_BUF.get_ptr_mut(0)?;
    let mut sum = Sum::default();
    let mut done = 0;
    for _ in 0..MAX_PAYLOAD_CHUNKS {
        let left = len - done;
        if left == 0 {
            break;
        }
        let n = if left > PAYLOAD_CHUNK { PAYLOAD_CHUNK } else { left };
        // SAFETY: a read of a local.
        let n = (unsafe { core::ptr::read_volatile(&raw const n) }.wrapping_sub(1)
            & (PAYLOAD_CHUNK - 1))
            + 1;
        // The word the chunk ends in is zeroed first, so the copy leaves zero padding up to a
        // whole word, which `bpf_csum_diff` needs.
        let last_word = (n - 1) & (PAYLOAD_CHUNK - 4);
        // SAFETY: `last_word` is a multiple of 4 and at most 508: an aligned word of the slot.
        unsafe { buf.cast::<u8>().add(last_word).cast::<u32>().write(0) };
        #[expect(clippy::cast_possible_truncation, reason = "below 64 KiB + 4 KiB; at most 512")]
        // SAFETY: `buf` has room for `n` (1 to 512) bytes.
        let r = unsafe { bpf_xdp_load_bytes(ctx, (offset + done) as u32, buf.cast(), n as u32) };
        if r != 0 {
            return None;
        }
        #[expect(clippy::cast_possible_truncation, reason = "at most 512")]
        let words = ((n + 3) & !3) as u32;
        // SAFETY: `buf` holds `words` (4 to 512) bytes; NULL with size 0 for `from` is allowed.
        let c = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf.cast(), words, 0) };
        if c < 0 {
            return None;
        }
        #[expect(clippy::cast_sign_loss, reason = "checked above")]
        let folded = Sum(c as u64 & 0xffff_ffff).fold();
        sum = sum.add16(folded.swap_bytes());
        done += n;
    }
    Some(sum)
}

/// Puts an [`RxMeta`] (`tag`, `flow`) in front of the frame (`bpf_xdp_adjust_meta`), for
/// AF_XDP to copy into the UMEM right before the frame (see `tcp_common::meta`). False if the
/// kernel refused (no headroom, or a driver without metadata support): the frame then goes
/// without. `flow` is copied straight from where it is (the flow map's value, on the FLOW
/// path) into the metadata.
///
/// Verifier note: the helper invalidates every packet pointer, so the metadata and data
/// pointers are read from the context again and the area checked before the store.
#[inline(always)]
pub fn write_meta(ctx: &XdpContext, tag: u32, flow: &FlowValue) -> bool {
    #[expect(clippy::cast_possible_truncation, clippy::cast_possible_wrap, reason = "32")]
    const GROW: i32 = -(RxMeta::LEN as i32);
    // SAFETY: the helper only needs the context pointer the kernel gave us.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, GROW) } != 0 {
        return false;
    }
    let (m, data) = (ctx.metadata(), ctx.data());
    if m + RxMeta::LEN > data {
        return false;
    }
    // SAFETY: the 32 bytes before `data` are the metadata area just made (checked above); a
    // packet access, see the module docs. `RxMeta` is `tag` then `flow`.
    unsafe {
        core::ptr::write(m as *mut u32, tag);
        core::ptr::copy_nonoverlapping(flow, (m + 4) as *mut FlowValue, 1);
    }
    true
}
