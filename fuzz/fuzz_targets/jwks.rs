//! JWKS and OIDC discovery documents: `keys::parse_jwks`, the keys it prepares (and their
//! `verify`), `keys::candidates`, and a remote JWKS's `JwksState` taking a document as a fetch's
//! answer, both as the JWKS and as the discovery document.
//!
//! Input: a JSON document. A top-level `"token"` string (not part of any JWKS) is verified with
//! every key the document yields, so seeds can hold a key and a token it signed.
//!
//! Properties:
//! - a parsed JWKS has at least one key; each key's algorithms are allowed, non-empty, of one
//!   family that fits its key type (no algorithm confusion), and the entry's own `alg` when it
//!   has one; its entry is for signing (`use` absent or `sig`); an RSA modulus is 2048 to 4096
//!   bits;
//! - fewer allowed algorithms give the same keys with their algorithms narrowed (metamorphic);
//! - `candidates` only offers keys that can verify the `alg`, and the named key when a `kid`
//!   is given; verifying never panics and is deterministic;
//! - a JWKS answer replaces the keys exactly when it parses, and a failed one keeps the old;
//! - a discovery document yields a JWKS path that is the `jwks_uri`'s path, and one a request
//!   can carry: starting with `/`, visible ASCII, no fragment.
#![no_main]

use std::rc::Rc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm::{self, *};
use keygate::config::{FailureMode, RemoteJwks, UntilReady};
use keygate::gate::remote_jwks::{FetchKind, FetchOutcome, JwksState};
use keygate::jose::jws::Jws;
use keygate::jose::keys::{VerifyKey, candidates, parse_jwks};
use keygate::jose::signature::SignatureKey;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ALL: &[Algorithm] = &[
    HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
];
const SOME: &[Algorithm] = &[HS384, RS256, PS512, ES256, EdDSA];

fuzz_target!(|data: &[u8]| {
    let document: Option<Value> = serde_json::from_slice(data).ok();
    let parsed = parse_jwks(data, ALL);
    if let Ok(keys) = &parsed {
        check_keys(document.as_ref().expect("a parsed JWKS is JSON"), keys, ALL);
        if let Some(token) = document
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(Value::as_str)
        {
            check_token(keys, token);
        }
    }
    match (parse_jwks(data, SOME), &parsed) {
        (Ok(narrow), Ok(all)) => {
            check_keys(document.as_ref().expect("JSON"), &narrow, SOME);
            let expected: Vec<(Option<String>, Vec<Algorithm>)> = all
                .iter()
                .map(|key| {
                    let algorithms = key.algorithms.iter().copied();
                    (
                        key.kid.clone(),
                        algorithms.filter(|a| SOME.contains(a)).collect(),
                    )
                })
                .filter(|(_, algorithms): &(_, Vec<_>)| !algorithms.is_empty())
                .collect();
            let got: Vec<_> = narrow
                .iter()
                .map(|key| (key.kid.clone(), key.algorithms.clone()))
                .collect();
            assert_eq!(got, expected, "narrowing the algorithms changed the keys");
        }
        (Ok(narrow), Err(error)) => panic!(
            "{} keys with fewer algorithms, none with all: {error}",
            narrow.len()
        ),
        (Err(_), _) => {}
    }

    check_remote(data, parsed.ok().as_deref(), document.as_ref());
});

fn family(alg: Algorithm) -> &'static str {
    match alg {
        HS256 | HS384 | HS512 => "oct",
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => "RSA",
        ES256 => "P-256",
        ES384 => "P-384",
        EdDSA => "Ed25519",
        _ => "other",
    }
}

fn key_family(key: &SignatureKey) -> &'static str {
    match key {
        SignatureKey::Hmac(_) => "oct",
        SignatureKey::Rsa(_) => "RSA",
        SignatureKey::P256(_) => "P-256",
        SignatureKey::P384(_) => "P-384",
        SignatureKey::Ed25519(_) => "Ed25519",
    }
}

fn check_keys(document: &Value, keys: &[VerifyKey], allowed: &[Algorithm]) {
    let entries = document["keys"]
        .as_array()
        .expect("a JWKS has a keys array");
    assert!(!keys.is_empty() && keys.len() <= entries.len());
    for key in keys {
        assert!(!key.algorithms.is_empty());
        let kind = key_family(&key.key);
        for alg in &key.algorithms {
            assert!(allowed.contains(alg), "{alg:?} is not allowed");
            assert_eq!(family(*alg), kind, "{alg:?} on a {kind} key");
        }
        // Some entry with this kid, for signing, can be the key's.
        let fits = entries.iter().any(|entry| {
            entry.get("kid").and_then(Value::as_str) == key.kid.as_deref()
                && entry.get("use").is_none_or(|u| u == "sig")
                && entry.get("alg").and_then(Value::as_str).is_none_or(|alg| {
                    key.algorithms.len() == 1 && format!("{:?}", key.algorithms[0]) == alg
                })
                && (kind != "RSA" || modulus_ok(entry))
        });
        assert!(fits, "no entry of the JWKS fits {key:?}");
    }
}

