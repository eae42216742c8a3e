//! Modular exponentiation for RSA's public operation, fast where keygate runs: wasm32.
//!
//! Why not a bignum crate: their limbs are machine words with a carry per product (crypto-bigint:
//! 32-bit limbs on wasm32, a serial carry chain through every multiply-add), and that carry
//! chain is most of an RSA verification under V8. Here numbers are held in limbs of 27 or 28 bits
//! (in `u32`s), so a product of two limbs leaves room to add a few hundred more in a `u64`:
//! Montgomery multiplication is done column by column (the "finely integrated product scanning"
//! method of Koç, Acar and Kaliski, 1996), each column a plain sum of products with a single
//! carry at its end. With one factor's limbs kept reversed, a column is a dot product of two
//! runs of limbs, taken four at a time with wasm SIMD (`i64x2.extmul_*_i32x4_u`): about 1.7
//! times faster than one product at a time under V8. Only public data goes through here (a
//! public key, a signature), so nothing needs constant time.

/// A limb's width in bits, by the size of the modulus: a column sums at most `2·count` products
/// of two limbs (`< 2^(2·bits)`) plus the previous column's carry, which must stay below 2^64.
/// With 28 bits that allows 127 limbs, so moduli up to 3,500 bits (126 limbs, two bits spare);
/// 27 bits allows 511 limbs, more than the 4,096 bits RSA keys are held to.
fn limb_bits(modulus_bits: u64) -> u32 {
    if modulus_bits <= 3500 { 28 } else { 27 }
}

/// Limbs of the largest modulus taken: 4,096 bits and two spare in 27-bit limbs.
const MAX_LIMBS: usize = 152;
/// Zero limbs either side of a number: a column's products are read four limbs at a time from
/// groups that may start up to three limbs below the number or end up to three above it.
const PAD: usize = 4;
const SPAN: usize = MAX_LIMBS + 2 * PAD;

/// Limbs at `PAD..PAD + count`, zeros around them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Padded([u32; SPAN]);

impl Padded {
    const ZERO: Self = Self([0; SPAN]);
}

/// A number's limbs in both orders. Column k of a product is `Σ a[i]·b[k-i]`; with `b` reversed
/// that is a dot product of two runs of limbs going the same way, which SIMD lanes take four at
/// a time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Number {
    forward: Padded,
    /// `reversed[PAD + count - 1 - i]` is limb i.
    reversed: Padded,
    /// Each limb times 2 (29 bits at most), for a square's cross products.
    doubled: Padded,
}

impl Number {
    const ZERO: Self = Self {
        forward: Padded::ZERO,
        reversed: Padded::ZERO,
        doubled: Padded::ZERO,
    };

    fn new(limbs: &[u32]) -> Self {
        let mut number = Self::ZERO;
        for (i, &limb) in limbs.iter().enumerate() {
            number.set(limbs.len(), i, limb);
        }
        number
    }

    fn set(&mut self, count: usize, i: usize, limb: u32) {
        self.forward.0[PAD + i] = limb;
        self.reversed.0[PAD + count - 1 - i] = limb;
        self.doubled.0[PAD + i] = limb << 1;
    }

    fn limbs(&self, count: usize) -> &[u32] {
        &self.forward.0[PAD..PAD + count]
    }
}

/// An odd modulus prepared for Montgomery multiplication with `R = 2^(bits·count)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modulus {
    /// The modulus, little-endian limbs.
    limbs: Vec<u32>,
    /// The modulus' limbs reversed, for the columns of `m·modulus`.
    reversed: Padded,
    /// The modulus, big-endian bytes without leading zeros.
    bytes: Vec<u8>,
    bits: u32,
    mask: u32,
    /// `-modulus⁻¹ mod 2^bits`.
    inverse: u32,
    /// `R² mod modulus`, which takes a number into Montgomery form.
    r_squared: Number,
}

