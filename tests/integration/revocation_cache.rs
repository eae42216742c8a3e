//! The shared revocation cache and request coalescing: keyservice's definite answers (200 and
//! 410 with `Cache-Control: max-age`) are kept in Envoy shared data for every worker, for
//! min(max-age, the configured maximum for that verdict); 404s, failures and answers without
//! max-age are asked again every time; the cache is direct-mapped (`max_entries` slots); and on a
//! worker, requests for a key whose callout is out wait for it instead of sending their own.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use testkit::fault::{Fault, FaultServer};
use testkit::http::Reply;
use testkit::poll;
use testkit::raw_http::{raw_http, read_raw, send_raw};

use crate::support::{
    Cases, Rig, SECRET, comfyui_deploy_key, default_plugin_config, expect_allowed, expect_callouts,
    expect_revoked, expect_unavailable,
};

/// `revocation.cache.max_entries` in the test of the bound.
/// `revocation.cache.max_entries` of the eviction test, and entries per bucket.
const ENTRIES: u32 = 8;
const WAYS: u32 = 4;

/// The longest a test waits for a cached answer to expire (TTLs here are 1 s).
const TTL_DEADLINE: Duration = Duration::from_secs(10);

fn expect_stat(rig: &Rig, name: &str, expected: u64) -> Result<(), String> {
    let value = rig.keygate_stat(name);
    if value == expected {
        Ok(())
    } else {
        Err(format!("keygate.{name} is {value}, expected {expected}"))
    }
}

/// The cache slot of a token: the first 4 bytes of its SHA-256, little-endian, mod the slots.
fn bucket(token: &str, buckets: u32) -> u32 {
    let digest = Sha256::digest(token.as_bytes());
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % buckets
}

/// The slot of the worker's local table in front of the shared cache (the next 4 digest bytes,
/// modulo `min(max_entries, 1024)`).
fn local_slot(token: &str, slots: u32) -> u32 {
    let digest = Sha256::digest(token.as_bytes());
    u32::from_le_bytes([digest[4], digest[5], digest[6], digest[7]]) % slots.min(1024)
}

/// keyservice's own answers carry the documented `Cache-Control`.
fn expect_answer(rig: &Rig, token: &str, status: u16, cache_control: &str) -> Result<(), String> {
    match rig.keyservice.revocation_answer(token) {
        (seen, Some(header)) if seen == status && header == cache_control => Ok(()),
        other => Err(format!(
            "keyservice answered {other:?}, expected ({status}, {cache_control:?})"
        )),
    }
}

