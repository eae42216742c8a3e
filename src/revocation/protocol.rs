//! The revocation protocol between the filter and keyservice:
//! `GET <path_prefix><lowercase hex SHA-256 of the token>` answers 200 (active), 410 (revoked) or
//! 404 (unknown). Only the digest travels; the token itself is never sent.

use sha2::{Digest as _, Sha256};

/// keyservice's answer about one token, as the filter understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStatus {
    Active,
    Revoked,
    Unknown,
    /// Any other status, a timeout, a reset or a failed dispatch.
    Unavailable,
}

impl RevocationStatus {
    /// Maps the callout's `:status`; `None` is what Envoy reports for a timeout or a reset.
    pub fn from_http_status(status: Option<u16>) -> Self {
        match status {
            Some(200) => Self::Active,
            Some(410) => Self::Revoked,
            Some(404) => Self::Unknown,
            _ => Self::Unavailable,
        }
    }
}

/// The SHA-256 of a token: what keyservice stores, what the cache is keyed by.
pub type Digest = [u8; 32];

pub fn digest(token: &str) -> Digest {
    Sha256::digest(token.as_bytes()).into()
}

/// The lowercase hex SHA-256 of the token, as keyservice stores it (what the tests and fuzz
/// targets expect in a callout's path).
#[cfg(any(test, feature = "internals"))]
pub fn token_digest(token: &str) -> String {
    hex_digest(&digest(token))
}

/// The digest in lowercase hex: how keyservice names a key, and what filter state publishes.
pub fn hex_digest(digest: &Digest) -> String {
    let mut hex = String::with_capacity(64);
    push_hex(&mut hex, digest);
    hex
}

/// A short fingerprint for logs: the first 8 hex digits of the digest, never the token.
pub fn fingerprint(digest: &Digest) -> String {
    let mut hex = String::with_capacity(8);
    push_hex(&mut hex, &digest[..4]);
    hex
}

/// The path of the revocation request for a token's digest.
pub fn revocation_path(path_prefix: &str, digest: &Digest) -> String {
    let mut path = String::with_capacity(path_prefix.len() + 64);
    path.push_str(path_prefix);
    push_hex(&mut path, digest);
    path
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
