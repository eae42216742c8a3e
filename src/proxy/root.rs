//! The root context's work, host-free: what happens on the tick (JWKS fetches that are due,
//! requests that waited too long for keys, revocation checks whose leading request went away)
//! and when the callouts it dispatched answer. `plugin` only drives it.
// Natively only the tests drive it (keyservice has no root context); on wasm32, `plugin` does.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use log::{info, warn};

use crate::config::KeyMaterial;
use crate::gate::decision::{Decision, DenyReason, Gate};
use crate::gate::parked::{OwnedHead, take_expired};
use crate::gate::remote_jwks::FetchOutcome;
use crate::proxy::flight::{settle_flight, wake};
use crate::proxy::follower::FeedFollower;
use crate::proxy::reporter::UsageReporter;
use crate::proxy::apply::{FlowAction, carry_out, count_refusal};
use crate::proxy::flow::{cached_answer, decide, view};
use crate::proxy::host::{Callout, CalloutAnswer, Host};
use crate::revocation::in_flight::Waiter;
use crate::revocation::protocol::{Digest, revocation_path};

/// A callout the root context dispatched, and what its answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootCallout {
    /// The revocation check of an orphaned flight, dispatched at `started_ms`.
    Revocation { digest: Digest, started_ms: u64 },
    /// A JWKS or discovery fetch of the provider at this index.
    Jwks { provider: usize },
    /// A long poll of the revocation feed.
    Feed,
    /// A usage report.
    Usage,
}

/// Per-worker root state: the gate its HTTP contexts share, and the callouts it has out.
pub struct RootFlow {
    gate: Rc<Gate>,
    context_id: u32,
    callouts: HashMap<u32, RootCallout>,
    /// With `revocation.feed`.
    feed: Option<FeedFollower>,
    /// With `usage`.
    usage: Option<UsageReporter>,
}

impl RootFlow {
    pub fn new(gate: Rc<Gate>, context_id: u32) -> Self {
        let follows = gate
            .config
            .revocation
            .as_ref()
            .is_some_and(|revocation| revocation.feed.is_some());
        let usage = gate
            .config
            .usage
            .as_ref()
            .map(|usage| UsageReporter::new(lease_owner(context_id), usage.max_keys));
        Self {
            feed: follows.then(|| FeedFollower::new(lease_owner(context_id))),
            usage,
            gate,
            context_id,
            callouts: HashMap::new(),
        }
    }

    pub fn gate(&self) -> &Rc<Gate> {
        &self.gate
    }

    /// The periodic work: fetch the keys that are due, give up on requests that waited past
    /// their deadline for keys, and dispatch the revocation checks nobody leads any more.
    pub fn on_tick(&mut self, host: &dyn Host, now_ms: u64) {
        let gate = Rc::clone(&self.gate);
        if let Some(call_id) = self
            .feed
            .as_mut()
            .and_then(|feed| feed.on_tick(&gate, host, now_ms))
        {
            self.callouts.insert(call_id, RootCallout::Feed);
        }
        if let Some(call_id) = self
            .usage
            .as_mut()
            .and_then(|usage| usage.on_tick(&gate, host, now_ms))
        {
            self.callouts.insert(call_id, RootCallout::Usage);
        }
        self.fetch_due_keys(host, now_ms);
        expire_parked(&gate, host, now_ms);
        host.switch_context(self.context_id);
        if !gate.in_flight.borrow().has_orphans() {
            return;
        }
        let orphans = gate.in_flight.borrow_mut().adopt_orphans(self.context_id);
        let Some(revocation) = &gate.config.revocation else {
            return;
        };
        for digest in orphans {
            let Some(path) = flight_path(&gate, &digest) else {
                continue;
            };
            let callout = Callout {
                cluster: &revocation.cluster,
                authority: &revocation.authority,
                path: &path,
                timeout: Duration::from_millis(revocation.timeout_ms),
            };
            match host.dispatch_get(&callout) {
                Ok(call_id) => {
                    self.callouts.insert(
                        call_id,
                        RootCallout::Revocation {
                            digest,
                            started_ms: now_ms,
                        },
                    );
                }
                Err(problem) => {
                    warn!("revocation check could not be dispatched: {problem}");
                    let (answered, waiters) =
                        settle_flight(&gate, host, &digest, &CalloutAnswer::default(), now_ms);
                    wake(&gate, host, waiters, answered, now_ms);
                    host.switch_context(self.context_id);
                }
            }
        }
    }

    /// A callout of the root context answered. `body` reads the answer's body; only a JWKS
    /// answer needs it.
    pub fn on_callout_response(
        &mut self,
        host: &dyn Host,
        call_id: u32,
        answer: &CalloutAnswer,
        body: impl FnOnce() -> Option<Vec<u8>>,
        now_ms: u64,
    ) {
        let gate = Rc::clone(&self.gate);
        match self.callouts.remove(&call_id) {
            Some(RootCallout::Jwks { provider }) => {
                self.jwks_answered(host, provider, answer, body().as_deref(), now_ms);
            }
            Some(RootCallout::Feed) => {
                if let Some(feed) = self.feed.as_mut() {
                    feed.on_answer(&gate, host, call_id, answer, body().as_deref(), now_ms);
                }
            }
            Some(RootCallout::Usage) => {
                if let Some(usage) = self.usage.as_mut() {
                    usage.on_answer(&gate, host, call_id, answer.status, now_ms);
                }
            }
            Some(RootCallout::Revocation { digest, started_ms }) => {
                host.record(
                    gate.metrics.callout_latency_ms,
                    now_ms.saturating_sub(started_ms),
                );
                let (answered, waiters) = settle_flight(&gate, host, &digest, answer, now_ms);
                wake(&gate, host, waiters, answered, now_ms);
            }
            None => {}
        }
        host.switch_context(self.context_id);
    }

