//! Carrying out a final decision on the request of the current context: count it against its
//! rate limits, set the granted headers and go on, or send the denial. Shared by the request
//! flow, the end of a revocation flight and the root context.

use log::debug;

use crate::config::FailureMode;
use crate::gate::claims::HeaderWrite;
use crate::gate::decision::{Decision, DenyReason, Gate, Grant};
use crate::policy::rate_limits::Limits;
use crate::metering::subject::Subject;
use crate::metering::usage::Outcome;
use crate::proxy::host::Host;
use crate::revocation::protocol::RevocationStatus;

/// Whether the proxy should go on with the request now or hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowAction {
    Continue,
    Pause,
}

/// keyservice's answer about a key, as the decision uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub status: RevocationStatus,
    /// The key's own rate limits, when keyservice gave them.
    pub key_limits: Option<Limits>,
}

/// The decision for a request once its flight has an answer. Requests let through by
/// `failure_mode: allow` are counted apart, so an outage that lets traffic in is visible.
pub fn after_answer(gate: &Gate, host: &dyn Host, answered: Answered, mut grant: Grant) -> Decision {
    let status = answered.status;
    let failure_mode = gate.config.revocation.as_ref().map(|r| r.failure_mode);
    if status == RevocationStatus::Unavailable && failure_mode == Some(FailureMode::Allow) {
        host.increment(gate.metrics.allowed_on_failure);
    }
    if grant.fallback.is_some() && gate.refuses(status) {
        // `allow_missing_or_failed` takes the request on without identity.
        host.increment(gate.metrics.allowed_anonymous);
    }
    grant.key_limits = answered.key_limits.map(Box::new);
    gate.after_revocation(status, grant)
}

/// Applies a final decision to the current context's request at `now_ms`: counts it against
/// its rate limits (a used-up window turns it into a 429), sets the granted headers, or sends
/// the denial (with CORS headers for an allowed `Origin`).
pub fn carry_out(
    gate: &Gate,
    host: &dyn Host,
    context_id: u32,
    decision: Decision,
    origin: Option<&str>,
    now_ms: u64,
) -> FlowAction {
    match decision {
        Decision::Allow(grant) => {
            if let Some(subject) = &grant.subject
                && let Some(exceeded) = take_rates(gate, host, subject, grant.key_limits.as_deref().copied(), now_ms)
            {
                count(gate, host, subject, Outcome::RateLimited, now_ms);
                return carry_out(
                    gate,
                    host,
                    context_id,
                    Decision::Deny(DenyReason::RateLimited(exceeded)),
                    origin,
                    now_ms,
                );
            }
            for HeaderWrite { name, value } in grant.headers() {
                // A header write costs Envoy more than a read: remove only what is there.
                if value.is_some() || host.request_header(name).is_some() {
                    host.set_request_header(name, value.as_deref());
                }
            }
            for property in grant.properties.iter() {
                host.set_filter_state(&property.name, &property.value);
            }
            if let Some(subject) = &grant.subject {
                count(gate, host, subject, Outcome::Allowed, now_ms);
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
            now_ms,
        ),
    }
}

/// Counts the request against its limits; the limit it exceeds, if one.
fn take_rates(
    gate: &Gate,
    host: &dyn Host,
    subject: &Subject,
    key_limits: Option<Limits>,
    now_ms: u64,
) -> Option<crate::policy::rate_limits::Exceeded> {
    gate.limiter.as_ref()?;
    let check = gate.take_rates(host, subject, key_limits, now_ms);
    for _ in 0..check.evictions {
        host.increment(gate.metrics.rate_limit_evictions);
    }
    for _ in 0..check.unavailable {
        host.increment(gate.metrics.rate_limit_unavailable);
    }
    check.exceeded
}

/// Counts a 403 (a scope or claim the route requires) against the token's subject.
pub fn count_refusal(
    gate: &Gate,
    host: &dyn Host,
    decision: &Decision,
    subject: Option<&Subject>,
    now_ms: u64,
) {
    if let (
        Decision::Deny(DenyReason::InsufficientScope(_) | DenyReason::ForbiddenClaims),
        Some(subject),
    ) = (decision, subject)
    {
        count(gate, host, subject, Outcome::Forbidden, now_ms);
    }
}

/// Counts a request of `subject` that ended with `outcome`: in its provider's stats, and for a
/// stored key in the worker's usage table.
pub fn count(gate: &Gate, host: &dyn Host, subject: &Subject, outcome: Outcome, now_ms: u64) {
    if let Some(counters) = gate.metrics.provider_requests.get(subject.provider) {
        host.increment(match outcome {
            Outcome::Allowed => counters.allowed,
            Outcome::Forbidden => counters.forbidden,
            Outcome::RateLimited => counters.rate_limited,
        });
    }
    gate.count_usage(subject, outcome, now_ms);
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
