//! One request's way through the filter: decide; for a key that needs a revocation check, look
//! in the shared cache, wait on a callout already out for it, or dispatch one; for a provider
//! whose keys are not there yet, wait for them; then change the request headers and continue, or
//! reply locally.

use std::rc::Rc;
use std::time::Duration;

use log::{debug, log_enabled, warn};

use crate::config::{KeyMaterial, UntilReady};
use crate::policy::cors::is_preflight;
use crate::gate::decision::{Decision, DenyReason, Gate, Grant, PendingCheck, RequestHead};
use crate::proxy::host::{Callout, CalloutAnswer, Host};
use crate::revocation::in_flight::Waiter;
use crate::gate::parked::{OwnedHead, Parked};
use crate::proxy::apply::{FlowAction, after_answer, carry_out, count_refusal};
use crate::metering::subject::Subject;
use std::sync::Arc;
use crate::proxy::flight::{settle_flight, wake};
use crate::revocation::protocol::{Digest, RevocationStatus, revocation_path};
use crate::revocation::cache::Verdict;

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
        let (decision, trace_subject) = decide(&self.gate, host, &head, self.context_id, now_ms);
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
            decision => {
                count_refusal(&self.gate, host, &decision, trace_subject.as_deref(), now_ms);
                carry_out(
                    &self.gate,
                    host,
                    self.context_id,
                    decision,
                    head.origin.as_deref(),
                    now_ms,
                )
            }
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
        let (answered, waiters) = settle_flight(&gate, host, &digest, answer, now_ms);
        let own = after_answer(&gate, host, answered, grant);
        if carry_out(&gate, host, self.context_id, own, origin.as_deref(), now_ms)
            == FlowAction::Continue
        {
            host.resume_request();
        }
        wake(&gate, host, waiters, answered, now_ms);
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
            return carry_out(&gate, host, self.context_id, decision, origin.as_deref(), now_ms);
        }
        let Some(revocation) = &gate.config.revocation else {
            return carry_out(
                &gate,
                host,
                self.context_id,
                Decision::Deny(DenyReason::Unavailable),
                origin.as_deref(),
                now_ms,
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
            path: &revocation_path(&revocation.path_prefix, &check.digest),
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
                let (answered, waiters) = settle_flight(
                    &gate,
                    host,
                    &check.digest,
                    &CalloutAnswer::default(),
                    now_ms,
                );
                let own = after_answer(&gate, host, answered, request.grant);
                let action = carry_out(
                    &gate,
                    host,
                    self.context_id,
                    own,
                    request.origin.as_deref(),
                    now_ms,
                );
                wake(&gate, host, waiters, answered, now_ms);
                host.switch_context(self.context_id);
                action
            }
        }
    }
}

/// Reads what the decision needs of the current request, and only that: the token sources'
/// headers, the route when rules are configured, the CORS headers when CORS is.
pub(super) fn read_head(gate: &Gate, host: &dyn Host) -> OwnedHead {
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
    let requirement = if gate.reads_route_requirement() {
        host.route_requirement()
    } else {
        None
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
        requirement,
        passing_preflight,
        origin,
    }
}

pub(super) fn view(head: &OwnedHead) -> RequestHead<'_> {
    RequestHead {
        sources: &head.sources,
        path: head.path.as_deref(),
        method: head.method.as_deref(),
        requirement: head.requirement.as_deref(),
        passing_preflight: head.passing_preflight,
    }
}

pub(super) fn decide(
    gate: &Gate,
    host: &dyn Host,
    head: &OwnedHead,
    context_id: u32,
    now_ms: u64,
) -> (Decision, Option<Arc<Subject>>) {
    let view = view(head);
    let (decision, trace) = gate.decide_traced(&view, now_ms);
    if trace.anonymous {
        host.increment(gate.metrics.allowed_anonymous);
    }
    match trace.token_cache_hit {
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
            gate.provider_name(trace.provider).unwrap_or("-"),
            gate.token_fingerprint(&view).as_deref().unwrap_or("-")
        );
    }
    (decision, trace.subject)
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
pub(super) fn cached_answer(
    gate: &Gate,
    host: &dyn Host,
    check: &PendingCheck,
    now_ms: u64,
) -> Option<Decision> {
    let cache = gate.revocation_cache.as_ref()?;
    let Some((verdict, limits)) = cache.lookup_with_limits(host, &check.digest, now_ms) else {
        host.increment(gate.metrics.cache_misses);
        return None;
    };
    host.increment(gate.metrics.cache_hits);
    let status = match verdict {
        Verdict::Active => RevocationStatus::Active,
        Verdict::Revoked => RevocationStatus::Revoked,
    };
    let mut grant = check.grant.clone();
    grant.key_limits = (!limits.is_empty()).then(|| Box::new(limits));
    Some(gate.after_revocation(status, grant))
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
