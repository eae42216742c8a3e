//! `usage` (reporting per-key usage to keyservice), `rate_limit_counters`, and a provider's
//! `rate_limits`: validated into what the request path and the reporter read.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::ConfigError;
use crate::config::values::{check_path, claim_path, in_range, non_empty};
use crate::policy::rate_limits::{Limit, Limits};

const DEFAULT_USAGE_PATH: &str = "/v1/usage";
const DEFAULT_REPORT_SECONDS: u64 = 10;
const MAX_REPORT_SECONDS: u64 = 3600;
const DEFAULT_USAGE_KEYS: u64 = 10_000;
const MAX_USAGE_KEYS: u64 = 1_000_000;
const DEFAULT_USAGE_TIMEOUT_MS: u64 = 5_000;
pub(super) const DEFAULT_RATE_LIMIT_COUNTERS: u64 = 16_384;
pub(super) const MAX_RATE_LIMIT_COUNTERS: u64 = 4_194_304;
/// Claims a provider may limit by: each is a counter per request.
const MAX_LIMITED_CLAIMS: usize = 4;

/// `usage`: one reporter per Envoy sends per-key counts to keyservice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub report_every_ms: u64,
    /// The most (key, day) pairs a worker, and the reporter, keep before dropping counts.
    pub max_keys: usize,
    pub timeout_ms: u64,
}

/// A provider's `rate_limits`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderLimits {
    /// For each key (token) of the provider that keyservice gives no limits of its own.
    pub key: Limits,
    /// Per value of a claim (`user_id`, `org_id`): all the provider's tokens with that value
    /// share the windows.
    pub claims: Vec<ClaimLimits>,
}

impl ProviderLimits {
    pub fn is_empty(&self) -> bool {
        self.key.is_empty() && self.claims.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimLimits {
    /// The claim's dotted path as written: the policy's name in `RateLimit-Policy`.
    pub claim: String,
    pub path: Vec<String>,
    pub limits: Limits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsage {
    cluster: Option<String>,
    authority: Option<String>,
    path: Option<String>,
    report_every_seconds: Option<u64>,
    max_keys: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProviderLimits {
    key: Option<Vec<RawLimit>>,
    claims: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    requests: u64,
    per_seconds: u64,
}

impl RawUsage {
    /// `revocation_cluster` is the default cluster: keyservice answers both.
    pub(super) fn validate(
        self,
        revocation_cluster: Option<&str>,
    ) -> Result<UsageConfig, ConfigError> {
        let cluster = match self.cluster.or_else(|| revocation_cluster.map(str::to_owned)) {
            Some(cluster) => non_empty("usage.cluster", cluster)?,
            None => {
                return Err(ConfigError::EmptyField {
                    field: "usage.cluster (keyservice's cluster; it defaults to revocation.cluster, which is not set)".to_owned(),
                });
            }
        };
        let authority = non_empty(
            "usage.authority",
            self.authority.unwrap_or_else(|| cluster.clone()),
        )?;
        let path = check_path(
            "usage.path",
            self.path.unwrap_or_else(|| DEFAULT_USAGE_PATH.to_owned()),
        )?;
        let report_every_seconds = in_range(
            "usage.report_every_seconds",
            self.report_every_seconds.unwrap_or(DEFAULT_REPORT_SECONDS),
            1,
            MAX_REPORT_SECONDS,
        )?;
        let max_keys = in_range(
            "usage.max_keys",
            self.max_keys.unwrap_or(DEFAULT_USAGE_KEYS),
            1,
            MAX_USAGE_KEYS,
        )?;
        let timeout_ms = in_range(
            "usage.timeout_ms",
            self.timeout_ms.unwrap_or(DEFAULT_USAGE_TIMEOUT_MS),
            1,
            60_000,
        )?;
        Ok(UsageConfig {
            cluster,
            authority,
            path,
            report_every_ms: report_every_seconds * 1000,
            max_keys: usize::try_from(max_keys).unwrap_or(usize::MAX),
            timeout_ms,
        })
    }
}

impl RawProviderLimits {
    /// `field` is where the block stands (`providers[0].rate_limits`).
    pub(super) fn validate(self, field: &str) -> Result<ProviderLimits, ConfigError> {
        let key = match self.key {
            Some(list) => limits(&format!("{field}.key"), list)?,
            None => Limits::default(),
        };
        let mut claims = Vec::new();
        for (claim, list) in self.claims.unwrap_or_default() {
            let at = format!("{field}.claims.{claim}");
            if claims.len() == MAX_LIMITED_CLAIMS {
                return Err(ConfigError::RateLimits {
                    field: format!("{field}.claims"),
                    reason: format!("limit by at most {MAX_LIMITED_CLAIMS} claims"),
                });
            }
            let path = claim_path(&at, &claim)?;
            let list: Vec<RawLimit> =
                serde_json::from_value(list).map_err(|error| ConfigError::Json {
                    path: at.clone(),
                    message: format!(
                        "{error}; expected a list of {{\"requests\": N, \"per_seconds\": S}}"
                    ),
                })?;
            claims.push(ClaimLimits {
                limits: limits(&at, list)?,
                claim,
                path,
            });
        }
        let limits = ProviderLimits { key, claims };
        if limits.is_empty() {
            return Err(ConfigError::RateLimits {
                field: field.to_owned(),
                reason: "set `key` or `claims`, or leave `rate_limits` out".to_owned(),
            });
        }
        Ok(limits)
    }
}

fn limits(field: &str, list: Vec<RawLimit>) -> Result<Limits, ConfigError> {
    let list: Vec<Limit> = list
        .into_iter()
        .map(|raw| Limit {
            requests: u32::try_from(raw.requests).unwrap_or(u32::MAX),
            per_seconds: u32::try_from(raw.per_seconds).unwrap_or(u32::MAX),
        })
        .collect();
    Limits::new(&list).map_err(|error| ConfigError::RateLimits {
        field: field.to_owned(),
        reason: error.to_string(),
    })
}

/// `rate_limit_counters`: the shared counters' room.
pub(super) fn rate_limit_counters(value: Option<u64>) -> Result<u32, ConfigError> {
    let counters = in_range(
        "rate_limit_counters",
        value.unwrap_or(DEFAULT_RATE_LIMIT_COUNTERS),
        4,
        MAX_RATE_LIMIT_COUNTERS,
    )?;
    Ok(u32::try_from(counters).unwrap_or(u32::MAX))
}
