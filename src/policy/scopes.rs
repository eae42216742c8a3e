//! The scopes a verified token grants, and the check of a rule's required scopes against them.
//! Scopes come from the `scope` claim (a space-delimited string, RFC 8693 §4.2) and from a
//! `scopes` array of strings; a token may carry either or both.

use serde_json::{Map, Value};

const MAX_SCOPE_LEN: usize = 128;

/// Every scope the claims grant, each once, in no particular order. Values of the wrong type
/// (a non-string in `scopes`, a `scope` that is not a string) grant nothing. For the tests:
/// the check itself ([`missing_scopes`]) needs no list; filter state publishes it.
pub fn granted_scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut granted: Vec<&str> = scope_claims(claims).collect();
    // Sorting rather than a `contains` per scope: a token can list thousands.
    granted.sort_unstable();
    granted.dedup();
    granted
}

/// The required scopes the claims do not grant (all are needed); empty when the token has them
/// all. Allocates nothing in that case.
pub fn missing_scopes<'a>(required: &'a [String], claims: &Map<String, Value>) -> Vec<&'a str> {
    required
        .iter()
        .map(String::as_str)
        .filter(|needed| !scope_claims(claims).any(|granted| granted == *needed))
        .collect()
}

/// Whether `scope` is a scope-token of RFC 6749 §3.3 (`1*( %x21 / %x23-5B / %x5D-7E )`), at
/// most 128 characters: what configuration accepts as a required scope.
pub fn validate_scope(scope: &str) -> bool {
    (1..=MAX_SCOPE_LEN).contains(&scope.len())
        && scope
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// The scopes of both claims, possibly repeated; empty names are skipped (double spaces).
fn scope_claims(claims: &Map<String, Value>) -> impl Iterator<Item = &str> {
    let listed = claims
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    let delimited = claims
        .get("scope")
        .and_then(Value::as_str)
        .into_iter()
        .flat_map(|scope| scope.split(' '));
    listed.chain(delimited).filter(|scope| !scope.is_empty())
}

#[cfg(test)]
#[path = "scopes_tests.rs"]
mod tests;
