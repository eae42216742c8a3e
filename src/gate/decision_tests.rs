//! The decision, natively: routes, credentials, providers, grants and revocation policy.

use super::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::revocation::protocol::token_digest;

const NOW: u64 = 1_700_000_000;

fn gate(extra: &str) -> Gate {
    let json =
        format!(r#"{{"secret":{{"inline":"s"}},"revocation":{{"cluster":"keyservice"{extra}}}}}"#);
    Gate::new(
        Config::parse(json.as_bytes(), &|_| None).unwrap(),
        Metrics::default(),
    )
}

fn gate_with(top: &str) -> Gate {
    let json = format!(r#"{{"secret":{{"inline":"s"}},{top},"revocation":{{"cluster":"k"}}}}"#);
    Gate::new(
        Config::parse(json.as_bytes(), &|_| None).unwrap(),
        Metrics::default(),
    )
}

/// Decides on a request whose only header of interest is `authorization`.
fn decide_with(gate: &Gate, authorization: Option<&[u8]>) -> Decision {
    decide_traced(gate, authorization).0
}

fn decide_traced(gate: &Gate, authorization: Option<&[u8]>) -> (Decision, Trace) {
    let sources = vec![authorization.map(<[u8]>::to_vec)];
    gate.decide_traced(
        &RequestHead {
            sources: &sources,
            ..RequestHead::default()
        },
        NOW * 1000,
    )
}

fn token(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"s"),
    )
    .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Every header change of a grant, in the order they are made.
fn all(grant: &Grant) -> Vec<HeaderWrite> {
    grant.headers().cloned().collect()
}

fn headers(pairs: &[(&str, Option<&str>)]) -> Vec<HeaderWrite> {
    pairs
        .iter()
        .map(|(name, value)| HeaderWrite::new(*name, value.map(str::to_owned)))
        .collect()
}

#[test]
fn an_expiring_token_is_allowed_without_a_callout() {
    let t = token(json!({"user_id": "u1", "org_id": "o1", "iat": NOW, "exp": NOW + 60}));
    let decision = decide_with(&gate(""), Some(bearer(&t).as_bytes()));
    let expected = headers(&[("x-user-id", Some("u1")), ("x-org-id", Some("o1"))]);
    assert_eq!(
        decision,
        Decision::Allow(Grant {
            identity: expected.into(),
            stripped: vec![],
            ..Grant::default()
        })
    );
}

#[test]
fn absent_claims_remove_the_header_so_spoofed_copies_are_dropped() {
    let t = token(json!({"user_id": "u1", "exp": NOW + 60}));
    let Decision::Allow(grant) = decide_with(&gate(""), Some(bearer(&t).as_bytes())) else {
        panic!("expected allow");
    };
    assert_eq!(all(&grant)[1], HeaderWrite::new("x-org-id", None));
}

#[test]
fn a_non_expiring_token_needs_a_revocation_check_by_digest() {
    let t = token(json!({"user_id": "u1", "iat": NOW}));
    let Decision::CheckRevocation(pending) = decide_with(&gate(""), Some(bearer(&t).as_bytes()))
    else {
        panic!("expected a revocation check");
    };
    assert_eq!(
        crate::revocation::protocol::hex_digest(&pending.digest),
        token_digest(&t)
    );
    assert_eq!(pending.digest, crate::revocation::protocol::digest(&t));
    assert_eq!(
        all(&pending.grant)[0],
        HeaderWrite::new("x-user-id", Some("u1".into()))
    );
}

#[test]
fn check_all_checks_expiring_tokens_too() {
    let t = token(json!({"user_id": "u1", "exp": NOW + 60}));
    let decision = decide_with(&gate(r#","check":"all""#), Some(bearer(&t).as_bytes()));
    assert!(
        matches!(decision, Decision::CheckRevocation(_)),
        "{decision:?}"
    );
}

#[test]
fn credential_and_token_failures_are_denied_with_their_reason() {
    let g = gate("");
    let expired = token(json!({"user_id": "u1", "exp": NOW - 3600}));
    let cases: Vec<(Option<Vec<u8>>, DenyReason)> = vec![
        (None, DenyReason::Credential(CredentialError::Missing)),
        (
            // Another scheme is no bearer token: nothing was presented.
            Some(b"Basic dTpw".to_vec()),
            DenyReason::Credential(CredentialError::Missing),
        ),
        (
            Some(b"Bearer \xff\xfe".to_vec()),
            DenyReason::Credential(CredentialError::Malformed),
        ),
        (
            Some(bearer(&"a".repeat(9000)).into_bytes()),
            DenyReason::Credential(CredentialError::TooLarge),
        ),
        (
            Some(bearer(&expired).into_bytes()),
            DenyReason::Token(Rejection::Expired),
        ),
        (
            Some(bearer("x.y.z").into_bytes()),
            DenyReason::Token(Rejection::Malformed),
        ),
    ];
    for (header, reason) in cases {
        let decision = decide_with(&g, header.as_deref());
        assert_eq!(decision, Decision::Deny(reason), "{header:?}");
    }
}

#[test]
fn claim_values_a_header_would_change_are_refused() {
    // HTTP drops the spaces and tabs at the ends of a value: " bob" would reach the upstream
    // as "bob"; control characters cannot be sent; an empty identity reads as none.
    for user_id in [
        "u1\r\nx-admin: true",
        " bob",
        "bob ",
        "\tbob",
        "bob\t",
        "   ",
        "",
        "ali\tce",
    ] {
        let t = token(json!({"user_id": user_id, "exp": NOW + 60}));
        assert_eq!(
            decide_with(&gate(""), Some(bearer(&t).as_bytes())),
            Decision::Deny(DenyReason::Token(Rejection::UnrepresentableClaim)),
            "{user_id:?}"
        );
    }
}

#[test]
fn numbers_booleans_and_arrays_become_header_values_and_objects_are_left_out() {
    let g = gate_with(r#""claims_to_headers":{"n":"x-n","b":"x-b","a":"x-a","o":"x-o"}"#);
    let t = token(json!({"n": 42, "b": true, "a": [1], "o": {"k": 1}, "exp": NOW + 60}));
    let Decision::Allow(grant) = decide_with(&g, Some(bearer(&t).as_bytes())) else {
        panic!("expected allow");
    };
    assert_eq!(
        &all(&grant)[..4],
        // Claims are kept in name order.
        &headers(&[
            ("x-a", Some("1")),
            ("x-b", Some("true")),
            ("x-n", Some("42")),
            ("x-o", None)
        ])[..]
    );
}

#[test]
fn payload_header_and_authorization_stripping() {
    let g = gate_with(r#""payload_header":"x-jwt-payload","strip_authorization":true"#);
    let t = token(json!({"user_id": "u1", "exp": NOW + 60}));
    let Decision::Allow(grant) = decide_with(&g, Some(bearer(&t).as_bytes())) else {
        panic!("expected allow");
    };
    let payload = t.split('.').nth(1).unwrap();
    assert_eq!(
        all(&grant)[2],
        HeaderWrite::new("x-jwt-payload", Some(payload.into()))
    );
    assert_eq!(all(&grant)[3], HeaderWrite::new("authorization", None));
}

#[test]
fn revocation_answers_follow_the_configured_policies() {
    let grant = Grant {
        identity: Arc::from(Vec::new()),
        stripped: vec![],
        ..Grant::default()
    };
    let allow = Decision::Allow(grant.clone());
    let cases = [
        ("", RevocationStatus::Active, allow.clone()),
        (
            "",
            RevocationStatus::Revoked,
            Decision::Deny(DenyReason::Revoked),
        ),
        (
            "",
            RevocationStatus::Unknown,
            Decision::Deny(DenyReason::UnknownKey),
        ),
        (
            "",
            RevocationStatus::Unavailable,
            Decision::Deny(DenyReason::Unavailable),
        ),
        (
            r#","unknown_keys":"allow""#,
            RevocationStatus::Unknown,
            allow.clone(),
        ),
        (
            r#","unknown_keys":"allow""#,
            RevocationStatus::Revoked,
            Decision::Deny(DenyReason::Revoked),
        ),
        (
            r#","failure_mode":"allow""#,
            RevocationStatus::Unavailable,
            allow.clone(),
        ),
        (
            r#","failure_mode":"allow""#,
            RevocationStatus::Unknown,
            Decision::Deny(DenyReason::UnknownKey),
        ),
    ];
    for (extra, status, expected) in cases {
        assert_eq!(
            gate(extra).after_revocation(status, grant.clone()),
            expected,
            "{extra} {status:?}"
        );
    }
}

#[test]
fn arbitrary_and_mutated_input_never_panics_and_never_allows_a_forgery() {
    let g = gate("");
    let valid = bearer(&token(json!({"user_id": "u1", "exp": NOW + 60})));
    let mut next = crate::testing::rng::xorshift(0x9e37_79b9_7f4a_7c15);
    for round in 0..20_000 {
        let mut input = valid.clone().into_bytes();
        // Flip, drop or insert a few bytes after the scheme, or use pure noise.
        if round % 4 == 0 {
            let len = (next() % 64) as usize;
            input = (0..len).map(|_| next() as u8).collect();
        } else {
            for _ in 0..=(next() % 3) {
                let at = 7 + (next() as usize) % (input.len() - 7);
                match next() % 3 {
                    0 => input[at] = next() as u8,
                    1 => {
                        input.remove(at);
                    }
                    _ => input.insert(at, next() as u8),
                }
            }
        }
        let decision = decide_with(&g, Some(&input));
        if input != valid.as_bytes() {
            // A changed token can only pass if the change was in base64 padding bits.
            if let Decision::Allow(grant) = &decision {
                assert_eq!(all(grant)[0], HeaderWrite::new("x-user-id", Some("u1".into())));
            }
        }
    }
}

mod providers {
    use super::*;
    use crate::gate::remote_jwks::FetchKind;
    use crate::testing::keys::{self as test_keys, jwk};

    /// A gate with an HS256 API-key provider and an RS256 session-token provider (Clerk-like:
    /// issuer, cookie or header, claims from `sub`), plus a remote-JWKS provider.
    fn gate() -> Gate {
        let json = json!({
            "revocation": {"cluster": "keyservice"},
            "providers": [
                {"name": "api-keys", "secret": {"inline": "s"}},
                {
                    "name": "clerk",
                    "issuer": "https://clerk.example.com",
                    "jwks": {"keys": [jwk(test_keys::rsa(), "clerk-1", None)]},
                    "algorithms": ["RS256"],
                    "sources": [{"cookie": "__session"}, {"header": "authorization", "prefix": "Bearer "}],
                    "claims_to_headers": {"sub": "x-user-id", "org.id": "x-org-id"},
                    "strip_source": true
                },
                {
                    "name": "remote",
                    "issuer": "https://idp.example",
                    "remote_jwks": {"cluster": "idp", "min_refetch_seconds": 30},
                    "algorithms": ["EdDSA"]
                }
            ]
        });
        Gate::new(
            Config::parse(json.to_string().as_bytes(), &|_| None).unwrap(),
            Metrics::default(),
        )
    }

    /// `authorization` and `cookie` values (the gate's source headers, in order).
    fn decide_sources(gate: &Gate, authorization: Option<&str>, cookie: Option<&str>) -> Decision {
        assert_eq!(gate.source_headers(), ["authorization", "cookie"]);
        let sources = vec![
            authorization.map(|v| v.as_bytes().to_vec()),
            cookie.map(|v| v.as_bytes().to_vec()),
        ];
        gate.decide(
            &RequestHead {
                sources: &sources,
                ..RequestHead::default()
            },
            NOW * 1000,
        )
    }

    fn session(claims: Value) -> String {
        test_keys::sign(test_keys::rsa(), Algorithm::RS256, Some("clerk-1"), &claims)
    }

    fn clerk_claims() -> Value {
        json!({"iss": "https://clerk.example.com", "sub": "user_2x", "org": {"id": "org_7"}, "exp": NOW + 60})
    }

    #[test]
    fn an_api_key_and_a_session_token_go_to_their_providers() {
        let gate = gate();
        let key = token(json!({"user_id": "u1", "exp": NOW + 60}));
        let Decision::Allow(grant) = decide_sources(&gate, Some(&bearer(&key)), None) else {
            panic!("API key allowed");
        };
        assert_eq!(
            all(&grant),
            headers(&[("x-user-id", Some("u1")), ("x-org-id", None)])
        );

        let cookie = format!("theme=dark; __session={}", session(clerk_claims()));
        let Decision::Allow(grant) = decide_sources(&gate, None, Some(&cookie)) else {
            panic!("session allowed");
        };
        assert_eq!(
            all(&grant),
            headers(&[
                ("x-user-id", Some("user_2x")),
                ("x-org-id", Some("org_7")),
                // strip_source: the session cookie does not go upstream.
                ("cookie", Some("theme=dark")),
            ])
        );
        let header = bearer(&session(clerk_claims()));
        assert!(matches!(
            decide_sources(&gate, Some(&header), None),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn a_session_token_never_needs_a_revocation_check_by_default() {
        let mut claims = clerk_claims();
        claims.as_object_mut().unwrap().remove("exp");
        let cookie = format!("__session={}", session(claims));
        assert!(matches!(
            decide_sources(&gate(), None, Some(&cookie)),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn a_session_cookie_of_characters_a_cookie_token_cannot_hold_is_malformed() {
        let gate = gate();
        let good = session(clerk_claims());
        let cookie = format!("__session={good}");
        // Cached first: a miss is checked all the same.
        for _ in 0..2 {
            assert!(matches!(
                decide_sources(&gate, None, Some(&cookie)),
                Decision::Allow(_)
            ));
        }
        for bad in [
            format!("__session={good}<"),
            "__session=a\"b.c.d".to_owned(),
        ] {
            assert_eq!(
                decide_sources(&gate, None, Some(&bad)),
                Decision::Deny(DenyReason::Credential(CredentialError::Malformed)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn disagreeing_credentials_are_refused_and_agreeing_ones_accepted() {
        let gate = gate();
        let one = session(clerk_claims());
        let mut other_claims = clerk_claims();
        other_claims["sub"] = json!("user_other");
        let other = session(other_claims);
        assert_eq!(
            decide_sources(
                &gate,
                Some(&bearer(&one)),
                Some(&format!("__session={other}"))
            ),
            Decision::Deny(DenyReason::Credential(CredentialError::Ambiguous))
        );
        assert!(matches!(
            decide_sources(
                &gate,
                Some(&bearer(&one)),
                Some(&format!("__session={one}"))
            ),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn issuer_and_source_route_and_mismatches_are_refused() {
        let gate = gate();
        // An API key in the cookie: no provider without an issuer reads cookies.
        let key = token(json!({"user_id": "u1", "exp": NOW + 60}));
        assert_eq!(
            decide_sources(&gate, None, Some(&format!("__session={key}"))),
            Decision::Deny(DenyReason::Token(Rejection::NoProvider))
        );
        // A session token claiming an unknown issuer: no provider has that issuer, and the
        // API-key provider it would fall back to does not allow RS256.
        let mut claims = clerk_claims();
        claims["iss"] = json!("https://evil.example");
        assert_eq!(
            decide_sources(&gate, Some(&bearer(&session(claims))), None),
            Decision::Deny(DenyReason::Token(Rejection::WrongIssuer))
        );
        // Algorithm confusion: HS256 signed with the RSA public key, claiming Clerk's issuer.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("clerk-1".into());
        let forged = encode(
            &header,
            &clerk_claims(),
            &EncodingKey::from_secret(test_keys::rsa().jwk.to_string().as_bytes()),
        )
        .unwrap();
        assert_eq!(
            decide_sources(&gate, Some(&bearer(&forged)), None),
            Decision::Deny(DenyReason::Token(Rejection::DisallowedAlgorithm))
        );
    }

    #[test]
    fn a_remote_provider_without_keys_holds_requests_and_refetches_on_unknown_kids() {
        let gate = gate();
        let ed = test_keys::ed25519();
        let claims = json!({"iss": "https://idp.example", "sub": "u", "exp": NOW + 60});
        let token = test_keys::sign(&ed, Algorithm::EdDSA, Some("k2"), &claims);
        assert_eq!(
            decide_sources(&gate, Some(&bearer(&token)), None),
            Decision::AwaitKeys { provider: 2 }
        );
        // Keys arrive, without k2: the first unknown kid asks for a refetch and waits...
        let jwks = gate.providers[2].jwks.as_ref().unwrap();
        let KeyMaterial::Remote(remote) = &gate.config.providers[2].keys else {
            panic!("remote");
        };
        let document = json!({"keys": [jwk(&ed, "k1", None)]}).to_string();
        jwks.borrow_mut()
            .started(1, FetchKind::Keys, NOW * 1000 - 60_000);
        jwks.borrow_mut().on_response(
            remote,
            &[Algorithm::EdDSA],
            Some(200),
            Some(document.as_bytes()),
            NOW * 1000 - 60_000,
        );
        assert_eq!(
            decide_sources(&gate, Some(&bearer(&token)), None),
            Decision::AwaitKeys { provider: 2 }
        );
        // ...and once that refetch has happened, the kid is refused.
        jwks.borrow_mut().started(2, FetchKind::Keys, NOW * 1000);
        jwks.borrow_mut().on_response(
            remote,
            &[Algorithm::EdDSA],
            Some(200),
            Some(document.as_bytes()),
            NOW * 1000,
        );
        assert_eq!(
            decide_sources(&gate, Some(&bearer(&token)), None),
            Decision::Deny(DenyReason::Token(Rejection::UnknownKid))
        );
        let signed_k1 = test_keys::sign(&ed, Algorithm::EdDSA, Some("k1"), &claims);
        assert!(matches!(
            decide_sources(&gate, Some(&bearer(&signed_k1)), None),
            Decision::Allow(_)
        ));
        // k1 is rotated out: its token, verified (and cached) a moment ago, is refused at once.
        let rotated = json!({"keys": [jwk(&ed, "k3", None)]}).to_string();
        jwks.borrow_mut()
            .started(3, FetchKind::Keys, NOW * 1000 + 1);
        jwks.borrow_mut().on_response(
            remote,
            &[Algorithm::EdDSA],
            Some(200),
            Some(rotated.as_bytes()),
            NOW * 1000 + 1,
        );
        gate.keys_changed();
        assert_eq!(
            decide_sources(&gate, Some(&bearer(&signed_k1)), None),
            Decision::Deny(DenyReason::Token(Rejection::UnknownKid))
        );
    }

    #[test]
    fn missing_keys_fail_closed_or_open_as_configured() {
        for (extra, expected) in [
            (
                r#""until_ready":"fail""#,
                Decision::Deny(DenyReason::KeysUnavailable),
            ),
            (
                r#""until_ready":"fail","failure_mode":"allow""#,
                Decision::Allow(Grant {
                    identity: headers(&[("x-user-id", None), ("x-org-id", None)]).into(),
                    stripped: vec![],
                    ..Grant::default()
                }),
            ),
        ] {
            let json = format!(
                r#"{{"providers":[{{"name":"idp","remote_jwks":{{"cluster":"idp",{extra}}}}}]}}"#
            );
            let gate = Gate::new(
                Config::parse(json.as_bytes(), &|_| None).unwrap(),
                Metrics::default(),
            );
            let ed = test_keys::ed25519();
            let token = test_keys::sign(&ed, Algorithm::EdDSA, Some("k"), &json!({}));
            assert_eq!(
                decide_with(&gate, Some(bearer(&token).as_bytes())),
                expected,
                "{extra}"
            );
        }
    }
}

#[test]
fn open_routes_still_strip_the_sources_configured_to_be_stripped() {
    let json = r#"{"secret":{"inline":"s"},"strip_authorization":true,"rules":[{"match":{"path":"/healthz"},"action":"allow"}],"revocation":{"cluster":"k"}}"#;
    let gate = Gate::new(
        Config::parse(json.as_bytes(), &|_| None).unwrap(),
        Metrics::default(),
    );
    let sources = vec![Some(b"Bearer a.b.c".to_vec())];
    let head = RequestHead {
        sources: &sources,
        path: Some(b"/healthz"),
        method: Some(b"GET"),
        requirement: None,
        passing_preflight: false,
    };
    assert_eq!(
        gate.decide(&head, NOW * 1000),
        Decision::Allow(Grant {
            identity: headers(&[("x-user-id", None), ("x-org-id", None)]).into(),
            stripped: headers(&[("authorization", None)]),
            ..Grant::default()
        })
    );
}

/// A decision on a request whose only sources are `Authorization` and `Cookie`, in that order.
fn decide_sources(gate: &Gate, authorization: Option<String>, cookie: Option<String>) -> Decision {
    let sources = vec![
        authorization.map(String::into_bytes),
        cookie.map(String::into_bytes),
    ];
    gate.decide(
        &RequestHead {
            sources: &sources,
            ..RequestHead::default()
        },
        NOW * 1000,
    )
}

#[test]
fn the_token_cache_does_not_widen_where_a_token_is_accepted_from() {
    let json = json!({
        "revocation": {"cluster": "k"},
        "token_cache": {"max_entries": 10},
        "providers": [
            {"name": "api-keys", "secret": {"inline": "s"}},
            {"name": "sessions", "issuer": "https://idp.example", "secret": {"inline": "other"},
             "sources": [{"cookie": "__session"}]}
        ]
    });
    let gate = Gate::new(
        Config::parse(json.to_string().as_bytes(), &|_| None).unwrap(),
        Metrics::default(),
    );
    let key = token(json!({"user_id": "u1", "exp": NOW + 60}));
    let decide = |authorization, cookie| decide_sources(&gate, authorization, cookie);
    assert!(matches!(
        decide(Some(bearer(&key)), None),
        Decision::Allow(_)
    ));
    assert_eq!(
        decide(None, Some(format!("__session={key}"))),
        Decision::Deny(DenyReason::Token(Rejection::NoProvider))
    );
}

/// Found by the decision fuzzer: a token cached when it came in a source only one provider
/// reads must not, sent where issuer routing picks another provider, skip that provider.
#[test]
fn a_cached_token_gets_the_provider_an_uncached_one_would() {
    let config = |cache_entries: u32| {
        json!({
            "revocation": {"cluster": "k"},
            "token_cache": {"max_entries": cache_entries},
            "providers": [
                {"name": "api-keys", "secret": {"inline": "s"},
                 "sources": [{"header": "authorization", "prefix": "Bearer "}, {"cookie": "k"}]},
                {"name": "idp", "issuer": "https://idp.example", "secret": {"inline": "other"},
                 "sources": [{"header": "authorization", "prefix": "Bearer "}]}
            ]
        })
    };
    // Signed by the API-key secret, naming the IdP as issuer.
    let key = token(json!({"user_id": "u1", "iss": "https://idp.example", "exp": NOW + 60}));
    for cache_entries in [10, 0] {
        let gate = Gate::new(
            Config::parse(config(cache_entries).to_string().as_bytes(), &|_| None).unwrap(),
            Metrics::default(),
        );
        let decide = |authorization, cookie| decide_sources(&gate, authorization, cookie);
        // In the cookie only the API-key provider reads it; in Authorization the IdP takes it.
        assert!(
            matches!(decide(None, Some(format!("k={key}"))), Decision::Allow(_)),
            "cache {cache_entries}"
        );
        assert_eq!(
            decide(Some(bearer(&key)), None),
            Decision::Deny(DenyReason::Token(Rejection::BadSignature)),
            "cache {cache_entries}"
        );
        // And back in the cookie it is still the API-key provider's.
        assert!(
            matches!(decide(None, Some(format!("k={key}"))), Decision::Allow(_)),
            "cache {cache_entries}"
        );
    }
}

#[test]
fn the_last_decision_tells_whether_the_token_cache_had_its_token() {
    let cached = gate_with(r#""token_cache":{"max_entries":10}"#);
    let key = bearer(&token(json!({"user_id": "u1", "exp": NOW + 60})));
    let forged = bearer(
        &encode(
            &Header::new(Algorithm::HS256),
            &json!({"user_id": "u1", "exp": NOW + 60}),
            &EncodingKey::from_secret(b"not-s"),
        )
        .unwrap(),
    );
    let mut seen = Vec::new();
    for authorization in [None, Some(&key), Some(&key), Some(&forged), Some(&forged)] {
        let (_, trace) = decide_traced(&cached, authorization.map(String::as_bytes));
        seen.push(trace.token_cache_hit);
    }
    // No token: no lookup. The key: verified, then found. A forgery: looked for, never cached.
    assert_eq!(
        seen,
        [None, Some(false), Some(true), Some(false), Some(false)]
    );

    let uncached = gate_with(r#""token_cache":{"max_entries":0}"#);
    decide_with(&uncached, Some(key.as_bytes()));
    let (decision, trace) = decide_traced(&uncached, Some(key.as_bytes()));
    assert!(matches!(decision, Decision::Allow(_)));
    assert_eq!(trace.token_cache_hit, None);
}

#[test]
fn a_token_of_characters_its_source_forbids_is_malformed_with_or_without_the_cache() {
    let valid = token(json!({"user_id": "u1", "exp": NOW + 60}));
    for cache in [
        r#""token_cache":{"max_entries":10}"#,
        r#""token_cache":{"max_entries":0}"#,
    ] {
        let g = gate_with(cache);
        // A good token is cached first: the check is made on every miss, not once.
        for _ in 0..2 {
            assert!(matches!(
                decide_with(&g, Some(bearer(&valid).as_bytes())),
                Decision::Allow(_)
            ));
        }
        for bad in [
            format!("{valid}\""),
            format!("{valid}=x"),
            format!("{valid}<"),
            "==".to_owned(),
        ] {
            assert_eq!(
                decide_with(&g, Some(bearer(&bad).as_bytes())),
                Decision::Deny(DenyReason::Credential(CredentialError::Malformed)),
                "{cache} {bad:?}"
            );
        }
    }
}

#[test]
fn a_cached_token_brings_the_identity_headers_made_when_it_was_verified() {
    let g = gate_with(r#""token_cache":{"max_entries":10}"#);
    let t = bearer(&token(
        json!({"user_id": "u1", "org_id": "o1", "exp": NOW + 60}),
    ));
    let traced: Vec<(Grant, Trace)> = (0..2)
        .map(|_| match decide_traced(&g, Some(t.as_bytes())) {
            (Decision::Allow(grant), trace) => (grant, trace),
            other => panic!("expected allow, got {other:?}"),
        })
        .collect();
    assert_eq!(traced[1].1.token_cache_hit, Some(true));
    assert_eq!(traced[1].1.provider, Some(0));
    let grants: Vec<Grant> = traced.into_iter().map(|(grant, _)| grant).collect();
    assert!(Arc::ptr_eq(&grants[0].identity, &grants[1].identity));
    assert_eq!(
        all(&grants[1]),
        headers(&[("x-user-id", Some("u1")), ("x-org-id", Some("o1"))])
    );
}

#[test]
fn a_token_whose_claim_cannot_be_a_header_value_is_refused_every_time_and_never_cached() {
    let g = gate_with(r#""token_cache":{"max_entries":10}"#);
    let t = bearer(&token(
        json!({"user_id": "u1\r\nx-admin: 1", "exp": NOW + 60}),
    ));
    for _ in 0..2 {
        let (decision, trace) = decide_traced(&g, Some(t.as_bytes()));
        assert_eq!(
            decision,
            Decision::Deny(DenyReason::Token(Rejection::UnrepresentableClaim))
        );
        assert_eq!(trace.token_cache_hit, Some(false));
    }
}
