//! RSASSA-PKCS1-v1_5 verification (RFC 8017 §8.2.2), for RS256/RS384/RS512, and RSASSA-PSS
//! verification (§8.1.2) with JWS's parameters (RFC 7518 §3.5: MGF1 with the message's hash, a
//! salt of the hash's length), for PS256/PS384/PS512.
//!
//! Why not the `rsa` crate that jsonwebtoken uses: its bignums use 64-bit digits, which wasm32
//! multiplies through emulated 128-bit arithmetic, and jsonwebtoken rebuilds and re-checks the
//! key on every verification; together about 15 times slower than Envoy's own RS256 in the
//! benchmark. The arithmetic is `montgomery`'s, built for wasm32; the key's Montgomery
//! parameters are computed once. Only public data is involved, so nothing here needs constant
//! time.
//!
//! The PKCS#1 v1.5 check is the RFC's: compute the encoded message from the signature and
//! compare it with the one expected for the hash, byte for byte, rather than parse it. PSS has
//! a random salt, so its encoding is checked step by step (EMSA-PSS-VERIFY, §9.1.2). Having PSS
//! here too keeps the `rsa` crate (and the private-key code that comes with jsonwebtoken's
//! crypto) out of the module.

use thiserror::Error;
use crate::jose::montgomery::Modulus;
use sha2::digest::{FixedOutputReset, Output};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Moduli from 2048 bits (below is too weak to trust) to 4096 (the `rsa` crate's limit).
pub const MIN_MODULUS_BITS: u64 = 2048;
pub const MAX_MODULUS_BITS: u64 = 4096;

/// DER of the `DigestInfo` prefix for each hash (RFC 8017 §9.2, note 1).
const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_PREFIX: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("RSA modulus of {0} bits is outside {MIN_MODULUS_BITS}–{MAX_MODULUS_BITS}")]
    ModulusSize(u64),
    #[error("RSA public exponent must be odd, from 3 to 2^33-1")]
    Exponent,
}


/// An RSA public key, checked once, with its Montgomery parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    modulus: Modulus,
    e: u64,
    /// The modulus length in bytes (`k` in the RFC).
    size: usize,
}

