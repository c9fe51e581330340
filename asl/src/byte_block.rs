//! Text 64 bytes at a time, as bitmasks: bit `i` of a mask stands for byte `i` of the block
//! (and short strings eight bytes at a time, [`first_json_special`], [`has_json_special`],
//! [`ascii_digits`]).
//!
//! Scanners of delimited text (JSON payloads in [`crate::payload`], CSV records in the storage
//! crate) find the bytes they want outside quotes this way: a byte compare is four SSE2
//! compares and four `movemask`s per block, the bytes inside quotes are the [`prefix_xor`] of
//! the quotes, and only the wanted bytes are visited, one set bit at a time. Going byte by
//! byte instead, every quote flips a state and costs a mispredicted branch.

/// 64 bytes of text. A block loaded near the end of the text is padded with zeros
/// ([`Block::at`]); callers mask the padding off with the valid bits it returns.
#[derive(Clone, Copy)]
pub struct Block(Lanes);

impl Block {
    /// The block of `bytes` starting at `at`, and the mask of its bits that are text (all 64
    /// but near the end). `at` must be at most `bytes.len()`.
    #[inline]
    pub fn at(bytes: &[u8], at: usize) -> (Block, u64) {
        match bytes.get(at..at + 64) {
            Some(full) => (Block::load(full.try_into().unwrap_or(&[0; 64])), u64::MAX),
            None => {
                let rest = &bytes[at..];
                let mut block = [0u8; 64];
                block[..rest.len()].copy_from_slice(rest);
                (Block::load(&block), valid_below(rest.len()))
            }
        }
    }

    #[inline]
    pub fn load(bytes: &[u8; 64]) -> Block {
        Block(Lanes::load(bytes))
    }

    /// Bit `i` set where byte `i` is `byte`.
    #[inline]
    pub fn equal(&self, byte: u8) -> u64 {
        self.0.equal(&[byte])
    }

    /// Bit `i` set where byte `i` is one of `bytes` (compared together, one mask made).
    #[inline]
    pub fn equal_any<const N: usize>(&self, bytes: [u8; N]) -> u64 {
        self.0.equal(&bytes)
    }
}

