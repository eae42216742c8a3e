//! Verification of one token against one provider: algorithm, key, signature, then the claims
//! (`exp`, `nbf`, `iat`, `iss`, `aud`, required claims, lifetime) against the given clock.

use std::fmt;

use serde_json::{Map, Value};

use crate::config::Provider;
use crate::jose::jws::Jws;
use crate::jose::keys::{NoKey, VerifyKey, candidates};
use crate::policy::conditions::all_hold;

/// A token whose signature, algorithm and claims have been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// Index of the provider that verified it.
    pub provider: usize,
    pub claims: Map<String, Value>,
    /// `exp` in whole seconds (rounded down), when the token has one. Tokens without one are
    /// long-lived keys, checked against the revocation service.
    pub expires_at: Option<u64>,
}

impl VerifiedToken {
    pub fn expires(&self) -> bool {
        self.expires_at.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    DisallowedAlgorithm,
    /// The `kid` names no key of the provider.
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    /// No configured provider takes this token (its issuer, source or algorithm).
    NoProvider,
    /// A claim mapped to a header has a value no header carries unchanged (`claims::header_value`).
    UnrepresentableClaim,
    /// A claim fails one of the provider's `claims` conditions.
    ClaimNotAccepted,
}

impl Rejection {
    /// The `error_description` of RFC 6750 §3: short, and free of anything the client sent.
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "token is malformed",
            Self::DisallowedAlgorithm => "token algorithm is not allowed",
            Self::UnknownKid => "token names an unknown key",
            Self::BadSignature => "token signature is invalid",
            Self::Expired => "token has expired",
            Self::NotYetValid => "token is not yet valid",
            Self::IssuedInFuture => "token is issued in the future",
            Self::LifetimeTooLong => "token lifetime is too long",
            Self::WrongIssuer => "token issuer is not accepted",
            Self::WrongAudience => "token audience is not accepted",
            Self::MissingClaim => "token lacks a required claim",
            Self::NoProvider => "no provider accepts this token",
            Self::UnrepresentableClaim => "token has a claim no header can carry exactly",
            Self::ClaimNotAccepted => "token claims are not accepted",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// The clock and leeway a verification runs with.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Seconds since the Unix epoch.
    pub now: u64,
    pub skew_seconds: u64,
}

/// Verifies the token `jws` with `provider` and its current `keys`. Keys are tried in order, so a
/// rotated-out secret keeps working while it is still listed. `claims` are the payload's, when
/// the caller has already read them (to route by issuer); otherwise they are read once the
/// signature holds, so a forged token costs no JSON parsing.
pub fn verify(
    jws: &Jws<'_>,
    claims: Option<Map<String, Value>>,
    provider_index: usize,
    provider: &Provider,
    keys: &[VerifyKey],
    clock: Clock,
) -> Result<VerifiedToken, Rejection> {
    let alg = jws.header.alg;
    if !provider.algorithms.contains(&alg) {
        return Err(Rejection::DisallowedAlgorithm);
    }
    let candidates =
        candidates(keys, alg, jws.header.kid.as_deref()).map_err(|no_key| match no_key {
            NoKey::UnknownKid => Rejection::UnknownKid,
            NoKey::WrongType => Rejection::DisallowedAlgorithm,
        })?;
    let signature = jws.signature_bytes().map_err(|_| Rejection::Malformed)?;
    let signing_input = jws.signing_input.as_bytes();
    if !candidates
        .iter()
        .any(|key| key.key.verify(alg, signing_input, &signature))
    {
        return Err(Rejection::BadSignature);
    }
    let claims = match claims {
        Some(claims) => claims,
        None => jws.claims().map_err(|_| Rejection::Malformed)?,
    };
    let expires_at = check_claims(&claims, provider, clock)?;
    Ok(VerifiedToken {
        provider: provider_index,
        claims,
        // Saturating float-to-int conversion: negative becomes 0, huge becomes u64::MAX.
        expires_at: expires_at.map(|exp| exp as u64),
    })
}

/// Checks times, issuer, audience, required claims and lifetime; returns `exp`.
fn check_claims(
    claims: &Map<String, Value>,
    provider: &Provider,
    clock: Clock,
) -> Result<Option<f64>, Rejection> {
    let now = clock.now as f64;
    let skew = clock.skew_seconds as f64;
    let expires_at = numeric_date(claims, "exp")?;
    if let Some(exp) = expires_at
        && now >= exp + skew
    {
        return Err(Rejection::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && now + skew < nbf
    {
        return Err(Rejection::NotYetValid);
    }
    let issued_at = numeric_date(claims, "iat")?;
    if let Some(iat) = issued_at
        && iat > now + skew
    {
        return Err(Rejection::IssuedInFuture);
    }
    if let Some(issuer) = &provider.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(issuer)
    {
        return Err(Rejection::WrongIssuer);
    }
    if !provider.audiences.is_empty() && !audience_matches(claims.get("aud"), &provider.audiences) {
        return Err(Rejection::WrongAudience);
    }
    if provider
        .required_claims
        .iter()
        .any(|name| claims.get(name).is_none_or(Value::is_null))
    {
        return Err(Rejection::MissingClaim);
    }
    if !all_hold(&provider.conditions, claims) {
        return Err(Rejection::ClaimNotAccepted);
    }
    if let Some(max) = provider.max_lifetime_seconds {
        let exp = expires_at.ok_or(Rejection::LifetimeTooLong)?;
        let start = issued_at.unwrap_or(now);
        if exp - start > max as f64 {
            return Err(Rejection::LifetimeTooLong);
        }
    }
    Ok(expires_at)
}

fn audience_matches(aud: Option<&Value>, accepted: &[String]) -> bool {
    match aud {
        Some(Value::String(aud)) => accepted.iter().any(|a| a == aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| accepted.iter().any(|a| a == aud)),
        _ => false,
    }
}

/// A NumericDate claim (RFC 7519 §2): a JSON number, possibly fractional.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => number.as_f64().map(Some).ok_or(Rejection::Malformed),
        Some(_) => Err(Rejection::Malformed),
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
