//! Plugin configuration: parsed from the JSON in Envoy's `configuration` once, in `on_configure`,
//! and validated into typed structs. Every error names the field and how to fix it, because the
//! operator only sees one log line before Envoy refuses the config.

use std::fmt;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::cors::{Cors, CorsError, RawCors};
use crate::headers::{HeaderNameError, validate_header_name};
use crate::revocation_cache::CacheConfig;
use crate::rules::{RawRule, RuleError, Rules};
use crate::token_cache::TokenCacheConfig;

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
const MAX_TOKEN_CACHE_ENTRIES: u64 = 1_048_576;

/// The validated plugin configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub secrets: Vec<Secret>,
    pub algorithms: Vec<Algorithm>,
    pub clock_skew_seconds: u64,
    pub max_token_bytes: usize,
    pub realm: String,
    pub claims_to_headers: Vec<ClaimHeader>,
    pub payload_header: Option<String>,
    pub strip_authorization: bool,
    pub revocation: RevocationConfig,
    pub rules: Rules,
    pub cors: Option<Cors>,
    pub response_format: ResponseFormat,
    /// The verified-token cache; `None` when off.
    pub token_cache: Option<TokenCacheConfig>,
}

/// The body of local replies: ComfyUI Deploy's plain text, or a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    #[default]
    Text,
    Json,
}

/// An HMAC secret. Its bytes never reach `Debug` output, so a logged config cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted; {} bytes])", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub claim: String,
    pub header: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    pub cluster: String,
    pub authority: String,
    pub path_prefix: String,
    pub timeout_ms: u64,
    pub check: RevocationCheck,
    pub unknown_keys: UnknownKeys,
    pub failure_mode: FailureMode,
    /// The shared cache of keyservice's answers; `None` when off.
    pub cache: Option<CacheConfig>,
}

/// Which verified tokens are checked against the revocation service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RevocationCheck {
    /// Only tokens without `exp`: long-lived keys are stored and revocable, temporary ones are not.
    #[default]
    NonExpiring,
    All,
}

/// What to do with a verified token that the revocation service does not know (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownKeys {
    #[default]
    Deny,
    Allow,
}

