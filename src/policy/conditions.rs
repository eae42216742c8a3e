//! Claim conditions: what a verified token's claims must say for a provider to accept it (Clerk's
//! `azp` among the allowed origins) or for a requirement to let it through (`org_role` is
//! `admin`). Parsed and validated once; checking one allocates nothing.
//!
//! A condition names a claim by dotted path (`org.role` is the `role` member of the `org` claim)
//! and asks exactly one thing of it: `in` (equal to one of these strings, numbers or booleans),
//! `contains` (an array holding, or a space-delimited string listing, every one of these
//! strings), or `exists` (present and not `null`). `{"claim": "email_verified", "in": [true]}`
//! is "is the boolean true": JSON equality, so the string `"true"` is not.

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// Claims that RFC 7519 defines as strings, numbers or arrays of strings: nothing is below them,
/// so a path through one can never match and is refused at load.
const SCALAR_CLAIMS: &[&str] = &["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope"];
const MAX_PATH_DEPTH: usize = 8;
const MAX_VALUES: usize = 256;

/// A condition as written in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    claim: String,
    #[serde(rename = "in")]
    one_of: Option<Vec<Value>>,
    contains: Option<Vec<String>>,
    exists: Option<bool>,
}

/// A validated condition.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimCondition {
    /// The path as written, for logs.
    pub claim: String,
    path: Vec<String>,
    test: Test,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    OneOf(Vec<Value>),
    ContainsAll(Vec<String>),
    Exists,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConditionError {
    #[error("`{field}.claim`: {claim:?} is not a dotted path of 1 to {MAX_PATH_DEPTH} non-empty names")]
    BadPath { field: String, claim: String },
    #[error("`{field}.claim`: {claim:?} can never exist: `{first}` is a string, number or list of strings (RFC 7519), with nothing below it; name the claim itself")]
    BelowScalar {
        field: String,
        claim: String,
        first: String,
    },
    #[error("`{field}`: give exactly one of `in`, `contains` or `exists`")]
    Kind { field: String },
    #[error("`{field}.in`: give 1 to {MAX_VALUES} strings, numbers or booleans")]
    BadOneOf { field: String },
    #[error("`{field}.contains`: give 1 to {MAX_VALUES} non-empty strings without spaces")]
    BadContains { field: String },
    #[error("`{field}.exists`: only `true` is meaningful; leave the condition out instead")]
    ExistsFalse { field: String },
}

impl RawCondition {
    /// `field` is where the condition stands, e.g. `providers[1].claims[0]`.
    pub fn validate(self, field: &str) -> Result<ClaimCondition, ConditionError> {
        let path: Vec<String> = self.claim.split('.').map(str::to_owned).collect();
        if path.len() > MAX_PATH_DEPTH || path.iter().any(String::is_empty) {
            return Err(ConditionError::BadPath {
                field: field.to_owned(),
                claim: self.claim,
            });
        }
        if path.len() > 1 && SCALAR_CLAIMS.contains(&path[0].as_str()) {
            return Err(ConditionError::BelowScalar {
                field: field.to_owned(),
                first: path[0].clone(),
                claim: self.claim,
            });
        }
        let test = match (self.one_of, self.contains, self.exists) {
            (Some(values), None, None) => {
                let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
                if values.is_empty() || values.len() > MAX_VALUES || !values.iter().all(scalar) {
                    return Err(ConditionError::BadOneOf {
                        field: field.to_owned(),
                    });
                }
                Test::OneOf(values)
            }
            (None, Some(values), None) => {
                let word = |v: &String| !v.is_empty() && !v.contains([' ', '\t']);
                if values.is_empty() || values.len() > MAX_VALUES || !values.iter().all(word) {
                    return Err(ConditionError::BadContains {
                        field: field.to_owned(),
                    });
                }
                Test::ContainsAll(values)
            }
            (None, None, Some(true)) => Test::Exists,
            (None, None, Some(false)) => {
                return Err(ConditionError::ExistsFalse {
                    field: field.to_owned(),
                });
            }
            _ => {
                return Err(ConditionError::Kind {
                    field: field.to_owned(),
                });
            }
        };
        Ok(ClaimCondition {
            claim: self.claim,
            path,
            test,
        })
    }
}

/// Validates the list at `field` (e.g. `requirements.admin.claims`).
pub fn validate_all(
    field: &str,
    raw: Option<Vec<RawCondition>>,
) -> Result<Vec<ClaimCondition>, ConditionError> {
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, condition)| condition.validate(&format!("{field}[{index}]")))
        .collect()
}

impl ClaimCondition {
    /// Whether the claims meet the condition.
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        let Some(value) = claim_at(claims, &self.path) else {
            return false;
        };
        match &self.test {
            Test::Exists => true,
            Test::OneOf(values) => values.iter().any(|wanted| same_scalar(wanted, value)),
            Test::ContainsAll(wanted) => wanted.iter().all(|w| contains(value, w)),
        }
    }
}

/// Whether every condition holds.
pub fn all_hold(conditions: &[ClaimCondition], claims: &Map<String, Value>) -> bool {
    conditions.iter().all(|condition| condition.holds(claims))
}

/// The claim at a dotted path; `null` counts as absent.
fn claim_at<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for name in rest {
        value = value.as_object()?.get(name)?;
    }
    (!value.is_null()).then_some(value)
}

/// JSON equality of scalars, numbers by value (`1` equals `1.0`, as JSON readers disagree on the
/// difference).
fn same_scalar(wanted: &Value, value: &Value) -> bool {
    match (wanted, value) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => wanted == value,
    }
}

/// Whether an array holds the string, or a space-delimited string lists it.
fn contains(value: &Value, wanted: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| item.as_str() == Some(wanted)),
        Value::String(words) => words.split(' ').any(|word| word == wanted),
        _ => false,
    }
}

#[cfg(test)]
#[path = "conditions_tests.rs"]
mod tests;
