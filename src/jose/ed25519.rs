//! Ed25519 verification with the key's multiples computed once, when the key is loaded.
//!
//! ed25519-dalek's `VerifyingKey::verify` computes R' = [k](−A) + [s]B with one variable-base
//! double scalar multiplication: about 253 doublings per signature. Here −A and B each have a
//! fixed-base table (radix 16, like curve25519-dalek's basepoint table), so R' costs at most
//! 2×64 additions and 4 doublings. curve25519-dalek's own `EdwardsBasepointTable` is constant
//! time: scanning every entry per digit cost as much as it saved under V8, so the tables here
//! are indexed directly. Nothing is secret in a verification (ed25519-dalek's is variable time
//! too).
//!
//! Accepts and rejects exactly what `VerifyingKey::verify` (not `verify_strict`) does with
//! ed25519-dalek's `legacy_compatibility` off: same parsing, same challenge, same comparison of
//! compressed points; small-order and mixed-order A and R are not refused.

use std::sync::OnceLock;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity as _;
use sha2::{Digest, Sha512};

#[derive(Clone)]
pub struct PreparedEd25519Key {
    /// The key as given: the challenge hashes these bytes, not a re-encoding.
    compressed: [u8; 32],
    minus_a: Multiples,
    /// B's table, shared by every key; taken at key load so no request pays for building it.
    basepoint: &'static Multiples,
}

impl PreparedEd25519Key {
    /// `None` for what `VerifyingKey::from_bytes` refuses: bytes that decompress to no point.
    /// Non-canonical encodings of y and small-order points are accepted, as there.
    pub fn new(bytes: &[u8; 32]) -> Option<Self> {
        let a = CompressedEdwardsY(*bytes).decompress()?;
        Some(Self {
            compressed: *bytes,
            minus_a: Multiples::new(&-a),
            basepoint: basepoint(),
        })
    }

    /// Whether `signature` (R ‖ s, 64 bytes) signs `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let (r, s) = signature.split_at(32);
        let (Ok(r), Ok(s)) = (<[u8; 32]>::try_from(r), <[u8; 32]>::try_from(s)) else {
            return false;
        };
        // s ≥ l is refused (ed25519-dalek's `check_scalar` without legacy_compatibility).
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r)
                .chain_update(self.compressed)
                .chain_update(message)
                .finalize()
                .into(),
        );
        let expected = double_base(&self.minus_a, &k, self.basepoint, &s);
        // R is compared as bytes, never decompressed: a non-canonical R never matches.
        expected.compress().0 == r
    }
}

/// B's table, shared by every key.
fn basepoint() -> &'static Multiples {
    static BASEPOINT: OnceLock<Multiples> = OnceLock::new();
    BASEPOINT.get_or_init(|| Multiples::new(&ED25519_BASEPOINT_POINT))
}

/// Row j holds v·256^j·P for v = 1..=8: 32×8 points of 160 bytes, 40 KiB.
#[derive(Clone)]
struct Multiples(Box<[[EdwardsPoint; 8]; 32]>);

impl Multiples {
    fn new(point: &EdwardsPoint) -> Self {
        let mut rows = Box::new([[EdwardsPoint::identity(); 8]; 32]);
        let mut base = *point;
        for row in rows.iter_mut() {
            let mut multiple = base;
            for entry in row.iter_mut() {
                *entry = multiple;
                multiple += base;
            }
            for _ in 0..8 {
                base = base + base;
            }
        }
        Self(rows)
    }
}

/// [a]P + [b]Q from the tables of P and Q: Σ 16^i·digit_i, the odd digits first, then ×16, then
/// the even ones, each digit one table entry (or none for 0).
fn double_base(p: &Multiples, a: &Scalar, q: &Multiples, b: &Scalar) -> EdwardsPoint {
    let (a, b) = (radix_16(a), radix_16(b));
    let rows = || p.0.iter().zip(q.0.iter()).zip(a.chunks_exact(2).zip(b.chunks_exact(2)));
    let mut sum = EdwardsPoint::identity();
    for ((p_row, q_row), (a_pair, b_pair)) in rows() {
        sum = add_digit(sum, p_row, a_pair.get(1));
        sum = add_digit(sum, q_row, b_pair.get(1));
    }
    // ×16: three doublings, then one more.
    sum = sum.mul_by_cofactor();
    sum = sum + sum;
    for ((p_row, q_row), (a_pair, b_pair)) in rows() {
        sum = add_digit(sum, p_row, a_pair.first());
        sum = add_digit(sum, q_row, b_pair.first());
    }
    sum
}

/// `sum` ± the row's entry for `digit` (|digit| ≤ 8).
fn add_digit(sum: EdwardsPoint, row: &[EdwardsPoint; 8], digit: Option<&i8>) -> EdwardsPoint {
    let digit = digit.copied().unwrap_or(0);
    // 0 wraps to an index past the row: nothing to add.
    match row.get(usize::from(digit.unsigned_abs()).wrapping_sub(1)) {
        None => sum,
        Some(multiple) if digit > 0 => sum + multiple,
        Some(multiple) => sum - multiple,
    }
}

/// The scalar (< 2^255, as every reduced or canonical scalar is) as 64 signed digits in
/// [−8, 8]: Σ 16^i·digit_i.
fn radix_16(scalar: &Scalar) -> [i8; 64] {
    let mut digits = [0i8; 64];
    for (pair, byte) in digits.chunks_exact_mut(2).zip(scalar.as_bytes()) {
        // Both nibbles fit an i8.
        pair.copy_from_slice(&[(byte & 15) as i8, (byte >> 4) as i8]);
    }
    // Each digit but the last from [0, 16] to [−8, 8), carrying into the next; the last
    // stays ≤ 8 since the top bit is clear.
    let mut carry = 0;
    for digit in digits.iter_mut().take(63) {
        *digit += carry;
        carry = (*digit + 8) >> 4;
        *digit -= carry << 4;
    }
    if let Some(last) = digits.last_mut() {
        *last += carry;
    }
    digits
}

#[cfg(test)]
#[path = "ed25519_tests.rs"]
mod tests;
