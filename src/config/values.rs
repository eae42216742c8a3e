//! Small validators shared by the configuration's parts.

use serde::Deserialize;

use super::ConfigError;
use crate::config::headers::validate_header_name;

/// A single value or a list of them, for fields such as `secret`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

pub(super) fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::OutOfRange {
            field: field.to_owned(),
            value,
            min,
            max,
        })
    }
}

pub(super) fn check_header(field: &str, name: &str) -> Result<(), ConfigError> {
    validate_header_name(name).map_err(|reason| ConfigError::InvalidHeader {
        field: field.to_owned(),
        name: name.to_owned(),
        reason,
    })
}

/// A claim's dotted path (`org.id`), split; refused with an empty segment.
pub(super) fn claim_path(field: &str, claim: &str) -> Result<Vec<String>, ConfigError> {
    let path: Vec<String> = claim.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::InvalidClaimPath {
            field: field.to_owned(),
            path: claim.to_owned(),
        });
    }
    Ok(path)
}

pub(super) fn non_empty(field: &str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::EmptyField {
            field: field.to_owned(),
        });
    }
    Ok(value)
}

/// A path sent to an upstream (`revocation.path_prefix`, a JWKS path): absolute, and nothing
/// that would change the request's meaning.
pub(super) fn check_path(field: &str, value: String) -> Result<String, ConfigError> {
    if !value.starts_with('/')
        || value
            .chars()
            .any(|c| c == '#' || c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::InvalidPath {
            field: field.to_owned(),
            value,
        });
    }
    Ok(value)
}
