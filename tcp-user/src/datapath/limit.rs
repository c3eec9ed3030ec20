//! Connections per source address, across every shard: `--max-conns-per-source`.
//!
//! RSS spreads one source's connections over all RX queues, so the count must be global, yet
//! shards share no lock on the packet path. A count-min sketch of atomic counters does both:
//! two rows of 2^16 counters, each indexed by a keyed hash of the source address (the key is
//! random per process: sources are chosen by whoever sends, and must not aim at each other's
//! counters). A source's count is the smaller of its two counters; it can only be too high
//! (when other sources share both counters), never too low, so a source is never let past the
//! limit, and a legitimate one is wrongly refused only if two busy sources collide in both
//! rows (about one in 2^32 for a given pair). Admitting and releasing are two atomic
//! additions each.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

const BITS: u32 = 16;
const WIDTH: usize = 1 << BITS;
const ROWS: usize = 4;

/// The shared counts; every shard holds an `Arc` of it.
pub struct SourceLimit {
    limit: u32,
    rows: [Box<[AtomicU32]>; ROWS],
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for SourceLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLimit").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl SourceLimit {
    /// At most `limit` open connections per source address.
    #[must_use]
    pub fn new(limit: u32) -> SourceLimit {
        let row = || (0..WIDTH).map(|_| AtomicU32::new(0)).collect::<Box<[AtomicU32]>>();
        SourceLimit {
            limit,
            rows: [row(), row(), row(), row()],
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The source's counter in each row: 16 bits each of one 64-bit keyed hash.
    fn counters(&self, source: IpAddr) -> [&AtomicU32; ROWS] {
        let mut h = self.hasher.build_hasher();
        match source {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        let v = h.finish();
        std::array::from_fn(|row| {
            let slot = usize::try_from((v >> (BITS as usize * row)) & (WIDTH as u64 - 1));
            &self.rows[row][slot.unwrap_or(0)]
        })
    }

    /// Counts one more connection from `source`, unless it holds `limit` already: then
    /// `false`, and nothing is counted.
    pub fn try_admit(&self, source: IpAddr) -> bool {
        let counters = self.counters(source);
        // Count first, then look at every counter: shards racing for the last place may all
        // be refused, but none admitted past the limit.
        for c in counters {
            c.fetch_add(1, Ordering::AcqRel);
        }
        if min(counters) > self.limit {
            self.release(source);
            return false;
        }
        true
    }

    /// One connection from `source` (admitted by [`SourceLimit::try_admit`]) ended.
    pub fn release(&self, source: IpAddr) {
        for c in self.counters(source) {
            // Never below zero, whatever the order of concurrent releases.
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    /// The estimate for `source` (at least its true count).
    #[must_use]
    pub fn count(&self, source: IpAddr) -> u32 {
        min(self.counters(source))
    }
}

fn min(counters: [&AtomicU32; ROWS]) -> u32 {
    counters.iter().map(|c| c.load(Ordering::Acquire)).min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_source_stops_at_its_limit_and_others_do_not() {
        let l = SourceLimit::new(3);
        let a: IpAddr = "198.18.0.10".parse().unwrap();
        let b: IpAddr = "2001:2::10".parse().unwrap();
        assert!((0..3).all(|_| l.try_admit(a)));
        assert!(!l.try_admit(a), "the fourth is refused");
        assert_eq!(l.count(a), 3);
        assert!(l.try_admit(b), "another source is not");
        l.release(a);
        assert!(l.try_admit(a), "a release makes room again");
        assert!(!l.try_admit(a));
    }

    #[test]
    fn a_thousand_sources_at_their_limit_do_not_starve_the_others() {
        let l = SourceLimit::new(100);
        for i in 0..1_000u32 {
            let ip = IpAddr::from((0xc612_0000 | i).to_be_bytes());
            assert!((0..100).all(|_| l.try_admit(ip)), "source {i}");
            assert!(!l.try_admit(ip), "source {i} is at its limit");
        }
        for i in 1_000..2_000u32 {
            let ip = IpAddr::from((0xc612_0000 | i).to_be_bytes());
            assert!(l.try_admit(ip), "new source {i}");
        }
    }

    #[test]
    fn shards_count_together_without_a_lock() {
        let l = Arc::new(SourceLimit::new(1000));
        let src: IpAddr = "198.18.0.7".parse().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || (0..400).filter(|_| l.try_admit(src)).count())
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // Never past the limit; racing shards may turn away a few at the very end.
        assert!((990..=1000).contains(&admitted), "{admitted}");
        assert_eq!(l.count(src), u32::try_from(admitted).unwrap());
    }
}
