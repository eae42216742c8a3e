//! Claim values as request header values.

use serde_json::{Map, Value};

use crate::text::is_invisible;
use crate::verify::Rejection;

/// The header value of the claim at `path` (`["org", "id"]` for `org.id`): strings as they are,
/// numbers and booleans as JSON writes them, arrays of those joined with `,`; absent, `null`,
/// objects, empty arrays and arrays holding anything but scalars leave the header unset.
///
/// The upstream must see the verified claim byte for byte, so a value that a header cannot
/// carry exactly makes the token invalid rather than arrive changed: HTTP drops leading and
/// trailing spaces and tabs (`" bob"` would arrive as `bob`), control characters cannot be sent
/// or split the header, and an empty identity reads as none. Nor does a value with an
/// invisible character (a bidi override, a zero-width one, U+2028; see [`crate::text`]) go on:
/// it would look like another value to whoever reads it. An array element with a `,` would
/// read as two elements once joined. Other non-ASCII text is forwarded as its UTF-8 bytes.
pub fn header_value(
    claims: &Map<String, Value>,
    path: &[String],
) -> Result<Option<String>, Rejection> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(None);
    };
    let mut value = claims.get(first);
    for name in rest {
        value = value.and_then(|v| v.get(name));
    }
    match value {
        None | Some(Value::Null | Value::Object(_)) => Ok(None),
        Some(Value::Array(items)) => {
            let Some(parts) = items.iter().map(scalar).collect::<Option<Vec<_>>>() else {
                return Ok(None);
            };
            let mut joined: Vec<String> = Vec::with_capacity(parts.len());
            for part in parts {
                if part.contains(',') {
                    return Err(Rejection::UnrepresentableClaim);
                }
                joined.push(carried_exactly(part)?);
            }
            Ok((!joined.is_empty()).then(|| joined.join(",")))
        }
        Some(other) => match scalar(other) {
            Some(text) => carried_exactly(text).map(Some),
            None => Ok(None),
        },
    }
}

/// `text`, if a header value carries it unchanged and it reads as itself: not empty, no space or
/// tab at either end, no invisible character (controls included).
fn carried_exactly(text: String) -> Result<String, Rejection> {
    let edge_whitespace = |c: Option<char>| matches!(c, Some(' ' | '\t'));
    if text.is_empty()
        || edge_whitespace(text.chars().next())
        || edge_whitespace(text.chars().next_back())
        || text.chars().any(is_invisible)
    {
        return Err(Rejection::UnrepresentableClaim);
    }
    Ok(text)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
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
}
