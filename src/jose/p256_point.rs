//! P-256 points on `p256_field`: Jacobian coordinates (`x = X/Z²`, `y = Y/Z³`) for the running
//! sum, affine ones for the precomputed multiples it adds, with the formulas for `a = −3`.
//!
//! Verification handles attacker-chosen data, so the exceptional cases of the incomplete
//! formulas are handled, not assumed away: adding a point to itself (a doubling), to its negative
//! (the point at infinity, `None` here), and the point at infinity as the running sum. A point
//! of prime order has no `y = 0`, so a doubling never yields infinity; and variable time is
//! fine: everything here is public.

use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;

use crate::jose::p256_field::Fe;

/// A finite point in affine coordinates (Montgomery-form field elements).
#[derive(Clone, Copy, Debug)]
pub struct Affine {
    pub x: Fe,
    pub y: Fe,
}

/// A finite point in Jacobian coordinates; the point at infinity is `Option::None` around it.
#[derive(Clone, Copy, Debug)]
pub struct Jacobian {
    pub x: Fe,
    pub y: Fe,
    pub z: Fe,
}

impl Affine {
    /// From the p256 crate's point; `None` for the identity, which has no affine coordinates.
    pub fn from_p256(point: &p256::AffinePoint) -> Option<Self> {
        let encoded = point.to_encoded_point(false);
        let y: [u8; 32] = (*encoded.y()?).into();
        let x: [u8; 32] = point.x().into();
        Some(Self {
            x: Fe::from_bytes(&x),
            y: Fe::from_bytes(&y),
        })
    }

    pub fn negate(&self) -> Self {
        Self {
            x: self.x,
            y: self.y.negate(),
        }
    }
}

impl From<&Affine> for Jacobian {
    fn from(point: &Affine) -> Self {
        Self {
            x: point.x,
            y: point.y,
            z: Fe::ONE,
        }
    }
}

impl Jacobian {
    /// `2·self`: dbl-2001-b (Bernstein–Lange's Explicit-Formulas Database), 3M + 5S, for a = −3.
    pub fn double(&self) -> Self {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        // 3(X − δ)(X + δ) = 3X² − 3Z⁴, the slope's numerator with a = −3.
        let alpha = self.x.sub(&delta).mul(&self.x.add(&delta)).times(3);
        let x = alpha.square().sub(&beta.times(8));
        let z = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let y = alpha
            .mul(&beta.times(4).sub(&x))
            .sub(&gamma.square().times(8));
        Self { x, y, z }
    }

    /// `self + point`: madd-2007-bl, 7M + 4S; `None` when the sum is the point at infinity.
    pub fn add_affine(&self, point: &Affine) -> Option<Self> {
        let z1z1 = self.z.square();
        let u2 = point.x.mul(&z1z1);
        let s2 = point.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y).times(2);
        if h.is_zero() {
            // Same x: the same point (double it) or its negative (sum at infinity). The general
            // formulas would yield Z = 0 for both, a wrong answer for the first.
            return if r.is_zero() {
                Some(self.double())
            } else {
                None
            };
        }
        let hh = h.square();
        let i = hh.times(4);
        let j = h.mul(&i);
        let v = self.x.mul(&i);
        let x = r.square().sub(&j).sub(&v.times(2));
        let y = r.mul(&v.sub(&x)).sub(&self.y.mul(&j).times(2));
        let z = self.z.add(&h).square().sub(&z1z1).sub(&hh);
        Some(Self { x, y, z })
    }

    /// The affine coordinates (one inversion), for the tests.
    #[cfg(test)]
    pub fn to_affine(self) -> Affine {
        let z_inverse = self.z.invert();
        let z2 = z_inverse.square();
        Affine {
            x: self.x.mul(&z2),
            y: self.y.mul(&z2).mul(&z_inverse),
        }
    }
}

/// `running + point`, with the point at infinity (`None`) as either the running sum or the result.
pub fn add(running: Option<Jacobian>, point: &Affine) -> Option<Jacobian> {
    match running {
        None => Some(Jacobian::from(point)),
        Some(sum) => sum.add_affine(point),
    }
}

#[cfg(test)]
#[path = "p256_point_tests.rs"]
mod tests;
