//! The arithmetic against `num-bigint-dig` (the `rsa` crate's bignums) on random numbers of
//! every size the limb width changes at, and at the edges of each input's range.

use rsa::BigUint;

use super::*;
use crate::test_rng::xorshift;

/// A random odd number of exactly `bits` bits, big-endian.
fn random_modulus(next: &mut impl FnMut() -> u64, bits: usize) -> Vec<u8> {
    let mut bytes = random_bytes(next, bits.div_ceil(8));
    let spare = bytes.len() * 8 - bits;
    bytes[0] &= 0xff >> spare;
    bytes[0] |= 0x80 >> spare;
    *bytes.last_mut().unwrap() |= 1;
    bytes
}

fn random_bytes(next: &mut impl FnMut() -> u64, len: usize) -> Vec<u8> {
    (0..len).map(|_| next() as u8).collect()
}

/// A random number below the modulus, in the modulus' size.
fn random_below(next: &mut impl FnMut() -> u64, modulus: &[u8]) -> Vec<u8> {
    let n = BigUint::from_bytes_be(modulus);
    let value = BigUint::from_bytes_be(&random_bytes(next, modulus.len())) % &n;
    padded(&value, modulus.len())
}

fn padded(value: &BigUint, len: usize) -> Vec<u8> {
    let bytes = value.to_bytes_be();
    let mut out = vec![0; len - bytes.len()];
    out.extend_from_slice(&bytes);
    out
}

fn expected(base: &[u8], exponent: u64, modulus: &[u8]) -> Vec<u8> {
    let n = BigUint::from_bytes_be(modulus);
    let power = BigUint::from_bytes_be(base).modpow(&BigUint::from(exponent), &n);
    padded(&power, modulus.len())
}

/// Sizes around RSA's, where the limb count's rounding and the limb width change (28 bits up
/// to 3,500, 27 above), and small ones where a single limb holds the modulus.
const SIZES: [usize; 14] = [
    3, 26, 29, 56, 200, 2048, 2049, 2070, 2071, 3072, 3500, 3501, 4095, 4096,
];

#[test]
fn powers_match_a_reference_bignum_at_every_size() {
    let mut next = xorshift(0x6b65_7967_6174_6501);
    for bits in SIZES {
        for round in 0..3 {
            let modulus = random_modulus(&mut next, bits);
            let prepared = Modulus::new(&modulus).unwrap();
            for exponent in [3, 65537, (next() >> 31) | 1] {
                let base = random_below(&mut next, &modulus);
                assert_eq!(
                    prepared.pow(&base, exponent).unwrap(),
                    expected(&base, exponent, &modulus),
                    "{bits} bits, round {round}, exponent {exponent}"
                );
            }
        }
    }
}

#[test]
fn powers_of_the_edge_bases_match() {
    let mut next = xorshift(0x6b65_7967_6174_6502);
    for bits in SIZES {
        let modulus = random_modulus(&mut next, bits);
        let prepared = Modulus::new(&modulus).unwrap();
        let n = BigUint::from_bytes_be(&modulus);
        let edges = [
            BigUint::from(0u32),
            BigUint::from(1u32),
            BigUint::from(2u32),
            &n - 1u32,
            &n - 2u32,
            &n >> 1usize,
        ];
        for base in edges {
            let base = padded(&base, modulus.len());
            assert_eq!(
                prepared.pow(&base, 65537).unwrap(),
                expected(&base, 65537, &modulus),
                "{bits} bits, base {base:?}"
            );
        }
    }
}

#[test]
fn moduli_whose_limbs_are_all_ones_or_sparse_work() {
    // All-ones limbs make every column's sum as large as it can be.
    for modulus in [
        vec![0xff; 256],
        vec![0xff; 512],
        // The largest modulus with 28-bit limbs: 126 of them, columns of up to 252 products.
        [vec![0x0f], vec![0xff; 437]].concat(),
        [vec![0x80], vec![0; 254], vec![0x01]].concat(),
    ] {
        let prepared = Modulus::new(&modulus).unwrap();
        let n = BigUint::from_bytes_be(&modulus);
        let largest = padded(&(&n - 1u32), modulus.len());
        assert_eq!(
            prepared.pow(&largest, 65537).unwrap(),
            expected(&largest, 65537, &modulus)
        );
    }
}

#[test]
fn r_squared_is_r_squared_mod_the_modulus() {
    let mut next = xorshift(0x6b65_7967_6174_6503);
    for bits in SIZES {
        let modulus = random_modulus(&mut next, bits);
        let prepared = Modulus::new(&modulus).unwrap();
        let r_bits = prepared.bits as usize * prepared.limbs.len();
        assert!(r_bits >= bits + 2, "{bits} bits: R must exceed 4·modulus");
        let n = BigUint::from_bytes_be(&modulus);
        let r_squared = (BigUint::from(1u32) << (2 * r_bits)) % &n;
        let size = r_bits.div_ceil(8);
        assert_eq!(
            limbs_to_be(&prepared.r_squared, prepared.bits, size),
            padded(&r_squared, size),
            "{bits} bits"
        );
    }
}

#[test]
fn refuses_bases_not_below_the_modulus_and_unusable_exponents() {
    let mut next = xorshift(0x6b65_7967_6174_6504);
    let modulus = random_modulus(&mut next, 2048);
    let prepared = Modulus::new(&modulus).unwrap();
    let n = BigUint::from_bytes_be(&modulus);
    let base = random_below(&mut next, &modulus);
    assert_eq!(prepared.pow(&modulus, 65537), None, "the modulus itself");
    let above = padded(&(&n + 1u32), modulus.len());
    assert_eq!(prepared.pow(&above, 65537), None, "above the modulus");
    assert_eq!(
        prepared.pow(&base[1..], 65537),
        None,
        "shorter than the modulus"
    );
    assert_eq!(
        prepared.pow(&[&[0][..], &base].concat(), 65537),
        None,
        "longer"
    );
    for exponent in [0, 1, 2, 65536] {
        assert_eq!(prepared.pow(&base, exponent), None, "exponent {exponent}");
    }
}

#[test]
fn refuses_moduli_that_are_even_zero_or_one() {
    for modulus in [&[][..], &[0], &[0, 0, 1], &[1], &[0x10, 0], &[0xff, 0xfe]] {
        assert_eq!(Modulus::new(modulus), None, "{modulus:?}");
    }
    // Leading zeros are not part of the number.
    let prepared = Modulus::new(&[0, 0, 0xc5]).unwrap();
    assert_eq!(prepared.pow(&[0x02], 3), Some(vec![0x08]));
}

#[test]
fn radix_conversion_round_trips() {
    let mut next = xorshift(0x6b65_7967_6174_6505);
    for bits in [27, 28] {
        for len in [1, 3, 7, 256, 513] {
            let bytes = random_bytes(&mut next, len);
            let count = (len * 8).div_ceil(bits as usize);
            let limbs = limbs_from_be(&bytes, bits, count);
            assert!(limbs.iter().all(|&limb| limb < 1 << bits), "{bits} {len}");
            assert_eq!(limbs_to_be(&limbs, bits, len), bytes, "{bits} {len}");
        }
    }
}
