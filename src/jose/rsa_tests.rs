//! The verifier against signatures made by the `rsa` crate (through jsonwebtoken), and against
//! every way a signature or key can be wrong.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

use super::*;
use crate::testing::keys::{self as test_keys, TestKey};

fn part(key: &TestKey, name: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(key.jwk[name].as_str().unwrap())
        .unwrap()
}

fn public(key: &TestKey) -> RsaPublicKey {
    RsaPublicKey::new(&part(key, "n"), &part(key, "e")).unwrap()
}

/// The `rsa` crate's signature, as jsonwebtoken makes it for a JWS.
fn sign(key: &TestKey, alg: Algorithm, message: &[u8]) -> Vec<u8> {
    let signature = jsonwebtoken::crypto::sign(message, &key.encoding, alg).unwrap();
    URL_SAFE_NO_PAD.decode(signature).unwrap()
}

const CASES: [(Algorithm, Hash); 3] = [
    (Algorithm::RS256, Hash::Sha256),
    (Algorithm::RS384, Hash::Sha384),
    (Algorithm::RS512, Hash::Sha512),
];

#[test]
fn verifies_what_the_rsa_crate_signs_with_each_hash() {
    let key = test_keys::rsa();
    let public = public(key);
    for (alg, hash) in CASES {
        for message in [
            &b""[..],
            b"a",
            b"eyJhbGciOiJSUzI1NiJ9.eyJ1c2VyX2lkIjoidTEifQ",
        ] {
            let signature = sign(key, alg, message);
            assert!(
                public.verify(hash, message, &signature),
                "{alg:?} {message:?}"
            );
        }
    }
}

#[test]
fn refuses_another_message_key_or_hash() {
    let key = test_keys::rsa();
    let public = public(key);
    let signature = sign(key, Algorithm::RS256, b"message");
    assert!(!public.verify(Hash::Sha256, b"messagf", &signature));
    assert!(!public.verify(Hash::Sha384, b"message", &signature));
    assert!(!public.verify(Hash::Sha512, b"message", &signature));
    let other = self::public(test_keys::rsa_other());
    assert!(!other.verify(Hash::Sha256, b"message", &signature));
}

#[test]
fn refuses_altered_or_misshapen_signatures() {
    let key = test_keys::rsa();
    let public = public(key);
    let signature = sign(key, Algorithm::RS256, b"message");
    for bit in [0, 7, 100 * 8 + 3, signature.len() * 8 - 1] {
        let mut altered = signature.clone();
        altered[bit / 8] ^= 1 << (bit % 8);
        assert!(
            !public.verify(Hash::Sha256, b"message", &altered),
            "bit {bit}"
        );
    }
    let mut longer = vec![0];
    longer.extend_from_slice(&signature);
    assert!(!public.verify(Hash::Sha256, b"message", &longer));
    assert!(!public.verify(Hash::Sha256, b"message", &signature[1..]));
    assert!(!public.verify(Hash::Sha256, b"message", &[]));
    // s ≥ n is no signature, even where s mod n would be one.
    let n = part(key, "n");
    assert!(!public.verify(Hash::Sha256, b"message", &n));
    let s_plus_n =
        (rsa::BigUint::from_bytes_be(&signature) + rsa::BigUint::from_bytes_be(&n)).to_bytes_be();
    if s_plus_n.len() == signature.len() {
        assert!(!public.verify(Hash::Sha256, b"message", &s_plus_n));
    }
    assert!(!public.verify(Hash::Sha256, b"message", &vec![0xff; signature.len()]));
    assert!(!public.verify(Hash::Sha256, b"message", &vec![0; signature.len()]));
}

#[test]
fn the_encoding_is_the_rfcs_and_too_small_moduli_have_none() {
    let digest = [0xab; 32];
    let encoded = expected_encoding(256, SHA256_PREFIX, &digest).unwrap();
    assert_eq!(encoded.len(), 256);
    assert_eq!(&encoded[..2], &[0x00, 0x01]);
    let fill = 256 - 3 - SHA256_PREFIX.len() - 32;
    assert!(encoded[2..2 + fill].iter().all(|&byte| byte == 0xff));
    assert_eq!(encoded[2 + fill], 0x00);
    assert_eq!(
        &encoded[3 + fill..3 + fill + SHA256_PREFIX.len()],
        SHA256_PREFIX
    );
    assert_eq!(&encoded[256 - 32..], &digest);
    // Fewer than 8 bytes of padding is no valid encoding.
    let minimum = SHA512_PREFIX.len() + 64 + 3 + 8;
    assert!(expected_encoding(minimum, SHA512_PREFIX, &[0; 64]).is_some());
    assert!(expected_encoding(minimum - 1, SHA512_PREFIX, &[0; 64]).is_none());
}

