//! Names of the request headers keygate sets from verified claims.

use std::fmt;

/// Headers the filter must never overwrite: the credential itself, framing and hop-by-hop
/// headers, whose rewriting would break or smuggle requests.
const RESERVED: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "cookie",
    "expect",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderNameError {
    Empty,
    Pseudo,
    NotLowercaseToken,
    Reserved,
}

impl fmt::Display for HeaderNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "is empty",
            Self::Pseudo => "is a pseudo-header; use a regular header such as x-user-id",
            Self::NotLowercaseToken => {
                "must be lowercase letters, digits and '-', '_', '.' (as Envoy stores header names)"
            }
            Self::Reserved => "is reserved (credential, framing or hop-by-hop header)",
        })
    }
}

pub fn validate_header_name(name: &str) -> Result<(), HeaderNameError> {
    if name.is_empty() {
        return Err(HeaderNameError::Empty);
    }
    if name.starts_with(':') {
        return Err(HeaderNameError::Pseudo);
    }
    let is_allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
    if !name.bytes().all(is_allowed) {
        return Err(HeaderNameError::NotLowercaseToken);
    }
    if RESERVED.contains(&name) {
        return Err(HeaderNameError::Reserved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_lowercase_names() {
        for name in ["x-user-id", "x-org-id", "x_jwt.payload", "x-1"] {
            assert_eq!(validate_header_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_names_envoy_would_not_store_or_that_carry_meaning() {
        let cases = [
            ("", HeaderNameError::Empty),
            (":authority", HeaderNameError::Pseudo),
            ("X-User-Id", HeaderNameError::NotLowercaseToken),
            ("x user", HeaderNameError::NotLowercaseToken),
            ("x-user\n", HeaderNameError::NotLowercaseToken),
            ("authorization", HeaderNameError::Reserved),
            ("host", HeaderNameError::Reserved),
            ("transfer-encoding", HeaderNameError::Reserved),
        ];
        for (name, expected) in cases {
            assert_eq!(validate_header_name(name), Err(expected), "{name:?}");
        }
    }
}
