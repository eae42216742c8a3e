//! A provider's remote JWKS at run time, in a real Envoy: a token naming an unknown `kid` makes the
//! filter fetch the JWKS again (at most once per `min_refetch_seconds`) and wait for it; and key
//! rotation (publish B, sign with B, remove A) fails no request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::idp::{Idp, JWKS_PATH};
use testkit::idp_keys::IdpKey;
use testkit::poll;
use testkit::raw_http::raw_http;
use testkit::token::now;

use crate::support::providers::{
    bearer, expect_identity, expect_rejected, poll_keygate_stat, remote_jwks,
};
use crate::support::{Cases, Rig, providers_plugin_config};

const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

fn provider(name: &str, issuer: &str, path: &str, remote: &Value) -> Value {
    json!({
        "name": name,
        "issuer": issuer,
        "remote_jwks": remote_jwks("idp", path, remote),
        "algorithms": ["RS256", "ES256", "EdDSA"],
        "claims_to_headers": {"sub": "x-user-id"},
        "strip_source": true
    })
}

fn claims(issuer: &str, sub: &str) -> Value {
    json!({"iss": issuer, "sub": sub, "iat": now(), "exp": now() + 600})
}

/// Envoy's root contexts that fetch a provider's JWKS at start: one per worker and, in Envoy
/// 1.40, one on the main thread as well (the plugin's base VM ticks too).
fn fetching_contexts(workers: u32) -> usize {
    workers as usize + 1
}

/// How many more requests for `path` the IdP saw than `before`, as a case outcome.
fn expect_fetches(idp: &Idp, path: &str, before: usize, more: usize) -> Result<(), String> {
    let now = idp.count(path);
    if now == before + more {
        Ok(())
    } else {
        Err(format!(
            "the IdP saw {} more request(s) for {path}, expected {more}; log: {:?}",
            now as i64 - before as i64,
            idp.paths()
        ))
    }
}

