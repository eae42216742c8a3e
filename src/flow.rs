//! One request's way through the filter: decide; for a key that needs a revocation check, look
//! in the shared cache, wait on a callout already out for it, or dispatch one; then change the
//! request headers and continue, or reply locally.

use std::rc::Rc;
use std::time::Duration;

use log::{debug, log_enabled, warn};

use crate::config::FailureMode;
use crate::cors::is_preflight;
use crate::credential::bearer_token;
use crate::decision::{Decision, DenyReason, Gate, Grant, PendingCheck, RequestHead};
use crate::host::{Callout, CalloutAnswer, Host};
use crate::in_flight::Waiter;
use crate::revocation::{Digest, RevocationStatus, digest, fingerprint, revocation_path};
use crate::revocation_cache::{StoreOutcome, Verdict, max_age};

const AUTHORIZATION: &str = "authorization";

/// Whether the proxy should go on with the request now or hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowAction {
    Continue,
    Pause,
}

enum State {
    Idle,
    /// This request's callout is out; requests for the same key may wait on it.
    Leading {
        call_id: u32,
        digest: Digest,
        grant: Grant,
        origin: Option<String>,
        started_ms: u64,
    },
    /// Waiting on another request's callout for the same key.
    Following {
        digest: Digest,
    },
}

pub struct RequestFlow {
    gate: Rc<Gate>,
    context_id: u32,
    state: State,
}

impl RequestFlow {
    pub fn new(gate: Rc<Gate>, context_id: u32) -> Self {
        Self {
            gate,
            context_id,
            state: State::Idle,
        }
    }

    /// Runs on the request headers. `now_ms` is milliseconds since the Unix epoch, from the host
    /// clock.
    pub fn on_request_headers(&mut self, host: &dyn Host, now_ms: u64) -> FlowAction {
        let gate = Rc::clone(&self.gate);
        let authorization = host.request_header(AUTHORIZATION);
        let (path, mut method) = if gate.needs_route() {
            (host.request_header(":path"), host.request_header(":method"))
        } else {
            (None, None)
        };
        let mut origin = None;
        let mut passing_preflight = false;
        if let Some(cors) = &gate.config.cors {
            origin = host
                .request_header("origin")
                .and_then(|value| String::from_utf8(value).ok());
            if cors.passes_preflight() && origin.is_some() {
                let method = method
                    .get_or_insert_with(|| host.request_header(":method").unwrap_or_default());
                let requested = host.request_header("access-control-request-method");
                passing_preflight = is_preflight(
                    std::str::from_utf8(method).unwrap_or_default(),
                    origin.as_deref(),
                    requested
                        .as_deref()
                        .and_then(|value| std::str::from_utf8(value).ok()),
                );
            }
        }
        let head = RequestHead {
            authorization: authorization.as_deref(),
            path: path.as_deref(),
            method: method.as_deref(),
            passing_preflight,
        };
        let decision = gate.decide(&head, now_ms / 1000);
        if log_enabled!(log::Level::Debug) {
            self.log_decision(&decision, head.authorization);
        }
        match decision {
            Decision::CheckRevocation(check) => self.check_revocation(host, check, origin, now_ms),
            decision => self.carry_out(host, decision, origin.as_deref()),
        }
    }