impl Modulus {
    /// From big-endian bytes; `None` unless the number is odd, above 1 and at most 4,096 bits.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let zeros = bytes.iter().take_while(|&&byte| byte == 0).count();
        let bytes = &bytes[zeros..];
        let first = *bytes.first()?;
        let odd = bytes.last().is_some_and(|byte| byte & 1 == 1);
        if !odd || bytes == [1] {
            return None;
        }
        let modulus_bits = (bytes.len() as u64 - 1) * 8 + u64::from(8 - first.leading_zeros());
        let bits = limb_bits(modulus_bits);
        // Two spare bits (4·modulus ≤ R) let products stay below 2·modulus without reduction.
        let count = usize::try_from((modulus_bits + 2).div_ceil(u64::from(bits))).ok()?;
        if count > MAX_LIMBS {
            return None;
        }
        let limbs = limbs_from_be(bytes, bits, count);
        let mask = (1u32 << bits) - 1;
        // Newton's iteration for the inverse modulo 2^32: correct to 3 bits at the start (an
        // odd number is its own inverse modulo 8), doubling each step.
        let low = limbs[0];
        let mut inverse = low;
        for _ in 0..4 {
            inverse = inverse.wrapping_mul(2u32.wrapping_sub(low.wrapping_mul(inverse)));
        }
        let mut modulus = Self {
            reversed: Number::new(&limbs).reversed,
            limbs,
            bytes: bytes.to_vec(),
            bits,
            mask,
            inverse: inverse.wrapping_neg() & mask,
            r_squared: Number::ZERO,
        };
        modulus.r_squared = Number::new(&modulus.compute_r_squared(modulus_bits));
        Some(modulus)
    }

    /// The modulus' length in bits.
    pub fn bits(&self) -> u64 {
        let first = self.bytes.first().copied().unwrap_or(0);
        (self.bytes.len() as u64 - 1) * 8 + u64::from(8 - first.leading_zeros())
    }

    /// `base^exponent mod modulus` for a big-endian base of the modulus' size in bytes, as
    /// big-endian bytes of that size; `None` when the base is not below the modulus or the
    /// exponent is even or below 3 (RSA's are odd, and the last step below needs a bit above
    /// the lowest).
    pub fn pow(&self, base: &[u8], exponent: u64) -> Option<Vec<u8>> {
        if base.len() != self.bytes.len()
            || base >= &self.bytes[..]
            || exponent & 1 == 0
            || exponent < 3
        {
            return None;
        }
        let count = self.limbs.len();
        let base = Number::new(&limbs_from_be(base, self.bits, count));
        let mut scratch = Padded::ZERO;
        let mut montgomery_base = Number::ZERO;
        self.multiply(&base, &self.r_squared, &mut scratch, &mut montgomery_base);
        // Left-to-right square-and-multiply over every bit but the lowest.
        let mut power = montgomery_base.clone();
        let mut next = Number::ZERO;
        for bit in (1..63 - exponent.leading_zeros()).rev() {
            self.square(&power, &mut scratch, &mut next);
            std::mem::swap(&mut power, &mut next);
            if (exponent >> bit) & 1 == 1 {
                self.multiply(&power, &montgomery_base, &mut scratch, &mut next);
                std::mem::swap(&mut power, &mut next);
            }
        }
        // The last step multiplies by the base itself, not its Montgomery form: the product is
        // `base^exponent`, not `base^exponent·R`, so no step out of Montgomery form follows.
        self.square(&power, &mut scratch, &mut next);
        self.multiply(&next, &base, &mut scratch, &mut power);
        let mut result = power.limbs(count).to_vec();
        self.reduce_once(&mut result);
        Some(limbs_to_be(&result, self.bits, self.bytes.len()))
    }

    /// `a·b·R⁻¹ mod modulus`, below 2·modulus when `a` and `b` are, into `out`. `m` is scratch.
    fn multiply(&self, a: &Number, b: &Number, m: &mut Padded, out: &mut Number) {
        self.reduce_columns(|m, low, k| self.multiply_column(a, b, m, low, k), m, out);
    }

    /// `a·a·R⁻¹ mod modulus`, as `multiply` but with each cross product computed once.
    fn square(&self, a: &Number, m: &mut Padded, out: &mut Number) {
        self.reduce_columns(|m, low, k| self.square_column(a, m, low, k), m, out);
    }

    /// Column k of a·b + m·n from the limbs at or above `low`: a[i]·b[k-i] and m[i]·n[k-i] for
    /// i from `low` to `k - low`. The groups of four may start below `low` or end above
    /// `k - low`: the reversed limbs there are the padding's zeros.
    fn multiply_column(&self, a: &Number, b: &Number, m: &Padded, low: usize, k: usize) -> u64 {
        let groups = Groups::new(self.limbs.len(), low, k + 1 - low, k);
        let a = groups.forward(&a.forward);
        let b = groups.reversed(&b.reversed);
        let m = groups.forward(m);
        let n = groups.reversed(&self.reversed);
        let mut sum = lanes::Pair::ZERO;
        for ((a, b), (m, n)) in a.zip(b).zip(m.zip(n)) {
            sum = sum.mul_add(a, b).mul_add(m, n);
        }
        sum.sum()
    }

    /// Column k of a·a + m·n, as `multiply_column` but with each cross product `a[i]·a[k-i]`
    /// (i below k - i) once, as `2·a[i]` times `a[k-i]`, and the square on the diagonal when k
    /// is even.
    fn square_column(&self, a: &Number, m: &Padded, low: usize, k: usize) -> u64 {
        let groups = Groups::new(self.limbs.len(), low, k + 1 - low, k);
        let middle = k.div_ceil(2);
        // Groups wholly below the middle, then the one it cuts (if any), masked.
        let whole = ((middle & !3) - groups.first) / 4;
        let mut cross = groups
            .forward(&a.doubled)
            .zip(groups.reversed(&a.reversed));
        let mut multiples = groups.forward(m).zip(groups.reversed(&self.reversed));
        let mut sum = lanes::Pair::ZERO;
        for ((a, b), (m, n)) in cross.by_ref().zip(multiples.by_ref()).take(whole) {
            sum = sum.mul_add(a, b).mul_add(m, n);
        }
        if middle & 3 != 0
            && let Some((a, b)) = cross.next()
        {
            let below_middle = lanes::Quad::load(&TAIL_MASKS[middle & 3]);
            sum = sum.mul_add(a.and(below_middle), b);
        }
        for (m, n) in multiples {
            sum = sum.mul_add(m, n);
        }
        let diagonal = if k.is_multiple_of(2) {
            u64::from(a.forward.0[PAD + k / 2]).pow(2)
        } else {
            0
        };
        sum.sum() + diagonal
    }

    /// Montgomery reduction interleaved with a product given column by column
    /// (`column(m, low, k)`: column `k` of the product and of `m·modulus` from the limbs at or
    /// above `low`, with the quotient digits `m` chosen so far): each column adds its products
    /// and carries once at its end.
    fn reduce_columns(
        &self,
        mut column_sum: impl FnMut(&Padded, usize, usize) -> u64,
        m: &mut Padded,
        out: &mut Number,
    ) {
        let count = self.limbs.len();
        // Column k reads m[k] (times n[0]) before choosing it: zero until then.
        m.0[PAD..PAD + count].fill(0);
        let n0 = u64::from(self.limbs[0]);
        let mut column = 0u64;
        for k in 0..count {
            column += column_sum(m, 0, k);
            let digit = self.quotient_digit(column);
            m.0[PAD + k] = digit;
            column = (column + u64::from(digit) * n0) >> self.bits;
        }
        for k in count..2 * count - 1 {
            column += column_sum(m, k + 1 - count, k);
            out.set(count, k - count, low_limb(column, self.mask));
            column >>= self.bits;
        }
        // The last carry: a limb for operands below 2·modulus (the result is too), a few bits
        // more for the all-ones operands of the tests, still far within a `u32`.
        out.set(count, count - 1, column as u32);
    }

    /// The multiple of the modulus that clears the column's low limb.
    fn quotient_digit(&self, column: u64) -> u32 {
        low_limb(column, self.mask).wrapping_mul(self.inverse) & self.mask
    }

    /// Subtracts the modulus from a number below twice it, if that leaves it non-negative.
    fn reduce_once(&self, number: &mut [u32]) {
        let below = number
            .iter()
            .rev()
            .zip(self.limbs.iter().rev())
            .find(|(x, n)| x != n)
            .is_some_and(|(x, n)| x < n);
        if below {
            return;
        }
        let mut borrow = 0u32;
        for (x, n) in number.iter_mut().zip(&self.limbs) {
            let difference = x.wrapping_sub(*n).wrapping_sub(borrow);
            *x = difference & self.mask;
            borrow = difference >> 31;
        }
    }

    /// `2·number mod modulus` for a number below the modulus.
    fn double(&self, number: &mut [u32]) {
        let mut carry = 0;
        for limb in number.iter_mut() {
            let doubled = (*limb << 1) | carry;
            *limb = doubled & self.mask;
            carry = doubled >> self.bits;
        }
        self.reduce_once(number);
    }

    /// `R² mod modulus`: `R mod modulus` by doubling from the modulus' top bit, then the
    /// Montgomery form of 2^t (which is `2^t·R`) walked up to t = log2(R) by squaring and doubling.
    fn compute_r_squared(&self, modulus_bits: u64) -> Vec<u32> {
        let count = self.limbs.len();
        let r_bits = u64::from(self.bits) * count as u64;
        let top = modulus_bits - 1;
        let mut power = vec![0; count];
        let limb = usize::try_from(top / u64::from(self.bits)).unwrap_or(0);
        power[limb] = 1 << (top % u64::from(self.bits));
        for _ in top..r_bits {
            self.double(&mut power);
        }
        // power = R mod modulus, the Montgomery form of 1; doubled, that of 2^1.
        self.double(&mut power);
        let mut scratch = Padded::ZERO;
        let mut squared = Number::ZERO;
        for bit in (0..63 - r_bits.leading_zeros()).rev() {
            self.square(&Number::new(&power), &mut scratch, &mut squared);
            power.copy_from_slice(squared.limbs(count));
            self.reduce_once(&mut power);
            if (r_bits >> bit) & 1 == 1 {
                self.double(&mut power);
            }
        }
        power
    }
}