#[test]
fn an_unknown_kid_refetches_once_and_waits() {
    const CLERK: &str = "https://clerk.test";
    const QUICK: &str = "https://quick.test";
    const QUICK_PATH: &str = "/jwks/quick";
    let idp = Idp::start(CLERK);
    let first = IdpKey::rsa("rsa-1");
    idp.publish(&first);
    let clerk_new = IdpKey::p256("clerk-new");
    let quick_new = IdpKey::ed25519("quick-new");
    // Two providers on one IdP, each fetching its own path: clerk with the default window
    // (min_refetch_seconds 30), quick with the shortest (1 s).
    let config = providers_plugin_config(&[
        provider(
            "clerk",
            CLERK,
            JWKS_PATH,
            &json!({"min_refetch_seconds": 30, "wait_ms": 5000}),
        ),
        provider(
            "quick",
            QUICK,
            QUICK_PATH,
            &json!({"min_refetch_seconds": 1, "wait_ms": 5000}),
        ),
    ]);
    let rig = Rig::builder()
        .plugin_config(&config)
        .cluster("idp", idp.addr)
        .start();
    let mut cases = Cases::new();

    let contexts = fetching_contexts(1);
    let ready = idp
        .wait_for_served(JWKS_PATH, contexts, FETCH_TIMEOUT)
        .and_then(|_| idp.wait_for_served(QUICK_PATH, contexts, FETCH_TIMEOUT))
        .and_then(|_| poll_keygate_stat(&rig, "jwks_fetch_ok", 2 * contexts as u64, FETCH_TIMEOUT));
    cases.check(
        "both providers fetched their JWKS at start (worker and main thread)",
        ready.map(drop),
    );
    let reply = rig.get_with_token(&first.sign(&claims(CLERK, "u-first")), &[]);
    cases.check(
        "a token of the key fetched at start → 200",
        expect_identity(&reply, Some("u-first"), None, None),
    );

    // clerk: a key published after the start fetch, used a moment later (well within
    // min_refetch_seconds of that fetch, which was no refetch for an unknown kid).
    idp.publish(&clerk_new);
    let before = idp.count(JWKS_PATH);
    let reply = rig.get_with_token(&clerk_new.sign(&claims(CLERK, "u-new")), &[]);
    cases.check(
        "clerk: a key published after the start fetch → 200 (the request waits for the refetch)",
        expect_identity(&reply, Some("u-new"), None, None),
    );
    cases.check(
        "clerk: …and the IdP saw exactly one more fetch",
        expect_fetches(&idp, JWKS_PATH, before, 1),
    );
    let before = idp.count(JWKS_PATH);
    for attempt in ["first", "second"] {
        let token = first.sign_as(Some("never-published"), &claims(CLERK, "mallory"));
        cases.check(
            &format!("clerk: a kid that never appears ({attempt} time) → 401"),
            expect_rejected(
                &rig.get_with_token(&token, &[("x-user-id", "mallory")]),
                "token names an unknown key",
            ),
        );
    }
    cases.check(
        "clerk: …with no refetch within min_refetch_seconds",
        expect_fetches(&idp, JWKS_PATH, before, 0),
    );

    // quick: once its window has passed, an unknown kid is fetched for (once) and then refused.
    idp.wait_out_refetch_window(QUICK_PATH, 1);
    let before = idp.count(QUICK_PATH);
    let token = first.sign_as(Some("never-published"), &claims(QUICK, "mallory"));
    cases.check(
        "quick: a kid that never appears, window passed → 401 after one refetch",
        expect_rejected(
            &rig.get_with_token(&token, &[]),
            "token names an unknown key",
        )
        .and_then(|()| expect_fetches(&idp, QUICK_PATH, before, 1)),
    );
    let before = idp.count(QUICK_PATH);
    cases.check(
        "quick: the same unknown kid again at once → 401 with no refetch",
        expect_rejected(
            &rig.get_with_token(&token, &[]),
            "token names an unknown key",
        )
        .and_then(|()| expect_fetches(&idp, QUICK_PATH, before, 0)),
    );
    idp.publish(&quick_new);
    idp.wait_out_refetch_window(QUICK_PATH, 1);
    let before = idp.count(QUICK_PATH);
    let token = quick_new.sign(&claims(QUICK, "u-quick"));
    // The IdP holds its answer: the request must still be waiting when the refetch reaches the
    // IdP, and be let through once the answer is released.
    idp.hold();
    let request = {
        let (listener, authorization) = (rig.listener, bearer(&token));
        thread::spawn(move || raw_http(listener, "GET", "/", &[("authorization", &authorization)]))
    };
    let fetched = idp.wait_for_count(QUICK_PATH, before + 1, FETCH_TIMEOUT);
    let waiting = !request.is_finished();
    idp.release();
    let reply = request.join().expect("the request thread");
    cases.check(
        "quick: a newly published key, window passed → the request waits for the refetch",
        fetched.and_then(|_| {
            if waiting {
                Ok(())
            } else {
                Err(format!("answered before the IdP's JWKS was: {reply:?}"))
            }
        }),
    );
    cases.check(
        "quick: …then 200, after exactly one refetch",
        reply
            .and_then(|reply| expect_identity(&reply, Some("u-quick"), None, None))
            .and_then(|()| expect_fetches(&idp, QUICK_PATH, before, 1)),
    );
    let before = idp.count(QUICK_PATH);
    cases.check(
        "quick: the new key again → 200 with no fetch",
        expect_identity(
            &rig.get_with_token(&token, &[]),
            Some("u-quick"),
            None,
            None,
        )
        .and_then(|()| expect_fetches(&idp, QUICK_PATH, before, 0)),
    );
    cases.check(
        "unknown kids counted in requests_denied_unknown_kid",
        match rig.keygate_stat("requests_denied_unknown_kid") {
            n if n >= 4 => Ok(()),
            n => Err(format!(
                "requests_denied_unknown_kid is {n}, expected at least 4"
            )),
        },
    );
    cases.finish(|| rig.envoy_log_tail(60));
}

/// What the client loop saw: the key its token was signed with, and the outcome.
struct Sent {
    key: &'static str,
    outcome: Result<u16, String>,
}

