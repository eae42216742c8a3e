//! The API keys page (`/keys`): static HTML, script and style compiled into keyservice, served
//! under a strict Content-Security-Policy. The page itself talks to `/v1/me` and `/v1/keys`; the
//! server only fills in where signing in and out happens.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::AppState;

/// Where the page sends a signed-out user, and where signing out goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardLinks {
    pub sign_in_url: Option<String>,
    pub sign_out_url: Option<String>,
}

/// Same-origin script, style and requests only; no inline code, no framing, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");

/// Placeholders in `index.html`, in the order they appear there, each once.
const SIGN_IN_MARKER: &str = "{{sign_in_url}}";
const SIGN_OUT_MARKER: &str = "{{sign_out_url}}";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", get(page))
        .route("/keys/", get(to_page))
        .route("/keys/app.js", get(script))
        .route("/keys/app.css", get(stylesheet))
}

/// The page is rendered per request (the links are the server's) and never cached: it decides
/// which script and style run.
async fn page(State(state): State<AppState>) -> Response {
    let html = render_page(state.dashboard_links());
    with_security_headers("text/html; charset=utf-8", "no-store", html)
}

async fn to_page() -> Response {
    let headers = security_headers("no-store");
    (headers, Redirect::permanent("/keys")).into_response()
}

async fn script() -> Response {
    with_security_headers("text/javascript; charset=utf-8", "no-cache", APP_JS)
}

async fn stylesheet() -> Response {
    with_security_headers("text/css; charset=utf-8", "no-cache", APP_CSS)
}

fn with_security_headers(
    content_type: &'static str,
    cache_control: &'static str,
    body: impl IntoResponse,
) -> Response {
    (
        [(header::CONTENT_TYPE, content_type)],
        security_headers(cache_control),
        body,
    )
        .into_response()
}

fn security_headers(cache_control: &'static str) -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CACHE_CONTROL, cache_control),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ]
}

/// `index.html` with the links in its `data-` attributes (empty when not configured). One pass
/// over the template, so a link that happens to contain a marker is not expanded again.
pub fn render_page(links: &DashboardLinks) -> String {
    let values = [
        (SIGN_IN_MARKER, links.sign_in_url.as_deref().unwrap_or("")),
        (SIGN_OUT_MARKER, links.sign_out_url.as_deref().unwrap_or("")),
    ];
    let mut html = String::with_capacity(INDEX_HTML.len() + 256);
    let mut rest = INDEX_HTML;
    for (marker, value) in values {
        if let Some((before, after)) = rest.split_once(marker) {
            html.push_str(before);
            html.push_str(&escape_html(value));
            rest = after;
        }
    }
    html.push_str(rest);
    html
}

/// Escapes text for an HTML attribute value in double (or single) quotes, or for element text.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_marker_is_in_the_template_once_and_in_order() {
        let sign_in = INDEX_HTML.find(SIGN_IN_MARKER);
        let sign_out = INDEX_HTML.find(SIGN_OUT_MARKER);
        assert!(sign_in.is_some() && sign_out.is_some());
        assert!(sign_in < sign_out);
        assert_eq!(INDEX_HTML.matches(SIGN_IN_MARKER).count(), 1);
        assert_eq!(INDEX_HTML.matches(SIGN_OUT_MARKER).count(), 1);
    }

    #[test]
    fn links_are_escaped_and_never_expanded_twice() {
        let html = render_page(&DashboardLinks {
            sign_in_url: Some("/in?a=1&b=\"<x>'{{sign_out_url}}".into()),
            sign_out_url: None,
        });
        assert!(
            html.contains(
                "data-sign-in-url=\"/in?a=1&amp;b=&quot;&lt;x&gt;&#39;{{sign_out_url}}\""
            )
        );
        assert!(html.contains("data-sign-out-url=\"\""));
    }
}
