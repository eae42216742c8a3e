//! The per-request decision: from the request head and the clock to allow, deny, or "ask
//! keyservice first". Host-free; the proxy-wasm layer only carries the result out.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;

use crate::config::{Config, FailureMode, RevocationCheck, UnknownKeys};
use crate::credential::{CredentialError, bearer_token};
use crate::in_flight::InFlight;
use crate::metrics::Metrics;
use crate::path::normalize_path;
use crate::revocation::{Digest, RevocationStatus, digest, revocation_path};
use crate::revocation_cache::RevocationCache;
use crate::rules::RuleAction;
use crate::scopes::missing_scopes;
use crate::token_cache::TokenCache;
use crate::verify::{Rejection, VerifiedToken, Verifier};

const AUTHORIZATION: &str = "authorization";

/// One worker's keygate: the configuration, what is built from it once, and the worker's caches.
pub struct Gate {
    pub config: Config,
    verifier: Verifier,
    token_cache: Option<RefCell<TokenCache>>,
    pub revocation_cache: Option<RevocationCache>,
    pub in_flight: RefCell<InFlight>,
    pub metrics: Metrics,
}

/// What the decision reads of a request. Raw bytes: a client may send anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    pub authorization: Option<&'a [u8]>,
    /// `:path` and `:method`, read only when rules are configured.
    pub path: Option<&'a [u8]>,
    pub method: Option<&'a [u8]>,
    /// A CORS preflight that the configuration lets through without a token.
    pub passing_preflight: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(Grant),
    Deny(DenyReason),
    /// The token is valid but must be checked against keyservice before the request proceeds.
    CheckRevocation(PendingCheck),
}

/// The request header changes that let a request through: every header the filter owns is
/// listed, with `None` for "remove", so client-supplied copies never survive.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub headers: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingCheck {
    pub digest: Digest,
    /// `:path` of the revocation request: the prefix and the token's digest.
    pub path: String,
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
    /// The token lacks scopes the route requires; holds all the required scopes, space-joined.
    InsufficientScope(String),
    /// A `deny` rule matched.
    ForbiddenRule,
    /// The path cannot be normalised, so no rule can be trusted to match it.
    BadPath,
}

impl Gate {
    pub fn new(config: Config, metrics: Metrics) -> Self {
        let verifier = Verifier::new(&config);
        let token_cache = config
            .token_cache
            .map(|cache| RefCell::new(TokenCache::new(cache)));
        let revocation_cache = config
            .revocation
            .cache
            .clone()
            .map(|cache| RevocationCache::new(&config.revocation.cluster, cache));
        Self {
            config,
            verifier,
            token_cache,
            revocation_cache,
            in_flight: RefCell::new(InFlight::default()),
            metrics,
        }
    }

    /// Whether the decision needs `:path` and `:method`.
    pub fn needs_route(&self) -> bool {
        !self.config.rules.is_empty()
    }

    /// Decides on a request at `now`, in seconds since the Unix epoch.
    pub fn decide(&self, head: &RequestHead<'_>, now: u64) -> Decision {
        let action = match self.route_action(head) {
            Ok(action) => action,
            Err(reason) => return Decision::Deny(reason),
        };
        let required_scopes = match action {
            RuleAction::Deny => return Decision::Deny(DenyReason::ForbiddenRule),
            RuleAction::Allow => return Decision::Allow(self.pass_through()),
            // A preflight carries no credentials; a closed route stays closed to it (above).
            _ if head.passing_preflight => return Decision::Allow(self.pass_through()),
            RuleAction::Authenticate => None,
            RuleAction::RequireScopes(scopes) => Some(scopes),
        };
        let Ok(authorization) = head.authorization.map(std::str::from_utf8).transpose() else {
            return Decision::Deny(DenyReason::Credential(CredentialError::Malformed));
        };
        let token = match bearer_token(authorization, self.config.max_token_bytes) {
            Ok(token) => token,
            Err(error) => return Decision::Deny(DenyReason::Credential(error)),
        };
        let mut token_digest = None;
        let verified = match self.verify(token, now, &mut token_digest) {
            Ok(verified) => verified,
            Err(rejection) => return Decision::Deny(DenyReason::Token(rejection)),
        };
        if let Some(required) = required_scopes
            && !missing_scopes(required, &verified.claims).is_empty()
        {
            return Decision::Deny(DenyReason::InsufficientScope(required.join(" ")));
        }
        let grant = match self.grant(token, &verified) {
            Ok(grant) => grant,
            Err(rejection) => return Decision::Deny(DenyReason::Token(rejection)),
        };
        let revocation = &self.config.revocation;
        if verified.expires() && revocation.check == RevocationCheck::NonExpiring {
            return Decision::Allow(grant);
        }
        let digest = token_digest.unwrap_or_else(|| digest(token));
        Decision::CheckRevocation(PendingCheck {
            path: revocation_path(&revocation.path_prefix, &digest),
            digest,
            grant,
        })
    }

