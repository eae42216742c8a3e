//! Plugin configuration: `Config::parse` on any bytes, then a `Gate` built from what it accepts.
//!
//! Input: the configuration JSON, as Envoy hands it over. The environment has `JWT_SECRET`
//! (and `EMPTY`, set to the empty string).
//!
//! Properties:
//! - parsing is deterministic (the same bytes give the same configuration or the same error);
//! - an accepted configuration keeps the promises of docs/configuration.md: limits in range, a
//!   realm a `WWW-Authenticate` header can quote, at least one provider, unique names, only
//!   the algorithms the key material verifies (never `none`), owned headers that are lowercase
//!   names and not the credential, framing or hop-by-hop headers, source names without
//!   separators, paths sent upstream that are absolute and carry no fragment, whitespace or
//!   control character, and a revocation service whenever a provider checks revocation;
//! - a gate built from it decides without panicking, and denies a request with no token when
//!   no rule opens the route.
#![no_main]

use jsonwebtoken::Algorithm;
use keygate::config::{Absent, Config, KeyMaterial, RevocationCheck};
use keygate::extract::credential::CredentialError;
use keygate::extract::sources::TokenSource;
use keygate::gate::decision::{Decision, DenyReason, Gate, RequestHead};
use keygate::gate::metrics::Metrics;
use libfuzzer_sys::fuzz_target;

const RESERVED: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "cookie",
    "expect",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

fn env(name: &str) -> Option<String> {
    match name {
        "JWT_SECRET" => Some("fuzz-env-secret-0123456789abcdef".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = Config::parse(data, &env);
    let again = Config::parse(data, &env);
    assert_eq!(
        format!("{parsed:?}"),
        format!("{again:?}"),
        "not deterministic"
    );
    let config = match parsed {
        Ok(config) => config,
        Err(error) => {
            // The operator's one log line: it must be there.
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    check(&config);

    // A default requirement with `allow_missing(_or_failed)` lets requests on without identity.
    let open = config.requirements[config.default_requirement].absent != Absent::Refuse;
    let gate = Gate::new(config, Metrics::default());
    let none: Vec<Option<Vec<u8>>> = vec![None; gate.source_headers().len()];
    let head = RequestHead {
        sources: &none,
        path: Some(b"/"),
        method: Some(b"GET"),
        requirement: None,
        passing_preflight: false,
    };
    let decision = gate.decide(&head, 1_700_000_000_000);
    if !gate.needs_route() && !open {
        assert_eq!(
            decision,
            Decision::Deny(DenyReason::Credential(CredentialError::Missing))
        );
    }
    // A token in every source: decided without panicking, never allowed.
    let token = b"eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoidTEifQ.c2ln".to_vec();
    let sources: Vec<Option<Vec<u8>>> = gate
        .source_headers()
        .iter()
        .map(|name| match name.as_str() {
            ":path" => None,
            "cookie" => None,
            _ => Some([b"Bearer ".as_slice(), &token].concat()),
        })
        .collect();
    let head = RequestHead {
        sources: &sources,
        ..head
    };
    let decision = gate.decide(&head, 1_700_000_000_000);
    let anonymous = match &decision {
        Decision::Allow(grant) => {
            grant.identity.iter().all(|write| write.value.is_none()) && grant.properties.is_empty()
        }
        _ => false,
    };
    assert!(
        !matches!(decision, Decision::Allow(_) | Decision::CheckRevocation(_))
            || gate.needs_route()
            || (open && anonymous),
        "a forged token let through: {decision:?}"
    );
});

fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && !RESERVED.contains(&name)
}

fn upstream_path_ok(path: &str) -> bool {
    path.starts_with('/')
        && !path
            .chars()
            .any(|c| c == '#' || c.is_whitespace() || c.is_control())
}

fn check(config: &Config) {
    assert!(config.clock_skew_seconds <= 3600);
    assert!((16..=65_536).contains(&config.max_token_bytes));
    assert!(
        config
            .realm
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
        "{:?}",
        config.realm
    );
    assert!(!config.providers.is_empty());
    for header in config.owned_headers() {
        assert!(header_name_ok(header), "owned header {header:?}");
    }
    if let Some(cache) = &config.token_cache {
        assert!(cache.max_entries >= 1 && cache.ttl_seconds >= 1);
    }
    if let Some(revocation) = &config.revocation {
        assert!(!revocation.cluster.trim().is_empty());
        assert!(upstream_path_ok(&revocation.path_prefix) && !revocation.path_prefix.contains('?'));
        assert!((1..=60_000).contains(&revocation.timeout_ms));
    }
    for (index, provider) in config.providers.iter().enumerate() {
        assert!(!provider.name.trim().is_empty());
        assert!(
            config.providers[..index]
                .iter()
                .all(|other| other.name != provider.name),
            "duplicate provider {:?}",
            provider.name
        );
        assert!(!provider.algorithms.is_empty());
        for (i, alg) in provider.algorithms.iter().enumerate() {
            assert!(!provider.algorithms[..i].contains(alg), "duplicate {alg:?}");
        }
        let hmac_only = provider
            .algorithms
            .iter()
            .all(|alg| matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
        match &provider.keys {
            KeyMaterial::Secrets(secrets) => {
                assert!(hmac_only, "a secret verifies only HMAC");
                assert!(!secrets.is_empty());
                assert!(secrets.iter().all(|secret| !secret.as_bytes().is_empty()));
            }
            KeyMaterial::Jwks(keys) => {
                assert!(!keys.is_empty());
                for key in keys {
                    assert!(
                        key.algorithms
                            .iter()
                            .all(|a| provider.algorithms.contains(a))
                    );
                }
            }
            KeyMaterial::Remote(remote) => {
                assert!(upstream_path_ok(&remote.path), "{:?}", remote.path);
                assert!(!remote.cluster.trim().is_empty());
            }
        }
        if provider.revocation != RevocationCheck::None {
            assert!(
                config.revocation.is_some(),
                "{} checks without a service",
                provider.name
            );
        }
        assert!(
            provider
                .issuer
                .as_ref()
                .is_none_or(|i| !i.trim().is_empty())
        );
        assert!(provider.audiences.iter().all(|a| !a.is_empty()));
        assert!(provider.required_claims.iter().all(|c| !c.is_empty()));
        assert!(!provider.sources.is_empty());
        for source in &provider.sources {
            let name = match source {
                TokenSource::Header { name, .. } => {
                    assert!(name == "authorization" || header_name_ok(name), "{name:?}");
                    name
                }
                TokenSource::Cookie(name) | TokenSource::Query(name) => name,
            };
            assert!(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"=;,&?#\"".contains(&b)),
                "source name {name:?}"
            );
        }
        for mapping in &provider.claims_to_headers {
            assert!(!mapping.path.is_empty() && mapping.path.iter().all(|p| !p.is_empty()));
            assert_eq!(mapping.path.join("."), mapping.claim);
        }
    }
}
