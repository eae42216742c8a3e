//! JOSE: a JWS split and decoded once, the keys it may be verified with (secrets, JWKs), and the
//! signature algorithms keygate implements itself (RSA PKCS#1 v1.5 on its own Montgomery code,
//! ECDSA P-256/P-384) or takes from RustCrypto. Knows nothing of providers or requests.

pub mod ecdsa;
pub mod ed25519;
pub mod jws;
pub mod keys;
pub mod montgomery;
pub mod p256_ecdsa;
pub mod p256_field;
pub mod p256_point;
pub mod rsa;
pub mod signature;

#[cfg(test)]
mod wycheproof_tests;
