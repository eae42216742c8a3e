//! Response shapes: HTML pages with their security headers, the stylesheet, redirects.

use axum::body::Body;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The pages load nothing but their stylesheet, post only to this service, and are never framed.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A response with the headers every answer of this service carries; `no-store`, since pages
/// and redirects are per sign-in.
fn hardened(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if !content_type.is_empty() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    response
}

/// An HTML page.
pub fn html(status: StatusCode, page: String) -> Response {
    hardened(status, "text/html; charset=utf-8", page.into())
}

/// A short plain-text answer (`/healthz`, unknown paths).
pub fn text(status: StatusCode, body: &'static str) -> Response {
    hardened(status, "text/plain; charset=utf-8", body.into())
}

/// The stylesheet; it changes only with the binary, so caches may keep it if they revalidate.
pub fn stylesheet(css: &'static str) -> Response {
    let mut response = hardened(StatusCode::OK, "text/css; charset=utf-8", css.into());
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `303 See Other` to `location`, setting `cookie`. `None` when either is not a valid header
/// value (callers pass only sanitised paths and base64url tokens, so never in practice).
pub fn redirect_with_cookie(location: &str, cookie: &str) -> Option<Response> {
    let location = HeaderValue::from_str(location).ok()?;
    let cookie = HeaderValue::from_str(cookie).ok()?;
    let mut response = hardened(StatusCode::SEE_OTHER, "", Body::empty());
    response.headers_mut().insert(LOCATION, location);
    response.headers_mut().insert(SET_COOKIE, cookie);
    Some(response)
}
