//! Requirements, natively: what each route takes, combinations, optional identity, claim
//! conditions, filter state.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::config::{Config, ConfigError};
use crate::gate::claims::{HeaderWrite, Property};
use crate::gate::decision::{Decision, DenyReason, Gate, Grant, RequestHead, Trace};
use crate::gate::metrics::Metrics;
use crate::gate::verify::Rejection;
use crate::extract::credential::CredentialError;
use crate::revocation::protocol::{RevocationStatus, token_digest};

const NOW: u64 = 1_700_000_000;

/// API keys in `Authorization` (secret `s`, revocation checked for keys without `exp`) and
/// sessions in the `__session` cookie (secret `t`, `azp` must be the app's origin).
fn config(extra: &str) -> String {
    format!(
        r#"{{
        "providers": [
            {{"name": "keys", "secret": {{"inline": "s"}}}},
            {{"name": "session", "secret": {{"inline": "t"}}, "revocation": "none",
              "sources": [{{"cookie": "__session"}}],
              "claims_to_headers": {{"sub": "x-user-id", "org_id": "x-org-id"}},
              "claims": [{{"claim": "azp", "in": ["https://app.example.com"]}}]}}
        ],
        "revocation": {{"cluster": "keyservice"}},
        "requirements": {{
            "dashboard": {{"provider": "session"}},
            "api": {{"provider": "keys"}},
            "public": {{"any": ["session", "keys"], "allow_missing": true}},
            "lenient": {{"any": ["keys", "session"], "allow_missing_or_failed": true}},
            "both": {{"all": ["keys", "session"]}},
            "admin": {{"provider": "session", "claims": [{{"claim": "org_role", "in": ["admin"]}}]}}
        }}{extra}
    }}"#
    )
}

fn gate(extra: &str) -> Gate {
    Gate::new(
        Config::parse(config(extra).as_bytes(), &|_| None).unwrap(),
        Metrics::default(),
    )
}

fn refused(extra: &str) -> String {
    Config::parse(config(extra).as_bytes(), &|_| None)
        .unwrap_err()
        .to_string()
}

fn sign(secret: &[u8], claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn api_key(user: &str) -> String {
    sign(b"s", json!({"user_id": user, "org_id": "o1", "iat": NOW}))
}

fn session(user: &str, extra: Value) -> String {
    let mut claims = json!({"sub": user, "azp": "https://app.example.com", "iat": NOW, "exp": NOW + 60});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    sign(b"t", claims)
}

/// A request with an optional bearer key, an optional session cookie, and the route's
/// requirement.
struct Request<'a> {
    key: Option<&'a str>,
    session: Option<&'a str>,
    route: Option<&'a str>,
    path: Option<&'a str>,
}

const NONE: Request<'static> = Request {
    key: None,
    session: None,
    route: None,
    path: None,
};

fn decide(gate: &Gate, request: Request<'_>) -> (Decision, Trace) {
    let sources: Vec<Option<Vec<u8>>> = gate
        .source_headers()
        .iter()
        .map(|name| match name.as_str() {
            "authorization" => request.key.map(|k| format!("Bearer {k}").into_bytes()),
            "cookie" => request.session.map(|s| format!("__session={s}").into_bytes()),
            other => panic!("unexpected source header {other}"),
        })
        .collect();
    gate.decide_traced(
        &RequestHead {
            sources: &sources,
            path: request.path.map(str::as_bytes),
            method: Some(b"GET"),
            requirement: request.route.map(str::as_bytes),
            passing_preflight: false,
        },
        NOW * 1000,
    )
}

fn identity(decision: &Decision) -> Vec<(String, Option<String>)> {
    let grant = match decision {
        Decision::Allow(grant) => grant,
        Decision::CheckRevocation(check) => &check.grant,
        other => panic!("not let through: {other:?}"),
    };
    grant
        .identity
        .iter()
        .map(|HeaderWrite { name, value }| (name.clone(), value.clone()))
        .collect()
}

fn pairs(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.map(str::to_owned)))
        .collect()
}

fn missing() -> Decision {
    Decision::Deny(DenyReason::Credential(CredentialError::Missing))
}

