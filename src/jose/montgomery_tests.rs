//! The arithmetic against `num-bigint-dig` (the `rsa` crate's bignums) on random numbers of
//! every size the limb width changes at, and at the edges of each input's range.

use rsa::BigUint;

use super::*;
use crate::testing::rng::xorshift;

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
            limbs_to_be(
                prepared.r_squared.limbs(prepared.limbs.len()),
                prepared.bits,
                size
            ),
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

// Worst cases of the carry margin. A column of `reduce_columns` adds up to `2·count` products of
// two limbs and a carry in a `u64`. In real use the quotient digits and Montgomery-form operands
// are effectively random, so columns stay near half of that, and random tests never show whether
// the margin holds. Below: the bound for every size; the largest columns driven through
// `reduce_columns` at the largest modulus of each limb width; all-ones operands and moduli
// through `multiply`, `square` and `pow`. The column sums use plain `+` and `*` (`wrapping_*` is
// only in the Newton inverse, modulo 2^64 by design, and in `reduce_once`'s borrow), so with
// overflow checks on (Cargo.toml's `[profile.test]`) an overflow panics; each test also checks
// its result exactly, so a wrapped sum fails even in a build without them.

/// `2^bits - 1`, big-endian: every limb of the modulus all ones.
fn all_ones(bits: u64) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut number = vec![0xff; bytes];
    number[0] >>= bytes as u64 * 8 - bits;
    number
}

/// Little-endian limbs of `bits` bits as a number; a limb may hold more (a carry, a column).
fn from_limbs<T: Copy + Into<u64>>(limbs: &[T], bits: u32) -> BigUint {
    limbs
        .iter()
        .rev()
        .fold(BigUint::from(0u32), |number, &limb| {
            (number << bits as usize) + limb.into()
        })
}

/// The largest modulus of each limb width up to the largest RSA modulus, and the sizes beside
/// them: where the columns are longest for their width.
fn widest_sizes() -> Vec<u64> {
    let max = crate::jose::rsa::MAX_MODULUS_BITS;
    let mut sizes = vec![];
    for bits in 2..=max {
        if bits == max || limb_bits(bits) != limb_bits(bits + 1) {
            sizes.extend([bits - 1, bits, bits + 1]);
        }
    }
    sizes.retain(|&bits| bits <= max);
    sizes.dedup();
    sizes
}

/// `Modulus::new`'s limb count: enough limbs for the modulus and two spare bits.
fn limb_count(bits: u64) -> u64 {
    (bits + 2).div_ceil(u64::from(limb_bits(bits)))
}

/// The largest value any column of `reduce_columns` can reach with `count` limbs of `bits`
/// bits, every factor of every product at `2^bits - 1` (`None` past `u128`, which no size
/// approaches).
fn column_bound(bits: u32, count: u64) -> Option<u128> {
    let square = ((1u128 << bits) - 1).pow(2);
    let mut carry = 0u128;
    let mut peak = 0u128;
    // Column k adds 2k + 2 products below R, 2·(2·count - 1 - k) above.
    for k in 0..2 * count - 1 {
        let products = if k < count {
            2 * k + 2
        } else {
            2 * (2 * count - 1 - k)
        };
        let column = carry.checked_add(u128::from(products).checked_mul(square)?)?;
        peak = peak.max(column);
        carry = column >> bits;
    }
    Some(peak)
}

#[test]
fn the_column_bound_fits_a_u64_at_every_allowed_size() {
    for bits in 2..=crate::jose::rsa::MAX_MODULUS_BITS {
        let peak = column_bound(limb_bits(bits), limb_count(bits)).unwrap();
        assert!(peak < 1 << 64, "{bits} bits: columns up to {peak:#x}");
    }
    // The bound has teeth: 28-bit limbs would not do for the largest modulus.
    let count = (crate::jose::rsa::MAX_MODULUS_BITS + 2).div_ceil(28);
    assert!(column_bound(28, count).unwrap() >= 1 << 64);
}