#[test]
fn verifies_with_3072_and_4096_bit_keys_and_odd_sizes() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    for bits in [2056, 3072, 4096] {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits).unwrap();
        let encoding =
            jsonwebtoken::EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
        let public =
            RsaPublicKey::new(&private.n().to_bytes_be(), &private.e().to_bytes_be()).unwrap();
        let signature =
            jsonwebtoken::crypto::sign(b"message", &encoding, Algorithm::RS256).unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert!(
            public.verify(Hash::Sha256, b"message", &signature),
            "{bits}"
        );
        assert!(
            !public.verify(Hash::Sha256, b"messagf", &signature),
            "{bits}"
        );
    }
}

#[test]
fn refuses_weak_oversized_or_malformed_keys() {
    let odd_modulus = |bits: usize| {
        let mut modulus = vec![0xff; bits / 8];
        modulus[0] = 0x80;
        modulus
    };
    let e = [0x01, 0x00, 0x01];
    assert!(RsaPublicKey::new(&odd_modulus(2048), &e).is_ok());
    assert!(RsaPublicKey::new(&odd_modulus(4096), &e).is_ok());
    assert_eq!(
        RsaPublicKey::new(&odd_modulus(1024), &e),
        Err(KeyError::ModulusSize(1024))
    );
    assert_eq!(
        RsaPublicKey::new(&odd_modulus(4104), &e),
        Err(KeyError::ModulusSize(4104))
    );
    let mut even = odd_modulus(2048);
    even[255] = 0xfe;
    assert!(RsaPublicKey::new(&even, &e).is_err());
    for exponent in [
        &[1][..],
        &[2],
        &[0x01, 0x00, 0x00],
        &[0x02, 0x00, 0x00, 0x00, 0x01],
    ] {
        assert_eq!(
            RsaPublicKey::new(&odd_modulus(2048), exponent),
            Err(KeyError::Exponent),
            "{exponent:?}"
        );
    }
    assert!(RsaPublicKey::new(&odd_modulus(2048), &[3]).is_ok());
    assert!(RsaPublicKey::new(&odd_modulus(2048), &[0, 0, 0x01, 0x00, 0x01]).is_ok());
    assert!(RsaPublicKey::new(&odd_modulus(2048), &[0x01; 9]).is_err());
    // Leading zero bytes do not count towards the modulus' size.
    let mut padded = vec![0, 0];
    padded.extend_from_slice(&odd_modulus(2048));
    assert!(RsaPublicKey::new(&padded, &e).is_ok());
    assert!(RsaPublicKey::new(&odd_modulus(2048), &[0x01, 0xff, 0xff, 0xff, 0xff]).is_ok());
}

const PSS_CASES: [(Algorithm, Hash); 3] = [
    (Algorithm::PS256, Hash::Sha256),
    (Algorithm::PS384, Hash::Sha384),
    (Algorithm::PS512, Hash::Sha512),
];

#[test]
fn verifies_what_the_rsa_crate_signs_with_pss() {
    let key = test_keys::rsa();
    let public = public(key);
    for (alg, hash) in PSS_CASES {
        for message in [&b""[..], b"a", b"eyJhbGciOiJQUzI1NiJ9.eyJ1c2VyX2lkIjoidTEifQ"] {
            let signature = sign(key, alg, message);
            assert!(public.verify_pss(hash, message, &signature), "{alg:?} {message:?}");
            // PSS and PKCS#1 v1.5 signatures are not each other's.
            assert!(!public.verify(hash, message, &signature), "{alg:?}");
        }
    }
    let pkcs1 = sign(key, Algorithm::RS256, b"message");
    assert!(!public.verify_pss(Hash::Sha256, b"message", &pkcs1));
}

