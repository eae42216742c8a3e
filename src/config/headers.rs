//! Names of the request headers keygate sets from verified claims.

use thiserror::Error;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderNameError {
    #[error("is empty")]
    Empty,
    #[error("is a pseudo-header; use a regular header such as x-user-id")]
    Pseudo,
    #[error("must be lowercase letters, digits and '-', '_', '.' (as Envoy stores header names)")]
    NotLowercaseToken,
    #[error("is reserved (credential, framing or hop-by-hop header)")]
    Reserved,
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
#[path = "headers_tests.rs"]
mod tests;