/// A column's low limb.
fn low_limb(column: u64, mask: u32) -> u32 {
    (column & u64::from(mask)) as u32
}

/// Column k's limbs i in `start..end` in groups of four, from `start` rounded down to `end`
/// rounded up: of a number (limb i) and of a reversed one (limb k - i, at
/// `PAD + count - 1 - (k - i)`).
struct Groups {
    /// The first group's first i.
    first: usize,
    /// Where the groups start in the reversed number.
    reversed_first: usize,
    len: usize,
}

impl Groups {
    fn new(count: usize, start: usize, end: usize, k: usize) -> Self {
        let first = start & !3;
        Self {
            first,
            reversed_first: PAD + count - 1 + first - k,
            len: end.next_multiple_of(4) - first,
        }
    }

    fn forward(&self, number: &Padded) -> impl Iterator<Item = lanes::Quad> {
        quads(&number.0[PAD + self.first..][..self.len])
    }

    fn reversed(&self, number: &Padded) -> impl Iterator<Item = lanes::Quad> {
        quads(&number.0[self.reversed_first..][..self.len])
    }
}

fn quads(limbs: &[u32]) -> impl Iterator<Item = lanes::Quad> {
    limbs.as_chunks::<4>().0.iter().map(lanes::Quad::load)
}

