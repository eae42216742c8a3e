//! Plugin configuration: parsed from the JSON in Envoy's `configuration` once, in `on_configure`,
//! and validated into typed structs. Every error names the field and how to fix it, because the
//! operator only sees one log line before Envoy refuses the config.

mod error;
pub mod filter_state;
pub mod headers;
pub mod metering;
mod provider;
pub mod requirements;
mod values;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use error::ConfigError;
pub use filter_state::FilterState;
pub use requirements::{Absent, Requirement};
pub use provider::{
    KeyMaterial, Provider, RemoteJwks, RevocationCheck, Secret, UntilReady,
};

use crate::policy::cors::{Cors, RawCors};
use crate::revocation::cache::CacheConfig;
use crate::policy::rules::{RawRule, Rules};
use provider::{
    ProviderDefaults, RawProvider, SecretSource, default_claim_headers, parse_claim_headers,
};
use filter_state::RawFilterState;
use metering::{RawProviderLimits, RawUsage, UsageConfig};
use requirements::RawRequirement;
use values::{OneOrMany, check_path, in_range, non_empty};

const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
const MAX_TOKEN_BYTES_LIMIT: usize = 64 * 1024;
const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
const MAX_CLOCK_SKEW_SECONDS: u64 = 3600;
const DEFAULT_TIMEOUT_MS: u64 = 500;
const MAX_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_REVOCATION_PATH_PREFIX: &str = "/v1/revocations/";
const DEFAULT_REALM: &str = "keygate";
const DEFAULT_CACHE_ENTRIES: u64 = 16_384;
const MAX_CACHE_ENTRIES: u64 = 4_194_304;
const DEFAULT_CACHE_ACTIVE_SECONDS: u64 = 30;
const DEFAULT_CACHE_REVOKED_SECONDS: u64 = 86_400;
const MAX_CACHE_SECONDS: u64 = 7 * 86_400;
const DEFAULT_TOKEN_CACHE_TTL_SECONDS: u64 = 60;
const DEFAULT_FEED_PATH: &str = "/v1/revocations";
const DEFAULT_FEED_WAIT_SECONDS: u64 = 20;
const MAX_FEED_WAIT_SECONDS: u64 = 60;
const DEFAULT_FEED_ACTIVE_SECONDS: u64 = 86_400;
/// A long poll answers within `wait_seconds`; this much more and the feed counts as stale.
const DEFAULT_FEED_STALE_MARGIN_SECONDS: u64 = 10;
/// On unless configured off: the benchmark (BENCHMARKS.md) measured what a repeated token saves.
const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 1024;
const MAX_TOKEN_CACHE_ENTRIES: u64 = 1_048_576;

/// The verified-token cache of each worker (`token_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheConfig {
    pub max_entries: usize,
    pub ttl_seconds: u64,
}

/// The validated plugin configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// In order: a token goes to the provider whose `issuer` matches its `iss`, else to the first
    /// provider without an issuer that accepts its source and algorithm.
    pub providers: Vec<Provider>,
    pub clock_skew_seconds: u64,
    pub max_token_bytes: usize,
    pub realm: String,
    /// The revocation service; `None` when no provider checks revocation.
    pub revocation: Option<RevocationConfig>,
    pub rules: Rules,
    pub cors: Option<Cors>,
    pub response_format: ResponseFormat,
    /// The verified-token cache; `None` when off.
    pub token_cache: Option<TokenCacheConfig>,
    /// The named requirements, then the implicit one (any provider); never empty.
    pub requirements: Vec<Requirement>,
    /// The requirement of a request its route and the rules do not choose one for.
    pub default_requirement: usize,
    /// Whether routes may select a requirement in their metadata (`requirements` is set).
    pub route_requirements: bool,
    /// Publishing the identity as Envoy filter state; `None` when off.
    pub filter_state: Option<FilterState>,
    /// Reporting per-key usage to keyservice; `None` when off.
    pub usage: Option<UsageConfig>,
    /// Room in the shared rate-limit counters (used when a provider sets `rate_limits`).
    pub rate_limit_counters: u32,
}

/// The body of local replies: ComfyUI Deploy's plain text, or a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    pub cluster: String,
    pub authority: String,
    pub path_prefix: String,
    pub timeout_ms: u64,
    pub unknown_keys: UnknownKeys,
    pub failure_mode: FailureMode,
    /// The shared cache of keyservice's answers; `None` when off.
    pub cache: Option<CacheConfig>,
    /// Following keyservice's revocation feed; `None` when off.
    pub feed: Option<FeedConfig>,
}

