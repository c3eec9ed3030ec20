//! Entries addressed by a stable `u32` index and a generation, for the connection table's
//! connections and TIME-WAIT records.
//!
//! A freed index is reused lowest first, so live entries gather at the front and a table
//! that empties can give the vacant tail back ([`Slab::shrink`]). The generation of an
//! entry is chosen by the owner (the table hands out one counter for all), so a handle to
//! a removed entry never matches whatever takes its index later, even after the tail was
//! truncated and grown again.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug)]
struct Entry<V> {
    generation: u32,
    value: Option<V>,
}

/// Indices above this are refused: the table's index tags TIME-WAIT records with the top
/// bit.
pub(crate) const MAX_INDEX: u32 = (1 << 31) - 1;

#[derive(Debug)]
pub(crate) struct Slab<V> {
    entries: Vec<Entry<V>>,
    /// Vacant indices, lowest on top.
    free: BinaryHeap<Reverse<u32>>,
    len: usize,
    /// Try to shrink once `len` drops to this (halved after every try, so a tail that
    /// cannot shrink is not scanned again and again; an empty slab always shrinks).
    shrink_below: usize,
}

/// Below this many entries a slab never bothers to shrink.
const SHRINK_FLOOR: usize = 64;

impl<V> Default for Slab<V> {
    fn default() -> Slab<V> {
        Slab { entries: Vec::new(), free: BinaryHeap::new(), len: 0, shrink_below: 0 }
    }
}

impl<V> Slab<V> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n.saturating_sub(self.free.len()));
    }

    /// Stores `value`; returns its index, or gives it back when the index space is full.
    pub(crate) fn insert(&mut self, value: V, generation: u32) -> Result<u32, V> {
        let index = if let Some(Reverse(i)) = self.free.pop() {
            i
        } else {
            match u32::try_from(self.entries.len()) {
                Ok(i) if i <= MAX_INDEX => {
                    self.entries.push(Entry { generation, value: None });
                    self.shrink_below = self.entries.len() / 4;
                    i
                }
                _ => return Err(value),
            }
        };
        if let Some(entry) = self.entries.get_mut(index as usize) {
            *entry = Entry { generation, value: Some(value) };
        }
        self.len += 1;
        Ok(index)
    }

    /// The value at `index` if its generation is `generation`.
    pub(crate) fn get(&self, index: u32, generation: u32) -> Option<&V> {
        let entry = self.entries.get(index as usize)?;
        if entry.generation == generation { entry.value.as_ref() } else { None }
    }

    pub(crate) fn get_mut(&mut self, index: u32, generation: u32) -> Option<&mut V> {
        let entry = self.entries.get_mut(index as usize)?;
        if entry.generation == generation { entry.value.as_mut() } else { None }
    }

    /// The value at `index` and its generation, whatever the generation.
    pub(crate) fn at(&self, index: u32) -> Option<(u32, &V)> {
        let entry = self.entries.get(index as usize)?;
        entry.value.as_ref().map(|v| (entry.generation, v))
    }

    pub(crate) fn at_mut(&mut self, index: u32) -> Option<(u32, &mut V)> {
        let entry = self.entries.get_mut(index as usize)?;
        entry.value.as_mut().map(|v| (entry.generation, v))
    }

    /// Takes the value out of `index`.
    pub(crate) fn remove(&mut self, index: u32) -> Option<V> {
        let value = self.entries.get_mut(index as usize)?.value.take()?;
        self.free.push(Reverse(index));
        self.len -= 1;
        Some(value)
    }

    /// Live entries with their index and generation.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u32, &V)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            let v = e.value.as_ref()?;
            Some((u32::try_from(i).ok()?, e.generation, v))
        })
    }

    /// Gives memory back once few entries are left: drops the vacant tail and shrinks the
    /// storage to fit. Cheap to call after every removal.
    pub(crate) fn shrink(&mut self) {
        if self.len > self.shrink_below || self.entries.len() <= SHRINK_FLOOR {
            return;
        }
        while self.entries.last().is_some_and(|e| e.value.is_none()) {
            self.entries.pop();
        }
        let kept = self.entries.len();
        self.free.retain(|&Reverse(i)| (i as usize) < kept);
        self.entries.shrink_to(kept.max(SHRINK_FLOOR));
        self.free.shrink_to_fit();
        self.shrink_below = self.len / 2;
    }

    /// Bytes of memory held.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry<V>>() + self.free.capacity() * size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_index_first_and_stale_generations_refused() {
        let mut slab = Slab::default();
        let a = slab.insert('a', 1).expect("room");
        let b = slab.insert('b', 2).expect("room");
        let c = slab.insert('c', 3).expect("room");
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(slab.remove(b), Some('b'));
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.insert('d', 4), Ok(0), "lowest vacant index first");
        assert_eq!(slab.get(0, 1), None, "the old generation is stale");
        assert_eq!(slab.get(0, 4), Some(&'d'));
        assert_eq!(slab.len(), 2);
    }

    #[test]
    fn an_emptied_slab_gives_its_memory_back() {
        let mut slab = Slab::default();
        for i in 0..10_000 {
            slab.insert(i, i).expect("room");
        }
        let full = slab.heap_bytes();
        for i in (0..10_000).rev() {
            slab.remove(i);
            slab.shrink();
        }
        assert_eq!(slab.len(), 0);
        assert!(slab.heap_bytes() * 20 < full, "{} of {full} bytes kept", slab.heap_bytes());
        // Still usable, and handles from before are stale.
        assert_eq!(slab.insert(7, 20_000), Ok(0));
        assert_eq!(slab.get(0, 0), None);
    }
}