/// Lanes kept of a group of four that `end` cuts, by `end % 4`.
const TAIL_MASKS: [[u32; 4]; 4] = [
    [0; 4],
    [u32::MAX, 0, 0, 0],
    [u32::MAX, u32::MAX, 0, 0],
    [u32::MAX, u32::MAX, u32::MAX, 0],
];

/// Four limbs (`Quad`) multiplied pairwise into two 64-bit sums (`Pair`): lane 0 takes the
/// products of limbs 0 and 2, lane 1 those of 1 and 3, as wasm's `i64x2.extmul_low_i32x4_u`
/// and `_high` give them.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod lanes {
    use core::arch::wasm32::{
        i64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4, u64x2_extract_lane,
        u64x2, v128, v128_and, v128_load,
    };

    #[derive(Clone, Copy)]
    pub struct Quad(v128);

    impl Quad {
        #[inline(always)]
        pub fn load(limbs: &[u32; 4]) -> Self {
            // SAFETY: a `&[u32; 4]` is 16 readable bytes, and `v128_load` needs no alignment.
            Self(unsafe { v128_load(limbs.as_ptr().cast()) })
        }

        #[inline(always)]
        pub fn and(self, other: Self) -> Self {
            Self(v128_and(self.0, other.0))
        }
    }

    #[derive(Clone, Copy)]
    pub struct Pair(v128);

    impl Pair {
        pub const ZERO: Self = Self(u64x2(0, 0));

        #[inline(always)]
        pub fn mul_add(self, x: Quad, y: Quad) -> Self {
            let low = u64x2_extmul_low_u32x4(x.0, y.0);
            let high = u64x2_extmul_high_u32x4(x.0, y.0);
            Self(i64x2_add(self.0, i64x2_add(low, high)))
        }

        #[inline(always)]
        pub fn sum(self) -> u64 {
            u64x2_extract_lane::<0>(self.0) + u64x2_extract_lane::<1>(self.0)
        }
    }
}

