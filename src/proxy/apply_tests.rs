//! Rate limits and usage as requests meet them: 429 with its headers, keyservice's limits for a
//! key (also from the cache), usage and provider counts.

use std::rc::Rc;

use serde_json::json;

use super::*;
use crate::policy::rate_limits::Limit;
use crate::proxy::flow::RequestFlow;
use crate::proxy::host::CalloutAnswer;
use crate::testing::gate::{bearer, gate_from, sign};
use crate::testing::host::FakeHost;

const T: u64 = 1_700_000_080_000;

fn gate(extra: &str) -> Rc<Gate> {
    gate_from(&format!(
        r#"{{"secret":{{"inline":"s"}},"revocation":{{"cluster":"keyservice"}},"usage":{{}},
            "rate_limits":{{"key":[{{"requests":2,"per_seconds":60}}]}}{extra}}}"#
    ))
}

fn temporary(user: &str) -> String {
    sign(json!({"user_id": user, "exp": T / 1000 + 600}))
}

/// One request with `token` on `context`; its action, and keyservice's callout answered with
/// `answer` when one goes out.
fn request(host: &FakeHost, gate: &Rc<Gate>, context: u32, token: &str, answer: Option<&CalloutAnswer>) -> FlowAction {
    host.request(context, &[("authorization", &bearer(token))]);
    let mut flow = RequestFlow::new(Rc::clone(gate), context);
    let calls = host.callouts.borrow().len();
    let action = flow.on_request_headers(host, T);
    if host.callouts.borrow().len() > calls {
        let call_id = *host.next_call.borrow();
        flow.on_callout_response(host, call_id, answer.unwrap(), T);
        return if host.resumed.borrow().contains(&context) {
            FlowAction::Continue
        } else {
            FlowAction::Pause
        };
    }
    action
}

#[test]
fn over_the_limit_is_429_with_retry_after_and_ratelimit_fields() {
    let (gate, host) = (gate(""), FakeHost::default());
    let token = temporary("u");
    assert_eq!(request(&host, &gate, 1, &token, None), FlowAction::Continue);
    assert_eq!(request(&host, &gate, 2, &token, None), FlowAction::Continue);
    assert_eq!(request(&host, &gate, 3, &token, None), FlowAction::Pause);
    let reply = &host.replies_to(3)[0];
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body, "Too many requests");
    let header = |name: &str| {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    // 40 s into the minute: 20 s left.
    assert_eq!(header("retry-after").as_deref(), Some("20"));
    assert_eq!(header("ratelimit-policy").as_deref(), Some(r#""key-60s";q=2;w=60"#));
    assert_eq!(header("ratelimit").as_deref(), Some(r#""key-60s";r=0;t=20"#));
    assert!(host.headers_set_on(3).is_empty(), "no identity on a refused request");
    assert_eq!(host.counter(gate.metrics.denied("rate_limited")), 1);
    let provider = gate.metrics.provider_requests[0];
    assert_eq!(host.counter(provider.allowed), 2);
    assert_eq!(host.counter(provider.rate_limited), 1);
    // Another key is unaffected.
    assert_eq!(request(&host, &gate, 4, &temporary("v"), None), FlowAction::Continue);
}

#[test]
fn the_json_format_answers_429_in_json() {
    let (gate, host) = (gate(r#","response_format":"json""#), FakeHost::default());
    let token = temporary("u");
    for context in 1..=3 {
        request(&host, &gate, context, &token, None);
    }
    let body: serde_json::Value = serde_json::from_str(&host.replies_to(3)[0].body).unwrap();
    assert_eq!(body["error"], "rate_limited");
}

#[test]
fn keyservices_limits_for_a_key_apply_and_are_cached_with_its_answer() {
    let (gate, host) = (gate(""), FakeHost::default());
    let stored = sign(json!({"user_id": "u"}));
    let active = CalloutAnswer {
        status: Some(200),
        cache_control: Some("max-age=30".to_owned()),
        key_limits: Limits::parse_header(b"1/3600"),
    };
    assert_eq!(request(&host, &gate, 1, &stored, Some(&active)), FlowAction::Continue);
    // The second request is answered from the cache, with the key's own 1 an hour.
    let calls = host.callouts.borrow().len();
    assert_eq!(request(&host, &gate, 2, &stored, None), FlowAction::Pause);
    assert_eq!(host.callouts.borrow().len(), calls, "answered from the cache");
    let reply = &host.replies_to(2)[0];
    assert_eq!(reply.status, 429);
    assert!(reply.headers.contains(&("ratelimit-policy", r#""key-3600s";q=1;w=3600"#.to_owned())));
    // Usage: one allowed and one rate-limited request of the stored key.
    let (taken, _) = gate.usage.as_ref().unwrap().borrow_mut().take(10);
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].counts.allowed, taken[0].counts.rate_limited), (1, 1));
}

#[test]
fn a_revoked_key_is_not_counted_against_limits() {
    let (gate, host) = (gate(""), FakeHost::default());
    let stored = sign(json!({"user_id": "u"}));
    let revoked = CalloutAnswer {
        status: Some(410),
        cache_control: None,
        key_limits: None,
    };
    request(&host, &gate, 1, &stored, Some(&revoked));
    assert_eq!(host.replies_to(1)[0].status, 401);
    assert!(gate.usage.as_ref().unwrap().borrow().is_empty());
    assert!(host.shared.borrow().keys().all(|k| !k.starts_with("keygate.ratelimit.")));
}

#[test]
fn a_refusal_for_scope_is_counted_as_forbidden() {
    let gate = gate("");
    let host = FakeHost::default();
    let subject = crate::metering::subject::Subject {
        provider: 0,
        key: Some([7; 32]),
        key_counter: [0; 16],
        claims: Vec::new(),
    };
    let denied = Decision::Deny(DenyReason::InsufficientScope("admin".to_owned()));
    count_refusal(&gate, &host, &denied, Some(&subject), T);
    count_refusal(&gate, &host, &Decision::Deny(DenyReason::Revoked), Some(&subject), T);
    assert_eq!(host.counter(gate.metrics.provider_requests[0].forbidden), 1);
    let (taken, _) = gate.usage.as_ref().unwrap().borrow_mut().take(10);
    assert_eq!(taken[0].counts.forbidden, 1);
    let _ = Limit::default();
}
