//! The local replies the filter sends instead of forwarding a request. Bodies are ComfyUI
//! Deploy's, so its clients keep working; `WWW-Authenticate` follows RFC 6750 §3.

use crate::credential::CredentialError;
use crate::decision::DenyReason;
use crate::verify::Rejection;

pub const INVALID_TOKEN_BODY: &str = "Invalid or expired token";
pub const REVOKED_TOKEN_BODY: &str = "Revoked token";
pub const UNAVAILABLE_BODY: &str = "Authorization service unavailable";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'static str,
}

impl DenyReason {
    /// A short, stable name for logs: never anything the client sent.
    pub fn label(self) -> &'static str {
        match self {
            Self::Credential(CredentialError::Missing | CredentialError::OtherScheme) => "missing",
            Self::Credential(CredentialError::TooLarge | CredentialError::Malformed) => "malformed",
            Self::Token(Rejection::Malformed | Rejection::DisallowedAlgorithm) => "malformed",
            Self::Token(Rejection::BadSignature) => "bad_signature",
            Self::Token(Rejection::Expired | Rejection::NotYetValid) => "expired",
            Self::Revoked => "revoked",
            Self::UnknownKey => "unknown_key",
            Self::Unavailable => "unavailable",
        }
    }

    /// The reply for this denial. `realm` is validated at configuration time to be safe inside a
    /// quoted string.
    pub fn reply(self, realm: &str) -> LocalReply {
        let (body, description) = match self {
            Self::Credential(error) if !error.token_presented() => {
                return unauthorized(INVALID_TOKEN_BODY, format!("Bearer realm=\"{realm}\""));
            }
            Self::Credential(CredentialError::TooLarge) => {
                (INVALID_TOKEN_BODY, "token is too large")
            }
            Self::Credential(_) => (INVALID_TOKEN_BODY, Rejection::Malformed.description()),
            Self::Token(rejection) => (INVALID_TOKEN_BODY, rejection.description()),
            Self::Revoked => (REVOKED_TOKEN_BODY, "token has been revoked"),
            Self::UnknownKey => (REVOKED_TOKEN_BODY, "token is not registered"),
            Self::Unavailable => {
                return LocalReply {
                    status: 503,
                    headers: vec![("content-type", "text/plain".to_owned())],
                    body: UNAVAILABLE_BODY,
                };
            }
        };
        unauthorized(
            body,
            format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{description}\""
            ),
        )
    }
}

fn unauthorized(body: &'static str, challenge: String) -> LocalReply {
    LocalReply {
        status: 401,
        headers: vec![
            ("content-type", "text/plain".to_owned()),
            ("www-authenticate", challenge),
        ],
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(reply: &LocalReply) -> &str {
        &reply
            .headers
            .iter()
            .find(|(name, _)| *name == "www-authenticate")
            .unwrap()
            .1
    }

    #[test]
    fn a_request_without_a_bearer_token_gets_a_bare_challenge() {
        for error in [CredentialError::Missing, CredentialError::OtherScheme] {
            let reply = DenyReason::Credential(error).reply("keygate");
            assert_eq!(reply.status, 401);
            assert_eq!(reply.body, "Invalid or expired token");
            assert_eq!(challenge(&reply), "Bearer realm=\"keygate\"");
            assert_eq!(reply.headers[0], ("content-type", "text/plain".to_owned()));
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
            let reply = reason.reply("api");
            assert_eq!(reply.status, 401);
            assert_eq!(reply.body, "Invalid or expired token");
            assert_eq!(
                challenge(&reply),
                format!(
                    "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{description}\""
                )
            );
        }
    }

    #[test]
    fn revoked_and_unknown_keys_get_comfyui_deploys_body() {
        for reason in [DenyReason::Revoked, DenyReason::UnknownKey] {
            let reply = reason.reply("keygate");
            assert_eq!((reply.status, reply.body), (401, "Revoked token"));
            assert!(challenge(&reply).contains("error=\"invalid_token\""));
        }
    }

    #[test]
    fn an_unavailable_service_is_a_503_without_a_challenge() {
        let reply = DenyReason::Unavailable.reply("keygate");
        assert_eq!(
            (reply.status, reply.body),
            (503, "Authorization service unavailable")
        );
        assert!(
            reply
                .headers
                .iter()
                .all(|(name, _)| *name != "www-authenticate")
        );
    }

    #[test]
    fn labels_are_the_documented_reason_names() {
        assert_eq!(
            DenyReason::Credential(CredentialError::Missing).label(),
            "missing"
        );
        assert_eq!(
            DenyReason::Token(Rejection::BadSignature).label(),
            "bad_signature"
        );
        assert_eq!(DenyReason::UnknownKey.label(), "unknown_key");
    }
}