#[test]
fn the_largest_possible_columns_do_not_overflow() {
    for bits in widest_sizes() {
        let modulus = Modulus::new(&all_ones(bits)).unwrap();
        let count = modulus.limbs.len();
        assert_eq!(count as u64, limb_count(bits), "{bits} bits");
        let (width, mask) = (modulus.bits, u128::from(modulus.mask));
        let n: Vec<u128> = modulus.limbs.iter().map(|&limb| u128::from(limb)).collect();
        // Each product column as if every limb of both factors were all ones, less what makes
        // the column's low limb pick an all-ones quotient digit: the next columns then add
        // all-ones multiples of the modulus too. Found by running the columns here in u128.
        // The digit is `low·inverse mod 2^bits`, so the low limb wanted is `mask·inverse⁻¹`,
        // and `inverse⁻¹ = -n[0]` (all ones here too).
        let wanted = (mask * ((1 << width) - n[0])) & mask;
        let mut columns = vec![0u64; 2 * count - 1];
        let mut column = 0u128;
        let mut peak = 0u128;
        for (k, product_column) in columns.iter_mut().enumerate() {
            let low = (k + 1).saturating_sub(count);
            let full = (k + 1 - 2 * low) as u128 * mask * mask;
            if k < count {
                // The multiples of the digits before, then the column's own digit.
                let before = column + full + (0..k).map(|i| mask * n[k - i]).sum::<u128>();
                let adjust = (before - wanted) & mask;
                *product_column = u64::try_from(full - adjust).unwrap();
                column = before - adjust + mask * n[0];
            } else {
                *product_column = u64::try_from(full).unwrap();
                column += full + (low..count).map(|i| mask * n[k - i]).sum::<u128>();
            }
            peak = peak.max(column);
            column >>= width;
        }

        // The columns of m·n as `multiply` and `square` add them (m[k] is zero in column k).
        let multiples = |m: &Padded, low: usize, k: usize| -> u64 {
            (low..=k.min(count - 1))
                .map(|i| u64::from(m.0[PAD + i]) * u64::from(modulus.limbs[k - i]))
                .sum()
        };
        let mut m = Padded::ZERO;
        let mut out = Number::ZERO;
        modulus.reduce_columns(|m, low, k| columns[k] + multiples(m, low, k), &mut m, &mut out);
        let (m, out) = (&m.0[PAD..PAD + count], out.limbs(count));
        assert!(
            m.iter().all(|&digit| u128::from(digit) == mask),
            "{bits} bits"
        );
        // Exact: the columns' sum plus m·n is out·R, as Montgomery reduction defines it.
        let r = BigUint::from(1u32) << (width as usize * count);
        assert!(
            from_limbs(&columns, width) + from_limbs(m, width) * from_limbs(&modulus.limbs, width)
                == from_limbs(out, width) * r,
            "{bits} bits"
        );
        assert!(peak < 1 << 64, "{bits} bits: a column reaches {peak:#x}");
        // Within 5% of 2^64 at the largest size of the narrower width: the margin is thin by
        // design, and this is the case that would cross it.
        if limb_bits(bits) != limb_bits(bits + 1) {
            assert!(peak > (1 << 64) / 100 * 95, "{bits} bits: {peak:#x}");
        }
    }
}

#[test]
fn products_and_squares_of_all_ones_limbs_are_exact() {
    for bits in widest_sizes() {
        let modulus = Modulus::new(&all_ones(bits)).unwrap();
        let count = modulus.limbs.len();
        let width = modulus.bits;
        // Every limb at its largest, the top one too: more than any operand below 2·modulus.
        let a_value = from_limbs(&vec![modulus.mask; count], width);
        let a = Number::new(&vec![modulus.mask; count]);
        let n = from_limbs(&modulus.limbs, width);
        let r = BigUint::from(1u32) << (width as usize * count);
        let mut m = Padded::ZERO;
        let mut out = Number::ZERO;
        modulus.multiply(&a, &a, &mut m, &mut out);
        assert!(
            &a_value * &a_value + from_limbs(&m.0[PAD..PAD + count], width) * &n
                == from_limbs(out.limbs(count), width) * &r,
            "{bits} bits: multiply"
        );
        modulus.square(&a, &mut m, &mut out);
        assert!(
            &a_value * &a_value + from_limbs(&m.0[PAD..PAD + count], width) * &n
                == from_limbs(out.limbs(count), width) * &r,
            "{bits} bits: square"
        );
    }
}

