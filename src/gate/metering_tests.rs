//! Subjects and limits through the gate: who a token is counted as, and the order limits are
//! taken in.

use std::rc::Rc;

use serde_json::json;

use super::*;
use crate::gate::decision::{Decision, RequestHead};
use crate::policy::rate_limits::Limit;
use crate::testing::gate::{bearer, gate_from, sign};
use crate::testing::host::FakeHost;

const T: u64 = 1_700_000_080_000;

fn gate(extra: &str) -> Rc<Gate> {
    gate_from(&format!(
        r#"{{"secret":{{"inline":"s"}},"revocation":{{"cluster":"keyservice"}},
            "rate_limits":{{"key":[{{"requests":2,"per_seconds":60}}],
                            "claims":{{"org_id":[{{"requests":3,"per_seconds":60}}]}}}}{extra}}}"#
    ))
}

fn subject_of(gate: &Gate, token: &str) -> Option<Arc<Subject>> {
    let header = bearer(token);
    let sources = vec![Some(header)];
    let head = RequestHead {
        sources: &sources,
        ..RequestHead::default()
    };
    let (decision, trace) = gate.decide_traced(&head, T);
    let from_grant = match decision {
        Decision::Allow(grant) => grant.subject,
        Decision::CheckRevocation(check) => check.grant.subject,
        other => panic!("{other:?}"),
    };
    assert_eq!(from_grant, trace.subject);
    from_grant
}

#[test]
fn a_stored_key_is_counted_per_key_and_a_temporary_one_per_provider() {
    let gate = gate("");
    let stored = sign(json!({"user_id": "u", "org_id": "o"}));
    let subject = subject_of(&gate, &stored).unwrap();
    assert_eq!(subject.key, Some(crate::revocation::protocol::digest(&stored)));
    assert_eq!(subject.claims.len(), 1);
    let temporary = sign(json!({"user_id": "u", "exp": T / 1000 + 60}));
    let subject = subject_of(&gate, &temporary).unwrap();
    assert_eq!(subject.key, None, "temporary keys are not stored");
    assert!(subject.claims.is_empty(), "no org_id claim, no org counter");
}

#[test]
fn nothing_is_built_when_nothing_counts() {
    let gate = gate_from(r#"{"secret":{"inline":"s"},"revocation":{"cluster":"keyservice"}}"#);
    assert!(!gate.meters());
    assert_eq!(subject_of(&gate, &sign(json!({"user_id": "u", "exp": T / 1000 + 60}))), None);
}

#[test]
fn the_keys_own_limits_replace_the_providers_default_and_claims_are_shared() {
    let (gate, host) = (gate(""), FakeHost::default());
    let first = subject_of(&gate, &sign(json!({"user_id": "u", "org_id": "o", "iat": 1}))).unwrap();
    let second = subject_of(&gate, &sign(json!({"user_id": "u", "org_id": "o", "iat": 2}))).unwrap();
    // The provider's default: 2 a minute per key.
    assert_eq!(gate.take_rates(&host, &first, None, T).exceeded, None);
    assert_eq!(gate.take_rates(&host, &first, None, T).exceeded, None);
    let exceeded = gate.take_rates(&host, &first, None, T).exceeded.unwrap();
    assert_eq!(exceeded.policy, "key");
    assert_eq!(exceeded.limit, Limit { requests: 2, per_seconds: 60 });
    // The org's 3 a minute are shared by its keys: the second key has one left.
    assert_eq!(gate.take_rates(&host, &second, None, T).exceeded, None);
    let exceeded = gate.take_rates(&host, &second, None, T).exceeded.unwrap();
    assert_eq!(exceeded.policy, "org_id");
    // A key with its own limits from keyservice uses them instead of the default.
    let own = Limits::new(&[Limit { requests: 1, per_seconds: 3600 }]).unwrap();
    let third = subject_of(&gate, &sign(json!({"user_id": "v", "iat": 3}))).unwrap();
    assert_eq!(gate.take_rates(&host, &third, Some(own), T).exceeded, None);
    let exceeded = gate.take_rates(&host, &third, Some(own), T).exceeded.unwrap();
    assert_eq!((exceeded.policy.as_str(), exceeded.limit.per_seconds), ("key", 3600));
}

#[test]
fn usage_is_counted_for_stored_keys_only() {
    let gate = gate(r#","usage":{}"#);
    let stored = subject_of(&gate, &sign(json!({"user_id": "u"}))).unwrap();
    let temporary = subject_of(&gate, &sign(json!({"user_id": "u", "exp": T / 1000 + 60}))).unwrap();
    gate.count_usage(&stored, Outcome::Allowed, T);
    gate.count_usage(&temporary, Outcome::Allowed, T);
    let usage = gate.usage.as_ref().unwrap();
    assert_eq!(usage.borrow().len(), 1);
}
