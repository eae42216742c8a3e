//! One request's way through the filter: decide; for a key that needs a revocation check, look
//! in the shared cache, wait on a callout already out for it, or dispatch one; for a provider
//! whose keys are not there yet, wait for them; then change the request headers and continue, or
//! reply locally.

use std::rc::Rc;
use std::time::Duration;

use log::{debug, log_enabled, warn};

use crate::config::{FailureMode, KeyMaterial, UntilReady};
use crate::cors::is_preflight;
use crate::decision::{Decision, DenyReason, Gate, Grant, PendingCheck, RequestHead};
use crate::host::{Callout, CalloutAnswer, Host};
use crate::in_flight::Waiter;
use crate::parked::{OwnedHead, Parked, take_expired};
use crate::revocation::{Digest, RevocationStatus, fingerprint, revocation_path};
use crate::revocation_cache::{StoreOutcome, Verdict, max_age};

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
    /// Waiting for a provider's keys.
    Parked {
        provider: usize,
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
        let head = read_head(&self.gate, host);
        let decision = decide(&self.gate, host, &head, self.context_id, now_ms);
        match decision {
            Decision::CheckRevocation(check) => {
                self.check_revocation(host, check, head.origin, now_ms)
            }
            Decision::AwaitKeys { provider } => {
                let deadline_ms = now_ms.saturating_add(wait_bound(&self.gate, provider));
                self.gate.providers[provider]
                    .parked
                    .borrow_mut()
                    .push(Parked {
                        context_id: self.context_id,
                        deadline_ms,
                        head,
                    });
                self.state = State::Parked { provider };
                FlowAction::Pause
            }
            decision => carry_out(
                &self.gate,
                host,
                self.context_id,
                decision,
                head.origin.as_deref(),
            ),
        }
    }

    /// Whether the request is held; body and trailers are held with it.
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
        if carry_out(&gate, host, self.context_id, own, origin.as_deref()) == FlowAction::Continue {
            host.resume_request();
        }
        wake(&gate, host, waiters, status);
        host.switch_context(self.context_id);
    }

    /// Runs when the request's stream ends, answered or not.
    pub fn on_destroyed(&mut self) {
        let context_id = self.context_id;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => {}
            State::Leading { digest, .. } => {
                if self
                    .gate
                    .in_flight
                    .borrow_mut()
                    .abandon(&digest, context_id)
                {
                    debug!(
                        "[{context_id}] left with requests waiting on its callout; the root context takes over"
                    );
                }
            }
            State::Following { digest } => {
                self.gate.in_flight.borrow_mut().leave(&digest, context_id);
            }
            State::Parked { provider } => {
                if let Some(state) = self.gate.providers.get(provider) {
                    state
                        .parked
                        .borrow_mut()
                        .retain(|parked| parked.context_id != context_id);
                }
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
        if let Some(decision) = cached_answer(&gate, host, &check, now_ms) {
            return carry_out(&gate, host, self.context_id, decision, origin.as_deref());
        }
        let Some(revocation) = &gate.config.revocation else {
            return carry_out(
                &gate,
                host,
                self.context_id,
                Decision::Deny(DenyReason::Unavailable),
                origin.as_deref(),
            );
        };
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
                let action =
                    carry_out(&gate, host, self.context_id, own, request.origin.as_deref());
                wake(&gate, host, waiters, status);
                host.switch_context(self.context_id);
                action
            }
        }
    }
}

/// Reads what the decision needs of the current request, and only that: the token sources'
/// headers, the route when rules are configured, the CORS headers when CORS is.
fn read_head(gate: &Gate, host: &dyn Host) -> OwnedHead {
    let sources = gate
        .source_headers()
        .iter()
        .map(|name| host.request_header(name))
        .collect();
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
        // Only preflights from allowed origins skip the token; others are authenticated
        // like any request (and so refused: a preflight carries no credentials).
        if cors.passes_preflight() && origin.as_deref().is_some_and(|o| cors.allows_origin(o)) {
            let method =
                method.get_or_insert_with(|| host.request_header(":method").unwrap_or_default());
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
    OwnedHead {
        sources,
        path,
        method,
        passing_preflight,
        origin,
    }
}

fn view(head: &OwnedHead) -> RequestHead<'_> {
    RequestHead {
        sources: &head.sources,
        path: head.path.as_deref(),
        method: head.method.as_deref(),
        passing_preflight: head.passing_preflight,
    }
}

fn decide(
    gate: &Gate,
    host: &dyn Host,
    head: &OwnedHead,
    context_id: u32,
    now_ms: u64,
) -> Decision {
    let view = view(head);
    let decision = gate.decide(&view, now_ms);
    match gate.last_token_cache_hit() {
        Some(true) => host.increment(gate.metrics.token_cache_hits),
        Some(false) => host.increment(gate.metrics.token_cache_misses),
        None => {}
    }
    if log_enabled!(log::Level::Debug) {
        let outcome = match &decision {
            Decision::Allow(_) => "allow".to_owned(),
            Decision::Deny(reason) => format!("deny:{}", reason.label()),
            Decision::CheckRevocation(_) => "check_revocation".to_owned(),
            Decision::AwaitKeys { .. } => "await_keys".to_owned(),
        };
        debug!(
            "[{context_id}] provider={} outcome={outcome} token={}",
            gate.last_provider_name().unwrap_or("-"),
            gate.token_fingerprint(&view).as_deref().unwrap_or("-")
        );
    }
    decision
}