    /// Whether the request is held for a callout; body and trailers are held with it.
    pub fn is_waiting(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Runs when this request's callout answers.
    pub fn on_callout_response(
        &mut self,
        host: &dyn Host,
        call_id: u32,
        answer: &CalloutAnswer,
        now_ms: u64,
    ) {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let State::Leading {
            call_id: expected,
            digest,
            grant,
            origin,
            started_ms,
        } = state
        else {
            self.state = state;
            return;
        };
        if expected != call_id {
            self.state = State::Leading {
                call_id: expected,
                digest,
                grant,
                origin,
                started_ms,
            };
            return;
        }
        let gate = Rc::clone(&self.gate);
        host.record(
            gate.metrics.callout_latency_ms,
            now_ms.saturating_sub(started_ms),
        );
        let (status, waiters) = settle_flight(&gate, host, &digest, answer, now_ms);
        let own = after_answer(&gate, host, status, grant);
        if self.carry_out(host, own, origin.as_deref()) == FlowAction::Continue {
            host.resume_request();
        }
        wake(&gate, host, waiters, status);
        host.switch_context(self.context_id);
    }

    /// Runs when the request's stream ends, answered or not.
    pub fn on_destroyed(&mut self) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => {}
            State::Leading { digest, .. } => {
                if self
                    .gate
                    .in_flight
                    .borrow_mut()
                    .abandon(&digest, self.context_id)
                {
                    debug!(
                        "[{}] left with requests waiting on its callout; the root context takes over",
                        self.context_id
                    );
                }
            }
            State::Following { digest } => {
                self.gate
                    .in_flight
                    .borrow_mut()
                    .leave(&digest, self.context_id);
            }
        }
    }

    fn check_revocation(
        &mut self,
        host: &dyn Host,
        check: PendingCheck,
        origin: Option<String>,
        now_ms: u64,
    ) -> FlowAction {
        let gate = Rc::clone(&self.gate);
        if let Some(cache) = &gate.revocation_cache {
            if let Some(verdict) = cache.lookup(host, &check.digest, now_ms) {
                host.increment(gate.metrics.cache_hits);
                let status = match verdict {
                    Verdict::Active => RevocationStatus::Active,
                    Verdict::Revoked => RevocationStatus::Revoked,
                };
                let decision = gate.after_revocation(status, check.grant);
                return self.carry_out(host, decision, origin.as_deref());
            }
            host.increment(gate.metrics.cache_misses);
        }
        let request = Waiter {
            context_id: self.context_id,
            grant: check.grant,
            origin,
        };
        let Some(request) = gate.in_flight.borrow_mut().join(check.digest, request) else {
            self.state = State::Following {
                digest: check.digest,
            };
            return FlowAction::Pause;
        };
        let revocation = &gate.config.revocation;
        let callout = Callout {
            cluster: &revocation.cluster,
            authority: &revocation.authority,
            path: &check.path,
            timeout: Duration::from_millis(revocation.timeout_ms),
        };
        match host.dispatch_get(&callout) {
            Ok(call_id) => {
                self.state = State::Leading {
                    call_id,
                    digest: check.digest,
                    grant: request.grant,
                    origin: request.origin,
                    started_ms: now_ms,
                };
                FlowAction::Pause
            }
            Err(error) => {
                warn!(
                    "[{}] revocation check could not be dispatched to cluster {:?}: {error}",
                    self.context_id, revocation.cluster
                );
                let (status, waiters) = settle_flight(
                    &gate,
                    host,
                    &check.digest,
                    &CalloutAnswer::default(),
                    now_ms,
                );
                let own = after_answer(&gate, host, status, request.grant);
                let action = self.carry_out(host, own, request.origin.as_deref());
                wake(&gate, host, waiters, status);
                host.switch_context(self.context_id);
                action
            }
        }
    }

    fn carry_out(&self, host: &dyn Host, decision: Decision, origin: Option<&str>) -> FlowAction {
        carry_out(&self.gate, host, self.context_id, decision, origin)
    }

    fn log_decision(&self, decision: &Decision, authorization: Option<&[u8]>) {
        let token = authorization
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| bearer_token(Some(value), self.gate.config.max_token_bytes).ok());
        let token = token.map_or_else(|| "-".to_owned(), |t| fingerprint(&digest(t)));
        let outcome = match decision {
            Decision::Allow(_) => "allow".to_owned(),
            Decision::Deny(reason) => format!("deny:{}", reason.label()),
            Decision::CheckRevocation(_) => "check_revocation".to_owned(),
        };
        debug!(
            "[{}] provider=default outcome={outcome} token={token}",
            self.context_id
        );
    }
}