/// The mask of bits `0..n` (`n` at most 64).
#[inline]
pub fn valid_below(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Bit `i` of the result is the XOR of bits `0..=i`: of a mask of quotes, set from an opening
/// quote up to (not including) its closing one.
#[inline]
pub fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// The offset of the first byte of `bytes` from `from` on that a JSON string cannot hold as
/// it is (a quote, a backslash, a control character); `bytes.len()` if none. Strings in
/// payloads are mostly short (keys, codes, CSV fields), so eight bytes are compared at a time
/// in a `u64`: a vectorised search costs more to set up than such a string takes.
#[inline]
pub fn first_json_special(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(word) = bytes.get(at..at + 8) {
        let hits = json_specials(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        if hits != 0 {
            return at + (hits.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    bytes.get(at..).and_then(|rest| rest.iter().position(is_json_special)).map_or(bytes.len(), |n| at + n)
}

/// A byte of ones, and of high bits, in each of a word's eight bytes (the word-at-a-time tests).
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether `bytes` holds a byte that [`first_json_special`] finds: the same test, with the
/// bytes of a short string (a CSV field) read as one word of overlapping loads.
#[inline]
pub fn has_json_special(bytes: &[u8]) -> bool {
    let n = bytes.len();
    let load = |at: usize, size: usize| bytes[at..at + size].iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b));
    // The bytes no load fills read as `a`, which is no special.
    const FILL: u64 = u64::from_ne_bytes([b'a'; 8]);
    let word = match n {
        0 => return false,
        1 => return is_json_special(&bytes[0]),
        2..=3 => load(0, 2) | load(n - 2, 2) << 16 | FILL << 32,
        4..=7 => load(0, 4) | load(n - 4, 4) << 32,
        _ => return first_json_special(bytes, 0) < n,
    };
    json_specials(word) != 0
}

fn is_json_special(b: &u8) -> bool {
    *b == b'"' || *b == b'\\' || *b < 0x20
}

/// How many ASCII digits `bytes` holds from `from` on, eight bytes at a time (the digits of
/// numbers in payloads): a byte-wise loop mispredicts where each number ends.
#[inline]
pub fn ascii_digits(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(word) = bytes.get(at..at + 8) {
        // A digit is `0` to `9` once XORed with `0`; adding 0x76 sets the high bit of every
        // byte from 10 up (the bytes from 0x80 up have it already). A carry out of a byte can
        // only reach bytes above it, past the first non-digit: the lowest bit set is exact.
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default()) ^ (ONES * u64::from(b'0'));
        let stops = (x.wrapping_add(ONES * 0x76) | x) & HIGHS;
        if stops != 0 {
            return at - from + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at - from + bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count()
}

/// The high bit set of each byte of `word` that is a JSON special, and maybe of bytes above
/// the first such byte (a borrow), never below it: the lowest set bit is exact.
#[inline]
fn json_specials(word: u64) -> u64 {
    // The high bit of each byte of `x` below `n` (at most 0x80), as above.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    below(word, 0x20) | below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1)
}

/// A block in four SSE2 registers: a byte compare is four vector compares and four
/// `movemask`s, where the plain loop below stays a loop of 64 shifts.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[derive(Clone, Copy)]
struct Lanes([std::arch::x86_64::__m128i; 4]);

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
impl Lanes {
    #[inline]
    fn load(block: &[u8; 64]) -> Lanes {
        use std::arch::x86_64::_mm_loadu_si128;
        // SAFETY: each load reads 16 of the array's 64 bytes (offsets 0, 16, 32, 48), and
        // `loadu` needs no alignment.
        Lanes(std::array::from_fn(|k| unsafe { _mm_loadu_si128(block.as_ptr().add(16 * k).cast()) }))
    }

    /// The compares of a lane are ORed before its one `movemask`.
    #[inline]
    fn equal(&self, bytes: &[u8]) -> u64 {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128};
        self.0.iter().enumerate().fold(0, |mask, (k, &lane)| {
            // SAFETY: this is compiled only where SSE2 is enabled (the x86-64 baseline), and
            // these are SSE2 intrinsics on registers. movemask sets the low 16 bits only.
            let lane_mask = unsafe {
                let hits = bytes.iter().fold(_mm_setzero_si128(), |hits, &byte| {
                    _mm_or_si128(hits, _mm_cmpeq_epi8(lane, _mm_set1_epi8(byte as i8)))
                });
                _mm_movemask_epi8(hits) as u16
            };
            mask | (u64::from(lane_mask) << (16 * k))
        })
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[derive(Clone, Copy)]
struct Lanes([u8; 64]);

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
impl Lanes {
    fn load(block: &[u8; 64]) -> Lanes {
        Lanes(*block)
    }

    fn equal(&self, bytes: &[u8]) -> u64 {
        self.0.iter().enumerate().fold(0, |mask, (i, b)| mask | (u64::from(bytes.contains(b)) << i))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn masks_and_padding_agree_with_the_bytes(bytes in prop::collection::vec(prop::sample::select(b"a,\"\n\0".to_vec()), 0..150), at in 0usize..150) {
            let at = at.min(bytes.len());
            let (block, valid) = Block::at(&bytes, at);
            for needle in [b'a', b',', b'"', b'\n', 0] {
                let mask = block.equal(needle) & valid;
                let expected = bytes[at..].iter().take(64).enumerate().fold(0u64, |m, (i, &b)| m | (u64::from(b == needle) << i));
                prop_assert_eq!(mask, expected);
            }
            let expected = bytes[at..].iter().take(64).enumerate().fold(0u64, |m, (i, b)| m | (u64::from(b"a\n".contains(b)) << i));
            prop_assert_eq!(block.equal_any([b'a', b'\n']) & valid, expected);
            prop_assert_eq!(valid.count_ones() as usize, (bytes.len() - at).min(64));
        }

        #[test]
        fn json_specials_are_the_first_found_byte_by_byte(
            bytes in prop::collection::vec(prop::sample::select(b"a\"\\\x00\x1f\x20\x7f\x80\xff".to_vec()), 0..40),
            from in 0usize..41,
        ) {
            let from = from.min(bytes.len());
            let special = |b: &u8| *b == b'"' || *b == b'\\' || *b < 0x20;
            let expected = bytes[from..].iter().position(special).map_or(bytes.len(), |n| from + n);
            prop_assert_eq!(first_json_special(&bytes, from), expected);
            prop_assert_eq!(has_json_special(&bytes[from..]), expected < bytes.len());
        }

        /// Digits counted eight at a time are the digits counted one by one, whatever follows
        /// them (bytes a carry could disturb: 0x8a and up, and the neighbours of `0`-`9`).
        #[test]
        fn digits_are_counted_as_one_by_one(
            bytes in prop::collection::vec(prop_oneof![b'0'..=b'9', prop::sample::select(vec![b'/', b':', b'.', b'e', 0, 0x7f, 0x89, 0x8a, 0xff])], 0..40),
            from in 0usize..41,
        ) {
            let from = from.min(bytes.len());
            let expected = bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
            prop_assert_eq!(ascii_digits(&bytes, from), expected);
        }

        #[test]
        fn prefix_xor_is_the_running_parity(x in any::<u64>()) {
            let mut parity = 0u64;
            for i in 0..64 {
                parity ^= (x >> i) & 1;
                prop_assert_eq!((prefix_xor(x) >> i) & 1, parity);
            }
        }
    }
}
