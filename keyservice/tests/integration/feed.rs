//! The revocation feed (`GET /v1/revocations?after=…`) on both backends: order and cursors,
//! bad queries, long polls woken by a commit (the periodic re-read made too slow to matter),
//! retention and resync, a change of rate limits as a `limits_changed` event; and on PostgreSQL,
//! thousands of revocations through two replicas while a follower reads both, none skipped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keyservice::FeedPolicy;
use serde_json::{Value, json};
use testkit::http::client;
use testkit::token::sha256_hex;

use crate::common::pg;
use crate::common::{ADMIN, Backend, Harness, start_keyservice};

/// Long polls that would only find a revocation by re-reading after a minute: a prompt answer
/// can only come from the wake-up.
fn no_recheck(state: keyservice::AppState) -> keyservice::AppState {
    state.with_feed_policy(FeedPolicy {
        recheck: Duration::from_secs(60),
        ..FeedPolicy::default()
    })
}

async fn issue(h: &Harness, user: &str) -> (String, String) {
    let created = h.create(json!({"user_id": user, "name": "feed"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    (
        created.json["id"].as_str().unwrap().to_owned(),
        created.json["key"].as_str().unwrap().to_owned(),
    )
}

async fn revoke(h: &Harness, id: &str) {
    let reply = h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

async fn the_feed_lists_revocations_in_order_after_a_cursor(backend: Backend) {
    let h = Harness::with(backend, no_recheck).await;
    let start = h.get("/v1/revocations").await;
    assert_eq!(start.status, 200);
    assert_eq!(start.headers["cache-control"], "no-store");
    assert_eq!(
        start.json,
        json!({"events": [], "next": 0, "more": false, "resync": false})
    );
    let mut keys = Vec::new();
    for user in ["a", "b", "c"] {
        keys.push(issue(&h, user).await);
    }
    revoke(&h, &keys[2].0).await;
    revoke(&h, &keys[0].0).await;
    // Revoking again adds nothing.
    revoke(&h, &keys[0].0).await;
    let all = h.get("/v1/revocations?after=0").await;
    let events = all.json["events"].as_array().unwrap();
    let seen: Vec<(i64, &str, &str)> = events
        .iter()
        .map(|r| {
            (
                r["seq"].as_i64().unwrap(),
                r["sha256"].as_str().unwrap(),
                r["event"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, sha256_hex(&keys[2].1).as_str(), "revoked"),
            (2, sha256_hex(&keys[0].1).as_str(), "revoked")
        ]
    );
    assert!(
        events
            .iter()
            .all(|r| r["at_ms"].as_i64().unwrap() > 1_700_000_000_000
                && r.as_object().unwrap().len() == 4),
        "{events:?}"
    );
    assert_eq!(
        (all.json["next"].clone(), all.json["more"].clone()),
        (json!(2), json!(false))
    );
    let first = h.get("/v1/revocations?after=0&limit=1").await;
    assert_eq!(
        (first.json["next"].clone(), first.json["more"].clone()),
        (json!(1), json!(true))
    );
    let rest = h.get("/v1/revocations?after=1").await;
    assert_eq!(rest.json["events"][0]["seq"], 2);
    let none = h.get("/v1/revocations?after=2").await;
    assert_eq!(
        none.json,
        json!({"events": [], "next": 2, "more": false, "resync": false})
    );
    // A cursor this feed never handed out: resync from the head.
    let ahead = h.get("/v1/revocations?after=9").await;
    assert_eq!(
        ahead.json,
        json!({"events": [], "next": 2, "more": false, "resync": true})
    );
    // A new follower starts at the head.
    assert_eq!(h.get("/v1/revocations").await.json["next"], 2);
    for bad in [
        "after=-1",
        "after=1.5",
        "after=%2B1",
        "after=",
        "after=0x1",
        "wait_seconds=31",
        "wait_seconds=-1",
        "limit=0",
        "limit=1001",
        "afterr=1",
        "after=99999999999999999999",
    ] {
        let reply = h.get(&format!("/v1/revocations?{bad}")).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
        assert_eq!(reply.json["error"], "invalid_query", "{bad}");
    }
    let metrics = h.metrics().await;
    assert!(
        metrics.contains(r#"keyservice_revocation_feed_reads_total{result="resync"} 1"#),
        "{metrics}"
    );
}

async fn a_long_poll_is_answered_when_a_revocation_commits(backend: Backend) {
    let h = Arc::new(Harness::with(backend, no_recheck).await);
    let (id, key) = issue(&h, "waiter").await;
    let waiting = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.get("/v1/revocations?after=0&wait_seconds=20").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the long poll answered before anything happened"
    );
    revoke(&h, &id).await;
    // Woken by the commit: with the re-read a minute away and the wait 20 s, only the wake-up
    // can answer before this deadline.
    let reply = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long poll was not woken by the revocation")
        .unwrap();
    assert_eq!(reply.json["events"][0]["sha256"], sha256_hex(&key));
    // With nothing new, it ends after its wait, empty.
    let empty = h.get("/v1/revocations?after=1&wait_seconds=1").await;
    assert_eq!(
        empty.json,
        json!({"events": [], "next": 1, "more": false, "resync": false})
    );
}

async fn entries_past_retention_are_pruned_and_their_cursors_resync(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut ids = Vec::new();
    for user in ["a", "b", "c"] {
        ids.push(issue(&h, user).await.0);
    }
    for id in &ids[..2] {
        revoke(&h, id).await;
    }
    let far_future = i64::MAX;
    assert_eq!(h.store.prune_feed(far_future).await.unwrap(), 2);
    assert_eq!(h.store.prune_feed(far_future).await.unwrap(), 0);
    revoke(&h, &ids[2]).await;
    // Behind the pruned entries: resync to the head.
    let behind = h.get("/v1/revocations?after=0").await;
    assert_eq!(
        behind.json,
        json!({"events": [], "next": 3, "more": false, "resync": true})
    );
    // At the pruned point: the rest is still there.
    let caught_up = h.get("/v1/revocations?after=2").await;
    assert_eq!(caught_up.json["events"][0]["seq"], 3);
    assert_eq!(caught_up.json["resync"], false);
    // Nothing recent is pruned.
    assert_eq!(h.store.prune_feed(0).await.unwrap(), 0);
}

/// A change of a key's rate limits is an event of the feed, in commit order with revocations,
/// and wakes a long poll as a revocation does; a PATCH that changes nothing adds nothing.
async fn a_change_of_limits_is_a_feed_event_that_wakes_a_long_poll(backend: Backend) {
    let h = Arc::new(Harness::with(backend, no_recheck).await);
    let (first, first_key) = issue(&h, "a").await;
    let (second, second_key) = issue(&h, "b").await;
    revoke(&h, &first).await;
    let waiting = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.get("/v1/revocations?after=1&wait_seconds=20").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    let limits = json!({"rate_limits": [{"requests": 100, "per_seconds": 60}]});
    let patched = h
        .admin("PATCH", &format!("/v1/keys/{second}"), Some(limits.clone()))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let reply = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long poll was not woken by the change of limits")
        .unwrap();
    let events = reply.json["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{}", reply.text);
    assert_eq!(events[0]["seq"], 2);
    assert_eq!(events[0]["sha256"], sha256_hex(&second_key));
    assert_eq!(events[0]["event"], "limits_changed");
    assert!(events[0]["at_ms"].as_i64().unwrap() > 1_700_000_000_000);
    // Unchanged: nothing new. Then cleared, then revoked: two more, in order.
    h.admin("PATCH", &format!("/v1/keys/{second}"), Some(limits))
        .await;
    h.admin(
        "PATCH",
        &format!("/v1/keys/{second}"),
        Some(json!({"rate_limits": []})),
    )
    .await;
    revoke(&h, &second).await;
    let all = h.get("/v1/revocations?after=0").await;
    let seen: Vec<(i64, String, String)> = all.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["event"].as_str().unwrap().to_owned(),
                e["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let (a, b) = (sha256_hex(&first_key), sha256_hex(&second_key));
    assert_eq!(
        seen,
        [
            (1, "revoked".to_owned(), a),
            (2, "limits_changed".to_owned(), b.clone()),
            (3, "limits_changed".to_owned(), b.clone()),
            (4, "revoked".to_owned(), b),
        ]
    );
    let metrics = h.metrics().await;
    assert!(
        metrics.contains(r#"keyservice_revocation_feed_reads_total{result="events"} 2"#),
        "{metrics}"
    );
}

both_backends!(
    a_change_of_limits_is_a_feed_event_that_wakes_a_long_poll,
    the_feed_lists_revocations_in_order_after_a_cursor,
    a_long_poll_is_answered_when_a_revocation_commits,
    entries_past_retention_are_pruned_and_their_cursors_resync,
);

/// The classic hole: revocations committing out of order would let a reader's cursor pass one
/// that commits a moment later, forever. 2,000 keys revoked by 16 concurrent clients through two
/// replicas, while a follower long-polls the two replicas in turn: it must see every one, each
/// once, in increasing seqs with no gap.
#[test]
fn thousands_of_concurrent_revocations_through_two_replicas_reach_a_follower_none_skipped() {
    const KEYS: usize = 2_000;
    const CLIENTS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let url = pg::shared().create_database_blocking();
    // The re-read is a minute away: replica B learns of A's revocations by LISTEN/NOTIFY.
    let a = start_keyservice(&url, dir.path(), "replica-a", &["--feed-recheck", "60s"]);
    let b = start_keyservice(&url, dir.path(), "replica-b", &["--feed-recheck", "60s"]);
    let http = client();
    let mut keys: Vec<(String, String)> = Vec::with_capacity(KEYS);
    for index in 0..KEYS {
        let replica = if index % 2 == 0 { &a } else { &b };
        let created: Value = http
            .post(replica.url("/v1/keys"))
            .bearer_auth(ADMIN)
            .json(&json!({"user_id": format!("u{index}"), "name": "flood"}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        keys.push((
            created["id"].as_str().unwrap().to_owned(),
            sha256_hex(created["key"].as_str().unwrap()),
        ));
    }
    let expected: BTreeSet<String> = keys.iter().map(|(_, digest)| digest.clone()).collect();
    let start: Value = http
        .get(b.url("/v1/revocations"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut cursor = start["next"].as_i64().unwrap();
    assert_eq!(cursor, 0);

    let done = Arc::new(AtomicBool::new(false));
    let revokers: Vec<_> = keys
        .chunks(KEYS / CLIENTS)
        .enumerate()
        .map(|(client_index, chunk)| {
            let chunk: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
            let urls = (a.url("/v1/keys/"), b.url("/v1/keys/"));
            std::thread::spawn(move || {
                let http = client();
                for (index, id) in chunk.iter().enumerate() {
                    let base = if (client_index + index) % 2 == 0 {
                        &urls.0
                    } else {
                        &urls.1
                    };
                    let status = http
                        .delete(format!("{base}{id}"))
                        .bearer_auth(ADMIN)
                        .send()
                        .unwrap()
                        .status();
                    assert_eq!(status, 200, "revoking {id}");
                }
            })
        })
        .collect();
    let follower = {
        let done = Arc::clone(&done);
        let urls = [a.url("/v1/revocations"), b.url("/v1/revocations")];
        std::thread::spawn(move || {
            let http = client();
            let mut seen: Vec<(i64, String)> = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            let mut turn = 0;
            while seen.len() < KEYS && std::time::Instant::now() < deadline {
                let url = format!("{}?after={cursor}&wait_seconds=2", urls[turn % 2]);
                turn += 1;
                let page: Value = http.get(url).send().unwrap().json().unwrap();
                assert_eq!(page["resync"], false, "{page}");
                for revocation in page["events"].as_array().unwrap() {
                    assert_eq!(revocation["event"], "revoked", "{revocation}");
                    seen.push((
                        revocation["seq"].as_i64().unwrap(),
                        revocation["sha256"].as_str().unwrap().to_owned(),
                    ));
                }
                cursor = page["next"].as_i64().unwrap();
                if done.load(Ordering::SeqCst) && page["events"].as_array().unwrap().is_empty() {
                    break;
                }
            }
            seen
        })
    };
    for revoker in revokers {
        revoker.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = follower.join().unwrap();
    let seqs: Vec<i64> = seen.iter().map(|(seq, _)| *seq).collect();
    let in_order: Vec<i64> = (1..=KEYS as i64).collect();
    assert_eq!(
        seqs, in_order,
        "seqs must come once each, in order, with no gap"
    );
    let digests: BTreeSet<String> = seen.into_iter().map(|(_, digest)| digest).collect();
    assert_eq!(digests.len(), KEYS);
    assert_eq!(digests, expected, "every revoked key reached the follower");
}
