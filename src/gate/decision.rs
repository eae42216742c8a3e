//! The per-request decision: from the request head and the clock to allow, deny, wait for keys,
//! or "ask keyservice first". Host-free; the proxy-wasm layer only carries the result out.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::config::filter_state::{KEY_DIGEST, PROVIDER, SCOPES};
use crate::config::{
    Config, FailureMode, KeyMaterial, Provider, Secret,
    UnknownKeys, UntilReady,
};
use crate::gate::claims::{HeaderWrite, Property, header_value};
use crate::policy::scopes::granted_scopes;
use crate::extract::credential::CredentialError;
use crate::revocation::in_flight::InFlight;
use crate::jose::jws::Jws;
use crate::jose::keys::{VerifyKey, secret_keys};
use crate::gate::metrics::Metrics;
use crate::gate::parked::Parked;
use crate::policy::path::{PathError, RoutePath};
use crate::gate::remote_jwks::JwksState;
use crate::revocation::protocol::{
    Digest, RevocationStatus, digest, hex_digest,
};
use crate::revocation::cache::RevocationCache;
use crate::policy::rules::{Route, RuleAction};
use crate::extract::sources::TokenSource;
use crate::gate::token_cache::{CachedToken, TokenCache};
use crate::gate::verify::{Clock, Rejection, VerifiedToken, verify};
use crate::policy::rate_limits::Exceeded;
use crate::metering::limiter::RateLimiter;
use crate::policy::rate_limits::Limits;
use crate::metering::subject::Subject;
use crate::metering::usage::UsageTable;

/// One worker's keygate: the configuration, what is built from it once, and the worker's state
/// (caches, keys fetched at run time, requests waiting).
pub struct Gate {
    pub config: Config,
    pub providers: Vec<ProviderState>,
    /// Every token source of every provider, once, in order; `source_headers` are the request
    /// headers they read.
    sources: Vec<TokenSource>,
    source_headers: Vec<String>,
    /// Per provider, and per requirement: the indexes into `sources` they read.
    pub(super) provider_sources: Vec<Vec<usize>>,
    pub(super) requirement_sources: Vec<Vec<usize>>,
    owned_headers: Vec<String>,
    /// Every owned header removed: the identity of a request let through without a token.
    pub(super) anonymous: Arc<[HeaderWrite]>,
    routes_by_issuer: bool,
    token_cache: Option<RefCell<TokenCache>>,
    pub revocation_cache: Option<RevocationCache>,
    pub in_flight: RefCell<InFlight<Grant>>,
    pub metrics: Metrics,
    /// This worker's usage counts, until its tick hands them to the reporter (`usage`).
    pub usage: Option<RefCell<UsageTable>>,
    /// The shared rate-limit counters, when a provider sets `rate_limits`.
    pub limiter: Option<RateLimiter>,
}

/// What a decision learned on the way, for counters and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The provider the token went to, if the decision got that far.
    pub provider: Option<usize>,
    /// Whether the token was found in the verified-token cache; `None` when the decision did
    /// not look (cache off, or refused before).
    pub token_cache_hit: Option<bool>,
    /// The request goes on without identity because its requirement allows that
    /// (`allow_missing`, `allow_missing_or_failed`).
    pub anonymous: bool,
    /// Who the (last) verified token is counted as, when something counts.
    pub subject: Option<Arc<Subject>>,
}

/// A provider's keys at run time.
pub struct ProviderState {
    static_keys: Option<Rc<Vec<VerifyKey>>>,
    /// For a remote JWKS: the fetch state and the requests waiting for keys.
    pub jwks: Option<RefCell<JwksState>>,
    pub parked: RefCell<Vec<Parked>>,
}

/// What the decision reads of a request. Raw bytes: a client may send anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// The values of `Gate::source_headers()`, in that order.
    pub sources: &'a [Option<Vec<u8>>],
    /// `:path` and `:method`, read only when rules are configured.
    pub path: Option<&'a [u8]>,
    pub method: Option<&'a [u8]>,
    /// The requirement the route selects in its metadata, read only when requirements are
    /// configured.
    pub requirement: Option<&'a [u8]>,
    /// A CORS preflight that the configuration lets through without a token.
    pub passing_preflight: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(Grant),
    Deny(DenyReason),
    /// The token is valid but must be checked against keyservice before the request proceeds.
    CheckRevocation(PendingCheck),
    /// The provider's keys are not there yet (or are being fetched again for an unknown `kid`):
    /// hold the request until they are, up to the provider's bound.
    AwaitKeys {
        provider: usize,
    },
}

