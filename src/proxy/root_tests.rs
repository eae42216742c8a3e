//! The root context's work against a recording double of the host: JWKS fetches scheduled on
//! the tick and their answers, requests parked for keys woken or expired, and revocation checks
//! whose leader went away dispatched again.

use std::rc::Rc;

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::*;
use crate::proxy::flow::RequestFlow;
use crate::revocation::protocol::token_digest;
use crate::testing::gate::{bearer, gate_from, sign};
use crate::testing::host::FakeHost;
use crate::testing::keys::{self as test_keys, jwk};

const NOW_MS: u64 = 1_700_000_000_000;
const ROOT: u32 = 100;


/// API keys checked with keyservice (cluster `keyservice`).
fn api_key_gate() -> Rc<Gate> {
    gate_from(
        r#"{"secret":{"inline":"s"},"revocation":{"cluster":"keyservice","authority":"ks.local","timeout_ms":250}}"#,
    )
}

/// An IdP whose keys come from its JWKS (cluster `idp`), requests waiting up to 1.5 s for them.
fn remote_gate(extra: &str) -> Rc<Gate> {
    gate_from(&format!(
        r#"{{"providers":[{{"name":"idp","remote_jwks":{{"cluster":"idp","wait_ms":1500{extra}}},"claims_to_headers":{{"sub":"x-user-id"}}}}]}}"#
    ))
}



fn answer(status: u16) -> CalloutAnswer {
    CalloutAnswer {
            key_limits: None,
        status: Some(status),
        cache_control: None,
    }
}

/// The path of the callout the host saw last, and its id.
fn last_callout(host: &FakeHost) -> (String, String, u32) {
    let callouts = host.callouts.borrow();
    let (cluster, _, path, _) = callouts.last().unwrap().clone();
    (cluster, path, *host.next_call.borrow())
}

/// A request for `token` on `context` that now waits (on a callout, or for keys).
fn waiting_request(host: &FakeHost, gate: &Rc<Gate>, context: u32, token: &str) -> RequestFlow {
    host.request(context, &[("authorization", &bearer(token))]);
    let mut flow = RequestFlow::new(Rc::clone(gate), context);
    assert_eq!(flow.on_request_headers(host, NOW_MS), FlowAction::Pause);
    flow
}

#[test]
fn a_leader_that_goes_away_hands_its_waiters_to_the_root() {
    let host = FakeHost::default();
    let gate = api_key_gate();
    let mut root = RootFlow::new(Rc::clone(&gate), ROOT);
    let token = sign(json!({"user_id": "u1"}));
    let mut leader = waiting_request(&host, &gate, 1, &token);
    let _follower = waiting_request(&host, &gate, 2, &token);
    assert_eq!(host.callouts.borrow().len(), 1, "one callout for both");

    leader.on_destroyed();
    root.on_tick(&host, NOW_MS + 100);
    let (cluster, path, call_id) = last_callout(&host);
    assert_eq!(cluster, "keyservice");
    assert_eq!(path, format!("/v1/revocations/{}", token_digest(&token)));
    assert_eq!(host.callouts.borrow().len(), 2, "the root dispatched anew");
    assert!(!gate.in_flight.borrow().has_orphans());

    // Another tick dispatches nothing more; the answer wakes the follower, in its context.
    root.on_tick(&host, NOW_MS + 200);
    assert_eq!(host.callouts.borrow().len(), 2);
    root.on_callout_response(&host, call_id, &answer(200), || None, NOW_MS + 250);
    assert_eq!(*host.resumed.borrow(), vec![2]);
    assert_eq!(*host.current.borrow(), ROOT, "back in the root context");
    assert_eq!(host.histogram.borrow().len(), 1, "the callout's latency");
    // An answer to a call the root never made changes nothing.
    root.on_callout_response(&host, 999, &answer(410), || None, NOW_MS + 300);
    assert!(host.replies.borrow().is_empty());
}

#[test]
fn an_orphaned_check_that_cannot_be_dispatched_gets_the_failure_mode() {
    let host = FakeHost::default();
    let gate = api_key_gate();
    let token = sign(json!({"user_id": "u1"}));
    let mut leader = waiting_request(&host, &gate, 1, &token);
    let _follower = waiting_request(&host, &gate, 2, &token);
    leader.on_destroyed();
    let failing = FakeHost {
        dispatch_fails: true,
        ..FakeHost::default()
    };
    RootFlow::new(Rc::clone(&gate), ROOT).on_tick(&failing, NOW_MS + 100);
    assert_eq!(failing.replies_to(2)[0].status, 503);
    assert!(failing.resumed.borrow().is_empty());
    assert!(gate.in_flight.borrow().is_empty());
}

