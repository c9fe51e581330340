//! `java.util.Random`, which AWS uses for `States.MathRandom`: with a seed the result is
//! `new Random(seed).nextInt(end - start) + start`. Observed: seed 42 over [-5, 5) yields
//! -5, and `new Random(42).nextInt(10)` is 0.

const MULTIPLIER: u64 = 0x5_DEEC_E66D;
const ADDEND: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;

/// The 48-bit linear congruential generator of `java.util.Random`.
pub(crate) struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    /// `new Random(seed)`.
    pub(crate) fn new(seed: i64) -> JavaRandom {
        JavaRandom { seed: (seed as u64 ^ MULTIPLIER) & MASK }
    }

    /// `next(bits)`.
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = self.seed.wrapping_mul(MULTIPLIER).wrapping_add(ADDEND) & MASK;
        (self.seed >> (48 - bits)) as i32
    }

    /// `nextInt()`.
    #[cfg(test)]
    pub(crate) fn next_i32(&mut self) -> i32 {
        self.next(32)
    }

    /// `nextInt(bound)`: uniform in [0, bound). `bound` must be positive.
    pub(crate) fn next_int(&mut self, bound: i32) -> i32 {
        debug_assert!(bound > 0);
        let mut r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            return ((i64::from(bound) * i64::from(r)) >> 31) as i32;
        }
        let mut u = r;
        loop {
            r = u % bound;
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next(31);
        }
    }
}