/// The request header changes that let a request through: every header the filter owns is
/// listed, with `None` for "remove", so client-supplied copies never survive.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grant {
    /// The headers the filter owns, in `Config::owned_headers` order. Taken from a token's claims
    /// once, when it is verified, and shared from then on (the token cache keeps them). An `Arc`
    /// rather than an `Rc` so a grant can wait for keyservice's store across an `.await`.
    pub identity: Arc<[HeaderWrite]>,
    /// The token sources this request's provider strips, without the token.
    pub stripped: Vec<HeaderWrite>,
    /// The identity as Envoy filter state (`filter_state`); empty without identity.
    pub properties: Arc<[Property]>,
    /// For `allow_missing_or_failed`: what to apply instead when keyservice refuses the key
    /// (or cannot answer and `failure_mode` is `deny`): the request without identity.
    pub fallback: Option<Box<Grant>>,
    /// Who the request is counted as (usage, rate limits); `None` without a token, or when
    /// nothing counts.
    pub subject: Option<Arc<Subject>>,
    /// The key's own limits, from keyservice's answer (boxed: most keys have none, and a grant
    /// travels in every decision).
    pub key_limits: Option<Box<Limits>>,
}

impl Grant {
    /// Every header change, the owned headers first.
    pub fn headers(&self) -> impl Iterator<Item = &HeaderWrite> {
        self.identity.iter().chain(&self.stripped)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingCheck {
    /// The token's digest: the revocation request's path is `path_prefix` and its hex.
    pub digest: Digest,
    pub grant: Grant,
}

/// Why a request was refused. Each maps to one response in `response.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    Credential(CredentialError),
    Token(Rejection),
    Revoked,
    UnknownKey,
    Unavailable,
    /// A provider's keys could not be had (its JWKS never arrived).
    KeysUnavailable,
    /// The token lacks scopes the route requires; holds all the required scopes, space-joined.
    InsufficientScope(String),
    /// A `deny` rule matched.
    ForbiddenRule,
    /// Over a rate limit.
    RateLimited(Exceeded),
    /// The token's claims fail a condition of the route's requirement.
    ForbiddenClaims,
    /// The route's metadata selects a requirement the configuration does not have.
    UnknownRequirement,
    /// Upstreams would read the path in different ways, so no rule can be trusted to match it.
    BadPath(PathError),
}

/// A token that passed verification (now, or when it entered the token cache), with the
/// identity headers its grant sets.
pub(super) struct Admitted {
    pub(super) verified: Rc<VerifiedToken>,
    pub(super) identity: Arc<[HeaderWrite]>,
    pub(super) properties: Arc<[Property]>,
    /// Its digest, when the cache or filter state computed it (the revocation check reuses it).
    pub(super) digest: Option<Digest>,
    pub(super) subject: Option<Arc<Subject>>,
}

/// The one token a request carries, and where it was found.
pub(super) struct Presented<'a> {
    pub(super) token: &'a str,
    /// Indexes into `Gate::sources`.
    found_in: Vec<usize>,
}