fn modulus_ok(entry: &Value) -> bool {
    let Some(n) = entry
        .get("n")
        .and_then(Value::as_str)
        .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
    else {
        return false;
    };
    let n: Vec<u8> = n.into_iter().skip_while(|&b| b == 0).collect();
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    (2048..=4096).contains(&bits)
}

fn check_token(keys: &[VerifyKey], token: &str) {
    let Ok(jws) = Jws::parse(token) else {
        return;
    };
    let Ok(signature) = jws.signature_bytes() else {
        return;
    };
    let alg = jws.header.alg;
    let kid = jws.header.kid.as_deref();
    let Ok(found) = candidates(keys, alg, kid) else {
        return;
    };
    for key in found {
        assert!(key.algorithms.contains(&alg));
        if let (Some(kid), Some(key_kid)) = (kid, &key.kid) {
            assert_eq!(kid, key_kid);
        }
        let input = jws.signing_input.as_bytes();
        let valid = key.key.verify(alg, input, &signature);
        assert_eq!(
            valid,
            key.key.verify(alg, input, &signature),
            "not deterministic"
        );
    }
}

fn remote(discovery: bool) -> RemoteJwks {
    RemoteJwks {
        cluster: "idp".to_owned(),
        authority: "idp.example".to_owned(),
        path: if discovery {
            "/.well-known/openid-configuration".to_owned()
        } else {
            "/jwks.json".to_owned()
        },
        discovery,
        refresh_seconds: 600,
        min_refetch_seconds: 30,
        timeout_ms: 1000,
        until_ready: UntilReady::Wait { wait_ms: 1000 },
        failure_mode: FailureMode::Deny,
    }
}

const OLD_JWKS: &[u8] =
    br#"{"keys":[{"kty":"oct","kid":"old","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#;

fn check_remote(data: &[u8], parsed: Option<&[VerifyKey]>, document: Option<&Value>) {
    // As the JWKS, over keys already there.
    let config = remote(false);
    let mut state = JwksState::new(&config);
    state.started(1, FetchKind::Keys, 0);
    let first = state.on_response(&config, ALL, Some(200), Some(OLD_JWKS), 0);
    assert_eq!(first, FetchOutcome::Updated { keys: 1 });
    let old = state.keys().expect("keys");
    let fetch = state.due(&config, 600_000).expect("a refresh is due");
    state.started(2, fetch.kind, 600_000);
    match state.on_response(&config, ALL, Some(200), Some(data), 600_000) {
        FetchOutcome::Updated { keys } => {
            assert_eq!(Some(keys), parsed.map(<[_]>::len));
            assert!(!Rc::ptr_eq(&old, &state.keys().expect("keys")));
        }
        FetchOutcome::Failed(_) => {
            assert!(parsed.is_none(), "a usable JWKS was refused");
            assert!(
                Rc::ptr_eq(&old, &state.keys().expect("keys")),
                "old keys lost"
            );
        }
        FetchOutcome::Discovered => panic!("a JWKS fetch discovered"),
    }

    // As the discovery document.
    let config = remote(true);
    let mut state = JwksState::new(&config);
    let fetch = state.due(&config, 0).expect("due at start");
    assert_eq!(fetch.kind, FetchKind::Discovery);
    state.started(1, fetch.kind, 0);
    let outcome = state.on_response(&config, ALL, Some(200), Some(data), 0);
    let uri = document
        .and_then(|d| d.get("jwks_uri"))
        .and_then(Value::as_str);
    match outcome {
        FetchOutcome::Discovered => {
            let fetch = state.due(&config, 0).expect("the keys are fetched at once");
            assert_eq!(fetch.kind, FetchKind::Keys);
            let path = fetch.path;
            assert!(path.starts_with('/'), "{path:?}");
            assert!(path.bytes().all(|b| b.is_ascii_graphic()), "{path:?}");
            assert!(!path.contains('#'), "a fragment is not sent: {path:?}");
            let uri = uri.expect("discovered without a jwks_uri");
            let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
            let from = after_scheme.find('/').expect("a path");
            assert!(
                after_scheme[from..].starts_with(&path),
                "{uri:?} -> {path:?}"
            );
        }
        FetchOutcome::Failed(_) => assert!(state.keys().is_none()),
        FetchOutcome::Updated { .. } => panic!("a discovery fetch updated keys"),
    }
}
