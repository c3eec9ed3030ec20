//! The single-producer single-consumer rings shared with the kernel (fill, completion, RX, TX).
//!
//! A ring is a power-of-two array of descriptors plus a `producer` and a `consumer` index that
//! run freely (they wrap modulo 2^32; `index & mask` picks the slot). One side only ever
//! writes `producer`, the other only `consumer`. The orderings follow libxdp's `xsk.h`: read
//! the other side's index with Acquire (so the descriptors it published are visible), publish
//! ours with Release (so the descriptors we wrote are visible before the index moves).
//!
//! Each side keeps a cached copy of the other side's index and refreshes it only when the
//! cache says the ring is full (producer) or empty (consumer): one atomic load per batch,
//! not per descriptor.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a ring's memory came from; unmapped (or freed) when the ring is dropped.
pub(crate) enum Backing {
    /// `mmap` of the socket at a ring's page offset.
    Mmap { addr: NonNull<libc::c_void>, len: usize },
    /// Plain memory, for tests of the index logic without a kernel.
    #[cfg(test)]
    Heap { _mem: Box<[u64]> },
}

impl Drop for Backing {
    fn drop(&mut self) {
        match self {
            // SAFETY: `addr`/`len` are exactly what mmap returned; nothing refers to the ring
            // once its owner is dropped.
            Backing::Mmap { addr, len } => unsafe {
                libc::munmap(addr.as_ptr(), *len);
            },
            #[cfg(test)]
            Backing::Heap { .. } => {}
        }
    }
}

/// The pointers into one ring's memory.
pub(crate) struct RingLayout {
    pub producer: *mut u8,
    pub consumer: *mut u8,
    pub flags: *mut u8,
    pub descs: *mut u8,
}

struct Raw<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
    _backing: Backing,
    _marker: PhantomData<T>,
}

// SAFETY: the ring memory is only accessed through `&mut self` methods of the one side that
// owns this value, and the shared indices are atomics.
unsafe impl<T: Send> Send for Raw<T> {}

impl<T: Copy> Raw<T> {
    /// # Safety
    /// `layout` must point into `backing`, at properly aligned `u32` indices and an array of
    /// `size` descriptors `T`, valid for as long as `backing` lives; `size` a power of two.
    unsafe fn new(layout: &RingLayout, size: u32, backing: Backing) -> Raw<T> {
        debug_assert!(size.is_power_of_two());
        let nn = |p: *mut u8| NonNull::new(p).expect("ring pointers are not null");
        Raw {
            producer: nn(layout.producer).cast(),
            consumer: nn(layout.consumer).cast(),
            flags: nn(layout.flags).cast(),
            descs: nn(layout.descs).cast(),
            mask: size - 1,
            size,
            _backing: backing,
            _marker: PhantomData,
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: valid and aligned for the ring's lifetime (constructor contract).
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { self.consumer.as_ref() }
    }

    fn slot(&self, index: u32) -> *mut T {
        // SAFETY: `index & mask` < size, inside the descriptor array.
        unsafe { self.descs.as_ptr().add((index & self.mask) as usize) }
    }
}

/// The side of a ring that adds descriptors (fill and TX for us).
pub struct ProducerRing<T> {
    raw: Raw<T>,
    /// Our next index to publish.
    producer: u32,
    /// The consumer index last read, plus `size`: we may write up to (not including) it.
    limit: u32,
}

impl<T: Copy> ProducerRing<T> {
    /// # Safety
    /// As for the ring's memory in [`Raw::new`]; this side must be the ring's only producer.
    pub(crate) unsafe fn new(layout: &RingLayout, size: u32, backing: Backing) -> Self {
        // SAFETY: forwarded contract.
        let raw = unsafe { Raw::new(layout, size, backing) };
        let producer = raw.producer().load(Ordering::Relaxed);
        let limit = raw.consumer().load(Ordering::Acquire).wrapping_add(size);
        ProducerRing { raw, producer, limit }
    }

    /// How many descriptors can be written now (at most `want`).
    pub fn free(&mut self, want: u32) -> u32 {
        let mut free = self.limit.wrapping_sub(self.producer);
        if free < want {
            self.limit = self.raw.consumer().load(Ordering::Acquire).wrapping_add(self.raw.size);
            free = self.limit.wrapping_sub(self.producer);
        }
        free.min(want)
    }

    /// Writes one descriptor and publishes it; `false` (and nothing written) if the ring is full.
    /// Publication is deferred to [`ProducerRing::publish`] for batching.
    pub fn push(&mut self, desc: T) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        // SAFETY: the slot is ours: between the consumer's index and ours plus one.
        unsafe { self.raw.slot(self.producer).write(desc) };
        self.producer = self.producer.wrapping_add(1);
        true
    }

    /// Makes every pushed descriptor visible to the consumer.
    pub fn publish(&mut self) {
        self.raw.producer().store(self.producer, Ordering::Release);
    }

