//! keygate's Envoy stats. The filter defines `keygate.<name>`; Envoy shows them on `/stats` as
//! `wasmcustom.keygate.<name>` and on `/stats/prometheus` as `keygate_<name>` (dots made
//! underscores). After a known sequence of requests every counter has exactly the expected
//! value, and the callout latency histogram has one sample per callout.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use testkit::fault::{Fault, FaultServer};
use testkit::http::Reply;
use testkit::token::{now, sign};

use crate::support::{
    Cases, Rig, SECRET, comfyui_deploy_key, default_plugin_config, expect_allowed,
    expect_invalid_token, expect_missing_credential, expect_revoked, expect_status,
    expect_unavailable,
};

/// Every counter the filter defines, by its short name.
const COUNTERS: [&str; 20] = [
    "requests_allowed",
    "requests_allowed_on_failure",
    "requests_denied_missing",
    "requests_denied_malformed",
    "requests_denied_bad_signature",
    "requests_denied_expired",
    "requests_denied_revoked",
    "requests_denied_unknown_key",
    "requests_denied_forbidden_scope",
    "requests_denied_forbidden_rule",
    "requests_denied_bad_path",
    "requests_denied_unavailable",
    "revocation_cache_hits",
    "revocation_cache_misses",
    "revocation_cache_evictions",
    "token_cache_hits",
    "token_cache_misses",
    "callouts_ok",
    "callouts_error",
    "callouts_timeout",
];

/// Checks every documented keygate counter against `expected` (absent there: 0), on `/stats`
/// and on `/stats/prometheus`, and that no other keygate counter moved.
fn check_counters(rig: &Rig, cases: &mut Cases, expected: &BTreeMap<&str, u64>) {
    let counters = rig.keygate_counters();
    for name in COUNTERS {
        let want = expected.get(name).copied().unwrap_or_default();
        cases.check(
            &format!("wasmcustom.keygate.{name} = {want}"),
            match counters.get(name) {
                Some(value) if *value == want => Ok(()),
                other => Err(format!("/stats shows {other:?}")),
            },
        );
        let prometheus = format!("keygate_{name}");
        cases.check(
            &format!("{prometheus} = {want}"),
            match rig.prometheus_value(&prometheus) {
                Some(value) if value == want => Ok(()),
                other => Err(format!("/stats/prometheus shows {other:?}")),
            },
        );
    }
    // Counters added since (other deny reasons, other features) saw nothing of this sequence.
    let others: Vec<(&String, &u64)> = counters
        .iter()
        // `counts_flushed` counts ticks, not requests.
        .filter(|(name, value)| {
            !COUNTERS.contains(&name.as_str()) && name.as_str() != "counts_flushed" && **value != 0
        })
        .collect();
    cases.check(
        "every other keygate counter is 0",
        if others.is_empty() {
            Ok(())
        } else {
            Err(format!("{others:?}"))
        },
    );
}

