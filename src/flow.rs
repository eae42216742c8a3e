//! One request's way through the filter: decide, maybe wait for keyservice, then change the
//! request headers and continue, or reply locally.

use std::rc::Rc;
use std::time::Duration;

use log::{debug, warn};

use crate::decision::{Decision, DenyReason, Gate, Grant};
use crate::host::{Callout, Host};
use crate::revocation::RevocationStatus;

const AUTHORIZATION: &str = "authorization";

/// Whether the proxy should go on with the request now or hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowAction {
    Continue,
    Pause,
}

pub struct RequestFlow {
    gate: Rc<Gate>,
    context_id: u32,
    /// The callout in flight and the grant to apply if it comes back active.
    pending: Option<(u32, Grant)>,
}

impl RequestFlow {
    pub fn new(gate: Rc<Gate>, context_id: u32) -> Self {
        Self {
            gate,
            context_id,
            pending: None,
        }
    }

    /// Runs on the request headers. `now` is seconds since the Unix epoch, from the host clock.
    pub fn on_request_headers(&mut self, host: &dyn Host, now: u64) -> FlowAction {
        let authorization = host.request_header(AUTHORIZATION);
        match self.gate.decide(authorization.as_deref(), now) {
            Decision::CheckRevocation(check) => {
                let revocation = &self.gate.config.revocation;
                let callout = Callout {
                    cluster: &revocation.cluster,
                    authority: &revocation.authority,
                    path: &check.path,
                    timeout: Duration::from_millis(revocation.timeout_ms),
                };
                match host.dispatch_get(&callout) {
                    Ok(call_id) => {
                        self.pending = Some((call_id, check.grant));
                        FlowAction::Pause
                    }
                    Err(error) => {
                        warn!(
                            "[{}] revocation check could not be dispatched to cluster {:?}: {error}",
                            self.context_id, revocation.cluster
                        );
                        let decision = self
                            .gate
                            .after_revocation(RevocationStatus::Unavailable, check.grant);
                        self.carry_out(host, decision)
                    }
                }
            }
            decision => self.carry_out(host, decision),
        }
    }

    /// Whether the request is held for a callout; body and trailers are held with it.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Runs when a callout answers; `status` is its `:status`, `None` after a timeout or reset.
    pub fn on_callout_response(&mut self, host: &dyn Host, call_id: u32, status: Option<u16>) {
        let Some((pending_id, grant)) = self.pending.take() else {
            return;
        };
        if pending_id != call_id {
            self.pending = Some((pending_id, grant));
            return;
        }
        let answer = RevocationStatus::from_http_status(status);
        if answer == RevocationStatus::Unavailable {
            let failure_mode = self.gate.config.revocation.failure_mode;
            match status {
                Some(status) => warn!(
                    "[{}] revocation service answered {status}; failure_mode {failure_mode:?}",
                    self.context_id
                ),
                None => warn!(
                    "[{}] revocation service gave no answer (timeout or reset); failure_mode {failure_mode:?}",
                    self.context_id
                ),
            }
        }
        let decision = self.gate.after_revocation(answer, grant);
        if self.carry_out(host, decision) == FlowAction::Continue {
            host.resume_request();
        }
    }

    fn carry_out(&self, host: &dyn Host, decision: Decision) -> FlowAction {
        match decision {
            Decision::Allow(grant) => {
                for (name, value) in &grant.headers {
                    host.set_request_header(name, value.as_deref());
                }
                debug!("[{}] allowed", self.context_id);
                FlowAction::Continue
            }
            Decision::Deny(reason) => {
                self.deny(host, reason);
                FlowAction::Pause
            }
            // Only the first stage asks for a check; a second one would be a logic error, so it
            // fails closed.
            Decision::CheckRevocation(_) => {
                self.deny(host, DenyReason::Unavailable);
                FlowAction::Pause
            }
        }
    }

    fn deny(&self, host: &dyn Host, reason: DenyReason) {
        debug!("[{}] denied: {}", self.context_id, reason.label());
        host.send_reply(&reason.reply(&self.gate.config.realm));
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