impl Gate {
    pub fn new(config: Config, metrics: Metrics) -> Self {
        let mut sources: Vec<TokenSource> = Vec::new();
        for source in config.providers.iter().flat_map(|p| p.sources.iter()) {
            if !sources.contains(source) {
                sources.push(source.clone());
            }
        }
        let mut source_headers: Vec<String> = Vec::new();
        for source in &sources {
            let name = source.header_name().to_owned();
            if !source_headers.contains(&name) {
                source_headers.push(name);
            }
        }
        let provider_sources: Vec<Vec<usize>> = config
            .providers
            .iter()
            .map(|provider| {
                sources
                    .iter()
                    .enumerate()
                    .filter(|(_, source)| provider.sources.contains(source))
                    .map(|(index, _)| index)
                    .collect()
            })
            .collect();
        let requirement_sources = config
            .requirements
            .iter()
            .map(|requirement| {
                (0..sources.len())
                    .filter(|index| {
                        requirement
                            .providers
                            .iter()
                            .any(|&p| provider_sources[p].contains(index))
                    })
                    .collect()
            })
            .collect();
        let providers = config
            .providers
            .iter()
            .map(|provider| ProviderState {
                static_keys: match &provider.keys {
                    KeyMaterial::Secrets(secrets) => {
                        Some(Rc::new(secret_keys(secrets.iter().map(Secret::as_bytes), &provider.algorithms)))
                    }
                    KeyMaterial::Jwks(keys) => Some(Rc::new(keys.clone())),
                    KeyMaterial::Remote(_) => None,
                },
                jwks: match &provider.keys {
                    KeyMaterial::Remote(remote) => Some(RefCell::new(JwksState::new(remote))),
                    _ => None,
                },
                parked: RefCell::new(Vec::new()),
            })
            .collect();
        let owned_headers: Vec<String> = config
            .owned_headers()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let anonymous = owned_headers
            .iter()
            .map(|name| HeaderWrite::new(name.clone(), None))
            .collect();
        let routes_by_issuer = config.providers.iter().any(|p| p.issuer.is_some());
        let token_cache = config
            .token_cache
            .and_then(|cache| match TokenCache::random_key() {
                Ok(key) => Some(RefCell::new(TokenCache::new(cache, &key))),
                // Without a secret key the cache could be steered; every token is verified instead.
                Err(error) => {
                    log::warn!("verified-token cache off: no randomness for its key ({error})");
                    None
                }
            });
        let usage = config
            .usage
            .as_ref()
            .map(|usage| RefCell::new(UsageTable::new(usage.max_keys)));
        let limiter = config
            .providers
            .iter()
            .any(|provider| !provider.rate_limits.is_empty())
            .then(|| RateLimiter::new(config.rate_limit_counters));
        let revocation_cache = config.revocation.as_ref().and_then(|revocation| {
            revocation
                .cache
                .clone()
                .map(|cache| RevocationCache::new(&revocation.cluster, cache))
        });
        Self {
            providers,
            sources,
            source_headers,
            provider_sources,
            requirement_sources,
            owned_headers,
            anonymous,
            routes_by_issuer,
            token_cache,
            revocation_cache,
            in_flight: RefCell::new(InFlight::default()),
            metrics,
            usage,
            limiter,
            config,
        }
    }

    /// The request headers the token sources read (e.g. `authorization`, `cookie`, `:path`).
    pub fn source_headers(&self) -> &[String] {
        &self.source_headers
    }

    /// The name of the provider at `index` (a [`Trace`]'s), for logs.
    pub fn provider_name(&self, index: Option<usize>) -> Option<&str> {
        Some(self.config.providers.get(index?)?.name.as_str())
    }

    /// The fingerprint of the token a request presents, for logs.
    pub fn token_fingerprint(&self, head: &RequestHead<'_>) -> Option<String> {
        let every: Vec<usize> = (0..self.sources.len()).collect();
        let presented = self.presented(head, &every).ok()?;
        Some(crate::revocation::protocol::fingerprint(&digest(presented.token)))
    }

    /// A provider's keys changed (a JWKS arrived): cached tokens are verified again, so a key
    /// taken out of the JWKS stops working at once rather than when its tokens leave the cache.
    pub fn keys_changed(&self) {
        if let Some(cache) = &self.token_cache {
            cache.borrow_mut().clear();
        }
    }

    /// Whether the decision needs `:path` and `:method`.
    pub fn needs_route(&self) -> bool {
        !self.config.rules.is_empty()
    }

    /// Whether the decision reads the requirement the route's metadata selects.
    pub fn reads_route_requirement(&self) -> bool {
        self.config.route_requirements
    }

    /// Decides on a request at `now_ms`, in milliseconds since the Unix epoch.
    pub fn decide(&self, head: &RequestHead<'_>, now_ms: u64) -> Decision {
        self.decide_traced(head, now_ms).0
    }

    /// [`Self::decide`], with what the decision learned on the way.
    pub fn decide_traced(&self, head: &RequestHead<'_>, now_ms: u64) -> (Decision, Trace) {
        let mut trace = Trace::default();
        let decision = self.decide_into(head, now_ms, &mut trace);
        (decision, trace)
    }

