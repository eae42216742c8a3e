//! `filter_state`: the verified identity published as Envoy filter state, where Envoy's other
//! filters read it (RBAC's `filter_state` matcher, the access log's `%FILTER_STATE(...)%`, CEL).
//! Unlike a header, a client cannot send filter state, so nothing of it needs stripping.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ConfigError;
use super::values::claim_path;

const DEFAULT_PREFIX: &str = "keygate.";
/// Names keygate publishes itself; claims cannot take them.
pub const PROVIDER: &str = "provider";
pub const SCOPES: &str = "scopes";
pub const KEY_DIGEST: &str = "key_digest";
const FIXED: &[&str] = &[PROVIDER, SCOPES, KEY_DIGEST];
const MAX_NAME_LEN: usize = 64;

/// The validated `filter_state` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterState {
    /// Every name is published under it (Envoy adds `wasm.` in front: `wasm.keygate.provider`).
    pub prefix: String,
}

/// A claim, by dotted path, published under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimProperty {
    pub claim: String,
    pub path: Vec<String>,
    /// The full name, prefix included.
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilterState {
    prefix: Option<String>,
    claims: Option<Map<String, Value>>,
}

impl RawFilterState {
    /// The block, and the claims every provider publishes unless it says otherwise.
    pub(super) fn validate(self) -> Result<(FilterState, Vec<ClaimProperty>), ConfigError> {
        let prefix = self.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if prefix.len() > MAX_NAME_LEN || !prefix.bytes().all(name_byte) {
            return Err(ConfigError::FilterState {
                field: "filter_state.prefix".to_owned(),
                reason: format!("{prefix:?} must be at most {MAX_NAME_LEN} of a-z, 0-9, '_', '-' or '.'"),
            });
        }
        let claims = match self.claims {
            Some(map) => parse_claims("filter_state.claims", &prefix, map)?,
            None => parse_claims(
                "filter_state.claims",
                &prefix,
                [("user_id", "user_id"), ("org_id", "org_id")]
                    .into_iter()
                    .map(|(claim, name)| (claim.to_owned(), Value::String(name.to_owned())))
                    .collect(),
            )?,
        };
        Ok((FilterState { prefix }, claims))
    }
}

/// A mapping of claim paths to names (`filter_state.claims`, `providers[].filter_state_claims`).
pub(super) fn parse_claims(
    field: &str,
    prefix: &str,
    map: Map<String, Value>,
) -> Result<Vec<ClaimProperty>, ConfigError> {
    let mut properties: Vec<ClaimProperty> = Vec::with_capacity(map.len());
    for (claim, name) in map {
        let at = format!("{field}.{claim}");
        let path = claim_path(&at, &claim)?;
        let Value::String(name) = name else {
            return Err(ConfigError::Json {
                path: at,
                message: "expected a name string".to_owned(),
            });
        };
        if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(name_byte) {
            return Err(ConfigError::FilterState {
                field: at,
                reason: format!("{name:?} must be 1 to {MAX_NAME_LEN} of a-z, 0-9, '_', '-' or '.'"),
            });
        }
        if FIXED.contains(&name.as_str()) {
            return Err(ConfigError::FilterState {
                field: at,
                reason: format!("{name:?} is published by keygate itself ({}); choose another name", FIXED.join(", ")),
            });
        }
        let name = format!("{prefix}{name}");
        if properties.iter().any(|p| p.name == name) {
            return Err(ConfigError::FilterState {
                field: at,
                reason: "the name is already taken by another claim".to_owned(),
            });
        }
        properties.push(ClaimProperty { claim, path, name });
    }
    Ok(properties)
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b)
}
