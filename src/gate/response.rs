//! The local replies the filter sends instead of forwarding a request. Text bodies are ComfyUI
//! Deploy's, so its clients keep working; `WWW-Authenticate` follows RFC 6750 §3.

use crate::config::{Config, ResponseFormat};
use crate::extract::credential::CredentialError;
use crate::gate::decision::DenyReason;
use crate::policy::rate_limits::Exceeded;
use crate::gate::verify::Rejection;

pub const INVALID_TOKEN_BODY: &str = "Invalid or expired token";
pub const REVOKED_TOKEN_BODY: &str = "Revoked token";
pub const UNAVAILABLE_BODY: &str = "Authorization service unavailable";
pub const INSUFFICIENT_SCOPE_BODY: &str = "Insufficient scope";
pub const FORBIDDEN_BODY: &str = "Forbidden";
pub const BAD_REQUEST_BODY: &str = "Bad request";
pub const MISCONFIGURED_BODY: &str = "Route requirement is not configured";
pub const RATE_LIMITED_BODY: &str = "Too many requests";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// What `WWW-Authenticate` says, if anything.
enum Challenge<'a> {
    None,
    /// No bearer token was presented: the realm only (RFC 6750 §3.1).
    Bare,
    InvalidToken,
    InsufficientScope(&'a str),
    /// The token's claims fall short of the route's requirement: no scope to name.
    InsufficientClaims,
}

struct Answer<'a> {
    status: u32,
    text: &'static str,
    error: &'static str,
    description: &'static str,
    challenge: Challenge<'a>,
}

