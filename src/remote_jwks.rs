//! A remote JWKS, per worker: fetched through an Envoy cluster at start (on the first tick, not
//! on the first request), refreshed every `refresh_seconds`, kept when a refresh fails (retried
//! with backoff), re-fetched on an unknown `kid` at most once per `min_refetch_seconds`, and found
//! through OIDC discovery when asked.

use std::rc::Rc;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::config::RemoteJwks;
use crate::keys::{VerifyKey, parse_jwks};

/// The longest pause between retries of a failing fetch.
const MAX_BACKOFF_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    Discovery,
    Keys,
}

/// A fetch to dispatch now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub kind: FetchKind,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// New keys are in use.
    Updated { keys: usize },
    /// The discovery document named the JWKS path; fetch it next.
    Discovered,
    /// Nothing changed; the reason is for the log.
    Failed(String),
}

#[derive(Debug)]
pub struct JwksState {
    keys: Option<Rc<Vec<VerifyKey>>>,
    /// The JWKS path: configured, or found through discovery.
    jwks_path: Option<String>,
    in_flight: Option<(u32, FetchKind)>,
    next_due_ms: u64,
    failures: u32,
    /// When a fetch was last made for an unknown `kid`: only those are rate-limited, so a key
    /// published just after a scheduled refresh is still fetched on its first token.
    last_refetch_ms: Option<u64>,
    refetch_wanted: bool,
}

impl JwksState {
    pub fn new(config: &RemoteJwks) -> Self {
        Self {
            keys: None,
            jwks_path: (!config.discovery).then(|| config.path.clone()),
            in_flight: None,
            next_due_ms: 0,
            failures: 0,
            last_refetch_ms: None,
            refetch_wanted: false,
        }
    }

    pub fn keys(&self) -> Option<Rc<Vec<VerifyKey>>> {
        self.keys.clone()
    }

    /// What to fetch at `now_ms`, if anything.
    pub fn due(&self, config: &RemoteJwks, now_ms: u64) -> Option<Fetch> {
        if self.in_flight.is_some() || (!self.refetch_wanted && now_ms < self.next_due_ms) {
            return None;
        }
        Some(match &self.jwks_path {
            Some(path) => Fetch {
                kind: FetchKind::Keys,
                path: path.clone(),
            },
            None => Fetch {
                kind: FetchKind::Discovery,
                path: config.path.clone(),
            },
        })
    }

    pub fn started(&mut self, call_id: u32, kind: FetchKind, now_ms: u64) {
        self.in_flight = Some((call_id, kind));
        if kind == FetchKind::Keys && self.refetch_wanted {
            self.last_refetch_ms = Some(now_ms);
            self.refetch_wanted = false;
        }
    }

    pub fn is_fetching(&self, call_id: u32) -> bool {
        self.in_flight.is_some_and(|(id, _)| id == call_id)
    }

    /// The fetch could not even be dispatched.
    pub fn dispatch_failed(&mut self, now_ms: u64) -> FetchOutcome {
        self.in_flight = None;
        self.fail(now_ms, "could not be dispatched".to_owned())
    }

    /// The answer to the fetch in flight: `status` is `None` after a timeout or a reset.
    pub fn on_response(
        &mut self,
        config: &RemoteJwks,
        algorithms: &[Algorithm],
        status: Option<u16>,
        body: Option<&[u8]>,
        now_ms: u64,
    ) -> FetchOutcome {
        let Some((_, kind)) = self.in_flight.take() else {
            return FetchOutcome::Failed("no fetch was in flight".to_owned());
        };
        match status {
            Some(200) => {}
            Some(status) => return self.fail(now_ms, format!("answered {status}")),
            None => return self.fail(now_ms, "timed out or was reset".to_owned()),
        }
        let body = body.unwrap_or_default();
        match kind {
            FetchKind::Discovery => match jwks_path_from_discovery(body) {
                Some(path) => {
                    self.jwks_path = Some(path);
                    // Fetch the keys right away.
                    self.next_due_ms = now_ms;
                    FetchOutcome::Discovered
                }
                None => self.fail(
                    now_ms,
                    "the discovery document has no usable jwks_uri".to_owned(),
                ),
            },
            FetchKind::Keys => match parse_jwks(body, algorithms) {
                Ok(keys) => {
                    let count = keys.len();
                    self.keys = Some(Rc::new(keys));
                    self.failures = 0;
                    self.next_due_ms = now_ms.saturating_add(config.refresh_seconds * 1000);
                    FetchOutcome::Updated { keys: count }
                }
                Err(error) => self.fail(now_ms, error.to_string()),
            },
        }
    }