/// How long a request may wait for its provider's keys.
fn wait_bound(gate: &Gate, provider: usize) -> u64 {
    match gate.config.providers.get(provider).map(|p| &p.keys) {
        Some(KeyMaterial::Remote(remote)) => match remote.until_ready {
            UntilReady::Wait { wait_ms } => wait_ms,
            UntilReady::Fail => remote.timeout_ms,
        },
        _ => 0,
    }
}

/// The decision from the shared cache, when it holds keyservice's answer for this key.
fn cached_answer(
    gate: &Gate,
    host: &dyn Host,
    check: &PendingCheck,
    now_ms: u64,
) -> Option<Decision> {
    let cache = gate.revocation_cache.as_ref()?;
    let Some(verdict) = cache.lookup(host, &check.digest, now_ms) else {
        host.increment(gate.metrics.cache_misses);
        return None;
    };
    host.increment(gate.metrics.cache_hits);
    let status = match verdict {
        Verdict::Active => RevocationStatus::Active,
        Verdict::Revoked => RevocationStatus::Revoked,
    };
    Some(gate.after_revocation(status, check.grant.clone()))
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
    let failure_mode = gate
        .config
        .revocation
        .as_ref()
        .map_or(FailureMode::Deny, |r| r.failure_mode);
    match answer.status {
        Some(200 | 404 | 410) => host.increment(metrics.callouts_ok),
        // Envoy answers a callout that ran past its timeout with its own 504.
        Some(504) | None => {
            host.increment(metrics.callouts_timeout);
            warn!(
                "revocation service gave no answer in time for token {} (timeout, reset or dispatch failure); failure_mode {failure_mode:?}",
                fingerprint(digest)
            );
        }
        Some(other) => {
            host.increment(metrics.callouts_error);
            warn!(
                "revocation service answered {other} for token {}; failure_mode {failure_mode:?}",
                fingerprint(digest)
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

/// A provider's keys changed: every request waiting for them is decided again, in its own
/// context. A revocation check they now need is left to the root context to dispatch.
/// The caller switches back to its own context afterwards.
pub fn wake_parked(gate: &Gate, host: &dyn Host, provider: usize, now_ms: u64) {
    let Some(state) = gate.providers.get(provider) else {
        return;
    };
    let parked = std::mem::take(&mut *state.parked.borrow_mut());
    for request in parked {
        if !host.switch_context(request.context_id) {
            continue;
        }
        match decide(gate, host, &request.head, request.context_id, now_ms) {
            Decision::AwaitKeys { provider } => {
                // Still no usable keys: keep waiting until the original deadline.
                if let Some(state) = gate.providers.get(provider) {
                    state.parked.borrow_mut().push(request);
                }
            }
            Decision::CheckRevocation(check) => {
                if let Some(decision) = cached_answer(gate, host, &check, now_ms) {
                    resume_with(gate, host, request.context_id, decision, &request.head);
                } else {
                    gate.in_flight.borrow_mut().join_or_orphan(
                        check.digest,
                        Waiter {
                            context_id: request.context_id,
                            grant: check.grant,
                            origin: request.head.origin,
                        },
                    );
                }
            }
            decision => resume_with(gate, host, request.context_id, decision, &request.head),
        }
    }
}

/// Gives up on the requests that waited past their deadline for a provider's keys.
/// The caller switches back to its own context afterwards.
pub fn expire_parked(gate: &Gate, host: &dyn Host, now_ms: u64) {
    for (provider, state) in gate.providers.iter().enumerate() {
        let expired = take_expired(&mut state.parked.borrow_mut(), now_ms);
        for request in expired {
            if !host.switch_context(request.context_id) {
                continue;
            }
            warn!(
                "[{}] keys of provider {:?} did not arrive in time",
                request.context_id, gate.config.providers[provider].name
            );
            let view = view(&request.head);
            let decision = gate.keys_missing(provider, &view);
            if decision != Decision::Deny(DenyReason::KeysUnavailable) {
                host.increment(gate.metrics.allowed_on_failure);
            }
            resume_with(gate, host, request.context_id, decision, &request.head);
        }
    }
}

fn resume_with(
    gate: &Gate,
    host: &dyn Host,
    context_id: u32,
    decision: Decision,
    head: &OwnedHead,
) {
    if carry_out(gate, host, context_id, decision, head.origin.as_deref()) == FlowAction::Continue {
        host.resume_request();
    }
}

/// The revocation path for a flight the root context dispatches (it has the digest, not the
/// token).
pub fn flight_path(gate: &Gate, digest: &Digest) -> Option<String> {
    let revocation = gate.config.revocation.as_ref()?;
    Some(revocation_path(&revocation.path_prefix, digest))
}

/// The decision for a request once its flight has an answer. Requests let through by
/// `failure_mode: allow` are counted apart, so an outage that lets traffic in is visible.
fn after_answer(gate: &Gate, host: &dyn Host, status: RevocationStatus, grant: Grant) -> Decision {
    let failure_mode = gate.config.revocation.as_ref().map(|r| r.failure_mode);
    if status == RevocationStatus::Unavailable && failure_mode == Some(FailureMode::Allow) {
        host.increment(gate.metrics.allowed_on_failure);
    }
    gate.after_revocation(status, grant)
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
            for (name, value) in grant.headers() {
                // A header write costs Envoy more than a read: remove only what is there.
                if value.is_some() || host.request_header(name).is_some() {
                    host.set_request_header(name, value.as_deref());
                }
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
        // Only the first stage asks for a check or for keys; a second one would be a logic
        // error, so it fails closed.
        Decision::CheckRevocation(_) | Decision::AwaitKeys { .. } => carry_out(
            gate,
            host,
            context_id,
            Decision::Deny(DenyReason::Unavailable),
            origin,
        ),
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
