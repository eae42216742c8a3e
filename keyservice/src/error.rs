//! The one error type of the HTTP API: a status and a machine code per variant, rendered as
//! `{"error": code, "message": text}`. Internal causes are logged and replaced by a generic text.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thiserror::Error;

use crate::connections::BodyReadTimeout;
use crate::keys::{IssueError, ValidationError};
use crate::store::StoreError;
use crate::usage::ReportError;

#[derive(Debug, Error)]
pub enum AppError {
    #[error("no credential: present the admin token, an API key with keys:write, or sign in")]
    Unauthorized,
    #[error("more than one credential: one Authorization header, or the session cookie, not both")]
    AmbiguousCredentials,
    /// A credential that does not verify; the text says why (never the credential).
    #[error("{0}")]
    InvalidCredential(String),
    #[error("the session has expired: sign in again")]
    SessionExpired,
    /// A cookie-authenticated write from another site.
    #[error("cross-site request refused: {0}")]
    CrossSite(String),
    #[error("the identity provider's keys are unavailable, so no session can be verified now")]
    IdentityProviderUnavailable(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("cannot grant scopes the caller does not hold: {0}")]
    InsufficientScope(String),
    #[error("invalid JSON body: {0}")]
    InvalidBody(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    InvalidReport(#[from] ReportError),
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("the key hash must be exactly 64 lowercase hex characters")]
    InvalidHash,
    /// The limit of the route, in KiB.
    #[error("request body is larger than {0} KiB")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    /// The answer's status: 4xx for what the client sent, 5xx for what failed here.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized | Self::InvalidCredential(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            Self::SessionExpired => (StatusCode::UNAUTHORIZED, "session_expired"),
            Self::CrossSite(_) => (StatusCode::FORBIDDEN, "csrf"),
            Self::IdentityProviderUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Self::AmbiguousCredentials => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::InsufficientScope(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
            Self::InvalidBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            Self::Invalid(_) | Self::InvalidReport(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            Self::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            Self::InvalidHash => (StatusCode::BAD_REQUEST, "invalid_sha256"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate => Self::Conflict(e.to_string()),
            e if e.is_unavailable() => Self::Unavailable(e),
            e => Self::Internal(Box::new(e)),
        }
    }
}

impl From<IssueError> for AppError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Invalid(v) => Self::Invalid(v),
            IssueError::Sign(e) => Self::Internal(Box::new(e)),
        }
    }
}

// Every body problem is a 400 (one rule for clients), except a body over the limit.
impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            // The usual limit; a route with its own (`/v1/usage`) says so itself.
            return Self::PayloadTooLarge(crate::MAX_BODY_BYTES / 1024);
        }
        // A body cut short by `serve_http`'s deadline: the client was too slow, not wrong.
        let mut source = std::error::Error::source(&r);
        while let Some(cause) = source {
            if cause.is::<BodyReadTimeout>() {
                return Self::RequestTimeout(cause.to_string());
            }
            source = cause.source();
        }
        Self::InvalidBody(r.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        Self::InvalidQuery(r.body_text())
    }
}

// axum's text quotes the segment, which may be a key sent where an id belongs: not echoed.
impl From<PathRejection> for AppError {
    fn from(_: PathRejection) -> Self {
        Self::InvalidPath("a path segment is not percent-encoded UTF-8".into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Unavailable(source) = &self {
            tracing::warn!(error = %source, "database unavailable");
        }
        if let Self::IdentityProviderUnavailable(reason) = &self {
            tracing::warn!(%reason, "identity provider keys unavailable");
        }
        if let Self::Internal(source) = &self {
            tracing::error!(error = %source, "internal error");
        }
        let body = Json(json!({ "error": code, "message": self.to_string() }));
        // An error is about this request only: no cache (the edge's included) may keep it.
        let no_store = [(header::CACHE_CONTROL, "no-store")];
        if status == StatusCode::UNAUTHORIZED {
            let challenge = [(header::WWW_AUTHENTICATE, r#"Bearer realm="keyservice""#)];
            (status, no_store, challenge, body).into_response()
        } else {
            (status, no_store, body).into_response()
        }
    }
}
