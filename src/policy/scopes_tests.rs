//! Unit tests of `scopes`.

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
