//! Verification keys: HMAC secrets and JWKS public keys, each with the algorithms it may verify.
//! A token's `alg` must be allowed for its provider AND fit the key's type, so an HS256 token
//! "signed" with an RSA public key's bytes (algorithm confusion) finds no key at all.

use thiserror::Error;
use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use log::warn;
use serde_json::Value;

use crate::jose::signature::{KeyFamily, SignatureKey};

/// A key and what it may verify.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    /// Allowed by the provider, fitting the key type and the JWK's own `alg`, if it has one.
    pub algorithms: Vec<Algorithm>,
    pub key: SignatureKey,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a JWKS, as a whole, could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwksError {
    #[error("the JWKS is not JSON: {0}")]
    NotJson(String),
    #[error("the JWKS has no \"keys\" array")]
    NoKeysArray,
    /// Parsed, but no key in it can verify any allowed algorithm.
    #[error("the JWKS has no key usable with the provider's algorithms")]
    NoUsableKey,
}


/// The type of a JWK's key (`None` for a symmetric one) and the algorithms it can verify,
/// before the provider's allow-list.
fn algorithms_for(jwk: &Jwk) -> Option<(Option<KeyFamily>, &'static [Algorithm])> {
    use Algorithm::*;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some((
            Some(KeyFamily::Rsa),
            &[RS256, RS384, RS512, PS256, PS384, PS512],
        )),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => Some((Some(KeyFamily::P256), &[ES256])),
            EllipticCurve::P384 => Some((Some(KeyFamily::P384), &[ES384])),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => Some((Some(KeyFamily::Ed25519), &[EdDSA])),
            _ => None,
        },
        AlgorithmParameters::OctetKey(_) => Some((None, &[HS256, HS384, HS512])),
        _ => None,
    }
}

/// The usable keys of a JWKS document. Keys of unknown or unsupported types, keys for
/// encryption, keys whose `alg` the provider does not allow, and weak RSA keys are skipped with a
/// log line; only a JWKS with no usable key at all is an error.
pub fn parse_jwks(json: &[u8], allowed: &[Algorithm]) -> Result<Vec<VerifyKey>, JwksError> {
    let document: Value =
        serde_json::from_slice(json).map_err(|error| JwksError::NotJson(error.to_string()))?;
    let Some(Value::Array(entries)) = document.get("keys") else {
        return Err(JwksError::NoKeysArray);
    };
    let mut keys = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        match jwk_key(entry, allowed) {
            Ok(key) => keys.push(key),
            Err(reason) => warn!("JWKS key {index} skipped: {reason}"),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

fn jwk_key(entry: &Value, allowed: &[Algorithm]) -> Result<VerifyKey, String> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|error| error.to_string())?;
    let kid = jwk.common.key_id.clone();
    let name = kid.as_deref().unwrap_or("(no kid)");
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err(format!("{name}: \"use\" is not \"sig\""));
    }
    let (family, for_type) =
        algorithms_for(&jwk).ok_or_else(|| format!("{name}: unsupported key type"))?;
    let declared = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::UNKNOWN_ALGORITHM) => {
            return Err(format!("{name}: unknown \"alg\""));
        }
        Some(alg) => Some(
            Algorithm::try_from(alg)
                .map_err(|_| format!("{name}: \"alg\" {alg} is not for signing"))?,
        ),
    };
    if let Some(declared) = declared
        && !for_type.contains(&declared)
    {
        return Err(format!(
            "{name}: \"alg\" {declared:?} does not fit the key type"
        ));
    }
    let algorithms: Vec<Algorithm> = for_type
        .iter()
        .copied()
        .filter(|alg| allowed.contains(alg) && declared.is_none_or(|d| d == *alg))
        .collect();
    if algorithms.is_empty() {
        return Err(format!("{name}: none of its algorithms is allowed"));
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|error| format!("{name}: {error}"))?;
    let key = match family {
        Some(family) => SignatureKey::public(&decoding, family),
        None => decoding
            .try_get_as_bytes()
            .ok()
            .and_then(SignatureKey::hmac)
            .ok_or_else(|| "not an HMAC secret".to_owned()),
    }
    .map_err(|error| format!("{name}: {error}"))?;
    Ok(VerifyKey {
        kid,
        algorithms,
        key,
    })
}

/// The keys of a provider's secrets: unnamed, for the provider's HMAC algorithms.
pub fn secret_keys<'a>(
    secrets: impl IntoIterator<Item = &'a [u8]>,
    algorithms: &[Algorithm],
) -> Vec<VerifyKey> {
    secrets
        .into_iter()
        .filter_map(|secret| {
            Some(VerifyKey {
                kid: None,
                algorithms: algorithms.to_vec(),
                key: SignatureKey::hmac(secret)?,
            })
        })
        .collect()
}

/// The keys to try for a token with `alg` and `kid`, and why there are none.
pub fn candidates<'a>(
    keys: &'a [VerifyKey],
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<Vec<&'a VerifyKey>, NoKey> {
    let mut named = false;
    let found: Vec<&VerifyKey> = keys
        .iter()
        .filter(|key| match (kid, &key.kid) {
            // A token that names its key gets that key only; an unnamed key (a secret) is no
            // one's, so any token may try it.
            (Some(kid), Some(key_kid)) => kid == key_kid,
            (Some(_), None) | (None, _) => true,
        })
        .inspect(|_| named = true)
        .filter(|key| key.algorithms.contains(&alg))
        .collect();
    match (found.is_empty(), named) {
        (false, _) => Ok(found),
        (true, true) => Err(NoKey::WrongType),
        (true, false) => Err(NoKey::UnknownKid),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoKey {
    /// The `kid` names no key (or there are no keys).
    UnknownKid,
    /// The named keys cannot verify this `alg`: algorithm confusion, or a JWK whose `alg`
    /// disagrees.
    WrongType,
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
