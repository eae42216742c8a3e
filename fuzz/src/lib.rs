//! What several fuzz targets share: JSON values and tokens built from fuzz input, and the rule a
//! header value that HTTP carries unchanged must follow, written apart from keygate's own code
//! so the targets check keygate against an independent statement of it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use serde_json::{Map, Number, Value};
use sha2::{Sha256, Sha384, Sha512};

/// A JSON value as fuzz input: scalars the claims care about, plus nesting.
#[derive(Arbitrary, Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Strings from a small alphabet reach the interesting cases (spaces, tabs, commas,
    /// control characters) more often than arbitrary text.
    Text(Vec<Char>),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// A character, mostly the ones that matter to header values.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Char {
    Letter,
    Space,
    Tab,
    Comma,
    Cr,
    Lf,
    Nul,
    Del,
    Nel,
    Nbsp,
    Any(char),
}

impl Char {
    pub fn get(self) -> char {
        match self {
            Self::Letter => 'a',
            Self::Space => ' ',
            Self::Tab => '\t',
            Self::Comma => ',',
            Self::Cr => '\r',
            Self::Lf => '\n',
            Self::Nul => '\0',
            Self::Del => '\u{7f}',
            Self::Nel => '\u{85}',
            Self::Nbsp => '\u{a0}',
            Self::Any(c) => c,
        }
    }
}

impl Json {
    /// The value, nesting cut at a few levels (keygate's claims paths are short).
    pub fn to_value(&self) -> Value {
        self.at_depth(0)
    }

    fn at_depth(&self, depth: usize) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(flag) => Value::Bool(*flag),
            Self::Int(n) => Value::Number((*n).into()),
            Self::Float(x) => Number::from_f64(*x).map_or(Value::Null, Value::Number),
            Self::Text(chars) => Value::String(chars.iter().map(|c| c.get()).collect()),
            Self::String(text) => Value::String(text.clone()),
            Self::Array(items) if depth < 4 => {
                Value::Array(items.iter().map(|item| item.at_depth(depth + 1)).collect())
            }
            Self::Object(fields) if depth < 4 => Value::Object(
                fields
                    .iter()
                    .map(|(name, value)| (name.clone(), value.at_depth(depth + 1)))
                    .collect(),
            ),
            Self::Array(_) | Self::Object(_) => Value::Null,
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC-SHA-2 of `input` for `HS256`, `HS384` or `HS512` (anything else: HS256).
pub fn hmac(alg: &str, secret: &[u8], input: &[u8]) -> Vec<u8> {
    fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        "HS384" => mac::<Hmac<Sha384>>(secret, input),
        "HS512" => mac::<Hmac<Sha512>>(secret, input),
        _ => mac::<Hmac<Sha256>>(secret, input),
    }
}

/// A compact JWS of `header` and `payload` (raw JSON bytes), signed with `secret`.
pub fn sign(header: &Map<String, Value>, payload: &[u8], secret: &[u8]) -> String {
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("HS256");
    let header = serde_json::to_vec(header).expect("a map serialises");
    let signing_input = format!("{}.{}", b64(&header), b64(payload));
    let signature = hmac(alg, secret, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&signature))
}

/// Whether HTTP carries `value` as a header value unchanged: not empty, no space or tab at
/// either end, no control character (C0, DEL, C1). Written from the rule, not from keygate.
pub fn carried_exactly(value: &str) -> bool {
    let control = |c: char| c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c);
    !value.is_empty()
        && !value.starts_with([' ', '\t'])
        && !value.ends_with([' ', '\t'])
        && !value.chars().any(control)
}

/// The header value a claim must become (`claims_to_headers`): `Ok(None)` for no header,
/// `Err(())` when no header can carry it and the token must be refused. Strings as they are,
/// numbers and booleans as JSON writes them, arrays of those joined with `,` (an element with a
/// `,` is refused); `null`, objects, empty arrays and arrays of anything else set no header.
#[allow(clippy::result_unit_err)]
pub fn expected_header(claims: &Map<String, Value>, path: &[&str]) -> Result<Option<String>, ()> {
    let mut value = None;
    for (depth, name) in path.iter().enumerate() {
        value = if depth == 0 {
            claims.get(*name)
        } else {
            value
                .and_then(|v: &Value| v.as_object())
                .and_then(|o| o.get(*name))
        };
    }
    let scalar = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    };
    let checked = |text: String| {
        if carried_exactly(&text) {
            Ok(text)
        } else {
            Err(())
        }
    };
    match value {
        None | Some(Value::Null | Value::Object(_)) => Ok(None),
        Some(Value::Array(items)) => {
            let Some(parts) = items.iter().map(scalar).collect::<Option<Vec<_>>>() else {
                return Ok(None);
            };
            if parts.is_empty() {
                return Ok(None);
            }
            let mut joined = Vec::with_capacity(parts.len());
            for part in parts {
                if part.contains(',') {
                    return Err(());
                }
                joined.push(checked(part)?);
            }
            Ok(Some(joined.join(",")))
        }
        Some(other) => scalar(other).map(checked).transpose(),
    }
}