#[test]
fn powers_modulo_all_ones_at_the_widest_sizes_match() {
    for bits in widest_sizes() {
        let modulus = all_ones(bits);
        let prepared = Modulus::new(&modulus).unwrap();
        let n = BigUint::from_bytes_be(&modulus);
        let len = modulus.len();
        // n - 1 is all ones but the lowest bit.
        for base in [
            &n - 1u32,
            &n - 2u32,
            BigUint::from(1u32) << (bits as usize - 1),
        ] {
            let base = padded(&base, len);
            for exponent in [3, 65537, (1 << 33) - 1] {
                assert_eq!(
                    prepared.pow(&base, exponent).unwrap(),
                    expected(&base, exponent, &modulus),
                    "{bits} bits, exponent {exponent}"
                );
            }
        }
    }
}

/// What makes an overflow in the tests above a failure rather than a wrong number.
#[test]
fn overflow_checks_are_on_in_test_builds() {
    let overflowed =
        std::panic::catch_unwind(|| std::hint::black_box(u64::MAX) + std::hint::black_box(1));
    assert!(
        overflowed.is_err(),
        "build the tests with overflow-checks = true"
    );
}

// The lanes: what `multiply` and `square` sum with them, against plain sums.

/// The lanes as the wasm instructions define them: lane 0 the products of limbs 0 and 2, lane 1
/// of 1 and 3, and `and` lane by lane.
#[test]
fn lanes_multiply_and_mask_as_the_wasm_instructions_do() {
    let mut next = xorshift(0x6b65_7967_6174_6506);
    for _ in 0..1000 {
        let quad = |next: &mut dyn FnMut() -> u64| std::array::from_fn(|_| next() as u32 >> 3);
        let (x, y): ([u32; 4], [u32; 4]) = (quad(&mut next), quad(&mut next));
        let start = next() >> 8;
        let products: u64 = (0..4).map(|i| u64::from(x[i]) * u64::from(y[i])).sum();
        let mut sum = lanes::Pair::ZERO;
        sum = sum.mul_add(lanes::Quad::load(&[start as u32, 0, 0, 0]), lanes::Quad::load(&[1, 0, 0, 0]));
        sum = sum.mul_add(lanes::Quad::load(&x), lanes::Quad::load(&y));
        assert_eq!(sum.sum(), u64::from(start as u32) + products);
        for (kept, mask) in TAIL_MASKS.iter().enumerate() {
            let masked = lanes::Pair::ZERO
                .mul_add(lanes::Quad::load(&x).and(lanes::Quad::load(mask)), lanes::Quad::load(&y));
            let expected: u64 = (0..kept).map(|i| u64::from(x[i]) * u64::from(y[i])).sum();
            assert_eq!(masked.sum(), expected);
        }
    }
}

/// Every column of `multiply` and `square` (as `reduce_columns` calls them, with the digits
/// chosen so far) against plain sums of a·b (or a·a) and m·n, at sizes whose limb counts leave
/// each remainder modulo the groups of four.
#[test]
fn grouped_columns_equal_plain_column_sums() {
    let mut next = xorshift(0x6b65_7967_6174_6507);
    for bits in [26, 56, 84, 112, 2048, 2049, 2070, 2071, 3072, 4096] {
        let modulus = Modulus::new(&random_modulus(&mut next, bits)).unwrap();
        let count = modulus.limbs.len();
        let mut random =
            || -> Vec<u32> { (0..count).map(|_| next() as u32 & modulus.mask).collect() };
        let (a, b) = (random(), random());
        let plain = |y: &[u32], m: &Padded, low: usize, k: usize| -> u64 {
            (low..=k.min(count - 1))
                .map(|i| {
                    u64::from(a[i]) * u64::from(y[k - i])
                        + u64::from(m.0[PAD + i]) * u64::from(modulus.limbs[k - i])
                })
                .sum()
        };
        let (a_number, b_number) = (Number::new(&a), Number::new(&b));
        for square in [false, true] {
            let mut columns = 0;
            let column = |m: &Padded, low: usize, k: usize| {
                let (got, y) = if square {
                    (modulus.square_column(&a_number, m, low, k), &a)
                } else {
                    (modulus.multiply_column(&a_number, &b_number, m, low, k), &b)
                };
                assert_eq!(got, plain(y, m, low, k), "{bits} bits, square {square}, column {k}");
                got
            };
            let counted = |m: &Padded, low: usize, k: usize| {
                columns += 1;
                column(m, low, k)
            };
            let (mut m, mut out) = (Padded::ZERO, Number::ZERO);
            modulus.reduce_columns(counted, &mut m, &mut out);
            assert_eq!(columns, 2 * count - 1, "{bits} bits");
        }
    }
}
