//! The UMEM: one anonymous memory area, cut into equal frames, that the kernel and we share.
//! Descriptors name a frame by its byte offset in the area ("address").

use std::io;
use std::ptr::NonNull;

/// The frame area.
pub struct Umem {
    area: NonNull<u8>,
    len: usize,
    frame_size: u32,
    frame_count: u32,
}

// SAFETY: the area is plain memory owned by this value; access goes through `&self`/`&mut self`.
unsafe impl Send for Umem {}

impl Umem {
    /// Maps `frame_count` frames of `frame_size` bytes (a power of two from 2048 to the page
    /// size, as the kernel requires for aligned chunks).
    pub fn new(frame_count: u32, frame_size: u32) -> io::Result<Umem> {
        if !frame_size.is_power_of_two() || !(2048..=4096).contains(&frame_size) || frame_count == 0
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UMEM frames must be 2048 or 4096 bytes, and at least one",
            ));
        }
        let len = frame_count as usize * frame_size as usize;
        // SAFETY: anonymous private mapping; no file, no aliasing.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let area =
            NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Umem { area, len, frame_size, frame_count })
    }

    /// Start of the area, for `XDP_UMEM_REG`.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.area.as_ptr()
    }

    /// Size of the area in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the area is empty (never: `new` refuses zero frames).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Number of frames.
    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// Address of frame `i`.
    pub fn frame_addr(&self, i: u32) -> u64 {
        u64::from(i) * u64::from(self.frame_size)
    }

    /// The `len` bytes at `addr`, if they lie inside one frame. Addresses come from the
    /// kernel's descriptors, so they are checked, never trusted.
    pub fn bytes(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let (start, len) = self.check(addr, len)?;
        // SAFETY: inside the mapping (checked); shared borrow of self.
        Some(unsafe { std::slice::from_raw_parts(self.area.as_ptr().add(start), len) })
    }

    /// The whole frame containing `addr`, writable, from `addr` to the frame's end.
    pub fn frame_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let within = u32::try_from(addr % u64::from(self.frame_size)).ok()?;
        let (start, len) = self.check(addr, self.frame_size - within)?;
        // SAFETY: inside the mapping (checked); exclusive borrow of self.
        Some(unsafe { std::slice::from_raw_parts_mut(self.area.as_ptr().add(start), len) })
    }

    fn check(&self, addr: u64, len: u32) -> Option<(usize, usize)> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len as usize)?;
        let frame_end = (start / self.frame_size as usize + 1) * self.frame_size as usize;
        (end <= self.len && end <= frame_end).then_some((start, len as usize))
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`.
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_bounded() {
        let mut u = Umem::new(4, 2048).unwrap();
        assert_eq!(u.len(), 8192);
        assert_eq!(u.frame_addr(3), 6144);
        u.frame_mut(2048).unwrap()[..3].copy_from_slice(b"abc");
        assert_eq!(u.bytes(2048, 3).unwrap(), b"abc");
        assert_eq!(u.frame_mut(2048 + 100).unwrap().len(), 2048 - 100);
        // Past the area, across a frame boundary, or overflowing: refused, not read.
        assert!(u.bytes(8192, 1).is_none());
        assert!(u.bytes(2047, 2).is_none());
        assert!(u.bytes(u64::MAX, 2).is_none());
        assert!(u.frame_mut(8192).is_none());
    }

    #[test]
    fn sizes_are_checked() {
        assert!(Umem::new(4, 1000).is_err());
        assert!(Umem::new(0, 2048).is_err());
        assert!(Umem::new(4, 8192).is_err());
    }
}
