//! ES256's verification (ECDSA on P-256) on keygate's own field and point arithmetic
//! (`p256_field`, `p256_point`), the shape of `ecdsa::PreparedKey`: `u1·G + u2·Q` with shared
//! doublings (Shamir's trick), scalars in width-w NAF, the odd multiples of `G` (once per
//! process) and `Q` (once per key) in affine form. The scalars stay the p256 crate's.

use std::sync::OnceLock;

use p256::elliptic_curve::group::Group as _;
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::{FieldBytes, PrimeField};
use p256::{NistP256, ProjectivePoint, Scalar, U256};

use crate::jose::ecdsa::{naf, odd_multiples};
use crate::jose::p256_field::Fe;
use crate::jose::p256_point::{self, Affine, Jacobian};

/// NAF widths: the key's `2^(w−2)` multiples are computed per key (8 points, 1.2 KB), the
/// generator's once (64 points, 9 KB). Wider windows mean fewer additions.
const KEY_WINDOW: u32 = 5;
const GENERATOR_WINDOW: u32 = 8;

/// `p − n`, big-endian: an `r` below it may also be the x of a point above n (`x = r + n`).
const P_MINUS_N: [u8; 32] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x43, 0x19, 0x05, 0x53, 0x58, 0xe8, 0x61, 0x7b,
    0x0c, 0x46, 0x35, 0x3d, 0x03, 0x9c, 0xda, 0xae,
];
/// The group order n, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// A P-256 public key with the odd multiples its verifications add.
#[derive(Clone)]
pub struct P256Key {
    /// `Q, 3Q, 5Q, …`
    key_multiples: Vec<Affine>,
    /// `G, 3G, 5G, …`, shared by every key.
    generator_multiples: &'static [Affine],
}

impl P256Key {
    /// `None` only for the identity (which `VerifyingKey` already refuses).
    pub fn new(key: &p256::AffinePoint) -> Option<Self> {
        Some(Self {
            key_multiples: affine_multiples(ProjectivePoint::from(*key), KEY_WINDOW)?,
            generator_multiples: generator_multiples()?,
        })
    }

    /// Whether `(r, s)` signs the message whose SHA-256 is `digest`; `r` and `s` are in
    /// `[1, n)` (`Signature::from_slice` checks it). SEC 1's §4.1.4: `x(u1·G + u2·Q) mod n == r`
    /// with `u1 = z/s`, `u2 = r/s`.
    pub fn verify(&self, digest: &FieldBytes<NistP256>, r: Scalar, s: Scalar) -> bool {
        let z = <Scalar as Reduce<U256>>::reduce_bytes(digest);
        let Some(s_inverse) = Option::<Scalar>::from(s.invert_vartime()) else {
            return false;
        };
        let u1 = naf(&(z * s_inverse).to_repr(), GENERATOR_WINDOW);
        let u2 = naf(&(r * s_inverse).to_repr(), KEY_WINDOW);
        let mut sum: Option<Jacobian> = None;
        for position in (0..u1.len().max(u2.len())).rev() {
            // Doubling the point at infinity leaves it there: skipped.
            sum = sum.map(|point| point.double());
            for (digits, multiples) in [
                (&u1, self.generator_multiples),
                (&u2, &self.key_multiples[..]),
            ] {
                let digit = digits.get(position).copied().unwrap_or(0);
                let Some(multiple) = multiples.get(usize::from(digit.unsigned_abs() / 2)) else {
                    continue;
                };
                if digit > 0 {
                    sum = p256_point::add(sum, multiple);
                } else if digit < 0 {
                    sum = p256_point::add(sum, &multiple.negate());
                }
            }
        }
        let Some(point) = sum else {
            return false;
        };
        x_matches(&point, &r.to_repr().into())
    }
}

/// Whether the point's x, reduced modulo n, is `r` (in `[1, n)`), without an inversion:
/// `x = X/Z²` is below p, so `x mod n == r` means `x == r` or, when `r + n < p`, `x == r + n`;
/// each is `X == x·Z² (mod p)`.
fn x_matches(point: &Jacobian, r: &[u8; 32]) -> bool {
    if point.z.is_zero() {
        return false;
    }
    let z2 = point.z.square();
    let r_field = Fe::from_bytes(r);
    if point.x.equals(&r_field.mul(&z2)) {
        return true;
    }
    *r < P_MINUS_N && point.x.equals(&r_field.add(&Fe::from_bytes(&ORDER)).mul(&z2))
}

/// `P, 3P, …, (2^(w−1) − 1)·P` as `Affine`; `None` if one is the identity (not for `P` of
/// order n, as every valid key and the generator are: the multiples are below n).
fn affine_multiples(point: ProjectivePoint, window: u32) -> Option<Vec<Affine>> {
    odd_multiples::<NistP256>(point, window)
        .iter()
        .map(Affine::from_p256)
        .collect()
}

/// The generator's odd multiples, computed once for all keys.
fn generator_multiples() -> Option<&'static [Affine]> {
    static GENERATOR: OnceLock<Option<Vec<Affine>>> = OnceLock::new();
    GENERATOR
        .get_or_init(|| affine_multiples(ProjectivePoint::generator(), GENERATOR_WINDOW))
        .as_deref()
}

#[cfg(test)]
#[path = "p256_ecdsa_tests.rs"]
mod tests;
