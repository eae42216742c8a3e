//! JOSE: `Jws::parse` (the compact serialization and the protected header), `claims` and
//! `signature_bytes`, on any token.
//!
//! Input: a token; or, when it holds newlines, `header JSON \n payload JSON \n signature`,
//! each part base64url-encoded here so the fuzzer works on the JSON itself.
//!
//! Properties:
//! - a parsed token has exactly three parts, and `signing_input`/`signature` are its own bytes;
//! - every part that is read is canonical base64url (re-encoding gives the same text);
//! - the header is a JSON object whose `alg` names the parsed algorithm exactly, whose `kid` is
//!   the parsed `kid`, and which has no `crit`; the claims are a JSON object;
//! - parsing is deterministic.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keygate::jose::jws::Jws;
use keygate_fuzz::b64;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let token = match std::str::from_utf8(data) {
        Ok(text) if !text.contains('\n') => text.to_owned(),
        _ => {
            let mut parts = data.splitn(3, |&b| b == b'\n');
            let header = parts.next().unwrap_or_default();
            let payload = parts.next().unwrap_or_default();
            let signature = parts.next().unwrap_or_default();
            format!("{}.{}.{}", b64(header), b64(payload), b64(signature))
        }
    };
    check(&token);
});

fn decoded(part: &str) -> Vec<u8> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("{part:?} was accepted but is not base64url: {e}"));
    assert_eq!(b64(&bytes), part, "non-canonical base64url accepted");
    bytes
}

fn check(token: &str) {
    let Ok(jws) = Jws::parse(token) else {
        return;
    };
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token:?}");
    assert_eq!(jws.signing_input, format!("{}.{}", parts[0], parts[1]));
    assert_eq!(jws.signature, parts[2]);

    let header: Value = serde_json::from_slice(&decoded(parts[0]))
        .unwrap_or_else(|error| panic!("the header is not JSON: {error}"));
    let header = header.as_object().expect("the header is a JSON object");
    assert_eq!(
        header.get("alg").and_then(Value::as_str),
        Some(format!("{:?}", jws.header.alg).as_str()),
        "alg must be named exactly"
    );
    assert_eq!(
        header.get("kid").and_then(Value::as_str),
        jws.header.kid.as_deref()
    );
    assert!(!header.contains_key("crit"), "crit must be refused");

    if let Ok(claims) = jws.claims() {
        let payload: Value = serde_json::from_slice(&decoded(parts[1])).expect("claims are JSON");
        assert_eq!(Value::Object(claims), payload);
    }
    if let Ok(signature) = jws.signature_bytes() {
        assert_eq!(signature, decoded(parts[2]));
    }

    let again = Jws::parse(token).expect("parsing is deterministic");
    assert_eq!(again.header, jws.header);
    assert_eq!(again.claims().ok(), jws.claims().ok());
}
