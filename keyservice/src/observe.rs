//! Request ids, request logs and the latency histogram.
//!
//! Every request gets an `x-request-id` (a client's or Envoy's is kept, else a new UUID), which
//! is on every log line of the request and sent back in the response. The request log has the
//! method, the route template (never the path), the status and the latency: never a header or a
//! path segment, so never an `Authorization` value or a key.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use keygate::text::Escaped;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::AppState;
use crate::metrics::RequestLabels;

/// The longest request id that is logged as sent; longer ones are cut (they are the client's).
const MAX_LOGGED_REQUEST_ID: usize = 128;

pub fn with_request_ids<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(make_span)
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::x_request_id()),
    )
}

/// The route template (`/v1/keys/{id}`), not the path: a path can hold a key (sent where an id
/// or a digest belongs), and an unmatched one anything at all.
fn make_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(|id| id.get(..MAX_LOGGED_REQUEST_ID).unwrap_or(id))
        .unwrap_or("-");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %Escaped(request_id),
    )
}

/// Observes every routed request in `keyservice_http_request_duration_seconds`, labelled with
/// the route template (`/v1/keys/{id}`), or `unmatched`.
pub async fn record_latency(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Any token is a method; only the standard ones become labels, so clients cannot grow
    // the label set.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .request_duration
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}