/// What to do when the revocation service cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Empty,
    Json {
        path: String,
        message: String,
    },
    NoSecrets,
    SecretEnvUnset {
        field: String,
        variable: String,
    },
    SecretEmpty {
        field: String,
    },
    NoAlgorithms,
    UnsupportedAlgorithm {
        field: String,
        value: String,
    },
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    InvalidRealm,
    EmptyField {
        field: &'static str,
    },
    InvalidPathPrefix {
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
            Self::NoSecrets => write!(
                f,
                "`secret`: give at least one secret, e.g. {{\"env\": \"JWT_SECRET\"}}"
            ),
            Self::SecretEnvUnset { field, variable } => write!(
                f,
                "`{field}`: environment variable {variable} is unset or empty in the Wasm VM; set it in Envoy's environment and list it in vm_config.environment_variables.host_env_keys"
            ),
            Self::SecretEmpty { field } => write!(f, "`{field}`: the secret is empty"),
            Self::NoAlgorithms => write!(
                f,
                "`algorithms`: the list is empty; allow at least one of HS256, HS384, HS512"
            ),
            Self::UnsupportedAlgorithm { field, value } => write!(
                f,
                "`{field}`: algorithm {value:?} is not supported; use HS256, HS384 or HS512"
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
            Self::InvalidPathPrefix { value } => write!(
                f,
                "`revocation.path_prefix`: {value:?} must start with '/' and contain no '?', '#' or whitespace"
            ),
            Self::InvalidHeader {
                field,
                name,
                reason,
            } => {
                write!(f, "`{field}`: header name {name:?} {reason}")
            }
            Self::DuplicateHeader { field, name } => write!(
                f,
                "`{field}`: header {name:?} is already set from another claim; give each header one source"
            ),
            Self::Rules(error) => error.fmt(f),
            Self::Cors(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    secret: Option<OneOrMany<SecretSource>>,
    algorithms: Option<Vec<String>>,
    clock_skew_seconds: Option<u64>,
    max_token_bytes: Option<u64>,
    realm: Option<String>,
    claims_to_headers: Option<serde_json::Map<String, serde_json::Value>>,
    payload_header: Option<String>,
    #[serde(default)]
    strip_authorization: bool,
    revocation: RawRevocation,
    rules: Option<Vec<RawRule>>,
    cors: Option<RawCors>,
    #[serde(default)]
    response_format: ResponseFormat,
    token_cache: Option<RawTokenCache>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocationCache {
    max_entries: Option<u64>,
    max_active_seconds: Option<u64>,
    max_revoked_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenCache {
    max_entries: u64,
    ttl_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum SecretSource {
    Env(String),
    Inline(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    cluster: String,
    authority: Option<String>,
    path_prefix: Option<String>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    check: RevocationCheck,
    #[serde(default)]
    unknown_keys: UnknownKeys,
    #[serde(default)]
    failure_mode: FailureMode,
    cache: Option<RawRevocationCache>,
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
}

impl RawConfig {
    fn validate(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let secrets = resolve_secrets(self.secret, env)?;
        let algorithms = parse_algorithms(self.algorithms)?;
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
        let claims_to_headers = parse_claim_headers(self.claims_to_headers)?;
        let payload_header = match self.payload_header {
            Some(name) => {
                check_header("payload_header", &name)?;
                if claims_to_headers.iter().any(|c| c.header == name) {
                    return Err(ConfigError::DuplicateHeader {
                        field: "payload_header".to_owned(),
                        name,
                    });
                }
                Some(name)
            }
            None => None,
        };
        Ok(Config {
            secrets,
            algorithms,
            clock_skew_seconds,
            max_token_bytes: usize::try_from(max_token_bytes).unwrap_or(MAX_TOKEN_BYTES_LIMIT),
            realm,
            claims_to_headers,
            payload_header,
            strip_authorization: self.strip_authorization,
            revocation: self.revocation.validate()?,
            rules: Rules::from_config(self.rules).map_err(ConfigError::Rules)?,
            cors: Cors::from_config(self.cors).map_err(ConfigError::Cors)?,
            response_format: self.response_format,
            token_cache: self
                .token_cache
                .map(RawTokenCache::validate)
                .transpose()?
                .flatten(),
        })
    }
}

impl RawRevocation {
    fn validate(self) -> Result<RevocationConfig, ConfigError> {
        if self.cluster.trim().is_empty() {
            return Err(ConfigError::EmptyField {
                field: "revocation.cluster",
            });
        }
        let authority = self.authority.unwrap_or_else(|| self.cluster.clone());
        if authority.trim().is_empty() {
            return Err(ConfigError::EmptyField {
                field: "revocation.authority",
            });
        }
        let path_prefix = self
            .path_prefix
            .unwrap_or_else(|| DEFAULT_REVOCATION_PATH_PREFIX.to_owned());
        if !path_prefix.starts_with('/')
            || path_prefix
                .chars()
                .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::InvalidPathPrefix { value: path_prefix });
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
        Ok(RevocationConfig {
            cluster: self.cluster,
            authority,
            path_prefix,
            timeout_ms,
            check: self.check,
            unknown_keys: self.unknown_keys,
            failure_mode: self.failure_mode,
            cache,
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
            self.max_entries,
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

fn resolve_secrets(
    secret: Option<OneOrMany<SecretSource>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Secret>, ConfigError> {
    let (sources, listed) = match secret {
        None => return Err(ConfigError::NoSecrets),
        Some(OneOrMany::One(source)) => (vec![source], false),
        Some(OneOrMany::Many(sources)) => (sources, true),
    };
    if sources.is_empty() {
        return Err(ConfigError::NoSecrets);
    }
    sources
        .into_iter()
        .enumerate()
        .map(|(index, source)| {
            let field = |kind: &str| {
                if listed {
                    format!("secret[{index}].{kind}")
                } else {
                    format!("secret.{kind}")
                }
            };
            match source {
                SecretSource::Env(variable) => match env(&variable) {
                    Some(value) if !value.is_empty() => Ok(Secret(value.into_bytes())),
                    _ => Err(ConfigError::SecretEnvUnset {
                        field: field("env"),
                        variable,
                    }),
                },
                SecretSource::Inline(value) if value.is_empty() => Err(ConfigError::SecretEmpty {
                    field: field("inline"),
                }),
                SecretSource::Inline(value) => Ok(Secret(value.into_bytes())),
            }
        })
        .collect()
}

fn parse_algorithms(names: Option<Vec<String>>) -> Result<Vec<Algorithm>, ConfigError> {
    let Some(names) = names else {
        return Ok(vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
    };
    if names.is_empty() {
        return Err(ConfigError::NoAlgorithms);
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for (index, name) in names.into_iter().enumerate() {
        // Only the HMAC family: anything else (`none`, RS256, ...) needs key material this
        // config cannot hold, and accepting it would invite algorithm confusion.
        let algorithm = match name.as_str() {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            _ => {
                return Err(ConfigError::UnsupportedAlgorithm {
                    field: format!("algorithms[{index}]"),
                    value: name,
                });
            }
        };
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    Ok(algorithms)
}

fn parse_claim_headers(
    map: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Vec<ClaimHeader>, ConfigError> {
    let Some(map) = map else {
        return Ok(vec![
            ClaimHeader {
                claim: "user_id".to_owned(),
                header: "x-user-id".to_owned(),
            },
            ClaimHeader {
                claim: "org_id".to_owned(),
                header: "x-org-id".to_owned(),
            },
        ]);
    };
    let mut mappings: Vec<ClaimHeader> = Vec::with_capacity(map.len());
    for (claim, header) in map {
        let field = format!("claims_to_headers.{claim}");
        if claim.is_empty() {
            return Err(ConfigError::EmptyField {
                field: "claims_to_headers",
            });
        }
        let serde_json::Value::String(header) = header else {
            return Err(ConfigError::Json {
                path: field,
                message: "expected a header name string".to_owned(),
            });
        };
        check_header(&field, &header)?;
        if mappings.iter().any(|m| m.header == header) {
            return Err(ConfigError::DuplicateHeader {
                field,
                name: header,
            });
        }
        mappings.push(ClaimHeader { claim, header });
    }
    Ok(mappings)
}

fn check_header(field: &str, name: &str) -> Result<(), ConfigError> {
    validate_header_name(name).map_err(|reason| ConfigError::InvalidHeader {
        field: field.to_owned(),
        name: name.to_owned(),
        reason,
    })
}

fn in_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "JWT_SECRET" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::parse(json.as_bytes(), &env)
    }

    fn error(json: &str) -> String {
        parse(json).unwrap_err().to_string()
    }

    const MINIMAL: &str =
        r#"{"secret":{"env":"JWT_SECRET"},"revocation":{"cluster":"keyservice"}}"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.secrets, vec![Secret(b"s3cret".to_vec())]);
        assert_eq!(
            config.algorithms,
            vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
        );
        assert_eq!(config.clock_skew_seconds, 60);
        assert_eq!(config.max_token_bytes, 8192);
        assert_eq!(config.realm, "keygate");
        assert_eq!(
            config.claims_to_headers,
            vec![
                ClaimHeader {
                    claim: "user_id".into(),
                    header: "x-user-id".into()
                },
                ClaimHeader {
                    claim: "org_id".into(),
                    header: "x-org-id".into()
                },
            ]
        );
        assert_eq!(config.payload_header, None);
        assert!(!config.strip_authorization);
        assert_eq!(
            config.revocation,
            RevocationConfig {
                cluster: "keyservice".into(),
                authority: "keyservice".into(),
                path_prefix: "/v1/revocations/".into(),
                timeout_ms: 500,
                check: RevocationCheck::NonExpiring,
                unknown_keys: UnknownKeys::Deny,
                failure_mode: FailureMode::Deny,
                cache: Some(CacheConfig {
                    max_entries: 16_384,
                    max_active_seconds: 30,
                    max_revoked_seconds: 86_400,
                }),
            }
        );
        assert_eq!(config.response_format, ResponseFormat::Text);
        assert_eq!(config.token_cache, None);
        assert!(config.cors.is_none());
    }

    #[test]
    fn full_config_is_taken_as_written() {
        let config = parse(
            r#"{
              "secret": [{"env": "JWT_SECRET"}, {"inline": "previous"}],
              "algorithms": ["HS512"],
              "clock_skew_seconds": 5,
              "max_token_bytes": 4096,
              "realm": "api",
              "claims_to_headers": {"user_id": "x-user", "plan": "x-plan"},
              "payload_header": "x-jwt-payload",
              "strip_authorization": true,
              "revocation": {
                "cluster": "outbound|8081||keyservice.default.svc.cluster.local",
                "authority": "keyservice.default",
                "path_prefix": "/internal/revocations/",
                "timeout_ms": 250,
                "check": "all",
                "unknown_keys": "allow",
                "failure_mode": "allow"
              }
            }"#,
        )
        .unwrap();
        assert_eq!(config.secrets.len(), 2);
        assert_eq!(config.secrets[1].as_bytes(), b"previous");
        assert_eq!(config.algorithms, vec![Algorithm::HS512]);
        assert_eq!(config.clock_skew_seconds, 5);
        assert_eq!(config.max_token_bytes, 4096);
        assert_eq!(config.realm, "api");
        assert!(config.claims_to_headers.contains(&ClaimHeader {
            claim: "plan".into(),
            header: "x-plan".into()
        }));
        assert_eq!(config.payload_header.as_deref(), Some("x-jwt-payload"));
        assert!(config.strip_authorization);
        assert_eq!(config.revocation.authority, "keyservice.default");
        assert_eq!(config.revocation.check, RevocationCheck::All);
        assert_eq!(config.revocation.unknown_keys, UnknownKeys::Allow);
        assert_eq!(config.revocation.failure_mode, FailureMode::Allow);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("", "configuration is empty"),
            ("{", "invalid plugin configuration"),
            (r#"{"revocation":{"cluster":"k"}}"#, "`secret`"),
            (
                r#"{"secret":{"env":"JWT_SECRET"},"revocation":{"cluster":"k"},"secrets":1}"#,
                "unknown field `secrets`",
            ),
            (
                r#"{"secret":{"env":"JWT_SECRET"},"revocation":{"cluster":"k","timeout":1}}"#,
                "at `revocation.timeout`: unknown field `timeout`",
            ),
            (
                r#"{"secret":{"env":"JWT_SECRET"}}"#,
                "missing field `revocation`",
            ),
            (
                r#"{"secret":{"env":"NOPE"},"revocation":{"cluster":"k"}}"#,
                "`secret.env`: environment variable NOPE is unset",
            ),
            (
                r#"{"secret":[{"inline":"a"},{"env":"EMPTY"}],"revocation":{"cluster":"k"}}"#,
                "`secret[1].env`: environment variable EMPTY is unset or empty",
            ),
            (
                r#"{"secret":{"inline":""},"revocation":{"cluster":"k"}}"#,
                "`secret.inline`: the secret is empty",
            ),
            (r#"{"secret":[],"revocation":{"cluster":"k"}}"#, "`secret`"),
            (
                r#"{"secret":{"inline":"a"},"algorithms":["HS256","none"],"revocation":{"cluster":"k"}}"#,
                "`algorithms[1]`: algorithm \"none\" is not supported",
            ),
            (
                r#"{"secret":{"inline":"a"},"algorithms":["RS256"],"revocation":{"cluster":"k"}}"#,
                "`algorithms[0]`",
            ),
            (
                r#"{"secret":{"inline":"a"},"algorithms":[],"revocation":{"cluster":"k"}}"#,
                "`algorithms`: the list is empty",
            ),
            (
                r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","timeout_ms":0}}"#,
                "`revocation.timeout_ms`: 0 is out of range",
            ),
            (
                r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","timeout_ms":"fast"}}"#,
                "at `revocation.timeout_ms`",
            ),
            (
                r#"{"secret":{"inline":"a"},"revocation":{"cluster":""}}"#,
                "`revocation.cluster`: must not be empty",
            ),
            (
                r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","check":"sometimes"}}"#,
                "at `revocation.check`: unknown variant `sometimes`",
            ),
            (
                r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","failure_mode":"open"}}"#,
                "at `revocation.failure_mode`",
            ),
            (
                r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","path_prefix":"v1/"}}"#,
                "`revocation.path_prefix`",
            ),
            (
                r#"{"secret":{"inline":"a"},"max_token_bytes":0,"revocation":{"cluster":"k"}}"#,
                "`max_token_bytes`: 0 is out of range",
            ),
            (
                r#"{"secret":{"inline":"a"},"clock_skew_seconds":99999,"revocation":{"cluster":"k"}}"#,
                "`clock_skew_seconds`",
            ),
            (
                r#"{"secret":{"inline":"a"},"realm":"a\"b","revocation":{"cluster":"k"}}"#,
                "`realm`",
            ),
            (
                r#"{"secret":{"inline":"a"},"claims_to_headers":{"user_id":"X-User"},"revocation":{"cluster":"k"}}"#,
                "`claims_to_headers.user_id`: header name \"X-User\"",
            ),
            (
                r#"{"secret":{"inline":"a"},"claims_to_headers":{"user_id":"authorization"},"revocation":{"cluster":"k"}}"#,
                "`claims_to_headers.user_id`",
            ),
            (
                r#"{"secret":{"inline":"a"},"claims_to_headers":{"a":"x-a","b":"x-a"},"revocation":{"cluster":"k"}}"#,
                "`claims_to_headers.b`: header \"x-a\" is already set",
            ),
            (
                r#"{"secret":{"inline":"a"},"claims_to_headers":{"a":1},"revocation":{"cluster":"k"}}"#,
                "`claims_to_headers.a`",
            ),
            (
                r#"{"secret":{"inline":"a"},"payload_header":"x-user-id","revocation":{"cluster":"k"}}"#,
                "`payload_header`: header \"x-user-id\" is already set",
            ),
            (
                r#"{"secret":{"inline":"a"},"payload_header":":path","revocation":{"cluster":"k"}}"#,
                "`payload_header`",
            ),
            (
                r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","cache":{"max_active_seconds":999999999}}}"#,
                "`revocation.cache.max_active_seconds`",
            ),
            (
                r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","cache":{"ttl":1}}}"#,
                "at `revocation.cache.ttl`: unknown field",
            ),
            (
                r#"{"secret":{"inline":"a"},"token_cache":{"max_entries":10,"ttl_seconds":0},"revocation":{"cluster":"k"}}"#,
                "`token_cache.ttl_seconds`",
            ),
            (
                r#"{"secret":{"inline":"a"},"response_format":"xml","revocation":{"cluster":"k"}}"#,
                "at `response_format`",
            ),
        ];
        for (json, expected) in cases {
            let message = error(json);
            assert!(
                message.contains(expected),
                "config {json:?}: error {message:?} does not contain {expected:?}"
            );
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config = parse(MINIMAL).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn caches_can_be_sized_and_turned_off() {
        let config = parse(
            r#"{"secret":{"inline":"a"},"token_cache":{"max_entries":500,"ttl_seconds":20},"revocation":{"cluster":"k","cache":{"max_entries":0}}}"#,
        )
        .unwrap();
        assert_eq!(config.revocation.cache, None);
        assert_eq!(
            config.token_cache,
            Some(TokenCacheConfig {
                max_entries: 500,
                ttl_seconds: 20
            })
        );
        let config = parse(
            r#"{"secret":{"inline":"a"},"response_format":"json","revocation":{"cluster":"k","cache":{"max_entries":100,"max_revoked_seconds":600}}}"#,
        )
        .unwrap();
        assert_eq!(config.response_format, ResponseFormat::Json);
        assert_eq!(
            config.revocation.cache,
            Some(CacheConfig {
                max_entries: 100,
                max_active_seconds: 30,
                max_revoked_seconds: 600
            })
        );
    }

    #[test]
    fn duplicate_algorithms_collapse() {
        let config = parse(
            r#"{"secret":{"inline":"a"},"algorithms":["HS256","HS256"],"revocation":{"cluster":"k"}}"#,
        )
        .unwrap();
        assert_eq!(config.algorithms, vec![Algorithm::HS256]);
    }
}
