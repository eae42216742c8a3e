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
#[path = "jws_tests.rs"]
mod tests;
