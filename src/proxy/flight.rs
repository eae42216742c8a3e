//! The end of a revocation flight, whoever dispatched its callout (a request or the root
//! context): count and cache keyservice's answer, then decide every request that waited on it.

use log::warn;

use crate::config::FailureMode;
use crate::gate::decision::{Gate, Grant};
use crate::proxy::apply::{Answered, FlowAction, after_answer, carry_out};
use crate::proxy::host::{CalloutAnswer, Host};
use crate::revocation::cache::{StoreOutcome, Verdict, max_age};
use crate::revocation::in_flight::Waiter;
use crate::revocation::protocol::{Digest, RevocationStatus, fingerprint};

/// Ends the flight for `digest` with keyservice's `answer`: counts the callout, caches a
/// definite answer, and returns how to read it with the requests that waited on it.
pub fn settle_flight(
    gate: &Gate,
    host: &dyn Host,
    digest: &Digest,
    answer: &CalloutAnswer,
    now_ms: u64,
) -> (Answered, Vec<Waiter<Grant>>) {
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
    let key_limits = answer.key_limits.filter(|_| status == RevocationStatus::Active);
    if let (Some(cache), Some(verdict), Some(max_age)) = (
        &gate.revocation_cache,
        verdict,
        max_age(answer.cache_control.as_deref()),
    ) && cache.store_with_limits(
        host,
        digest,
        verdict,
        key_limits.unwrap_or_default(),
        max_age,
        now_ms,
    ) == StoreOutcome::Evicted
    {
        host.increment(metrics.cache_evictions);
    }
    let answered = Answered { status, key_limits };
    (answered, gate.in_flight.borrow_mut().finish(digest))
}

/// Decides and carries out every request that waited on a flight, each in its own context.
/// The caller switches back to its own context afterwards.
pub fn wake(
    gate: &Gate,
    host: &dyn Host,
    waiters: Vec<Waiter<Grant>>,
    answered: Answered,
    now_ms: u64,
) {
    for waiter in waiters {
        if !host.switch_context(waiter.context_id) {
            continue;
        }
        let decision = after_answer(gate, host, answered, waiter.grant);
        let action = carry_out(
            gate,
            host,
            waiter.context_id,
            decision,
            waiter.origin.as_deref(),
            now_ms,
        );
        if action == FlowAction::Continue {
            host.resume_request();
        }
    }
}
