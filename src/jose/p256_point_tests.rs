//! The point arithmetic against the p256 crate's: doublings and additions of random multiples of
//! G, and the exceptional cases (a point added to itself, to its negative, to infinity).

use p256::elliptic_curve::Field as _;
use p256::elliptic_curve::group::Group as _;
use p256::{ProjectivePoint, Scalar};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

fn affine(point: ProjectivePoint) -> Affine {
    Affine::from_p256(&point.to_affine()).unwrap()
}

/// The affine coordinates as bytes, to compare with the p256 crate's point.
fn same(ours: &Jacobian, theirs: ProjectivePoint) -> bool {
    let ours = ours.to_affine();
    let theirs = theirs.to_affine();
    let encoded = theirs.to_encoded_point(false);
    ours.x.to_bytes()[..] == theirs.x()[..] && ours.y.to_bytes()[..] == encoded.y().unwrap()[..]
}

#[test]
fn doubling_and_adding_agree_with_the_p256_crate() {
    let mut rng = StdRng::seed_from_u64(0x6b65_7967_6174_6536);
    for round in 0..40 {
        let a = ProjectivePoint::generator() * Scalar::random(&mut rng);
        let b = ProjectivePoint::generator() * Scalar::random(&mut rng);
        let ours_a = Jacobian::from(&affine(a));
        assert!(same(&ours_a.double(), a.double()), "round {round}: double");
        assert!(
            same(&ours_a.double().double().double(), a.double().double().double()),
            "round {round}: double thrice"
        );
        // Through a Jacobian point with Z ≠ 1.
        let doubled = ours_a.double();
        let sum = doubled.add_affine(&affine(b)).unwrap();
        assert!(same(&sum, a.double() + b), "round {round}: add");
        let difference = doubled.add_affine(&affine(b).negate()).unwrap();
        assert!(same(&difference, a.double() - b), "round {round}: subtract");
        // The exceptional cases, with Z ≠ 1: 2a + 2a and 2a − 2a.
        let twice = affine(a.double());
        let same_point = doubled.add_affine(&twice).unwrap();
        assert!(same(&same_point, a.double().double()), "round {round}: P + P");
        assert!(
            doubled.add_affine(&twice.negate()).is_none(),
            "round {round}: P − P"
        );
        assert!(same(&add(None, &twice).unwrap(), a.double()), "round {round}: O + P");
    }
}

#[test]
fn small_multiples_of_the_generator() {
    // G, 2G, …, 20G by repeated addition (2G = G + G goes through the doubling case).
    let g = affine(ProjectivePoint::generator());
    let mut ours = Some(Jacobian::from(&g));
    let mut theirs = ProjectivePoint::generator();
    for k in 2..=20 {
        ours = add(ours, &g);
        theirs += ProjectivePoint::generator();
        assert!(same(&ours.unwrap(), theirs), "{k}G");
    }
}
