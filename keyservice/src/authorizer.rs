//! The adapter to keygate's host-free core: the one module that uses the `keygate` crate's API.
//!
//! `/v1/authorize` makes the decision the edge filter makes, with the filter's own code: its
//! configuration parser, its verification, rules and scopes, and its replies. The only part done
//! here is the revocation check, which keyservice answers from its own store instead of a
//! callout. Everything outside this module sees keyservice's own types ([`AuthorizeRequest`],
//! [`Verdict`]), so a change to the keygate API is fixed here alone.
//!
//! keygate's `Gate` is built for one thread (Envoy runs one VM per worker): it is kept per
//! worker thread here too, built on first use from the parsed configuration, and never held
//! across an `.await`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use keygate::Config;
use keygate::RevocationStatus;
use keygate::{Decision, DenyReason, Gate, Grant, HeaderWrite, RequestHead};
use thiserror::Error;

use crate::routes::revocations::Lookup;

#[derive(Debug, Error)]
pub enum AuthorizerError {
    #[error("cannot read the authorize configuration {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// keygate's own message, naming the field (the secret never appears in it).
    #[error("invalid authorize configuration: {0}")]
    Config(String),
}

/// The filter's configuration, parsed and validated once.
pub struct Authorizer {
    config: Arc<Config>,
    /// Names this authorizer's per-thread gates.
    id: u64,
}

/// What the decision reads of the request being authorized.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    /// The request's headers: the token sources (`Authorization`, or those the providers name).
    pub headers: &'a HeaderMap,
    /// The original request's path (with its query, which the rules ignore).
    pub path: &'a [u8],
    pub method: &'a [u8],
}

/// The answer, in the terms of Envoy's HTTP `ext_authz` and nginx's `auth_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// 200 to allow; otherwise the status the client gets (401, 403, 400, 503).
    pub status: u16,
    /// Allowed: the identity headers to set on the upstream request. Denied: the reply's
    /// headers (`content-type`, `www-authenticate`).
    pub headers: Vec<(String, String)>,
    /// Allowed: the headers the upstream request must not carry (a client's own `x-org-id`
    /// when the key has no org, say).
    pub remove: Vec<String>,
    /// Denied: the filter's reply body. Allowed: empty.
    pub body: String,
    /// For metrics and logs: `allow`, or the filter's deny reason (`missing`, `revoked`, …).
    pub outcome: &'static str,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static GATES: RefCell<HashMap<u64, Rc<Gate>>> = RefCell::new(HashMap::new());
}

impl Authorizer {
    /// Reads the filter's JSON configuration from a file (`--authorize-config`). `{"env": …}`
    /// secrets are read from keyservice's environment.
    pub fn from_file(path: &Path) -> Result<Self, AuthorizerError> {
        let json = std::fs::read(path).map_err(|source| AuthorizerError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&json)
    }

