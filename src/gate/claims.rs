//! Claim values as request header values.

use serde_json::{Map, Value};

use crate::gate::text::is_invisible;
use crate::gate::verify::Rejection;

/// A request header the filter writes: set to `value`, or removed when it is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderWrite {
    pub name: String,
    pub value: Option<String>,
}

impl HeaderWrite {
    pub fn new(name: impl Into<String>, value: Option<String>) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }
}

/// A filter state value the filter publishes for Envoy's other filters (`filter_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The full name, prefix included; Envoy keeps it as `wasm.<name>`.
    pub name: String,
    pub value: String,
}

/// The header value of the claim at `path` (`["org", "id"]` for `org.id`): strings as they are,
/// numbers and booleans as JSON writes them, arrays of those joined with `,`; absent, `null`,
/// objects, empty arrays and arrays holding anything but scalars leave the header unset.
///
/// The upstream must see the verified claim byte for byte, so a value that a header cannot
/// carry exactly makes the token invalid rather than arrive changed: HTTP drops leading and
/// trailing spaces and tabs (`" bob"` would arrive as `bob`), control characters cannot be sent
/// or split the header, and an empty identity reads as none. Nor does a value with an
/// invisible character (a bidi override, a zero-width one, U+2028; see [`crate::gate::text`]) go on:
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
#[path = "claims_tests.rs"]
mod tests;
