//! The JWS compact serialization (RFC 7515 §7.1) of a token, split once: its protected header is
//! decoded once, its payload at most once, so a request pays for each part a single time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

/// The header fields keygate acts on. Others are ignored, as RFC 7515 allows, except `crit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Algorithm,
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// Whether a member is there, whatever its value: `"crit": null` is a `crit` too.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// A token split into its three parts, with the header decoded.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    pub header: JoseHeader,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    payload: &'a str,
    pub signature: &'a str,
}

/// Not a JWS this filter can read: not three base64url parts, a header that is not a JSON object
/// with a known `alg`, or a header with `crit` (RFC 7515 §4.1.11: extensions the recipient does
/// not understand make the token invalid, and keygate understands none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl<'a> Jws<'a> {
    pub fn parse(token: &'a str) -> Result<Self, Malformed> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(Malformed)?;
        if payload.contains('.') {
            return Err(Malformed);
        }
        let header = decode_part(header)?;
        // The whole header is checked as JSON first (RFC 7515 §4), not only the members read:
        // serde_json skips the members it ignores without checking their UTF-8, escapes or
        // numbers, and a header other readers refuse must not pass here.
        let checked: Value = serde_json::from_slice(&header).map_err(|_| Malformed)?;
        if !checked.is_object() {
            // A derived `Deserialize` also reads a struct from an array, by position.
            return Err(Malformed);
        }
        // Then read: unlike `Value`, this refuses a repeated `alg`, which readers would take
        // first or last.
        let header: RawHeader = serde_json::from_slice(&header).map_err(|_| Malformed)?;
        if header.crit {
            return Err(Malformed);
        }
        Ok(Self {
            header: JoseHeader {
                alg: header.alg,
                kid: header.kid,
            },
            signing_input,
            payload,
            signature,
        })
    }

    /// The payload's claims, which must be a JSON object. Unverified until the signature is.
    pub fn claims(&self) -> Result<Map<String, Value>, Malformed> {
        serde_json::from_slice(&decode_part(self.payload)?).map_err(|_| Malformed)
    }

    /// The signature's bytes.
    pub fn signature_bytes(&self) -> Result<Vec<u8>, Malformed> {
        decode_part(self.signature)
    }
}

/// base64url without padding, as JWS requires; non-canonical trailing bits are refused.
fn decode_part(part: &str) -> Result<Vec<u8>, Malformed> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Malformed)
}

#[cfg(test)]
mod tests {
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
}
