//! Signature and time checks of a bearer JWT, against the configured secrets and algorithms.

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::Config;

/// Verifies tokens with keys built once from the configuration.
pub struct Verifier {
    keys: Vec<DecodingKey>,
    validation: Validation,
    clock_skew_seconds: u64,
}

/// A token whose signature, algorithm and times have been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
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
    BadSignature,
    Expired,
    NotYetValid,
}

impl Rejection {
    /// The `error_description` of RFC 6750 §3: short, and free of anything the client sent.
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "token is malformed",
            Self::DisallowedAlgorithm => "token algorithm is not allowed",
            Self::BadSignature => "token signature is invalid",
            Self::Expired => "token has expired",
            Self::NotYetValid => "token is not yet valid",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl Verifier {
    pub fn new(config: &Config) -> Self {
        let mut validation = Validation::new(config.algorithms[0]);
        validation.algorithms = config.algorithms.clone();
        // Times are checked below against the host's clock, which is passed in; the library
        // would read the system clock itself.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Self {
            keys: config
                .secrets
                .iter()
                .map(|secret| DecodingKey::from_secret(secret.as_bytes()))
                .collect(),
            validation,
            clock_skew_seconds: config.clock_skew_seconds,
        }
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch). Secrets are tried in order, so
    /// a rotated-out secret keeps working while it is still listed.
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, Rejection> {
        let mut claims = None;
        for key in &self.keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(error) => match error.kind() {
                    ErrorKind::InvalidSignature => continue,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        return Err(Rejection::DisallowedAlgorithm);
                    }
                    _ => return Err(Rejection::Malformed),
                },
            }
        }
        let claims = claims.ok_or(Rejection::BadSignature)?;
        let now = now as f64;
        let skew = self.clock_skew_seconds as f64;
        let expires_at = numeric_date(&claims, "exp")?;
        if let Some(exp) = expires_at
            && now >= exp + skew
        {
            return Err(Rejection::Expired);
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")?
            && now + skew < nbf
        {
            return Err(Rejection::NotYetValid);
        }
        Ok(VerifiedToken {
            claims,
            // Saturating float-to-int conversion: negative becomes 0, huge becomes u64::MAX.
            expires_at: expires_at.map(|exp| exp as u64),
        })
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
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const SECRET: &str = "test-secret";

    fn config(json: &str) -> Config {
        Config::parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn verifier() -> Verifier {
        Verifier::new(&config(
            r#"{"secret":{"inline":"test-secret"},"revocation":{"cluster":"k"}}"#,
        ))
    }

    fn sign(alg: Algorithm, secret: &str, claims: &Value) -> String {
        encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn b64(json: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn accepts_each_hmac_algorithm_and_returns_claims() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let claims = json!({"user_id": "u1", "org_id": "o1", "iat": NOW, "exp": NOW + 60});
            let token = sign(alg, SECRET, &claims);
            let verified = verifier().verify(&token, NOW).unwrap();
            assert_eq!(verified.claims["user_id"], "u1", "{alg:?}");
            assert!(verified.expires());
        }
    }

    #[test]
    fn a_token_without_exp_is_marked_non_expiring() {
        // ComfyUI Deploy's long-lived keys: jwt.sign({user_id, org_id}, JWT_SECRET).
        let token = sign(
            Algorithm::HS256,
            SECRET,
            &json!({"user_id": "u1", "org_id": "o1", "iat": NOW}),
        );
        let verified = verifier().verify(&token, NOW).unwrap();
        assert!(!verified.expires());
    }

    #[test]
    fn rejects_signatures_of_other_secrets_and_tampered_payloads() {
        let token = sign(
            Algorithm::HS256,
            "another-secret",
            &json!({"user_id": "u1"}),
        );
        assert_eq!(verifier().verify(&token, NOW), Err(Rejection::BadSignature));

        let good = sign(Algorithm::HS256, SECRET, &json!({"user_id": "u1"}));
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(r#"{"user_id":"admin"}"#),
            parts[2]
        );
        assert_eq!(
            verifier().verify(&forged, NOW),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn rejects_alg_none_and_algorithms_not_allowed() {
        let unsigned = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(r#"{"user_id":"u1"}"#)
        );
        assert_ne!(verifier().verify(&unsigned, NOW).map(|_| ()), Ok(()));

        let only_512 = Verifier::new(&config(
            r#"{"secret":{"inline":"test-secret"},"algorithms":["HS512"],"revocation":{"cluster":"k"}}"#,
        ));
        let token = sign(Algorithm::HS256, SECRET, &json!({"user_id": "u1"}));
        assert_eq!(
            only_512.verify(&token, NOW),
            Err(Rejection::DisallowedAlgorithm)
        );

        let rs256_header = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256","typ":"JWT"}"#),
            b64(r#"{"user_id":"u1"}"#)
        );
        assert_eq!(
            verifier().verify(&rs256_header, NOW),
            Err(Rejection::DisallowedAlgorithm)
        );
    }

    #[test]
    fn rejects_garbage_and_truncated_tokens() {
        let good = sign(Algorithm::HS256, SECRET, &json!({"user_id": "u1"}));
        let truncated = &good[..good.len() - 5];
        let two_parts = good.rsplit_once('.').unwrap().0;
        let not_json = format!("{}.{}.c2ln", b64(r#"{"alg":"HS256"}"#), b64("not json"));
        let array_claims = sign(Algorithm::HS256, SECRET, &json!(["u1"]));
        for token in [
            "garbage",
            "a.b.c",
            "...",
            truncated,
            two_parts,
            &not_json,
            &array_claims,
        ] {
            let result = verifier().verify(token, NOW);
            assert!(
                matches!(result, Err(Rejection::Malformed | Rejection::BadSignature)),
                "{token:?}: {result:?}"
            );
        }
    }

    #[test]
    fn checks_exp_and_nbf_against_the_given_clock_with_skew() {
        let v = verifier();
        let expiring = sign(
            Algorithm::HS256,
            SECRET,
            &json!({"user_id": "u", "exp": NOW}),
        );
        assert!(v.verify(&expiring, NOW - 1).is_ok());
        assert!(
            v.verify(&expiring, NOW + 59).is_ok(),
            "within the 60 s skew"
        );
        assert_eq!(v.verify(&expiring, NOW + 60), Err(Rejection::Expired));

        let future = sign(
            Algorithm::HS256,
            SECRET,
            &json!({"user_id": "u", "nbf": NOW}),
        );
        assert!(v.verify(&future, NOW - 60).is_ok(), "within the skew");
        assert_eq!(v.verify(&future, NOW - 61), Err(Rejection::NotYetValid));

        let fractional = sign(Algorithm::HS256, SECRET, &json!({"exp": NOW as f64 + 0.5}));
        assert!(v.verify(&fractional, NOW + 60).is_ok());

        let string_exp = sign(Algorithm::HS256, SECRET, &json!({"exp": "tomorrow"}));
        assert_eq!(v.verify(&string_exp, NOW), Err(Rejection::Malformed));
    }

    #[test]
    fn a_listed_previous_secret_still_verifies() {
        let rotating = Verifier::new(&config(
            r#"{"secret":[{"inline":"new"},{"inline":"old"}],"revocation":{"cluster":"k"}}"#,
        ));
        for secret in ["new", "old"] {
            let token = sign(Algorithm::HS256, secret, &json!({"user_id": "u1"}));
            assert!(rotating.verify(&token, NOW).is_ok(), "{secret}");
        }
        let token = sign(Algorithm::HS256, "retired", &json!({"user_id": "u1"}));
        assert_eq!(rotating.verify(&token, NOW), Err(Rejection::BadSignature));
    }
}
