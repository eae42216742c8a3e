//! The feed follower against the recording host: election, polls, marks, cursor, resync,
//! failures and the fallback, the hand-over.

use std::rc::Rc;

use super::*;
use crate::gate::decision::Gate;
use crate::revocation::cache::Verdict;
use crate::revocation::protocol::{digest, token_digest};
use crate::testing::gate::gate_from;
use crate::testing::host::FakeHost;

const T: u64 = 1_700_000_000_000;

fn gate() -> Rc<Gate> {
    gate_from(
        r#"{"secret":{"inline":"s"},"revocation":{"cluster":"keyservice","authority":"ks","timeout_ms":250,
            "feed":{"wait_seconds":20,"stale_after_seconds":30}}}"#,
    )
}

fn ok(body: &str) -> (CalloutAnswer, Vec<u8>) {
    (
        CalloutAnswer {
            key_limits: None,
            status: Some(200),
            cache_control: None,
        },
        body.as_bytes().to_vec(),
    )
}

fn answer(follower: &mut FeedFollower, gate: &Gate, host: &FakeHost, call: u32, body: &str, now: u64) {
    let (answer, body) = ok(body);
    follower.on_answer(gate, host, call, &answer, Some(&body), now);
}

fn last_path(host: &FakeHost) -> String {
    host.callouts.borrow().last().unwrap().2.clone()
}

fn state(gate: &Gate, host: &FakeHost) -> FeedState {
    FeedState::read(host, &gate.revocation_cache.as_ref().unwrap().feed_state_key()).0
}

