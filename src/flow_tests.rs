//! The per-request flow against a recording double of the host.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::metrics::{MetricKind, Metrics};
use crate::response::LocalReply;
use crate::revocation_cache::{SharedData, SharedSetError};

const NOW_MS: u64 = 1_700_000_000_000;

/// One host for several contexts: what each context did is recorded under its id.
#[derive(Default)]
struct FakeHost {
    headers: RefCell<HashMap<u32, HashMap<String, Vec<u8>>>>,
    current: RefCell<u32>,
    dispatch_fails: bool,
    next_call: RefCell<u32>,
    set_headers: RefCell<Vec<(u32, String, Option<String>)>>,
    callouts: RefCell<Vec<(String, String, String, Duration)>>,
    replies: RefCell<Vec<(u32, LocalReply)>>,
    resumed: RefCell<Vec<u32>>,
    gone: RefCell<Vec<u32>>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    counters: RefCell<HashMap<u32, u64>>,
    histogram: RefCell<Vec<u64>>,
}

impl FakeHost {
    fn request(&self, context_id: u32, headers: &[(&str, &[u8])]) {
        self.headers.borrow_mut().insert(
            context_id,
            headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect(),
        );
        *self.current.borrow_mut() = context_id;
    }

    fn replies_to(&self, context_id: u32) -> Vec<LocalReply> {
        self.replies
            .borrow()
            .iter()
            .filter(|(id, _)| *id == context_id)
            .map(|(_, reply)| reply.clone())
            .collect()
    }

    fn headers_set_on(&self, context_id: u32) -> Vec<(String, Option<String>)> {
        self.set_headers
            .borrow()
            .iter()
            .filter(|(id, _, _)| *id == context_id)
            .map(|(_, name, value)| (name.clone(), value.clone()))
            .collect()
    }

    fn counter(&self, metric: Option<u32>) -> u64 {
        self.counters
            .borrow()
            .get(&metric.unwrap())
            .copied()
            .unwrap_or(0)
    }
}

impl SharedData for FakeHost {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Err(SharedSetError::CasMismatch);
        }
        shared.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

impl Host for FakeHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        let current = *self.current.borrow();
        self.headers.borrow().get(&current)?.get(name).cloned()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.set_headers.borrow_mut().push((
            *self.current.borrow(),
            name.to_owned(),
            value.map(str::to_owned),
        ));
    }

    fn dispatch_get(&self, callout: &Callout<'_>) -> Result<u32, String> {
        if self.dispatch_fails {
            return Err("BadArgument".to_owned());
        }
        self.callouts.borrow_mut().push((
            callout.cluster.to_owned(),
            callout.authority.to_owned(),
            callout.path.to_owned(),
            callout.timeout,
        ));
        *self.next_call.borrow_mut() += 1;
        Ok(*self.next_call.borrow())
    }

    fn send_reply(&self, reply: &LocalReply) {
        self.replies
            .borrow_mut()
            .push((*self.current.borrow(), reply.clone()));
    }

    fn resume_request(&self) {
        self.resumed.borrow_mut().push(*self.current.borrow());
    }

    fn switch_context(&self, context_id: u32) -> bool {
        if self.gone.borrow().contains(&context_id) {
            return false;
        }
        *self.current.borrow_mut() = context_id;
        true
    }

    fn increment(&self, metric: Option<u32>) {
        if let Some(metric) = metric {
            *self.counters.borrow_mut().entry(metric).or_default() += 1;
        }
    }

    fn record(&self, metric: Option<u32>, value: u64) {
        if metric.is_some() {
            self.histogram.borrow_mut().push(value);
        }
    }
}

fn gate_with(top: &str, revocation: &str) -> Rc<Gate> {
    let json = format!(
        r#"{{"secret":{{"inline":"s"}}{top},"revocation":{{"cluster":"keyservice","authority":"ks.local","timeout_ms":250{revocation}}}}}"#
    );
    let mut next = 0;
    let metrics = Metrics::define(&mut |_: MetricKind, _: &str| {
        next += 1;
        Some(next)
    });
    Rc::new(Gate::new(
        Config::parse(json.as_bytes(), &|_| None).unwrap(),
        metrics,
    ))
}

fn gate(revocation: &str) -> Rc<Gate> {
    gate_with("", revocation)
}

fn sign(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"s"),
    )
    .unwrap()
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

fn active(cache_control: Option<&str>) -> CalloutAnswer {
    CalloutAnswer {
        status: Some(200),
        cache_control: cache_control.map(str::to_owned),
    }
}

