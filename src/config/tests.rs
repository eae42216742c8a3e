//! Configuration parsing: defaults, every field, and errors that name the field.

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::*;
use crate::extract::sources::TokenSource;
use crate::testing::keys::{self as test_keys, jwk};

fn env(name: &str) -> Option<String> {
    match name {
        "JWT_SECRET" => Some("s3cret".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse(json: &str) -> Result<Config, ConfigError> {
    Config::parse(json.as_bytes(), &env)
}

fn error(json: &str) -> String {
    parse(json).unwrap_err().to_string()
}

const MINIMAL: &str = r#"{"secret":{"env":"JWT_SECRET"},"revocation":{"cluster":"keyservice"}}"#;

fn secrets(provider: &Provider) -> Vec<Vec<u8>> {
    match &provider.keys {
        KeyMaterial::Secrets(secrets) => secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
        other => panic!("expected secrets, got {other:?}"),
    }
}

fn headers(provider: &Provider) -> Vec<(&str, &str)> {
    provider
        .claims_to_headers
        .iter()
        .map(|m| (m.claim.as_str(), m.header.as_str()))
        .collect()
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.providers.len(), 1);
    let provider = &config.providers[0];
    assert_eq!(provider.name, "default");
    assert_eq!(secrets(provider), vec![b"s3cret".to_vec()]);
    assert_eq!(
        provider.algorithms,
        vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
    );
    assert_eq!(
        headers(provider),
        vec![("user_id", "x-user-id"), ("org_id", "x-org-id")]
    );
    assert_eq!(provider.sources, vec![TokenSource::authorization_bearer()]);
    assert!(!provider.strip_source);
    assert_eq!(provider.revocation, RevocationCheck::NonExpiring);
    assert_eq!(provider.payload_header, None);
    assert_eq!(config.clock_skew_seconds, 60);
    assert_eq!(config.max_token_bytes, 8192);
    assert_eq!(config.realm, "keygate");
    assert_eq!(
        config.revocation,
        Some(RevocationConfig {
            cluster: "keyservice".into(),
            authority: "keyservice".into(),
            path_prefix: "/v1/revocations/".into(),
            timeout_ms: 500,
            unknown_keys: UnknownKeys::Deny,
            failure_mode: FailureMode::Deny,
            cache: Some(CacheConfig {
                max_entries: 16_384,
                max_active_seconds: 30,
                max_revoked_seconds: 86_400,
            }),
            feed: None,
        })
    );
    assert_eq!(config.response_format, ResponseFormat::Text);
    assert_eq!(
        config.token_cache,
        Some(TokenCacheConfig {
            max_entries: 1024,
            ttl_seconds: 60,
        })
    );
    assert!(config.cors.is_none());
    assert_eq!(config.owned_headers(), vec!["x-user-id", "x-org-id"]);
}

#[test]
fn full_single_provider_config_is_taken_as_written() {
    let config = parse(
        r#"{
          "secret": [{"env": "JWT_SECRET"}, {"inline": "previous"}],
          "algorithms": ["HS512"],
          "clock_skew_seconds": 5,
          "max_token_bytes": 4096,
          "realm": "api",
          "claims_to_headers": {"user_id": "x-user", "plan": "x-plan"},
          "payload_header": "x-jwt-payload",
          "strip_authorization": true,
          "revocation": {
            "cluster": "outbound|8081||keyservice.default.svc.cluster.local",
            "authority": "keyservice.default",
            "path_prefix": "/internal/revocations/",
            "timeout_ms": 250,
            "check": "all",
            "unknown_keys": "allow",
            "failure_mode": "allow"
          }
        }"#,
    )
    .unwrap();
    let provider = &config.providers[0];
    assert_eq!(
        secrets(provider),
        vec![b"s3cret".to_vec(), b"previous".to_vec()]
    );
    assert_eq!(provider.algorithms, vec![Algorithm::HS512]);
    assert_eq!(config.clock_skew_seconds, 5);
    assert_eq!(config.max_token_bytes, 4096);
    assert_eq!(config.realm, "api");
    assert!(headers(provider).contains(&("plan", "x-plan")));
    assert_eq!(provider.payload_header.as_deref(), Some("x-jwt-payload"));
    assert!(provider.strip_source);
    assert_eq!(provider.revocation, RevocationCheck::All);
    let revocation = config.revocation.unwrap();
    assert_eq!(revocation.authority, "keyservice.default");
    assert_eq!(revocation.unknown_keys, UnknownKeys::Allow);
    assert_eq!(revocation.failure_mode, FailureMode::Allow);
}

#[test]
fn providers_take_their_own_keys_sources_and_claims() {
    let ed = test_keys::ed25519();
    let json = json!({
        "claims_to_headers": {"user_id": "x-user-id"},
        "revocation": {"cluster": "keyservice"},
        "providers": [
            {"name": "api-keys", "secret": {"env": "JWT_SECRET"}},
            {
                "name": "clerk",
                "issuer": "https://clerk.example.com",
                "audiences": ["dashboard"],
                "remote_jwks": {"cluster": "clerk", "authority": "clerk.example.com"},
                "sources": [{"cookie": "__session"}, {"header": "authorization", "prefix": "Bearer "}],
                "claims_to_headers": {"sub": "x-user-id", "org.id": "x-org-id", "roles": "x-roles"},
                "required_claims": ["sub"],
                "max_lifetime_seconds": 3600,
                "strip_source": true
            },
            {"name": "inline", "jwks": {"keys": [jwk(&ed, "k1", None)]}, "algorithms": ["EdDSA"], "sources": [{"query": "token"}], "revocation": "all"}
        ]
    });
    let config = parse(&json.to_string()).unwrap();
    let [api, clerk, inline] = &config.providers[..] else {
        panic!("three providers");
    };
    assert_eq!(
        headers(api),
        vec![("user_id", "x-user-id")],
        "top-level default"
    );
    assert_eq!(api.revocation, RevocationCheck::NonExpiring);
    assert_eq!(clerk.issuer.as_deref(), Some("https://clerk.example.com"));
    assert_eq!(clerk.audiences, vec!["dashboard"]);
    assert_eq!(
        clerk.revocation,
        RevocationCheck::None,
        "session tokens: no check by default"
    );
    assert_eq!(clerk.algorithms.len(), 9, "every asymmetric algorithm");
    assert_eq!(clerk.sources[0], TokenSource::Cookie("__session".into()));
    assert!(clerk.strip_source);
    assert_eq!(clerk.required_claims, vec!["sub"]);
    assert_eq!(clerk.max_lifetime_seconds, Some(3600));
    let org = clerk
        .claims_to_headers
        .iter()
        .find(|m| m.claim == "org.id")
        .unwrap();
    assert_eq!(org.path, vec!["org", "id"]);
    let KeyMaterial::Remote(remote) = &clerk.keys else {
        panic!("remote JWKS");
    };
    assert_eq!(
        *remote,
        RemoteJwks {
            cluster: "clerk".into(),
            authority: "clerk.example.com".into(),
            path: "/.well-known/jwks.json".into(),
            discovery: false,
            refresh_seconds: 600,
            min_refetch_seconds: 30,
            timeout_ms: 2000,
            until_ready: UntilReady::Wait { wait_ms: 2000 },
            failure_mode: FailureMode::Deny,
        }
    );
    assert!(matches!(&inline.keys, KeyMaterial::Jwks(keys) if keys.len() == 1));
    assert_eq!(inline.sources, vec![TokenSource::Query("token".into())]);
    assert_eq!(inline.revocation, RevocationCheck::All);
    assert_eq!(
        config.owned_headers(),
        vec!["x-user-id", "x-org-id", "x-roles"]
    );
}

#[test]
fn discovery_defaults_to_the_openid_configuration_path() {
    let config = parse(
        r#"{"providers":[{"name":"oidc","remote_jwks":{"cluster":"idp","discovery":true,"until_ready":"fail"}}]}"#,
    )
    .unwrap();
    assert!(config.revocation.is_none(), "no provider checks revocation");
    let KeyMaterial::Remote(remote) = &config.providers[0].keys else {
        panic!("remote");
    };
    assert_eq!(remote.path, "/.well-known/openid-configuration");
    assert_eq!(remote.until_ready, UntilReady::Fail);
}

#[test]
fn errors_name_the_field() {
    let cases = [
        ("", "configuration is empty"),
        ("{", "invalid plugin configuration"),
        (r#"{"revocation":{"cluster":"k"}}"#, "`secret`"),
        (
            r#"{"secret":{"env":"JWT_SECRET"},"revocation":{"cluster":"k"},"secrets":1}"#,
            "unknown field `secrets`",
        ),
        (
            r#"{"secret":{"env":"JWT_SECRET"},"revocation":{"cluster":"k","timeout":1}}"#,
            "at `revocation.timeout`: unknown field `timeout`",
        ),
        (
            r#"{"secret":{"env":"JWT_SECRET"}}"#,
            "`revocation`: provider \"default\" checks revocation",
        ),
        (
            r#"{"secret":{"env":"NOPE"},"revocation":{"cluster":"k"}}"#,
            "`secret.env`: environment variable NOPE is unset",
        ),
        (
            r#"{"secret":[{"inline":"a"},{"env":"EMPTY"}],"revocation":{"cluster":"k"}}"#,
            "`secret[1].env`: environment variable EMPTY is unset or empty",
        ),
        (
            r#"{"secret":{"inline":""},"revocation":{"cluster":"k"}}"#,
            "`secret.inline`: the secret is empty",
        ),
        (r#"{"secret":[],"revocation":{"cluster":"k"}}"#, "`secret`"),
        (
            r#"{"secret":{"inline":"a"},"algorithms":["HS256","none"],"revocation":{"cluster":"k"}}"#,
            "`algorithms[1]`: algorithm \"none\" is not supported",
        ),
        (
            r#"{"secret":{"inline":"a"},"algorithms":["RS256"],"revocation":{"cluster":"k"}}"#,
            "`algorithms[0]`",
        ),
        (
            r#"{"secret":{"inline":"a"},"algorithms":[],"revocation":{"cluster":"k"}}"#,
            "`algorithms`: the list is empty",
        ),
        (
            r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","timeout_ms":0}}"#,
            "`revocation.timeout_ms`: 0 is out of range",
        ),
        (
            r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","timeout_ms":"fast"}}"#,
            "at `revocation.timeout_ms`",
        ),
        (
            r#"{"secret":{"inline":"a"},"revocation":{"cluster":""}}"#,
            "`revocation.cluster`: must not be empty",
        ),
        (
            r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","check":"sometimes"}}"#,
            "at `revocation.check`: unknown variant `sometimes`",
        ),
        (
            r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","failure_mode":"open"}}"#,
            "at `revocation.failure_mode`",
        ),
        (
            r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","path_prefix":"v1/"}}"#,
            "`revocation.path_prefix`",
        ),
        (
            r#"{"secret":{"inline":"a"},"max_token_bytes":0,"revocation":{"cluster":"k"}}"#,
            "`max_token_bytes`: 0 is out of range",
        ),
        (
            r#"{"secret":{"inline":"a"},"clock_skew_seconds":99999,"revocation":{"cluster":"k"}}"#,
            "`clock_skew_seconds`",
        ),
        (
            r#"{"secret":{"inline":"a"},"realm":"a\"b","revocation":{"cluster":"k"}}"#,
            "`realm`",
        ),
        (
            r#"{"secret":{"inline":"a"},"claims_to_headers":{"user_id":"X-User"},"revocation":{"cluster":"k"}}"#,
            "`claims_to_headers.user_id`: header name \"X-User\"",
        ),
        (
            r#"{"secret":{"inline":"a"},"claims_to_headers":{"user_id":"authorization"},"revocation":{"cluster":"k"}}"#,
            "`claims_to_headers.user_id`",
        ),
        (
            r#"{"secret":{"inline":"a"},"claims_to_headers":{"a":"x-a","b":"x-a"},"revocation":{"cluster":"k"}}"#,
            "`claims_to_headers.b`: header \"x-a\" is already set",
        ),
        (
            r#"{"secret":{"inline":"a"},"claims_to_headers":{"a":1},"revocation":{"cluster":"k"}}"#,
            "`claims_to_headers.a`",
        ),
        (
            r#"{"secret":{"inline":"a"},"payload_header":"x-user-id","revocation":{"cluster":"k"}}"#,
            "`payload_header`: header \"x-user-id\" is already set",
        ),
        (
            r#"{"secret":{"inline":"a"},"payload_header":":path","revocation":{"cluster":"k"}}"#,
            "`payload_header`",
        ),
        (
            r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","cache":{"max_active_seconds":999999999}}}"#,
            "`revocation.cache.max_active_seconds`",
        ),
        (
            r#"{"secret":{"inline":"a"},"revocation":{"cluster":"k","cache":{"ttl":1}}}"#,
            "at `revocation.cache.ttl`: unknown field",
        ),
        (
            r#"{"secret":{"inline":"a"},"token_cache":{"max_entries":10,"ttl_seconds":0},"revocation":{"cluster":"k"}}"#,
            "`token_cache.ttl_seconds`",
        ),
        (
            r#"{"secret":{"inline":"a"},"response_format":"xml","revocation":{"cluster":"k"}}"#,
            "at `response_format`",
        ),
    ];
    let more = [
        (r#"{"providers":[]}"#, "`providers`: the list is empty"),
        (
            r#"{"secret":{"inline":"a"},"providers":[{"name":"x","secret":{"inline":"a"}}],"revocation":{"cluster":"k"}}"#,
            "`secret`: with `providers`, set `secret` inside each provider instead",
        ),
        (
            r#"{"strip_authorization":true,"providers":[{"name":"x","secret":{"inline":"a"}}],"revocation":{"cluster":"k"}}"#,
            "`strip_authorization`: with `providers`, set `strip_source` inside each provider instead",
        ),
        (
            r#"{"providers":[{"name":"x","secret":{"inline":"a"}},{"name":"x","secret":{"inline":"b"}}],"revocation":{"cluster":"k"}}"#,
            "`providers[1].name`: provider name \"x\" is used twice",
        ),
        (
            r#"{"providers":[{"name":"x"}]}"#,
            "`providers[0]`: give exactly one of `secret`, `jwks` or `remote_jwks`",
        ),
        (
            r#"{"providers":[{"name":"x","secret":{"inline":"a"},"jwks":{"keys":[]}}]}"#,
            "`providers[0]`: give exactly one of",
        ),
        (
            r#"{"providers":[{"name":"x","jwks":{"keys":[]}}]}"#,
            "`providers[0].jwks`: the JWKS has no key usable",
        ),
        (
            r#"{"providers":[{"name":"x","secret":{"inline":"a"},"algorithms":["RS256"]}],"revocation":{"cluster":"k"}}"#,
            "`providers[0].algorithms[0]`: algorithm \"RS256\" is not supported here; use HS256, HS384 or HS512",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":"c"},"algorithms":["none"]}]}"#,
            "`providers[0].algorithms[0]`",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":"c","refresh_seconds":1}}]}"#,
            "`providers[0].remote_jwks.refresh_seconds`: 1 is out of range",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":"c","path":"jwks"}}]}"#,
            "`providers[0].remote_jwks.path`",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":""}}]}"#,
            "`providers[0].remote_jwks.cluster`: must not be empty",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":"c"},"sources":[{"cookie":"a","query":"b"}]}]}"#,
            "`providers[0].sources[0]`: give exactly one of",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":"c"},"sources":[{"cookie":"a=b"}]}]}"#,
            "`providers[0].sources[0]`: the name",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":"c"},"sources":[]}]}"#,
            "`providers[0].sources`: must not be empty",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":"c"},"claims_to_headers":{"org..id":"x-org"}}]}"#,
            "`providers[0].claims_to_headers.org..id`: claim path",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":"c"},"revocation":"all"}]}"#,
            "`revocation`: provider \"x\" checks revocation",
        ),
        (
            r#"{"providers":[{"name":"x","remote_jwks":{"cluster":"c"},"unknown":1}]}"#,
            "at `providers[0].unknown`: unknown field",
        ),
    ];
    for (json, expected) in cases.into_iter().chain(more) {
        let message = error(json);
        assert!(
            message.contains(expected),
            "config {json:?}: error {message:?} does not contain {expected:?}"
        );
    }
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let config = parse(MINIMAL).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("redacted"));
}

#[test]
fn caches_can_be_sized_and_turned_off() {
    let config = parse(
        r#"{"secret":{"inline":"a"},"token_cache":{"max_entries":500,"ttl_seconds":20},"revocation":{"cluster":"k","cache":{"max_entries":0}}}"#,
    )
    .unwrap();
    assert_eq!(config.revocation.unwrap().cache, None);
    assert_eq!(
        config.token_cache,
        Some(TokenCacheConfig {
            max_entries: 500,
            ttl_seconds: 20
        })
    );
    let config = parse(
        r#"{"secret":{"inline":"a"},"response_format":"json","revocation":{"cluster":"k","cache":{"max_entries":100,"max_revoked_seconds":600}}}"#,
    )
    .unwrap();
    assert_eq!(config.response_format, ResponseFormat::Json);
    assert_eq!(
        config.revocation.unwrap().cache,
        Some(CacheConfig {
            max_entries: 100,
            max_active_seconds: 30,
            max_revoked_seconds: 600
        })
    );
}

#[test]
fn duplicate_algorithms_collapse() {
    let config = parse(
        r#"{"secret":{"inline":"a"},"algorithms":["HS256","HS256"],"revocation":{"cluster":"k"}}"#,
    )
    .unwrap();
    assert_eq!(config.providers[0].algorithms, vec![Algorithm::HS256]);
}

#[test]
fn the_revocation_feed_has_defaults_and_limits_that_name_the_field() {
    let parse = |feed: &str| {
        Config::parse(
            format!(r#"{{"secret": {{"inline": "s"}}, "revocation": {{"cluster": "k"{feed}}}}}"#).as_bytes(),
            &|_| None,
        )
    };
    let config = parse(r#", "feed": {}"#).unwrap();
    assert_eq!(
        config.revocation.unwrap().feed,
        Some(FeedConfig {
            path: "/v1/revocations".into(),
            wait_seconds: 20,
            max_active_seconds: 86_400,
            stale_after_seconds: 30,
        })
    );
    let error = |feed: &str| parse(feed).unwrap_err().to_string();
    assert!(error(r#", "feed": {"wait_seconds": 0}"#).starts_with("`revocation.feed.wait_seconds`"));
    assert!(error(r#", "feed": {"wait_seconds": 20, "stale_after_seconds": 20}"#)
        .starts_with("`revocation.feed.stale_after_seconds`: 20 is out of range; use a value from 21"));
    assert!(error(r#", "feed": {"path": "/v1/revocations?x=1"}"#).starts_with("`revocation.feed.path`"));
    assert!(error(r#", "feed": {"path": "v1"}"#).starts_with("`revocation.feed.path`"));
    assert!(error(r#", "feed": {}, "cache": {"max_entries": 0}"#).starts_with("`revocation.feed`: the feed marks"));
    assert!(error(r#", "feed": {}, "cache": {"max_revoked_seconds": 0}"#).starts_with("`revocation.feed`"));
    assert!(error(r#", "feed": {"max_active": 1}"#).contains("revocation.feed.max_active"));
}
