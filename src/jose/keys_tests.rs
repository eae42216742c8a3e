//! JWKS parsing and key selection, with keys generated here.

use jsonwebtoken::Algorithm::{self, *};
use serde_json::json;

use super::*;
use crate::testing::keys::{self as test_keys, jwk};

const ALL: &[Algorithm] = &[
    HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
];

fn jwks(keys: &[Value]) -> Vec<u8> {
    json!({ "keys": keys }).to_string().into_bytes()
}

#[test]
fn every_key_type_is_read_with_the_algorithms_it_fits() {
    let document = jwks(&[
        jwk(test_keys::rsa(), "rsa", None),
        jwk(&test_keys::p256(), "p256", None),
        jwk(&test_keys::p384(), "p384", None),
        jwk(&test_keys::ed25519(), "ed", None),
        json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
    ]);
    let keys = parse_jwks(&document, ALL).unwrap();
    let by_kid = |kid: &str| {
        keys.iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .unwrap()
            .algorithms
            .clone()
    };
    assert_eq!(
        by_kid("rsa"),
        vec![RS256, RS384, RS512, PS256, PS384, PS512]
    );
    assert_eq!(by_kid("p256"), vec![ES256]);
    assert_eq!(by_kid("p384"), vec![ES384]);
    assert_eq!(by_kid("ed"), vec![EdDSA]);
    assert_eq!(by_kid("hmac"), vec![HS256, HS384, HS512]);
}

#[test]
fn a_jwk_alg_narrows_its_key_and_the_provider_allow_list_narrows_all() {
    let document = jwks(&[jwk(test_keys::rsa(), "rsa", Some("PS256"))]);
    assert_eq!(
        parse_jwks(&document, ALL).unwrap()[0].algorithms,
        vec![PS256]
    );
    let document = jwks(&[jwk(test_keys::rsa(), "rsa", None)]);
    assert_eq!(
        parse_jwks(&document, &[RS256, ES256]).unwrap()[0].algorithms,
        vec![RS256]
    );
}

#[test]
fn unusable_keys_are_skipped_not_fatal() {
    let mut encryption = jwk(test_keys::rsa(), "enc", None);
    encryption["use"] = json!("enc");
    let document = jwks(&[
        json!({"kty": "weird", "kid": "unknown-type"}),
        json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"}),
        encryption,
        jwk(test_keys::rsa(), "mismatched", Some("ES256")),
        jwk(test_keys::rsa(), "for-encryption", Some("RSA-OAEP")),
        jwk(test_keys::rsa_weak(), "weak", None),
        json!("not an object"),
        jwk(&test_keys::ed25519(), "good", None),
    ]);
    let keys = parse_jwks(&document, ALL).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].kid.as_deref(), Some("good"));
}

#[test]
fn documents_without_usable_keys_are_errors() {
    assert!(matches!(parse_jwks(b"{", ALL), Err(JwksError::NotJson(_))));
    assert_eq!(parse_jwks(b"{}", ALL).unwrap_err(), JwksError::NoKeysArray);
    assert_eq!(
        parse_jwks(br#"{"keys": {}}"#, ALL).unwrap_err(),
        JwksError::NoKeysArray
    );
    assert_eq!(
        parse_jwks(br#"{"keys": []}"#, ALL).unwrap_err(),
        JwksError::NoUsableKey
    );
    let only_rsa = jwks(&[jwk(test_keys::rsa(), "rsa", None)]);
    assert_eq!(
        parse_jwks(&only_rsa, &[ES256]).unwrap_err(),
        JwksError::NoUsableKey
    );
}

#[test]
fn candidates_follow_kid_and_key_type() {
    let document = jwks(&[
        jwk(test_keys::rsa(), "a", None),
        jwk(test_keys::rsa_other(), "b", None),
        jwk(&test_keys::p256(), "c", None),
    ]);
    let keys = parse_jwks(&document, ALL).unwrap();
    let kids = |found: Vec<&VerifyKey>| -> Vec<String> {
        found.iter().map(|k| k.kid.clone().unwrap()).collect()
    };
    assert_eq!(
        kids(candidates(&keys, RS256, Some("b")).unwrap()),
        vec!["b"]
    );
    assert_eq!(
        kids(candidates(&keys, RS256, None).unwrap()),
        vec!["a", "b"]
    );
    assert_eq!(kids(candidates(&keys, ES256, None).unwrap()), vec!["c"]);
    assert_eq!(
        candidates(&keys, RS256, Some("zz")).unwrap_err(),
        NoKey::UnknownKid
    );
    // An HS256 token naming an RSA key: algorithm confusion.
    assert_eq!(
        candidates(&keys, HS256, Some("a")).unwrap_err(),
        NoKey::WrongType
    );
    assert_eq!(
        candidates(&keys, EdDSA, None).unwrap_err(),
        NoKey::WrongType
    );
    assert_eq!(candidates(&[], RS256, None).unwrap_err(), NoKey::UnknownKid);
}
