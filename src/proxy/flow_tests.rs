//! The per-request flow against a recording double of the host.

use std::rc::Rc;

use serde_json::json;

use super::*;
use crate::testing::gate::{bearer, gate_from, sign};
use crate::testing::host::FakeHost;

const NOW_MS: u64 = 1_700_000_000_000;


fn gate_with(top: &str, revocation: &str) -> Rc<Gate> {
    gate_from(&format!(
        r#"{{"secret":{{"inline":"s"}}{top},"revocation":{{"cluster":"keyservice","authority":"ks.local","timeout_ms":250{revocation}}}}}"#
    ))
}

fn gate(revocation: &str) -> Rc<Gate> {
    gate_with("", revocation)
}



fn active(cache_control: Option<&str>) -> CalloutAnswer {
    CalloutAnswer {
            key_limits: None,
        status: Some(200),
        cache_control: cache_control.map(str::to_owned),
    }
}

fn answer(status: Option<u16>) -> CalloutAnswer {
    CalloutAnswer {
            key_limits: None,
        status,
        cache_control: None,
    }
}

/// One request with `token` on `context`, whose callout keyservice answers with `answer`.
fn answered(host: &FakeHost, gate: &Rc<Gate>, context: u32, token: &str, answer: &CalloutAnswer) {
    host.request(context, &[("authorization", &bearer(token))]);
    let mut flow = RequestFlow::new(Rc::clone(gate), context);
    assert_eq!(flow.on_request_headers(host, NOW_MS), FlowAction::Pause);
    let call_id = *host.next_call.borrow();
    flow.on_callout_response(host, call_id, answer, NOW_MS);
}

#[test]
fn an_expiring_token_continues_with_identity_headers_and_no_callout() {
    let host = FakeHost::default();
    let gate = gate("");
    let token = sign(json!({"user_id": "u1", "exp": NOW_MS / 1000 + 60}));
    host.request(1, &[("authorization", &bearer(&token))]);
    let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
    assert_eq!(flow.on_request_headers(&host, NOW_MS), FlowAction::Continue);
    assert!(host.callouts.borrow().is_empty());
    assert!(host.replies.borrow().is_empty());
    // No org_id claim and no x-org-id sent: nothing to remove, so no write.
    assert_eq!(
        host.headers_set_on(1),
        vec![("x-user-id".to_owned(), Some("u1".to_owned()))]
    );
    // A client's own x-org-id is removed when the token has no org_id.
    host.request(
        2,
        &[
            ("authorization", &bearer(&token)),
            ("x-org-id", b"org_evil"),
        ],
    );
    let mut flow = RequestFlow::new(Rc::clone(&gate), 2);
    assert_eq!(flow.on_request_headers(&host, NOW_MS), FlowAction::Continue);
    assert_eq!(
        host.headers_set_on(2),
        vec![
            ("x-user-id".to_owned(), Some("u1".to_owned())),
            ("x-org-id".to_owned(), None),
        ]
    );
    assert_eq!(host.counter(gate.metrics.allowed), 2);
    // The same token twice: verified, then found in the verified-token cache (on by default).
    assert_eq!(host.counter(gate.metrics.token_cache_misses), 1);
    assert_eq!(host.counter(gate.metrics.token_cache_hits), 1);
}

#[test]
fn a_bad_token_gets_a_local_reply_counted_by_reason() {
    let host = FakeHost::default();
    let gate = gate("");
    host.request(1, &[("authorization", b"Bearer not.a.jwt")]);
    let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
    assert_eq!(flow.on_request_headers(&host, NOW_MS), FlowAction::Pause);
    assert_eq!(host.replies_to(1)[0].status, 401);
    assert!(host.set_headers.borrow().is_empty());
    assert_eq!(host.counter(gate.metrics.denied("malformed")), 1);
    assert_eq!(host.counter(gate.metrics.allowed), 0);
}