    fn decide_into(&self, head: &RequestHead<'_>, now_ms: u64, trace: &mut Trace) -> Decision {
        let demand = match self.demand(head) {
            Ok(Some(demand)) => demand,
            Ok(None) => return Decision::Allow(self.pass_through(head)),
            Err(reason) => return Decision::Deny(reason),
        };
        let requirement = &self.config.requirements[demand.requirement];
        let decision = if requirement.all {
            self.meet_all(requirement, demand, head, now_ms, trace)
        } else {
            self.meet_one(requirement, demand, head, now_ms, trace)
        };
        self.soften(requirement, decision, head, trace)
    }

    /// Finishes a decision once keyservice has answered (or failed to).
    pub fn after_revocation(&self, status: RevocationStatus, mut grant: Grant) -> Decision {
        let fallback = grant.fallback.take();
        match (self.refusal(status), fallback) {
            (None, _) => Decision::Allow(grant),
            (Some(_), Some(fallback)) => Decision::Allow(*fallback),
            (Some(reason), None) => Decision::Deny(reason),
        }
    }

    /// Whether keyservice's answer refuses the key (before any `allow_missing_or_failed`).
    pub fn refuses(&self, status: RevocationStatus) -> bool {
        self.refusal(status).is_some()
    }

    fn refusal(&self, status: RevocationStatus) -> Option<DenyReason> {
        let revocation = self.config.revocation.as_ref()?;
        match status {
            RevocationStatus::Active => None,
            RevocationStatus::Revoked => Some(DenyReason::Revoked),
            RevocationStatus::Unknown => match revocation.unknown_keys {
                UnknownKeys::Allow => None,
                UnknownKeys::Deny => Some(DenyReason::UnknownKey),
            },
            RevocationStatus::Unavailable => match revocation.failure_mode {
                FailureMode::Allow => None,
                FailureMode::Deny => Some(DenyReason::Unavailable),
            },
        }
    }

    /// The decision for a request that waited for its provider's keys in vain: with keys in
    /// hand it waited for a refetch that brought none for its `kid`, so that `kid` is unknown;
    /// with no keys at all, the provider's `failure_mode` decides.
    pub fn keys_missing(&self, provider: usize, head: &RequestHead<'_>) -> Decision {
        let decision = self.keys_missing_for(provider, head);
        // The request waited under its route's requirement; `allow_missing_or_failed` still holds.
        match self.demand(head) {
            Ok(Some(demand)) => {
                let requirement = &self.config.requirements[demand.requirement];
                self.soften(requirement, decision, head, &mut Trace::default())
            }
            _ => decision,
        }
    }

    fn keys_missing_for(&self, provider: usize, head: &RequestHead<'_>) -> Decision {
        if self.keys_of(provider).is_some() {
            return Decision::Deny(DenyReason::Token(Rejection::UnknownKid));
        }
        match self.remote(provider).map(|remote| remote.failure_mode) {
            Some(FailureMode::Allow) => Decision::Allow(self.pass_through(head)),
            _ => Decision::Deny(DenyReason::KeysUnavailable),
        }
    }

    /// The grant for a request let through without verifying a token: it removes the headers
    /// the filter owns, so a client cannot pose as a verified user on an open route either, and
    /// any token in a source its provider strips.
    pub fn pass_through(&self, head: &RequestHead<'_>) -> Grant {
        let mut stripped: Vec<HeaderWrite> = Vec::new();
        let strippers = self
            .config
            .providers
            .iter()
            .filter(|provider| provider.strip_source)
            .flat_map(|provider| provider.sources.iter());
        for source in strippers {
            let Some(value) = self
                .source_value(head, source)
                .and_then(|value| std::str::from_utf8(value).ok())
            else {
                continue;
            };
            let name = source.header_name();
            if matches!(source.locate(value, self.config.max_token_bytes), Ok(None))
                || self.owned_headers.iter().any(|owned| owned == name)
                || stripped.iter().any(|write| write.name == name)
            {
                continue;
            }
            stripped.push(HeaderWrite::new(name, source.without_token(value)));
        }
        Grant {
            identity: Arc::clone(&self.anonymous),
            stripped,
            ..Grant::default()
        }
    }

