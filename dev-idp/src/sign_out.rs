//! `GET /sign-out`: a form (a GET changes nothing). `POST /sign-out`: clear the cookie.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::sign_in::cross_site_refused;
use crate::{cookie, origin, pages, respond};

/// Where a sign-out ends.
const AFTER_SIGN_OUT: &str = "/sign-in";

pub async fn page() -> Response {
    respond::html(StatusCode::OK, pages::sign_out())
}

/// Refuses a cross-site POST like the sign-in does: another site should not be able to sign the
/// user out either.
pub async fn submit(headers: HeaderMap) -> Response {
    if origin::check(&headers).is_err() {
        return cross_site_refused();
    }
    match respond::redirect_with_cookie(AFTER_SIGN_OUT, &cookie::clear()) {
        Some(response) => {
            eprintln!("dev-idp: signed out");
            response
        }
        None => respond::text(StatusCode::INTERNAL_SERVER_ERROR, "cannot clear the cookie"),
    }
}
