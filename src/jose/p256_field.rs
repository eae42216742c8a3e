//! Arithmetic modulo P-256's prime `p = 2^256 − 2^224 + 2^192 + 2^96 − 1`, fast where keygate
//! runs: wasm32 under V8.
//!
//! Why not the p256 crate's field: on wasm32 it is fiat-crypto's 32-bit saturated code, a carry
//! chain through every multiply-add, and that chain was most of an ES256 verification under V8.
//! Here, as in `montgomery.rs`, a number is nine limbs of 29 bits held in 64-bit integers, so a
//! column of a product is a plain sum with one carry at its end. Multiplication is Montgomery's
//! (`R = 2^261`), and p's form makes its reduction nearly free: `−p⁻¹ ≡ 1 (mod 2^29)` (p ≡ −1
//! modulo 2^96), so the multiple of p that clears a limb is the limb itself, and adding
//! `m·p` is four shifted additions, not nine products.
//!
//! Limbs are `i64` rather than `u64` so that subtractions and the `−m·2^224` term of the
//! reduction carry with an arithmetic shift, without offsets; wasm's 64-bit multiply is the same
//! instruction either way. Only public data goes through here (keys, signatures), so nothing
//! needs constant time.

const BITS: u32 = 29;
const MASK: i64 = (1 << BITS) - 1;
/// The top limb holds bits 232 and up; below 2^25 there means the value is below 2^257.
const TOP_BITS: u32 = 257 - 8 * BITS;

/// p, `2p` and `4p` in limbs, for the canonical form, `is_zero` and subtraction.
const P: [i64; 9] = [
    0x1fff_ffff,
    0x1fff_ffff,
    0x1fff_ffff,
    0x1ff,
    0,
    0,
    0x4_0000,
    0x1fe0_0000,
    0xff_ffff,
];
const P2: [i64; 9] = [
    0x1fff_fffe,
    0x1fff_ffff,
    0x1fff_ffff,
    0x3ff,
    0,
    0,
    0x8_0000,
    0x1fc0_0000,
    0x1ff_ffff,
];
const P4: [i64; 9] = [
    0x1fff_fffc,
    0x1fff_ffff,
    0x1fff_ffff,
    0x7ff,
    0,
    0,
    0x10_0000,
    0x1f80_0000,
    0x3ff_ffff,
];
/// `R² mod p` (`2^522 mod p`), which `from_bytes` multiplies by to enter Montgomery form.
const R_SQUARED: [i64; 9] = [
    0xc00,
    0,
    0x1fff_0000,
    0x1fdf_ffff,
    0x1fbf_ffff,
    0x1fff_ffff,
    0x1fff_ffff,
    0x1fff_fffe,
    0x13,
];
/// `R mod p`, the Montgomery form of 1.
const R_MOD_P: [i64; 9] = [
    0x20,
    0,
    0,
    0x1fff_c000,
    0x1fff_ffff,
    0x1fff_ffff,
    0x1f7f_ffff,
    0x3ff_ffff,
    0,
];

/// An element of the field in Montgomery form (`a·R mod p`), nine little-endian limbs of 29 bits.
///
/// Invariant (every function keeps it, every function may assume it): limbs 0–7 in `[0, 2^29)`,
/// the value in `[0, 2^257)` (so the top limb is in `[0, 2^25)`). The value is not necessarily
/// below p: since `2p < 2^257 < 3p`, it is one of `a`, `a + p`, `a + 2p`; the normalised
/// limbs of a number being unique, `is_zero` compares with 0, p and 2p, and `to_bytes` subtracts
/// p while it can.
#[derive(Clone, Copy, Debug)]
pub struct Fe([i64; 9]);

impl Fe {
    pub const ZERO: Self = Self([0; 9]);
    pub const ONE: Self = Self(R_MOD_P);