    /// Whether the kernel asked to be woken (`XDP_USE_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: valid for the ring's lifetime.
        unsafe { self.raw.flags.as_ref() }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Descriptors published and not yet consumed.
    pub fn pending(&self) -> u32 {
        self.producer.wrapping_sub(self.raw.consumer().load(Ordering::Acquire))
    }
}

/// The side of a ring that takes descriptors (completion and RX for us).
pub struct ConsumerRing<T> {
    raw: Raw<T>,
    /// Our next index to read.
    consumer: u32,
    /// The producer index last read: we may read up to (not including) it.
    limit: u32,
}

impl<T: Copy> ConsumerRing<T> {
    /// # Safety
    /// As for the ring's memory in [`Raw::new`]; this side must be the ring's only consumer.
    pub(crate) unsafe fn new(layout: &RingLayout, size: u32, backing: Backing) -> Self {
        // SAFETY: forwarded contract.
        let raw = unsafe { Raw::new(layout, size, backing) };
        let consumer = raw.consumer().load(Ordering::Relaxed);
        let limit = raw.producer().load(Ordering::Acquire);
        ConsumerRing { raw, consumer, limit }
    }

    /// Takes the next descriptor, if any. Its slot is handed back by [`ConsumerRing::release`].
    pub fn pop(&mut self) -> Option<T> {
        if self.limit == self.consumer {
            self.limit = self.raw.producer().load(Ordering::Acquire);
            if self.limit == self.consumer {
                return None;
            }
        }
        // SAFETY: the slot was published by the producer (index below its producer index).
        let desc = unsafe { self.raw.slot(self.consumer).read() };
        self.consumer = self.consumer.wrapping_add(1);
        Some(desc)
    }

    /// Gives every popped slot back to the producer.
    pub fn release(&mut self) {
        self.raw.consumer().store(self.consumer, Ordering::Release);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ring in plain memory: word 0 producer, word 1 consumer, word 2 flags, then `size`
    /// u64 descriptors. Returns both sides, as the kernel and we would hold them.
    pub(crate) fn heap_ring(size: u32) -> (ProducerRing<u64>, ConsumerRing<u64>) {
        heap_ring_at(size, 0)
    }

    /// As [`heap_ring`], with both indices starting at `start`.
    pub(crate) fn heap_ring_at(size: u32, start: u32) -> (ProducerRing<u64>, ConsumerRing<u64>) {
        let make = || {
            let mut mem = vec![0u64; 2 + size as usize].into_boxed_slice();
            // Producer in the low half of word 0, consumer in the high half (little endian).
            mem[0] = u64::from(start) | (u64::from(start) << 32);
            let base = mem.as_mut_ptr().cast::<u8>();
            // SAFETY: offsets inside `mem`.
            let layout = unsafe {
                RingLayout {
                    producer: base,
                    consumer: base.add(4),
                    flags: base.add(8),
                    descs: base.add(16),
                }
            };
            (layout, mem)
        };
        let (layout, mem) = make();
        // Both sides view the same memory: the consumer's backing is a second, unused buffer
        // so the first is freed exactly once (by the producer side).
        let (_, other) = make();
        // SAFETY: `layout` points into `mem`, kept alive by the producer side, and the
        // consumer side is dropped in the same test before the producer side.
        unsafe {
            let p = ProducerRing::new(&layout, size, Backing::Heap { _mem: mem });
            let c = ConsumerRing::new(&layout, size, Backing::Heap { _mem: other });
            (p, c)
        }
    }

    #[test]
    fn fills_to_capacity_then_refuses() {
        let (mut p, c) = heap_ring(8);
        for i in 0..8 {
            assert!(p.push(i), "slot {i}");
        }
        assert!(!p.push(99), "a full ring takes nothing");
        p.publish();
        assert_eq!(p.pending(), 8);
        drop(c);
    }

    #[test]
    fn consumer_sees_only_published_descriptors_in_order() {
        let (mut p, mut c) = heap_ring(4);
        assert!(p.push(10));
        assert!(p.push(11));
        assert_eq!(c.pop(), None, "not published yet");
        p.publish();
        assert_eq!(c.pop(), Some(10));
        assert_eq!(c.pop(), Some(11));
        assert_eq!(c.pop(), None);
        // Until released, the producer still sees the ring as holding two.
        assert_eq!(p.free(4), 2);
        c.release();
        assert_eq!(p.free(4), 4);
    }

    #[test]
    fn indices_wrap_around_u32() {
        // Start just below u32::MAX so the free-running indices wrap during the test.
        let (mut p, mut c) = heap_ring_at(4, u32::MAX - 5);
        assert_eq!(p.free(4), 4);
        for round in 0u64..16 {
            assert!(p.push(round * 2));
            assert!(p.push(round * 2 + 1));
            p.publish();
            assert_eq!(c.pop(), Some(round * 2));
            assert_eq!(c.pop(), Some(round * 2 + 1));
            c.release();
        }
        assert_eq!(p.pending(), 0);
    }
}