impl DenyReason {
    /// A short, stable name for stats and logs: never anything the client sent.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Credential(CredentialError::Missing | CredentialError::OtherScheme) => "missing",
            Self::Credential(
                CredentialError::TooLarge | CredentialError::Malformed | CredentialError::Ambiguous,
            ) => "malformed",
            Self::Token(
                Rejection::Malformed | Rejection::DisallowedAlgorithm | Rejection::NoProvider,
            ) => "malformed",
            Self::Token(Rejection::BadSignature) => "bad_signature",
            Self::Token(Rejection::UnknownKid) => "unknown_kid",
            Self::Token(Rejection::Expired | Rejection::NotYetValid) => "expired",
            Self::Token(
                Rejection::IssuedInFuture
                | Rejection::LifetimeTooLong
                | Rejection::WrongIssuer
                | Rejection::WrongAudience
                | Rejection::MissingClaim
                | Rejection::UnrepresentableClaim
                | Rejection::ClaimNotAccepted,
            ) => "invalid_claims",
            Self::Revoked => "revoked",
            Self::UnknownKey => "unknown_key",
            Self::Unavailable | Self::KeysUnavailable => "unavailable",
            Self::InsufficientScope(_) => "forbidden_scope",
            Self::ForbiddenRule => "forbidden_rule",
            Self::ForbiddenClaims => "forbidden_claims",
            Self::BadPath(_) => "bad_path",
            Self::UnknownRequirement => "unknown_requirement",
            Self::RateLimited(_) => "rate_limited",
        }
    }

    /// The reply for this denial, in the configured format. The realm is validated at
    /// configuration time to be safe inside a quoted string.
    pub fn reply(&self, config: &Config) -> LocalReply {
        let answer = self.answer();
        let mut headers = Vec::with_capacity(2);
        let body = match config.response_format {
            ResponseFormat::Text => {
                headers.push(("content-type", "text/plain".to_owned()));
                answer.text.to_owned()
            }
            ResponseFormat::Json => {
                headers.push(("content-type", "application/json".to_owned()));
                serde_json::json!({"error": answer.error, "error_description": answer.description})
                    .to_string()
            }
        };
        let realm = &config.realm;
        let challenge = match answer.challenge {
            Challenge::None => None,
            Challenge::Bare => Some(format!("Bearer realm=\"{realm}\"")),
            Challenge::InvalidToken => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                answer.description
            )),
            Challenge::InsufficientClaims => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\"",
                answer.description
            )),
            Challenge::InsufficientScope(scope) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\", scope=\"{scope}\"",
                answer.description
            )),
        };
        if let Some(challenge) = challenge {
            headers.push(("www-authenticate", challenge));
        }
        if let Self::RateLimited(exceeded) = self {
            headers.extend(rate_limit_headers(exceeded));
        }
        LocalReply {
            status: answer.status,
            headers,
            body,
        }
    }

    fn answer(&self) -> Answer<'_> {
        let invalid = |description| Answer {
            status: 401,
            text: INVALID_TOKEN_BODY,
            error: "invalid_token",
            description,
            challenge: Challenge::InvalidToken,
        };
        match self {
            Self::Credential(error) if !error.token_presented() => Answer {
                status: 401,
                text: INVALID_TOKEN_BODY,
                error: "unauthorized",
                description: "a bearer token is required",
                challenge: Challenge::Bare,
            },
            Self::Credential(CredentialError::TooLarge) => invalid("token is too large"),
            Self::Credential(CredentialError::Ambiguous) => {
                invalid("several different tokens were presented")
            }
            Self::Credential(_) => invalid(Rejection::Malformed.description()),
            Self::Token(rejection) => invalid(rejection.description()),
            Self::Revoked => Answer {
                text: REVOKED_TOKEN_BODY,
                ..invalid("token has been revoked")
            },
            Self::UnknownKey => Answer {
                text: REVOKED_TOKEN_BODY,
                ..invalid("token is not registered")
            },
            Self::InsufficientScope(scope) => Answer {
                status: 403,
                text: INSUFFICIENT_SCOPE_BODY,
                error: "insufficient_scope",
                description: "token lacks a scope this route requires",
                challenge: Challenge::InsufficientScope(scope),
            },
            Self::ForbiddenRule => Answer {
                status: 403,
                text: FORBIDDEN_BODY,
                error: "access_denied",
                description: "this route is closed",
                challenge: Challenge::None,
            },
            Self::ForbiddenClaims => Answer {
                status: 403,
                text: FORBIDDEN_BODY,
                error: "insufficient_scope",
                description: "token claims do not meet this route's requirement",
                challenge: Challenge::InsufficientClaims,
            },
            Self::RateLimited(_) => Answer {
                status: 429,
                text: RATE_LIMITED_BODY,
                error: "rate_limited",
                description: "too many requests for this key or account; retry after the time in Retry-After",
                challenge: Challenge::None,
            },
            Self::UnknownRequirement => Answer {
                status: 500,
                text: MISCONFIGURED_BODY,
                error: "server_error",
                description: "the route selects a requirement keygate does not have",
                challenge: Challenge::None,
            },
            Self::BadPath(error) => Answer {
                status: 400,
                text: BAD_REQUEST_BODY,
                error: "invalid_request",
                description: error.description(),
                challenge: Challenge::None,
            },
            Self::Unavailable => Answer {
                status: 503,
                text: UNAVAILABLE_BODY,
                error: "temporarily_unavailable",
                description: "the revocation service did not answer",
                challenge: Challenge::None,
            },
            Self::KeysUnavailable => Answer {
                status: 503,
                text: UNAVAILABLE_BODY,
                error: "temporarily_unavailable",
                description: "the identity provider's keys are not available",
                challenge: Challenge::None,
            },
        }
    }
}

/// `Retry-After`, and the IETF `RateLimit-Policy` and `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers: a policy named `<what>-<window>s`, its quota `q` per
/// window `w`; `r` remaining, `t` seconds to the window's end).
fn rate_limit_headers(exceeded: &Exceeded) -> [(&'static str, String); 3] {
    let name = policy_name(exceeded);
    let reset = exceeded.reset_seconds;
    [
        ("retry-after", reset.to_string()),
        (
            "ratelimit-policy",
            format!(
                "\"{name}\";q={};w={}",
                exceeded.limit.requests, exceeded.limit.per_seconds
            ),
        ),
        ("ratelimit", format!("\"{name}\";r=0;t={reset}")),
    ]
}

/// The policy's name as a structured-field string: the claim path's characters outside
/// `[A-Za-z0-9._-]` become `_`, then the window.
fn policy_name(exceeded: &Exceeded) -> String {
    let what: String = exceeded
        .policy
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    format!("{what}-{}s", exceeded.limit.per_seconds)
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
