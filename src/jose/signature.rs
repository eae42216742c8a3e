//! Signature keys prepared once, when a secret or a JWKS is loaded, so that verifying a token
//! costs the cryptography and nothing else: HMAC keys are already keyed, public keys already
//! decoded and checked. jsonwebtoken's own `decode` rebuilds the key on every call.
//!
//! The primitives are RustCrypto's, as in jsonwebtoken's `rust_crypto` backend, except RSA
//! (PKCS#1 v1.5 and PSS, `rsa`) and ECDSA's scalar multiplication (`ecdsa`; for P-256 also the
//! field and point arithmetic, `p256_ecdsa`). jsonwebtoken's own verification is not linked: it
//! would bring the `rsa` crate's private-key code along.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::jose::ecdsa::{PreparedKey, generator_multiples};
use crate::jose::ed25519::PreparedEd25519Key;
use crate::jose::p256_ecdsa::P256Key;
use crate::jose::rsa::{Hash, RsaPublicKey};

#[derive(Clone)]
pub enum SignatureKey {
    Hmac(Box<HmacKey>),
    Rsa(Box<RsaKey>),
    P256(Box<P256Key>),
    P384(Box<PreparedKey<p384::NistP384>>),
    Ed25519(PreparedEd25519Key),
}

#[derive(Clone)]
pub struct HmacKey {
    sha256: Hmac<Sha256>,
    sha384: Hmac<Sha384>,
    sha512: Hmac<Sha512>,
}

#[derive(Clone)]
pub struct RsaKey {
    /// PKCS#1 v1.5 and PSS alike.
    pkcs1: RsaPublicKey,
}

impl SignatureKey {
    /// An HMAC secret, for HS256, HS384 and HS512. `None` never happens in practice: HMAC
    /// takes keys of any length (RFC 2104); the library's interface is shared with fixed-size
    /// MACs, so it returns a `Result` nonetheless.
    pub fn hmac(secret: &[u8]) -> Option<Self> {
        Some(Self::Hmac(Box::new(HmacKey {
            sha256: Hmac::new_from_slice(secret).ok()?,
            sha384: Hmac::new_from_slice(secret).ok()?,
            sha512: Hmac::new_from_slice(secret).ok()?,
        })))
    }

    /// The key of a public JWK, as jsonwebtoken decoded it.
    pub fn public(key: &DecodingKey, family: KeyFamily) -> Result<Self, String> {
        match (family, key.kind()) {
            (KeyFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                let pkcs1 = RsaPublicKey::new(n, e).map_err(|error| error.to_string())?;
                Ok(Self::Rsa(Box::new(RsaKey { pkcs1 })))
            }
            (KeyFamily::P256, DecodingKeyKind::SecretOrDer(point)) => {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                    .ok()
                    .and_then(|key| P256Key::new(key.as_affine()))
                    .map(|key| Self::P256(Box::new(key)))
                    .ok_or_else(|| "not a P-256 point".to_owned())
            }
            (KeyFamily::P384, DecodingKeyKind::SecretOrDer(point)) => {
                p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                    .map(|key| {
                        Self::P384(Box::new(PreparedKey::new(
                            *key.as_affine(),
                            p384_generator(),
                        )))
                    })
                    .map_err(|_| "not a P-384 point".to_owned())
            }
            (KeyFamily::Ed25519, DecodingKeyKind::SecretOrDer(bytes)) => {
                let bytes: &[u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| "an Ed25519 key is 32 bytes".to_owned())?;
                PreparedEd25519Key::new(bytes)
                    .map(Self::Ed25519)
                    .ok_or_else(|| "not an Ed25519 point".to_owned())
            }
            _ => Err("unsupported key".to_owned()),
        }
    }

    /// Whether `signature` (decoded bytes) signs `signing_input` with `alg`. The
    /// caller has matched `alg` to the key's type; a mismatch is simply no valid signature.
    pub fn verify(&self, alg: Algorithm, signing_input: &[u8], signature: &[u8]) -> bool {
        use Algorithm::*;
        match (self, alg) {
            (Self::Hmac(key), HS256) => mac_matches(key.sha256.clone(), signing_input, signature),
            (Self::Hmac(key), HS384) => mac_matches(key.sha384.clone(), signing_input, signature),
            (Self::Hmac(key), HS512) => mac_matches(key.sha512.clone(), signing_input, signature),
            (Self::Rsa(key), RS256) => key.pkcs1.verify(Hash::Sha256, signing_input, signature),
            (Self::Rsa(key), RS384) => key.pkcs1.verify(Hash::Sha384, signing_input, signature),
            (Self::Rsa(key), RS512) => key.pkcs1.verify(Hash::Sha512, signing_input, signature),
            (Self::Rsa(key), PS256) => key.pkcs1.verify_pss(Hash::Sha256, signing_input, signature),
            (Self::Rsa(key), PS384) => key.pkcs1.verify_pss(Hash::Sha384, signing_input, signature),
            (Self::Rsa(key), PS512) => key.pkcs1.verify_pss(Hash::Sha512, signing_input, signature),
            // `from_slice` takes r‖s and refuses either outside [1, n).
            (Self::P256(key), ES256) => {
                p256::ecdsa::Signature::from_slice(signature).is_ok_and(|signature| {
                    let (r, s) = signature.split_scalars();
                    key.verify(&Sha256::digest(signing_input), *r, *s)
                })
            }
            (Self::P384(key), ES384) => {
                p384::ecdsa::Signature::from_slice(signature).is_ok_and(|signature| {
                    let (r, s) = signature.split_scalars();
                    key.verify(&Sha384::digest(signing_input), *r, *s)
                })
            }
            (Self::Ed25519(key), EdDSA) => key.verify(signing_input, signature),
            _ => false,
        }
    }
}

/// The generator's odd multiples, computed once per curve for all its keys. P-256's for the
/// generic code are for the tests, which check `P256Key` against it.
#[cfg(test)]
pub(crate) fn p256_generator() -> &'static [p256::AffinePoint] {
    static GENERATOR: OnceLock<Vec<p256::AffinePoint>> = OnceLock::new();
    GENERATOR.get_or_init(generator_multiples::<p256::NistP256>)
}

pub(crate) fn p384_generator() -> &'static [p384::AffinePoint] {
    static GENERATOR: OnceLock<Vec<p384::AffinePoint>> = OnceLock::new();
    GENERATOR.get_or_init(generator_multiples::<p384::NistP384>)
}

/// The public key types a JWK can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// Compares in constant time (`verify_slice`): an HMAC tag is a secret until it matches.
fn mac_matches<M: Mac>(mut mac: M, message: &[u8], tag: &[u8]) -> bool {
    mac.update(message);
    mac.verify_slice(tag).is_ok()
}

