//! Unit tests of `jws`.

use super::*;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn token(header: &str, payload: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(b"sig")
    )
}

#[test]
fn splits_a_token_once_and_reads_alg_and_kid() {
    let token = token(
        r#"{"alg":"RS256","kid":"k1","typ":"JWT","x":1}"#,
        r#"{"a":1}"#,
    );
    let jws = Jws::parse(&token).unwrap();
    assert_eq!(jws.header.alg, Algorithm::RS256);
    assert_eq!(jws.header.kid.as_deref(), Some("k1"));
    assert_eq!(jws.signing_input, token.rsplit_once('.').unwrap().0);
    assert_eq!(jws.signature_bytes().unwrap(), b"sig");
    assert_eq!(jws.claims().unwrap()["a"], 1);
}

#[test]
fn refuses_what_is_not_a_compact_jws() {
    let good_header = b64(br#"{"alg":"HS256"}"#);
    let cases = [
        String::new(),
        "a.b".to_owned(),
        format!("{good_header}.e30.c2ln.extra"),
        format!("{good_header}.e30"),
        format!("{}.e30.c2ln", b64(b"not json")),
        format!("{}.e30.c2ln", b64(br#"["HS256"]"#)),
        // Arrays read as the header's fields by position (found by fuzz/fuzz_targets/jose.rs).
        format!("{}.e30.c2ln", b64(br#"["HS256",null,null]"#)),
        format!("{}.e30.c2ln", b64(br#"["HS512","S"]"#)),
        format!("{}.e30.c2ln", b64(br#"{"alg":"none"}"#)),
        format!("{}.e30.c2ln", b64(br#"{"alg":"HS257"}"#)),
        format!("{}.e30.c2ln", b64(br#"{"kid":"k"}"#)),
        format!("{}.e30.c2ln", b64(br#"{"alg":"HS256","kid":7}"#)),
        format!("{}.e30.c2ln", b64(br#"{"alg":"HS256","crit":["b64"]}"#)),
        format!("{}.e30.c2ln", b64(br#"{"alg":"HS256","crit":null}"#)),
        // Not JSON in a member keygate ignores: invalid UTF-8, a broken escape, a number
        // out of range (found by fuzz/fuzz_targets/jose.rs).
        format!("{}.e30.c2ln", b64(b"{\"alg\":\"HS256\",\"cid\":\"\xbf1\"}")),
        format!("{}.e30.c2ln", b64(br#"{"alg":"HS256","C2i":["b\uDBB83"]}"#)),
        format!("{}.e30.c2ln", b64(br#"{"alg":"HS256","x":[1e999]}"#)),
        // A repeated `alg`: which one would another reader take?
        format!("{}.e30.c2ln", b64(br#"{"alg":"HS384","alg":"HS256"}"#)),
        // Padding and the standard alphabet are not base64url.
        format!("{good_header}=.e30.c2ln"),
        format!(
            "{}.e30.c2ln",
            URL_SAFE_NO_PAD
                .encode(br#"{"alg":"HS256"}"#)
                .replace('J', "+")
        ),
    ];
    for token in cases {
        assert_eq!(Jws::parse(&token).err(), Some(Malformed), "{token:?}");
    }
}

#[test]
fn payloads_and_signatures_are_checked_when_read() {
    let header = b64(br#"{"alg":"HS256"}"#);
    let array_payload = format!("{header}.{}.c2ln", b64(b"[1]"));
    assert_eq!(Jws::parse(&array_payload).unwrap().claims(), Err(Malformed));
    let bad_base64 = format!("{header}.e30.c2ln=");
    assert_eq!(
        Jws::parse(&bad_base64).unwrap().signature_bytes(),
        Err(Malformed)
    );
    // A non-canonical last character (trailing bits set) is refused too.
    let non_canonical = format!("{header}.e31.c2ln");
    assert_eq!(Jws::parse(&non_canonical).unwrap().claims(), Err(Malformed));
}
