//! Configuration errors. Each names the field and says how to fix it: the operator sees one log
//! line before Envoy refuses the configuration.

use thiserror::Error;

use crate::policy::conditions::ConditionError;
use crate::policy::cors::CorsError;
use crate::config::headers::HeaderNameError;
use crate::jose::keys::JwksError;
use crate::policy::rules::RuleError;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("plugin configuration is empty: set the filter's `configuration` to keygate's JSON config (see docs/configuration.md)")]
    Empty,
    #[error("invalid plugin configuration at `{path}`: {message}")]
    Json {
        path: String,
        message: String,
    },
    #[error("`{field}`: give at least one secret, e.g. {{\"env\": \"JWT_SECRET\"}}")]
    NoSecrets {
        field: String,
    },
    #[error("`{field}`: environment variable {variable} is unset or empty in the Wasm VM; set it in Envoy's environment and list it in vm_config.environment_variables.host_env_keys")]
    SecretEnvUnset {
        field: String,
        variable: String,
    },
    #[error("`{field}`: the secret is empty")]
    SecretEmpty {
        field: String,
    },
    #[error("`{field}`: the list is empty; allow at least one algorithm")]
    NoAlgorithms {
        field: String,
    },
    #[error("`{field}`: algorithm {value:?} is not supported here; use {allowed}")]
    UnsupportedAlgorithm {
        field: String,
        value: String,
        allowed: &'static str,
    },
    #[error("`{field}`: {value} is out of range; use a value from {min} to {max}")]
    OutOfRange {
        field: String,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("`realm`: must be printable ASCII without quotes or backslashes")]
    InvalidRealm,
    #[error("`{field}`: must not be empty")]
    EmptyField {
        field: String,
    },
    #[error("`{field}`: {value:?} must start with '/' and contain no '#' or whitespace")]
    InvalidPath {
        field: String,
        value: String,
    },
    #[error("`{field}`: header name {name:?} {reason}")]
    InvalidHeader {
        field: String,
        name: String,
        reason: HeaderNameError,
    },
    #[error("`{field}`: header {name:?} is already set from another claim; give each header one source")]
    DuplicateHeader {
        field: String,
        name: String,
    },
    #[error(transparent)]
    Rules(RuleError),
    #[error(transparent)]
    Cors(CorsError),
    #[error("`providers`: the list is empty; give at least one provider, or use the top-level `secret` form")]
    NoProviders,
    #[error("`{field}`: provider name {name:?} is used twice")]
    DuplicateProvider {
        field: String,
        name: String,
    },
    /// Top-level provider fields next to `providers`.
    #[error("`{field}`: with `providers`, set `{inside}` inside each provider instead")]
    MixedForms {
        field: &'static str,
        /// The field's name inside a provider.
        inside: &'static str,
    },
    #[error("`{field}`: give exactly one of `secret`, `jwks` or `remote_jwks`")]
    KeyMaterial {
        field: String,
    },
    #[error("`{field}`: {error}")]
    Jwks {
        field: String,
        error: JwksError,
    },
    #[error("`revocation`: provider {provider:?} checks revocation, so the `revocation` block (at least `cluster`) is required; or set that provider's `revocation` to \"none\"")]
    RevocationMissing {
        provider: String,
    },
    #[error("`{field}`: {reason}")]
    Source {
        field: String,
        reason: &'static str,
    },
    #[error("`{field}`: claim path {path:?} is not a dotted path of non-empty names")]
    InvalidClaimPath {
        field: String,
        path: String,
    },
    #[error(transparent)]
    Condition(ConditionError),
    #[error("`{field}`: {reason}")]
    Requirement {
        field: String,
        reason: String,
    },
    #[error("`{field}`: no requirement is named {name:?}; name one of `requirements`")]
    UnknownRequirement {
        field: String,
        name: String,
    },
    #[error("`{field}`: no provider is named {name:?}; name one of `providers[].name`")]
    UnknownProvider {
        field: String,
        name: String,
    },
    #[error("`{field}`: {reason}")]
    FilterState {
        field: String,
        reason: String,
    },
    #[error("`revocation.feed`: the feed marks revoked keys in the revocation cache, which is off or keeps no revoked answers (`revocation.cache.max_entries` or `max_revoked_seconds` is 0); turn it on or remove `feed`")]
    FeedWithoutCache,
    #[error("`{field}`: {reason}")]
    RateLimits {
        field: String,
        reason: String,
    },
    #[error("`{field}`: publishing claims as filter state needs the top-level `filter_state` block")]
    FilterStateMissing {
        field: String,
    },
}
