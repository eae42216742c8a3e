//! keygate's Envoy stats. Defined once per VM; Envoy merges the VMs' values under one name, and
//! shows them on the admin `/stats` and `/stats/prometheus` pages.

/// Counter or histogram, as proxy-wasm defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Histogram,
    /// Set with `Host::record`, like a histogram value.
    Gauge,
}

/// Why a request was denied, as a stat name suffix.
pub const DENY_REASONS: [&str; 15] = [
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
    "forbidden_claims",
    "bad_path",
    "unknown_requirement",
    "unavailable",
    "rate_limited",
];

/// The ids of every stat; `None` where the host refused to define one (stats are then skipped,
/// never a reason to fail a request).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub allowed: Option<u32>,
    /// Requests let through by `failure_mode: allow` (also counted in `allowed`).
    pub allowed_on_failure: Option<u32>,
    /// Requests a requirement with `allow_missing` or `allow_missing_or_failed` let through
    /// without identity (also counted in `allowed`).
    pub allowed_anonymous: Option<u32>,
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
    /// The revocation feed: answers used and failed polls, revocations marked, resyncs, times it
    /// went stale (and the cache fell back to `max_active_seconds`), whether it is healthy now
    /// (gauge, 0/1), and each revocation's time from keyservice's commit to being marked here.
    pub feed_polls_ok: Option<u32>,
    pub feed_polls_error: Option<u32>,
    pub feed_revocations_applied: Option<u32>,
    pub feed_resyncs: Option<u32>,
    pub feed_fallbacks: Option<u32>,
    pub feed_healthy: Option<u32>,
    /// When the feed last answered (Unix seconds; gauge).
    pub feed_last_success_s: Option<u32>,
    pub feed_lag_ms: Option<u32>,
    /// Ticks on which a worker handed its pending counts to Envoy (see `PendingCounts`): one per
    /// tick, so a reader can tell that every count made before some point has arrived.
    pub counts_flushed: Option<u32>,
    /// Rate limits: counters that took another subject's place, and takes that could not be
    /// written (the request then goes on: a limit is not authentication).
    pub rate_limit_evictions: Option<u32>,
    pub rate_limit_unavailable: Option<u32>,
    /// Usage reports keyservice took, and those that failed (retried).
    pub usage_reports_ok: Option<u32>,
    pub usage_reports_error: Option<u32>,
    /// Requests whose usage counts were dropped (a table was full, or keyservice refused a
    /// report), in total since the reporting worker began (gauge).
    pub usage_dropped: Option<u32>,
    /// Per provider, in configuration order: requests allowed, forbidden (403) and rate-limited
    /// (429) with a verified token of that provider (`keygate.provider.<name>.…`).
    pub provider_requests: Vec<ProviderCounters>,
}

/// One provider's request counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderCounters {
    pub allowed: Option<u32>,
    pub forbidden: Option<u32>,
    pub rate_limited: Option<u32>,
}

pub const PREFIX: &str = "keygate.";

/// Counter increments not yet handed to the host. A host call costs Envoy more than the
/// counting, so the proxy-wasm layer adds them up here and hands each counter's sum over once
/// per tick (100 ms): stats lag by at most that, requests lose one host call or two. Natively
/// only the tests use it (keyservice counts in its own registry).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Default)]
pub struct PendingCounts {
    /// (metric id, increments); a handful of counters, so a list beats a map.
    counts: Vec<(u32, u64)>,
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
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
            allowed_anonymous: counter("requests_allowed_anonymous"),
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
            feed_polls_ok: counter("feed_polls_ok"),
            feed_polls_error: counter("feed_polls_error"),
            feed_revocations_applied: counter("feed_revocations_applied"),
            feed_resyncs: counter("feed_resyncs"),
            feed_fallbacks: counter("feed_fallbacks"),
            rate_limit_evictions: counter("rate_limit_evictions"),
            rate_limit_unavailable: counter("rate_limit_unavailable"),
            usage_reports_ok: counter("usage_reports_ok"),
            usage_reports_error: counter("usage_reports_error"),
            ..Metrics::default()
        };

        for (slot, reason) in metrics.denied.iter_mut().zip(DENY_REASONS) {
            *slot = counter(&format!("requests_denied_{reason}"));
        }
        metrics.feed_healthy = define(MetricKind::Gauge, &format!("{PREFIX}feed_healthy"));
        metrics.feed_last_success_s =
            define(MetricKind::Gauge, &format!("{PREFIX}feed_last_success_s"));
        metrics.usage_dropped = define(MetricKind::Gauge, &format!("{PREFIX}usage_dropped"));
        metrics.feed_lag_ms = define(MetricKind::Histogram, &format!("{PREFIX}feed_lag_ms"));
        metrics.callout_latency_ms = define(
            MetricKind::Histogram,
            &format!("{PREFIX}callout_latency_ms"),
        );
        metrics
    }

    /// Defines the per-provider counters, for the configured providers' names.
    pub fn define_providers<'a>(
        &mut self,
        define: &mut dyn FnMut(MetricKind, &str) -> Option<u32>,
        names: impl Iterator<Item = &'a str>,
    ) {
        self.provider_requests = names
            .map(|name| {
                let mut counter =
                    |what: &str| define(MetricKind::Counter, &format!("{PREFIX}provider.{name}.{what}"));
                ProviderCounters {
                    allowed: counter("requests_allowed"),
                    forbidden: counter("requests_forbidden"),
                    rate_limited: counter("requests_rate_limited"),
                }
            })
            .collect();
    }

    pub fn denied(&self, reason: &str) -> Option<u32> {
        DENY_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|index| self.denied[index])
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