    /// Finishes a decision once keyservice has answered (or failed to).
    pub fn after_revocation(&self, status: RevocationStatus, grant: Grant) -> Decision {
        let revocation = &self.config.revocation;
        match status {
            RevocationStatus::Active => Decision::Allow(grant),
            RevocationStatus::Revoked => Decision::Deny(DenyReason::Revoked),
            RevocationStatus::Unknown => match revocation.unknown_keys {
                UnknownKeys::Allow => Decision::Allow(grant),
                UnknownKeys::Deny => Decision::Deny(DenyReason::UnknownKey),
            },
            RevocationStatus::Unavailable => match revocation.failure_mode {
                FailureMode::Allow => Decision::Allow(grant),
                FailureMode::Deny => Decision::Deny(DenyReason::Unavailable),
            },
        }
    }

    /// The grant for a request let through without a token: it only removes the headers the
    /// filter owns, so a client cannot pose as a verified user on an open route either.
    pub fn pass_through(&self) -> Grant {
        let config = &self.config;
        let headers = config
            .claims_to_headers
            .iter()
            .map(|mapping| (mapping.header.clone(), None))
            .chain(
                config
                    .payload_header
                    .iter()
                    .map(|name| (name.clone(), None)),
            )
            .collect();
        Grant { headers }
    }

    fn route_action(&self, head: &RequestHead<'_>) -> Result<&RuleAction, DenyReason> {
        const AUTHENTICATE: &RuleAction = &RuleAction::Authenticate;
        if !self.needs_route() {
            return Ok(AUTHENTICATE);
        }
        let path = head
            .path
            .and_then(|path| std::str::from_utf8(path).ok())
            .ok_or(DenyReason::BadPath)?;
        let normalized = normalize_path(path).map_err(|_| DenyReason::BadPath)?;
        let method = head
            .method
            .and_then(|method| std::str::from_utf8(method).ok())
            .unwrap_or_default();
        Ok(self.config.rules.action_for(&normalized, method))
    }

    /// Verifies `token`, through the verified-token cache when it is on. Fills `token_digest`
    /// when it had to compute it, so the revocation check does not hash the token again.
    fn verify(
        &self,
        token: &str,
        now: u64,
        token_digest: &mut Option<Digest>,
    ) -> Result<Rc<VerifiedToken>, Rejection> {
        let Some(cache) = &self.token_cache else {
            return self.verifier.verify(token, now).map(Rc::new);
        };
        let key = digest(token);
        *token_digest = Some(key);
        if let Some(verified) = cache.borrow_mut().get(&key, now) {
            return Ok(verified);
        }
        let verified = Rc::new(self.verifier.verify(token, now)?);
        let valid_until = verified
            .expires_at
            .map(|exp| exp.saturating_add(self.config.clock_skew_seconds));
        cache
            .borrow_mut()
            .insert(key, Rc::clone(&verified), valid_until, now);
        Ok(verified)
    }

    fn grant(&self, token: &str, verified: &VerifiedToken) -> Result<Grant, Rejection> {
        let config = &self.config;
        let mut headers = Vec::with_capacity(config.claims_to_headers.len() + 2);
        for mapping in &config.claims_to_headers {
            let value = verified
                .claims
                .get(&mapping.claim)
                .map(header_value)
                .transpose()?
                .flatten();
            headers.push((mapping.header.clone(), value));
        }
        if let Some(name) = &config.payload_header {
            // The payload segment already is the base64url of the verified payload JSON.
            let payload = token.split('.').nth(1).map(str::to_owned);
            headers.push((name.clone(), payload));
        }
        if config.strip_authorization {
            headers.push((AUTHORIZATION.to_owned(), None));
        }
        Ok(Grant { headers })
    }
}