#[test]
fn one_worker_follows_from_the_head_and_marks_revocations_in_the_shared_cache() {
    let gate = gate();
    let host = FakeHost::default();
    let (mut first, mut second) = (FeedFollower::new(1), FeedFollower::new(2));
    let call = first.on_tick(&gate, &host, T).unwrap();
    assert_eq!(second.on_tick(&gate, &host, T + 1), None, "one follower per Envoy");
    assert_eq!(last_path(&host), "/v1/revocations");
    assert_eq!(host.callouts.borrow()[0].3, Duration::from_secs(25));
    // Nothing more while the poll is out.
    assert_eq!(first.on_tick(&gate, &host, T + 100), None);
    answer(&mut first, &gate, &host, call, r#"{"events":[],"next":7,"more":false,"resync":false}"#, T + 200);
    assert_eq!(state(&gate, &host).cursor, Some(7));
    let cache = gate.revocation_cache.as_ref().unwrap();
    assert!(cache.feed_view().healthy(T + 200));
    // Active answers are kept for a day now.
    let key = digest("revoked-key");
    cache.store(&host, &key, Verdict::Active, 86_400, T + 300);
    // An hour of empty long polls later, still active.
    let mut now = T + 300;
    while now < T + 3_600_000 {
        now += 20_000;
        let call = first.on_tick(&gate, &host, now).unwrap();
        answer(&mut first, &gate, &host, call, r#"{"events":[],"next":7,"more":false,"resync":false}"#, now);
    }
    assert_eq!(cache.lookup(&host, &key, now + 10), Some(Verdict::Active));
    // Without the feed's answers it would not be: stale after 30 s, the 30 s bound holds.
    assert_eq!(cache.lookup(&host, &key, now + 31_000), None);
    // The next poll follows the cursor; its revocation is marked.
    let call = first.on_tick(&gate, &host, now + 5_000).unwrap();
    assert_eq!(last_path(&host), "/v1/revocations?after=7&wait_seconds=20");
    let body = format!(
        r#"{{"events":[{{"seq":8,"sha256":"{}","event":"revoked","at_ms":{}}}],"next":8,"more":false,"resync":false}}"#,
        token_digest("revoked-key"),
        now + 4_000
    );
    answer(&mut first, &gate, &host, call, &body, now + 5_100);
    assert_eq!(state(&gate, &host).cursor, Some(8));
    assert_eq!(cache.lookup(&host, &key, now + 5_200), Some(Verdict::Revoked));
    assert_eq!(host.counter(gate.metrics.feed_revocations_applied), 1);
    assert_eq!(host.histogram.borrow().last(), Some(&1_100));
    // Another worker's table drops its stale "active" on its next tick.
    let other = self::gate();
    let other_cache = other.revocation_cache.as_ref().unwrap();
    assert_eq!(second.on_tick(&other, &host, now + 5_300), None);
    assert_eq!(other_cache.lookup(&host, &key, now + 5_400), Some(Verdict::Revoked));
}

#[test]
fn a_bad_answer_changes_nothing_and_backs_off_and_a_stale_feed_falls_back() {
    let gate = gate();
    let host = FakeHost::default();
    let mut follower = FeedFollower::new(1);
    let call = follower.on_tick(&gate, &host, T).unwrap();
    answer(&mut follower, &gate, &host, call, r#"{"events":[],"next":3,"more":false,"resync":false}"#, T);
    let call = follower.on_tick(&gate, &host, T + 100).unwrap();
    answer(&mut follower, &gate, &host, call, r#"{"events":[],"next":1,"more":false,"resync":false}"#, T + 200);
    assert_eq!(state(&gate, &host).cursor, Some(3), "a cursor going back is refused");
    assert_eq!(host.counter(gate.metrics.feed_polls_error), 1);
    // Backing off: no poll for a second.
    assert_eq!(follower.on_tick(&gate, &host, T + 900), None);
    let call = follower.on_tick(&gate, &host, T + 1_300).unwrap();
    follower.on_answer(&gate, &host, call, &CalloutAnswer::default(), None, T + 1_400);
    assert_eq!(follower.on_tick(&gate, &host, T + 2_500), None, "2 s after the second failure");
    assert!(follower.on_tick(&gate, &host, T + 3_500).is_some());
    // No answer for stale_after_seconds: the fallback, counted once.
    follower.on_tick(&gate, &host, T + 31_000);
    follower.on_tick(&gate, &host, T + 31_100);
    assert_eq!(host.counter(gate.metrics.feed_fallbacks), 1);
    assert!(!gate.revocation_cache.as_ref().unwrap().feed_view().healthy(T + 31_100));
}

#[test]
fn a_resync_moves_the_cursor_and_drops_active_answers() {
    let gate = gate();
    let host = FakeHost::default();
    let mut follower = FeedFollower::new(1);
    let call = follower.on_tick(&gate, &host, T).unwrap();
    answer(&mut follower, &gate, &host, call, r#"{"events":[],"next":50,"more":false,"resync":false}"#, T);
    let cache = gate.revocation_cache.as_ref().unwrap();
    let key = digest("k");
    cache.store(&host, &key, Verdict::Active, 86_400, T + 10);
    let call = follower.on_tick(&gate, &host, T + 100).unwrap();
    answer(&mut follower, &gate, &host, call, r#"{"events":[],"next":9,"more":false,"resync":true}"#, T + 200);
    assert_eq!(state(&gate, &host).cursor, Some(9));
    assert_eq!(state(&gate, &host).resync_at_ms, T + 200);
    assert_eq!(cache.lookup(&host, &key, T + 300), None);
    assert_eq!(host.counter(gate.metrics.feed_resyncs), 1);
}

#[test]
fn when_the_following_worker_goes_another_takes_over_from_the_shared_cursor() {
    let gate = gate();
    let host = FakeHost::default();
    let mut first = FeedFollower::new(1);
    let call = first.on_tick(&gate, &host, T).unwrap();
    answer(&mut first, &gate, &host, call, r#"{"events":[],"next":12,"more":false,"resync":false}"#, T);
    first.on_tick(&gate, &host, T + 100);
    // `first` is gone (no more ticks); within the lease another worker waits.
    let mut second = FeedFollower::new(2);
    assert_eq!(second.on_tick(&gate, &host, T + 2_000), None);
    let call = second.on_tick(&gate, &host, T + 3_200).unwrap();
    assert_eq!(last_path(&host), "/v1/revocations?after=12&wait_seconds=20");
    // The old follower's late answer does not move the cursor the new one follows.
    answer(&mut second, &gate, &host, call, r#"{"events":[],"next":15,"more":false,"resync":false}"#, T + 3_300);
    assert_eq!(state(&gate, &host).cursor, Some(15));
}

#[test]
fn more_means_the_next_poll_goes_out_at_once() {
    let gate = gate();
    let host = FakeHost::default();
    let mut follower = FeedFollower::new(1);
    let call = follower.on_tick(&gate, &host, T).unwrap();
    answer(&mut follower, &gate, &host, call, r#"{"events":[],"next":0,"more":false,"resync":false}"#, T);
    let call = follower.on_tick(&gate, &host, T + 100).unwrap();
    let entries: Vec<String> = (1..=3)
        .map(|seq| format!(r#"{{"seq":{seq},"sha256":"{}","event":"revoked","at_ms":{T}}}"#, token_digest(&seq.to_string())))
        .collect();
    answer(
        &mut follower,
        &gate,
        &host,
        call,
        &format!(r#"{{"events":[{}],"next":3,"more":true,"resync":false}}"#, entries.join(",")),
        T + 150,
    );
    assert!(follower.on_tick(&gate, &host, T + 160).is_some());
    assert_eq!(last_path(&host), "/v1/revocations?after=3&wait_seconds=20");
}

#[test]
fn a_flood_of_revocations_stays_within_the_caches_bound() {
    let gate = gate_from(
        r#"{"secret":{"inline":"s"},"revocation":{"cluster":"keyservice","cache":{"max_entries":64},
            "feed":{}}}"#,
    );
    let host = FakeHost::default();
    let mut follower = FeedFollower::new(1);
    let call = follower.on_tick(&gate, &host, T).unwrap();
    answer(&mut follower, &gate, &host, call, r#"{"events":[],"next":0,"more":false,"resync":false}"#, T);
    let mut next = 0;
    for round in 0..5u64 {
        let call = follower.on_tick(&gate, &host, T + 1_000 * (round + 1)).unwrap();
        let entries: Vec<String> = (1..=1000)
            .map(|n| {
                let seq = next + n;
                format!(r#"{{"seq":{seq},"sha256":"{}","event":"revoked","at_ms":{T}}}"#, token_digest(&seq.to_string()))
            })
            .collect();
        next += 1000;
        let body = format!(r#"{{"events":[{}],"next":{next},"more":true,"resync":false}}"#, entries.join(","));
        answer(&mut follower, &gate, &host, call, &body, T + 1_000 * (round + 1) + 10);
    }
    assert_eq!(state(&gate, &host).cursor, Some(5_000));
    assert_eq!(host.counter(gate.metrics.feed_revocations_applied), 5_000);
    // 64 entries in buckets of four, the feed's state and its lease: nothing else was kept.
    let keys = host.shared.borrow().len();
    assert!(keys <= 16 + 2, "{keys} shared-data keys");
    let entries: usize = host.shared.borrow().values().map(|(value, _)| value.len()).sum();
    assert!(entries <= 64 * 82 + 32 + 16, "{entries} bytes of shared data");
}

#[test]
fn a_limits_change_forgets_the_keys_cached_answer_but_never_a_revocation() {
    let gate = gate();
    let host = FakeHost::default();
    let mut follower = FeedFollower::new(1);
    let call = follower.on_tick(&gate, &host, T).unwrap();
    answer(&mut follower, &gate, &host, call, r#"{"events":[],"next":1,"more":false,"resync":false}"#, T);
    let cache = gate.revocation_cache.as_ref().unwrap();
    let (changed, revoked) = (digest("changed-key"), digest("revoked-key"));
    cache.store(&host, &changed, Verdict::Active, 86_400, T + 10);
    cache.store(&host, &revoked, Verdict::Revoked, 86_400, T + 10);
    let call = follower.on_tick(&gate, &host, T + 100).unwrap();
    let body = format!(
        r#"{{"events":[{{"seq":2,"sha256":"{}","event":"limits_changed","at_ms":{T}}},{{"seq":3,"sha256":"{}","event":"limits_changed","at_ms":{T}}}],"next":3,"more":false,"resync":false}}"#,
        token_digest("changed-key"),
        token_digest("revoked-key")
    );
    answer(&mut follower, &gate, &host, call, &body, T + 200);
    assert_eq!(cache.lookup(&host, &changed, T + 300), None, "asked again next time");
    assert_eq!(cache.lookup(&host, &revoked, T + 300), Some(Verdict::Revoked));
    assert_eq!(host.counter(gate.metrics.feed_revocations_applied), 0);
    assert_eq!(state(&gate, &host).cursor, Some(3));
}