#[test]
fn key_rotation_fails_no_request() {
    const ISSUER: &str = "https://rotate.test";
    const WORKERS: u32 = 2;
    /// The client loop's bound, whatever happens to the test.
    const MAX_REQUESTS: usize = 20_000;
    let idp = Idp::start(ISSUER);
    let key_a = IdpKey::rsa("key-a");
    let key_b = IdpKey::rsa("key-b");
    idp.publish(&key_a);
    let config = providers_plugin_config(&[provider(
        "rotating",
        ISSUER,
        JWKS_PATH,
        &json!({"refresh_seconds": 10, "min_refetch_seconds": 1, "wait_ms": 5000}),
    )]);
    let rig = Rig::builder()
        .plugin_config(&config)
        .cluster("idp", idp.addr)
        .concurrency(WORKERS)
        .start();
    let mut cases = Cases::new();
    let contexts = fetching_contexts(WORKERS);
    cases.check(
        "every worker fetched the JWKS at start",
        idp.wait_for_served(JWKS_PATH, contexts, FETCH_TIMEOUT)
            .and_then(|_| poll_keygate_stat(&rig, "jwks_fetch_ok", contexts as u64, FETCH_TIMEOUT))
            .map(drop),
    );

    let token_a = key_a.sign(&claims(ISSUER, "rotating-user"));
    let token_b = key_b.sign(&claims(ISSUER, "rotating-user"));
    let current: Arc<Mutex<(&'static str, String)>> = Arc::new(Mutex::new(("A", token_a.clone())));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // Each request on a new connection, so that both workers get some of them.
    let client = {
        let (current, sent, stop) = (current.clone(), sent.clone(), stop.clone());
        let listener = rig.listener;
        thread::spawn(move || {
            for _ in 0..MAX_REQUESTS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (key, token) = current.lock().unwrap().clone();
                let authorization = bearer(&token);
                let outcome = raw_http(listener, "GET", "/", &[("authorization", &authorization)])
                    .and_then(|reply| {
                        expect_identity(&reply, Some("rotating-user"), None, None)
                            .map(|()| reply.status)
                    });
                sent.lock().unwrap().push(Sent { key, outcome });
                // Pacing, not synchronisation: keeps the loop from starving Envoy of CPU.
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let sent_with = |key: &str| sent.lock().unwrap().iter().filter(|s| s.key == key).count();
    let wait_sent = |key: &str, n: usize| {
        poll(Duration::from_secs(60), Duration::from_millis(20), || {
            (sent_with(key) >= n).then_some(())
        })
        .ok_or_else(|| format!("the client loop sent fewer than {n} requests with key {key}"))
    };

    cases.check("the loop runs with key A", wait_sent("A", 50));
    // 1. Publish B. 2. Sign with B once a worker may fetch again for an unknown kid (the first
    // token naming B makes each worker fetch the JWKS and wait for it).
    idp.publish(&key_b);
    idp.wait_out_refetch_window(JWKS_PATH, 1);
    let fetches_before_b = idp.count(JWKS_PATH);
    *current.lock().unwrap() = ("B", token_b.clone());
    cases.check("the loop runs with key B", wait_sent("B", 100));
    let refetches = idp.count(JWKS_PATH) - fetches_before_b;
    cases.check(
        "the first tokens naming B made the workers fetch the JWKS again",
        if refetches >= 1 {
            Ok(())
        } else {
            Err(format!(
                "the IdP saw no fetch after the switch; log: {:?}",
                idp.paths()
            ))
        },
    );
    // 3. Remove A, whose tokens are no longer used; the filter's scheduled refreshes
    // (refresh_seconds 10) pick the removal up on every worker (and the main thread).
    let removed_at = Instant::now();
    idp.remove("key-a");
    let refreshed = poll(Duration::from_secs(45), Duration::from_millis(50), || {
        let after = idp
            .requests()
            .into_iter()
            .filter(|r| r.path == JWKS_PATH && r.at > removed_at && r.status == Some(200))
            .count();
        (after >= contexts).then_some(after)
    });
    cases.check(
        "after A's removal every context refreshed the JWKS (refresh_seconds 10)",
        refreshed
            .map(drop)
            .ok_or_else(|| format!("the IdP's log: {:?}", idp.paths())),
    );
    let sent_b_before = sent_with("B");
    cases.check(
        "the loop still runs after the refresh",
        wait_sent("B", sent_b_before + 50),
    );
    stop.store(true, Ordering::SeqCst);
    client.join().expect("the client loop");

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    eprintln!(
        "rotation: {} requests ({} with A, {} with B), {refetches} fetch(es) on B's first tokens, IdP log {:?}",
        sent.len(),
        sent.iter().filter(|s| s.key == "A").count(),
        sent.iter().filter(|s| s.key == "B").count(),
        idp.paths()
    );
    let failed: Vec<String> = sent
        .iter()
        .enumerate()
        .filter_map(|(index, s)| match &s.outcome {
            Ok(200) => None,
            Ok(status) => Some(format!("#{index} (key {}): {status}", s.key)),
            Err(err) => Some(format!("#{index} (key {}): {err}", s.key)),
        })
        .collect();
    cases.check(
        &format!(
            "every one of the {} requests during the rotation → 200 ({} with A, {} with B)",
            sent.len(),
            sent.iter().filter(|s| s.key == "A").count(),
            sent.iter().filter(|s| s.key == "B").count()
        ),
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} failed, the first: {:?}",
                failed.len(),
                &failed[..failed.len().min(10)]
            ))
        },
    );

    // A is gone on every worker, B stays: each on several connections, spread over the workers.
    let authorization_a = bearer(&token_a);
    let authorization_b = bearer(&token_b);
    for index in 0..6 {
        let a = raw_http(
            rig.listener,
            "GET",
            "/",
            &[("authorization", &authorization_a)],
        );
        cases.check(
            &format!("after the rotation, a token of the removed key A → 401 (#{index})"),
            a.and_then(|reply| expect_rejected(&reply, "token names an unknown key")),
        );
        let b = raw_http(
            rig.listener,
            "GET",
            "/",
            &[("authorization", &authorization_b)],
        );
        cases.check(
            &format!("after the rotation, a token of key B → 200 (#{index})"),
            b.and_then(|reply| expect_identity(&reply, Some("rotating-user"), None, None)),
        );
    }
    cases.check(
        "both workers took connections",
        match rig.connections_per_worker().as_slice() {
            [a, b] if *a > 0 && *b > 0 => Ok(()),
            other => Err(format!("connections per worker: {other:?}")),
        },
    );
    cases.finish(|| rig.envoy_log_tail(60));
}