/// The header value for a claim: strings as they are, numbers and booleans as JSON writes them,
/// anything else (null, arrays, objects) left out. A value that cannot be a header value is a
/// malformed token rather than a silently missing identity.
fn header_value(claim: &Value) -> Result<Option<String>, Rejection> {
    let value = match claim {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => return Ok(None),
    };
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(Rejection::Malformed);
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    use crate::revocation::token_digest;

    const NOW: u64 = 1_700_000_000;

    fn gate(extra: &str) -> Gate {
        let json = format!(
            r#"{{"secret":{{"inline":"s"}},"revocation":{{"cluster":"keyservice"{extra}}}}}"#
        );
        Gate::new(
            Config::parse(json.as_bytes(), &|_| None).unwrap(),
            Metrics::default(),
        )
    }

    fn gate_with(top: &str) -> Gate {
        let json = format!(r#"{{"secret":{{"inline":"s"}},{top},"revocation":{{"cluster":"k"}}}}"#);
        Gate::new(
            Config::parse(json.as_bytes(), &|_| None).unwrap(),
            Metrics::default(),
        )
    }

    fn head(authorization: Option<&[u8]>) -> RequestHead<'_> {
        RequestHead {
            authorization,
            ..RequestHead::default()
        }
    }

    fn token(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn headers(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn an_expiring_token_is_allowed_without_a_callout() {
        let t = token(json!({"user_id": "u1", "org_id": "o1", "iat": NOW, "exp": NOW + 60}));
        let decision = gate("").decide(&head(Some(bearer(&t).as_bytes())), NOW);
        let expected = headers(&[("x-user-id", Some("u1")), ("x-org-id", Some("o1"))]);
        assert_eq!(decision, Decision::Allow(Grant { headers: expected }));
    }

    #[test]
    fn absent_claims_remove_the_header_so_spoofed_copies_are_dropped() {
        let t = token(json!({"user_id": "u1", "exp": NOW + 60}));
        let Decision::Allow(grant) = gate("").decide(&head(Some(bearer(&t).as_bytes())), NOW)
        else {
            panic!("expected allow");
        };
        assert_eq!(grant.headers[1], ("x-org-id".to_owned(), None));
    }

    #[test]
    fn a_non_expiring_token_needs_a_revocation_check_by_digest() {
        let t = token(json!({"user_id": "u1", "iat": NOW}));
        let Decision::CheckRevocation(pending) =
            gate("").decide(&head(Some(bearer(&t).as_bytes())), NOW)
        else {
            panic!("expected a revocation check");
        };
        assert_eq!(
            pending.path,
            format!("/v1/revocations/{}", token_digest(&t))
        );
        assert_eq!(pending.digest, crate::revocation::digest(&t));
        assert_eq!(
            pending.grant.headers[0],
            ("x-user-id".into(), Some("u1".into()))
        );
    }

    #[test]
    fn check_all_checks_expiring_tokens_too() {
        let t = token(json!({"user_id": "u1", "exp": NOW + 60}));
        let decision = gate(r#","check":"all""#).decide(&head(Some(bearer(&t).as_bytes())), NOW);
        assert!(
            matches!(decision, Decision::CheckRevocation(_)),
            "{decision:?}"
        );
    }

    #[test]
    fn credential_and_token_failures_are_denied_with_their_reason() {
        let g = gate("");
        let expired = token(json!({"user_id": "u1", "exp": NOW - 3600}));
        let cases: Vec<(Option<Vec<u8>>, DenyReason)> = vec![
            (None, DenyReason::Credential(CredentialError::Missing)),
            (
                Some(b"Basic dTpw".to_vec()),
                DenyReason::Credential(CredentialError::OtherScheme),
            ),
            (
                Some(b"Bearer \xff\xfe".to_vec()),
                DenyReason::Credential(CredentialError::Malformed),
            ),
            (
                Some(bearer(&"a".repeat(9000)).into_bytes()),
                DenyReason::Credential(CredentialError::TooLarge),
            ),
            (
                Some(bearer(&expired).into_bytes()),
                DenyReason::Token(Rejection::Expired),
            ),
            (
                Some(bearer("x.y.z").into_bytes()),
                DenyReason::Token(Rejection::Malformed),
            ),
        ];
        for (header, reason) in cases {
            let decision = g.decide(&head(header.as_deref()), NOW);
            assert_eq!(decision, Decision::Deny(reason), "{header:?}");
        }
    }

    #[test]
    fn claim_values_with_control_characters_are_refused() {
        let t = token(json!({"user_id": "u1\r\nx-admin: true", "exp": NOW + 60}));
        assert_eq!(
            gate("").decide(&head(Some(bearer(&t).as_bytes())), NOW),
            Decision::Deny(DenyReason::Token(Rejection::Malformed))
        );
    }

    #[test]
    fn numbers_and_booleans_become_header_values_and_structures_are_left_out() {
        let g = gate_with(r#""claims_to_headers":{"n":"x-n","b":"x-b","a":"x-a","o":"x-o"}"#);
        let t = token(json!({"n": 42, "b": true, "a": [1], "o": {"k": 1}, "exp": NOW + 60}));
        let Decision::Allow(grant) = g.decide(&head(Some(bearer(&t).as_bytes())), NOW) else {
            panic!("expected allow");
        };
        assert_eq!(
            &grant.headers[..4],
            // Claims are kept in name order.
            &headers(&[
                ("x-a", None),
                ("x-b", Some("true")),
                ("x-n", Some("42")),
                ("x-o", None)
            ])[..]
        );
    }

    #[test]
    fn payload_header_and_authorization_stripping() {
        let g = gate_with(r#""payload_header":"x-jwt-payload","strip_authorization":true"#);
        let t = token(json!({"user_id": "u1", "exp": NOW + 60}));
        let Decision::Allow(grant) = g.decide(&head(Some(bearer(&t).as_bytes())), NOW) else {
            panic!("expected allow");
        };
        let payload = t.split('.').nth(1).unwrap();
        assert_eq!(
            grant.headers[2],
            ("x-jwt-payload".into(), Some(payload.into()))
        );
        assert_eq!(grant.headers[3], ("authorization".into(), None));
    }

    #[test]
    fn revocation_answers_follow_the_configured_policies() {
        let grant = Grant { headers: vec![] };
        let allow = Decision::Allow(grant.clone());
        let cases = [
            ("", RevocationStatus::Active, allow.clone()),
            (
                "",
                RevocationStatus::Revoked,
                Decision::Deny(DenyReason::Revoked),
            ),
            (
                "",
                RevocationStatus::Unknown,
                Decision::Deny(DenyReason::UnknownKey),
            ),
            (
                "",
                RevocationStatus::Unavailable,
                Decision::Deny(DenyReason::Unavailable),
            ),
            (
                r#","unknown_keys":"allow""#,
                RevocationStatus::Unknown,
                allow.clone(),
            ),
            (
                r#","unknown_keys":"allow""#,
                RevocationStatus::Revoked,
                Decision::Deny(DenyReason::Revoked),
            ),
            (
                r#","failure_mode":"allow""#,
                RevocationStatus::Unavailable,
                allow.clone(),
            ),
            (
                r#","failure_mode":"allow""#,
                RevocationStatus::Unknown,
                Decision::Deny(DenyReason::UnknownKey),
            ),
        ];
        for (extra, status, expected) in cases {
            assert_eq!(
                gate(extra).after_revocation(status, grant.clone()),
                expected,
                "{extra} {status:?}"
            );
        }
    }

    #[test]
    fn arbitrary_and_mutated_input_never_panics_and_never_allows_a_forgery() {
        let g = gate("");
        let valid = bearer(&token(json!({"user_id": "u1", "exp": NOW + 60})));
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let mut input = valid.clone().into_bytes();
            // Flip, drop or insert a few bytes after the scheme, or use pure noise.
            if round % 4 == 0 {
                let len = (next() % 64) as usize;
                input = (0..len).map(|_| next() as u8).collect();
            } else {
                for _ in 0..=(next() % 3) {
                    let at = 7 + (next() as usize) % (input.len() - 7);
                    match next() % 3 {
                        0 => input[at] = next() as u8,
                        1 => {
                            input.remove(at);
                        }
                        _ => input.insert(at, next() as u8),
                    }
                }
            }
            let decision = g.decide(&head(Some(&input)), NOW);
            if input != valid.as_bytes() {
                // A changed token can only pass if the change was in base64 padding bits.
                if let Decision::Allow(grant) = &decision {
                    assert_eq!(grant.headers[0], ("x-user-id".into(), Some("u1".into())));
                }
            }
        }
    }
}