#[test]
fn pss_refuses_another_message_key_hash_or_any_changed_bit() {
    let key = test_keys::rsa();
    let public = public(key);
    let signature = sign(key, Algorithm::PS256, b"message");
    assert!(!public.verify_pss(Hash::Sha256, b"messagf", &signature));
    assert!(!public.verify_pss(Hash::Sha384, b"message", &signature));
    assert!(!public.verify_pss(Hash::Sha512, b"message", &signature));
    assert!(!self::public(test_keys::rsa_other()).verify_pss(Hash::Sha256, b"message", &signature));
    for index in [0, 1, 100, signature.len() - 1] {
        for bit in [0, 7] {
            let mut changed = signature.clone();
            changed[index] ^= 1 << bit;
            assert!(!public.verify_pss(Hash::Sha256, b"message", &changed), "{index} {bit}");
        }
    }
    assert!(!public.verify_pss(Hash::Sha256, b"message", &signature[1..]));
    let mut longer = signature.clone();
    longer.insert(0, 0);
    assert!(!public.verify_pss(Hash::Sha256, b"message", &longer));
    assert!(!public.verify_pss(Hash::Sha256, b"message", &[]));
}

/// Moduli of 8k + 1 bits, where the encoded message is a byte shorter than the modulus
/// (RFC 8017's emLen < k), and other sizes.
#[test]
fn pss_with_odd_modulus_sizes() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    for bits in [2049, 2056, 3071, 3073] {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits).unwrap();
        let encoding =
            jsonwebtoken::EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
        let public =
            RsaPublicKey::new(&private.n().to_bytes_be(), &private.e().to_bytes_be()).unwrap();
        for (alg, hash) in PSS_CASES {
            let signature = jsonwebtoken::crypto::sign(b"message", &encoding, alg).unwrap();
            let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            assert!(public.verify_pss(hash, b"message", &signature), "{bits} {alg:?}");
            assert!(!public.verify_pss(hash, b"messagf", &signature), "{bits} {alg:?}");
        }
    }
}

/// EMSA-PSS-VERIFY's steps on hand-made encodings: each condition of RFC 8017 §9.1.2 alone.
#[test]
fn pss_encoding_checks_each_condition() {
    // A 2048-bit modulus: emBits 2047, emLen 256, one unused bit at the top.
    let em_bits = 2047;
    let message = b"message";
    let salt = [7u8; 32];
    let encode = |salt: &[u8], marker: u8, trailer: u8| -> Vec<u8> {
        let m_hash = Sha256::digest(message);
        let mut prime = vec![0u8; 8];
        prime.extend_from_slice(&m_hash);
        prime.extend_from_slice(salt);
        let h = Sha256::digest(&prime);
        let mut db = vec![0u8; 256 - 32 - 1];
        let marker_at = db.len() - salt.len() - 1;
        db[marker_at] = marker;
        db[marker_at + 1..].copy_from_slice(salt);
        mgf1_xor::<Sha256>(&h, &mut db);
        db[0] &= 0x7f;
        let mut em = db;
        em.extend_from_slice(&h);
        em.push(trailer);
        em
    };
    let good = encode(&salt, 0x01, 0xbc);
    assert!(pss_encoding_matches::<Sha256>(message, &good, em_bits));
    assert!(!pss_encoding_matches::<Sha256>(b"other", &good, em_bits));
    assert!(!pss_encoding_matches::<Sha256>(message, &encode(&salt, 0x01, 0xbd), em_bits));
    assert!(!pss_encoding_matches::<Sha256>(message, &encode(&salt, 0x02, 0xbc), em_bits));
    // Another salt length than the hash's.
    assert!(!pss_encoding_matches::<Sha256>(message, &encode(&[7u8; 20], 0x01, 0xbc), em_bits));
    assert!(!pss_encoding_matches::<Sha256>(message, &encode(&[], 0x01, 0xbc), em_bits));
    // The unused top bit set.
    let mut top = good.clone();
    top[0] |= 0x80;
    assert!(!pss_encoding_matches::<Sha256>(message, &top, em_bits));
    // emLen one byte short of the representative: its first byte must be zero.
    let mut longer = vec![0u8];
    longer.extend_from_slice(&good);
    assert!(pss_encoding_matches::<Sha256>(message, &longer, em_bits));
    longer[0] = 1;
    assert!(!pss_encoding_matches::<Sha256>(message, &longer, em_bits));
    // Too short for hash, salt and the two fixed bytes.
    assert!(!pss_encoding_matches::<Sha256>(message, &good[..65], 65 * 8 - 1));
}
