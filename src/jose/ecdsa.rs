//! ECDSA verification (ES256 on P-256, ES384 on P-384) with a variable-time joint scalar
//! multiplication.
//!
//! Why not the `ecdsa` crate's `verify`: it computes `u1·G + u2·Q` as two separate
//! constant-time scalar multiplications (each 256 doublings and a table scanned in full at every
//! window), about 1.3 ms under V8, eight times Envoy's own ES256. Verification handles only
//! public data (key, message, signature), so it may take time that depends on them, as
//! BoringSSL's does: here the two multiplications share their doublings (Shamir's trick), the
//! scalars are recoded in width-w NAF so that few additions remain, and the odd multiples of `G`
//! (once per curve) and `Q` (once per key) they add are kept in affine form, for the cheaper
//! mixed addition.
//! The field and point arithmetic (complete formulas) are the curve crate's; only the scalar
//! recoding and the loop are here. P-384 (ES384) goes through here; P-256 (ES256) has its own
//! field and point arithmetic (`p256_ecdsa`), over twice as fast under V8, and uses the recoding.

use std::ops::{AddAssign, Neg};

use p256::elliptic_curve::group::{Curve as _, Group as _};
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::{CurveArithmetic, FieldBytes, PrimeField};

/// NAF width for the key's multiples (`2^(w-2)` points, computed per key) and the generator's
/// (32 points, computed once per curve: `generator_multiples`).
const KEY_WINDOW: u32 = 5;
const GENERATOR_WINDOW: u32 = 7;

/// A public key with the odd multiples its verifications add.
#[derive(Clone)]
pub struct PreparedKey<C: CurveArithmetic + 'static> {
    /// `Q, 3Q, 5Q, …`
    key_multiples: Vec<C::AffinePoint>,
    /// `G, 3G, 5G, …`, shared by every key of the curve.
    generator_multiples: &'static [C::AffinePoint],
}

/// The generator's odd multiples for `PreparedKey::new`; the caller keeps one per curve.
pub fn generator_multiples<C>() -> Vec<C::AffinePoint>
where
    C: CurveArithmetic,
    C::ProjectivePoint: AddAssign<C::AffinePoint>,
{
    odd_multiples::<C>(C::ProjectivePoint::generator(), GENERATOR_WINDOW)
}

impl<C> PreparedKey<C>
where
    C: CurveArithmetic,
    C::ProjectivePoint: AddAssign<C::AffinePoint>,
    C::AffinePoint: Neg<Output = C::AffinePoint>,
{
    /// `generator_multiples` is `generator_multiples::<C>()`.
    pub fn new(key: C::AffinePoint, generator_multiples: &'static [C::AffinePoint]) -> Self {
        Self {
            key_multiples: odd_multiples::<C>(key.into(), KEY_WINDOW),
            generator_multiples,
        }
    }

    /// Whether `(r, s)` is a signature of the message whose hash is `digest` (of the curve's
    /// size: SHA-256 for P-256, SHA-384 for P-384). `r` and `s` are in `[1, n)` (the signature
    /// types check it). The check is SEC 1's §4.1.4: `x(u1·G + u2·Q) mod n == r` with
    /// `u1 = z/s`, `u2 = r/s`.
    pub fn verify(&self, digest: &FieldBytes<C>, r: C::Scalar, s: C::Scalar) -> bool {
        let z = <C::Scalar as Reduce<C::Uint>>::reduce_bytes(digest);
        let Some(s_inverse) = Option::<C::Scalar>::from(s.invert_vartime()) else {
            return false;
        };
        let u1 = z * s_inverse;
        let u2 = r * s_inverse;
        let u1_digits = naf(u1.to_repr().as_ref(), GENERATOR_WINDOW);
        let u2_digits = naf(u2.to_repr().as_ref(), KEY_WINDOW);
        let mut point = C::ProjectivePoint::identity();
        for position in (0..u1_digits.len().max(u2_digits.len())).rev() {
            point = point.double();
            for (digits, multiples) in [
                (&u1_digits, self.generator_multiples),
                (&u2_digits, &self.key_multiples),
            ] {
                let digit = digits.get(position).copied().unwrap_or(0);
                if let Some(&multiple) = multiples.get(usize::from(digit.unsigned_abs() / 2)) {
                    if digit > 0 {
                        point += multiple;
                    } else if digit < 0 {
                        point += -multiple;
                    }
                }
            }
        }
        // The point at infinity has x = 0 here, which no r in [1, n) equals.
        let x = point.to_affine().x();
        <C::Scalar as Reduce<C::Uint>>::reduce_bytes(&x) == r
    }
}

/// `P, 3P, 5P, …, (2^(w-1) - 1)·P`, in affine form.
pub(crate) fn odd_multiples<C>(point: C::ProjectivePoint, window: u32) -> Vec<C::AffinePoint>
where
    C: CurveArithmetic,
    C::ProjectivePoint: AddAssign<C::AffinePoint>,
{
    let twice = point.double().to_affine();
    let count = 1 << (window - 2);
    let mut multiples = Vec::with_capacity(count);
    let mut multiple = point;
    for _ in 0..count {
        multiples.push(multiple);
        multiple += twice;
    }
    let mut affine = vec![C::AffinePoint::default(); count];
    C::ProjectivePoint::batch_normalize(&multiples, &mut affine);
    affine
}

/// The width-`w` non-adjacent form of a big-endian number, least significant digit first: odd
/// digits in `(-2^(w-1), 2^(w-1))` with at least `w - 1` zeros after each non-zero one, so that
/// `Σ digit[i]·2^i` is the number.
pub(crate) fn naf(big_endian: &[u8], window: u32) -> Vec<i8> {
    // Little-endian 64-bit limbs, with a spare one: recoding can carry past the top bit.
    let mut limbs = vec![0u64; big_endian.len().div_ceil(8) + 1];
    for (index, byte) in big_endian.iter().rev().enumerate() {
        limbs[index / 8] |= u64::from(*byte) << (8 * (index % 8));
    }
    let modulus = 1i64 << window;
    let mut digits = Vec::with_capacity(big_endian.len() * 8 + 1);
    while limbs.iter().any(|&limb| limb != 0) {
        let mut digit = 0i64;
        if limbs[0] & 1 == 1 {
            digit = (limbs[0] & (modulus as u64 - 1)) as i64;
            if digit >= modulus / 2 {
                digit -= modulus;
            }
            // Subtracting the digit clears the low `w` bits; a negative one carries upwards.
            if digit > 0 {
                limbs[0] -= digit as u64;
            } else {
                add_small(&mut limbs, digit.unsigned_abs());
            }
        }
        digits.push(digit as i8);
        shift_right_one(&mut limbs);
    }
    digits
}

fn add_small(limbs: &mut [u64], value: u64) {
    let mut carry = value;
    for limb in limbs.iter_mut() {
        let (sum, overflow) = limb.overflowing_add(carry);
        *limb = sum;
        carry = u64::from(overflow);
        if carry == 0 {
            break;
        }
    }
}

fn shift_right_one(limbs: &mut [u64]) {
    let mut carry = 0;
    for limb in limbs.iter_mut().rev() {
        let next = *limb & 1;
        *limb = (*limb >> 1) | (carry << 63);
        carry = next;
    }
}

#[cfg(test)]
#[path = "ecdsa_tests.rs"]
mod tests;
