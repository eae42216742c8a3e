//! The revocation feed with the real Envoy and keyservice: one follower per Envoy (two workers
//! here), revocations reaching the edge while "active" answers are kept ten minutes, no callout
//! per request, and a feed gone stale falling back to the short bound (then failing closed), never
//! a silent allow.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::poll;

use crate::support::providers::poll_keygate_stat;
use crate::support::{
    Cases, Rig, default_plugin_config, expect_allowed, expect_revoked, expect_status,
};

const FEED_START: Duration = Duration::from_secs(15);

fn feed_config(max_active_seconds: u64, feed: Value) -> Value {
    let mut config = default_plugin_config();
    config["revocation"]["cache"] = json!({"max_active_seconds": max_active_seconds});
    config["revocation"]["feed"] = feed;
    config
}

#[test]
fn revocations_reach_every_worker_through_the_feed_without_per_request_callouts() {
    // Without the feed, an "active" answer would be kept ten minutes here.
    let config = feed_config(600, json!({"wait_seconds": 5, "stale_after_seconds": 8}));
    let rig = Rig::builder().plugin_config(&config).concurrency(2).start();
    let mut cases = Cases::new();
    cases.check(
        "the feed is followed from the start",
        poll_keygate_stat(&rig, "feed_polls_ok", 1, FEED_START).map(|_| ()),
    );
    let issued = rig.keyservice.issue("user_feed", Some("org_feed"), None);
    let other = rig.keyservice.issue("user_other", None, None);
    for round in 0..10 {
        cases.check(
            &format!("request {round} with the key: allowed"),
            expect_allowed(
                &rig.get_with_token(&issued.key, &[]),
                Some("user_feed"),
                Some("org_feed"),
            ),
        );
    }
    let checks = rig.keygate_stat("callouts_ok");
    cases.check(
        "ten requests on two workers: at most one revocation check each",
        if (1..=2).contains(&checks) {
            Ok(())
        } else {
            Err(format!("{checks} revocation callouts"))
        },
    );
    rig.keyservice.revoke(&issued.id);
    cases.check(
        "the revocation reaches the edge through the feed (the cache alone would keep it 10 min)",
        poll(Duration::from_secs(20), Duration::from_millis(100), || {
            // Several requests, so both workers are asked.
            let refused =
                (0..4).all(|_| expect_revoked(&rig.get_with_token(&issued.key, &[])).is_ok());
            refused.then_some(())
        })
        .ok_or_else(|| "the revoked key is still allowed".to_owned()),
    );
    cases.check("no revocation callout was needed to learn it", {
        let after = rig.keygate_stat("callouts_ok");
        if after == checks {
            Ok(())
        } else {
            Err(format!("callouts went from {checks} to {after}"))
        }
    });
    cases.check(
        "the other key is untouched",
        expect_allowed(
            &rig.get_with_token(&other.key, &[]),
            Some("user_other"),
            None,
        ),
    );
    cases.check(
        "the revocation was applied and counted",
        poll_keygate_stat(&rig, "feed_revocations_applied", 1, Duration::from_secs(5)).map(|_| ()),
    );
    cases.check(
        "one follower for the Envoy: keyservice saw one new follower start",
        {
            let starts = rig
                .keyservice
                .metric(r#"keyservice_revocation_feed_reads_total{result="start"}"#);
            if starts == 1.0 {
                Ok(())
            } else {
                Err(format!("{starts} followers started"))
            }
        },
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

#[test]
fn a_stale_feed_falls_back_to_the_short_bound_and_fails_closed() {
    let config = feed_config(1, json!({"wait_seconds": 2, "stale_after_seconds": 3}));
    let mut rig = Rig::builder().plugin_config(&config).start();
    let mut cases = Cases::new();
    cases.check(
        "the feed is followed",
        poll_keygate_stat(&rig, "feed_polls_ok", 1, FEED_START).map(|_| ()),
    );
    let issued = rig.keyservice.issue("user_stale", None, None);
    cases.check(
        "the key is allowed (one callout)",
        expect_allowed(
            &rig.get_with_token(&issued.key, &[]),
            Some("user_stale"),
            None,
        ),
    );
    let checks = rig.keygate_stat("callouts_ok");
    std::thread::sleep(Duration::from_millis(1_500));
    cases.check(
        "past max_active_seconds (1 s), a healthy feed keeps the answer: no new callout",
        expect_allowed(
            &rig.get_with_token(&issued.key, &[]),
            Some("user_stale"),
            None,
        )
        .and_then(|()| {
            let after = rig.keygate_stat("callouts_ok");
            (after == checks)
                .then_some(())
                .ok_or(format!("callouts went from {checks} to {after}"))
        }),
    );
    rig.keyservice.kill();
    cases.check(
        "keyservice gone: the feed goes stale and says so",
        poll_keygate_stat(&rig, "feed_fallbacks", 1, Duration::from_secs(20)).map(|_| ()),
    );
    cases.check(
        "the kept answer is older than 1 s: asked again, keyservice is away, 503",
        expect_status(&rig.get_with_token(&issued.key, &[]), 503),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

#[test]
fn a_keyservice_replica_dying_mid_long_poll_leaves_the_feed_to_the_other() {
    // Two keyservice processes on one database behind cluster `keyservice` (round robin).
    let config = feed_config(600, json!({"wait_seconds": 2, "stale_after_seconds": 30}));
    let mut rig = Rig::builder()
        .plugin_config(&config)
        .keyservice_replicas(1)
        .start();
    let mut cases = Cases::new();
    cases.check(
        "the feed is followed",
        poll_keygate_stat(&rig, "feed_polls_ok", 2, FEED_START).map(|_| ()),
    );
    let issued = rig.keyservice.issue("user_replica", None, None);
    cases.check(
        "the key is allowed and its answer kept",
        expect_allowed(
            &rig.get_with_token(&issued.key, &[]),
            Some("user_replica"),
            None,
        ),
    );
    // Whichever replica holds the long poll now, one of them dies.
    rig.keyservice.kill();
    rig.replicas[0].revoke(&issued.id);
    cases.check(
        "the revocation made through the surviving replica still reaches the edge",
        poll(Duration::from_secs(20), Duration::from_millis(100), || {
            expect_revoked(&rig.get_with_token(&issued.key, &[])).ok()
        })
        .ok_or_else(|| "the revoked key is still allowed".to_owned()),
    );
    cases.check("the feed never went stale on the way", {
        let fallbacks = rig.keygate_stat("feed_fallbacks");
        (fallbacks == 0)
            .then_some(())
            .ok_or(format!("{fallbacks} fallbacks"))
    });
    cases.finish(|| rig.envoy_log_tail(40));
}
