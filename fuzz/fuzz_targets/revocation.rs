//! keyservice's revocation answers: the `:status` and `cache-control` of the callout's answer
//! (`CalloutAnswer::from_headers`, `revocation_cache::max_age`), through the request flow
//! (`RequestFlow`) with a host double and the shared revocation cache, for a valid key that
//! needs the check. The answer's body is read by nothing (only the status and `cache-control`
//! count), so it is not an input here.
//!
//! Input: line 1 the `:status` value, line 2 the `cache-control` value (absent when the line
//! is missing), line 3 flags (`u` unknown_keys allow, `f` failure_mode allow) and the seconds
//! until a second request with the same key, e.g. `uf 12`.
//!
//! Properties:
//! - the request goes on only for an answer of exactly `200`, a `404` with `unknown_keys:
//!   allow`, or anything but 200/404/410 with `failure_mode: allow`; otherwise it gets 401
//!   (410; 404 with `deny`) or 503 (`failure_mode: deny`);
//! - `max_age` reads `max-age` as RFC 9111's delta-seconds (digits only) and gives nothing
//!   when `no-store`, `no-cache` or `private` is there;
//! - a second request with the key is answered from the cache (no callout) exactly when the
//!   first answer was a definite one (200, 410) that may be stored, for the smaller of its
//!   `max-age` and the configured maximum: never "active" from an answer other than 200.
#![no_main]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use keygate::config::Config;
use keygate::gate::decision::Gate;
use keygate::gate::metrics::Metrics;
use keygate::gate::response::LocalReply;
use keygate::proxy::host::{Callout, CalloutAnswer, Host};
use keygate::revocation::cache::{SharedData, SharedSetError, max_age};
use keygate::revocation::protocol::token_digest;
use keygate::{FlowAction, RequestFlow};
use keygate_fuzz::sign;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const SECRET: &str = "fuzz-revocation-secret-0123456789abcdef";
const NOW_MS: u64 = 1_700_000_000_000;
const MAX_ACTIVE_SECONDS: u64 = 30;
const MAX_REVOKED_SECONDS: u64 = 600;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(3, |&b| b == b'\n');
    let status = lines.next().unwrap_or_default();
    let cache_control = lines.next();
    let flags = lines
        .next()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .unwrap_or_default();
    let unknown_allow = flags.contains('u');
    let failure_allow = flags.contains('f');
    let later_seconds: u64 = flags
        .chars()
        .filter(char::is_ascii_digit)
        .take(4)
        .collect::<String>()
        .parse()
        .unwrap_or(1);

    let answer = CalloutAnswer::from_headers(Some(status), cache_control);
    let exact_status = match status {
        b"200" => Some(200),
        b"404" => Some(404),
        b"410" => Some(410),
        _ => None,
    };

    // What the request must come to.
    let expected = match exact_status {
        Some(200) => Outcome::Continue,
        Some(410) => Outcome::Reply(401),
        Some(404) if unknown_allow => Outcome::Continue,
        Some(404) => Outcome::Reply(401),
        _ if failure_allow => Outcome::Continue,
        _ => Outcome::Reply(503),
    };

    let cache_text = cache_control.and_then(|v| std::str::from_utf8(v).ok());
    let stored_for = expected_max_age(cache_text);
    assert_eq!(
        max_age(answer.cache_control.as_deref()),
        stored_for,
        "{cache_text:?}"
    );

    let gate = Rc::new(gate(unknown_allow, failure_allow));
    let host = FakeHost::default();
    let token = sign(
        json!({"alg": "HS256", "typ": "JWT"})
            .as_object()
            .expect("an object"),
        json!({"user_id": "u1", "org_id": "o1", "iat": NOW_MS / 1000 - 10})
            .to_string()
            .as_bytes(),
        SECRET.as_bytes(),
    );
    host.set("authorization", format!("Bearer {token}"));

    let mut first = RequestFlow::new(Rc::clone(&gate), 1);
    assert_eq!(first.on_request_headers(&host, NOW_MS), FlowAction::Pause);
    let dispatched = host.dispatched.take();
    assert_eq!(
        dispatched,
        vec![format!("/v1/revocations/{}", token_digest(&token))],
        "one callout, with the digest and not the token"
    );
    first.on_callout_response(&host, 1, &answer, NOW_MS + 5);
    assert_eq!(
        host.outcome(),
        expected,
        "status {:?} ({:?})",
        String::from_utf8_lossy(status),
        answer.status
    );

    // The same key again, later.
    let later_ms = NOW_MS + 5 + later_seconds * 1000;
    let cached = match exact_status {
        Some(200) => stored_for.map(|age| age.min(MAX_ACTIVE_SECONDS)),
        Some(410) => stored_for.map(|age| age.min(MAX_REVOKED_SECONDS)),
        _ => None,
    }
    .is_some_and(|ttl| later_seconds < ttl);
    let mut second = RequestFlow::new(Rc::clone(&gate), 2);
    let action = second.on_request_headers(&host, later_ms);
    let asked_again = !host.dispatched.take().is_empty();
    assert_eq!(asked_again, !cached, "cached: {cached}");
    if !cached {
        assert_eq!(action, FlowAction::Pause, "waits for the callout");
    } else if expected == Outcome::Continue {
        // Allowed at once: the flow goes on without a resume.
        assert_eq!(
            (action, host.outcome()),
            (FlowAction::Continue, Outcome::Nothing)
        );
    } else {
        assert_eq!((action, host.outcome()), (FlowAction::Pause, expected));
    }
});

