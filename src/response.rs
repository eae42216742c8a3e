//! The local replies the filter sends instead of forwarding a request. Text bodies are ComfyUI
//! Deploy's, so its clients keep working; `WWW-Authenticate` follows RFC 6750 §3.

use crate::config::{Config, ResponseFormat};
use crate::credential::CredentialError;
use crate::decision::DenyReason;
use crate::verify::Rejection;

pub const INVALID_TOKEN_BODY: &str = "Invalid or expired token";
pub const REVOKED_TOKEN_BODY: &str = "Revoked token";
pub const UNAVAILABLE_BODY: &str = "Authorization service unavailable";
pub const INSUFFICIENT_SCOPE_BODY: &str = "Insufficient scope";
pub const FORBIDDEN_BODY: &str = "Forbidden";
pub const BAD_REQUEST_BODY: &str = "Bad request";

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
                | Rejection::UnrepresentableClaim,
            ) => "invalid_claims",
            Self::Revoked => "revoked",
            Self::UnknownKey => "unknown_key",
            Self::Unavailable | Self::KeysUnavailable => "unavailable",
            Self::InsufficientScope(_) => "forbidden_scope",
            Self::ForbiddenRule => "forbidden_rule",
            Self::BadPath(_) => "bad_path",
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
            Challenge::InsufficientScope(scope) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\", scope=\"{scope}\"",
                answer.description
            )),
        };
        if let Some(challenge) = challenge {
            headers.push(("www-authenticate", challenge));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathError;

    fn config(extra: &str) -> Config {
        let json = format!(
            r#"{{"secret":{{"inline":"s"}},"realm":"api"{extra},"revocation":{{"cluster":"k"}}}}"#
        );
        Config::parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_request_without_a_bearer_token_gets_a_bare_challenge() {
        for error in [CredentialError::Missing, CredentialError::OtherScheme] {
            let reply = DenyReason::Credential(error).reply(&config(""));
            assert_eq!(reply.status, 401);
            assert_eq!(reply.body, "Invalid or expired token");
            assert_eq!(
                header(&reply, "www-authenticate"),
                Some("Bearer realm=\"api\"")
            );
            assert_eq!(header(&reply, "content-type"), Some("text/plain"));
        }
    }

    #[test]
    fn a_bad_token_gets_invalid_token_with_a_description() {
        let cases = [
            (DenyReason::Token(Rejection::Expired), "token has expired"),
            (
                DenyReason::Token(Rejection::BadSignature),
                "token signature is invalid",
            ),
            (
                DenyReason::Credential(CredentialError::TooLarge),
                "token is too large",
            ),
            (
                DenyReason::Credential(CredentialError::Malformed),
                "token is malformed",
            ),
        ];
        for (reason, description) in cases {
            let reply = reason.reply(&config(""));
            assert_eq!(reply.status, 401);
            assert_eq!(reply.body, "Invalid or expired token");
            assert_eq!(
                header(&reply, "www-authenticate").unwrap(),
                format!(
                    "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{description}\""
                )
            );
        }
    }

    #[test]
    fn revoked_and_unknown_keys_get_comfyui_deploys_body() {
        for reason in [DenyReason::Revoked, DenyReason::UnknownKey] {
            let reply = reason.reply(&config(""));
            assert_eq!((reply.status, reply.body.as_str()), (401, "Revoked token"));
            assert!(
                header(&reply, "www-authenticate")
                    .unwrap()
                    .contains("error=\"invalid_token\"")
            );
        }
    }

    #[test]
    fn a_missing_scope_is_a_403_naming_the_required_scopes() {
        let reply = DenyReason::InsufficientScope("keys:write admin".into()).reply(&config(""));
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (403, "Insufficient scope")
        );
        assert_eq!(
            header(&reply, "www-authenticate"),
            Some(
                "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"token lacks a scope this route requires\", scope=\"keys:write admin\""
            )
        );
    }

    #[test]
    fn rule_denials_bad_paths_and_outages_carry_no_challenge() {
        let cases = [
            (DenyReason::ForbiddenRule, 403, "Forbidden"),
            (
                DenyReason::BadPath(PathError::EncodedDelimiter),
                400,
                "Bad request",
            ),
            (
                DenyReason::Unavailable,
                503,
                "Authorization service unavailable",
            ),
        ];
        for (reason, status, body) in cases {
            let reply = reason.reply(&config(""));
            assert_eq!((reply.status, reply.body.as_str()), (status, body));
            assert_eq!(header(&reply, "www-authenticate"), None);
        }
    }

    #[test]
    fn json_format_gives_error_and_description() {
        let json = config(r#","response_format":"json""#);
        let reply = DenyReason::Token(Rejection::Expired).reply(&json);
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "invalid_token", "error_description": "token has expired"})
        );
        assert!(header(&reply, "www-authenticate").is_some());
        let reply = DenyReason::Unavailable.reply(&json);
        assert_eq!(reply.status, 503);
        assert!(reply.body.contains("temporarily_unavailable"));
    }

    #[test]
    fn labels_are_the_documented_stat_names() {
        let cases = [
            (DenyReason::Credential(CredentialError::Missing), "missing"),
            (DenyReason::Token(Rejection::BadSignature), "bad_signature"),
            (DenyReason::UnknownKey, "unknown_key"),
            (DenyReason::Token(Rejection::UnknownKid), "unknown_kid"),
            (
                DenyReason::Token(Rejection::WrongAudience),
                "invalid_claims",
            ),
            (DenyReason::KeysUnavailable, "unavailable"),
            (
                DenyReason::InsufficientScope(String::new()),
                "forbidden_scope",
            ),
        ];
        for (reason, label) in cases {
            assert_eq!(reason.label(), label);
            assert!(crate::metrics::DENY_REASONS.contains(&label));
        }
    }
}
