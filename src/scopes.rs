//! The scopes a verified token grants, and the check of a rule's required scopes against them.
//! Scopes come from the `scope` claim (a space-delimited string, RFC 8693 §4.2) and from a
//! `scopes` array of strings; a token may carry either or both.

use serde_json::{Map, Value};

const MAX_SCOPE_LEN: usize = 128;

/// Every scope the claims grant, each once, in no particular order. Values of the wrong type
/// (a non-string in `scopes`, a `scope` that is not a string) grant nothing.
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
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn strings(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn granted_scopes_are_the_union_of_both_claims() {
        let cases = [
            (json!({}), vec![]),
            (json!({"scope": "read write"}), vec!["read", "write"]),
            (json!({"scope": "  read   write "}), vec!["read", "write"]),
            (json!({"scope": ""}), vec![]),
            (json!({"scopes": ["read", "admin"]}), vec!["admin", "read"]),
            (
                json!({"scopes": ["read", 1, null, ["x"], "", "admin"]}),
                vec!["admin", "read"],
            ),
            (
                json!({"scope": "read write", "scopes": ["admin", "read"]}),
                vec!["admin", "read", "write"],
            ),
            (json!({"scope": ["read"], "scopes": "admin"}), vec![]),
            (json!({"scope": 7, "scopes": {"admin": true}}), vec![]),
            (json!({"scp": "read", "Scope": "read"}), vec![]),
        ];
        for (value, expected) in cases {
            let claims = claims(value.clone());
            let mut granted = granted_scopes(&claims);
            granted.sort_unstable();
            assert_eq!(granted, expected, "{value}");
        }
    }

    #[test]
    fn every_required_scope_must_be_granted() {
        let cases = [
            (vec![], json!({}), vec![]),
            (vec!["admin"], json!({"scope": "read admin"}), vec![]),
            (vec!["admin"], json!({"scopes": ["admin"]}), vec![]),
            (
                vec!["admin", "write"],
                json!({"scope": "write", "scopes": ["admin"]}),
                vec![],
            ),
            (vec!["admin"], json!({}), vec!["admin"]),
            (
                vec!["admin", "read", "write"],
                json!({"scope": "read"}),
                vec!["admin", "write"],
            ),
            // No prefix or case matching: scopes are exact strings.
            (
                vec!["admin"],
                json!({"scope": "admins Admin adm"}),
                vec!["admin"],
            ),
            (
                vec!["admin"],
                json!({"scope": "read\tadmin"}),
                vec!["admin"],
            ),
            (vec!["admin"], json!({"scopes": "admin"}), vec!["admin"]),
        ];
        for (required, value, expected) in cases {
            let required = strings(&required);
            assert_eq!(
                missing_scopes(&required, &claims(value.clone())),
                expected,
                "{required:?} {value}"
            );
        }
    }

    #[test]
    fn scope_tokens_are_printable_ascii_without_space_quote_or_backslash() {
        let long = "a".repeat(128);
        for scope in [
            "admin",
            "read:orgs",
            "https://api.example.com/x",
            "!#[]~",
            &long,
        ] {
            assert!(validate_scope(scope), "{scope:?}");
        }
        let too_long = "a".repeat(129);
        for scope in ["", "a b", "a\"b", "a\\b", "a\tb", "é", "a\u{7f}", &too_long] {
            assert!(!validate_scope(scope), "{scope:?}");
        }
    }
}
