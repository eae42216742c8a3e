//! ES256's verification against the p256 crate's own (`verify_prehash`) and keygate's generic
//! `ecdsa::PreparedKey`, on random keys, messages and signatures, valid and altered; and the
//! final check's `x = r + n` case, which random signatures never reach.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rsa::BigUint;
use sha2::{Digest, Sha256};

use super::*;
use crate::jose::ecdsa::PreparedKey;
use crate::jose::signature::p256_generator;

#[test]
fn agrees_with_the_p256_crate_on_valid_and_altered_signatures() {
    let mut rng = StdRng::seed_from_u64(0x6b65_7967_6174_6537);
    let order = BigUint::from_bytes_be(&ORDER);
    for round in 0..200 {
        let signing = p256::ecdsa::SigningKey::random(&mut rng);
        let verifying = *signing.verifying_key();
        let key = P256Key::new(verifying.as_affine()).unwrap();
        let generic = PreparedKey::<NistP256>::new(*verifying.as_affine(), p256_generator());
        let mut message = vec![0; (rng.next_u32() % 200) as usize];
        rng.fill_bytes(&mut message);
        let signature: p256::ecdsa::Signature = signing.sign(&message);
        let digest = Sha256::digest(&message);
        let (r, s) = signature.split_scalars();
        assert!(key.verify(&digest, *r, *s), "round {round}: valid");
        let other = P256Key::new(
            p256::ecdsa::SigningKey::random(&mut rng)
                .verifying_key()
                .as_affine(),
        )
        .unwrap();
        assert!(!other.verify(&digest, *r, *s), "round {round}: another key");

        let bytes = signature.to_bytes();
        let s_value = BigUint::from_bytes_be(&bytes[32..]);
        let negated_s = (&order - s_value).to_bytes_be();
        let mut negated = bytes[..32].to_vec();
        negated.extend(std::iter::repeat_n(0, 32 - negated_s.len()));
        negated.extend(negated_s);
        let swapped = [&bytes[32..], &bytes[..32]].concat();
        let mut variants = vec![negated, swapped];
        for _ in 0..4 {
            let mut flipped = bytes.to_vec();
            let bit = (rng.next_u32() % 512) as usize;
            flipped[bit / 8] ^= 1 << (bit % 8);
            variants.push(flipped);
        }
        let mut digests = vec![digest];
        let mut altered = digest;
        altered[(rng.next_u32() % 32) as usize] ^= 0x10;
        digests.push(altered);
        for (index, variant) in variants.iter().enumerate() {
            let Ok(parsed) = p256::ecdsa::Signature::from_slice(variant) else {
                continue;
            };
            let (r, s) = parsed.split_scalars();
            for digest in &digests {
                let expected = verifying.verify_prehash(digest, &parsed).is_ok();
                assert_eq!(
                    key.verify(digest, *r, *s),
                    expected,
                    "round {round}, variant {index}"
                );
                assert_eq!(generic.verify(digest, *r, *s), expected);
            }
        }
    }
}

#[test]
fn x_above_n_matches_r_below_p_minus_n() {
    // A point whose x is above n, so that r = x − n is in [1, p − n): signatures meet one about
    // once in 2^128, so take x just above n directly (about half of the candidates are on the
    // curve).
    use p256::elliptic_curve::sec1::FromEncodedPoint as _;
    let order = BigUint::from_bytes_be(&ORDER);
    let p_minus_n = BigUint::from_bytes_be(&P_MINUS_N);
    let mut found = 0;
    for offset in 1u32..200 {
        let x = &order + offset;
        let mut encoded = vec![2u8];
        encoded.extend(x.to_bytes_be());
        let Ok(point) = p256::EncodedPoint::from_bytes(&encoded) else {
            continue;
        };
        let Some(point) = Option::<p256::AffinePoint>::from(p256::AffinePoint::from_encoded_point(
            &point,
        )) else {
            continue;
        };
        found += 1;
        let jacobian = Jacobian::from(&Affine::from_p256(&point).unwrap());
        let r = (&x - &order).to_bytes_be();
        let mut r32 = [0u8; 32];
        r32[32 - r.len()..].copy_from_slice(&r);
        assert!(BigUint::from(offset) < p_minus_n);
        assert!(x_matches(&jacobian, &r32), "x = n + {offset}");
        let mut wrong = r32;
        wrong[31] ^= 1;
        assert!(!x_matches(&jacobian, &wrong), "x = n + {offset}, r altered");
        // The same point with Z ≠ 1 (scaled coordinates: X·λ², Y·λ³, Z·λ).
        let lambda = Fe::from_bytes(&[7; 32]);
        let scaled = Jacobian {
            x: jacobian.x.mul(&lambda.square()),
            y: jacobian.y.mul(&lambda.square()).mul(&lambda),
            z: lambda,
        };
        assert!(x_matches(&scaled, &r32), "scaled, x = n + {offset}");
    }
    assert!(found > 20, "{found} points");
}
