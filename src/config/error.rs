//! Configuration errors. Each names the field and says how to fix it: the operator sees one log
//! line before Envoy refuses the configuration.

use std::fmt;

use crate::cors::CorsError;
use crate::headers::HeaderNameError;
use crate::keys::JwksError;
use crate::rules::RuleError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Empty,
    Json {
        path: String,
        message: String,
    },
    NoSecrets {
        field: String,
    },
    SecretEnvUnset {
        field: String,
        variable: String,
    },
    SecretEmpty {
        field: String,
    },
    NoAlgorithms {
        field: String,
    },
    UnsupportedAlgorithm {
        field: String,
        value: String,
        allowed: &'static str,
    },
    OutOfRange {
        field: String,
        value: u64,
        min: u64,
        max: u64,
    },
    InvalidRealm,
    EmptyField {
        field: String,
    },
    InvalidPath {
        field: String,
        value: String,
    },
    InvalidHeader {
        field: String,
        name: String,
        reason: HeaderNameError,
    },
    DuplicateHeader {
        field: String,
        name: String,
    },
    Rules(RuleError),
    Cors(CorsError),
    NoProviders,
    DuplicateProvider {
        field: String,
        name: String,
    },
    /// Top-level provider fields next to `providers`.
    MixedForms {
        field: &'static str,
        /// The field's name inside a provider.
        inside: &'static str,
    },
    KeyMaterial {
        field: String,
    },
    Jwks {
        field: String,
        error: JwksError,
    },
    RevocationMissing {
        provider: String,
    },
    Source {
        field: String,
        reason: &'static str,
    },
    InvalidClaimPath {
        field: String,
        path: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(
                f,
                "plugin configuration is empty: set the filter's `configuration` to keygate's JSON config (see README)"
            ),
            Self::Json { path, message } => {
                write!(f, "invalid plugin configuration at `{path}`: {message}")
            }
            Self::NoSecrets { field } => write!(
                f,
                "`{field}`: give at least one secret, e.g. {{\"env\": \"JWT_SECRET\"}}"
            ),
            Self::SecretEnvUnset { field, variable } => write!(
                f,
                "`{field}`: environment variable {variable} is unset or empty in the Wasm VM; set it in Envoy's environment and list it in vm_config.environment_variables.host_env_keys"
            ),
            Self::SecretEmpty { field } => write!(f, "`{field}`: the secret is empty"),
            Self::NoAlgorithms { field } => {
                write!(
                    f,
                    "`{field}`: the list is empty; allow at least one algorithm"
                )
            }
            Self::UnsupportedAlgorithm {
                field,
                value,
                allowed,
            } => write!(
                f,
                "`{field}`: algorithm {value:?} is not supported here; use {allowed}"
            ),
            Self::OutOfRange {
                field,
                value,
                min,
                max,
            } => write!(
                f,
                "`{field}`: {value} is out of range; use a value from {min} to {max}"
            ),
            Self::InvalidRealm => write!(
                f,
                "`realm`: must be printable ASCII without quotes or backslashes"
            ),
            Self::EmptyField { field } => write!(f, "`{field}`: must not be empty"),
            Self::InvalidPath { field, value } => write!(
                f,
                "`{field}`: {value:?} must start with '/' and contain no '#' or whitespace"
            ),
            Self::InvalidHeader {
                field,
                name,
                reason,
            } => write!(f, "`{field}`: header name {name:?} {reason}"),
            Self::DuplicateHeader { field, name } => write!(
                f,
                "`{field}`: header {name:?} is already set from another claim; give each header one source"
            ),
            Self::Rules(error) => error.fmt(f),
            Self::Cors(error) => error.fmt(f),
            Self::NoProviders => write!(
                f,
                "`providers`: the list is empty; give at least one provider, or use the top-level `secret` form"
            ),
            Self::DuplicateProvider { field, name } => {
                write!(f, "`{field}`: provider name {name:?} is used twice")
            }
            Self::MixedForms { field, inside } => write!(
                f,
                "`{field}`: with `providers`, set `{inside}` inside each provider instead"
            ),
            Self::KeyMaterial { field } => write!(
                f,
                "`{field}`: give exactly one of `secret`, `jwks` or `remote_jwks`"
            ),
            Self::Jwks { field, error } => write!(f, "`{field}`: {error}"),
            Self::RevocationMissing { provider } => write!(
                f,
                "`revocation`: provider {provider:?} checks revocation, so the `revocation` block (at least `cluster`) is required; or set that provider's `revocation` to \"none\""
            ),
            Self::Source { field, reason } => write!(f, "`{field}`: {reason}"),
            Self::InvalidClaimPath { field, path } => write!(
                f,
                "`{field}`: claim path {path:?} is not a dotted path of non-empty names"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