/// With two workers, 20 requests for one key, each on a new connection (so that both workers
/// serve some), cost one callout: the answer is shared through Envoy shared data.
#[test]
fn one_callout_serves_every_worker() {
    const REQUESTS: u64 = 20;
    let rig = Rig::builder().concurrency(2).start();
    let mut cases = Cases::new();
    let issued = rig.keyservice.issue("erin", Some("acme"), None);

    cases.check(
        "keyservice: active key answers 200 with max-age=86400",
        expect_answer(&rig, &issued.key, 200, "max-age=86400"),
    );
    let authorization = format!("Bearer {}", issued.key);
    let before = rig.callouts();
    for n in 1..=REQUESTS {
        let reply = raw_http(
            rig.listener,
            "GET",
            "/",
            &[("authorization", authorization.as_str())],
        )
        .unwrap_or_else(|err| panic!("request {n}: {err}"));
        cases.check(
            &format!("request {n} (new connection): allowed as erin"),
            expect_allowed(&reply, Some("erin"), Some("acme")),
        );
    }
    cases.check(
        &format!("{REQUESTS} requests, one key, two workers: one callout"),
        expect_callouts(rig.callouts() - before, 1),
    );
    let workers = rig.connections_per_worker();
    cases.check(
        "both workers served some of the connections",
        if workers.len() == 2
            && workers.iter().all(|n| *n > 0)
            && workers.iter().sum::<u64>() == REQUESTS
        {
            Ok(())
        } else {
            Err(format!(
                "connections per worker (listener.127.0.0.1_0.worker_<n>.downstream_cx_total): {workers:?}"
            ))
        },
    );
    cases.check(
        "stats: 1 miss, 19 hits, 1 callout answered",
        expect_stat(&rig, "revocation_cache_misses", 1)
            .and(expect_stat(&rig, "revocation_cache_hits", REQUESTS - 1))
            .and(expect_stat(&rig, "callouts_ok", 1))
            .and(expect_stat(&rig, "requests_allowed", REQUESTS)),
    );

    // keyservice's other answers, for the record: revoked is kept a day, unknown never.
    rig.keyservice.revoke(&issued.id);
    cases.check(
        "keyservice: revoked key answers 410 with max-age=86400",
        expect_answer(&rig, &issued.key, 410, "max-age=86400"),
    );
    cases.check(
        "keyservice: unknown key answers 404 with no-store",
        expect_answer(
            &rig,
            &comfyui_deploy_key("nobody", "none", SECRET),
            404,
            "no-store",
        ),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// keyservice started with `--cache-active-seconds 1`: a revocation reaches the edge once the
/// cached "active" answer expires, and the "revoked" answer is then cached in its turn.
#[test]
fn a_revocation_shows_once_the_active_answer_expires() {
    let rig = Rig::builder()
        .keyservice_args(&["--cache-active-seconds", "1"])
        .start();
    let mut cases = Cases::new();
    let issued = rig.keyservice.issue("frank", Some("acme"), None);
    cases.check(
        "keyservice --cache-active-seconds 1: 200 with max-age=1",
        expect_answer(&rig, &issued.key, 200, "max-age=1"),
    );

    let (reply, delta) = rig.get_counting_callouts(&issued.key);
    cases.check(
        "first request: allowed after one callout",
        expect_allowed(&reply, Some("frank"), Some("acme")).and(expect_callouts(delta, 1)),
    );

    rig.keyservice.revoke(&issued.id);
    let mut before_revoked = Vec::new();
    let revoked = poll(TTL_DEADLINE, Duration::from_millis(100), || {
        let reply = rig.get_with_token(&issued.key, &[]);
        if reply.status == 401 {
            Some(reply)
        } else {
            before_revoked.push(reply);
            None
        }
    });
    cases.check(
        "after DELETE: refused within the deadline as 401 Revoked token",
        match &revoked {
            Some(reply) => expect_revoked(reply),
            None => Err(format!(
                "still not refused {TTL_DEADLINE:?} after the revocation, with max-age=1"
            )),
        },
    );
    cases.check(
        "until then: allowed from the cached active answer",
        before_revoked
            .iter()
            .try_for_each(|reply| expect_allowed(reply, Some("frank"), Some("acme"))),
    );

    let before = rig.callouts();
    let hits = rig.keygate_stat("revocation_cache_hits");
    for n in 1..=5 {
        cases.check(
            &format!("revoked key again ({n}): 401 Revoked token"),
            expect_revoked(&rig.get_with_token(&issued.key, &[])),
        );
    }
    cases.check(
        "the revoked answer is cached: 5 more requests, no callout, 5 hits",
        expect_callouts(rig.callouts() - before, 0).and(expect_stat(
            &rig,
            "revocation_cache_hits",
            hits + 5,
        )),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// `revocation.cache.max_active_seconds` caps keyservice's max-age: with keyservice's default
/// (max-age=86400, a day) and a cap of 1 s, a revocation shows within seconds.
#[test]
fn the_configured_maximum_caps_max_age() {
    let mut config = default_plugin_config();
    config["revocation"]["cache"] = json!({"max_active_seconds": 1});
    let rig = Rig::builder().plugin_config(&config).start();
    let mut cases = Cases::new();
    let issued = rig.keyservice.issue("grace", None, None);
    cases.check(
        "keyservice's default: 200 with max-age=86400",
        expect_answer(&rig, &issued.key, 200, "max-age=86400"),
    );
    let (reply, delta) = rig.get_counting_callouts(&issued.key);
    cases.check(
        "first request: allowed after one callout",
        expect_allowed(&reply, Some("grace"), None).and(expect_callouts(delta, 1)),
    );
    rig.keyservice.revoke(&issued.id);
    let revoked = poll(TTL_DEADLINE, Duration::from_millis(100), || {
        let reply = rig.get_with_token(&issued.key, &[]);
        (reply.status != 200).then_some(reply)
    });
    cases.check(
        "max_active_seconds=1: the revocation shows within the deadline (max-age is a day)",
        match &revoked {
            Some(reply) => expect_revoked(reply),
            None => Err(format!(
                "still allowed {TTL_DEADLINE:?} after the revocation: max-age=86400 was not capped"
            )),
        },
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// `max_entries: 8`: 40 keys share 2 buckets of 4 entries (bucket = first 4 digest bytes,
/// little-endian, mod 2). Shared data cannot be listed from the admin, so the bound shows through
/// behaviour: a key that finds its bucket full evicts the oldest entry, the 4 newest keys of each
/// bucket are still hits, and an evicted key costs a callout again, unless the worker's local
/// table (8 slots of its own, modelled too) still holds its answer.
#[test]
fn the_bucket_count_bounds_the_cache() {
    const KEYS: usize = 40;
    let mut config = default_plugin_config();
    // Long TTLs, so that nothing expires during the test and every full bucket evicts.
    config["revocation"]["cache"] = json!({"max_entries": ENTRIES, "max_active_seconds": 600});
    let rig = Rig::builder()
        .plugin_config(&config)
        .keyservice_args(&["--cache-active-seconds", "600"])
        .start();
    let mut cases = Cases::new();
    let keys: Vec<(String, String)> = (0..KEYS)
        .map(|n| {
            let user = format!("user-{n}");
            let key = rig.keyservice.issue(&user, None, None).key;
            (user, key)
        })
        .collect();

    let mut model = CacheModel::default();
    for n in 0..KEYS {
        model.request(&rig, &mut cases, &keys, n, "first pass");
    }
    let held: u64 = model.buckets.values().map(|keys| keys.len() as u64).sum();
    let evictions = rig.keygate_stat("revocation_cache_evictions");
    cases.check(
        &format!("first pass: evictions = {KEYS} keys - {held} entries held"),
        if evictions == KEYS as u64 - held && held <= u64::from(ENTRIES) {
            Ok(())
        } else {
            Err(format!("keygate.revocation_cache_evictions is {evictions}"))
        },
    );

    // The keys each bucket holds are still cached; every other one was evicted.
    let latest: Vec<usize> = model.buckets.values().flatten().copied().collect();
    for &n in &latest {
        model.request(&rig, &mut cases, &keys, n, "held by its bucket");
    }
    let earlier: Vec<usize> = (0..KEYS).filter(|n| !latest.contains(n)).collect();
    cases.check(
        "some keys were evicted",
        if earlier.is_empty() {
            Err("every key still has a place".to_owned())
        } else {
            Ok(())
        },
    );
    for &n in &earlier {
        model.request(&rig, &mut cases, &keys, n, "evicted earlier");
    }
    let evictions = rig.keygate_stat("revocation_cache_evictions");
    cases.check(
        "evictions counted as the model predicts",
        if evictions == model.evictions {
            Ok(())
        } else {
            Err(format!(
                "keygate.revocation_cache_evictions is {evictions}, expected {}",
                model.evictions
            ))
        },
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// What a cache of [`ENTRIES`] entries in buckets of 4 holds, all entries live (the oldest goes
/// when a bucket is full), and the one worker's local table in front of it.
#[derive(Default)]
struct CacheModel {
    /// Bucket -> indexes of the keys whose answers it holds, oldest first.
    buckets: BTreeMap<u32, Vec<usize>>,
    /// Local slot -> index of the key whose answer the worker keeps.
    local: BTreeMap<u32, usize>,
    evictions: u64,
}

impl CacheModel {
    /// Sends key `n` (user, key), checks that it is allowed and costs a callout exactly when
    /// neither the local table nor the bucket holds it, and updates the model.
    fn request(
        &mut self,
        rig: &Rig,
        cases: &mut Cases,
        keys: &[(String, String)],
        n: usize,
        pass: &str,
    ) {
        let (user, key) = &keys[n];
        let bucket = bucket(key, ENTRIES / WAYS);
        let local = local_slot(key, ENTRIES);
        let in_bucket = self
            .buckets
            .get(&bucket)
            .is_some_and(|keys| keys.contains(&n));
        let held = self.local.get(&local) == Some(&n) || in_bucket;
        let (reply, delta) = rig.get_counting_callouts(key);
        cases.check(
            &format!(
                "{pass}: key {n} (bucket {bucket}, {}): allowed",
                if held { "cached" } else { "not cached" }
            ),
            expect_allowed(&reply, Some(user), None).and(expect_callouts(delta, u64::from(!held))),
        );
        // Whatever the worker read or wrote, it keeps locally.
        self.local.insert(local, n);
        if !held {
            let keys = self.buckets.entry(bucket).or_default();
            if keys.len() == WAYS as usize {
                keys.remove(0);
                self.evictions += 1;
            }
            keys.push(n);
        }
    }
}

/// Waits until Envoy holds `active` requests (gauge `http.ingress.downstream_rq_active`).
/// A request is counted while its headers are parsed, and the filter sees them in the same
/// event-loop turn of the one worker, before any callout answer can be processed.
fn wait_for_active_requests(rig: &Rig, active: u64) -> Result<(), String> {
    let mut seen = 0;
    poll(Duration::from_secs(20), Duration::from_millis(20), || {
        seen = rig.stat("http.ingress.downstream_rq_active");
        (seen == active).then_some(())
    })
    .ok_or_else(|| format!("Envoy holds {seen} active requests, expected {active}"))
}

fn wait_for_callouts_at(fault: &FaultServer, count: usize) -> Result<(), String> {
    poll(Duration::from_secs(20), Duration::from_millis(20), || {
        (fault.request_count() >= count).then_some(())
    })
    .ok_or_else(|| {
        format!(
            "the revocation service saw {:?}, expected {count} request(s)",
            fault.requests()
        )
    })
}

/// Sends `count` requests with `token` at once, each on its own connection, and returns the
/// connections for the replies to be read.
fn send_all(rig: &Rig, token: &str, count: usize) -> Vec<TcpStream> {
    let authorization = format!("Bearer {token}");
    (0..count)
        .map(|n| {
            send_raw(
                rig.listener,
                "GET",
                "/",
                &[("authorization", authorization.as_str())],
            )
            .unwrap_or_else(|err| panic!("sending request {n}: {err}"))
        })
        .collect()
}

/// Reads every reply, each in its own thread (Envoy answers them in any order).
fn read_all(streams: Vec<TcpStream>) -> Vec<Result<Reply, String>> {
    let readers: Vec<_> = streams
        .into_iter()
        .map(|stream| thread::spawn(move || read_raw(stream, false)))
        .collect();
    readers
        .into_iter()
        .map(|reader| {
            reader
                .join()
                .unwrap_or_else(|_| Err("reader panicked".to_owned()))
        })
        .collect()
}

/// One worker, the cache off and keyservice's answer held back until every request is in:
/// 16 concurrent requests for a fresh key cost one callout, and all get its answer, allowed or
/// denied. A leading request that goes away hands its waiters to the root context, which asks
/// again.
#[test]
fn concurrent_requests_for_a_key_share_one_callout() {
    let mut config = default_plugin_config();
    config["revocation"]["cache"] = json!({"max_entries": 0});
    config["revocation"]["timeout_ms"] = json!(30_000);
    let fault = FaultServer::start(Fault::Held(200));
    let rig = Rig::builder()
        .plugin_config(&config)
        .revocation_at(fault.addr)
        .start();
    let mut cases = Cases::new();

    // Allowed: 16 requests, one callout held until all 16 are waiting.
    let token = comfyui_deploy_key("u-many", "o-many", SECRET);
    let streams = send_all(&rig, &token, 16);
    cases.check(
        "16 concurrent requests, all held in Envoy",
        wait_for_active_requests(&rig, 16),
    );
    cases.check(
        "the first one's callout reached the revocation service",
        wait_for_callouts_at(&fault, 1),
    );
    fault.release();
    for (n, reply) in read_all(streams).into_iter().enumerate() {
        cases.check(
            &format!("concurrent request {n}: allowed as u-many"),
            reply.and_then(|reply| expect_allowed(&reply, Some("u-many"), Some("o-many"))),
        );
    }
    cases.check(
        "16 concurrent requests for one key: one callout",
        match fault.request_count() {
            1 => expect_callouts(rig.callouts(), 1),
            n => Err(format!("the revocation service saw {n} requests")),
        },
    );
    let (reply, delta) = rig.get_counting_callouts(&token);
    cases.check(
        "the same key afterwards: a callout of its own (nothing cached, the flight is over)",
        expect_allowed(&reply, Some("u-many"), Some("o-many")).and(expect_callouts(delta, 1)),
    );

    // Denied: every waiter gets the leader's answer, 410 → 401 Revoked token.
    fault.set(Fault::Held(410));
    fault.hold_again();
    let before = fault.request_count();
    let token = comfyui_deploy_key("u-revoked", "o-revoked", SECRET);
    let streams = send_all(&rig, &token, 8);
    cases.check(
        "8 concurrent requests for a revoked key, all held in Envoy",
        wait_for_active_requests(&rig, 8).and(wait_for_callouts_at(&fault, before + 1)),
    );
    fault.release();
    for (n, reply) in read_all(streams).into_iter().enumerate() {
        cases.check(
            &format!("concurrent request {n} for the revoked key: 401 Revoked token"),
            reply.and_then(|reply| expect_revoked(&reply)),
        );
    }
    cases.check(
        "8 concurrent requests for the revoked key: one callout",
        match fault.request_count() - before {
            1 => Ok(()),
            n => Err(format!("the revocation service saw {n} more requests")),
        },
    );

    // The leader goes away: its callout is cancelled with it, the root context asks again
    // for the requests still waiting.
    fault.set(Fault::Held(200));
    fault.hold_again();
    let before = fault.request_count();
    let token = comfyui_deploy_key("u-orphan", "o-orphan", SECRET);
    let mut streams = send_all(&rig, &token, 1);
    cases.check(
        "the leader is held",
        wait_for_active_requests(&rig, 1).and(wait_for_callouts_at(&fault, before + 1)),
    );
    streams.extend(send_all(&rig, &token, 3));
    cases.check(
        "three more requests wait on the leader",
        wait_for_active_requests(&rig, 4),
    );
    drop(streams.remove(0));
    cases.check(
        "the leader's client went away: its request is gone",
        wait_for_active_requests(&rig, 3),
    );
    cases.check(
        "the root context dispatched a callout of its own for the waiters",
        wait_for_callouts_at(&fault, before + 2),
    );
    fault.release();
    for (n, reply) in read_all(streams).into_iter().enumerate() {
        cases.check(
            &format!("waiter {n} of the leader that went away: allowed as u-orphan"),
            reply.and_then(|reply| expect_allowed(&reply, Some("u-orphan"), Some("o-orphan"))),
        );
    }
    cases.check(
        "the leader's callout and the root's: two in all",
        match fault.request_count() - before {
            2 => Ok(()),
            n => Err(format!("the revocation service saw {n} more requests")),
        },
    );
    cases.finish(|| rig.envoy_log_tail(60));
}

/// Which answers are cached, with a stand-in revocation service: 200 and 410 with max-age are;
/// 404, 5xx, and answers without max-age or with no-store/no-cache/private or max-age=0 are not.
#[test]
fn only_definite_answers_with_max_age_are_cached() {
    let fault = FaultServer::start(Fault::Status(200));
    let rig = Rig::builder().revocation_at(fault.addr).start();
    let mut cases = Cases::new();
    // (status, Cache-Control, cached?)
    let answers = [
        (200, Some("max-age=60"), true),
        (200, Some("public, max-age=60"), true),
        (410, Some("max-age=60"), true),
        (404, Some("max-age=60"), false),
        (500, Some("max-age=60"), false),
        (503, Some("max-age=60"), false),
        (200, None, false),
        (200, Some("no-store"), false),
        (200, Some("max-age=60, no-store"), false),
        (200, Some("no-cache, max-age=60"), false),
        (200, Some("private, max-age=60"), false),
        (200, Some("max-age=0"), false),
    ];
    for (n, (status, cache_control, cached)) in answers.into_iter().enumerate() {
        fault.set(match cache_control {
            Some(value) => Fault::Cached(status, value),
            None => Fault::Status(status),
        });
        let what = format!(
            "{status} {}",
            cache_control.unwrap_or("without Cache-Control")
        );
        // What the filter makes of the answer (failure_mode and unknown_keys: deny).
        let user = format!("u-{n}");
        let expect = |reply: &Reply| match status {
            200 => expect_allowed(reply, Some(&user), Some("o")),
            404 | 410 => expect_revoked(reply),
            _ => expect_unavailable(reply),
        };
        // A key of its own per answer, so that no answer can be served from another's entry.
        let token = comfyui_deploy_key(&user, "o", SECRET);
        let before = fault.request_count();
        let first = rig.get_with_token(&token, &[]);
        let second = rig.get_with_token(&token, &[]);
        let asked = fault.request_count() - before;
        cases.check(
            &format!("{what}: both requests get the answer's outcome"),
            expect(&first).and(expect(&second)),
        );
        cases.check(
            &format!(
                "{what}: {}",
                if cached {
                    "cached, the second request costs no callout"
                } else {
                    "not cached, each request costs a callout"
                }
            ),
            match (cached, asked) {
                (true, 1) | (false, 2) => Ok(()),
                _ => Err(format!("the revocation service was asked {asked} times")),
            },
        );
    }

    // A cached "revoked" stays: a later "active" answer cannot be asked for, let alone win.
    let token = comfyui_deploy_key("u-revoked-stays", "o", SECRET);
    fault.set(Fault::Cached(410, "max-age=60"));
    cases.check(
        "410 max-age=60: revoked",
        expect_revoked(&rig.get_with_token(&token, &[])),
    );
    fault.set(Fault::Cached(200, "max-age=60"));
    let before = fault.request_count();
    cases.check(
        "the service now says active: the cached revoked answer still decides",
        expect_revoked(&rig.get_with_token(&token, &[])).and(
            match fault.request_count() - before {
                0 => Ok(()),
                n => Err(format!("{n} callout(s)")),
            },
        ),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}