/// The same lanes in scalars, elsewhere (and in the native tests, with overflow checks).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod lanes {
    #[derive(Clone, Copy)]
    pub struct Quad([u32; 4]);

    impl Quad {
        #[inline(always)]
        pub fn load(limbs: &[u32; 4]) -> Self {
            Self(*limbs)
        }

        #[inline(always)]
        pub fn and(self, other: Self) -> Self {
            Self(std::array::from_fn(|lane| self.0[lane] & other.0[lane]))
        }
    }

    #[derive(Clone, Copy)]
    pub struct Pair([u64; 2]);

    impl Pair {
        pub const ZERO: Self = Self([0; 2]);

        #[inline(always)]
        pub fn mul_add(self, x: Quad, y: Quad) -> Self {
            let product = |lane: usize| u64::from(x.0[lane]) * u64::from(y.0[lane]);
            Self([
                self.0[0] + (product(0) + product(2)),
                self.0[1] + (product(1) + product(3)),
            ])
        }

        #[inline(always)]
        pub fn sum(self) -> u64 {
            self.0[0] + self.0[1]
        }
    }
}

/// A big-endian number as `count` little-endian limbs of `bits` bits (the caller makes `count`
/// big enough).
fn limbs_from_be(bytes: &[u8], bits: u32, count: usize) -> Vec<u32> {
    let mut limbs = vec![0; count];
    let mask = (1u64 << bits) - 1;
    let mut pending = 0u64;
    let mut pending_bits = 0;
    let mut limb = limbs.iter_mut();
    for &byte in bytes.iter().rev() {
        pending |= u64::from(byte) << pending_bits;
        pending_bits += 8;
        if pending_bits >= bits {
            if let Some(limb) = limb.next() {
                *limb = (pending & mask) as u32;
            }
            pending >>= bits;
            pending_bits -= bits;
        }
    }
    if let Some(limb) = limb.next() {
        *limb = pending as u32;
    }
    limbs
}

/// Little-endian limbs of `bits` bits as `size` big-endian bytes (bits above are dropped: the
/// caller's number fits).
fn limbs_to_be(limbs: &[u32], bits: u32, size: usize) -> Vec<u8> {
    let mut bytes = vec![0; size];
    let mut pending = 0u64;
    let mut pending_bits = 0;
    let mut limb = limbs.iter();
    for byte in bytes.iter_mut().rev() {
        if pending_bits < 8 {
            pending |= u64::from(limb.next().copied().unwrap_or(0)) << pending_bits;
            pending_bits += bits;
        }
        *byte = pending as u8;
        pending >>= 8;
        pending_bits -= 8;
    }
    bytes
}

#[cfg(test)]
#[path = "montgomery_tests.rs"]
mod tests;
