//! keygate's Envoy stats. Defined once per VM; Envoy merges the VMs' values under one name, and
//! shows them on the admin `/stats` and `/stats/prometheus` pages.

/// Counter or histogram, as proxy-wasm defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// Why a request was denied, as a stat name suffix.
pub const DENY_REASONS: [&str; 12] = [
    "missing",
    "malformed",
    "bad_signature",
    "unknown_kid",
    "expired",
    "invalid_claims",
    "revoked",
    "unknown_key",
    "forbidden_scope",
    "forbidden_rule",
    "bad_path",
    "unavailable",
];

/// The ids of every stat; `None` where the host refused to define one (stats are then skipped,
/// never a reason to fail a request).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub allowed: Option<u32>,
    /// Requests let through by `failure_mode: allow` (also counted in `allowed`).
    pub allowed_on_failure: Option<u32>,
    pub denied: [Option<u32>; DENY_REASONS.len()],
    pub cache_hits: Option<u32>,
    pub cache_misses: Option<u32>,
    pub cache_evictions: Option<u32>,
    /// Verified-token cache: tokens found there, and tokens verified because they were not.
    pub token_cache_hits: Option<u32>,
    pub token_cache_misses: Option<u32>,
    pub callouts_ok: Option<u32>,
    pub callouts_error: Option<u32>,
    pub callouts_timeout: Option<u32>,
    pub callout_latency_ms: Option<u32>,
    pub jwks_ok: Option<u32>,
    pub jwks_error: Option<u32>,
    /// Ticks on which a worker handed its pending counts to Envoy (see `PendingCounts`): one per
    /// tick, so a reader can tell that every count made before some point has arrived.
    pub counts_flushed: Option<u32>,
}

pub const PREFIX: &str = "keygate.";

/// Counter increments not yet handed to the host. A host call costs Envoy more than the
/// counting, so the proxy-wasm layer adds them up here and hands each counter's sum over once
/// per tick (100 ms): stats lag by at most that, requests lose one host call or two.
#[derive(Debug, Default)]
pub struct PendingCounts {
    /// (metric id, increments); a handful of counters, so a list beats a map.
    counts: Vec<(u32, u64)>,
}

impl PendingCounts {
    pub fn add(&mut self, metric: u32) {
        match self.counts.iter_mut().find(|(id, _)| *id == metric) {
            Some((_, count)) => *count += 1,
            None => self.counts.push((metric, 1)),
        }
    }

    /// The sums since the last call, each counter once; the counts start again from zero.
    pub fn take(&mut self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.counts
            .iter_mut()
            .filter(|(_, count)| *count > 0)
            .map(|(id, count)| (*id, std::mem::take(count)))
    }
}

impl Metrics {
    /// Defines every stat through `define(kind, name)`.
    pub fn define(define: &mut dyn FnMut(MetricKind, &str) -> Option<u32>) -> Self {
        let mut counter = |name: &str| define(MetricKind::Counter, &format!("{PREFIX}{name}"));
        let mut metrics = Metrics {
            allowed: counter("requests_allowed"),
            allowed_on_failure: counter("requests_allowed_on_failure"),
            cache_hits: counter("revocation_cache_hits"),
            cache_misses: counter("revocation_cache_misses"),
            cache_evictions: counter("revocation_cache_evictions"),
            token_cache_hits: counter("token_cache_hits"),
            token_cache_misses: counter("token_cache_misses"),
            callouts_ok: counter("callouts_ok"),
            callouts_error: counter("callouts_error"),
            callouts_timeout: counter("callouts_timeout"),
            jwks_ok: counter("jwks_fetch_ok"),
            jwks_error: counter("jwks_fetch_error"),
            counts_flushed: counter("counts_flushed"),
            ..Metrics::default()
        };
        for (slot, reason) in metrics.denied.iter_mut().zip(DENY_REASONS) {
            *slot = counter(&format!("requests_denied_{reason}"));
        }
        metrics.callout_latency_ms = define(
            MetricKind::Histogram,
            &format!("{PREFIX}callout_latency_ms"),
        );
        metrics
    }

    pub fn denied(&self, reason: &str) -> Option<u32> {
        DENY_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|index| self.denied[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stat_is_defined_under_the_keygate_prefix() {
        let mut defined = Vec::new();
        let metrics = Metrics::define(&mut |kind, name| {
            defined.push((kind, name.to_owned()));
            Some(defined.len() as u32)
        });
        assert_eq!(defined.len(), 13 + DENY_REASONS.len() + 1);
        assert!(defined.iter().all(|(_, name)| name.starts_with("keygate.")));
        assert!(defined.contains(&(
            MetricKind::Histogram,
            "keygate.callout_latency_ms".to_owned()
        )));
        assert!(defined.contains(&(
            MetricKind::Counter,
            "keygate.requests_denied_unknown_key".to_owned()
        )));
        assert!(metrics.denied("revoked").is_some());
        assert_eq!(metrics.denied("no_such_reason"), None);
    }

    #[test]
    fn pending_counts_are_summed_per_counter_and_handed_over_once() {
        let mut pending = PendingCounts::default();
        for metric in [7, 3, 7, 7] {
            pending.add(metric);
        }
        let mut first: Vec<(u32, u64)> = pending.take().collect();
        first.sort_unstable();
        assert_eq!(first, vec![(3, 1), (7, 3)]);
        assert_eq!(
            pending.take().count(),
            0,
            "nothing new: nothing to hand over"
        );
        pending.add(3);
        assert_eq!(pending.take().collect::<Vec<_>>(), vec![(3, 1)]);
    }

    #[test]
    fn a_refused_definition_leaves_that_stat_out() {
        let metrics = Metrics::define(&mut |_, name| (!name.ends_with("hits")).then_some(1));
        assert_eq!(metrics.cache_hits, None);
        assert_eq!(metrics.cache_misses, Some(1));
    }
}