impl RsaPublicKey {
    /// From the big-endian modulus and exponent (a JWK's `n` and `e`, decoded).
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Result<Self, KeyError> {
        let modulus = trim_leading_zeros(modulus);
        let bits = bit_length(modulus);
        // An even modulus is no RSA modulus (and Montgomery form needs an odd one).
        let odd = modulus.last().is_some_and(|byte| byte & 1 == 1);
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) || !odd {
            return Err(KeyError::ModulusSize(bits));
        }
        // As the `rsa` crate: small odd exponents only; 65537 in practice.
        let exponent = trim_leading_zeros(exponent);
        let e = match exponent.len() {
            1..=8 => exponent
                .iter()
                .fold(0u64, |e, &byte| (e << 8) | u64::from(byte)),
            _ => return Err(KeyError::Exponent),
        };
        if !(3..=(1u64 << 33) - 1).contains(&e) || e & 1 == 0 {
            return Err(KeyError::Exponent);
        }
        let modulus = Modulus::new(modulus).ok_or(KeyError::ModulusSize(bits))?;
        let size = usize::try_from(bits.div_ceil(8)).map_err(|_| KeyError::ModulusSize(bits))?;
        Ok(Self { modulus, e, size })
    }

    /// Whether `signature` is this key's PKCS#1 v1.5 signature of `message` with `hash`.
    pub fn verify(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        if signature.len() != self.size {
            return false;
        }
        // RSAVP1: s < n, m = s^e mod n, then I2OSP(m, k).
        let Some(m) = self.modulus.pow(signature, self.e) else {
            return false;
        };
        let (prefix, digest) = match hash {
            Hash::Sha256 => (SHA256_PREFIX, Sha256::digest(message).to_vec()),
            Hash::Sha384 => (SHA384_PREFIX, Sha384::digest(message).to_vec()),
            Hash::Sha512 => (SHA512_PREFIX, Sha512::digest(message).to_vec()),
        };
        expected_encoding(self.size, prefix, &digest).is_some_and(|expected| expected == m)
    }

    /// Whether `signature` is this key's RSASSA-PSS signature of `message` with `hash`, MGF1
    /// with the same hash and a salt of the hash's length (JWS's PS256/PS384/PS512).
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        if signature.len() != self.size {
            return false;
        }
        let Some(m) = self.modulus.pow(signature, self.e) else {
            return false;
        };
        let em_bits = self.modulus.bits() - 1;
        match hash {
            Hash::Sha256 => pss_encoding_matches::<Sha256>(message, &m, em_bits),
            Hash::Sha384 => pss_encoding_matches::<Sha384>(message, &m, em_bits),
            Hash::Sha512 => pss_encoding_matches::<Sha512>(message, &m, em_bits),
        }
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) of `message` against the signature's representative `m`
/// (the modulus' size in bytes), with `em_bits` = the modulus' bits − 1 and a salt of the hash's
/// length.
fn pss_encoding_matches<D: Digest + FixedOutputReset>(message: &[u8], m: &[u8], em_bits: u64) -> bool {
    let hash_len = <D as Digest>::output_size();
    let salt_len = hash_len;
    let Ok(em_len) = usize::try_from(em_bits.div_ceil(8)) else {
        return false;
    };
    // I2OSP(m, emLen): when emLen is one byte short of the modulus, m's first byte is zero.
    let Some(leading) = m.len().checked_sub(em_len) else {
        return false;
    };
    if m[..leading].iter().any(|&byte| byte != 0) {
        return false;
    }
    let em = &m[leading..];
    if em_len < hash_len + salt_len + 2 || em.last() != Some(&0xbc) {
        return false;
    }
    let (masked_db, rest) = em.split_at(em_len - hash_len - 1);
    let h = &rest[..hash_len];
    // The bits of the first byte above emBits must be zero, in EM and so in DB.
    let unused_bits = 8 * em_len as u64 - em_bits;
    let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
    if masked_db.first().is_some_and(|&byte| byte & !top_mask != 0) {
        return false;
    }
    let mut db = masked_db.to_vec();
    mgf1_xor::<D>(h, &mut db);
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // DB = PS (zeros) ‖ 0x01 ‖ salt.
    let (padding, salt_with_marker) = db.split_at(db.len() - salt_len - 1);
    if padding.iter().any(|&byte| byte != 0) || salt_with_marker[0] != 0x01 {
        return false;
    }
    let salt = &salt_with_marker[1..];
    let mut hasher = D::new();
    Digest::update(&mut hasher, [0u8; 8]);
    Digest::update(&mut hasher, D::digest(message));
    Digest::update(&mut hasher, salt);
    hasher.finalize()[..] == *h
}

/// XORs MGF1(`seed`) (RFC 8017 §B.2.1) into `out`.
fn mgf1_xor<D: Digest + FixedOutputReset>(seed: &[u8], out: &mut [u8]) {
    let mut hasher = D::new();
    let mut block = Output::<D>::default();
    for (counter, chunk) in out.chunks_mut(<D as Digest>::output_size()).enumerate() {
        Digest::update(&mut hasher, seed);
        Digest::update(&mut hasher, (counter as u32).to_be_bytes());
        Digest::finalize_into_reset(&mut hasher, &mut block);
        for (byte, mask) in chunk.iter_mut().zip(block.iter()) {
            *byte ^= mask;
        }
    }
}

fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|&&byte| byte == 0).count();
    &bytes[zeros..]
}

/// Bits of a big-endian number without leading zero bytes.
fn bit_length(bytes: &[u8]) -> u64 {
    match bytes.first() {
        None => 0,
        Some(first) => (bytes.len() as u64 - 1) * 8 + u64::from(8 - first.leading_zeros()),
    }
}

/// EMSA-PKCS1-v1_5-ENCODE (RFC 8017 §9.2): `00 01 FF…FF 00 DigestInfo`, at least 8 bytes of FF.
fn expected_encoding(size: usize, prefix: &[u8], digest: &[u8]) -> Option<Vec<u8>> {
    let info = prefix.len() + digest.len();
    let fill = size.checked_sub(info + 3).filter(|&fill| fill >= 8)?;
    let mut encoded = Vec::with_capacity(size);
    encoded.extend_from_slice(&[0x00, 0x01]);
    encoded.resize(2 + fill, 0xff);
    encoded.push(0x00);
    encoded.extend_from_slice(prefix);
    encoded.extend_from_slice(digest);
    Some(encoded)
}

#[cfg(test)]
#[path = "rsa_tests.rs"]
mod tests;