    /// The big-endian number modulo p (any 256-bit number is taken, reduced).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let mut limbs = [0i64; 9];
        for (index, &byte) in bytes.iter().rev().enumerate() {
            let bit = 8 * index;
            let (limb, shift) = (bit / BITS as usize, bit % BITS as usize);
            limbs[limb] |= (i64::from(byte) << shift) & MASK;
            // A byte that straddles two limbs: its high bits start the next one.
            if shift + 8 > BITS as usize && limb + 1 < 9 {
                limbs[limb + 1] |= i64::from(byte) >> (BITS as usize - shift);
            }
        }
        // Below 2^256, so within the invariant: one multiplication by R² gives a·R mod p.
        Self(limbs).mul(&Self(R_SQUARED))
    }

    /// The canonical value (below p, out of Montgomery form) as big-endian bytes. Verification
    /// compares with `equals` instead; this is for the tests.
    #[cfg(test)]
    pub fn to_bytes(self) -> [u8; 32] {
        // Multiplying by 1 divides by R; the result is below 2^257 and brought below p.
        let limbs = canonical(self.mul(&Self([1, 0, 0, 0, 0, 0, 0, 0, 0])).0);
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().rev().enumerate() {
            let bit = 8 * index;
            let (limb, shift) = (bit / BITS as usize, bit % BITS as usize);
            let mut value = limbs[limb] >> shift;
            if shift + 8 > BITS as usize && limb + 1 < 9 {
                value |= limbs[limb + 1] << (BITS as usize - shift);
            }
            *byte = value as u8;
        }
        bytes
    }

    /// Whether the value is 0 modulo p: the limbs are those of 0, p or 2p (the only multiples
    /// of p below 2^257).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 9] || self.0 == P || self.0 == P2
    }

    /// Whether the two are equal modulo p.
    pub fn equals(&self, other: &Self) -> bool {
        self.sub(other).is_zero()
    }

    pub fn add(&self, other: &Self) -> Self {
        let (a, b) = (&self.0, &other.0);
        // Limbs below 2^30, the sum below 2^258: `reduce` folds it back below 2^257.
        reduce(std::array::from_fn(|i| a[i] + b[i]))
    }

    pub fn sub(&self, other: &Self) -> Self {
        let (a, b) = (&self.0, &other.0);
        // a + 4p − b: 4p > 2^257 > b, so the sum is non-negative and below 2^257 + 4p < 2^259;
        // limbs may be negative (down to −2^29), which `reduce`'s signed carries absorb.
        reduce(std::array::from_fn(|i| a[i] + P4[i] - b[i]))
    }

    pub fn negate(&self) -> Self {
        Self::ZERO.sub(self)
    }

    /// `k·self` for a small `k` (2 to 8 here): limbs below 2^32, value below 2^260.
    pub fn times(&self, k: i64) -> Self {
        reduce(self.0.map(|limb| limb * k))
    }

    /// The Montgomery product `a·b·R⁻¹ mod p`.
    pub fn mul(&self, other: &Self) -> Self {
        let (a, b) = (&self.0, &other.0);
        // Column sums of the product, carried later; loops of constant bounds, which the
        // compiler unrolls.
        let mut columns = [0i64; 17];
        for i in 0..9 {
            for j in 0..9 {
                columns[i + j] += a[i] * b[j];
            }
        }
        reduce_columns(columns)
    }

    /// `a·a·R⁻¹ mod p`, as `mul` with each cross product computed once.
    pub fn square(&self) -> Self {
        let a = &self.0;
        let twice = a.map(|limb| 2 * limb);
        let mut columns = [0i64; 17];
        for i in 0..9 {
            columns[2 * i] += a[i] * a[i];
            for j in i + 1..9 {
                columns[i + j] += a[i] * twice[j];
            }
        }
        reduce_columns(columns)
    }

    /// The inverse by Fermat (`a^(p−2)`), 0 for 0. Public data, so a plain square-and-multiply.
    /// Verification needs none (`p256_ecdsa::x_matches`); this is for the tests' affine points.
    #[cfg(test)]
    pub fn invert(&self) -> Self {
        // p − 2, big-endian 64-bit words.
        const EXPONENT: [u64; 4] = [
            0xffff_ffff_0000_0001,
            0,
            0x0000_0000_ffff_ffff,
            0xffff_ffff_ffff_fffd,
        ];
        let mut power = Self::ONE;
        for word in EXPONENT {
            for bit in (0..64).rev() {
                power = power.square();
                if (word >> bit) & 1 == 1 {
                    power = power.mul(self);
                }
            }
        }
        power
    }
}

