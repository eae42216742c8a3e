//! Taking the bearer token out of the `Authorization` header (RFC 6750 §2.1).

/// Why no usable token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// No `Authorization` header, or one with no token after the scheme.
    Missing,
    /// Another scheme (`Basic`, ...): the request carries no bearer token.
    OtherScheme,
    /// Over the configured size limit; refused before any parsing.
    TooLarge,
    /// Characters a bearer token cannot contain.
    Malformed,
    /// Several different tokens in one request (e.g. a header and a cookie that disagree).
    Ambiguous,
}

impl CredentialError {
    /// Whether the client presented a bearer token at all: RFC 6750 §3.1 says a request without
    /// one gets no `error` attribute in `WWW-Authenticate`.
    pub fn token_presented(self) -> bool {
        matches!(self, Self::TooLarge | Self::Malformed | Self::Ambiguous)
    }
}

const SCHEME: &str = "bearer";

/// HTTP's optional whitespace (RFC 9110 §5.6.3): what Envoy and every HTTP reader trim around a
/// header value or a list element. `str::trim` would drop more (NBSP, NEL, ...), and the token
/// found would not be the one the next hop reads.
pub const OWS: [char; 2] = [' ', '\t'];

/// Returns the token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive; the size is checked on the raw value before anything else is done with it.
/// The token's characters are not: `is_b64token` checks them, later, as it reads every byte and
/// a token found in the verified-token cache is already known to pass it.
pub fn bearer_token(header: Option<&str>, max_token_bytes: usize) -> Result<&str, CredentialError> {
    let value = header.ok_or(CredentialError::Missing)?.trim_matches(OWS);
    // Scheme, a space and the token: anything longer holds a token over the limit.
    if value.len() > max_token_bytes + SCHEME.len() + 1 {
        return if is_bearer_scheme(value) {
            Err(CredentialError::TooLarge)
        } else {
            Err(CredentialError::OtherScheme)
        };
    }
    if value.is_empty() {
        return Err(CredentialError::Missing);
    }
    if !is_bearer_scheme(value) {
        return Err(CredentialError::OtherScheme);
    }
    let rest = &value[SCHEME.len()..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        // e.g. "Bearerxyz": a different scheme name.
        return Err(CredentialError::OtherScheme);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(CredentialError::Missing);
    }
    if token.len() > max_token_bytes {
        return Err(CredentialError::TooLarge);
    }
    Ok(token)
}

fn is_bearer_scheme(value: &str) -> bool {
    value
        .get(..SCHEME.len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| B64TOKEN_BODY[usize::from(b)])
}

/// The bytes a b64token's body may hold, as a table: every request's token goes through it.
const B64TOKEN_BODY: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        byte += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 32;

    /// `bearer_token` and then `is_b64token`, as a request goes through them.
    fn checked(header: Option<&str>, max_token_bytes: usize) -> Result<&str, CredentialError> {
        let token = bearer_token(header, max_token_bytes)?;
        if is_b64token(token) {
            Ok(token)
        } else {
            Err(CredentialError::Malformed)
        }
    }

    #[test]
    fn takes_the_token_whatever_the_scheme_case() {
        for header in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER abc.def.ghi",
            "Bearer   abc.def.ghi  ",
            "\tBearer abc.def.ghi\t",
        ] {
            assert_eq!(checked(Some(header), MAX), Ok("abc.def.ghi"), "{header:?}");
        }
    }

    #[test]
    fn reports_why_there_is_no_token() {
        let long = format!("Bearer {}", "a".repeat(MAX + 1));
        let very_long = format!("Bearer {}", "a".repeat(MAX * 10));
        let long_basic = format!("Basic {}", "a".repeat(MAX * 10));
        let cases: [(Option<&str>, CredentialError); 11] = [
            (None, CredentialError::Missing),
            (Some(""), CredentialError::Missing),
            (Some("Bearer"), CredentialError::Missing),
            (Some("Bearer    "), CredentialError::Missing),
            (Some("Basic dXNlcjpwYXNz"), CredentialError::OtherScheme),
            (Some("Bearerabc.def"), CredentialError::OtherScheme),
            (Some("Token abc"), CredentialError::OtherScheme),
            (Some(&long), CredentialError::TooLarge),
            (Some(&very_long), CredentialError::TooLarge),
            (Some(&long_basic), CredentialError::OtherScheme),
            (Some("Bearer abc def"), CredentialError::Malformed),
        ];
        for (header, expected) in cases {
            assert_eq!(checked(header, MAX), Err(expected), "{header:?}");
        }
    }

    #[test]
    fn a_token_of_exactly_the_limit_is_accepted() {
        let token = "a".repeat(MAX);
        let header = format!("Bearer {token}");
        assert_eq!(checked(Some(&header), MAX), Ok(token.as_str()));
    }

    #[test]
    fn only_b64token_characters_are_accepted() {
        assert_eq!(checked(Some("Bearer a+b/c~d=="), MAX), Ok("a+b/c~d=="));
        // Whitespace HTTP does not trim stays part of the token, and makes it malformed (found
        // by fuzz/fuzz_targets/sources.rs).
        for header in [
            "Bearer a\"b",
            "Bearer ===",
            "Bearer a=b",
            "Bearer é",
            "Bearer abc\u{a0}",
            "Bearer abc\u{85}",
            "Bearer abc\n",
        ] {
            assert_eq!(
                checked(Some(header), MAX),
                Err(CredentialError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn the_table_holds_exactly_the_grammars_bytes() {
        let allowed: Vec<u8> = (0..=255u8)
            .filter(|&b| B64TOKEN_BODY[usize::from(b)])
            .collect();
        let mut expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        expected.extend_from_slice(b"+-./_~");
        expected.sort_unstable();
        assert_eq!(allowed, expected);
    }

    #[test]
    fn presented_tokens_are_told_apart_from_absent_ones() {
        assert!(!CredentialError::Missing.token_presented());
        assert!(!CredentialError::OtherScheme.token_presented());
        assert!(CredentialError::TooLarge.token_presented());
        assert!(CredentialError::Malformed.token_presented());
        assert!(CredentialError::Ambiguous.token_presented());
    }
}