    pub(super) fn route_action(&self, head: &RequestHead<'_>) -> Result<&Route, DenyReason> {
        const AUTHENTICATE: &Route = &Route {
            action: RuleAction::Authenticate,
            requirement: None,
        };
        if !self.needs_route() {
            return Ok(AUTHENTICATE);
        }
        let path = head.path.ok_or(DenyReason::BadPath(PathError::NotOrigin))?;
        let path =
            std::str::from_utf8(path).map_err(|_| DenyReason::BadPath(PathError::BadEncoding))?;
        let method = head
            .method
            .and_then(|method| std::str::from_utf8(method).ok())
            .unwrap_or_default();
        RoutePath::parse(path)
            .and_then(|path| self.config.rules.route_for(&path, method))
            .map_err(DenyReason::BadPath)
    }

    /// The token the request carries. Several different tokens are refused, not guessed between.
    /// Its characters are checked by `verify_token`, and only when the token is not in the
    /// verified-token cache (so a malformed token that also disagrees with another source's is
    /// refused as ambiguous rather than malformed: both are 401s for a presented token).
    /// Only the sources at `sources` (indexes into `Gate::sources`) are read: those of the
    /// providers the requirement takes.
    pub(super) fn presented<'a>(
        &self,
        head: &RequestHead<'a>,
        sources: &[usize],
    ) -> Result<Presented<'a>, CredentialError> {
        let mut presented: Option<Presented<'a>> = None;
        for &index in sources {
            let source = &self.sources[index];
            let Some(value) = self.source_value(head, source) else {
                continue;
            };
            let value = std::str::from_utf8(value).map_err(|_| CredentialError::Malformed)?;
            let Some(token) = source.locate(value, self.config.max_token_bytes)? else {
                continue;
            };
            match &mut presented {
                None => {
                    presented = Some(Presented {
                        token,
                        found_in: vec![index],
                    });
                }
                Some(first) if first.token == token => first.found_in.push(index),
                Some(_) => return Err(CredentialError::Ambiguous),
            }
        }
        presented.ok_or(CredentialError::Missing)
    }

    fn source_value<'a>(&self, head: &RequestHead<'a>, source: &TokenSource) -> Option<&'a [u8]> {
        let position = self
            .source_headers
            .iter()
            .position(|name| name == source.header_name())?;
        head.sources.get(position)?.as_deref()
    }

    /// Picks the provider and verifies, through the verified-token cache when it is on. Fills
    /// `token_digest` when the cache has it or it was computed for the cache, so the revocation
    /// check does not hash again.
    pub(super) fn verify_token(
        &self,
        head: &RequestHead<'_>,
        presented: &Presented<'_>,
        candidates: &[usize],
        now_ms: u64,
        trace: &mut Trace,
    ) -> Result<Admitted, Decision> {
        let now = now_ms / 1000;
        let token = presented.token;
        let tagged = self
            .token_cache
            .as_ref()
            .map(|cache| (cache, cache.borrow().tag(token)));
        if let Some((cache, tag)) = tagged {
            let cached = cache.borrow_mut().get(tag, now);
            // Only where verifying it again would pick the same provider: the token may come in
            // another source this time, one its provider does not read or one that another
            // provider takes first, and the cache must not change what keygate decides.
            let hit = cached.filter(|cached| {
                let claims = self.routes_by_issuer.then_some(&cached.verified.claims);
                self.provider_for(cached.alg, claims, presented, candidates)
                    == Ok(cached.verified.provider)
            });
            trace.token_cache_hit = Some(hit.is_some());
            if let Some(cached) = hit {
                trace.provider = Some(cached.verified.provider);
                trace.subject.clone_from(&cached.subject);
                return Ok(Admitted {
                    verified: cached.verified,
                    identity: cached.identity,
                    properties: cached.properties,
                    digest: Some(cached.digest),
                    subject: cached.subject,
                });
            }
        }
        // Not in the cache: the token has to be made of what its sources allow before any of it
        // is decoded (a cached token passed this when it was verified).
        if !presented
            .found_in
            .iter()
            .all(|&index| self.sources[index].well_formed(token))
        {
            return Err(Decision::Deny(DenyReason::Credential(
                CredentialError::Malformed,
            )));
        }
        let reject = |rejection| Decision::Deny(DenyReason::Token(rejection));
        let jws = Jws::parse(token).map_err(|_| reject(Rejection::Malformed))?;
        // Routing by issuer reads the (unverified) claims first; they are then read only once.
        let early_claims = if self.routes_by_issuer {
            Some(jws.claims().map_err(|_| reject(Rejection::Malformed))?)
        } else {
            None
        };
        let index = self
            .provider_for(jws.header.alg, early_claims.as_ref(), presented, candidates)
            .map_err(reject)?;
        trace.provider = Some(index);
        let provider = &self.config.providers[index];
        let keys = match self.keys_of(index) {
            Some(keys) => keys,
            None => return Err(self.without_keys(index, head)),
        };
        let clock = Clock {
            now,
            skew_seconds: self.config.clock_skew_seconds,
        };
        let verified = match verify(&jws, early_claims, index, provider, &keys, clock) {
            Ok(verified) => Rc::new(verified),
            Err(Rejection::UnknownKid) => return Err(self.unknown_kid(index, now_ms)),
            Err(rejection) => return Err(reject(rejection)),
        };
        let identity = self
            .identity_headers(token, provider, &verified.claims)
            .map_err(reject)?;
        let key = (tagged.is_some() || self.config.filter_state.is_some() || self.meters())
            .then(|| digest(token));
        let subject = key.as_ref().and_then(|key| {
            self.subject(index, provider, key, verified.expires(), &verified.claims)
        });
        trace.subject.clone_from(&subject);
        let properties = match &key {
            Some(key) => self
                .identity_properties(key, provider, &verified.claims)
                .map_err(reject)?,
            None => Arc::from([]),
        };
        if let (Some((cache, tag)), Some(key)) = (tagged, key) {
            let valid_until = verified
                .expires_at
                .map(|exp| exp.saturating_add(self.config.clock_skew_seconds));
            let cached = CachedToken {
                verified: Rc::clone(&verified),
                identity: Arc::clone(&identity),
                properties: Arc::clone(&properties),
                digest: key,
                alg: jws.header.alg,
                subject: subject.clone(),
            };
            cache.borrow_mut().insert(tag, cached, valid_until, now);
        }
        Ok(Admitted {
            verified,
            identity,
            properties,
            digest: key,
            subject,
        })
    }

    /// The provider for a token: the one whose `issuer` is the token's `iss` (read unverified,
    /// then verified), else the first without an issuer that allows the token's algorithm; in
    /// both cases one that reads the source the token came in.
    fn provider_for(
        &self,
        alg: Algorithm,
        claims: Option<&Map<String, Value>>,
        presented: &Presented<'_>,
        candidates: &[usize],
    ) -> Result<usize, Rejection> {
        let takes_source = |provider: &Provider| self.takes_source(provider, presented);
        let issuer = match claims.and_then(|claims| claims.get("iss")) {
            None | Some(Value::Null) => None,
            Some(Value::String(issuer)) => Some(issuer),
            Some(_) => return Err(Rejection::Malformed),
        };
        let providers = candidates
            .iter()
            .map(|&index| (index, &self.config.providers[index]));
        if let Some(issuer) = &issuer
            && let Some((index, _)) = providers
                .clone()
                .find(|(_, p)| p.issuer.as_ref() == Some(*issuer) && takes_source(p))
        {
            return Ok(index);
        }
        let mut fallback = providers.filter(|(_, p)| p.issuer.is_none() && takes_source(p));
        let first = fallback.clone().next();
        match fallback.find(|(_, p)| p.algorithms.contains(&alg)) {
            Some((index, _)) => Ok(index),
            // It names an issuer no provider has, and nothing else would take it.
            None if issuer.is_some() => Err(Rejection::WrongIssuer),
            None if first.is_some() => Err(Rejection::DisallowedAlgorithm),
            None => Err(Rejection::NoProvider),
        }
    }

    /// Whether `provider` reads one of the sources the token was found in.
    fn takes_source(&self, provider: &Provider, presented: &Presented<'_>) -> bool {
        presented
            .found_in
            .iter()
            .any(|&index| provider.sources.contains(&self.sources[index]))
    }

    fn keys_of(&self, index: usize) -> Option<Rc<Vec<VerifyKey>>> {
        let state = self.providers.get(index)?;
        match &state.static_keys {
            Some(keys) => Some(Rc::clone(keys)),
            None => state.jwks.as_ref()?.borrow().keys(),
        }
    }

    fn remote(&self, index: usize) -> Option<&crate::config::RemoteJwks> {
        match &self.config.providers.get(index)?.keys {
            KeyMaterial::Remote(remote) => Some(remote),
            _ => None,
        }
    }

    /// A remote JWKS has not arrived yet.
    fn without_keys(&self, index: usize, head: &RequestHead<'_>) -> Decision {
        match self.remote(index).map(|remote| remote.until_ready) {
            Some(UntilReady::Wait { .. }) => Decision::AwaitKeys { provider: index },
            _ => self.keys_missing(index, head),
        }
    }

    /// A token names a key the provider lacks: with a remote JWKS, fetch again (rate-limited) and
    /// hold the request for the new keys — a rotated key works from its first token.
    fn unknown_kid(&self, index: usize, now_ms: u64) -> Decision {
        let refetching = match (self.remote(index), self.providers.get(index)) {
            (Some(remote), Some(state)) => state
                .jwks
                .as_ref()
                .is_some_and(|jwks| jwks.borrow_mut().want_refetch(remote, now_ms)),
            _ => false,
        };
        if refetching {
            Decision::AwaitKeys { provider: index }
        } else {
            Decision::Deny(DenyReason::Token(Rejection::UnknownKid))
        }
    }

    /// The owned headers' values for a token `provider` verified: from its claims, or its
    /// payload segment (`payload_header`), in `owned_headers` order; `None` removes a header.
    fn identity_headers(
        &self,
        token: &str,
        provider: &Provider,
        claims: &Map<String, Value>,
    ) -> Result<Arc<[HeaderWrite]>, Rejection> {
        let mut headers = Vec::with_capacity(self.owned_headers.len());
        for name in &self.owned_headers {
            let value = if let Some(mapping) = provider
                .claims_to_headers
                .iter()
                .find(|m| m.header == *name)
            {
                header_value(claims, &mapping.path)?
            } else if provider.payload_header.as_deref() == Some(name.as_str()) {
                // The payload segment already is the base64url of the verified payload JSON.
                token.split('.').nth(1).map(str::to_owned)
            } else {
                None
            };
            headers.push(HeaderWrite::new(name.clone(), value));
        }
        Ok(headers.into())
    }

    /// The identity as filter state, when `filter_state` is set: the provider, the token's
    /// digest (keyservice's name for a key), its scopes, and the provider's claims.
    fn identity_properties(
        &self,
        digest: &Digest,
        provider: &Provider,
        claims: &Map<String, Value>,
    ) -> Result<Arc<[Property]>, Rejection> {
        let Some(state) = &self.config.filter_state else {
            return Ok(Arc::from([]));
        };
        let named = |name: &str, value: String| Property {
            name: format!("{}{name}", state.prefix),
            value,
        };
        let mut properties = vec![
            named(PROVIDER, provider.name.clone()),
            named(KEY_DIGEST, hex_digest(digest)),
        ];
        let scopes = granted_scopes(claims).join(" ");
        if !scopes.is_empty() {
            properties.push(named(SCOPES, scopes));
        }
        for claim in &provider.filter_state_claims {
            if let Some(value) = header_value(claims, &claim.path)? {
                properties.push(Property {
                    name: claim.name.clone(),
                    value,
                });
            }
        }
        Ok(properties.into())
    }

    /// The header changes for an admitted token: its identity headers, and the token sources
    /// its provider strips.
    pub(super) fn grant(
        &self,
        admitted: &Admitted,
        provider: &Provider,
        presented: &Presented<'_>,
        head: &RequestHead<'_>,
    ) -> Grant {
        let mut stripped = Vec::new();
        if provider.strip_source {
            for &index in &presented.found_in {
                let source = &self.sources[index];
                if !provider.sources.contains(source) {
                    continue;
                }
                let value = self
                    .source_value(head, source)
                    .and_then(|value| std::str::from_utf8(value).ok())
                    .unwrap_or_default();
                stripped.push(HeaderWrite::new(
                    source.header_name(),
                    source.without_token(value),
                ));
            }
        }
        Grant {
            identity: Arc::clone(&admitted.identity),
            stripped,
            properties: Arc::clone(&admitted.properties),
            fallback: None,
            subject: admitted.subject.clone(),
            key_limits: None,
        }
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
