//! The joint multiplication against the `ecdsa` crate's own verification (through p256 and
//! p384), on random keys, messages and signatures, valid and altered; and the NAF recoding
//! against its definition.

use p256::ecdsa::signature::{Signer, Verifier};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rsa::BigUint;
use sha2::{Digest, Sha256, Sha384};

use super::*;
use crate::jose::signature::{p256_generator, p384_generator};

#[test]
fn p256_agrees_with_the_ecdsa_crate_on_valid_and_altered_signatures() {
    let mut rng = StdRng::seed_from_u64(0x6b65_7967_6174_6531);
    let order = BigUint::from_bytes_be(&hex(
        "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
    ));
    for round in 0..24 {
        let signing = p256::ecdsa::SigningKey::random(&mut rng);
        let verifying = *signing.verifying_key();
        let prepared = PreparedKey::<p256::NistP256>::new(*verifying.as_affine(), p256_generator());
        let other = PreparedKey::<p256::NistP256>::new(
            *p256::ecdsa::SigningKey::random(&mut rng)
                .verifying_key()
                .as_affine(),
            p256_generator(),
        );
        let mut message = vec![0; (rng.next_u32() % 200) as usize];
        rng.fill_bytes(&mut message);
        let signature: p256::ecdsa::Signature = signing.sign(&message);
        let digest = Sha256::digest(&message);
        let (r, s) = signature.split_scalars();
        assert!(prepared.verify(&digest, *r, *s), "round {round}: valid");
        assert!(!other.verify(&digest, *r, *s), "round {round}: another key");
        let altered = Sha256::digest([&message[..], b"x"].concat());
        assert!(
            !prepared.verify(&altered, *r, *s),
            "round {round}: another message"
        );

        // The same signature with s negated (high s), r and s swapped, and one bit flipped in
        // each: whatever the ecdsa crate decides, so must this.
        let bytes = signature.to_bytes();
        let s_value = BigUint::from_bytes_be(&bytes[32..]);
        let negated = [&bytes[..32], &pad(&(&order - s_value), 32)[..]].concat();
        let swapped = [&bytes[32..], &bytes[..32]].concat();
        let mut variants = vec![negated, swapped];
        for bit in [0, 7, 255, 256, 300, 511] {
            let mut flipped = bytes.to_vec();
            flipped[bit / 8] ^= 1 << (bit % 8);
            variants.push(flipped);
        }
        for (index, variant) in variants.iter().enumerate() {
            let Ok(parsed) = p256::ecdsa::Signature::from_slice(variant) else {
                continue;
            };
            let expected = verifying.verify(&message, &parsed).is_ok();
            let (r, s) = parsed.split_scalars();
            assert_eq!(
                prepared.verify(&digest, *r, *s),
                expected,
                "round {round}, variant {index}"
            );
        }
    }
}

#[test]
fn p384_agrees_with_the_ecdsa_crate() {
    let mut rng = StdRng::seed_from_u64(0x6b65_7967_6174_6532);
    for round in 0..8 {
        let signing = p384::ecdsa::SigningKey::random(&mut rng);
        let prepared = PreparedKey::<p384::NistP384>::new(
            *signing.verifying_key().as_affine(),
            p384_generator(),
        );
        let message = format!("message {round}");
        let signature: p384::ecdsa::Signature = signing.sign(message.as_bytes());
        let (r, s) = signature.split_scalars();
        let digest = Sha384::digest(message.as_bytes());
        assert!(prepared.verify(&digest, *r, *s), "round {round}");
        let mut altered = signature.to_bytes().to_vec();
        altered[10] ^= 4;
        if let Ok(parsed) = p384::ecdsa::Signature::from_slice(&altered) {
            let (r, s) = parsed.split_scalars();
            assert!(!prepared.verify(&digest, *r, *s), "round {round}: altered");
        }
    }
}

#[test]
fn naf_digits_are_sparse_odd_and_sum_to_the_number() {
    let mut rng = StdRng::seed_from_u64(0x6b65_7967_6174_6533);
    let mut numbers: Vec<Vec<u8>> = vec![vec![0; 32], vec![1], vec![0xff; 32], vec![0xff; 48]];
    for _ in 0..200 {
        let mut bytes = vec![0; 32 + (rng.next_u32() % 17) as usize];
        rng.fill_bytes(&mut bytes);
        numbers.push(bytes);
    }
    for window in [2, 5, 7] {
        for number in &numbers {
            let digits = naf(number, window);
            let (mut positive, mut negative) = (BigUint::from(0u32), BigUint::from(0u32));
            let mut zeros_needed: u32 = 0;
            for (position, &digit) in digits.iter().enumerate() {
                if digit == 0 {
                    zeros_needed = zeros_needed.saturating_sub(1);
                    continue;
                }
                assert_eq!(
                    zeros_needed, 0,
                    "w={window}: digits too close in {number:?}"
                );
                assert!(digit % 2 != 0, "w={window}: even digit {digit}");
                assert!(
                    i64::from(digit).abs() < 1 << (window - 1),
                    "w={window}: {digit}"
                );
                zeros_needed = window - 1;
                let term = BigUint::from(digit.unsigned_abs()) << position;
                if digit > 0 {
                    positive += term;
                } else {
                    negative += term;
                }
            }
            assert_eq!(
                positive - negative,
                BigUint::from_bytes_be(number),
                "w={window}: {number:?}"
            );
        }
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn pad(value: &BigUint, len: usize) -> Vec<u8> {
    let bytes = value.to_bytes_be();
    [vec![0; len - bytes.len()], bytes].concat()
}
