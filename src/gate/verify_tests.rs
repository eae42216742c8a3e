//! Verification of every algorithm, with keys generated in the tests, and of the claim checks.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::config::{Config, KeyMaterial, Secret};
use crate::jose::keys::secret_keys;
use crate::testing::keys::{self as test_keys, TestKey, jwk};

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "test-secret";

fn config(json: &str) -> Config {
    Config::parse(json.as_bytes(), &|_| None).unwrap()
}

fn secret_config(extra: &str) -> Config {
    config(&format!(
        r#"{{"secret":{{"inline":"test-secret"}}{extra},"revocation":{{"cluster":"k"}}}}"#
    ))
}

/// Verifies with the config's first provider and its static keys.
fn check(config: &Config, token: &str, now: u64) -> Result<VerifiedToken, Rejection> {
    let provider = &config.providers[0];
    let keys = match &provider.keys {
        KeyMaterial::Secrets(secrets) => secret_keys(secrets.iter().map(Secret::as_bytes), &provider.algorithms),
        KeyMaterial::Jwks(keys) => keys.clone(),
        KeyMaterial::Remote(_) => panic!("no static keys"),
    };
    let jws = Jws::parse(token).map_err(|_| Rejection::Malformed)?;
    verify(
        &jws,
        None,
        0,
        provider,
        &keys,
        Clock {
            now,
            skew_seconds: config.clock_skew_seconds,
        },
    )
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
        let verified = check(&secret_config(""), &token, NOW).unwrap();
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
    assert!(!check(&secret_config(""), &token, NOW).unwrap().expires());
}

