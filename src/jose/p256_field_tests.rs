//! The field arithmetic against big-integer arithmetic (the rsa crate's `BigUint`), on random
//! values and on the extremes of the representation: every multiple of p it can hold, the
//! largest value the invariant allows (all limbs full), values near p and 2^256. The invariant is
//! checked after every operation; run without `--release` the column sums would also panic on
//! overflow (overflow checks are on in the test profile).

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rsa::BigUint;

use super::*;

fn prime() -> BigUint {
    BigUint::from_bytes_be(&hex(
        "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
    ))
}

fn value(limbs: &[i64; 9]) -> BigUint {
    limbs
        .iter()
        .rev()
        .fold(BigUint::from(0u32), |sum, &limb| {
            (sum << 29usize) + BigUint::from(u64::try_from(limb).unwrap())
        })
}

fn limbs_of(number: &BigUint) -> [i64; 9] {
    std::array::from_fn(|i| {
        let limb: BigUint = (number >> (29 * i)) & BigUint::from(MASK as u64);
        limb.to_bytes_le()
            .iter()
            .rev()
            .fold(0i64, |sum, &byte| (sum << 8) | i64::from(byte))
    })
}

/// The element an `Fe` stands for: its value divided by R, modulo p.
fn element(fe: &Fe) -> BigUint {
    let p = prime();
    let r_inverse = (BigUint::from(1u32) << 261usize).modpow(&(&p - 2u32), &p);
    value(&fe.0) * r_inverse % p
}

/// The `Fe` whose value is `number` (its element is `number/R`), which must be below 2^257.
fn raw(number: &BigUint) -> Fe {
    assert!(number.bits() <= 257);
    Fe(limbs_of(number))
}

fn check_invariant(fe: &Fe, context: &str) {
    for (i, &limb) in fe.0.iter().enumerate() {
        let bound = if i == 8 { 1 << 25 } else { 1 << 29 };
        assert!((0..bound).contains(&limb), "{context}: limb {i} = {limb:#x}");
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn bytes32(number: &BigUint) -> [u8; 32] {
    let bytes = number.to_bytes_be();
    let mut out = [0; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    out
}

#[test]
fn constants_are_what_they_say() {
    let p = prime();
    assert_eq!(value(&P), p);
    assert_eq!(value(&P2), &p * 2u32);
    assert_eq!(value(&P4), &p * 4u32);
    assert_eq!(
        value(&R_SQUARED),
        (BigUint::from(1u32) << 522usize) % &p
    );
    assert_eq!(value(&R_MOD_P), (BigUint::from(1u32) << 261usize) % &p);
    assert_eq!(element(&Fe::ONE), BigUint::from(1u32));
}

/// Representations to test with: random ones anywhere in `[0, 2^257)`, and the extremes.
fn samples() -> Vec<Fe> {
    let p = prime();
    let top = (BigUint::from(1u32) << 257usize) - 1u32;
    let mut numbers = vec![
        BigUint::from(0u32),
        BigUint::from(1u32),
        &p - 1u32,
        p.clone(),
        &p + 1u32,
        &p * 2u32 - 1u32,
        &p * 2u32,
        &p * 2u32 + 1u32,
        (BigUint::from(1u32) << 256usize) - 1u32,
        BigUint::from(1u32) << 256usize,
        top.clone(),
        &top - &p,
        BigUint::from(MASK as u64),
    ];
    let mut rng = StdRng::seed_from_u64(0x6b65_7967_6174_6534);
    for _ in 0..150 {
        let mut bytes = [0u8; 33];
        rng.fill_bytes(&mut bytes);
        bytes[0] &= 1;
        numbers.push(BigUint::from_bytes_be(&bytes));
    }
    numbers.iter().map(raw).collect()
}

#[test]
fn operations_agree_with_big_integers() {
    let p = prime();
    let samples = samples();
    for (index, a) in samples.iter().enumerate() {
        let ea = element(a);
        let check = |result: Fe, expected: BigUint, what: &str| {
            check_invariant(&result, what);
            assert_eq!(element(&result), expected % &p, "{what}, sample {index}");
        };
        check(a.square(), &ea * &ea, "square");
        check(a.negate(), &p * 2u32 - &ea, "negate");
        for k in 2..=8 {
            check(a.times(k), &ea * (k as u32), "times");
        }
        // Only a few pairs: the products are quadratic in the samples.
        for b in samples.iter().skip(index % 7).step_by(7) {
            let eb = element(b);
            check(a.mul(b), &ea * &eb, "mul");
            check(a.add(b), &ea + &eb, "add");
            check(a.sub(b), &ea + &p - &eb, "sub");
            assert_eq!(a.equals(b), ea == eb, "equals, sample {index}");
        }
        if ea != BigUint::from(0u32) {
            let inverse = a.invert();
            check_invariant(&inverse, "invert");
            assert_eq!(
                element(&inverse.mul(a)),
                BigUint::from(1u32),
                "invert, sample {index}"
            );
        }
        assert_eq!(a.is_zero(), ea == BigUint::from(0u32), "is_zero {index}");
    }
}

#[test]
fn is_zero_knows_every_multiple_of_p() {
    let p = prime();
    for multiple in [0u32, 1, 2] {
        assert!(raw(&(&p * multiple)).is_zero());
        assert!(!raw(&(&p * multiple + 1u32)).is_zero());
    }
    assert!(Fe::ZERO.is_zero());
    assert!(Fe::ONE.sub(&Fe::ONE).is_zero());
    assert!(!Fe::ONE.is_zero());
    assert!(Fe::ZERO.invert().is_zero());
}

#[test]
fn bytes_go_in_and_out() {
    let p = prime();
    let mut rng = StdRng::seed_from_u64(0x6b65_7967_6174_6535);
    let mut numbers = vec![
        BigUint::from(0u32),
        BigUint::from(1u32),
        &p - 1u32,
        p.clone(),
        &p + 1u32,
        (BigUint::from(1u32) << 256usize) - 1u32,
    ];
    for _ in 0..200 {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        numbers.push(BigUint::from_bytes_be(&bytes));
    }
    for number in &numbers {
        let fe = Fe::from_bytes(&bytes32(number));
        check_invariant(&fe, "from_bytes");
        assert_eq!(element(&fe), number % &p);
        assert_eq!(fe.to_bytes(), bytes32(&(number % &p)));
    }
    // Every representation of a value (itself, plus p, plus 2p) comes out canonical.
    let five = Fe::from_bytes(&bytes32(&BigUint::from(5u32)));
    for multiple in [0u32, 1, 2] {
        let number = value(&five.0) + &p * multiple;
        if number.bits() <= 257 {
            assert_eq!(raw(&number).to_bytes(), bytes32(&BigUint::from(5u32)));
        }
    }
}

