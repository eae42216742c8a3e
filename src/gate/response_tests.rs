//! Unit tests of `response`.

use super::*;
use crate::policy::path::PathError;

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
        assert!(crate::gate::metrics::DENY_REASONS.contains(&label));
    }
}
