//! The Internet checksum (RFC 1071) with fixed-size work: sums are accumulated in a `u64` and
//! folded with a fixed number of steps (no data-dependent loop for the verifier), and header
//! fields are updated incrementally (RFC 1624) rather than re-summed.
//!
//! Values are host integers of big-endian fields (`u16::from_be_bytes` of the wire bytes).

/// A ones'-complement sum in progress. Adding 32-bit words is the same as adding their two
/// 16-bit halves, because 2^16 = 1 (mod 2^16 - 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sum(pub u64);

impl Sum {
    /// Adds a 16-bit field.
    #[inline(always)]
    #[must_use]
    pub fn add16(self, v: u16) -> Sum {
        Sum(self.0 + u64::from(v))
    }

    /// Adds a 32-bit field (two 16-bit words).
    #[inline(always)]
    #[must_use]
    pub fn add32(self, v: u32) -> Sum {
        Sum(self.0 + u64::from(v))
    }

    /// Adds another sum.
    #[inline(always)]
    #[must_use]
    pub fn add_sum(self, o: Sum) -> Sum {
        Sum(self.0 + o.0)
    }

    /// Folds to 16 bits (not complemented). Four steps always suffice from 64 bits.
    #[inline(always)]
    #[must_use]
    #[expect(clippy::cast_possible_truncation, reason = "folded to 16 bits first")]
    pub fn fold(self) -> u16 {
        let mut s = (self.0 & 0xffff_ffff) + (self.0 >> 32);
        s = (s & 0xffff_ffff) + (s >> 32);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        s as u16
    }

    /// The checksum field value: the complement of the folded sum.
    #[inline(always)]
    #[must_use]
    pub fn checksum(self) -> u16 {
        !self.fold()
    }
}

/// Sum of `bytes` as big-endian 16-bit words (a trailing odd byte padded with zero), eight
/// bytes per step. For userspace (the engine checksums every segment with it) and tests; the
/// XDP program sums fixed word counts instead of looping.
#[must_use]
pub fn sum_bytes(bytes: &[u8]) -> Sum {
    let mut s = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Four 16-bit words added as two 32-bit halves: the same ones' complement sum
        // (2^16 = 1 mod 2^16 - 1), and 2^31 chunks before a u64 could overflow.
        s += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut pairs = chunks.remainder().chunks_exact(2);
    for c in &mut pairs {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        s += u64::from(*last) << 8;
    }
    Sum(s)
}

/// The Internet checksum of `data` (RFC 1071): the complement of its folded sum.
#[must_use]
pub fn internet_checksum(data: &[u8]) -> u16 {
    sum_bytes(data).checksum()
}

/// RFC 1624 equation 3: the new checksum `HC' = ~(~HC + ~m + m')` after a 16-bit field
/// changed from `old` to `new`.
#[inline(always)]
#[must_use]
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    Sum(u64::from(!checksum)).add16(!old).add16(new).checksum()
}

/// RFC 1624 for a 32-bit field.
#[inline(always)]
#[must_use]
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    Sum(u64::from(!checksum)).add32(!old).add32(new).checksum()
}

/// Whether a region whose checksum field is included sums to `0xffff` (a valid checksum).
#[inline(always)]
#[must_use]
pub fn verifies(s: Sum) -> bool {
    s.fold() == 0xffff
}

#[cfg(test)]
#[expect(clippy::cast_possible_truncation, reason = "test data")]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn eight_byte_steps_match_a_naive_sum_for_every_length() {
        let data: [u8; 1001] = core::array::from_fn(|i| (i * 7 + 3).to_le_bytes()[0]);
        for len in 0..data.len() {
            let mut naive: u64 = 0;
            for pair in data[..len].chunks(2) {
                naive += (u64::from(pair[0]) << 8) + pair.get(1).map_or(0, |b| u64::from(*b));
            }
            assert_eq!(sum_bytes(&data[..len]).fold(), Sum(naive).fold(), "length {len}");
        }
    }

    /// RFC 1071 section 3 example: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        assert_eq!(sum_bytes(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]).fold(), 0xddf2);
    }

    proptest! {
        #[test]
        fn incremental_update_equals_resum(
            mut words in proptest::collection::vec(any::<u16>(), 2..40),
            at in any::<prop::sample::Index>(), new in any::<u16>(),
        ) {
            let at = at.index(words.len());
            let full = |w: &[u16]| w.iter().fold(Sum::default(), |s, v| s.add16(*v)).checksum();
            let before = full(&words);
            let old = words[at];
            words[at] = new;
            let after = full(&words);
            // Equal as ones'-complement numbers (0x0000 and 0xffff both mean zero).
            let upd = update16(before, old, new);
            prop_assert!(upd == after || (upd | after) == 0xffff && (upd & after) == 0);
        }

        #[test]
        fn words_of_32_bits_sum_like_pairs(v in proptest::collection::vec(any::<u32>(), 0..20)) {
            let a = v.iter().fold(Sum::default(), |s, w| s.add32(*w)).fold();
            let b = v.iter().fold(Sum::default(), |s, w| s.add16((w >> 16) as u16).add16(*w as u16));
            prop_assert_eq!(a, b.fold());
        }
    }
}
