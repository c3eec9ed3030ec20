//! What userspace tells the XDP program, in one `#[repr(C)]` value so the hot path needs a
//! single map lookup to learn everything it needs.

/// The set of protected TCP ports, as a 65536-bit bitmap: membership is one load and one
/// bit test, with no loop for the verifier to bound.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PortSet {
    bits: [u64; 1024],
}

impl PortSet {
    /// Most ports one shield protects (a product limit, not a layout limit).
    pub const MAX_PORTS: usize = 64;

    /// The empty set.
    pub const EMPTY: PortSet = PortSet { bits: [0; 1024] };

    /// Adds `port` to the set.
    pub fn insert(&mut self, port: u16) {
        self.bits[usize::from(port >> 6)] |= 1 << (port & 63);
    }

    /// Whether `port` is in the set.
    #[inline(always)]
    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        // `port >> 6` is at most 1023: the index is always in bounds, and the BPF verifier
        // can see that from the shift.
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    /// Number of ports in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// The ports in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|p| self.contains(*p))
    }
}

impl core::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The single entry of the `SYNSHIELD_CONFIG` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Ports whose SYNs and ACKs the program handles; all other traffic is passed.
    pub ports: PortSet,
}

impl Config {
    /// A configuration that protects nothing: the program passes everything.
    pub const EMPTY: Config = Config { ports: PortSet::EMPTY };
}

#[cfg(feature = "user")]
// SAFETY: `Config` is `#[repr(C)]`, `Copy`, made only of integers, and has no padding.
unsafe impl aya::Pod for Config {}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn port_set_membership() {
        let mut s = PortSet::EMPTY;
        assert!(s.is_empty());
        for p in [0, 1, 63, 64, 80, 443, 65535] {
            s.insert(p);
        }
        for p in [0, 1, 63, 64, 80, 443, 65535] {
            assert!(s.contains(p), "{p}");
        }
        for p in [2, 62, 65, 79, 81, 65534] {
            assert!(!s.contains(p), "{p}");
        }
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().collect::<std::vec::Vec<_>>(), [0, 1, 63, 64, 80, 443, 65535]);
    }
}
