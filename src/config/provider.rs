//! Identity providers: who issues the tokens keygate accepts, with which keys and algorithms,
//! where the tokens are found, and what of their claims reaches the upstream.

use std::fmt;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::filter_state::{ClaimProperty, FilterState, parse_claims};
use super::values::{OneOrMany, check_header, check_path, claim_path, in_range, non_empty};
use super::{ConfigError, FailureMode};
use super::metering::{ProviderLimits, RawProviderLimits};
use crate::policy::conditions::{ClaimCondition, RawCondition, validate_all};
use crate::jose::keys::{VerifyKey, parse_jwks};
use crate::extract::sources::TokenSource;

const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const ALL: &[Algorithm] = &[
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const ALL_NAMES: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA";
const HMAC_NAMES: &str = "HS256, HS384 or HS512 (a secret verifies only HMAC)";

const DEFAULT_REFRESH_SECONDS: u64 = 600;
const DEFAULT_MIN_REFETCH_SECONDS: u64 = 30;
const DEFAULT_JWKS_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_WAIT_MS: u64 = 2_000;
const DEFAULT_JWKS_PATH: &str = "/.well-known/jwks.json";
const DEFAULT_DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

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

/// A claim, by dotted path (`org.id`), copied into a request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// The path as written, e.g. `org.id`.
    pub claim: String,
    pub path: Vec<String>,
    pub header: String,
}

/// Which verified tokens of a provider are checked against the revocation service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RevocationCheck {
    /// Only tokens without `exp`: long-lived keys are stored and revocable, temporary ones are not.
    #[default]
    NonExpiring,
    All,
    /// Never (session tokens, whose issuer keeps them short-lived).
    None,
}

#[derive(Debug, Clone)]
pub enum KeyMaterial {
    Secrets(Vec<Secret>),
    /// Parsed at configuration time: a bad inline JWKS is refused with the config.
    Jwks(Vec<VerifyKey>),
    Remote(RemoteJwks),
}

/// Until the first JWKS arrives: hold requests up to `wait_ms`, or answer 503 at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UntilReady {
    Wait { wait_ms: u64 },
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    /// The JWKS path, or the discovery document's when `discovery` is set.
    pub path: String,
    pub discovery: bool,
    pub refresh_seconds: u64,
    pub min_refetch_seconds: u64,
    pub timeout_ms: u64,
    pub until_ready: UntilReady,
    /// With no keys at all: deny (503), or let requests through unauthenticated (logged,
    /// counted, identity headers removed).
    pub failure_mode: FailureMode,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: KeyMaterial,
    pub claims_to_headers: Vec<ClaimHeader>,
    pub payload_header: Option<String>,
    pub sources: Vec<TokenSource>,
    /// Remove the token's source (header, cookie, query parameter) before upstream.
    pub strip_source: bool,
    pub revocation: RevocationCheck,
    pub required_claims: Vec<String>,
    pub max_lifetime_seconds: Option<u64>,
    /// Conditions a token's claims must meet for this provider to accept it (`claims`);
    /// failing one makes the token invalid (401).
    pub conditions: Vec<ClaimCondition>,
    /// Claims published as filter state when `filter_state` is set.
    pub filter_state_claims: Vec<ClaimProperty>,
    /// `rate_limits`; empty when none.
    pub rate_limits: ProviderLimits,
}