/// Montgomery reduction of a product's 17 column sums (`a[i]·b[j]` summed by `i + j`), carried
/// column by column.
///
/// Bounds: factors below 2^257 with limbs below 2^29, so a column's products are at most nine
/// of `(2^29−1)^2`, below 2^61.2; the reduction's terms add below 2^54 and the carry below 2^35:
/// the column stays well inside `i64`. The result, `(a·b + Σ m_j·p·2^(29j)) / 2^261`, is below
/// `a·b/R + p < 2^253 + 2^256 < 2^257`: the invariant holds without a final subtraction.
#[inline(always)]
fn reduce_columns(mut columns: [i64; 17]) -> Fe {
    for k in 0..9 {
        // −m·p·2^(29k) clears column k's low 29 bits when m is those bits (−p⁻¹ ≡ 1 mod 2^29);
        // what remains to carry is the column shifted (arithmetically: it may be negative).
        let m = columns[k] & MASK;
        columns[k + 1] += columns[k] >> BITS;
        // The rest of m·p·2^(29k) = m·(2^256 − 2^224 + 2^192 + 2^96)·2^(29k): limbs k+8, k+7,
        // k+6, k+3 at bits 24, 21, 18, 9 (256 = 29·8 + 24, 224 = 29·7 + 21, …).
        columns[k + 3] += m << 9;
        columns[k + 6] += m << 18;
        columns[k + 7] -= m << 21;
        columns[k + 8] += m << 24;
    }
    let mut out = [0i64; 9];
    for k in 9..16 {
        out[k - 9] = columns[k] & MASK;
        columns[k + 1] += columns[k] >> BITS;
    }
    out[7] = columns[16] & MASK;
    out[8] = columns[16] >> BITS;
    Fe(out)
}

/// Normalised limbs of a non-negative value below 2^262 (limbs possibly negative or above 2^29,
/// within ±2^62) brought within the invariant: carries propagated, then the bits from 257 up
/// folded back as multiples of `2^257 mod p`… that is of `c = 2^257 − 2p = 2^225 − 2^193 −
/// 2^97 + 2`, which is positive, so the value stays non-negative. Each fold leaves at most
/// `2^257 + 32·2^225`, so a second one (at most one unit of c) ends it.
fn reduce(mut limbs: [i64; 9]) -> Fe {
    loop {
        for i in 0..8 {
            limbs[i + 1] += limbs[i] >> BITS;
            limbs[i] &= MASK;
        }
        let high = limbs[8] >> TOP_BITS;
        if high == 0 {
            return Fe(limbs);
        }
        limbs[8] &= (1 << TOP_BITS) - 1;
        // 225 = 29·7 + 22, 193 = 29·6 + 19, 97 = 29·3 + 10.
        limbs[7] += high << 22;
        limbs[6] -= high << 19;
        limbs[3] -= high << 10;
        limbs[0] += 2 * high;
    }
}

#[cfg(test)]
/// A value below 2^257 (normalised limbs) minus p while that stays non-negative: at most twice.
fn canonical(mut limbs: [i64; 9]) -> [i64; 9] {
    loop {
        let mut difference: [i64; 9] = std::array::from_fn(|i| limbs[i] - P[i]);
        for i in 0..8 {
            difference[i + 1] += difference[i] >> BITS;
            difference[i] &= MASK;
        }
        if difference[8] < 0 {
            return limbs;
        }
        limbs = difference;
    }
}

#[cfg(test)]
#[path = "p256_field_tests.rs"]
mod tests;