#[test]
fn a_non_expiring_token_pauses_for_one_callout_by_digest_then_resumes_when_active() {
    let host = FakeHost::default();
    let gate = gate("");
    let token = sign(json!({"user_id": "u1", "org_id": "o1"}));
    host.request(1, &[("authorization", &bearer(&token))]);
    let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
    assert_eq!(flow.on_request_headers(&host, NOW_MS), FlowAction::Pause);
    let callouts = host.callouts.borrow().clone();
    assert_eq!(callouts.len(), 1);
    let (cluster, authority, path, timeout) = &callouts[0];
    assert_eq!(
        (cluster.as_str(), authority.as_str()),
        ("keyservice", "ks.local")
    );
    assert_eq!(
        *path,
        format!(
            "/v1/revocations/{}",
            crate::revocation::protocol::token_digest(&token)
        )
    );
    assert!(!path.contains(&token));
    assert_eq!(*timeout, Duration::from_millis(250));
    assert!(
        host.set_headers.borrow().is_empty(),
        "nothing set before the answer"
    );
    assert!(flow.is_waiting());

    flow.on_callout_response(&host, 1, &active(None), NOW_MS + 7);
    assert!(!flow.is_waiting());
    assert_eq!(*host.resumed.borrow(), vec![1]);
    assert_eq!(
        host.headers_set_on(1)[0],
        ("x-user-id".into(), Some("u1".into()))
    );
    assert!(host.replies.borrow().is_empty());
    assert_eq!(*host.histogram.borrow(), vec![7], "callout latency in ms");
    assert_eq!(host.counter(gate.metrics.callouts_ok), 1);
}

#[test]
fn revoked_unknown_and_failed_answers_reply_locally_without_resuming() {
    let cases = [
        (Some(410), 401, "Revoked token", "revoked"),
        (Some(404), 401, "Revoked token", "unknown_key"),
        (
            Some(500),
            503,
            "Authorization service unavailable",
            "unavailable",
        ),
        (
            None,
            503,
            "Authorization service unavailable",
            "unavailable",
        ),
    ];
    for (status, reply_status, body, reason) in cases {
        let host = FakeHost::default();
        let gate = gate("");
        host.request(
            1,
            &[("authorization", &bearer(&sign(json!({"user_id": "u1"}))))],
        );
        let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
        flow.on_request_headers(&host, NOW_MS);
        flow.on_callout_response(&host, 1, &answer(status), NOW_MS);
        assert!(host.resumed.borrow().is_empty(), "{status:?}");
        let replies = host.replies_to(1);
        assert_eq!(replies.len(), 1, "{status:?}");
        assert_eq!(
            (replies[0].status, replies[0].body.as_str()),
            (reply_status, body)
        );
        assert!(host.set_headers.borrow().is_empty());
        assert_eq!(host.counter(gate.metrics.denied(reason)), 1, "{status:?}");
    }
}