fn answer(status: Option<u16>) -> CalloutAnswer {
    CalloutAnswer {
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
            crate::revocation::token_digest(&token)
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
fn a_leader_that_goes_away_hands_its_waiters_to_the_root() {
    let host = FakeHost::default();
    let gate = gate("");
    let token = sign(json!({"user_id": "u1"}));
    host.request(1, &[("authorization", &bearer(&token))]);
    let mut leader = RequestFlow::new(Rc::clone(&gate), 1);
    leader.on_request_headers(&host, NOW_MS);
    host.request(2, &[("authorization", &bearer(&token))]);
    let mut follower = RequestFlow::new(Rc::clone(&gate), 2);
    follower.on_request_headers(&host, NOW_MS);

    leader.on_destroyed();
    assert!(gate.in_flight.borrow().has_orphans());
    let orphans = gate.in_flight.borrow_mut().adopt_orphans(100);
    assert_eq!(orphans, vec![crate::revocation::digest(&token)]);
    assert_eq!(
        flight_path(&gate, &orphans[0]),
        Some(format!(
            "/v1/revocations/{}",
            crate::revocation::token_digest(&token)
        ))
    );
    // The root's callout answers: the follower is woken.
    let (status, waiters) = settle_flight(&gate, &host, &orphans[0], &active(None), NOW_MS);
    wake(&gate, &host, waiters, status);
    assert_eq!(*host.resumed.borrow(), vec![2]);
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

mod parking {
    use super::*;
    use crate::config::KeyMaterial;
    use crate::remote_jwks::FetchKind;
    use crate::test_keys::{self, jwk};
    use jsonwebtoken::Algorithm;

    fn remote_gate(extra: &str) -> Rc<Gate> {
        let json = format!(
            r#"{{"providers":[{{"name":"idp","remote_jwks":{{"cluster":"idp","wait_ms":1500{extra}}},"claims_to_headers":{{"sub":"x-user-id"}}}}]}}"#
        );
        let mut next = 0;
        let metrics = Metrics::define(&mut |_: MetricKind, _: &str| {
            next += 1;
            Some(next)
        });
        Rc::new(Gate::new(
            Config::parse(json.as_bytes(), &|_| None).unwrap(),
            metrics,
        ))
    }

    fn keys_arrive(gate: &Gate, document: &str) {
        let KeyMaterial::Remote(remote) = &gate.config.providers[0].keys else {
            panic!("remote");
        };
        let jwks = gate.providers[0].jwks.as_ref().unwrap();
        jwks.borrow_mut().started(9, FetchKind::Keys, NOW_MS);
        jwks.borrow_mut().on_response(
            remote,
            &[Algorithm::EdDSA],
            Some(200),
            Some(document.as_bytes()),
            NOW_MS,
        );
    }

    #[test]
    fn requests_wait_for_the_first_keys_then_are_decided() {
        let gate = remote_gate("");
        let ed = test_keys::ed25519();
        let token = test_keys::sign(
            &ed,
            Algorithm::EdDSA,
            Some("k1"),
            &json!({"sub": "user_1", "exp": NOW_MS / 1000 + 60}),
        );
        let host = FakeHost::default();
        host.request(1, &[("authorization", &bearer(&token))]);
        let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
        assert_eq!(flow.on_request_headers(&host, NOW_MS), FlowAction::Pause);
        assert!(flow.is_waiting());
        assert_eq!(gate.providers[0].parked.borrow().len(), 1);

        keys_arrive(&gate, &json!({"keys": [jwk(&ed, "k1", None)]}).to_string());
        wake_parked(&gate, &host, 0, NOW_MS + 200);
        assert_eq!(*host.resumed.borrow(), vec![1]);
        assert_eq!(
            host.headers_set_on(1),
            vec![("x-user-id".to_owned(), Some("user_1".to_owned()))]
        );
        assert!(gate.providers[0].parked.borrow().is_empty());
    }

    #[test]
    fn requests_still_waiting_at_their_deadline_get_503_or_pass_with_failure_mode_allow() {
        for (extra, status) in [("", Some(503)), (r#","failure_mode":"allow""#, None)] {
            let gate = remote_gate(extra);
            let host = FakeHost::default();
            let token = test_keys::sign(&test_keys::ed25519(), Algorithm::EdDSA, None, &json!({}));
            host.request(
                1,
                &[("authorization", &bearer(&token)), ("x-user-id", b"spoof")],
            );
            let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
            flow.on_request_headers(&host, NOW_MS);
            expire_parked(&gate, &host, NOW_MS + 1_499);
            assert!(host.replies.borrow().is_empty() && host.resumed.borrow().is_empty());
            expire_parked(&gate, &host, NOW_MS + 1_500);
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
        host.request(1, &[("authorization", &bearer(&token))]);
        let mut flow = RequestFlow::new(Rc::clone(&gate), 1);
        flow.on_request_headers(&host, NOW_MS);
        flow.on_destroyed();
        assert!(gate.providers[0].parked.borrow().is_empty());
    }
}
