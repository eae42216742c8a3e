//! Where tokens come from: a header (with a scheme prefix such as `Bearer `), a cookie (Clerk's
//! `__session`), or a query parameter; and how to remove one before the request goes upstream.

use std::fmt;

use crate::extract::credential::{CredentialError, OWS, bearer_token, is_b64token};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `prefix` is matched case-insensitively and may be empty (the whole value is the token).
    Header {
        name: String,
        prefix: String,
    },
    Cookie(String),
    Query(String),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header { name, .. } => write!(f, "header {name}"),
            Self::Cookie(name) => write!(f, "cookie {name}"),
            Self::Query(name) => write!(f, "query parameter {name}"),
        }
    }
}

impl TokenSource {
    pub fn authorization_bearer() -> Self {
        Self::Header {
            name: "authorization".to_owned(),
            prefix: "Bearer ".to_owned(),
        }
    }

    /// The request header this source reads.
    pub fn header_name(&self) -> &str {
        match self {
            Self::Header { name, .. } => name,
            Self::Cookie(_) => "cookie",
            Self::Query(_) => ":path",
        }
    }

    /// The token in `value` (the value of `header_name()`), if this source holds one, its size
    /// checked. Its characters are not: the caller checks them with `well_formed` before it
    /// trusts the token to be one, and may skip that for a token it has verified before (it
    /// reads every byte, the largest cost of a cached decision).
    pub fn locate<'a>(
        &self,
        value: &'a str,
        max_token_bytes: usize,
    ) -> Result<Option<&'a str>, CredentialError> {
        let token = match self {
            Self::Header { prefix, .. } if is_bearer(prefix) => {
                return match bearer_token(Some(value), max_token_bytes) {
                    Ok(token) => Ok(Some(token)),
                    Err(CredentialError::Missing | CredentialError::OtherScheme) => Ok(None),
                    Err(error) => Err(error),
                };
            }
            Self::Header { prefix, .. } => {
                let value = value.trim_matches(OWS);
                match value.get(..prefix.len()) {
                    Some(head) if head.eq_ignore_ascii_case(prefix) => {
                        value[prefix.len()..].trim_matches(OWS)
                    }
                    _ => return Ok(None),
                }
            }
            Self::Cookie(name) => match only_value(cookie_values(value, name))? {
                Some(token) => token,
                None => return Ok(None),
            },
            Self::Query(name) => match only_value(query_values(value, name))? {
                Some(token) => token,
                None => return Ok(None),
            },
        };
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() > max_token_bytes {
            return Err(CredentialError::TooLarge);
        }
        Ok(Some(token))
    }

    /// Whether a token `locate` found has only the characters this source allows: a bearer
    /// token's are RFC 6750's `b64token`; a cookie's, a query parameter's or another header's,
    /// those of base64 (standard or URL-safe) and JWS compact serialization.
    pub fn well_formed(&self, token: &str) -> bool {
        match self {
            Self::Header { prefix, .. } if is_bearer(prefix) => is_b64token(token),
            _ => token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)),
        }
    }

    /// The header value with this source's token removed (`None`: remove the header).
    pub fn without_token(&self, value: &str) -> Option<String> {
        match self {
            Self::Header { .. } => None,
            Self::Cookie(name) => {
                let kept: Vec<&str> = value
                    .split(';')
                    .map(|pair| pair.trim_matches(OWS))
                    .filter(|pair| !pair.is_empty() && cookie_name(pair) != name)
                    .collect();
                (!kept.is_empty()).then(|| kept.join("; "))
            }
            Self::Query(name) => {
                // Never `None` here: that would remove `:path` itself.
                let Some((path, query)) = value.split_once('?') else {
                    return Some(value.to_owned());
                };
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let key = pair.split('=').next().unwrap_or_default();
                        !pair.is_empty() && !query_key_is(key, name)
                    })
                    .collect();
                Some(if kept.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}?{}", kept.join("&"))
                })
            }
        }
    }
}

/// Whether a header source's prefix is the `Bearer` scheme (RFC 6750's grammar applies).
fn is_bearer(prefix: &str) -> bool {
    prefix.trim().eq_ignore_ascii_case("bearer")
}

/// RFC 6265 §5.2: a pair's name and value are trimmed of spaces and tabs only.
fn cookie_name(pair: &str) -> &str {
    pair.split_once('=')
        .map_or(pair, |(name, _)| name)
        .trim_matches(OWS)
}

/// The one value among a source's occurrences: `None` without any, `Ambiguous` when they
/// differ. Readers disagree on which of several to take (the first cookie, the last query
/// parameter, a list of them), so a token the next hop may not read is never verified.
fn only_value<'a>(
    mut values: impl Iterator<Item = &'a str>,
) -> Result<Option<&'a str>, CredentialError> {
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.any(|other| other != first) {
        return Err(CredentialError::Ambiguous);
    }
    Ok(Some(first))
}

fn cookie_values<'a>(header: &'a str, name: &str) -> impl Iterator<Item = &'a str> {
    header.split(';').filter_map(move |pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim_matches(OWS) == name).then(|| value.trim_matches(OWS).trim_matches('"'))
    })
}

fn query_values<'a>(path: &'a str, name: &str) -> impl Iterator<Item = &'a str> {
    let query = path.split_once('?').map_or("", |(_, query)| query);
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    query.split('&').filter_map(move |pair| {
        let (key, value) = pair.split_once('=')?;
        query_key_is(key, name).then_some(value)
    })
}

/// Whether a query parameter's name reads as `name` to an upstream that decodes it
/// (`acc%65ss_token` is `access_token`).
fn query_key_is(key: &str, name: &str) -> bool {
    if !key.contains('%') {
        return key == name;
    }
    let mut decoded = Vec::with_capacity(key.len());
    let mut rest = key.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = (byte == b'%')
            .then(|| tail.get(..2))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded_byte) => {
                decoded.push(decoded_byte);
                rest = tail.get(2..).unwrap_or_default();
            }
            None => {
                decoded.push(byte);
                rest = tail;
            }
        }
    }
    decoded == name.as_bytes()
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod tests;
