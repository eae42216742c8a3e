//! `PreparedEd25519Key` against ed25519-dalek's `VerifyingKey::verify` (which it replaces) on
//! random keys and messages, valid and altered signatures, and the edge cases of the encoding:
//! non-canonical s, small-order and mixed-order A and R, non-canonical point encodings.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::*;

/// The group order l, little-endian.
const ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Encodings of the eight small-order points (canonical, with the sign bit set on x = 0, and
/// non-canonical y ≥ p), as in Wycheproof and "Taming the many EdDSAs".
const SMALL_ORDER: [&str; 12] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

fn hex32(text: &str) -> [u8; 32] {
    let mut bytes = [0; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    bytes
}

/// Both verifiers on one key, message and signature; the key is refused by both or neither.
fn agree(key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let dalek = VerifyingKey::from_bytes(key);
    let prepared = PreparedEd25519Key::new(key);
    assert_eq!(dalek.is_ok(), prepared.is_some(), "key {key:02x?}");
    let (Ok(dalek), Some(prepared)) = (dalek, prepared) else {
        return false;
    };
    let expected = ed25519_dalek::Signature::from_slice(signature)
        .is_ok_and(|signature| dalek.verify(message, &signature).is_ok());
    assert_eq!(
        prepared.verify(message, signature),
        expected,
        "key {key:02x?} message {message:02x?} signature {signature:02x?}"
    );
    expected
}

/// s + l, which is s again modulo l but not canonical (s < l, so it fits in 32 bytes).
fn plus_order(s: &[u8]) -> [u8; 32] {
    let mut sum = [0; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let total = u16::from(s[i]) + u16::from(ORDER[i]) + carry;
        sum[i] = total as u8;
        carry = total >> 8;
    }
    sum
}

#[test]
fn agrees_with_dalek_on_valid_and_altered_signatures() {
    let mut rng = StdRng::seed_from_u64(0x6564_3235_3531_3921);
    for _ in 0..40 {
        let signing = SigningKey::generate(&mut rng);
        let key = signing.verifying_key().to_bytes();
        let prepared = PreparedEd25519Key::new(&key).unwrap();
        for _ in 0..4 {
            let mut message = vec![0; rng.gen_range(0..300)];
            rng.fill_bytes(&mut message);
            let signature = signing.sign(&message).to_bytes();
            assert!(agree(&key, &message, &signature));
            assert!(prepared.verify(&message, &signature));

            let mut flipped = signature;
            let bit = rng.gen_range(0..512);
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(!agree(&key, &message, &flipped), "bit {bit}");

            if !message.is_empty() {
                let mut altered = message.clone();
                let bit = rng.gen_range(0..8 * altered.len());
                altered[bit / 8] ^= 1 << (bit % 8);
                assert!(!agree(&key, &altered, &signature));
            }
            assert!(!agree(&key, &[&message[..], b"x"].concat(), &signature));

            let mut non_canonical = signature;
            non_canonical[32..].copy_from_slice(&plus_order(&signature[32..]));
            assert!(!agree(&key, &message, &non_canonical), "s + l");

            assert!(!agree(&key, &message, &signature[..63]));
            assert!(!agree(&key, &message, &[&signature[..], &[0]].concat()));
            assert!(!agree(&key, &message, &[]));
        }
    }
}

#[test]
fn agrees_with_dalek_on_small_and_mixed_order_points() {
    let mut rng = StdRng::seed_from_u64(0x736d_616c_6c21);
    let small: Vec<[u8; 32]> = SMALL_ORDER.iter().map(|text| hex32(text)).collect();
    let signing = SigningKey::generate(&mut rng);
    let honest = signing.verifying_key();
    let mut keys = small.clone();
    keys.push(honest.to_bytes());
    // A mixed-order key: the honest key plus each small-order point.
    for encoding in &small {
        if let Some(torsion) = CompressedEdwardsY(*encoding).decompress() {
            keys.push((honest.to_edwards() + torsion).compress().to_bytes());
        }
    }
    let mut accepted = 0;
    for key in &keys {
        for r in small.iter().chain([&key.to_owned()]) {
            for s in [[0; 32], [1; 32], plus_order(&[0; 32])] {
                for _ in 0..8 {
                    let mut message = [0; 16];
                    rng.fill_bytes(&mut message);
                    let signature = [&r[..], &s[..]].concat();
                    accepted += usize::from(agree(key, &message, &signature));
                }
            }
        }
        // Valid signatures by the honest key, checked against every key.
        let message = b"small order";
        agree(key, message, &signing.sign(message).to_bytes());
    }
    // Small-order keys do accept forged signatures in the non-strict verification.
    assert!(accepted > 0);
}

#[test]
fn refuses_the_keys_dalek_refuses() {
    let mut rng = StdRng::seed_from_u64(0x6b65_7973);
    let mut refused = 0;
    for _ in 0..400 {
        let mut key = [0; 32];
        rng.fill_bytes(&mut key);
        let dalek = VerifyingKey::from_bytes(&key).is_ok();
        assert_eq!(PreparedEd25519Key::new(&key).is_some(), dalek, "{key:02x?}");
        refused += usize::from(!dalek);
    }
    // About half of all y have no x.
    assert!(refused > 100);
}

#[test]
fn the_identity_key_accepts_the_identity_with_s_zero() {
    let identity = EdwardsPoint::default().compress().to_bytes();
    let signature = [&identity[..], &[0; 32]].concat();
    assert!(agree(&identity, b"anything", &signature));
}

#[test]
fn the_tables_multiply_as_dalek_does() {
    let mut rng = StdRng::seed_from_u64(0x7461_626c_6573);
    let minus_one = -Scalar::ONE;
    let mut edge = vec![Scalar::ZERO, Scalar::ONE, minus_one];
    // Scalars whose digits carry all the way up, and the largest 2^252 + small.
    edge.push(Scalar::from_bytes_mod_order([0x88; 32]));
    edge.push(Scalar::from_bytes_mod_order([0xff; 32]));
    let mut top = [0; 32];
    top[31] = 0x10;
    edge.push(Scalar::from_bytes_mod_order(top));
    for _ in 0..6 {
        let mut wide = [0; 64];
        rng.fill_bytes(&mut wide);
        let point = EdwardsPoint::mul_base(&Scalar::from_bytes_mod_order_wide(&wide));
        let table = Multiples::new(&point);
        for a in &edge {
            for b in &edge {
                assert_eq!(
                    double_base(&table, a, basepoint(), b),
                    EdwardsPoint::vartime_double_scalar_mul_basepoint(a, &point, b)
                );
            }
        }
        rng.fill_bytes(&mut wide);
        let a = Scalar::from_bytes_mod_order_wide(&wide);
        rng.fill_bytes(&mut wide);
        let b = Scalar::from_bytes_mod_order_wide(&wide);
        assert_eq!(
            double_base(&table, &a, basepoint(), &b),
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&a, &point, &b)
        );
    }
}

#[test]
fn radix_16_digits_sum_to_the_scalar() {
    let mut rng = StdRng::seed_from_u64(0x0072_6164_6978);
    for _ in 0..200 {
        let mut wide = [0; 64];
        rng.fill_bytes(&mut wide);
        let scalar = Scalar::from_bytes_mod_order_wide(&wide);
        let digits = radix_16(&scalar);
        assert!(digits.iter().all(|digit| (-8..=8).contains(digit)));
        let sixteen = Scalar::from(16u8);
        let sum = digits.iter().rev().fold(Scalar::ZERO, |sum, &digit| {
            let term = Scalar::from(digit.unsigned_abs());
            sum * sixteen + if digit < 0 { -term } else { term }
        });
        assert_eq!(sum, scalar);
    }
    assert_eq!(radix_16(&-Scalar::ONE)[63], 1);
}
