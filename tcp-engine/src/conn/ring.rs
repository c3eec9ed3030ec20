//! The storage under the send and receive buffers: a byte ring that is allocated on first
//! use, grows by doubling up to its buffer's configured size, and gives its memory back
//! when its owner says so.
//!
//! The ring knows no lengths of its own: owners address it by logical offset from its head
//! (offset 0 is the oldest byte they keep), and tell it how much to keep when it grows.
//! Every access clamps to the allocation, so no offset an owner computes can make it panic.

/// Smallest allocation: a full-sized segment (MSS 1460) fits.
const MIN_ALLOC: usize = 2048;

#[derive(Debug, Default)]
pub(crate) struct Ring {
    /// Empty (no allocation) until the first byte arrives, and again after `release`.
    storage: Box<[u8]>,
    /// Index in `storage` of logical offset 0.
    head: usize,
}

impl Ring {
    /// Bytes allocated.
    pub(crate) fn allocated(&self) -> usize {
        self.storage.len()
    }

    /// The storage index of logical `offset` (`offset <= allocated()`).
    fn index(&self, offset: usize) -> usize {
        let i = self.head + offset.min(self.storage.len());
        if i >= self.storage.len() { i - self.storage.len() } else { i }
    }

    /// `[offset, offset + len)`, clamped to the allocation, as the part up to the end of the
    /// storage and the part that wrapped to its start.
    fn split(
        &self,
        offset: usize,
        len: usize,
    ) -> (core::ops::Range<usize>, core::ops::Range<usize>) {
        let cap = self.storage.len();
        let offset = offset.min(cap);
        let len = len.min(cap - offset);
        let start = self.index(offset);
        let first = len.min(cap - start);
        (start..start + first, 0..len - first)
    }

    /// The bytes at `[offset, offset + len)` as one or two slices.
    pub(crate) fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let (a, b) = self.split(offset, len);
        (&self.storage[a], &self.storage[b])
    }

    /// Copies `data` to logical `offset`; returns how many bytes fit in the allocation.
    pub(crate) fn write(&mut self, offset: usize, data: &[u8]) -> usize {
        let (a, b) = self.split(offset, data.len());
        let (n_a, n_b) = (a.len(), b.len());
        self.storage[a].copy_from_slice(&data[..n_a]);
        self.storage[b].copy_from_slice(&data[n_a..n_a + n_b]);
        n_a + n_b
    }

    /// Copies the bytes at logical `offset` into `out`; returns how many were available.
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) -> usize {
        let (a, b) = self.slices(offset, out.len());
        out[..a.len()].copy_from_slice(a);
        out[a.len()..a.len() + b.len()].copy_from_slice(b);
        a.len() + b.len()
    }

    /// The free storage from logical `offset` up to the end of the storage or to the head,
    /// whichever comes first: room to fill in place. `offset` is where the owner's data
    /// ends; nothing past `allocated()` is ever returned.
    pub(crate) fn contiguous_mut(&mut self, offset: usize) -> &mut [u8] {
        let cap = self.storage.len();
        if offset >= cap {
            return &mut [];
        }
        let start = self.index(offset);
        let end = if start >= self.head { cap } else { self.head };
        &mut self.storage[start..end]
    }

    /// Moves the head `n` bytes on (the owner dropped its oldest `n` bytes).
    pub(crate) fn advance(&mut self, n: usize) {
        self.head = self.index(n);
    }

    /// Puts the head back at the start of the storage; only when the owner keeps nothing,
    /// so the next bytes lie in one piece.
    pub(crate) fn rewind(&mut self) {
        self.head = 0;
    }

    /// Makes room for `needed` bytes, allocating or doubling up to `limit`, and keeps the
    /// first `keep` logical bytes. Returns the bytes copied to the new storage.
    pub(crate) fn grow(&mut self, needed: usize, limit: usize, keep: usize) -> usize {
        if needed <= self.storage.len() {
            return 0;
        }
        let target = needed.next_power_of_two().max(MIN_ALLOC).min(limit).max(needed);
        let mut storage = vec![0u8; target].into_boxed_slice();
        let kept = self.read(0, &mut storage[..keep.min(self.storage.len()).min(target)]);
        self.storage = storage;
        self.head = 0;
        kept
    }

    /// Frees the storage.
    pub(crate) fn release(&mut self) {
        self.storage = Box::default();
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_across_the_wrap() {
        let mut ring = Ring::default();
        assert_eq!(ring.allocated(), 0);
        assert_eq!(ring.grow(10, 4096, 0), 0);
        assert_eq!(ring.allocated(), MIN_ALLOC);
        ring.advance(MIN_ALLOC - 3);
        assert_eq!(ring.write(0, b"abcdef"), 6);
        let (a, b) = ring.slices(0, 6);
        assert_eq!((a, b), (&b"abc"[..], &b"def"[..]));
        let mut out = [0u8; 4];
        assert_eq!(ring.read(2, &mut out), 4);
        assert_eq!(&out, b"cdef");
        // Growing keeps the logical bytes, now in one piece.
        assert_eq!(ring.grow(MIN_ALLOC + 1, 1 << 20, 6), 6);
        assert_eq!(ring.allocated(), 2 * MIN_ALLOC);
        assert_eq!(ring.slices(0, 6), (&b"abcdef"[..], &b""[..]));
        ring.release();
        assert_eq!(ring.allocated(), 0);
    }

    #[test]
    fn growth_stops_at_the_limit_and_access_is_clamped() {
        let mut ring = Ring::default();
        ring.grow(3000, 3000, 0);
        assert_eq!(ring.allocated(), 3000);
        assert_eq!(ring.write(2990, &[1; 20]), 10);
        assert_eq!(ring.slices(5000, 10), (&b""[..], &b""[..]));
        assert!(ring.contiguous_mut(3000).is_empty());
        assert_eq!(ring.contiguous_mut(1000).len(), 2000);
    }
}
