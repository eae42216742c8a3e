//! Claim values as request header values.

use serde_json::{Map, Value};

use crate::verify::Rejection;

/// The header value of the claim at `path` (`["org", "id"]` for `org.id`): strings as they are,
/// numbers and booleans as JSON writes them, arrays of those joined with `,`; absent, `null` and
/// objects leave the header unset. A value that cannot be a header value makes the token
/// malformed rather than silently drop an identity.
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
    let text = match value {
        None | Some(Value::Null | Value::Object(_)) => return Ok(None),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match scalar(item) {
                    Some(part) => parts.push(part),
                    None => return Ok(None),
                }
            }
            parts.join(",")
        }
        Some(other) => match scalar(other) {
            Some(text) => text,
            None => return Ok(None),
        },
    };
    if text.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(Rejection::Malformed);
    }
    Ok(Some(text))
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
    fn control_characters_make_the_token_malformed() {
        let claims = json!({"sub": "u\r\nx-admin: 1", "list": ["ok", "a\nb"]});
        let claims = claims.as_object().unwrap();
        assert_eq!(
            header_value(claims, &path("sub")),
            Err(Rejection::Malformed)
        );
        assert_eq!(
            header_value(claims, &path("list")),
            Err(Rejection::Malformed)
        );
    }
}
