//! The per-request flow against a recording double of the host.

use std::cell::RefCell;
use std::rc::Rc;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::response::LocalReply;

const NOW: u64 = 1_700_000_000;

#[derive(Default)]
struct FakeHost {
    authorization: Option<Vec<u8>>,
    dispatch_fails: bool,
    set_headers: RefCell<Vec<(String, Option<String>)>>,
    callouts: RefCell<Vec<(String, String, String, Duration)>>,
    replies: RefCell<Vec<LocalReply>>,
    resumed: RefCell<u32>,
}

impl Host for FakeHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        assert_eq!(name, "authorization");
        self.authorization.clone()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.set_headers
            .borrow_mut()
            .push((name.to_owned(), value.map(str::to_owned)));
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
        Ok(7)
    }

    fn send_reply(&self, reply: &LocalReply) {
        self.replies.borrow_mut().push(reply.clone());
    }

    fn resume_request(&self) {
        *self.resumed.borrow_mut() += 1;
    }
}

fn flow(revocation: &str) -> RequestFlow {
    let json = format!(
        r#"{{"secret":{{"inline":"s"}},"revocation":{{"cluster":"keyservice","authority":"ks.local","timeout_ms":250{revocation}}}}}"#
    );
    let gate = Gate::new(Config::parse(json.as_bytes(), &|_| None).unwrap());
    RequestFlow::new(Rc::new(gate), 1)
}

fn host_with_token(claims: Value) -> (FakeHost, String) {
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"s"),
    )
    .unwrap();
    let host = FakeHost {
        authorization: Some(format!("Bearer {token}").into_bytes()),
        ..FakeHost::default()
    };
    (host, token)
}

#[test]
fn an_expiring_token_continues_with_identity_headers_and_no_callout() {
    let (host, _) = host_with_token(json!({"user_id": "u1", "exp": NOW + 60}));
    let mut flow = flow("");
    assert_eq!(flow.on_request_headers(&host, NOW), FlowAction::Continue);
    assert!(host.callouts.borrow().is_empty());
    assert!(host.replies.borrow().is_empty());
    assert_eq!(
        *host.set_headers.borrow(),
        vec![
            ("x-user-id".to_owned(), Some("u1".to_owned())),
            ("x-org-id".to_owned(), None),
        ]
    );
}

#[test]
fn a_bad_token_gets_a_local_reply_and_no_header_changes() {
    let host = FakeHost {
        authorization: Some(b"Bearer not.a.jwt".to_vec()),
        ..FakeHost::default()
    };
    assert_eq!(flow("").on_request_headers(&host, NOW), FlowAction::Pause);
    assert_eq!(host.replies.borrow()[0].status, 401);
    assert!(host.set_headers.borrow().is_empty());
    assert!(host.callouts.borrow().is_empty());
}

#[test]
fn a_non_expiring_token_pauses_for_one_callout_by_digest_then_resumes_when_active() {
    let (host, token) = host_with_token(json!({"user_id": "u1", "org_id": "o1", "iat": NOW}));
    let mut flow = flow("");
    assert_eq!(flow.on_request_headers(&host, NOW), FlowAction::Pause);
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

    flow.on_callout_response(&host, 7, Some(200));
    assert_eq!(*host.resumed.borrow(), 1);
    assert_eq!(
        host.set_headers.borrow()[0],
        ("x-user-id".into(), Some("u1".into()))
    );
    assert!(host.replies.borrow().is_empty());
}

#[test]
fn revoked_unknown_and_failed_answers_reply_locally_without_resuming() {
    let cases = [
        ("", Some(410), 401, "Revoked token"),
        ("", Some(404), 401, "Revoked token"),
        ("", Some(500), 503, "Authorization service unavailable"),
        ("", None, 503, "Authorization service unavailable"),
    ];
    for (extra, status, reply_status, body) in cases {
        let (host, _) = host_with_token(json!({"user_id": "u1"}));
        let mut flow = flow(extra);
        flow.on_request_headers(&host, NOW);
        flow.on_callout_response(&host, 7, status);
        assert_eq!(*host.resumed.borrow(), 0, "{status:?}");
        let replies = host.replies.borrow();
        assert_eq!(replies.len(), 1, "{status:?}");
        assert_eq!((replies[0].status, replies[0].body), (reply_status, body));
        assert!(host.set_headers.borrow().is_empty());
    }
}

#[test]
fn failure_mode_allow_and_unknown_keys_allow_resume() {
    for (extra, status) in [
        (r#","failure_mode":"allow""#, None),
        (r#","failure_mode":"allow""#, Some(502)),
        (r#","unknown_keys":"allow""#, Some(404)),
    ] {
        let (host, _) = host_with_token(json!({"user_id": "u1"}));
        let mut flow = flow(extra);
        flow.on_request_headers(&host, NOW);
        flow.on_callout_response(&host, 7, status);
        assert_eq!(*host.resumed.borrow(), 1, "{extra} {status:?}");
        assert!(host.replies.borrow().is_empty());
    }
}

#[test]
fn a_failed_dispatch_applies_the_failure_mode_at_once() {
    let (mut host, _) = host_with_token(json!({"user_id": "u1"}));
    host.dispatch_fails = true;
    assert_eq!(flow("").on_request_headers(&host, NOW), FlowAction::Pause);
    assert_eq!(host.replies.borrow()[0].status, 503);

    let (mut host, _) = host_with_token(json!({"user_id": "u1"}));
    host.dispatch_fails = true;
    let mut open = flow(r#","failure_mode":"allow""#);
    assert_eq!(open.on_request_headers(&host, NOW), FlowAction::Continue);
    assert_eq!(*host.resumed.borrow(), 0, "continuing needs no resume");
    assert_eq!(host.set_headers.borrow()[0].0, "x-user-id");
}

#[test]
fn an_answer_to_another_call_is_ignored() {
    let (host, _) = host_with_token(json!({"user_id": "u1"}));
    let mut flow = flow("");
    flow.on_request_headers(&host, NOW);
    flow.on_callout_response(&host, 99, Some(200));
    assert_eq!(*host.resumed.borrow(), 0);
    flow.on_callout_response(&host, 7, Some(200));
    assert_eq!(*host.resumed.borrow(), 1);
    flow.on_callout_response(&host, 7, Some(200));
    assert_eq!(*host.resumed.borrow(), 1, "a repeated answer does nothing");
}
