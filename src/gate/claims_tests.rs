//! Unit tests of `claims`.

use super::*;
use serde_json::json;

fn path(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_owned).collect()
}

#[test]
fn scalars_arrays_and_nested_claims_become_header_values() {
    let claims = json!({
        "sub": "user_1", "n": 42, "admin": true, "roles": ["a", "b", 3],
        "org": {"id": "org_9", "tags": ["x"]}, "nothing": null, "obj": {"k": 1},
        "mixed": ["a", {"k": 1}]
    });
    let claims = claims.as_object().unwrap();
    let cases = [
        ("sub", Some("user_1")),
        ("n", Some("42")),
        ("admin", Some("true")),
        ("roles", Some("a,b,3")),
        ("org.id", Some("org_9")),
        ("org.tags", Some("x")),
        ("org.missing", None),
        ("sub.deeper", None),
        ("nothing", None),
        ("obj", None),
        ("mixed", None),
        ("absent", None),
    ];
    for (dotted, expected) in cases {
        assert_eq!(
            header_value(claims, &path(dotted)),
            Ok(expected.map(str::to_owned)),
            "{dotted}"
        );
    }
}

#[test]
fn values_a_header_would_change_make_the_token_invalid() {
    let claims = json!({
        "lead_space": " bob", "trail_space": "bob ", "lead_tab": "\tbob", "trail_tab": "bob\t",
        "blank": "   ", "empty": "", "inner_tab": "ali\tce", "crlf": "u\r\nx-admin: 1",
        "nul": "a\u{0}b", "del": "a\u{7f}b", "c1": "a\u{85}b",
        "list_crlf": ["ok", "a\nb"], "list_comma": ["a,b"], "list_space": ["a", " b"],
        "list_empty_item": ["a", ""],
        "bidi": "alice\u{202e}nimda", "zero_width": "ali\u{200b}ce", "bom": "\u{feff}alice",
        "line_separator": "a\u{2028}b", "list_invisible": ["a", "b\u{2066}"],
    });
    let claims = claims.as_object().unwrap();
    for name in claims.keys() {
        assert_eq!(
            header_value(claims, &path(name)),
            Err(Rejection::UnrepresentableClaim),
            "{name}"
        );
    }
}

#[test]
fn values_a_header_carries_exactly_pass_as_they_are() {
    let claims = json!({
        "inner_space": "Ada Lovelace", "utf8": "jos\u{e9} \u{4e16}\u{754c}", "nbsp_edge": "\u{a0}bob",
        "punctuation": "a;b=c\"d", "empty_list": [],
    });
    let claims = claims.as_object().unwrap();
    let cases = [
        ("inner_space", Some("Ada Lovelace")),
        ("utf8", Some("jos\u{e9} \u{4e16}\u{754c}")),
        ("nbsp_edge", Some("\u{a0}bob")),
        ("punctuation", Some("a;b=c\"d")),
        ("empty_list", None),
    ];
    for (name, expected) in cases {
        assert_eq!(
            header_value(claims, &path(name)),
            Ok(expected.map(str::to_owned)),
            "{name}"
        );
    }
}
