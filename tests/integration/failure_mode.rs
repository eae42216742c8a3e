//! When the revocation check cannot be answered (keyservice answers 500, is slower than
//! `timeout_ms`, or is down), `failure_mode` decides: deny → 503, allow → the request goes on.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::fault::{Fault, FaultServer};
use testkit::http::Reply;
use testkit::token::sha256_hex;

use crate::support::{
    Cases, Rig, SECRET, comfyui_deploy_key, expect_allowed, expect_unavailable,
    uncached_plugin_config,
};

const TIMEOUT_MS: u64 = 200;
/// How long the slow fault server takes: well past TIMEOUT_MS, and bounded.
const SLOW: Duration = Duration::from_millis(2000);

/// Runs the three failures against one Envoy whose `keyservice` cluster is the fault server:
/// answering 500, then slower than the timeout, then down (the port closed).
fn run_failures(failure_mode: &str, expect: fn(&Reply, &str) -> Result<(), String>) {
    // The revocation cache off: this is about the callout alone (`revocation_cache`
    // shows that failures are never cached).
    let mut config = uncached_plugin_config();
    config["revocation"]["timeout_ms"] = json!(TIMEOUT_MS);
    config["revocation"]["failure_mode"] = json!(failure_mode);
    let mut fault = FaultServer::start(Fault::Status(500));
    let rig = Rig::builder()
        .plugin_config(&config)
        .revocation_at(fault.addr)
        .start();
    let mut cases = Cases::new();

    // Each case its own key, so that nothing one case leaves behind can answer another.
    let token = comfyui_deploy_key("u-500", "o-500", SECRET);
    let reply = rig.get_with_token(&token, &[]);
    cases.check(
        &format!("keyservice answers 500, failure_mode={failure_mode}"),
        expect(&reply, "u-500"),
    );
    let expected_request = format!("GET /v1/revocations/{} host=keyservice", sha256_hex(&token));
    cases.check(
        "the callout is GET <path_prefix><sha256 hex of the token> to authority keyservice",
        match fault.requests().as_slice() {
            [request] if *request == expected_request => Ok(()),
            requests => Err(format!(
                "fault server saw {requests:?}, expected [{expected_request:?}]"
            )),
        },
    );

    fault.set(Fault::SlowOk(SLOW));
    let token = comfyui_deploy_key("u-slow", "o-slow", SECRET);
    let started = Instant::now();
    let reply = rig.get_with_token(&token, &[]);
    let elapsed = started.elapsed();
    cases.check(
        &format!("keyservice slower than timeout_ms={TIMEOUT_MS}, failure_mode={failure_mode}"),
        expect(&reply, "u-slow"),
    );
    cases.check(
        "the slow callout was cut at the timeout, not waited for",
        if elapsed < SLOW - Duration::from_millis(500) {
            Ok(())
        } else {
            Err(format!(
                "the request took {elapsed:?}; the fault server answers after {SLOW:?}"
            ))
        },
    );

    fault.close();
    let token = comfyui_deploy_key("u-down", "o-down", SECRET);
    cases.check(
        &format!("keyservice down (port closed), failure_mode={failure_mode}"),
        expect(&rig.get_with_token(&token, &[]), "u-down"),
    );

    // The stats: each failure counted once, by what the filter did. Envoy hands the filter its
    // own 504 for a callout that timed out (counted as a timeout) and its 503 for a refused
    // connection (counted as an error, like keyservice's 500).
    let counters = rig.keygate_counters();
    let (denied, allowed) = if failure_mode == "deny" {
        (3, 0)
    } else {
        (0, 3)
    };
    for (name, expected) in [
        ("requests_denied_unavailable", denied),
        // `failure_mode: allow` counts a request let through in both.
        ("requests_allowed", allowed),
        ("requests_allowed_on_failure", allowed),
        ("callouts_ok", 0),
        ("callouts_error", 2),
        ("callouts_timeout", 1),
    ] {
        cases.check(
            &format!("stats: keygate.{name} is {expected}"),
            match counters.get(name) {
                Some(value) if *value == expected => Ok(()),
                other => Err(format!("{name} is {other:?}; all counters: {counters:?}")),
            },
        );
    }
    cases.finish(|| rig.envoy_log_tail(60));
}

#[test]
fn revocation_failures_are_503_with_failure_mode_deny() {
    run_failures("deny", |reply, _user| expect_unavailable(reply));
}

#[test]
fn revocation_failures_let_requests_through_with_failure_mode_allow() {
    run_failures("allow", |reply, user| {
        let org = user.replacen("u-", "o-", 1);
        expect_allowed(reply, Some(user), Some(&org))
    });
}
