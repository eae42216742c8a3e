//! Token sources: `TokenSource::locate`, `well_formed` and `without_token` for the bearer
//! `Authorization` header, another header with a prefix, a cookie and a query parameter.
//!
//! Input: one line naming the source (`bearer`, `header:<prefix>`, `cookie:<name>`,
//! `query:<name>`), then the header value (the rest, as it is).
//!
//! Properties:
//! - a located token is non-empty, within the size limit, and a substring of the value; a
//!   smaller limit never finds a different token;
//! - it is delimited as HTTP delimits it: only spaces and tabs (HTTP's OWS) are trimmed, so the
//!   token is exactly what the next hop reads there (`Bearer` + spaces + token; the prefix, then
//!   the token; the value of a cookie pair named so; the value of a query pair whose name,
//!   percent-decoded, is the source's), and every other occurrence holds the same token;
//! - the bearer source agrees with `credential::bearer_token`;
//! - a well-formed token has only the characters of its source's grammar;
//! - `without_token` removes every copy of the source and nothing else, and is idempotent.
#![no_main]

use keygate::extract::credential::{CredentialError, bearer_token};
use keygate::extract::sources::TokenSource;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;
const SMALL: usize = 16;
const OWS: [char; 2] = [' ', '\t'];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (spec, value) = text.split_once('\n').unwrap_or((text, ""));
    let source = match spec.split_once(':') {
        _ if spec == "bearer" => TokenSource::authorization_bearer(),
        Some(("header", prefix)) => TokenSource::Header {
            name: "x-token".to_owned(),
            prefix: prefix.to_owned(),
        },
        // The configuration refuses names with these (config::provider's RawSource).
        Some((_, name))
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"=;,&?#\"".contains(&b)) =>
        {
            return;
        }
        Some(("cookie", name)) => TokenSource::Cookie(name.to_owned()),
        Some(("query", name)) => TokenSource::Query(name.to_owned()),
        _ => return,
    };
    check(&source, value);
});

fn check(source: &TokenSource, value: &str) {
    let found = source.locate(value, MAX);
    if let TokenSource::Header { prefix, .. } = source
        && prefix == "Bearer "
    {
        let expected = match bearer_token(Some(value), MAX) {
            Ok(token) => Ok(Some(token)),
            Err(CredentialError::Missing | CredentialError::OtherScheme) => Ok(None),
            Err(error) => Err(error),
        };
        assert_eq!(found, expected, "bearer source and bearer_token disagree");
    }
    match source.locate(value, SMALL) {
        Ok(Some(token)) => assert_eq!(found, Ok(Some(token)), "a smaller limit found another"),
        Ok(None) => assert!(
            matches!(found, Ok(None)),
            "a smaller limit missed {found:?}"
        ),
        Err(_) => {}
    }
    let token = match found {
        Ok(Some(token)) => token,
        Ok(None) | Err(_) => {
            check_removal(source, value);
            return;
        }
    };
    assert!(!token.is_empty() && token.len() <= MAX);
    let start = token.as_ptr() as usize - value.as_ptr() as usize;
    assert!(
        start + token.len() <= value.len(),
        "the token is not in the value"
    );
    assert!(
        delimited(source, value, token),
        "{source}: {value:?} gave {token:?}"
    );

    if source.well_formed(token) {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        match source {
            TokenSource::Header { prefix, .. } if prefix.trim().eq_ignore_ascii_case("bearer") => {
                // RFC 6750: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
                let body = token.trim_end_matches('=');
                assert!(!body.is_empty() && body.bytes().all(allowed), "{token:?}");
            }
            _ => assert!(token.bytes().all(|b| allowed(b) || b == b'='), "{token:?}"),
        }
    }
    check_removal(source, value);
}

/// Whether `token` is exactly what HTTP (and RFC 6265 for cookies) reads at the source.
fn delimited(source: &TokenSource, value: &str, token: &str) -> bool {
    match source {
        TokenSource::Header { prefix, .. } => {
            let value = value.trim_matches(OWS);
            if prefix.trim().eq_ignore_ascii_case("bearer") {
                // auth-scheme 1*SP token68
                let Some(rest) = value.get(6..) else {
                    return false;
                };
                value[..6].eq_ignore_ascii_case("bearer")
                    && rest.starts_with(' ')
                    && rest.trim_start_matches(' ') == token
            } else {
                value.get(..prefix.len()).is_some_and(|head| {
                    head.eq_ignore_ascii_case(prefix)
                        && value[prefix.len()..].trim_matches(OWS) == token
                })
            }
        }
        // Every occurrence holds this token (different ones are ambiguous, never guessed
        // between), and there is one.
        TokenSource::Cookie(name) => {
            let values: Vec<&str> = value
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(key, _)| key.trim_matches(OWS) == name)
                .map(|(_, cookie)| cookie.trim_matches(OWS).trim_matches('"'))
                .collect();
            !values.is_empty() && values.iter().all(|v| *v == token)
        }
        TokenSource::Query(name) => {
            let query = value.split_once('?').map_or("", |(_, query)| query);
            let query = query.split_once('#').map_or(query, |(query, _)| query);
            let values: Vec<&str> = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(key, _)| decoded(key) == name.as_bytes())
                .map(|(_, value)| value)
                .collect();
            !values.is_empty() && values.iter().all(|v| *v == token)
        }
    }
}

/// A query parameter's name as an upstream that percent-decodes it reads it.
fn decoded(key: &str) -> Vec<u8> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex
            .filter(|_| bytes[i] == b'%')
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn check_removal(source: &TokenSource, value: &str) {
    let removed = source.without_token(value);
    match source {
        TokenSource::Header { .. } => assert_eq!(removed, None, "a header source goes whole"),
        TokenSource::Cookie(name) => {
            let named = |pair: &str| {
                pair.split_once('=')
                    .map_or(pair, |(n, _)| n)
                    .trim_matches(OWS)
                    == name
            };
            let kept: Vec<&str> = value
                .split(';')
                .map(|pair| pair.trim_matches(OWS))
                .filter(|pair| !pair.is_empty() && !named(pair))
                .collect();
            match &removed {
                None => assert!(kept.is_empty(), "{value:?}: removed {kept:?} too"),
                Some(rest) => {
                    assert_eq!(rest.split("; ").collect::<Vec<_>>(), kept, "{value:?}");
                    assert_eq!(source.locate(rest, MAX), Ok(None), "{rest:?} still has it");
                    assert_eq!(source.without_token(rest).as_deref(), Some(rest.as_str()));
                }
            }
        }
        TokenSource::Query(_) => {
            let rest = removed.expect("the path is never removed");
            let (path, _) = value.split_once('?').unwrap_or((value, ""));
            assert!(rest.starts_with(path), "{value:?} -> {rest:?}");
            assert_eq!(source.locate(&rest, MAX), Ok(None), "{rest:?} still has it");
            assert_eq!(source.without_token(&rest).as_deref(), Some(rest.as_str()));
        }
    }
}
