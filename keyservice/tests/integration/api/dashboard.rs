//! The API keys page: its three assets, their headers (the CSP above all), the links the server
//! writes into the HTML, and properties of the shipped text (same-origin assets only, no inline
//! code, no unsafe DOM or storage calls, every element id the browser test uses). No database
//! is touched, so one in-memory SQLite store serves every test.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use keyservice::{AppState, DashboardLinks, app};
use tower::ServiceExt;

use crate::common::SECRET;

const INDEX_HTML: &str = include_str!("../../../dashboard/index.html");
const APP_JS: &str = include_str!("../../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../../dashboard/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every element id the spec names (the browser test's selectors).
const SPEC_IDS: &[&str] = &[
    "signed-in",
    "sign-out",
    "sign-in",
    "state-loading",
    "state-empty",
    "state-error",
    "retry",
    "session-expired",
    "create-form",
    "key-name",
    "key-expiry",
    "key-expiry-date",
    "key-scopes",
    "create-submit",
    "new-key",
    "new-key-value",
    "copy-key",
    "new-key-done",
    "keys-table",
    "filter-text",
    "filter-status",
    "confirm-revoke",
    "confirm-revoke-yes",
    "confirm-revoke-no",
    "toast",
];

async fn page_app(links: DashboardLinks) -> Router {
    let store = keyservice::store::open("sqlite::memory:").await.unwrap();
    app(AppState::new(store, SECRET.as_bytes()).with_dashboard_links(links))
}

async fn call(app: &Router, method: Method, uri: &str) -> (StatusCode, HeaderMap, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP, "{what}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{what}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{what}");
    assert_eq!(
        headers
            .get_all(header::CONTENT_SECURITY_POLICY)
            .iter()
            .count(),
        1,
        "{what}: one policy"
    );
}

#[tokio::test]
async fn assets_answer_with_their_types_cache_rules_and_security_headers() {
    let app = page_app(DashboardLinks::default()).await;
    let assets = [
        ("/keys", "text/html; charset=utf-8", "no-store"),
        ("/keys/app.js", "text/javascript; charset=utf-8", "no-cache"),
        ("/keys/app.css", "text/css; charset=utf-8", "no-cache"),
    ];
    for (path, content_type, cache_control) in assets {
        let (status, headers, body) = call(&app, Method::GET, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], cache_control, "{path}");
        assert_security_headers(&headers, path);
        assert!(!body.is_empty(), "{path}");

        let (status, head_headers, head_body) = call(&app, Method::HEAD, path).await;
        assert_eq!(status, StatusCode::OK, "HEAD {path}");
        assert_eq!(head_headers[header::CONTENT_TYPE], content_type);
        assert_security_headers(&head_headers, path);
        assert_eq!(head_body, "", "HEAD {path} has no body");
    }
    let (_, _, script) = call(&app, Method::GET, "/keys/app.js").await;
    assert_eq!(script, APP_JS);
    let (_, _, style) = call(&app, Method::GET, "/keys/app.css").await;
    assert_eq!(style, APP_CSS);
}

#[tokio::test]
async fn the_trailing_slash_leads_to_the_page() {
    let app = page_app(DashboardLinks::default()).await;
    let (status, headers, _) = call(&app, Method::GET, "/keys/").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers[header::LOCATION], "/keys");
    assert_security_headers(&headers, "/keys/");
    let (status, _, _) = call(&app, Method::GET, "/keys/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_page_carries_its_links_escaped() {
    let app = page_app(DashboardLinks {
        sign_in_url: Some("/sign-in?from=\"x\"&next=<script>alert(1)</script>'".into()),
        sign_out_url: Some("/sign-out".into()),
    })
    .await;
    let (status, _, html) = call(&app, Method::GET, "/keys").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(
            "data-sign-in-url=\"/sign-in?from=&quot;x&quot;&amp;next=&lt;script&gt;alert(1)&lt;/script&gt;&#39;\""
        ),
        "{html}"
    );
    assert!(html.contains("data-sign-out-url=\"/sign-out\""), "{html}");
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("{{"), "every placeholder is filled: {html}");

    let app = page_app(DashboardLinks::default()).await;
    let (_, _, html) = call(&app, Method::GET, "/keys").await;
    assert!(html.contains("data-sign-in-url=\"\""), "{html}");
    assert!(html.contains("data-sign-out-url=\"\""), "{html}");
}