/// `revocation.feed`: one follower per Envoy long-polls keyservice's feed and marks each revoked
/// key in the shared cache, so "active" answers can be kept far longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    /// The feed's path (`?after=…&wait_seconds=…` is added).
    pub path: String,
    pub wait_seconds: u64,
    /// While the feed is healthy, the longest an "active" answer is kept.
    pub max_active_seconds: u64,
    /// The feed is healthy while it answered within this long.
    pub stale_after_seconds: u64,
}

/// What to do with a verified token that the revocation service does not know (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownKeys {
    #[default]
    Deny,
    Allow,
}

/// What to do when a dependency (the revocation service, a JWKS) cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

impl Config {
    /// Parses and validates the plugin configuration. `env` looks up the Wasm VM's environment
    /// (passed in so the logic stays host-free).
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::Empty);
        }
        let deserializer = &mut serde_json::Deserializer::from_slice(json);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            ConfigError::Json {
                path,
                message: error.into_inner().to_string(),
            }
        })?;
        raw.validate(env)
    }

    /// Every header any provider sets: all are removed from every request before the verified
    /// values are set, so a client never supplies its own `x-user-id`.
    pub fn owned_headers(&self) -> Vec<&str> {
        let mut headers: Vec<&str> = Vec::new();
        for name in self.providers.iter().flat_map(Provider::owned_headers) {
            if !headers.contains(&name) {
                headers.push(name);
            }
        }
        headers
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    secret: Option<OneOrMany<SecretSource>>,
    algorithms: Option<Vec<String>>,
    clock_skew_seconds: Option<u64>,
    max_token_bytes: Option<u64>,
    realm: Option<String>,
    claims_to_headers: Option<Map<String, Value>>,
    payload_header: Option<String>,
    strip_authorization: Option<bool>,
    revocation: Option<RawRevocation>,
    providers: Option<Vec<RawProvider>>,
    rules: Option<Vec<RawRule>>,
    cors: Option<RawCors>,
    #[serde(default)]
    response_format: ResponseFormat,
    token_cache: Option<RawTokenCache>,
    requirements: Option<std::collections::BTreeMap<String, RawRequirement>>,
    default_requirement: Option<String>,
    filter_state: Option<RawFilterState>,
    usage: Option<RawUsage>,
    rate_limit_counters: Option<u64>,
    rate_limits: Option<RawProviderLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocationCache {
    max_entries: Option<u64>,
    max_active_seconds: Option<u64>,
    max_revoked_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokenCache {
    max_entries: Option<u64>,
    ttl_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    cluster: String,
    authority: Option<String>,
    path_prefix: Option<String>,
    timeout_ms: Option<u64>,
    /// The default for providers verified with a secret (API keys).
    #[serde(default)]
    check: RevocationCheck,
    #[serde(default)]
    unknown_keys: UnknownKeys,
    #[serde(default)]
    failure_mode: FailureMode,
    cache: Option<RawRevocationCache>,
    feed: Option<RawFeed>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    path: Option<String>,
    wait_seconds: Option<u64>,
    max_active_seconds: Option<u64>,
    stale_after_seconds: Option<u64>,
}

impl RawFeed {
    fn validate(self, cache: Option<&CacheConfig>) -> Result<FeedConfig, ConfigError> {
        let path = check_path(
            "revocation.feed.path",
            self.path.unwrap_or_else(|| DEFAULT_FEED_PATH.to_owned()),
        )?;
        if path.contains('?') {
            return Err(ConfigError::InvalidPath {
                field: "revocation.feed.path".to_owned(),
                value: path,
            });
        }
        let wait_seconds = in_range(
            "revocation.feed.wait_seconds",
            self.wait_seconds.unwrap_or(DEFAULT_FEED_WAIT_SECONDS),
            1,
            MAX_FEED_WAIT_SECONDS,
        )?;
        let max_active_seconds = in_range(
            "revocation.feed.max_active_seconds",
            self.max_active_seconds.unwrap_or(DEFAULT_FEED_ACTIVE_SECONDS),
            0,
            MAX_CACHE_SECONDS,
        )?;
        let stale_after_seconds = in_range(
            "revocation.feed.stale_after_seconds",
            self.stale_after_seconds
                .unwrap_or(wait_seconds + DEFAULT_FEED_STALE_MARGIN_SECONDS),
            wait_seconds + 1,
            3600,
        )?;
        if cache.is_none_or(|cache| cache.max_revoked_seconds == 0) {
            return Err(ConfigError::FeedWithoutCache);
        }
        Ok(FeedConfig {
            path,
            wait_seconds,
            max_active_seconds,
            stale_after_seconds,
        })
    }
}

impl RawConfig {
    fn validate(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let clock_skew_seconds = in_range(
            "clock_skew_seconds",
            self.clock_skew_seconds
                .unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS),
            0,
            MAX_CLOCK_SKEW_SECONDS,
        )?;
        let max_token_bytes = in_range(
            "max_token_bytes",
            self.max_token_bytes
                .unwrap_or(DEFAULT_MAX_TOKEN_BYTES as u64),
            16,
            MAX_TOKEN_BYTES_LIMIT as u64,
        )?;
        let realm = self.realm.unwrap_or_else(|| DEFAULT_REALM.to_owned());
        if !realm
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(ConfigError::InvalidRealm);
        }
        let claims_to_headers = match self.claims_to_headers {
            Some(map) => parse_claim_headers("claims_to_headers", map)?,
            None => default_claim_headers(),
        };
        let default_check = self
            .revocation
            .as_ref()
            .map_or(RevocationCheck::NonExpiring, |r| r.check);
        let filter_state = self.filter_state.map(RawFilterState::validate).transpose()?;
        let defaults = ProviderDefaults {
            claims_to_headers: &claims_to_headers,
            payload_header: self.payload_header.as_deref(),
            revocation: default_check,
            filter_state: filter_state
                .as_ref()
                .map(|(state, claims)| (state, claims.as_slice())),
        };
        let providers = match self.providers {
            Some(raw) => {
                for (present, field, inside) in [
                    (self.secret.is_some(), "secret", "secret"),
                    (self.algorithms.is_some(), "algorithms", "algorithms"),
                    (
                        self.strip_authorization.is_some(),
                        "strip_authorization",
                        "strip_source",
                    ),
                    (self.rate_limits.is_some(), "rate_limits", "rate_limits"),
                ] {
                    if present {
                        return Err(ConfigError::MixedForms { field, inside });
                    }
                }
                if raw.is_empty() {
                    return Err(ConfigError::NoProviders);
                }
                let mut providers: Vec<Provider> = Vec::with_capacity(raw.len());
                for (index, provider) in raw.into_iter().enumerate() {
                    let field = format!("providers[{index}]");
                    let provider = provider.validate(&field, &defaults, env)?;
                    if providers.iter().any(|p| p.name == provider.name) {
                        return Err(ConfigError::DuplicateProvider {
                            field: format!("{field}.name"),
                            name: provider.name,
                        });
                    }
                    providers.push(provider);
                }
                providers
            }
            None => vec![
                RawProvider::legacy(
                    self.secret,
                    self.algorithms,
                    self.strip_authorization.unwrap_or(false),
                    self.rate_limits,
                )
                .validate("", &defaults, env)?,
            ],
        };
        let revocation = match self.revocation {
            Some(revocation) => Some(revocation.validate()?),
            None => {
                if let Some(checking) = providers
                    .iter()
                    .find(|p| p.revocation != RevocationCheck::None)
                {
                    return Err(ConfigError::RevocationMissing {
                        provider: checking.name.clone(),
                    });
                }
                None
            }
        };
        let usage = self
            .usage
            .map(|usage| usage.validate(revocation.as_ref().map(|r| r.cluster.as_str())))
            .transpose()?;
        let rate_limit_counters = metering::rate_limit_counters(self.rate_limit_counters)?;
        let route_requirements = self.requirements.is_some();
        let (requirements, default_requirement) =
            requirements::validate(self.requirements, self.default_requirement, &providers)?;
        let requirement_names: Vec<&str> = requirements
            .iter()
            .take(requirements.len() - 1)
            .map(|r| r.name.as_str())
            .collect();
        let rules =
            Rules::from_config(self.rules, &requirement_names).map_err(ConfigError::Rules)?;
        // Scopes on a route that lets requests on without a token would require nothing.
        for (rule, requirement) in rules.scoped() {
            let requirement = &requirements[requirement.unwrap_or(default_requirement)];
            if requirement.absent != Absent::Refuse {
                return Err(ConfigError::Requirement {
                    field: format!("rules[{rule}]"),
                    reason: format!(
                        "require_scopes needs a token, but requirement {:?} lets requests without one through; select a requirement without allow_missing",
                        requirement.name
                    ),
                });
            }
        }
        Ok(Config {
            providers,
            clock_skew_seconds,
            max_token_bytes: usize::try_from(max_token_bytes).unwrap_or(MAX_TOKEN_BYTES_LIMIT),
            realm,
            revocation,
            rules,
            cors: Cors::from_config(self.cors).map_err(ConfigError::Cors)?,
            response_format: self.response_format,
            token_cache: self.token_cache.unwrap_or_default().validate()?,
            requirements,
            default_requirement,
            route_requirements,
            filter_state: filter_state.map(|(state, _)| state),
            usage,
            rate_limit_counters,
        })
    }
}