impl Provider {
    /// Every header this provider sets, so all are removed from client requests.
    pub fn owned_headers(&self) -> impl Iterator<Item = &str> {
        self.claims_to_headers
            .iter()
            .map(|mapping| mapping.header.as_str())
            .chain(self.payload_header.as_deref())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(super) enum SecretSource {
    Env(String),
    Inline(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    name: String,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    secret: Option<OneOrMany<SecretSource>>,
    jwks: Option<Value>,
    remote_jwks: Option<RawRemoteJwks>,
    claims_to_headers: Option<Map<String, Value>>,
    payload_header: Option<String>,
    sources: Option<Vec<RawSource>>,
    strip_source: Option<bool>,
    revocation: Option<RevocationCheck>,
    required_claims: Option<Vec<String>>,
    max_lifetime_seconds: Option<u64>,
    claims: Option<Vec<RawCondition>>,
    filter_state_claims: Option<Map<String, Value>>,
    rate_limits: Option<RawProviderLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteJwks {
    cluster: String,
    authority: Option<String>,
    path: Option<String>,
    #[serde(default)]
    discovery: bool,
    refresh_seconds: Option<u64>,
    min_refetch_seconds: Option<u64>,
    timeout_ms: Option<u64>,
    until_ready: Option<RawUntilReady>,
    wait_ms: Option<u64>,
    #[serde(default)]
    failure_mode: FailureMode,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawUntilReady {
    Wait,
    Fail,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    header: Option<String>,
    prefix: Option<String>,
    cookie: Option<String>,
    query: Option<String>,
}

/// What a provider takes from the top level when it does not say: the defaults of the
/// single-provider form.
pub(super) struct ProviderDefaults<'a> {
    pub claims_to_headers: &'a [ClaimHeader],
    pub payload_header: Option<&'a str>,
    pub revocation: RevocationCheck,
    /// The `filter_state` block and its claims, when set.
    pub filter_state: Option<(&'a FilterState, &'a [ClaimProperty])>,
}

impl RawProvider {
    /// The single-provider form: the top-level `secret`, `algorithms` and claim mapping.
    pub(super) fn legacy(
        secret: Option<OneOrMany<SecretSource>>,
        algorithms: Option<Vec<String>>,
        strip_authorization: bool,
        rate_limits: Option<RawProviderLimits>,
    ) -> Self {
        Self {
            name: "default".to_owned(),
            issuer: None,
            audiences: None,
            algorithms,
            secret: Some(secret.unwrap_or(OneOrMany::Many(Vec::new()))),
            jwks: None,
            remote_jwks: None,
            claims_to_headers: None,
            payload_header: None,
            sources: None,
            strip_source: Some(strip_authorization),
            revocation: None,
            required_claims: None,
            max_lifetime_seconds: None,
            claims: None,
            filter_state_claims: None,
            rate_limits,
        }
    }

    /// `field` is where the provider stands (`providers[1]`, or "" for the top-level form).
    pub(super) fn validate(
        self,
        field: &str,
        defaults: &ProviderDefaults<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Provider, ConfigError> {
        let at = |name: &str| {
            if field.is_empty() {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            }
        };
        let name = non_empty(&at("name"), self.name)?;
        let is_secret = self.secret.is_some();
        let (allowed, allowed_names, default_algorithms) = if is_secret {
            (HMAC, HMAC_NAMES, HMAC)
        } else {
            (ALL, ALL_NAMES, ASYMMETRIC)
        };
        let algorithms = parse_algorithms(
            &at("algorithms"),
            self.algorithms,
            default_algorithms,
            allowed,
            allowed_names,
        )?;
        let keys = match (self.secret, self.jwks, self.remote_jwks) {
            (Some(secret), None, None) => {
                KeyMaterial::Secrets(resolve_secrets(&at("secret"), secret, env)?)
            }
            (None, Some(jwks), None) => {
                let json = jwks.to_string();
                KeyMaterial::Jwks(parse_jwks(json.as_bytes(), &algorithms).map_err(|error| {
                    ConfigError::Jwks {
                        field: at("jwks"),
                        error,
                    }
                })?)
            }
            (None, None, Some(remote)) => KeyMaterial::Remote(remote.validate(&at("remote_jwks"))?),
            _ => {
                return Err(ConfigError::KeyMaterial {
                    field: field_or(field, "secret"),
                });
            }
        };
        let issuer = self
            .issuer
            .map(|issuer| non_empty(&at("issuer"), issuer))
            .transpose()?;
        let audiences = self.audiences.unwrap_or_default();
        if audiences.iter().any(|a| a.is_empty()) {
            return Err(ConfigError::EmptyField {
                field: at("audiences"),
            });
        }
        let claims_to_headers = match self.claims_to_headers {
            Some(map) => parse_claim_headers(&at("claims_to_headers"), map)?,
            None => defaults.claims_to_headers.to_vec(),
        };
        let payload_header = match self.payload_header {
            Some(name) => Some(name),
            None => defaults.payload_header.map(str::to_owned),
        };
        if let Some(name) = &payload_header {
            check_header(&at("payload_header"), name)?;
            if claims_to_headers.iter().any(|c| c.header == *name) {
                return Err(ConfigError::DuplicateHeader {
                    field: at("payload_header"),
                    name: name.clone(),
                });
            }
        }
        let sources = match self.sources {
            None => vec![TokenSource::authorization_bearer()],
            Some(raw) if raw.is_empty() => {
                return Err(ConfigError::EmptyField {
                    field: at("sources"),
                });
            }
            Some(raw) => raw
                .into_iter()
                .enumerate()
                .map(|(index, source)| source.validate(&at(&format!("sources[{index}]"))))
                .collect::<Result<_, _>>()?,
        };
        let revocation = self.revocation.unwrap_or(match &keys {
            KeyMaterial::Secrets(_) => defaults.revocation,
            // Session tokens from an identity provider are short-lived and not stored.
            KeyMaterial::Jwks(_) | KeyMaterial::Remote(_) => RevocationCheck::None,
        });
        let required_claims = self.required_claims.unwrap_or_default();
        if required_claims.iter().any(|c| c.is_empty()) {
            return Err(ConfigError::EmptyField {
                field: at("required_claims"),
            });
        }
        let max_lifetime_seconds = self
            .max_lifetime_seconds
            .map(|max| in_range(&at("max_lifetime_seconds"), max, 1, 10 * 365 * 86_400))
            .transpose()?;
        let conditions =
            validate_all(&at("claims"), self.claims).map_err(ConfigError::Condition)?;
        let rate_limits = match self.rate_limits {
            Some(raw) => raw.validate(&at("rate_limits"))?,
            None => ProviderLimits::default(),
        };
        let filter_state_claims = match (self.filter_state_claims, defaults.filter_state) {
            (None, None) => Vec::new(),
            (None, Some((_, claims))) => claims.to_vec(),
            (Some(map), Some((state, _))) => {
                parse_claims(&at("filter_state_claims"), &state.prefix, map)?
            }
            (Some(_), None) => {
                return Err(ConfigError::FilterStateMissing {
                    field: at("filter_state_claims"),
                });
            }
        };
        Ok(Provider {
            name,
            issuer,
            audiences,
            algorithms,
            keys,
            claims_to_headers,
            payload_header,
            sources,
            strip_source: self.strip_source.unwrap_or(false),
            revocation,
            required_claims,
            max_lifetime_seconds,
            conditions,
            filter_state_claims,
            rate_limits,
        })
    }
}

fn field_or(field: &str, name: &str) -> String {
    if field.is_empty() {
        name.to_owned()
    } else {
        field.to_owned()
    }
}

impl RawRemoteJwks {
    fn validate(self, field: &str) -> Result<RemoteJwks, ConfigError> {
        let at = |name: &str| format!("{field}.{name}");
        let cluster = non_empty(&at("cluster"), self.cluster)?;
        let authority = non_empty(
            &at("authority"),
            self.authority.unwrap_or_else(|| cluster.clone()),
        )?;
        let default_path = if self.discovery {
            DEFAULT_DISCOVERY_PATH
        } else {
            DEFAULT_JWKS_PATH
        };
        let path = check_path(
            &at("path"),
            self.path.unwrap_or_else(|| default_path.to_owned()),
        )?;
        let until_ready = match self.until_ready {
            Some(RawUntilReady::Fail) => UntilReady::Fail,
            Some(RawUntilReady::Wait) | None => UntilReady::Wait {
                wait_ms: in_range(
                    &at("wait_ms"),
                    self.wait_ms.unwrap_or(DEFAULT_WAIT_MS),
                    1,
                    60_000,
                )?,
            },
        };
        Ok(RemoteJwks {
            authority,
            path,
            discovery: self.discovery,
            refresh_seconds: in_range(
                &at("refresh_seconds"),
                self.refresh_seconds.unwrap_or(DEFAULT_REFRESH_SECONDS),
                10,
                86_400,
            )?,
            min_refetch_seconds: in_range(
                &at("min_refetch_seconds"),
                self.min_refetch_seconds
                    .unwrap_or(DEFAULT_MIN_REFETCH_SECONDS),
                1,
                86_400,
            )?,
            timeout_ms: in_range(
                &at("timeout_ms"),
                self.timeout_ms.unwrap_or(DEFAULT_JWKS_TIMEOUT_MS),
                1,
                60_000,
            )?,
            until_ready,
            failure_mode: self.failure_mode,
            cluster,
        })
    }
}

impl RawSource {
    fn validate(self, field: &str) -> Result<TokenSource, ConfigError> {
        let source = match (self.header, self.cookie, self.query) {
            (Some(name), None, None) => {
                check_source_header(field, &name)?;
                TokenSource::Header {
                    name,
                    prefix: self.prefix.unwrap_or_default(),
                }
            }
            (None, Some(name), None) if self.prefix.is_none() => TokenSource::Cookie(name),
            (None, None, Some(name)) if self.prefix.is_none() => TokenSource::Query(name),
            _ => {
                return Err(ConfigError::Source {
                    field: field.to_owned(),
                    reason: "give exactly one of `header` (with an optional `prefix`), `cookie` or `query`",
                });
            }
        };
        let name = match &source {
            TokenSource::Header { name, .. } => name,
            TokenSource::Cookie(name) | TokenSource::Query(name) => name,
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"=;,&?#\"".contains(&b))
        {
            return Err(ConfigError::Source {
                field: field.to_owned(),
                reason: "the name must be a non-empty token without =;,&?# or quotes",
            });
        }
        Ok(source)
    }
}

/// A token header may be `authorization` (unlike a claim header), but nothing else reserved.
fn check_source_header(field: &str, name: &str) -> Result<(), ConfigError> {
    if name == "authorization" {
        return Ok(());
    }
    check_header(&format!("{field}.header"), name)
}

pub(super) fn resolve_secrets(
    field: &str,
    secret: OneOrMany<SecretSource>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Secret>, ConfigError> {
    let (sources, listed) = match secret {
        OneOrMany::One(source) => (vec![source], false),
        OneOrMany::Many(sources) => (sources, true),
    };
    if sources.is_empty() {
        return Err(ConfigError::NoSecrets {
            field: field.to_owned(),
        });
    }
    sources
        .into_iter()
        .enumerate()
        .map(|(index, source)| {
            let at = |kind: &str| {
                if listed {
                    format!("{field}[{index}].{kind}")
                } else {
                    format!("{field}.{kind}")
                }
            };
            match source {
                SecretSource::Env(variable) => match env(&variable) {
                    Some(value) if !value.is_empty() => Ok(Secret(value.into_bytes())),
                    _ => Err(ConfigError::SecretEnvUnset {
                        field: at("env"),
                        variable,
                    }),
                },
                SecretSource::Inline(value) if value.is_empty() => Err(ConfigError::SecretEmpty {
                    field: at("inline"),
                }),
                SecretSource::Inline(value) => Ok(Secret(value.into_bytes())),
            }
        })
        .collect()
}

fn parse_algorithms(
    field: &str,
    names: Option<Vec<String>>,
    default: &[Algorithm],
    allowed: &[Algorithm],
    allowed_names: &'static str,
) -> Result<Vec<Algorithm>, ConfigError> {
    let Some(names) = names else {
        return Ok(default.to_vec());
    };
    if names.is_empty() {
        return Err(ConfigError::NoAlgorithms {
            field: field.to_owned(),
        });
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for (index, name) in names.into_iter().enumerate() {
        // Named explicitly: `none` and anything unknown are refused, never mapped.
        let algorithm = match name.parse::<Algorithm>() {
            Ok(algorithm) if allowed.contains(&algorithm) => algorithm,
            _ => {
                return Err(ConfigError::UnsupportedAlgorithm {
                    field: format!("{field}[{index}]"),
                    value: name,
                    allowed: allowed_names,
                });
            }
        };
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    Ok(algorithms)
}

pub(super) fn parse_claim_headers(
    field: &str,
    map: Map<String, Value>,
) -> Result<Vec<ClaimHeader>, ConfigError> {
    let mut mappings: Vec<ClaimHeader> = Vec::with_capacity(map.len());
    for (claim, header) in map {
        let at = format!("{field}.{claim}");
        let path = claim_path(&at, &claim)?;
        let Value::String(header) = header else {
            return Err(ConfigError::Json {
                path: at,
                message: "expected a header name string".to_owned(),
            });
        };
        check_header(&at, &header)?;
        if mappings.iter().any(|m| m.header == header) {
            return Err(ConfigError::DuplicateHeader {
                field: at,
                name: header,
            });
        }
        mappings.push(ClaimHeader {
            claim,
            path,
            header,
        });
    }
    Ok(mappings)
}

/// The documented default mapping: `user_id` → `x-user-id`, `org_id` → `x-org-id`.
pub(super) fn default_claim_headers() -> Vec<ClaimHeader> {
    [("user_id", "x-user-id"), ("org_id", "x-org-id")]
        .into_iter()
        .map(|(claim, header)| ClaimHeader {
            claim: claim.to_owned(),
            path: vec![claim.to_owned()],
            header: header.to_owned(),
        })
        .collect()
}