/// The values of every `NAME="..."` attribute in `html`.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn the_html_loads_only_same_origin_assets_and_has_no_inline_code() {
    let lower = INDEX_HTML.to_ascii_lowercase();
    let mut references = attribute_values(&lower, "src");
    references.extend(attribute_values(&lower, "href"));
    assert!(references.contains(&"/keys/app.js"), "{references:?}");
    assert!(references.contains(&"/keys/app.css"), "{references:?}");
    for reference in &references {
        assert!(!reference.contains("http"), "{reference}");
        let same_origin = reference.starts_with('/') && !reference.starts_with("//");
        assert!(
            same_origin || reference.starts_with('#') || *reference == "data:,",
            "{reference}"
        );
    }
    for (at, _) in lower.match_indices("<script") {
        let tag_end = at + lower[at..].find('>').unwrap() + 1;
        assert!(
            lower[tag_end..].starts_with("</script>"),
            "an inline script at {at}"
        );
    }
    assert!(!lower.contains(" style="), "no style attribute");
    assert!(!lower.contains("<style"), "no style element");
    assert!(!lower.contains("javascript:"), "no javascript: URL");
    // No inline event handler (` onclick=`, ` onload=`...).
    for (at, _) in lower.match_indices(" on") {
        let name: String = lower[at + 3..]
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        assert!(
            !lower[at + 3 + name.len()..].starts_with('='),
            "an inline handler: on{name}"
        );
    }
    assert!(lower.contains("<meta name=\"viewport\""));
}

#[test]
fn the_script_and_style_avoid_what_the_policy_or_the_key_forbid() {
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "localStorage",
        "sessionStorage",
        "indexedDB",
        "eval(",
        "new Function",
        "console.",
    ] {
        assert!(!APP_JS.contains(forbidden), "app.js contains {forbidden}");
    }
    assert!(!APP_JS.contains("://"), "no absolute address in app.js");
    assert!(APP_JS.contains("credentials: 'same-origin'"));
    for forbidden in ["@import", "url(", "expression("] {
        assert!(!APP_CSS.contains(forbidden), "app.css contains {forbidden}");
    }
}

#[test]
fn every_element_the_browser_test_uses_is_on_the_page() {
    for id in SPEC_IDS {
        let in_html = INDEX_HTML.contains(&format!("id=\"{id}\""));
        let made_by_script = APP_JS.contains(&format!("'{id}'"));
        assert!(in_html || made_by_script, "#{id} is missing");
        assert!(
            INDEX_HTML.matches(&format!("id=\"{id}\"")).count() <= 1,
            "#{id} twice"
        );
    }
    for sort in ["name", "created", "expires", "last-used"] {
        assert!(
            INDEX_HTML.contains(&format!("data-sort=\"{sort}\"")),
            "{sort}"
        );
    }
    for expiry in ["never", "7d", "30d", "90d", "1y", "date"] {
        assert!(INDEX_HTML.contains(&format!("<option value=\"{expiry}\"")));
    }
    for status in ["all", "active", "revoked", "expired"] {
        assert!(INDEX_HTML.contains(&format!("<option value=\"{status}\"")));
    }
    assert!(INDEX_HTML.contains("type=\"date\""));
    assert!(INDEX_HTML.contains("maxlength=\"256\""));
    assert!(INDEX_HTML.contains("role=\"status\" aria-live=\"polite\""));
    assert!(INDEX_HTML.contains("This key is shown once. Copy it now: it cannot be shown again."));
    for cell in [
        "name",
        "hint",
        "scopes",
        "created",
        "expires",
        "last-used",
        "status",
    ] {
        assert!(APP_JS.contains(&format!("cell('{cell}'")), "td.{cell}");
    }
    assert!(
        APP_JS.contains("element('button', 'revoke "),
        "button.revoke"
    );
    assert!(APP_JS.contains("row.dataset.keyId"), "tr[data-key-id]");
    assert!(APP_JS.contains("input.name = 'scope'"), "scope checkboxes");
}
