//! Unit tests of `remote_jwks`.

use super::*;
use crate::config::{FailureMode, UntilReady};
use crate::testing::keys::{self as test_keys, jwk};
use serde_json::json;

fn config(discovery: bool) -> RemoteJwks {
    RemoteJwks {
        cluster: "idp".into(),
        authority: "idp.example".into(),
        path: if discovery {
            "/.well-known/openid-configuration".into()
        } else {
            "/jwks.json".into()
        },
        discovery,
        refresh_seconds: 600,
        min_refetch_seconds: 30,
        timeout_ms: 1000,
        until_ready: UntilReady::Wait { wait_ms: 1000 },
        failure_mode: FailureMode::Deny,
    }
}

fn jwks() -> Vec<u8> {
    json!({"keys": [jwk(&test_keys::ed25519(), "k1", None)]})
        .to_string()
        .into_bytes()
}

const ALGS: &[Algorithm] = &[Algorithm::EdDSA];

#[test]
fn fetched_at_once_then_refreshed_on_schedule() {
    let cfg = config(false);
    let mut state = JwksState::new(&cfg);
    let fetch = state.due(&cfg, 0).unwrap();
    assert_eq!(fetch.path, "/jwks.json");
    state.started(1, fetch.kind, 0);
    assert_eq!(state.due(&cfg, 10), None, "one fetch at a time");
    assert!(state.is_fetching(1));
    let outcome = state.on_response(&cfg, ALGS, Some(200), Some(&jwks()), 100);
    assert_eq!(outcome, FetchOutcome::Updated { keys: 1 });
    assert_eq!(state.keys().unwrap().len(), 1);
    assert_eq!(state.due(&cfg, 600_099), None);
    assert!(state.due(&cfg, 600_100).is_some());
}

#[test]
fn a_failed_refresh_keeps_the_keys_and_backs_off() {
    let cfg = config(false);
    let mut state = JwksState::new(&cfg);
    state.started(1, FetchKind::Keys, 0);
    state.on_response(&cfg, ALGS, Some(200), Some(&jwks()), 0);
    let mut now = 600_000;
    let mut delays = Vec::new();
    for (call, status) in [(2, Some(500)), (3, None), (4, Some(200))] {
        let fetch = state.due(&cfg, now).unwrap();
        state.started(call, fetch.kind, now);
        let body: &[u8] = b"not json";
        let outcome = state.on_response(&cfg, ALGS, status, Some(body), now);
        assert!(matches!(outcome, FetchOutcome::Failed(_)), "{outcome:?}");
        assert!(state.keys().is_some(), "old keys kept");
        let next = (now..now + 200_000)
            .find(|t| state.due(&cfg, *t).is_some())
            .unwrap();
        delays.push(next - now);
        now = next;
    }
    assert_eq!(delays, vec![2_000, 4_000, 8_000]);
}

#[test]
fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let cfg = config(false);
    let mut state = JwksState::new(&cfg);
    state.started(1, FetchKind::Keys, 0);
    state.on_response(&cfg, ALGS, Some(200), Some(&jwks()), 0);
    // The scheduled fetch does not count: a key published just after it is fetched at once.
    assert!(state.want_refetch(&cfg, 100));
    let fetch = state.due(&cfg, 100).unwrap();
    state.started(2, fetch.kind, 100);
    assert!(state.want_refetch(&cfg, 101), "a fetch is on its way");
    state.on_response(&cfg, ALGS, Some(200), Some(&jwks()), 110);
    assert!(
        !state.want_refetch(&cfg, 30_099),
        "too soon after the last refetch"
    );
    assert!(state.due(&cfg, 30_099).is_none());
    assert!(state.want_refetch(&cfg, 30_100));
}

#[test]
fn discovery_finds_the_jwks_path_first() {
    let cfg = config(true);
    let mut state = JwksState::new(&cfg);
    let fetch = state.due(&cfg, 0).unwrap();
    assert_eq!(fetch.kind, FetchKind::Discovery);
    assert_eq!(fetch.path, "/.well-known/openid-configuration");
    state.started(1, fetch.kind, 0);
    let document = json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/oauth/jwks?v=2"});
    let outcome = state.on_response(
        &cfg,
        ALGS,
        Some(200),
        Some(document.to_string().as_bytes()),
        5,
    );
    assert_eq!(outcome, FetchOutcome::Discovered);
    let fetch = state.due(&cfg, 5).unwrap();
    assert_eq!(
        fetch,
        Fetch {
            kind: FetchKind::Keys,
            path: "/oauth/jwks?v=2".into()
        }
    );
}

#[test]
fn discovery_documents_without_a_jwks_uri_fail() {
    for body in [
        &b"{}"[..],
        br#"{"jwks_uri": 3}"#,
        br#"{"jwks_uri": "https://host"}"#,
        // Found by fuzz/fuzz_targets/jwks.rs: control characters, and what is not ASCII,
        // cannot go out as `:path`.
        br#"{"jwks_uri": "/.\u007fellon"}"#,
        br#"{"jwks_uri": "https://idp/keys\u0000x"}"#,
        br#"{"jwks_uri": "https://idp/cl\u00e9s"}"#,
        br#"{"jwks_uri": "https://idp/a b"}"#,
    ] {
        assert_eq!(
            jwks_path_from_discovery(body),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn the_fragment_of_a_jwks_uri_is_not_sent() {
    let body = br#"{"jwks_uri": "https://idp.example/oauth/jwks?v=2#keys"}"#;
    assert_eq!(
        jwks_path_from_discovery(body).as_deref(),
        Some("/oauth/jwks?v=2")
    );
}
