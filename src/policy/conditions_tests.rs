use serde_json::{Map, Value, json};

use super::*;

fn condition(raw: Value) -> Result<ClaimCondition, ConditionError> {
    serde_json::from_value::<RawCondition>(raw)
        .unwrap()
        .validate("c")
}

fn claims(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn in_is_json_equality_with_one_of_the_values() {
    let azp = condition(json!({"claim": "azp", "in": ["https://app.example.com", "https://b.example"]}))
        .unwrap();
    assert!(azp.holds(&claims(json!({"azp": "https://app.example.com"}))));
    assert!(azp.holds(&claims(json!({"azp": "https://b.example"}))));
    assert!(!azp.holds(&claims(json!({"azp": "https://evil.example"}))));
    assert!(!azp.holds(&claims(json!({"azp": "https://APP.example.com"}))));
    assert!(!azp.holds(&claims(json!({"azp": ["https://app.example.com"]}))));
    assert!(!azp.holds(&claims(json!({}))));
    assert!(!azp.holds(&claims(json!({"azp": null}))));

    let verified = condition(json!({"claim": "email_verified", "in": [true]})).unwrap();
    assert!(verified.holds(&claims(json!({"email_verified": true}))));
    assert!(!verified.holds(&claims(json!({"email_verified": "true"}))));
    assert!(!verified.holds(&claims(json!({"email_verified": false}))));
    assert!(!verified.holds(&claims(json!({"email_verified": 1}))));

    let tier = condition(json!({"claim": "tier", "in": [2]})).unwrap();
    assert!(tier.holds(&claims(json!({"tier": 2.0}))));
    assert!(!tier.holds(&claims(json!({"tier": "2"}))));
}

#[test]
fn contains_reads_arrays_and_space_delimited_strings() {
    let write = condition(json!({"claim": "scope", "contains": ["keys:write", "keys:read"]})).unwrap();
    assert!(write.holds(&claims(json!({"scope": "keys:read openid keys:write"}))));
    assert!(!write.holds(&claims(json!({"scope": "keys:read"}))));
    assert!(!write.holds(&claims(json!({"scope": "keys:read keys:writer"}))));
    let roles = condition(json!({"claim": "roles", "contains": ["admin"]})).unwrap();
    assert!(roles.holds(&claims(json!({"roles": ["user", "admin"]}))));
    assert!(!roles.holds(&claims(json!({"roles": ["administrator"]}))));
    assert!(!roles.holds(&claims(json!({"roles": {"admin": true}}))));
    assert!(!roles.holds(&claims(json!({"roles": "user,admin"}))));
}

#[test]
fn exists_and_dotted_paths() {
    let email = condition(json!({"claim": "email", "exists": true})).unwrap();
    assert!(email.holds(&claims(json!({"email": ""}))));
    assert!(!email.holds(&claims(json!({"email": null}))));
    assert!(!email.holds(&claims(json!({}))));
    let role = condition(json!({"claim": "org.role", "in": ["admin"]})).unwrap();
    assert!(role.holds(&claims(json!({"org": {"role": "admin"}}))));
    assert!(!role.holds(&claims(json!({"org.role": "admin"}))));
    assert!(!role.holds(&claims(json!({"org": ["admin"]}))));
    assert!(!role.holds(&claims(json!({"org": "admin"}))));
}

#[test]
fn conditions_that_could_never_hold_are_refused_naming_the_field() {
    let error = |raw| condition(raw).unwrap_err().to_string();
    assert!(error(json!({"claim": "a..b", "exists": true})).starts_with("`c.claim`"));
    assert!(error(json!({"claim": "", "exists": true})).starts_with("`c.claim`"));
    assert!(error(json!({"claim": "sub.id", "exists": true})).contains("`sub` is a string"));
    assert!(error(json!({"claim": "azp", "in": []})).starts_with("`c.in`"));
    assert!(error(json!({"claim": "azp", "in": [{"a": 1}]})).starts_with("`c.in`"));
    assert!(error(json!({"claim": "azp", "in": [null]})).starts_with("`c.in`"));
    assert!(error(json!({"claim": "scope", "contains": ["a b"]})).starts_with("`c.contains`"));
    assert!(error(json!({"claim": "scope", "contains": [""]})).starts_with("`c.contains`"));
    assert!(error(json!({"claim": "email", "exists": false})).starts_with("`c.exists`"));
    assert!(error(json!({"claim": "azp"})).contains("exactly one of"));
    assert!(error(json!({"claim": "azp", "in": ["a"], "exists": true})).contains("exactly one of"));
    assert!(serde_json::from_value::<RawCondition>(json!({"claim": "a", "equals": "b"})).is_err());
}

#[test]
fn all_hold_needs_every_condition() {
    let list = validate_all(
        "p.claims",
        Some(vec![
            serde_json::from_value(json!({"claim": "azp", "in": ["a"]})).unwrap(),
            serde_json::from_value(json!({"claim": "org_role", "in": ["admin"]})).unwrap(),
        ]),
    )
    .unwrap();
    assert!(all_hold(&list, &claims(json!({"azp": "a", "org_role": "admin"}))));
    assert!(!all_hold(&list, &claims(json!({"azp": "a", "org_role": "member"}))));
    assert!(all_hold(&[], &claims(json!({}))));
    let error = validate_all(
        "p.claims",
        Some(vec![
            serde_json::from_value(json!({"claim": "azp", "in": ["a"]})).unwrap(),
            serde_json::from_value(json!({"claim": "x", "in": []})).unwrap(),
        ]),
    )
    .unwrap_err();
    assert!(error.to_string().starts_with("`p.claims[1].in`"), "{error}");
}