impl RawRevocation {
    fn validate(self) -> Result<RevocationConfig, ConfigError> {
        let cluster = non_empty("revocation.cluster", self.cluster)?;
        let authority = non_empty(
            "revocation.authority",
            self.authority.unwrap_or_else(|| cluster.clone()),
        )?;
        let path_prefix = check_path(
            "revocation.path_prefix",
            self.path_prefix
                .unwrap_or_else(|| DEFAULT_REVOCATION_PATH_PREFIX.to_owned()),
        )?;
        if path_prefix.contains('?') {
            // The digest is appended: it must stay in the path.
            return Err(ConfigError::InvalidPath {
                field: "revocation.path_prefix".to_owned(),
                value: path_prefix,
            });
        }
        let timeout_ms = in_range(
            "revocation.timeout_ms",
            self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            1,
            MAX_TIMEOUT_MS,
        )?;
        let cache = match self.cache {
            Some(cache) => cache.validate()?,
            None => Some(CacheConfig {
                max_entries: DEFAULT_CACHE_ENTRIES as u32,
                max_active_seconds: DEFAULT_CACHE_ACTIVE_SECONDS,
                max_revoked_seconds: DEFAULT_CACHE_REVOKED_SECONDS,
            }),
        };
        let feed = self
            .feed
            .map(|feed| feed.validate(cache.as_ref()))
            .transpose()?;
        Ok(RevocationConfig {
            cluster,
            authority,
            path_prefix,
            timeout_ms,
            unknown_keys: self.unknown_keys,
            failure_mode: self.failure_mode,
            cache,
            feed,
        })
    }
}

