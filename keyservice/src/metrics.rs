//! `/metrics`: keyservice's own counters and the request latency histogram, in the Prometheus
//! text format (0.0.4), through the Prometheus project's client crate. Each [`Metrics`] has its
//! own registry, so every app (and every test) counts alone.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::error::AppError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: &'static str,
}

/// The route template (`/v1/keys/{id}`), never the raw path, so the label set stays small.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~4 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

pub struct Metrics {
    registry: Registry,
    pub keys_issued: Counter,
    pub keys_revoked: Counter,
    /// `result`: active, revoked, unknown, error.
    pub revocation_lookups: Family<ResultLabel, Counter>,
    feed_reads: Family<ResultLabel, Counter>,
    /// `kind`: unavailable, query, duplicate, migration, configuration.
    pub database_errors: Family<KindLabel, Counter>,
    /// `/v1/authorize` decisions: allow, or deny_<reason> as in the filter's stats.
    pub authorize_decisions: Family<DecisionLabel, Counter>,
    /// `POST /v1/usage` answers: applied, duplicate, rejected, error.
    usage_reports: Family<ResultLabel, Counter>,
    /// The requests that applied reports counted, by outcome at the edge.
    usage_requests: Family<OutcomeLabel, Counter>,
    /// Report entries for digests that are no stored key.
    pub usage_unknown_keys: Counter,
    /// Counts the edges dropped while keyservice was unreachable, as they reported them.
    pub usage_dropped: Counter,
    pub request_duration: HistogramFamily<RequestLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keyservice");
        let keys_issued = Counter::default();
        registry.register("keys_issued", "Keys issued over HTTP", keys_issued.clone());
        let keys_revoked = Counter::default();
        registry.register(
            "keys_revoked",
            "Keys revoked over HTTP (first revocation only)",
            keys_revoked.clone(),
        );
        let revocation_lookups = Family::<ResultLabel, Counter>::default();
        registry.register(
            "revocation_lookups",
            "Revocation lookups by digest (the filter's question and /v1/authorize), by result",
            revocation_lookups.clone(),
        );
        let feed_reads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "revocation_feed_reads",
            "Answers of the revocation feed: events, empty (a long poll ended), start (a new follower), resync",
            feed_reads.clone(),
        );
        let database_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "database_errors",
            "Failed database operations, by kind",
            database_errors.clone(),
        );
        let authorize_decisions = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "authorize_decisions",
            "Decisions of /v1/authorize",
            authorize_decisions.clone(),
        );
        let usage_reports = Family::<ResultLabel, Counter>::default();
        registry.register(
            "usage_reports",
            "Usage reports from the edges, by result: applied, duplicate (a retried batch), rejected (invalid), error (database)",
            usage_reports.clone(),
        );
        let usage_requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "usage_requests",
            "Requests counted by applied usage reports, by outcome at the edge",
            usage_requests.clone(),
        );
        let usage_unknown_keys = Counter::default();
        registry.register(
            "usage_unknown_keys",
            "Usage report entries for digests that are no stored key (ignored)",
            usage_unknown_keys.clone(),
        );
        let usage_dropped = Counter::default();
        registry.register(
            "usage_dropped",
            "Counts the edges reported dropping while keyservice was unreachable",
            usage_dropped.clone(),
        );
        let request_duration: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by method, route and status",
            request_duration.clone(),
        );
        // Series that a dashboard or an alert expects are there from the start, at 0.
        for result in ["active", "revoked", "unknown", "error"] {
            drop(revocation_lookups.get_or_create(&ResultLabel { result }));
        }
        for kind in ["unavailable", "query"] {
            drop(database_errors.get_or_create(&KindLabel { kind }));
        }
        for result in ["applied", "duplicate", "rejected", "error"] {
            drop(usage_reports.get_or_create(&ResultLabel { result }));
        }
        for outcome in ["allowed", "forbidden", "rate_limited"] {
            drop(usage_requests.get_or_create(&OutcomeLabel { outcome }));
        }
        Self {
            registry,
            keys_issued,
            keys_revoked,
            revocation_lookups,
            feed_reads,
            database_errors,
            authorize_decisions,
            usage_reports,
            usage_requests,
            usage_unknown_keys,
            usage_dropped,
            request_duration,
        }
    }

    pub fn usage_report(&self, result: &'static str) {
        self.usage_reports
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Adds an applied report's counts to `keyservice_usage_requests_total`.
    pub fn usage_requests(&self, counts: crate::usage::Counts) {
        for (outcome, count) in [
            ("allowed", counts.allowed),
            ("forbidden", counts.forbidden),
            ("rate_limited", counts.rate_limited),
        ] {
            self.usage_requests
                .get_or_create(&OutcomeLabel { outcome })
                .inc_by(count);
        }
    }

    pub fn lookup(&self, result: &'static str) {
        self.revocation_lookups
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn feed_read(&self, result: &'static str) {
        self.feed_reads.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn database_error(&self, kind: &'static str) {
        self.database_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    pub fn authorize_decision(&self, decision: &'static str) {
        self.authorize_decisions
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }

    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

pub type SharedMetrics = Arc<Metrics>;

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Result<impl IntoResponse, AppError> {
    let text = state
        .metrics
        .render()
        .map_err(|e| AppError::Internal(Box::new(e)))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_in_prometheus_text() {
        let metrics = Metrics::new();
        metrics.keys_issued.inc();
        metrics.lookup("active");
        metrics.database_error("unavailable");
        metrics.authorize_decision("allow");
        metrics.usage_report("applied");
        metrics.usage_requests(crate::usage::Counts {
            allowed: 5,
            forbidden: 0,
            rate_limited: 2,
        });
        metrics
            .request_duration
            .get_or_create(&RequestLabels {
                method: "GET".into(),
                route: "/healthz".into(),
                status: 200,
            })
            .observe(0.001);
        let text = metrics.render().unwrap();
        for line in [
            "# TYPE keyservice_keys_issued_total counter",
            "keyservice_keys_issued_total 1",
            "keyservice_keys_revoked_total 0",
            "keyservice_revocation_lookups_total{result=\"active\"} 1",
            "keyservice_database_errors_total{kind=\"unavailable\"} 1",
            "keyservice_authorize_decisions_total{decision=\"allow\"} 1",
            "keyservice_usage_reports_total{result=\"applied\"} 1",
            "keyservice_usage_reports_total{result=\"duplicate\"} 0",
            "keyservice_usage_requests_total{outcome=\"allowed\"} 5",
            "keyservice_usage_requests_total{outcome=\"rate_limited\"} 2",
            "keyservice_usage_unknown_keys_total 0",
            "keyservice_usage_dropped_total 0",
            "# TYPE keyservice_http_request_duration_seconds histogram",
            "keyservice_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