#[test]
fn counters_follow_a_known_sequence() {
    let rig = Rig::start();
    let mut cases = Cases::new();
    let mut check = |what: &str, reply: Reply, expect: fn(&Reply) -> Result<(), String>| {
        cases.check(what, expect(&reply));
    };
    let claims = |exp: i64| json!({"user_id": "alice", "exp": now() as i64 + exp});

    // Decided in the filter alone; the same token twice (verified, then from the token cache).
    let token = sign(&claims(600), SECRET);
    for n in 0..2 {
        check(
            &format!("allowed with exp ({n})"),
            rig.get_with_token(&token, &[]),
            |r| expect_allowed(r, Some("alice"), None),
        );
    }
    check("missing", rig.get("/", &[]), expect_missing_credential);
    check(
        "other scheme counts as missing",
        rig.get("/", &[("authorization", "Basic dTpw")]),
        expect_missing_credential,
    );
    check(
        "malformed",
        rig.get_with_token("not-a-jwt", &[]),
        expect_invalid_token,
    );
    check(
        "bad signature",
        rig.get_with_token(
            &sign(&claims(600), "another-secret-0123456789abcdef0123"),
            &[],
        ),
        expect_invalid_token,
    );
    check(
        "expired",
        rig.get_with_token(&sign(&claims(-3600), SECRET), &[]),
        expect_invalid_token,
    );

    // Through keyservice: an active key three times (1 miss, 2 hits).
    let active = rig.keyservice.issue("bob", None, None);
    for n in 0..3 {
        check(
            &format!("active non-expiring key ({n})"),
            rig.get_with_token(&active.key, &[]),
            |r| expect_allowed(r, Some("bob"), None),
        );
    }
    // A revoked key twice (1 miss, then its 410 is cached: 1 hit).
    let revoked = rig.keyservice.issue("carol", None, None);
    rig.keyservice.revoke(&revoked.id);
    for n in 0..2 {
        check(
            &format!("revoked key ({n})"),
            rig.get_with_token(&revoked.key, &[]),
            expect_revoked,
        );
    }
    // A key keyservice does not know, twice (404 is never cached: 2 misses).
    let unknown = comfyui_deploy_key("dave", "acme", SECRET);
    for n in 0..2 {
        check(
            &format!("unknown key ({n})"),
            rig.get_with_token(&unknown, &[]),
            expect_revoked,
        );
    }

    let expected = BTreeMap::from([
        ("requests_allowed", 5),
        ("requests_denied_missing", 2),
        ("requests_denied_malformed", 1),
        ("requests_denied_bad_signature", 1),
        ("requests_denied_expired", 1),
        ("requests_denied_revoked", 2),
        ("requests_denied_unknown_key", 2),
        ("revocation_cache_hits", 3),
        ("revocation_cache_misses", 4),
        // Every token that got as far as verification: the second of each repeated token is a
        // hit; the refused ones are never cached.
        ("token_cache_hits", 5),
        ("token_cache_misses", 7),
        ("callouts_ok", 4),
    ]);
    check_counters(&rig, &mut cases, &expected);
    cases.check(
        "cluster.keyservice.upstream_rq_total = 4",
        match rig.callouts() {
            4 => Ok(()),
            other => Err(format!("{other}")),
        },
    );
    // Histograms reach the admin at the next stats flush: wait for all four samples.
    cases.check(
        "histogram keygate_callout_latency_ms: one sample per callout",
        rig.wait_for_histogram_count("keygate_callout_latency_ms", 4, Duration::from_secs(15))
            .and_then(|count| {
                if count == 4 {
                    Ok(())
                } else {
                    Err(format!("{count} samples"))
                }
            }),
    );
    cases.check(
        "histogram on /stats: wasmcustom.keygate.callout_latency_ms",
        rig.histogram_names().and_then(|names| {
            if names
                .iter()
                .any(|n| n == "wasmcustom.keygate.callout_latency_ms")
            {
                Ok(())
            } else {
                Err(format!("histograms on /stats: {names:?}"))
            }
        }),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// The failure counters, with a stand-in revocation service: a 500 is `callouts_error`, a
/// refused request `requests_denied_unavailable`.
#[test]
fn failed_callouts_are_counted() {
    let mut config = default_plugin_config();
    config["revocation"]["timeout_ms"] = json!(200);
    let fault = FaultServer::start(Fault::Status(500));
    let rig = Rig::builder()
        .plugin_config(&config)
        .revocation_at(fault.addr)
        .start();
    let mut cases = Cases::new();
    for n in 0..2 {
        let reply = rig.get_with_token(&comfyui_deploy_key(&format!("u{n}"), "o", SECRET), &[]);
        cases.check(&format!("500 ({n}): 503"), expect_unavailable(&reply));
    }
    let expected = BTreeMap::from([
        ("requests_denied_unavailable", 2),
        ("revocation_cache_misses", 2),
        ("token_cache_misses", 2),
        ("callouts_error", 2),
    ]);
    check_counters(&rig, &mut cases, &expected);
    cases.finish(|| rig.envoy_log_tail(40));
}

/// A callout past `timeout_ms` should count in `keygate.callouts_timeout`. It does not: Envoy
/// ends a timed-out callout with its own local `504` response, which the filter reads as an
/// answer from keyservice and counts in `callouts_error` (logging "revocation service answered
/// 504"). Likewise a refused connection arrives as Envoy's `503`.
#[test]
fn a_callout_timeout_counts_as_a_timeout() {
    let mut config = default_plugin_config();
    config["revocation"]["timeout_ms"] = json!(200);
    let fault = FaultServer::start(Fault::SlowOk(Duration::from_secs(2)));
    let rig = Rig::builder()
        .plugin_config(&config)
        .revocation_at(fault.addr)
        .start();
    let mut cases = Cases::new();
    let reply = rig.get_with_token(&comfyui_deploy_key("u-slow", "o", SECRET), &[]);
    cases.check("timeout: 503", expect_status(&reply, 503));
    let expected = BTreeMap::from([
        ("requests_denied_unavailable", 1),
        ("revocation_cache_misses", 1),
        ("token_cache_misses", 1),
        ("callouts_timeout", 1),
    ]);
    check_counters(&rig, &mut cases, &expected);
    cases.finish(|| rig.envoy_log_tail(40));
}