#[test]
fn requests_wait_for_the_first_keys_which_the_tick_fetches() {
    let gate = remote_gate("");
    let mut root = RootFlow::new(Rc::clone(&gate), ROOT);
    let host = FakeHost::default();
    let ed = test_keys::ed25519();
    let token = test_keys::sign(
        &ed,
        Algorithm::EdDSA,
        Some("k1"),
        &json!({"sub": "user_1", "exp": NOW_MS / 1000 + 60}),
    );
    let flow = waiting_request(&host, &gate, 1, &token);
    assert!(flow.is_waiting());
    assert_eq!(gate.providers[0].parked.borrow().len(), 1);

    root.on_tick(&host, NOW_MS + 100);
    let (cluster, path, call_id) = last_callout(&host);
    assert_eq!((cluster.as_str(), path.as_str()), ("idp", "/.well-known/jwks.json"));
    root.on_tick(&host, NOW_MS + 150);
    assert_eq!(host.callouts.borrow().len(), 1, "one fetch at a time");

    let document = json!({"keys": [jwk(&ed, "k1", None)]}).to_string();
    root.on_callout_response(
        &host,
        call_id,
        &answer(200),
        || Some(document.into_bytes()),
        NOW_MS + 200,
    );
    assert_eq!(*host.resumed.borrow(), vec![1]);
    assert_eq!(
        host.headers_set_on(1),
        vec![("x-user-id".to_owned(), Some("user_1".to_owned()))]
    );
    assert!(gate.providers[0].parked.borrow().is_empty());
    assert_eq!(host.counter(gate.metrics.jwks_ok), 1);
}

#[test]
fn a_failed_fetch_is_counted_and_requests_keep_waiting_for_a_retry() {
    let gate = remote_gate("");
    let mut root = RootFlow::new(Rc::clone(&gate), ROOT);
    let host = FakeHost::default();
    let token = test_keys::sign(&test_keys::ed25519(), Algorithm::EdDSA, None, &json!({}));
    let _flow = waiting_request(&host, &gate, 1, &token);
    root.on_tick(&host, NOW_MS);
    let (_, _, call_id) = last_callout(&host);
    root.on_callout_response(&host, call_id, &answer(500), || None, NOW_MS + 10);
    assert_eq!(host.counter(gate.metrics.jwks_error), 1);
    assert!(host.resumed.borrow().is_empty() && host.replies.borrow().is_empty());
    assert_eq!(gate.providers[0].parked.borrow().len(), 1);

    // A fetch that cannot even be dispatched is counted as well.
    let failing = FakeHost {
        dispatch_fails: true,
        ..FakeHost::default()
    };
    RootFlow::new(remote_gate(""), ROOT).on_tick(&failing, NOW_MS);
    assert_eq!(failing.counter(gate.metrics.jwks_error), 1);
}

#[test]
fn requests_still_waiting_at_their_deadline_get_503_or_pass_with_failure_mode_allow() {
    for (extra, status) in [("", Some(503)), (r#","failure_mode":"allow""#, None)] {
        let gate = remote_gate(extra);
        let mut root = RootFlow::new(Rc::clone(&gate), ROOT);
        let host = FakeHost::default();
        let token = test_keys::sign(&test_keys::ed25519(), Algorithm::EdDSA, None, &json!({}));
        host.request(
            1,
            &[("authorization", &bearer(&token)), ("x-user-id", b"spoof")],
        );
        let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
        flow.on_request_headers(&host, NOW_MS);
        root.on_tick(&host, NOW_MS + 1_499);
        assert!(host.replies.borrow().is_empty() && host.resumed.borrow().is_empty());
        root.on_tick(&host, NOW_MS + 1_500);
        match status {
            Some(status) => {
                assert_eq!(host.replies_to(1)[0].status, status);
                assert!(host.resumed.borrow().is_empty());
            }
            None => {
                assert_eq!(*host.resumed.borrow(), vec![1]);
                assert_eq!(host.headers_set_on(1), vec![("x-user-id".into(), None)]);
                assert_eq!(host.counter(gate.metrics.allowed_on_failure), 1);
            }
        }
    }
}

#[test]
fn a_request_that_goes_away_is_no_longer_parked() {
    let gate = remote_gate("");
    let host = FakeHost::default();
    let token = test_keys::sign(&test_keys::ed25519(), Algorithm::EdDSA, None, &json!({}));
    let mut flow = waiting_request(&host, &gate, 1, &token);
    flow.on_destroyed();
    assert!(gate.providers[0].parked.borrow().is_empty());
}