    /// A token named a `kid` the keys do not have: fetch again unless that was done less than
    /// `min_refetch_seconds` ago. Returns whether fresh keys are on their way.
    pub fn want_refetch(&mut self, config: &RemoteJwks, now_ms: u64) -> bool {
        if self.in_flight.is_some() {
            return true;
        }
        let allowed = self
            .last_refetch_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= config.min_refetch_seconds * 1000);
        if allowed && self.jwks_path.is_some() {
            self.refetch_wanted = true;
        }
        self.refetch_wanted
    }

    fn fail(&mut self, now_ms: u64, reason: String) -> FetchOutcome {
        self.failures = self.failures.saturating_add(1);
        let backoff = (1000u64 << self.failures.min(7)).min(MAX_BACKOFF_MS);
        self.next_due_ms = now_ms.saturating_add(backoff);
        FetchOutcome::Failed(reason)
    }
}

/// The path (and query) of the discovery document's `jwks_uri`: it is fetched from the same
/// cluster, so only the path matters. It goes out as `:path`, so it must be a request target:
/// visible ASCII (a URI is ASCII; control characters would be refused by Envoy or split the
/// request), without the fragment, which is never sent (RFC 3986 §3.5).
fn jwks_path_from_discovery(body: &[u8]) -> Option<String> {
    let document: Value = serde_json::from_slice(body).ok()?;
    let uri = document.get("jwks_uri")?.as_str()?;
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path = &after_scheme[after_scheme.find('/')?..];
    let path = path.split_once('#').map_or(path, |(path, _)| path);
    path.bytes()
        .all(|b| b.is_ascii_graphic())
        .then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FailureMode, UntilReady};
    use crate::test_keys::{self, jwk};
    use serde_json::json;

    fn config(discovery: bool) -> RemoteJwks {
        RemoteJwks {
            cluster: "idp".into(),
            authority: "idp.example".into(),
            path: if discovery {
                "/.well-known/openid-configuration".into()
            } else {
                "/jwks.json".into()
            },
            discovery,
            refresh_seconds: 600,
            min_refetch_seconds: 30,
            timeout_ms: 1000,
            until_ready: UntilReady::Wait { wait_ms: 1000 },
            failure_mode: FailureMode::Deny,
        }
    }

    fn jwks() -> Vec<u8> {
        json!({"keys": [jwk(&test_keys::ed25519(), "k1", None)]})
            .to_string()
            .into_bytes()
    }

    const ALGS: &[Algorithm] = &[Algorithm::EdDSA];

    #[test]
    fn fetched_at_once_then_refreshed_on_schedule() {
        let cfg = config(false);
        let mut state = JwksState::new(&cfg);
        let fetch = state.due(&cfg, 0).unwrap();
        assert_eq!(fetch.path, "/jwks.json");
        state.started(1, fetch.kind, 0);
        assert_eq!(state.due(&cfg, 10), None, "one fetch at a time");
        assert!(state.is_fetching(1));
        let outcome = state.on_response(&cfg, ALGS, Some(200), Some(&jwks()), 100);
        assert_eq!(outcome, FetchOutcome::Updated { keys: 1 });
        assert_eq!(state.keys().unwrap().len(), 1);
        assert_eq!(state.due(&cfg, 600_099), None);
        assert!(state.due(&cfg, 600_100).is_some());
    }

    #[test]
    fn a_failed_refresh_keeps_the_keys_and_backs_off() {
        let cfg = config(false);
        let mut state = JwksState::new(&cfg);
        state.started(1, FetchKind::Keys, 0);
        state.on_response(&cfg, ALGS, Some(200), Some(&jwks()), 0);
        let mut now = 600_000;
        let mut delays = Vec::new();
        for (call, status) in [(2, Some(500)), (3, None), (4, Some(200))] {
            let fetch = state.due(&cfg, now).unwrap();
            state.started(call, fetch.kind, now);
            let body: &[u8] = b"not json";
            let outcome = state.on_response(&cfg, ALGS, status, Some(body), now);
            assert!(matches!(outcome, FetchOutcome::Failed(_)), "{outcome:?}");
            assert!(state.keys().is_some(), "old keys kept");
            let next = (now..now + 200_000)
                .find(|t| state.due(&cfg, *t).is_some())
                .unwrap();
            delays.push(next - now);
            now = next;
        }
        assert_eq!(delays, vec![2_000, 4_000, 8_000]);
    }

    #[test]
    fn an_unknown_kid_refetches_at_most_once_per_interval() {
        let cfg = config(false);
        let mut state = JwksState::new(&cfg);
        state.started(1, FetchKind::Keys, 0);
        state.on_response(&cfg, ALGS, Some(200), Some(&jwks()), 0);
        // The scheduled fetch does not count: a key published just after it is fetched at once.
        assert!(state.want_refetch(&cfg, 100));
        let fetch = state.due(&cfg, 100).unwrap();
        state.started(2, fetch.kind, 100);
        assert!(state.want_refetch(&cfg, 101), "a fetch is on its way");
        state.on_response(&cfg, ALGS, Some(200), Some(&jwks()), 110);
        assert!(
            !state.want_refetch(&cfg, 30_099),
            "too soon after the last refetch"
        );
        assert!(state.due(&cfg, 30_099).is_none());
        assert!(state.want_refetch(&cfg, 30_100));
    }

    #[test]
    fn discovery_finds_the_jwks_path_first() {
        let cfg = config(true);
        let mut state = JwksState::new(&cfg);
        let fetch = state.due(&cfg, 0).unwrap();
        assert_eq!(fetch.kind, FetchKind::Discovery);
        assert_eq!(fetch.path, "/.well-known/openid-configuration");
        state.started(1, fetch.kind, 0);
        let document = json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/oauth/jwks?v=2"});
        let outcome = state.on_response(
            &cfg,
            ALGS,
            Some(200),
            Some(document.to_string().as_bytes()),
            5,
        );
        assert_eq!(outcome, FetchOutcome::Discovered);
        let fetch = state.due(&cfg, 5).unwrap();
        assert_eq!(
            fetch,
            Fetch {
                kind: FetchKind::Keys,
                path: "/oauth/jwks?v=2".into()
            }
        );
    }

    #[test]
    fn discovery_documents_without_a_jwks_uri_fail() {
        for body in [
            &b"{}"[..],
            br#"{"jwks_uri": 3}"#,
            br#"{"jwks_uri": "https://host"}"#,
            // Found by fuzz/fuzz_targets/jwks.rs: control characters, and what is not ASCII,
            // cannot go out as `:path`.
            br#"{"jwks_uri": "/.\u007fellon"}"#,
            br#"{"jwks_uri": "https://idp/keys\u0000x"}"#,
            br#"{"jwks_uri": "https://idp/cl\u00e9s"}"#,
            br#"{"jwks_uri": "https://idp/a b"}"#,
        ] {
            assert_eq!(
                jwks_path_from_discovery(body),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_fragment_of_a_jwks_uri_is_not_sent() {
        let body = br#"{"jwks_uri": "https://idp.example/oauth/jwks?v=2#keys"}"#;
        assert_eq!(
            jwks_path_from_discovery(body).as_deref(),
            Some("/oauth/jwks?v=2")
        );
    }
}
