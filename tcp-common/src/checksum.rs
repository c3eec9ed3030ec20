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

    /// Folds to at most 33 bits: two such folds add without overflow (for [`sum_bytes`]).
    #[inline(always)]
    fn fold_wide(self) -> u64 {
        (self.0 & 0xffff_ffff) + (self.0 >> 32)
    }

    /// The checksum field value: the complement of the folded sum.
    #[inline(always)]
    #[must_use]
    pub fn checksum(self) -> u16 {
        !self.fold()
    }
}

/// Sum of `bytes` as big-endian 16-bit words (a trailing odd byte padded with zero). For
/// userspace (the engine checksums every segment it sends and receives with it) and tests;
/// the XDP program sums fixed word counts instead of looping.
///
/// Fast because the sum does not depend on byte order (RFC 1071 section 2 (B)): it adds
/// native-endian 64-bit words (each as two 32-bit halves, the same ones' complement sum since
/// 2^32 = 1 mod 2^16 - 1), four independent sums at a time, and swaps the bytes of the folded
/// result once instead of every word's. The folded value is returned.
#[must_use]
pub fn sum_bytes(bytes: &[u8]) -> Sum {
    let (words, tail) = bytes.as_chunks::<8>();
    let (quads, rest) = words.as_chunks::<4>();
    // 2^31 words per accumulator before a u64 could overflow: 16 GiB.
    let mut acc = [0u64; 4];
    for q in quads {
        for (a, w) in acc.iter_mut().zip(q) {
            let w = u64::from_ne_bytes(*w);
            *a += (w >> 32) + (w & 0xffff_ffff);
        }
    }
    let mut s = Sum(acc[0]).fold_wide() + Sum(acc[1]).fold_wide();
    s += Sum(acc[2]).fold_wide() + Sum(acc[3]).fold_wide();
    for w in rest {
        let w = u64::from_ne_bytes(*w);
        s += (w >> 32) + (w & 0xffff_ffff);
    }
    let (pairs, last) = tail.as_chunks::<2>();
    for p in pairs {
        s += u64::from(u16::from_ne_bytes(*p));
    }
    if let [b] = last {
        // The first byte of a native-endian word: its high byte on a big-endian machine.
        s += u64::from(u16::from_ne_bytes([*b, 0]));
    }
    let folded = Sum(s).fold();
    Sum(u64::from(if cfg!(target_endian = "little") { folded.swap_bytes() } else { folded }))
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

    /// The sum of `data` the slow, obvious way: big-endian 16-bit words.
    fn naive(data: &[u8]) -> u16 {
        let mut naive: u64 = 0;
        for pair in data.chunks(2) {
            naive += (u64::from(pair[0]) << 8) + pair.get(1).map_or(0, |b| u64::from(*b));
        }
        Sum(naive).fold()
    }

    #[test]
    fn all_ones_and_all_zeros_keep_their_zero() {
        let (ones, zeros) = ([0xffu8; 1500], [0u8; 1500]);
        for len in [0, 1, 2, 31, 32, 33, 64, 1500] {
            assert_eq!(sum_bytes(&ones[..len]).fold(), naive(&ones[..len]), "{len}");
            assert_eq!(sum_bytes(&zeros[..len]).fold(), 0, "{len}");
        }
    }

    proptest! {
        #[test]
        fn fast_sum_equals_the_naive_sum(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            offset in 0usize..8,
        ) {
            // Any length, any alignment of the slice.
            let d = data.get(offset..).unwrap_or_default();
            prop_assert_eq!(sum_bytes(d).fold(), naive(d));
        }

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
