//! Modular exponentiation for RSA's public operation, fast where keygate runs: wasm32.
//!
//! Why not a bignum crate: their limbs are machine words with a carry per product (crypto-bigint:
//! 32-bit limbs on wasm32, a serial carry chain through every multiply-add), and that carry
//! chain is most of an RSA verification under V8. Here numbers are held in limbs of 27 or 28 bits
//! in `u64`s, so a product of two limbs leaves room to add a few hundred more before the `u64`
//! overflows: Montgomery multiplication is done column by column (the "finely integrated product
//! scanning" method of Koç, Acar and Kaliski, 1996), each column a plain sum of products with a
//! single carry at its end. Only public data goes through here (a public key, a signature),
//! so nothing needs constant time.

/// A limb's width in bits, by the size of the modulus: a column sums at most `2·count` products
/// of two limbs (`< 2^(2·bits)`) plus the previous column's carry, which must stay below 2^64.
/// With 28 bits that allows 127 limbs, so moduli up to 3,500 bits (126 limbs, two bits spare);
/// 27 bits allows 511 limbs, more than the 4,096 bits RSA keys are held to.
fn limb_bits(modulus_bits: u64) -> u32 {
    if modulus_bits <= 3500 { 28 } else { 27 }
}

/// An odd modulus prepared for Montgomery multiplication with `R = 2^(bits·count)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modulus {
    /// The modulus, little-endian limbs.
    limbs: Vec<u64>,
    /// The modulus, big-endian bytes without leading zeros.
    bytes: Vec<u8>,
    bits: u32,
    mask: u64,
    /// `-modulus⁻¹ mod 2^bits`.
    inverse: u64,
    /// `R² mod modulus`, which takes a number into Montgomery form.
    r_squared: Vec<u64>,
}

impl Modulus {
    /// From big-endian bytes; `None` unless the number is odd and above 1.
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
        let limbs = limbs_from_be(bytes, bits, count);
        let mask = (1u64 << bits) - 1;
        // Newton's iteration for the inverse modulo 2^64: correct to 3 bits at the start (an
        // odd number is its own inverse modulo 8), doubling each step.
        let low = limbs[0];
        let mut inverse = low;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(low.wrapping_mul(inverse)));
        }
        let mut modulus = Self {
            limbs,
            bytes: bytes.to_vec(),
            bits,
            mask,
            inverse: inverse.wrapping_neg() & mask,
            r_squared: Vec::new(),
        };
        modulus.r_squared = modulus.compute_r_squared(modulus_bits);
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
        let base = limbs_from_be(base, self.bits, count);
        let mut scratch = vec![0; count];
        let mut montgomery_base = vec![0; count];
        self.multiply(&base, &self.r_squared, &mut scratch, &mut montgomery_base);
        // Left-to-right square-and-multiply over every bit but the lowest.
        let mut power = montgomery_base.clone();
        let mut next = vec![0; count];
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
        self.reduce_once(&mut power);
        Some(limbs_to_be(&power, self.bits, self.bytes.len()))
    }

    /// `a·b·R⁻¹ mod modulus`, below 2·modulus when `a` and `b` are, into `out`. `m` is scratch.
    fn multiply(&self, a: &[u64], b: &[u64], m: &mut [u64], out: &mut [u64]) {
        // Column k of a·b from the limbs at or above `low`: i from `low` to `k - low`.
        let column = |low: usize, k: usize| dot_reversed(&a[low..=k - low], &b[low..=k - low]);
        self.reduce_columns(column, m, out);
    }

    /// `a·a·R⁻¹ mod modulus`, as `multiply` but with each cross product computed once.
    fn square(&self, a: &[u64], m: &mut [u64], out: &mut [u64]) {
        self.reduce_columns(|low, k| square_column(a, low, k), m, out);
    }

    /// Montgomery reduction interleaved with a product given column by column
    /// (`product_column(low, k)`: column `k` from the limbs at or above `low`): each column adds
    /// its products and the modulus' multiples chosen so far, and carries once at its end.
    fn reduce_columns(
        &self,
        product_column: impl Fn(usize, usize) -> u64,
        m: &mut [u64],
        out: &mut [u64],
    ) {
        let n = &self.limbs;
        let count = n.len();
        let mut column = 0u64;
        for k in 0..count {
            column += product_column(0, k) + dot_reversed(&m[..k], &n[1..=k]);
            m[k] = self.quotient_digit(column);
            column = (column + m[k] * n[0]) >> self.bits;
        }
        for k in count..2 * count - 1 {
            let low = k + 1 - count;
            column += product_column(low, k) + dot_reversed(&m[low..], &n[low..]);
            out[k - count] = column & self.mask;
            column >>= self.bits;
        }
        out[count - 1] = column;
    }

    /// The multiple of the modulus that clears the column's low limb.
    fn quotient_digit(&self, column: u64) -> u64 {
        ((column & self.mask) * self.inverse) & self.mask
    }

    /// Subtracts the modulus from a number below twice it, if that leaves it non-negative.
    fn reduce_once(&self, number: &mut [u64]) {
        let below = number
            .iter()
            .rev()
            .zip(self.limbs.iter().rev())
            .find(|(x, n)| x != n)
            .is_some_and(|(x, n)| x < n);
        if below {
            return;
        }
        let mut borrow = 0u64;
        for (x, n) in number.iter_mut().zip(&self.limbs) {
            let difference = x.wrapping_sub(*n).wrapping_sub(borrow);
            *x = difference & self.mask;
            borrow = difference >> 63;
        }
    }

    /// `2·number mod modulus` for a number below the modulus.
    fn double(&self, number: &mut [u64]) {
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
    fn compute_r_squared(&self, modulus_bits: u64) -> Vec<u64> {
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
        let mut scratch = vec![0; count];
        let mut squared = vec![0; count];
        for bit in (0..63 - r_bits.leading_zeros()).rev() {
            self.square(&power, &mut scratch, &mut squared);
            self.reduce_once(&mut squared);
            std::mem::swap(&mut power, &mut squared);
            if (r_bits >> bit) & 1 == 1 {
                self.double(&mut power);
            }
        }
        power
    }
}

