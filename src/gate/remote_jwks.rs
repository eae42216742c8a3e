//! A remote JWKS, per worker: fetched through an Envoy cluster at start (on the first tick, not
//! on the first request), refreshed every `refresh_seconds`, kept when a refresh fails (retried
//! with backoff), re-fetched on an unknown `kid` at most once per `min_refetch_seconds`, and found
//! through OIDC discovery when asked.

use std::rc::Rc;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::config::RemoteJwks;
use crate::jose::keys::{VerifyKey, parse_jwks};

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
#[path = "remote_jwks_tests.rs"]
mod tests;