#[test]
fn failure_mode_allow_and_unknown_keys_allow_resume_and_are_counted() {
    for (extra, status, on_failure) in [
        (r#","failure_mode":"allow""#, None, 1),
        (r#","failure_mode":"allow""#, Some(502), 1),
        (r#","unknown_keys":"allow""#, Some(404), 0),
    ] {
        let host = FakeHost::default();
        let gate = gate(extra);
        host.request(
            1,
            &[("authorization", &bearer(&sign(json!({"user_id": "u1"}))))],
        );
        let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
        flow.on_request_headers(&host, NOW_MS);
        flow.on_callout_response(&host, 1, &answer(status), NOW_MS);
        assert_eq!(*host.resumed.borrow(), vec![1], "{extra} {status:?}");
        assert!(host.replies.borrow().is_empty());
        assert_eq!(host.counter(gate.metrics.allowed_on_failure), on_failure);
    }
}

#[test]
fn a_failed_dispatch_applies_the_failure_mode_at_once() {
    let token = sign(json!({"user_id": "u1"}));
    let host = FakeHost {
        dispatch_fails: true,
        ..FakeHost::default()
    };
    host.request(1, &[("authorization", &bearer(&token))]);
    let mut flow = RequestFlow::new(gate(""), 1);
    assert_eq!(flow.on_request_headers(&host, NOW_MS), FlowAction::Pause);
    assert_eq!(host.replies_to(1)[0].status, 503);
    assert!(!flow.is_waiting());

    let host = FakeHost {
        dispatch_fails: true,
        ..FakeHost::default()
    };
    host.request(1, &[("authorization", &bearer(&token))]);
    let mut open = RequestFlow::new(gate(r#","failure_mode":"allow""#), 1);
    assert_eq!(open.on_request_headers(&host, NOW_MS), FlowAction::Continue);
    assert!(
        host.resumed.borrow().is_empty(),
        "continuing needs no resume"
    );
    assert_eq!(host.headers_set_on(1)[0].0, "x-user-id");
}

#[test]
fn an_answer_to_another_call_is_ignored() {
    let host = FakeHost::default();
    host.request(
        1,
        &[("authorization", &bearer(&sign(json!({"user_id": "u1"}))))],
    );
    let mut flow = RequestFlow::new(gate(""), 1);
    flow.on_request_headers(&host, NOW_MS);
    flow.on_callout_response(&host, 99, &active(None), NOW_MS);
    assert!(host.resumed.borrow().is_empty());
    flow.on_callout_response(&host, 1, &active(None), NOW_MS);
    assert_eq!(*host.resumed.borrow(), vec![1]);
    flow.on_callout_response(&host, 1, &active(None), NOW_MS);
    assert_eq!(
        *host.resumed.borrow(),
        vec![1],
        "a repeated answer does nothing"
    );
}

#[test]
fn an_answer_with_max_age_is_shared_and_spares_later_callouts() {
    let host = FakeHost::default();
    let gate = gate("");
    let token = sign(json!({"user_id": "u1"}));
    answered(&host, &gate, 1, &token, &active(Some("max-age=30")));

    // Another worker's VM sees the same shared data: a second gate, same host store.
    let other_worker = gate_with("", "");
    host.request(2, &[("authorization", &bearer(&token))]);
    let mut second = RequestFlow::new(Rc::clone(&other_worker), 2);
    assert_eq!(
        second.on_request_headers(&host, NOW_MS + 29_000),
        FlowAction::Continue
    );
    assert_eq!(host.callouts.borrow().len(), 1);
    assert_eq!(host.counter(other_worker.metrics.cache_hits), 1);

    host.request(3, &[("authorization", &bearer(&token))]);
    let mut third = RequestFlow::new(Rc::clone(&gate), 3);
    assert_eq!(
        third.on_request_headers(&host, NOW_MS + 30_000),
        FlowAction::Pause
    );
    assert_eq!(host.callouts.borrow().len(), 2, "the TTL ran out");
    assert_eq!(host.counter(gate.metrics.cache_misses), 2);
}

#[test]
fn answers_without_max_age_or_that_are_not_definite_are_not_cached() {
    for (status, cache_control) in [
        (Some(200), None),
        (Some(404), Some("max-age=30")),
        (Some(503), Some("max-age=30")),
        (None, None),
    ] {
        let host = FakeHost::default();
        let gate = gate(r#","unknown_keys":"allow","failure_mode":"allow""#);
        let token = sign(json!({"user_id": "u1"}));
        let reply = CalloutAnswer {
            key_limits: None,
            status,
            cache_control: cache_control.map(str::to_owned),
        };
        for context in [1, 2] {
            answered(&host, &gate, context, &token, &reply);
        }
        assert_eq!(
            host.callouts.borrow().len(),
            2,
            "{status:?} {cache_control:?}"
        );
    }
}

#[test]
fn a_revoked_answer_is_cached_too() {
    let host = FakeHost::default();
    let gate = gate("");
    let token = sign(json!({"user_id": "u1"}));
    let revoked = CalloutAnswer {
            key_limits: None,
        status: Some(410),
        cache_control: Some("max-age=86400".into()),
    };
    answered(&host, &gate, 1, &token, &revoked);
    host.request(2, &[("authorization", &bearer(&token))]);
    let mut second = RequestFlow::new(Rc::clone(&gate), 2);
    assert_eq!(
        second.on_request_headers(&host, NOW_MS + 3_600_000),
        FlowAction::Pause
    );
    assert_eq!(host.replies_to(2)[0].body, "Revoked token");
    assert_eq!(host.callouts.borrow().len(), 1);
}

#[test]
fn requests_for_a_key_in_flight_wait_for_its_answer() {
    let host = FakeHost::default();
    let gate = gate("");
    let alice = sign(json!({"user_id": "alice"}));
    host.request(1, &[("authorization", &bearer(&alice))]);
    let mut leader = RequestFlow::new(Rc::clone(&gate), 1);
    assert_eq!(leader.on_request_headers(&host, NOW_MS), FlowAction::Pause);
    host.request(2, &[("authorization", &bearer(&alice))]);
    let mut follower = RequestFlow::new(Rc::clone(&gate), 2);
    assert_eq!(
        follower.on_request_headers(&host, NOW_MS),
        FlowAction::Pause
    );
    assert!(follower.is_waiting());
    assert_eq!(
        host.callouts.borrow().len(),
        1,
        "the follower dispatched nothing"
    );

    *host.current.borrow_mut() = 1;
    leader.on_callout_response(&host, 1, &active(None), NOW_MS);
    assert_eq!(
        *host.resumed.borrow(),
        vec![1, 2],
        "both resumed, each in its context"
    );
    assert_eq!(
        host.headers_set_on(2)[0],
        ("x-user-id".into(), Some("alice".into()))
    );
    assert_eq!(*host.current.borrow(), 1, "back in the leader's context");
    assert!(gate.in_flight.borrow().is_empty());
}

#[test]
fn waiters_get_the_same_denial_in_their_own_context() {
    let host = FakeHost::default();
    let gate = gate("");
    let token = sign(json!({"user_id": "u1"}));
    for context in [1, 2, 3] {
        host.request(context, &[("authorization", &bearer(&token))]);
    }
    let mut flows: Vec<RequestFlow> = [1, 2, 3]
        .iter()
        .map(|&context| {
            *host.current.borrow_mut() = context;
            let mut flow = RequestFlow::new(Rc::clone(&gate), context);
            flow.on_request_headers(&host, NOW_MS);
            flow
        })
        .collect();
    // Context 2 goes away before the answer: it is not woken.
    flows[1].on_destroyed();
    host.gone.borrow_mut().push(2);
    *host.current.borrow_mut() = 1;
    flows[0].on_callout_response(&host, 1, &answer(Some(410)), NOW_MS);
    assert_eq!(host.replies_to(1)[0].body, "Revoked token");
    assert_eq!(host.replies_to(3)[0].body, "Revoked token");
    assert!(host.replies_to(2).is_empty());
    assert_eq!(host.counter(gate.metrics.denied("revoked")), 2);
}

#[test]
fn allow_rules_and_cors_preflights_pass_without_a_token_but_lose_spoofed_identity() {
    let gate = gate_with(
        r#","rules":[{"match":{"path":"/healthz"},"action":"allow"},{"match":{"prefix":"/internal/"},"action":"deny"}],"cors":{"allowed_origins":["https://app.example.com"]}"#,
        "",
    );
    let host = FakeHost::default();
    host.request(
        1,
        &[
            (":path", b"/healthz?probe=1"),
            (":method", b"GET"),
            ("x-user-id", b"mallory"),
        ],
    );
    let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
    assert_eq!(flow.on_request_headers(&host, NOW_MS), FlowAction::Continue);
    // The spoofed x-user-id goes; x-org-id was not sent, so there is nothing to remove.
    assert_eq!(host.headers_set_on(1), vec![("x-user-id".into(), None)]);

    host.request(
        2,
        &[
            (":path", b"/api/things"),
            (":method", b"OPTIONS"),
            ("origin", b"https://app.example.com"),
            ("access-control-request-method", b"POST"),
        ],
    );
    let mut preflight = RequestFlow::new(Rc::clone(&gate), 2);
    assert_eq!(
        preflight.on_request_headers(&host, NOW_MS),
        FlowAction::Continue
    );

    host.request(
        4,
        &[
            (":path", b"/internal/x"),
            (":method", b"OPTIONS"),
            ("origin", b"https://app.example.com"),
            ("access-control-request-method", b"POST"),
        ],
    );
    let mut closed = RequestFlow::new(Rc::clone(&gate), 4);
    assert_eq!(
        closed.on_request_headers(&host, NOW_MS),
        FlowAction::Pause,
        "a deny rule holds for preflights too"
    );

    host.request(
        3,
        &[
            (":path", b"/internal/x"),
            (":method", b"GET"),
            ("origin", b"https://app.example.com"),
        ],
    );
    let mut denied = RequestFlow::new(Rc::clone(&gate), 3);
    assert_eq!(denied.on_request_headers(&host, NOW_MS), FlowAction::Pause);
    let reply = &host.replies_to(3)[0];
    assert_eq!(reply.status, 403);
    assert!(
        reply
            .headers
            .iter()
            .any(|(name, value)| *name == "access-control-allow-origin"
                && value == "https://app.example.com"),
        "{reply:?}"
    );
    assert_eq!(host.counter(gate.metrics.denied("forbidden_rule")), 2);
}

#[test]
fn a_401_carries_cors_headers_only_for_an_allowed_origin() {
    let gate = gate_with(
        r#","cors":{"allowed_origins":["https://app.example.com"]}"#,
        "",
    );
    let host = FakeHost::default();
    host.request(1, &[("origin", b"https://app.example.com")]);
    RequestFlow::new(Rc::clone(&gate), 1).on_request_headers(&host, NOW_MS);
    let reply = &host.replies_to(1)[0];
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .headers
            .iter()
            .any(|(n, _)| *n == "access-control-allow-origin")
    );
    assert!(
        reply
            .headers
            .iter()
            .any(|(n, v)| *n == "access-control-expose-headers" && v.contains("www-authenticate"))
    );

    // A preflight from an origin not allowed is authenticated like any request.
    host.request(
        3,
        &[
            (":method", b"OPTIONS"),
            ("origin", b"https://evil.example.net"),
            ("access-control-request-method", b"POST"),
        ],
    );
    RequestFlow::new(Rc::clone(&gate), 3).on_request_headers(&host, NOW_MS);
    assert_eq!(host.replies_to(3)[0].status, 401);

    host.request(2, &[("origin", b"https://evil.example.net")]);
    RequestFlow::new(Rc::clone(&gate), 2).on_request_headers(&host, NOW_MS);
    let reply = &host.replies_to(2)[0];
    assert!(
        !reply
            .headers
            .iter()
            .any(|(n, _)| n.starts_with("access-control"))
    );
}

#[test]
fn the_routes_requirement_is_read_only_when_configured_and_filter_state_is_set_on_the_way() {
    let host = FakeHost::default();
    *host.route_requirement.borrow_mut() = Some(b"open".to_vec());
    // Without `requirements` the route's metadata means nothing to keygate.
    let plain = gate("");
    host.request(1, &[]);
    let mut flow = RequestFlow::new(Rc::clone(&plain), 1);
    assert_eq!(flow.on_request_headers(&host, NOW_MS), FlowAction::Pause);
    assert_eq!(host.replies_to(1)[0].status, 401);

    let gate = gate_with(
        r#","requirements":{"open":{"provider":"default","allow_missing":true}},"filter_state":{}"#,
        "",
    );
    host.request(2, &[("x-user-id", b"mallory")]);
    let mut flow = RequestFlow::new(Rc::clone(&gate), 2);
    assert_eq!(flow.on_request_headers(&host, NOW_MS), FlowAction::Continue);
    assert_eq!(host.headers_set_on(2), vec![("x-user-id".to_owned(), None)]);
    assert!(host.filter_state.borrow().is_empty());
    assert_eq!(host.counter(gate.metrics.allowed_anonymous), 1);

    // A key checked with keyservice: its filter state is set when the answer lets it on.
    let token = sign(json!({"user_id": "u1", "org_id": "o1"}));
    answered(&host, &gate, 3, &token, &active(Some("max-age=30")));
    assert_eq!(host.resumed.borrow().as_slice(), &[3]);
    let state: Vec<(u32, String, String)> = host.filter_state.borrow().clone();
    let names: Vec<&str> = state.iter().map(|(_, name, _)| name.as_str()).collect();
    assert!(state.iter().all(|(context, _, _)| *context == 3));
    assert_eq!(
        names,
        ["keygate.provider", "keygate.key_digest", "keygate.org_id", "keygate.user_id"]
    );
    // A revoked key on the open route: on, without identity or filter state.
    host.filter_state.borrow_mut().clear();
    let revoked = sign(json!({"user_id": "u2"}));
    answered(&host, &gate, 4, &revoked, &answer(Some(410)));
    assert_eq!(host.replies_to(4)[0].status, 401);
    assert!(host.filter_state.borrow().is_empty());
}