    /// Dispatches the JWKS fetches that are due, from the root context, so their answers
    /// come back here whatever happens to requests.
    fn fetch_due_keys(&mut self, host: &dyn Host, now_ms: u64) {
        let gate = Rc::clone(&self.gate);
        for (index, provider) in gate.config.providers.iter().enumerate() {
            let (KeyMaterial::Remote(remote), Some(state)) = (
                &provider.keys,
                gate.providers.get(index).and_then(|p| p.jwks.as_ref()),
            ) else {
                continue;
            };
            let Some(fetch) = state.borrow().due(remote, now_ms) else {
                continue;
            };
            let callout = Callout {
                cluster: &remote.cluster,
                authority: &remote.authority,
                path: &fetch.path,
                timeout: Duration::from_millis(remote.timeout_ms),
            };
            match host.dispatch_get(&callout) {
                Ok(call_id) => {
                    state.borrow_mut().started(call_id, fetch.kind, now_ms);
                    self.callouts
                        .insert(call_id, RootCallout::Jwks { provider: index });
                }
                Err(problem) => {
                    host.increment(gate.metrics.jwks_error);
                    state.borrow_mut().dispatch_failed(now_ms);
                    warn!(
                        "provider {:?}: JWKS fetch from cluster {:?} could not be dispatched: {problem}",
                        provider.name, remote.cluster
                    );
                }
            }
        }
    }

    fn jwks_answered(
        &mut self,
        host: &dyn Host,
        provider: usize,
        answer: &CalloutAnswer,
        body: Option<&[u8]>,
        now_ms: u64,
    ) {
        let gate = Rc::clone(&self.gate);
        let (Some(config), Some(state)) = (
            gate.config.providers.get(provider),
            gate.providers.get(provider).and_then(|p| p.jwks.as_ref()),
        ) else {
            return;
        };
        let KeyMaterial::Remote(remote) = &config.keys else {
            return;
        };
        let outcome =
            state
                .borrow_mut()
                .on_response(remote, &config.algorithms, answer.status, body, now_ms);
        match outcome {
            FetchOutcome::Updated { keys } => {
                host.increment(gate.metrics.jwks_ok);
                info!("provider {:?}: {keys} key(s) from its JWKS", config.name);
                gate.keys_changed();
                wake_parked(&gate, host, provider, now_ms);
            }
            FetchOutcome::Discovered => {
                host.increment(gate.metrics.jwks_ok);
                info!("provider {:?}: JWKS location discovered", config.name);
                // Fetch the keys now rather than on the next tick.
                self.fetch_due_keys(host, now_ms);
            }
            FetchOutcome::Failed(reason) => {
                host.increment(gate.metrics.jwks_error);
                warn!(
                    "provider {:?}: JWKS fetch failed ({reason}); keeping the current keys and retrying",
                    config.name
                );
                // Requests that waited for a refetch (an unknown `kid`) are decided now, with the
                // keys in hand; without keys they keep waiting for a retry, up to their bound.
                if state.borrow().keys().is_some() {
                    wake_parked(&gate, host, provider, now_ms);
                }
            }
        }
    }
}

/// A name for this worker in the feed's lease: random; without randomness, the context id and
/// the time make a clash between workers unlikely.
fn lease_owner(context_id: u32) -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => u64::from(context_id) ^ std::process::id() as u64,
    }
}

/// A provider's keys changed: every request waiting for them is decided again, in its own
/// context. A revocation check they now need is left to the root context to dispatch.
/// The caller switches back to its own context afterwards.
fn wake_parked(gate: &Gate, host: &dyn Host, provider: usize, now_ms: u64) {
    let Some(state) = gate.providers.get(provider) else {
        return;
    };
    let parked = std::mem::take(&mut *state.parked.borrow_mut());
    for request in parked {
        if !host.switch_context(request.context_id) {
            continue;
        }
        let (decision, subject) = decide(gate, host, &request.head, request.context_id, now_ms);
        count_refusal(gate, host, &decision, subject.as_deref(), now_ms);
        match decision {
            Decision::AwaitKeys { provider } => {
                // Still no usable keys: keep waiting until the original deadline.
                if let Some(state) = gate.providers.get(provider) {
                    state.parked.borrow_mut().push(request);
                }
            }
            Decision::CheckRevocation(check) => {
                if let Some(decision) = cached_answer(gate, host, &check, now_ms) {
                    resume_with(gate, host, request.context_id, decision, &request.head, now_ms);
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
            decision => {
                resume_with(gate, host, request.context_id, decision, &request.head, now_ms);
            }
        }
    }
}

/// Gives up on the requests that waited past their deadline for a provider's keys.
/// The caller switches back to its own context afterwards.
fn expire_parked(gate: &Gate, host: &dyn Host, now_ms: u64) {
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
            resume_with(gate, host, request.context_id, decision, &request.head, now_ms);
        }
    }
}

fn resume_with(
    gate: &Gate,
    host: &dyn Host,
    context_id: u32,
    decision: Decision,
    head: &OwnedHead,
    now_ms: u64,
) {
    if carry_out(gate, host, context_id, decision, head.origin.as_deref(), now_ms)
        == FlowAction::Continue
    {
        host.resume_request();
    }
}

/// The revocation path for a flight the root context dispatches (it has the digest, not the
/// token).
fn flight_path(gate: &Gate, digest: &Digest) -> Option<String> {
    let revocation = gate.config.revocation.as_ref()?;
    Some(revocation_path(&revocation.path_prefix, digest))
}

#[cfg(test)]
#[path = "root_tests.rs"]
mod tests;