/// Ends the flight for `digest` with keyservice's `answer`: counts the callout, caches a
/// definite answer, and returns how to read it with the requests that waited on it.
pub fn settle_flight(
    gate: &Gate,
    host: &dyn Host,
    digest: &Digest,
    answer: &CalloutAnswer,
    now_ms: u64,
) -> (RevocationStatus, Vec<Waiter>) {
    let metrics = &gate.metrics;
    let status = RevocationStatus::from_http_status(answer.status);
    match answer.status {
        Some(200 | 404 | 410) => host.increment(metrics.callouts_ok),
        Some(other) => {
            host.increment(metrics.callouts_error);
            warn!(
                "revocation service answered {other} for token {}; failure_mode {:?}",
                fingerprint(digest),
                gate.config.revocation.failure_mode
            );
        }
        None => {
            host.increment(metrics.callouts_timeout);
            warn!(
                "revocation service gave no answer for token {} (timeout, reset or dispatch failure); failure_mode {:?}",
                fingerprint(digest),
                gate.config.revocation.failure_mode
            );
        }
    }
    let verdict = match status {
        RevocationStatus::Active => Some(Verdict::Active),
        RevocationStatus::Revoked => Some(Verdict::Revoked),
        RevocationStatus::Unknown | RevocationStatus::Unavailable => None,
    };
    if let (Some(cache), Some(verdict), Some(max_age)) = (
        &gate.revocation_cache,
        verdict,
        max_age(answer.cache_control.as_deref()),
    ) && cache.store(host, digest, verdict, max_age, now_ms) == StoreOutcome::Evicted
    {
        host.increment(metrics.cache_evictions);
    }
    (status, gate.in_flight.borrow_mut().finish(digest))
}

/// Decides and carries out every request that waited on a flight, each in its own context.
/// The caller switches back to its own context afterwards.
pub fn wake(gate: &Gate, host: &dyn Host, waiters: Vec<Waiter>, status: RevocationStatus) {
    for waiter in waiters {
        if !host.switch_context(waiter.context_id) {
            continue;
        }
        let decision = after_answer(gate, host, status, waiter.grant);
        let action = carry_out(
            gate,
            host,
            waiter.context_id,
            decision,
            waiter.origin.as_deref(),
        );
        if action == FlowAction::Continue {
            host.resume_request();
        }
    }
}

/// Applies a final decision to the current context's request: sets the granted headers, or sends
/// the denial (with CORS headers for an allowed `Origin`).
fn carry_out(
    gate: &Gate,
    host: &dyn Host,
    context_id: u32,
    decision: Decision,
    origin: Option<&str>,
) -> FlowAction {
    match decision {
        Decision::Allow(grant) => {
            for (name, value) in &grant.headers {
                host.set_request_header(name, value.as_deref());
            }
            host.increment(gate.metrics.allowed);
            FlowAction::Continue
        }
        Decision::Deny(reason) => {
            debug!("[{context_id}] denied: {}", reason.label());
            host.increment(gate.metrics.denied(reason.label()));
            let mut reply = reason.reply(&gate.config);
            if let Some(cors) = &gate.config.cors {
                reply.headers.extend(cors.denial_headers(origin));
            }
            host.send_reply(&reply);
            FlowAction::Pause
        }
        // Only the first stage asks for a check; a second one would be a logic error, so it
        // fails closed.
        Decision::CheckRevocation(_) => carry_out(
            gate,
            host,
            context_id,
            Decision::Deny(DenyReason::Unavailable),
            origin,
        ),
    }
}

/// The revocation path for a flight the root context dispatches (it has the digest, not the
/// token).
pub fn flight_path(gate: &Gate, digest: &Digest) -> String {
    revocation_path(&gate.config.revocation.path_prefix, digest)
}

/// The decision for a request once its flight has an answer. Requests let through by
/// `failure_mode: allow` are counted apart, so an outage that lets traffic in is visible.
fn after_answer(gate: &Gate, host: &dyn Host, status: RevocationStatus, grant: Grant) -> Decision {
    if status == RevocationStatus::Unavailable
        && gate.config.revocation.failure_mode == FailureMode::Allow
    {
        host.increment(gate.metrics.allowed_on_failure);
    }
    gate.after_revocation(status, grant)
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