#[test]
fn a_route_takes_only_its_requirements_providers() {
    let gate = gate("");
    let key = api_key("u1");
    let session = session("user_2", json!({"org_id": "org_9"}));
    // The dashboard reads only the session cookie: an API key there is no credential.
    let dashboard = |key, session| {
        decide(&gate, Request { key, session, route: Some("dashboard"), ..NONE }).0
    };
    assert_eq!(dashboard(Some(&key), None), missing());
    let allowed = dashboard(Some(&key), Some(&session));
    assert_eq!(
        identity(&allowed),
        pairs(&[("x-user-id", Some("user_2")), ("x-org-id", Some("org_9"))])
    );
    // /api reads only Authorization.
    let api = |key, session| decide(&gate, Request { key, session, route: Some("api"), ..NONE }).0;
    assert_eq!(api(None, Some(&session)), missing());
    assert!(matches!(api(Some(&key), None), Decision::CheckRevocation(_)));
    // A session token in Authorization is not an API key: signed with another secret.
    let bearer_session = session.clone();
    assert_eq!(
        api(Some(&bearer_session), None),
        Decision::Deny(DenyReason::Token(Rejection::BadSignature))
    );
}

#[test]
fn without_a_route_selection_the_default_requirement_applies() {
    let gate = gate("");
    let key = api_key("u1");
    // The implicit default: any provider, as before requirements existed.
    assert!(matches!(
        decide(&gate, Request { key: Some(&key), ..NONE }).0,
        Decision::CheckRevocation(_)
    ));
    let session = session("user_2", json!({}));
    assert!(matches!(
        decide(&gate, Request { session: Some(&session), ..NONE }).0,
        Decision::Allow(_)
    ));
    assert_eq!(decide(&gate, NONE).0, missing());
    // A named default.
    let gate = self::gate(r#", "default_requirement": "dashboard""#);
    assert_eq!(decide(&gate, Request { key: Some(&key), ..NONE }).0, missing());
}

#[test]
fn a_route_naming_an_unknown_requirement_is_refused() {
    let gate = gate("");
    for name in ["nope", "", "(any provider)", "Dashboard"] {
        assert_eq!(
            decide(&gate, Request { route: Some(name), ..NONE }).0,
            Decision::Deny(DenyReason::UnknownRequirement),
            "{name:?}"
        );
    }
    let reply = DenyReason::UnknownRequirement.reply(&gate.config);
    assert_eq!(reply.status, 500);
}

#[test]
fn allow_missing_lets_requests_without_a_token_on_without_identity_but_not_bad_ones() {
    let gate = gate("");
    let public = |key, session| {
        decide(&gate, Request { key, session, route: Some("public"), ..NONE })
    };
    let (decision, trace) = public(None, None);
    assert!(trace.anonymous);
    assert_eq!(
        identity(&decision),
        pairs(&[("x-user-id", None), ("x-org-id", None)])
    );
    let forged = sign(b"wrong", json!({"user_id": "admin"}));
    let (decision, trace) = public(Some(&forged), None);
    assert_eq!(decision, Decision::Deny(DenyReason::Token(Rejection::BadSignature)));
    assert!(!trace.anonymous);
    let session = session("user_2", json!({}));
    let (decision, trace) = public(None, Some(&session));
    assert!(!trace.anonymous);
    assert_eq!(identity(&decision)[0], ("x-user-id".into(), Some("user_2".into())));
}

#[test]
fn allow_missing_or_failed_gives_identity_only_when_valid() {
    let gate = gate("");
    let lenient = |key| decide(&gate, Request { key, route: Some("lenient"), ..NONE });
    let forged = sign(b"wrong", json!({"user_id": "admin"}));
    for bad in [Some(forged.as_str()), Some("not-a-jwt"), None] {
        let (decision, trace) = lenient(bad);
        assert!(trace.anonymous, "{bad:?}");
        assert_eq!(
            identity(&decision),
            pairs(&[("x-user-id", None), ("x-org-id", None)]),
            "{bad:?}"
        );
    }
    // A valid key still goes to keyservice; a refusal there means no identity, not a 401.
    let key = api_key("u1");
    let Decision::CheckRevocation(check) = lenient(Some(&key)).0 else {
        panic!("a key without exp is checked");
    };
    assert!(check.grant.fallback.is_some());
    let revoked = gate.after_revocation(RevocationStatus::Revoked, check.grant.clone());
    assert_eq!(identity(&revoked), pairs(&[("x-user-id", None), ("x-org-id", None)]));
    let Decision::Allow(active) = gate.after_revocation(RevocationStatus::Active, check.grant.clone())
    else {
        panic!("active is allowed");
    };
    assert_eq!(active.identity[0].value.as_deref(), Some("u1"));
    assert_eq!(active.fallback, None);
    assert!(gate.refuses(RevocationStatus::Unavailable));
    // Without the option, the same answer refuses.
    let Decision::CheckRevocation(strict) = decide(&gate, Request { key: Some(&key), route: Some("api"), ..NONE }).0
    else {
        panic!("checked");
    };
    assert_eq!(strict.grant.fallback, None);
    assert_eq!(
        gate.after_revocation(RevocationStatus::Revoked, strict.grant),
        Decision::Deny(DenyReason::Revoked)
    );
}

#[test]
fn all_needs_a_valid_token_from_every_provider() {
    let gate = gate("");
    let key = api_key("u1");
    let session = session("user_2", json!({"org_id": "org_9"}));
    let both = |key, session| decide(&gate, Request { key, session, route: Some("both"), ..NONE }).0;
    assert_eq!(both(Some(&key), None), missing());
    assert_eq!(both(None, Some(&session)), missing());
    assert_eq!(both(None, None), missing());
    let forged = sign(b"wrong", json!({"sub": "x", "azp": "https://app.example.com"}));
    assert_eq!(
        both(Some(&key), Some(&forged)),
        Decision::Deny(DenyReason::Token(Rejection::BadSignature))
    );
    // Both: the key is checked with keyservice; the headers come from the first provider
    // listed that sets each (the key's user and org).
    let Decision::CheckRevocation(check) = both(Some(&key), Some(&session)) else {
        panic!("the key has no exp");
    };
    assert_eq!(
        crate::revocation::protocol::hex_digest(&check.digest),
        token_digest(&key)
    );
    assert_eq!(
        identity(&Decision::Allow(check.grant)),
        pairs(&[("x-user-id", Some("u1")), ("x-org-id", Some("o1"))])
    );
}

#[test]
fn claim_conditions_of_providers_are_401_and_of_requirements_403() {
    let gate = gate("");
    // Clerk's azp: a session issued for another origin is not a valid token anywhere.
    let evil = session("user_2", json!({"azp": "https://evil.example"}));
    let no_azp = sign(b"t", json!({"sub": "user_2", "iat": NOW, "exp": NOW + 60}));
    for token in [&evil, &no_azp] {
        for route in [Some("dashboard"), None, Some("public")] {
            assert_eq!(
                decide(&gate, Request { session: Some(token), route, ..NONE }).0,
                Decision::Deny(DenyReason::Token(Rejection::ClaimNotAccepted)),
                "{route:?}"
            );
        }
    }
    let reply = DenyReason::Token(Rejection::ClaimNotAccepted).reply(&gate.config);
    assert_eq!(reply.status, 401);
    // A requirement's condition: an authorization failure.
    let member = session("user_2", json!({"org_role": "member"}));
    let admin = session("user_2", json!({"org_role": "admin"}));
    let at_admin = |token| decide(&gate, Request { session: Some(token), route: Some("admin"), ..NONE }).0;
    assert_eq!(at_admin(&member), Decision::Deny(DenyReason::ForbiddenClaims));
    assert!(matches!(at_admin(&admin), Decision::Allow(_)));
    let reply = DenyReason::ForbiddenClaims.reply(&gate.config);
    assert_eq!(reply.status, 403);
    assert!(reply.headers.iter().any(|(name, value)| *name == "www-authenticate"
        && value.contains("error=\"insufficient_scope\"")));
    // Elsewhere the member is fine.
    assert!(matches!(
        decide(&gate, Request { session: Some(&member), route: Some("dashboard"), ..NONE }).0,
        Decision::Allow(_)
    ));
}

#[test]
fn path_rules_select_requirements_when_the_route_does_not() {
    let gate = gate(
        r#", "rules": [
            {"match": {"prefix": "/dashboard/"}, "action": "authenticate", "requirement": "dashboard"},
            {"match": {"path": "/healthz"}, "action": "allow"}
        ]"#,
    );
    let key = api_key("u1");
    let at = |path, route| decide(&gate, Request { key: Some(&key), path: Some(path), route, ..NONE }).0;
    assert_eq!(at("/dashboard/keys", None), missing());
    assert!(matches!(at("/v1/jobs", None), Decision::CheckRevocation(_)));
    assert!(matches!(at("/healthz", None), Decision::Allow(_)));
    // The route's selection comes first.
    assert!(matches!(at("/dashboard/keys", Some("api")), Decision::CheckRevocation(_)));
}

