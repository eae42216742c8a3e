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
#[path = "credential_tests.rs"]
mod tests;