/// `Σ x[i]·y[len-1-i]`: one column's products when `y` runs the other way.
fn dot_reversed(x: &[u64], y: &[u64]) -> u64 {
    x.iter().zip(y.iter().rev()).map(|(x, y)| x * y).sum()
}

/// Column `k` of `a·a` from the limbs at or above `low`: each cross product `a[i]·a[k-i]` taken
/// once and doubled, and the square on the diagonal when `k` is even.
fn square_column(a: &[u64], low: usize, k: usize) -> u64 {
    let middle = k.div_ceil(2);
    let cross = dot_reversed(&a[low..middle], &a[k + 1 - middle..=k - low]);
    let diagonal = if k.is_multiple_of(2) {
        a[k / 2] * a[k / 2]
    } else {
        0
    };
    2 * cross + diagonal
}

/// A big-endian number as `count` little-endian limbs of `bits` bits (the caller makes `count`
/// big enough).
fn limbs_from_be(bytes: &[u8], bits: u32, count: usize) -> Vec<u64> {
    let mut limbs = vec![0; count];
    let mut pending = 0u64;
    let mut pending_bits = 0;
    let mut limb = limbs.iter_mut();
    for &byte in bytes.iter().rev() {
        pending |= u64::from(byte) << pending_bits;
        pending_bits += 8;
        if pending_bits >= bits {
            if let Some(limb) = limb.next() {
                *limb = pending & ((1 << bits) - 1);
            }
            pending >>= bits;
            pending_bits -= bits;
        }
    }
    if let Some(limb) = limb.next() {
        *limb = pending;
    }
    limbs
}

/// Little-endian limbs of `bits` bits as `size` big-endian bytes (bits above are dropped: the
/// caller's number fits).
fn limbs_to_be(limbs: &[u64], bits: u32, size: usize) -> Vec<u8> {
    let mut bytes = vec![0; size];
    let mut pending = 0u64;
    let mut pending_bits = 0;
    let mut limb = limbs.iter();
    for byte in bytes.iter_mut().rev() {
        if pending_bits < 8 {
            pending |= limb.next().copied().unwrap_or(0) << pending_bits;
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