#[test]
fn rejects_signatures_of_other_secrets_and_tampered_payloads() {
    let config = secret_config("");
    let token = sign(
        Algorithm::HS256,
        "another-secret",
        &json!({"user_id": "u1"}),
    );
    assert_eq!(check(&config, &token, NOW), Err(Rejection::BadSignature));

    let good = sign(Algorithm::HS256, SECRET, &json!({"user_id": "u1"}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(r#"{"user_id":"admin"}"#),
        parts[2]
    );
    assert_eq!(check(&config, &forged, NOW), Err(Rejection::BadSignature));
}

#[test]
fn rejects_algorithms_not_allowed() {
    let only_512 = secret_config(r#","algorithms":["HS512"]"#);
    let token = sign(Algorithm::HS256, SECRET, &json!({"user_id": "u1"}));
    assert_eq!(
        check(&only_512, &token, NOW),
        Err(Rejection::DisallowedAlgorithm)
    );
    let rs256_header = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(r#"{"user_id":"u1"}"#)
    );
    assert_eq!(
        check(&secret_config(""), &rs256_header, NOW),
        Err(Rejection::DisallowedAlgorithm)
    );
}

#[test]
fn checks_exp_and_nbf_and_iat_against_the_given_clock_with_skew() {
    let c = secret_config("");
    let expiring = sign(Algorithm::HS256, SECRET, &json!({"exp": NOW}));
    assert!(check(&c, &expiring, NOW - 1).is_ok());
    assert!(
        check(&c, &expiring, NOW + 59).is_ok(),
        "within the 60 s skew"
    );
    assert_eq!(check(&c, &expiring, NOW + 60), Err(Rejection::Expired));

    let future = sign(Algorithm::HS256, SECRET, &json!({"nbf": NOW}));
    assert!(check(&c, &future, NOW - 60).is_ok(), "within the skew");
    assert_eq!(check(&c, &future, NOW - 61), Err(Rejection::NotYetValid));

    let issued_later = sign(Algorithm::HS256, SECRET, &json!({"iat": NOW + 61}));
    assert_eq!(
        check(&c, &issued_later, NOW),
        Err(Rejection::IssuedInFuture)
    );
    let issued_soon = sign(Algorithm::HS256, SECRET, &json!({"iat": NOW + 60}));
    assert!(check(&c, &issued_soon, NOW).is_ok());

    let fractional = sign(Algorithm::HS256, SECRET, &json!({"exp": NOW as f64 + 0.5}));
    assert!(check(&c, &fractional, NOW + 60).is_ok());

    let string_exp = sign(Algorithm::HS256, SECRET, &json!({"exp": "tomorrow"}));
    assert_eq!(check(&c, &string_exp, NOW), Err(Rejection::Malformed));
}

#[test]
fn a_listed_previous_secret_still_verifies() {
    let rotating =
        config(r#"{"secret":[{"inline":"new"},{"inline":"old"}],"revocation":{"cluster":"k"}}"#);
    for secret in ["new", "old"] {
        let token = sign(Algorithm::HS256, secret, &json!({"user_id": "u1"}));
        assert!(check(&rotating, &token, NOW).is_ok(), "{secret}");
    }
    let token = sign(Algorithm::HS256, "retired", &json!({"user_id": "u1"}));
    assert_eq!(check(&rotating, &token, NOW), Err(Rejection::BadSignature));
}

fn jwks_config(keys: &[Value], provider_extra: &str) -> Config {
    config(&format!(
        r#"{{"providers":[{{"name":"idp","jwks":{{"keys":{}}}{provider_extra}}}]}}"#,
        Value::from(keys.to_vec())
    ))
}

#[test]
fn every_asymmetric_algorithm_verifies_with_its_key_and_fails_with_another() {
    let p256 = test_keys::p256();
    let p384 = test_keys::p384();
    let ed = test_keys::ed25519();
    let cases: [(&TestKey, Algorithm, &str); 9] = [
        (test_keys::rsa(), Algorithm::RS256, "rsa"),
        (test_keys::rsa(), Algorithm::RS384, "rsa"),
        (test_keys::rsa(), Algorithm::RS512, "rsa"),
        (test_keys::rsa(), Algorithm::PS256, "rsa"),
        (test_keys::rsa(), Algorithm::PS384, "rsa"),
        (test_keys::rsa(), Algorithm::PS512, "rsa"),
        (&p256, Algorithm::ES256, "p256"),
        (&p384, Algorithm::ES384, "p384"),
        (&ed, Algorithm::EdDSA, "ed"),
    ];
    let config = jwks_config(
        &[
            jwk(test_keys::rsa(), "rsa", None),
            jwk(&p256, "p256", None),
            jwk(&p384, "p384", None),
            jwk(&ed, "ed", None),
        ],
        "",
    );
    let claims = json!({"sub": "user_1", "exp": NOW + 60});
    for (key, alg, kid) in cases {
        let token = test_keys::sign(key, alg, Some(kid), &claims);
        let verified = check(&config, &token, NOW);
        assert_eq!(
            verified.map(|v| v.claims["sub"].clone()),
            Ok(json!("user_1")),
            "{alg:?}"
        );

        // The same token claiming another key of the same type fails its signature.
        if alg.family() == jsonwebtoken::AlgorithmFamily::Rsa {
            let other = test_keys::sign(test_keys::rsa_other(), alg, Some(kid), &claims);
            assert_eq!(
                check(&config, &other, NOW),
                Err(Rejection::BadSignature),
                "{alg:?}"
            );
        }
    }
}

#[test]
fn an_unknown_kid_is_refused_before_any_signature_work() {
    let config = jwks_config(&[jwk(test_keys::rsa(), "a", None)], "");
    let token = test_keys::sign(
        test_keys::rsa(),
        Algorithm::RS256,
        Some("b"),
        &json!({"sub": "u"}),
    );
    assert_eq!(check(&config, &token, NOW), Err(Rejection::UnknownKid));
}

#[test]
fn algorithm_confusion_finds_no_key() {
    // An HS256 token "signed" with the RSA public key's bytes, naming the RSA key.
    let config = jwks_config(
        &[jwk(test_keys::rsa(), "rsa", None)],
        r#","algorithms":["HS256","RS256"]"#,
    );
    let public_bytes = test_keys::rsa().jwk.to_string();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let token = encode(
        &header,
        &json!({"sub": "admin"}),
        &EncodingKey::from_secret(public_bytes.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        check(&config, &token, NOW),
        Err(Rejection::DisallowedAlgorithm)
    );

    // A JWK whose alg says RS256 does not verify PS256.
    let config = jwks_config(&[jwk(test_keys::rsa(), "rsa", Some("RS256"))], "");
    let token = test_keys::sign(test_keys::rsa(), Algorithm::PS256, Some("rsa"), &json!({}));
    assert_eq!(
        check(&config, &token, NOW),
        Err(Rejection::DisallowedAlgorithm)
    );
}

#[test]
fn issuer_audience_required_claims_and_lifetime_are_checked() {
    let ed = test_keys::ed25519();
    let config = jwks_config(
        &[jwk(&ed, "ed", None)],
        r#","issuer":"https://idp.example","audiences":["api","web"],"required_claims":["sub"],"max_lifetime_seconds":3600"#,
    );
    let good = json!({"iss": "https://idp.example", "aud": ["other", "web"], "sub": "u", "iat": NOW, "exp": NOW + 600});
    let sign = |claims: &Value| test_keys::sign(&ed, Algorithm::EdDSA, Some("ed"), claims);
    assert!(check(&config, &sign(&good), NOW).is_ok());
    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value;
        }
        sign(&claims)
    };
    let cases = [
        (
            with("iss", json!("https://evil.example")),
            Rejection::WrongIssuer,
        ),
        (with("iss", Value::Null), Rejection::WrongIssuer),
        (with("aud", json!("other")), Rejection::WrongAudience),
        (with("aud", Value::Null), Rejection::WrongAudience),
        (with("sub", Value::Null), Rejection::MissingClaim),
        (with("exp", json!(NOW + 7200)), Rejection::LifetimeTooLong),
        (with("exp", Value::Null), Rejection::LifetimeTooLong),
    ];
    for (token, expected) in cases {
        assert_eq!(check(&config, &token, NOW), Err(expected));
    }
    assert!(check(&config, &with("aud", json!("api")), NOW).is_ok());
}