/// RFC 9111's `max-age`: delta-seconds (digits, possibly quoted), none with `no-store`,
/// `no-cache` or `private`; the last `max-age` counts.
fn expected_max_age(value: Option<&str>) -> Option<u64> {
    let mut max_age = None;
    for directive in value?.split(',') {
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        let name = name.to_ascii_lowercase();
        if ["no-store", "no-cache", "private"].contains(&name.as_str()) {
            return None;
        }
        if name == "max-age" {
            max_age = argument
                .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|a| a.parse().ok());
        }
    }
    max_age
}

fn gate(unknown_allow: bool, failure_allow: bool) -> Gate {
    let config = json!({
        "secret": {"inline": SECRET},
        "revocation": {
            "cluster": "keyservice",
            "unknown_keys": if unknown_allow { "allow" } else { "deny" },
            "failure_mode": if failure_allow { "allow" } else { "deny" },
            "cache": {
                "max_entries": 64,
                "max_active_seconds": MAX_ACTIVE_SECONDS,
                "max_revoked_seconds": MAX_REVOKED_SECONDS
            }
        }
    });
    let config = Config::parse(config.to_string().as_bytes(), &|_| None).expect("a valid config");
    Gate::new(config, Metrics::default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Continue,
    Reply(u32),
    Nothing,
}

/// One request at a time: its headers, the callouts, what became of it; shared data as
/// Envoy keeps it (values with a CAS number).
#[derive(Default)]
struct FakeHost {
    headers: RefCell<HashMap<String, String>>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    dispatched: RefCell<Vec<String>>,
    next_call: Cell<u32>,
    outcome: Cell<Option<Outcome>>,
}

impl FakeHost {
    fn set(&self, name: &str, value: String) {
        self.headers.borrow_mut().insert(name.to_owned(), value);
    }

    /// What the last request came to, forgotten once read.
    fn outcome(&self) -> Outcome {
        self.outcome.take().unwrap_or(Outcome::Nothing)
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
        let current = shared.get(key).map(|(_, cas)| *cas);
        if cas.is_some() && cas != current {
            return Err(SharedSetError::CasMismatch);
        }
        shared.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

impl Host for FakeHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .borrow()
            .get(name)
            .map(|value| value.as_bytes().to_vec())
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut headers = self.headers.borrow_mut();
        match value {
            Some(value) => headers.insert(name.to_owned(), value.to_owned()),
            None => headers.remove(name),
        };
    }

    fn dispatch_get(&self, callout: &Callout<'_>) -> Result<u32, String> {
        self.dispatched.borrow_mut().push(callout.path.to_owned());
        self.next_call.set(self.next_call.get() + 1);
        Ok(self.next_call.get())
    }

    fn dispatch_post(&self, _callout: &Callout<'_>, _body: &[u8]) -> Result<u32, String> {
        panic!("no usage reports in this target")
    }

    fn queue(&self, _name: &str) -> Option<u32> {
        None
    }

    fn enqueue(&self, _queue: u32, _message: &[u8]) -> bool {
        false
    }

    fn dequeue(&self, _queue: u32) -> Option<Vec<u8>> {
        None
    }

    fn send_reply(&self, reply: &LocalReply) {
        assert!(self.outcome.get().is_none(), "a second outcome");
        self.outcome.set(Some(Outcome::Reply(reply.status)));
    }

    fn resume_request(&self) {
        assert!(self.outcome.get().is_none(), "a second outcome");
        self.outcome.set(Some(Outcome::Continue));
    }

    fn switch_context(&self, _context_id: u32) -> bool {
        true
    }

    fn increment(&self, _metric: Option<u32>) {}

    fn record(&self, _metric: Option<u32>, _value: u64) {}

    fn route_requirement(&self) -> Option<Vec<u8>> {
        None
    }

    fn set_filter_state(&self, _name: &str, _value: &str) {}
}
