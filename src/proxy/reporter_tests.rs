//! The usage reporter against the recording host: hand-over through the queue, one reporter,
//! batches, retries with the same batch id, the bound.

use std::rc::Rc;

use serde_json::Value;

use super::*;
use crate::metering::usage::Outcome;
use crate::testing::gate::gate_from;
use crate::testing::host::FakeHost;

const T: u64 = 1_700_000_000_000;
/// When a reporter that took the lease at `T` sends its first report (`report_every_seconds`).
const R: u64 = T + 10_000;

fn gate(usage: &str) -> Rc<Gate> {
    gate_from(&format!(
        r#"{{"secret":{{"inline":"s"}},"revocation":{{"cluster":"keyservice"}},"usage":{{{usage}}}}}"#
    ))
}

fn count(gate: &Gate, key: u8, n: usize) {
    let mut usage = gate.usage.as_ref().unwrap().borrow_mut();
    for _ in 0..n {
        usage.count(&[key; 32], Outcome::Allowed, T);
    }
}

fn posts(host: &FakeHost) -> Vec<Value> {
    host.posts
        .borrow()
        .iter()
        .map(|(path, body)| {
            assert_eq!(path, "/v1/usage");
            serde_json::from_slice(body).unwrap()
        })
        .collect()
}

#[test]
fn workers_hand_counts_to_one_reporter_which_sends_them_in_one_report() {
    let host = FakeHost::default();
    // Two workers: two gates (VMs) over one host's shared data and queues.
    let (first_gate, second_gate) = (gate(""), gate(""));
    let (mut first, mut second) = (UsageReporter::new(1, 100), UsageReporter::new(2, 100));
    count(&first_gate, 1, 3);
    count(&second_gate, 1, 2);
    count(&second_gate, 2, 1);
    // The first to tick leads; it gathers an interval of counts before its first report.
    assert_eq!(first.on_tick(&first_gate, &host, T), None);
    assert_eq!(second.on_tick(&second_gate, &host, T + 1), None, "one reporter per Envoy");
    assert_eq!(first.on_tick(&first_gate, &host, T + 100), None);
    assert!(posts(&host).is_empty());
    let call = first.on_tick(&first_gate, &host, R).unwrap();
    let posts_now = posts(&host);
    assert_eq!(posts_now.len(), 1, "{posts_now:?}");
    let keys = posts_now[0]["keys"].as_array().unwrap();
    let allowed = |byte: &str| {
        keys.iter()
            .find(|k| k["sha256"] == byte.repeat(32))
            .map(|k| k["allowed"].as_u64().unwrap())
    };
    assert_eq!((allowed("01"), allowed("02")), (Some(5), Some(1)));
    assert_eq!(posts_now[0]["batch"].as_str().unwrap().len(), 32);
    first.on_answer(&first_gate, &host, call, Some(204), R + 50);
    assert_eq!(host.counter(first_gate.metrics.usage_reports_ok), 1);
    // Nothing more until there are counts and the interval has passed.
    first.on_tick(&first_gate, &host, R + 1_200);
    count(&first_gate, 3, 1);
    first.on_tick(&first_gate, &host, R + 2_300);
    assert_eq!(posts(&host).len(), 1);
    first.on_tick(&first_gate, &host, R + 10_100);
    assert_eq!(posts(&host).len(), 2);
}

#[test]
fn a_failed_report_is_sent_again_with_the_same_batch_id_after_a_backoff() {
    let (gate, host) = (gate(""), FakeHost::default());
    let mut reporter = UsageReporter::new(1, 100);
    count(&gate, 1, 1);
    reporter.on_tick(&gate, &host, T);
    let call = reporter.on_tick(&gate, &host, R).unwrap();
    reporter.on_answer(&gate, &host, call, Some(503), R + 10);
    assert_eq!(host.counter(gate.metrics.usage_reports_error), 1);
    assert_eq!(reporter.on_tick(&gate, &host, R + 500), None, "backing off");
    let again = reporter.on_tick(&gate, &host, R + 1_100).unwrap();
    let bodies = posts(&host);
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1], "the same batch, so keyservice applies it once");
    // No answer at all (a lost callout): after the timeout (5 s) and its slack, sent again.
    assert_eq!(reporter.on_tick(&gate, &host, R + 1_100 + 5_000), None);
    let third = reporter.on_tick(&gate, &host, R + 1_100 + 10_200).unwrap();
    assert_ne!(third, again);
    assert_eq!(posts(&host)[2], bodies[0]);
    reporter.on_answer(&gate, &host, third, Some(204), R + 20_000);
    assert_eq!(host.counter(gate.metrics.usage_reports_ok), 1);
}

#[test]
fn a_report_keyservice_refuses_is_dropped_and_counted() {
    let (gate, host) = (gate(""), FakeHost::default());
    let mut reporter = UsageReporter::new(1, 100);
    count(&gate, 1, 4);
    reporter.on_tick(&gate, &host, T);
    let call = reporter.on_tick(&gate, &host, R).unwrap();
    reporter.on_answer(&gate, &host, call, Some(400), R + 10);
    assert_eq!(host.histogram.borrow().last(), Some(&4));
    assert_eq!(reporter.on_tick(&gate, &host, R + 40_000), None, "nothing left to send");
}

#[test]
fn counts_beyond_the_bound_are_dropped_and_reported_as_dropped() {
    let (gate, host) = (gate(r#""max_keys":2"#), FakeHost::default());
    let mut reporter = UsageReporter::new(1, 2);
    for key in 0..5 {
        count(&gate, key, 1);
    }
    reporter.on_tick(&gate, &host, T);
    reporter.on_tick(&gate, &host, R).unwrap();
    let body = &posts(&host)[0];
    assert_eq!(body["keys"].as_array().unwrap().len(), 2);
    assert_eq!(body["dropped"], 3);
}

#[test]
fn a_full_reporter_sends_the_rest_at_once_after_a_success() {
    let (gate, host) = (gate(r#""max_keys":5000"#), FakeHost::default());
    let mut reporter = UsageReporter::new(1, 5000);
    for key in 0..1500u32 {
        let mut usage = gate.usage.as_ref().unwrap().borrow_mut();
        let mut digest = [0u8; 32];
        digest[..4].copy_from_slice(&key.to_le_bytes());
        usage.count(&digest, Outcome::Allowed, T);
    }
    reporter.on_tick(&gate, &host, T);
    let call = reporter.on_tick(&gate, &host, R).unwrap();
    assert_eq!(posts(&host)[0]["keys"].as_array().unwrap().len(), MAX_REPORT_KEYS);
    reporter.on_answer(&gate, &host, call, Some(204), R + 10);
    reporter.on_tick(&gate, &host, R + 100).unwrap();
    assert_eq!(posts(&host)[1]["keys"].as_array().unwrap().len(), 500);
}

#[test]
fn a_worker_that_is_not_the_reporter_passes_its_counts_on() {
    let host = FakeHost::default();
    let (leader_gate, other_gate) = (gate(""), gate(""));
    let (mut leader, mut other) = (UsageReporter::new(1, 100), UsageReporter::new(2, 100));
    leader.on_tick(&leader_gate, &host, T);
    count(&other_gate, 9, 2);
    other.on_tick(&other_gate, &host, T + 10);
    assert!(other.pending.is_empty());
    let queued = host.queues.borrow()[0].1.len();
    assert_eq!(queued, 1);
}