#[test]
fn filter_state_publishes_the_verified_identity() {
    let gate = gate(r#", "filter_state": {"claims": {"user_id": "user_id", "org_id": "org_id"}}"#);
    let key = sign(b"s", json!({"user_id": "u1", "org_id": "o1", "iat": NOW, "exp": NOW + 60, "scopes": ["jobs:run", "keys:read"]}));
    let (Decision::Allow(grant), _) = decide(&gate, Request { key: Some(&key), ..NONE }) else {
        panic!("allowed");
    };
    let properties: Vec<(&str, &str)> = grant
        .properties
        .iter()
        .map(|Property { name, value }| (name.as_str(), value.as_str()))
        .collect();
    let digest = token_digest(&key);
    assert_eq!(
        properties,
        vec![
            ("keygate.provider", "keys"),
            ("keygate.key_digest", digest.as_str()),
            ("keygate.scopes", "jobs:run keys:read"),
            ("keygate.org_id", "o1"),
            ("keygate.user_id", "u1"),
        ]
    );
    // A request without identity publishes nothing.
    let (Decision::Allow(anonymous), _) = decide(&gate, Request { route: Some("public"), ..NONE })
    else {
        panic!("allowed");
    };
    assert!(anonymous.properties.is_empty());
    // Off by default.
    let (Decision::Allow(grant), _) = decide(&self::gate(""), Request { key: Some(&key), ..NONE })
    else {
        panic!("allowed");
    };
    assert_eq!(grant.properties, Arc::from([]));
    assert_eq!(grant, Grant { properties: Arc::from([]), ..grant.clone() });
}

#[test]
fn requirements_that_cannot_work_are_refused_at_load_naming_the_field() {
    let cases = [
        (r#", "default_requirement": "nope""#, "`default_requirement`: no requirement is named \"nope\""),
        (r#", "rules": [{"match": {"path": "/a"}, "action": "authenticate", "requirement": "nope"}]"#, "`rules[0].requirement`"),
        (r#", "rules": [{"match": {"path": "/a"}, "action": "require_scopes", "scopes": ["x"], "requirement": "public"}]"#, "`rules[0]`: require_scopes needs a token"),
        (r#", "filter_state": {"claims": {"sub": "provider"}}"#, "`filter_state.claims.sub`"),
    ];
    for (extra, expected) in cases {
        let error = refused(extra);
        assert!(error.starts_with(expected), "{extra}: {error}");
    }
    let parse = |requirements: &str| {
        let json = format!(
            r#"{{"providers": [{{"name": "a", "secret": {{"inline": "s"}}}}, {{"name": "b", "secret": {{"inline": "t"}}}}, {{"name": "c", "secret": {{"inline": "u"}}, "revocation": "none"}}],
                "revocation": {{"cluster": "k"}}, "requirements": {requirements}}}"#
        );
        Config::parse(json.as_bytes(), &|_| None).map(|_| ()).map_err(|e: ConfigError| e.to_string())
    };
    let cases = [
        (r#"{"x": {"provider": "zz"}}"#, "`requirements.x.provider`: no provider is named \"zz\""),
        (r#"{"x": {"any": ["a", "zz"]}}"#, "`requirements.x.any[1]`: no provider is named \"zz\""),
        (r#"{"x": {"any": []}}"#, "`requirements.x`: `any` is empty"),
        (r#"{"x": {"any": ["a", "a"]}}"#, "`requirements.x.any[1]`: provider \"a\" is listed twice"),
        (r#"{"x": {"provider": "a", "any": ["b"]}}"#, "`requirements.x`: give exactly one of"),
        (r#"{"x": {"all": ["a"]}}"#, "`requirements.x`: `all` of one provider"),
        (r#"{"x": {"all": ["a", "b"]}}"#, "`requirements.x`: providers [\"a\", \"b\"] both check revocation"),
        (r#"{"x": {"all": ["a", "c"], "claims": [{"claim": "r", "exists": true}]}}"#, "`requirements.x`: `claims` on an `all` requirement"),
        (r#"{"x": {"provider": "a", "allow_missing": true, "allow_missing_or_failed": true}}"#, "`requirements.x`: give at most one"),
        (r#"{"x y": {"provider": "a"}}"#, "`requirements.x y`: the name must be"),
        (r#"{"x": {"provider": "a", "claims": [{"claim": "sub.id", "exists": true}]}}"#, "`requirements.x.claims[0].claim`"),
        (r#"{"x": {"provider": "a", "claim": []}}"#, "invalid plugin configuration at `requirements.x.claim`"),
    ];
    for (requirements, expected) in cases {
        let error = parse(requirements).unwrap_err();
        assert!(error.starts_with(expected), "{requirements}: {error}");
    }
    assert_eq!(parse(r#"{"x": {"all": ["a", "c"]}}"#), Ok(()));
}
