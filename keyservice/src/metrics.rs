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
            "Answers of the revocation feed: revocations, empty (a long poll ended), start (a new follower), resync",
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
        Self {
            registry,
            keys_issued,
            keys_revoked,
            revocation_lookups,
            feed_reads,
            database_errors,
            authorize_decisions,
            request_duration,
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
            "# TYPE keyservice_http_request_duration_seconds histogram",
            "keyservice_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
