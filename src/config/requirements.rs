//! Named requirements: which providers a route takes (one, any of several, all of several),
//! whether it may go on without identity, and the claim conditions its tokens must meet. A route
//! selects one by name in its Envoy route metadata, or through a path rule; every other request
//! gets the default.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, Provider, RevocationCheck};
use crate::policy::conditions::{ClaimCondition, RawCondition, validate_all};

const MAX_REQUIREMENTS: usize = 256;
const MAX_NAME_LEN: usize = 64;
/// The name of the requirement used when none is configured or selected: every provider, any
/// of them. Not a name a configuration can write (`(` is outside the name alphabet), so no route
/// can select it by mistake.
pub const IMPLICIT_NAME: &str = "(any provider)";

/// What happens to a request without a (valid) token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Absent {
    /// Refused, as the token checks say.
    #[default]
    Refuse,
    /// No token: the request goes on without identity. A token that fails is still refused.
    AllowMissing,
    /// No token or one that fails: the request goes on without identity; identity only when
    /// the token is valid.
    AllowMissingOrFailed,
}

/// A validated requirement.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    pub name: String,
    /// Indexes into `Config::providers`, in the order written.
    pub providers: Vec<usize>,
    /// Every listed provider's token is needed (`all`), rather than one of them (`provider`,
    /// `any`).
    pub all: bool,
    pub absent: Absent,
    /// Conditions on the token's claims; failing one is 403 `insufficient_scope`.
    pub conditions: Vec<ClaimCondition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequirement {
    provider: Option<String>,
    any: Option<Vec<String>>,
    all: Option<Vec<String>>,
    #[serde(default)]
    allow_missing: bool,
    #[serde(default)]
    allow_missing_or_failed: bool,
    claims: Option<Vec<RawCondition>>,
}

/// Validates `requirements` and `default_requirement` against the providers; returns the
/// requirements (the implicit one last) and the index of the default.
pub(super) fn validate(
    raw: Option<BTreeMap<String, RawRequirement>>,
    default: Option<String>,
    providers: &[Provider],
) -> Result<(Vec<Requirement>, usize), ConfigError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_REQUIREMENTS {
        return Err(ConfigError::Requirement {
            field: "requirements".to_owned(),
            reason: format!("{} requirements is over the limit of {MAX_REQUIREMENTS}", raw.len()),
        });
    }
    let mut requirements = Vec::with_capacity(raw.len() + 1);
    for (name, requirement) in raw {
        requirements.push(requirement.validate(name, providers)?);
    }
    requirements.push(Requirement {
        name: IMPLICIT_NAME.to_owned(),
        providers: (0..providers.len()).collect(),
        all: false,
        absent: Absent::Refuse,
        conditions: Vec::new(),
    });
    let default = match default {
        None => requirements.len() - 1,
        Some(name) => index_of(&requirements, &name).ok_or_else(|| ConfigError::UnknownRequirement {
            field: "default_requirement".to_owned(),
            name,
        })?,
    };
    Ok((requirements, default))
}

/// The requirement a configuration names (never the implicit one).
pub fn index_of(requirements: &[Requirement], name: &str) -> Option<usize> {
    requirements
        .iter()
        .position(|r| r.name == name && r.name != IMPLICIT_NAME)
}

impl RawRequirement {
    fn validate(self, name: String, providers: &[Provider]) -> Result<Requirement, ConfigError> {
        let field = format!("requirements.{name}");
        let fail = |reason: String| ConfigError::Requirement {
            field: field.clone(),
            reason,
        };
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
        {
            return Err(fail(format!(
                "the name must be 1 to {MAX_NAME_LEN} letters, digits, '_', '-', '.' or ':' (routes select it by this name)"
            )));
        }
        let (kind, names, all) = match (self.provider, self.any, self.all) {
            (Some(one), None, None) => ("provider", vec![one], false),
            (None, Some(any), None) => ("any", any, false),
            (None, None, Some(all)) => ("all", all, true),
            _ => {
                return Err(fail(
                    "give exactly one of `provider`, `any` or `all`".to_owned(),
                ));
            }
        };
        if names.is_empty() {
            return Err(fail(format!("`{kind}` is empty; name at least one provider")));
        }
        let mut indexes: Vec<usize> = Vec::with_capacity(names.len());
        for (position, provider) in names.iter().enumerate() {
            let at = if kind == "provider" {
                format!("{field}.provider")
            } else {
                format!("{field}.{kind}[{position}]")
            };
            let Some(index) = providers.iter().position(|p| p.name == *provider) else {
                return Err(ConfigError::UnknownProvider {
                    field: at,
                    name: provider.clone(),
                });
            };
            if indexes.contains(&index) {
                return Err(ConfigError::Requirement {
                    field: at,
                    reason: format!("provider {provider:?} is listed twice"),
                });
            }
            indexes.push(index);
        }
        if all {
            if indexes.len() < 2 {
                return Err(fail(
                    "`all` of one provider is `provider`; list at least two".to_owned(),
                ));
            }
            let checking: Vec<&str> = indexes
                .iter()
                .map(|&i| &providers[i])
                .filter(|p| p.revocation != RevocationCheck::None)
                .map(|p| p.name.as_str())
                .collect();
            if checking.len() > 1 {
                return Err(fail(format!(
                    "providers {checking:?} both check revocation; in `all`, at most one may (set the others' `revocation` to \"none\")"
                )));
            }
            if self.claims.is_some() {
                return Err(fail(
                    "`claims` on an `all` requirement would not say whose token they test; set them on the providers (`providers[].claims`)".to_owned(),
                ));
            }
        }
        let absent = match (self.allow_missing, self.allow_missing_or_failed) {
            (false, false) => Absent::Refuse,
            (true, false) => Absent::AllowMissing,
            (false, true) => Absent::AllowMissingOrFailed,
            (true, true) => {
                return Err(fail(
                    "give at most one of `allow_missing` and `allow_missing_or_failed`".to_owned(),
                ));
            }
        };
        let conditions = validate_all(&format!("{field}.claims"), self.claims)
            .map_err(ConfigError::Condition)?;
        Ok(Requirement {
            name,
            providers: indexes,
            all,
            absent,
            conditions,
        })
    }
}