    pub fn from_json(json: &[u8]) -> Result<Self, AuthorizerError> {
        let env = |name: &str| std::env::var(name).ok();
        let config =
            Config::parse(json, &env).map_err(|e| AuthorizerError::Config(e.to_string()))?;
        // Usage and rate limits are counted in Envoy's shared memory by the filter; here they
        // would silently count nothing.
        if config.usage.is_some() {
            return Err(AuthorizerError::Config(
                "`usage`: usage is counted by the filter in Envoy, not by /v1/authorize; remove it from the authorize configuration".to_owned(),
            ));
        }
        if let Some(provider) = config.providers.iter().find(|p| !p.rate_limits.is_empty()) {
            return Err(AuthorizerError::Config(format!(
                "`rate_limits` of provider {:?}: rate limits are counted by the filter in Envoy, not by /v1/authorize; remove them from the authorize configuration",
                provider.name
            )));
        }
        Ok(Self {
            config: Arc::new(config),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Decides on `request` at `now` (Unix seconds). `lookup` answers the revocation question
    /// for a lowercase hex SHA-256; `Err` means the store could not answer, and the
    /// configuration's `failure_mode` applies.
    pub async fn authorize<F, Fut, E>(
        &self,
        request: &AuthorizeRequest<'_>,
        now: u64,
        lookup: F,
    ) -> Verdict
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Lookup, E>>,
    {
        let pending = match self.with_gate(|gate| {
            // As Envoy hands them to the filter: repeated headers joined with ", ".
            let sources: Vec<Option<Vec<u8>>> = gate
                .source_headers()
                .iter()
                .map(|name| joined(request.headers, name))
                .collect();
            let head = RequestHead {
                sources: &sources,
                path: Some(request.path),
                method: Some(request.method),
                // No Envoy route here: path rules and the default requirement decide.
                requirement: None,
                passing_preflight: false,
            };
            let decision = match gate.decide(&head, now.saturating_mul(1000)) {
                // Remote key sets are fetched by the filter's host; natively there is none yet,
                // so the provider's failure mode decides, as when its keys do not arrive in time.
                Decision::AwaitKeys { provider } => gate.keys_missing(provider, &head),
                decision => decision,
            };
            self.verdict(gate, decision)
        }) {
            Step::Done(verdict) => return verdict,
            Step::Check { digest, grant } => (digest, grant),
        };
        let (digest, grant) = pending;
        let status = match lookup(hex(&digest)).await {
            Ok(Lookup::Active) => RevocationStatus::Active,
            Ok(Lookup::Revoked) => RevocationStatus::Revoked,
            Ok(Lookup::Unknown) => RevocationStatus::Unknown,
            Err(_) => RevocationStatus::Unavailable,
        };
        match self.with_gate(|gate| self.verdict(gate, gate.after_revocation(status, grant))) {
            Step::Done(verdict) => verdict,
            // after_revocation never asks again; refuse rather than loop if it ever did.
            Step::Check { .. } => self.unavailable(),
        }
    }

    fn with_gate<R>(&self, f: impl FnOnce(&Gate) -> R) -> R {
        let gate = GATES.with(|gates| {
            Rc::clone(gates.borrow_mut().entry(self.id).or_insert_with(|| {
                Rc::new(Gate::new(
                    (*self.config).clone(),
                    keygate::Metrics::default(),
                ))
            }))
        });
        f(&gate)
    }

    fn verdict(&self, gate: &Gate, decision: Decision) -> Step {
        match decision {
            Decision::Allow(grant) => Step::Done(allow(grant)),
            Decision::Deny(reason) => self.deny(gate, &reason),
            Decision::CheckRevocation(check) => Step::Check {
                digest: check.digest,
                grant: check.grant,
            },
            // Handled where the request head is at hand (see `authorize`); never twice.
            Decision::AwaitKeys { .. } => Step::Done(fallback_unavailable()),
        }
    }

    fn deny(&self, gate: &Gate, reason: &DenyReason) -> Step {
        let reply = reason.reply(&gate.config);
        Step::Done(Verdict {
            status: u16::try_from(reply.status).unwrap_or(500),
            headers: reply
                .headers
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            remove: Vec::new(),
            body: reply.body,
            outcome: reason.label(),
        })
    }

    fn unavailable(&self) -> Verdict {
        self.with_gate(|gate| match self.deny(gate, &DenyReason::Unavailable) {
            Step::Done(verdict) => verdict,
            Step::Check { .. } => fallback_unavailable(),
        })
    }
}

fn fallback_unavailable() -> Verdict {
    Verdict {
        status: 503,
        headers: Vec::new(),
        remove: Vec::new(),
        body: String::new(),
        outcome: "unavailable",
    }
}

/// A header's values joined with ", ", as Envoy hands repeated headers to a filter; `None`
/// when absent.
fn joined(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let mut out = first.as_bytes().to_vec();
    for value in values {
        out.extend_from_slice(b", ");
        out.extend_from_slice(value.as_bytes());
    }
    Some(out)
}

enum Step {
    Done(Verdict),
    Check { digest: [u8; 32], grant: Grant },
}

fn allow(grant: Grant) -> Verdict {
    let mut headers = Vec::new();
    let mut remove = Vec::new();
    for HeaderWrite { name, value } in grant.headers().cloned() {
        match value {
            Some(value) => headers.push((name, value)),
            None => remove.push(name),
        }
    }
    Verdict {
        status: 200,
        headers,
        remove,
        body: String::new(),
        outcome: "allow",
    }
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "authorize-unit-secret";

    fn authorizer(extra: serde_json::Value) -> Authorizer {
        let mut config = json!({
            "secret": {"inline": SECRET},
            "revocation": {"cluster": "keyservice"},
            "claims_to_headers": {"user_id": "x-user-id", "org_id": "x-org-id"}
        });
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            config.extend(extra.clone());
        }
        Authorizer::from_json(config.to_string().as_bytes()).unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(auth) = auth {
            headers.insert("authorization", auth.parse().unwrap());
        }
        headers
    }

    async fn decide(
        authorizer: &Authorizer,
        auth: Option<&str>,
        answer: Result<Lookup, ()>,
    ) -> Verdict {
        let headers = headers(auth);
        let request = AuthorizeRequest {
            headers: &headers,
            path: b"/hello",
            method: b"GET",
        };
        authorizer
            .authorize(&request, 1_700_000_000, |_| async move { answer })
            .await
    }

    #[tokio::test]
    async fn decisions_match_the_filters() {
        let a = authorizer(json!({}));
        let key = token(json!({"user_id": "alice", "iat": 1_700_000_000}));
        let bearer = format!("Bearer {key}");

        let allowed = decide(&a, Some(&bearer), Ok(Lookup::Active)).await;
        assert_eq!(allowed.status, 200);
        assert_eq!(
            allowed.headers,
            [("x-user-id".to_owned(), "alice".to_owned())]
        );
        assert_eq!(allowed.remove, ["x-org-id"]);
        assert_eq!(allowed.outcome, "allow");

        let revoked = decide(&a, Some(&bearer), Ok(Lookup::Revoked)).await;
        assert_eq!(
            (revoked.status, revoked.body.as_str()),
            (401, "Revoked token")
        );
        assert_eq!(revoked.outcome, "revoked");

        let unknown = decide(&a, Some(&bearer), Ok(Lookup::Unknown)).await;
        assert_eq!((unknown.status, unknown.outcome), (401, "unknown_key"));

        let down = decide(&a, Some(&bearer), Err(())).await;
        assert_eq!(
            (down.status, down.body.as_str()),
            (503, "Authorization service unavailable")
        );

        let missing = decide(&a, None, Ok(Lookup::Active)).await;
        assert_eq!(missing.status, 401);
        assert!(missing.headers.contains(&(
            "www-authenticate".to_owned(),
            "Bearer realm=\"keygate\"".to_owned()
        )));
    }

    #[tokio::test]
    async fn expiring_keys_are_not_looked_up() {
        let a = authorizer(json!({}));
        let key = token(json!({"user_id": "bob", "org_id": "acme", "exp": 1_700_000_600}));
        let headers = headers(Some(&format!("Bearer {key}")));
        let request = AuthorizeRequest {
            headers: &headers,
            path: b"/",
            method: b"GET",
        };
        let verdict = a
            .authorize(&request, 1_700_000_000, |_| async {
                Err::<Lookup, &str>("must not be asked")
            })
            .await;
        assert_eq!(verdict.status, 200);
        assert_eq!(verdict.remove, Vec::<String>::new());
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let error = Authorizer::from_json(br#"{"secret": {"inline": "s"}}"#)
            .err()
            .unwrap();
        assert!(error.to_string().contains("revocation"), "{error}");
        let error = Authorizer::from_file(Path::new("/nonexistent/authorize.json"))
            .err()
            .unwrap();
        assert!(matches!(error, AuthorizerError::Read { .. }));
    }

    #[test]
    fn usage_and_rate_limits_are_refused_since_nothing_here_would_count_them() {
        let base = r#""secret": {"inline": "s"}, "revocation": {"cluster": "keyservice"}"#;
        let error = Authorizer::from_json(format!(r#"{{{base}, "usage": {{}}}}"#).as_bytes())
            .err()
            .unwrap();
        assert!(error.to_string().contains("`usage`"), "{error}");
        let limits = r#""rate_limits": {"key": [{"requests": 1, "per_seconds": 60}]}"#;
        let error = Authorizer::from_json(format!("{{{base}, {limits}}}").as_bytes())
            .err()
            .unwrap();
        assert!(error.to_string().contains("`rate_limits`"), "{error}");
    }

    #[test]
    fn digests_are_lowercase_hex() {
        let mut digest = [0u8; 32];
        digest[0] = 0xab;
        digest[31] = 0x01;
        let hex = hex(&digest);
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("ab00") && hex.ends_with("01"));
    }
}
