//! Meeting a requirement: which request needs what (the route's selection, the path rules, the
//! default), one token from any of a requirement's providers or one from each, its claim
//! conditions and scopes, and what `allow_missing` and `allow_missing_or_failed` make of a
//! request without a valid token.

use crate::config::requirements::index_of;
use crate::config::{Absent, Provider, Requirement, RevocationCheck};
use crate::extract::credential::CredentialError;
use crate::gate::claims::{HeaderWrite, Property};
use crate::gate::decision::{
    Admitted, Decision, DenyReason, Gate, Grant, PendingCheck, RequestHead, Trace,
};
use crate::policy::conditions::all_hold;
use crate::policy::rules::RuleAction;
use crate::policy::scopes::missing_scopes;
use crate::revocation::protocol::digest;

/// What a request must meet: the requirement (an index into `Config::requirements`) and the
/// scopes a rule asks for.
#[derive(Clone, Copy)]
pub(super) struct Demand<'c> {
    pub(super) requirement: usize,
    pub(super) scopes: Option<&'c [String]>,
}

impl Gate {
    /// What the request must meet; `None` when it goes on without a token (an `allow` rule, or a
    /// preflight the configuration passes).
    pub(super) fn demand(&self, head: &RequestHead<'_>) -> Result<Option<Demand<'_>>, DenyReason> {
        // The route's own selection comes first: Envoy matched it on the path it forwards.
        if self.reads_route_requirement()
            && let Some(name) = head.requirement
        {
            let requirement = std::str::from_utf8(name)
                .ok()
                .and_then(|name| index_of(&self.config.requirements, name))
                .ok_or(DenyReason::UnknownRequirement)?;
            if head.passing_preflight {
                return Ok(None);
            }
            return Ok(Some(Demand {
                requirement,
                scopes: None,
            }));
        }
        let route = self.route_action(head)?;
        let scopes = match &route.action {
            RuleAction::Deny => return Err(DenyReason::ForbiddenRule),
            RuleAction::Allow => return Ok(None),
            // A preflight carries no credentials; a closed route stays closed to it (above).
            _ if head.passing_preflight => return Ok(None),
            RuleAction::Authenticate => None,
            RuleAction::RequireScopes(scopes) => Some(scopes.as_slice()),
        };
        Ok(Some(Demand {
            requirement: route.requirement.unwrap_or(self.config.default_requirement),
            scopes,
        }))
    }

    /// What `allow_missing_or_failed` makes of a decision: a refusal becomes the request without
    /// identity, and a revocation check carries that as its fallback.
    pub(super) fn soften(
        &self,
        requirement: &Requirement,
        decision: Decision,
        head: &RequestHead<'_>,
        trace: &mut Trace,
    ) -> Decision {
        if requirement.absent != Absent::AllowMissingOrFailed {
            return decision;
        }
        match decision {
            Decision::Deny(_) => {
                trace.anonymous = true;
                Decision::Allow(self.pass_through(head))
            }
            Decision::CheckRevocation(mut check) => {
                check.grant.fallback = Some(Box::new(self.pass_through(head)));
                Decision::CheckRevocation(check)
            }
            decision => decision,
        }
    }

    /// A requirement met by one token, from any of its providers.
    pub(super) fn meet_one(
        &self,
        requirement: &Requirement,
        demand: Demand<'_>,
        head: &RequestHead<'_>,
        now_ms: u64,
        trace: &mut Trace,
    ) -> Decision {
        let presented = match self.presented(head, &self.requirement_sources[demand.requirement]) {
            Ok(presented) => presented,
            Err(error) if !error.token_presented() && requirement.absent != Absent::Refuse => {
                trace.anonymous = true;
                return Decision::Allow(self.pass_through(head));
            }
            Err(error) => return Decision::Deny(DenyReason::Credential(error)),
        };
        let admitted =
            match self.verify_token(head, &presented, &requirement.providers, now_ms, trace) {
                Ok(admitted) => admitted,
                Err(decision) => return decision,
            };
        let claims = &admitted.verified.claims;
        if !all_hold(&requirement.conditions, claims) {
            return Decision::Deny(DenyReason::ForbiddenClaims);
        }
        if let Some(required) = demand.scopes
            && !missing_scopes(required, claims).is_empty()
        {
            return Decision::Deny(DenyReason::InsufficientScope(required.join(" ")));
        }
        let provider = &self.config.providers[admitted.verified.provider];
        let grant = self.grant(&admitted, provider, &presented, head);
        self.check_or_allow(&admitted, provider, presented.token, grant)
    }

    /// A requirement met by a token from every one of its providers (`all`). At most one of
    /// them checks revocation (configuration makes sure).
    pub(super) fn meet_all(
        &self,
        requirement: &Requirement,
        demand: Demand<'_>,
        head: &RequestHead<'_>,
        now_ms: u64,
        trace: &mut Trace,
    ) -> Decision {
        let mut presented = Vec::with_capacity(requirement.providers.len());
        let mut missing = false;
        for &provider in &requirement.providers {
            match self.presented(head, &self.provider_sources[provider]) {
                Ok(token) => presented.push((provider, token)),
                Err(error) if !error.token_presented() => missing = true,
                Err(error) => return Decision::Deny(DenyReason::Credential(error)),
            }
        }
        if missing {
            if presented.is_empty() && requirement.absent != Absent::Refuse {
                trace.anonymous = true;
                return Decision::Allow(self.pass_through(head));
            }
            return Decision::Deny(DenyReason::Credential(CredentialError::Missing));
        }
        let mut admitted = Vec::with_capacity(presented.len());
        for (provider, token) in &presented {
            match self.verify_token(head, token, &[*provider], now_ms, trace) {
                Ok(one) => admitted.push(one),
                Err(decision) => return decision,
            }
        }
        if let Some(required) = demand.scopes {
            // Each scope granted by one of the tokens.
            let lacking = required.iter().any(|scope| {
                admitted.iter().all(|one| {
                    !missing_scopes(std::slice::from_ref(scope), &one.verified.claims).is_empty()
                })
            });
            if lacking {
                return Decision::Deny(DenyReason::InsufficientScope(required.join(" ")));
            }
        }
        let mut grant = Grant::default();
        let mut identity: Vec<HeaderWrite> = self.anonymous.to_vec();
        let mut properties: Vec<Property> = Vec::new();
        let mut checked = None;
        for (one, (_, token)) in admitted.iter().zip(&presented) {
            let provider = &self.config.providers[one.verified.provider];
            let own = self.grant(one, provider, token, head);
            // The first provider listed that sets a header, or a property, sets it.
            for (slot, write) in identity.iter_mut().zip(own.identity.iter()) {
                if slot.value.is_none() {
                    slot.value.clone_from(&write.value);
                }
            }
            for property in own.properties.iter() {
                if !properties.iter().any(|p| p.name == property.name) {
                    properties.push(property.clone());
                }
            }
            for write in own.stripped {
                if !grant.stripped.iter().any(|w| w.name == write.name) {
                    grant.stripped.push(write);
                }
            }
            if self.needs_check(one, provider) {
                checked = Some((one, provider, token.token));
            }
        }
        grant.identity = identity.into();
        grant.properties = properties.into();
        // Counted as the token keyservice checks (a stored key), else the first.
        grant.subject = checked
            .map(|(one, _, _)| one)
            .or(admitted.first())
            .and_then(|one| one.subject.clone());
        match checked {
            Some((one, provider, token)) => self.check_or_allow(one, provider, token, grant),
            None => Decision::Allow(grant),
        }
    }

    /// Whether an admitted token is checked against keyservice.
    fn needs_check(&self, admitted: &Admitted, provider: &Provider) -> bool {
        self.config.revocation.is_some()
            && match provider.revocation {
                RevocationCheck::None => false,
                RevocationCheck::NonExpiring => !admitted.verified.expires(),
                RevocationCheck::All => true,
            }
    }

    /// Allow with `grant`, or first ask keyservice about the token.
    fn check_or_allow(
        &self,
        admitted: &Admitted,
        provider: &Provider,
        token: &str,
        grant: Grant,
    ) -> Decision {
        if !self.needs_check(admitted, provider) {
            return Decision::Allow(grant);
        }
        let digest = admitted.digest.unwrap_or_else(|| digest(token));
        Decision::CheckRevocation(PendingCheck {
            digest,
            grant,
        })
    }
}

#[cfg(test)]
#[path = "requirement_tests.rs"]
mod tests;
