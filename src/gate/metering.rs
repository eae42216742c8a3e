//! The gate's side of usage and rate limits: who a verified token is counted as, and counting
//! a request against its limits (a key's own from keyservice, else its provider's `key`
//! default, then each limited claim's).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{Provider, RevocationCheck};
use crate::gate::claims::header_value;
use crate::gate::decision::Gate;
use crate::metering::limiter::Take;
use crate::policy::rate_limits::{Exceeded, Limits};
use crate::metering::subject::{Subject, counter_id};
use crate::metering::usage::Outcome;
use crate::revocation::shared::SharedData;
use crate::revocation::protocol::Digest;

/// What counting a request against its limits found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateCheck {
    pub exceeded: Option<Exceeded>,
    /// Counters that took another subject's place.
    pub evictions: u32,
    /// Takes that could not be written (the request is not refused for them).
    pub unavailable: u32,
}

impl Gate {
    /// Whether requests are counted at all (usage reports or any provider's limits).
    pub fn meters(&self) -> bool {
        self.usage.is_some() || self.limiter.is_some()
    }

    /// The subject of a token `provider` verified: built only when something counts.
    pub(super) fn subject(
        &self,
        index: usize,
        provider: &Provider,
        token_digest: &Digest,
        expires: bool,
        claims: &Map<String, Value>,
    ) -> Option<Arc<Subject>> {
        if !self.meters() {
            return None;
        }
        let stored = self.config.revocation.is_some()
            && match provider.revocation {
                RevocationCheck::None => false,
                RevocationCheck::NonExpiring => !expires,
                RevocationCheck::All => true,
            };
        let name = provider.name.as_bytes();
        let limited_claims = provider
            .rate_limits
            .claims
            .iter()
            .enumerate()
            .filter_map(|(at, limited)| {
                let value = header_value(claims, &limited.path).ok().flatten()?;
                let id = counter_id(&[b"claim", name, limited.claim.as_bytes(), value.as_bytes()]);
                Some((at, id))
            })
            .collect();
        Some(Arc::new(Subject {
            provider: index,
            key: stored.then_some(*token_digest),
            key_counter: counter_id(&[b"key", name, token_digest]),
            claims: limited_claims,
        }))
    }

    /// Counts one request of `subject` against each of its limits at `now_ms`, in order: the
    /// key's (`key_limits`, keyservice's, else the provider's `key`), then each claim's. The first
    /// window used up refuses it; the windows counted before it keep the count.
    pub fn take_rates(
        &self,
        shared: &dyn SharedData,
        subject: &Subject,
        key_limits: Option<Limits>,
        now_ms: u64,
    ) -> RateCheck {
        let mut check = RateCheck::default();
        let (Some(limiter), Some(provider)) =
            (&self.limiter, self.config.providers.get(subject.provider))
        else {
            return check;
        };
        let key = key_limits
            .filter(|limits| !limits.is_empty())
            .unwrap_or(provider.rate_limits.key);
        let counters = key
            .as_slice()
            .iter()
            .map(|limit| ("key", &subject.key_counter, *limit))
            .chain(subject.claims.iter().flat_map(|(at, id)| {
                provider.rate_limits.claims.get(*at).into_iter().flat_map(move |limited| {
                    limited
                        .limits
                        .as_slice()
                        .iter()
                        .map(move |limit| (limited.claim.as_str(), id, *limit))
                })
            }));
        for (policy, id, limit) in counters {
            let taken = limiter.take(shared, id, limit, now_ms);
            check.evictions += u32::from(taken.evicted);
            match taken.take {
                Take::Taken { .. } => {}
                Take::Unavailable => check.unavailable += 1,
                Take::Exceeded { reset_seconds } => {
                    check.exceeded = Some(Exceeded {
                        policy: policy.to_owned(),
                        limit,
                        reset_seconds,
                    });
                    break;
                }
            }
        }
        check
    }

    /// Counts a request of a stored key in this worker's usage table.
    pub fn count_usage(&self, subject: &Subject, outcome: Outcome, now_ms: u64) {
        if let (Some(usage), Some(key)) = (&self.usage, &subject.key) {
            usage.borrow_mut().count(key, outcome, now_ms);
        }
    }
}

#[cfg(test)]
#[path = "metering_tests.rs"]
mod tests;