impl RawRevocationCache {
    fn validate(self) -> Result<Option<CacheConfig>, ConfigError> {
        let max_entries = in_range(
            "revocation.cache.max_entries",
            self.max_entries.unwrap_or(DEFAULT_CACHE_ENTRIES),
            0,
            MAX_CACHE_ENTRIES,
        )?;
        let max_active_seconds = in_range(
            "revocation.cache.max_active_seconds",
            self.max_active_seconds
                .unwrap_or(DEFAULT_CACHE_ACTIVE_SECONDS),
            0,
            MAX_CACHE_SECONDS,
        )?;
        let max_revoked_seconds = in_range(
            "revocation.cache.max_revoked_seconds",
            self.max_revoked_seconds
                .unwrap_or(DEFAULT_CACHE_REVOKED_SECONDS),
            0,
            MAX_CACHE_SECONDS,
        )?;
        Ok((max_entries > 0).then_some(CacheConfig {
            max_entries: u32::try_from(max_entries).unwrap_or(u32::MAX),
            max_active_seconds,
            max_revoked_seconds,
        }))
    }
}

impl RawTokenCache {
    fn validate(self) -> Result<Option<TokenCacheConfig>, ConfigError> {
        let max_entries = in_range(
            "token_cache.max_entries",
            self.max_entries.unwrap_or(DEFAULT_TOKEN_CACHE_ENTRIES),
            0,
            MAX_TOKEN_CACHE_ENTRIES,
        )?;
        let ttl_seconds = in_range(
            "token_cache.ttl_seconds",
            self.ttl_seconds.unwrap_or(DEFAULT_TOKEN_CACHE_TTL_SECONDS),
            1,
            MAX_CACHE_SECONDS,
        )?;
        Ok((max_entries > 0).then_some(TokenCacheConfig {
            max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX),
            ttl_seconds,
        }))
    }
}

#[cfg(test)]
mod tests;
