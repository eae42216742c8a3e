//! Carrying out a final decision on the request of the current context: set the granted
//! headers and go on, or send the denial. Shared by the request flow, the end of a revocation
//! flight and the root context.

use log::debug;

use crate::config::FailureMode;
use crate::gate::claims::HeaderWrite;
use crate::gate::decision::{Decision, DenyReason, Gate, Grant};
use crate::proxy::host::Host;
use crate::revocation::protocol::RevocationStatus;

/// Whether the proxy should go on with the request now or hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowAction {
    Continue,
    Pause,
}

/// The decision for a request once its flight has an answer. Requests let through by
/// `failure_mode: allow` are counted apart, so an outage that lets traffic in is visible.
pub fn after_answer(gate: &Gate, host: &dyn Host, status: RevocationStatus, grant: Grant) -> Decision {
    let failure_mode = gate.config.revocation.as_ref().map(|r| r.failure_mode);
    if status == RevocationStatus::Unavailable && failure_mode == Some(FailureMode::Allow) {
        host.increment(gate.metrics.allowed_on_failure);
    }
    if grant.fallback.is_some() && gate.refuses(status) {
        // `allow_missing_or_failed` takes the request on without identity.
        host.increment(gate.metrics.allowed_anonymous);
    }
    gate.after_revocation(status, grant)
}

/// Applies a final decision to the current context's request: sets the granted headers, or sends
/// the denial (with CORS headers for an allowed `Origin`).
pub fn carry_out(
    gate: &Gate,
    host: &dyn Host,
    context_id: u32,
    decision: Decision,
    origin: Option<&str>,
) -> FlowAction {
    match decision {
        Decision::Allow(grant) => {
            for HeaderWrite { name, value } in grant.headers() {
                // A header write costs Envoy more than a read: remove only what is there.
                if value.is_some() || host.request_header(name).is_some() {
                    host.set_request_header(name, value.as_deref());
                }
            }
            for property in grant.properties.iter() {
                host.set_filter_state(&property.name, &property.value);
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
