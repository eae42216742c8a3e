//! Per-key usage and rate limits with the real Envoy (two workers), the real keyservice and its
//! database: a key at its limit gets 429 with `Retry-After` and the IETF `RateLimit` fields while
//! another key goes on; the limit holds across workers (shared counters, no lost count); an
//! org's limit covers all its keys; a key's own limits come from keyservice and a change reaches
//! the edge through the feed; usage reaches keyservice as last-used and per-day counts.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use testkit::poll;
use testkit::token::{now, sign};

use crate::support::providers::poll_keygate_stat;
use crate::support::{ADMIN_TOKEN, Cases, Rig, SECRET, default_plugin_config, expect_status};

/// Parallel clients, each on its own connections: Envoy spreads them over its workers.
const CLIENTS: usize = 8;

fn limits_config(rate_limits: Value) -> Value {
    let mut config = default_plugin_config();
    config["rate_limits"] = rate_limits;
    config
}

/// A temporary key (with `exp`): not stored, so only the configured limits apply.
fn temporary_key(user_id: &str, org_id: &str) -> String {
    sign(
        &json!({"user_id": user_id, "org_id": org_id, "iat": now(), "exp": now() + 3600}),
        SECRET,
    )
}

/// Waits until the current window of `per_seconds` has at least `room` seconds left, so a test
/// does not straddle two windows.
fn wait_for_window_room(per_seconds: u64, room: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = per_seconds - now % per_seconds;
    if left < room {
        thread::sleep(Duration::from_secs(left + 1));
    }
}

/// `count` requests with `tokens` (round robin), from parallel clients on their own
/// connections; the replies' statuses and the first 429.
fn burst(rig: &Rig, tokens: &[String], count: usize) -> (Vec<u16>, Option<testkit::http::Reply>) {
    let url = format!("http://{}/", rig.listener);
    let handles: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let url = url.clone();
            let tokens = tokens.to_vec();
            thread::spawn(move || {
                let http = testkit::http::client();
                let mut replies = Vec::new();
                for n in (client..count).step_by(CLIENTS) {
                    let token = &tokens[n % tokens.len()];
                    let reply = http.get(&url).bearer_auth(token).send().unwrap();
                    replies.push(testkit::http::Reply::read(reply));
                }
                replies
            })
        })
        .collect();
    let replies: Vec<testkit::http::Reply> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let statuses = replies.iter().map(|r| r.status).collect();
    let limited = replies.into_iter().find(|r| r.status == 429);
    (statuses, limited)
}

fn count_of(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[test]
fn a_key_at_its_limit_gets_429_with_its_headers_across_workers_and_another_key_goes_on() {
    let config = limits_config(json!({"key": [{"requests": 40, "per_seconds": 86400}]}));
    let rig = Rig::builder().plugin_config(&config).concurrency(2).start();
    wait_for_window_room(86_400, 60);
    let (limited_key, other_key) = (
        temporary_key("user_a", "org_a"),
        temporary_key("user_b", "org_b"),
    );
    let (statuses, limited) = burst(&rig, std::slice::from_ref(&limited_key), 120);
    let mut cases = Cases::new();
    cases.check(
        "exactly the limit is allowed, over two workers (shared counters lose no count)",
        match (count_of(&statuses, 200), count_of(&statuses, 429)) {
            (40, 80) => Ok(()),
            other => Err(format!("(200s, 429s) = {other:?}")),
        },
    );
    let limited = limited.expect("a 429");
    cases.check("429's body is the seed-style text", {
        (limited.body == "Too many requests")
            .then_some(())
            .ok_or(format!("body {:?}", limited.body))
    });
    cases.check(
        "Retry-After, RateLimit-Policy and RateLimit",
        (|| {
            let retry: u64 = limited
                .header("retry-after")?
                .parse()
                .map_err(|_| "Retry-After is not seconds".to_owned())?;
            if !(1..=86_400).contains(&retry) {
                return Err(format!("Retry-After {retry}"));
            }
            let policy = limited.header("ratelimit-policy")?;
            if policy != r#""key-86400s";q=40;w=86400"# {
                return Err(format!("RateLimit-Policy {policy}"));
            }
            let ratelimit = limited.header("ratelimit")?;
            let expected = format!(r#""key-86400s";r=0;t={retry}"#);
            // The two headers are written in one go: the same second, or one apart.
            let close = format!(r#""key-86400s";r=0;t={}"#, retry + 1);
            if ratelimit != expected && ratelimit != close {
                return Err(format!("RateLimit {ratelimit} with Retry-After {retry}"));
            }
            Ok(())
        })(),
    );
    cases.check(
        "another key is unaffected",
        expect_status(&rig.get_with_token(&other_key, &[]), 200),
    );
    cases.check("429s are counted", {
        let denied = rig.keygate_stat("requests_denied_rate_limited");
        let provider = rig.keygate_stat("provider.default.requests_rate_limited");
        (denied == 80 && provider == 80)
            .then_some(())
            .ok_or(format!("denied {denied}, provider {provider}"))
    });
    cases.check("the provider's allowed requests are counted", {
        let allowed = rig.keygate_stat("provider.default.requests_allowed");
        (allowed == 41).then_some(()).ok_or(format!("{allowed}"))
    });
    cases.finish(|| rig.envoy_log_tail(40));
}

#[test]
fn a_limit_per_org_covers_all_its_keys() {
    let config =
        limits_config(json!({"claims": {"org_id": [{"requests": 30, "per_seconds": 86400}]}}));
    let rig = Rig::builder().plugin_config(&config).concurrency(2).start();
    wait_for_window_room(86_400, 60);
    let org_keys: Vec<String> = (0..3)
        .map(|n| temporary_key(&format!("user_{n}"), "org_shared"))
        .collect();
    let (statuses, limited) = burst(&rig, &org_keys, 90);
    let mut cases = Cases::new();
    cases.check(
        "three keys of one org share its 30",
        match count_of(&statuses, 200) {
            30 => Ok(()),
            other => Err(format!("{other} allowed")),
        },
    );
    cases.check(
        "the policy named is the org's",
        limited
            .ok_or("no 429".to_owned())
            .and_then(|r| r.header("ratelimit-policy").map(str::to_owned))
            .and_then(|p| {
                (p == r#""org_id-86400s";q=30;w=86400"#)
                    .then_some(())
                    .ok_or(p)
            }),
    );
    cases.check(
        "another org's key is unaffected",
        expect_status(
            &rig.get_with_token(&temporary_key("user_x", "org_other"), &[]),
            200,
        ),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// keyservice's admin API, for what `support::Keyservice` does not wrap.
fn admin(rig: &Rig, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = testkit::http::client();
    let mut request = client
        .request(method, rig.keyservice.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn a_keys_own_limit_comes_from_keyservice_changes_through_the_feed_and_usage_is_recorded() {
    let mut config = default_plugin_config();
    config["revocation"]["feed"] = json!({"wait_seconds": 2, "stale_after_seconds": 5});
    config["usage"] = json!({"report_every_seconds": 1});
    config["rate_limits"] = json!({"key": [{"requests": 1000, "per_seconds": 86400}]});
    let rig = Rig::builder().plugin_config(&config).concurrency(2).start();
    wait_for_window_room(86_400, 120);
    let mut cases = Cases::new();
    cases.check(
        "the feed is followed",
        poll_keygate_stat(&rig, "feed_polls_ok", 1, Duration::from_secs(15)).map(|_| ()),
    );
    let (status, issued) = admin(
        &rig,
        reqwest::Method::POST,
        "/v1/keys",
        Some(
            json!({"user_id": "user_limits", "org_id": "org_limits", "name": "limited",
                    "rate_limits": [{"requests": 5, "per_seconds": 86400}]}),
        ),
    );
    assert_eq!(status, 201, "{issued}");
    let (id, key) = (
        issued["id"].as_str().unwrap().to_owned(),
        issued["key"].as_str().unwrap().to_owned(),
    );
    let (statuses, limited) = burst(&rig, std::slice::from_ref(&key), 12);
    cases.check(
        "the key's own 5 a day, from keyservice's answer, not the provider's 1000",
        match (count_of(&statuses, 200), count_of(&statuses, 429)) {
            (5, 7) => Ok(()),
            other => Err(format!("(200s, 429s) = {other:?}")),
        },
    );
    cases.check(
        "its policy says so",
        limited
            .ok_or("no 429".to_owned())
            .and_then(|r| r.header("ratelimit-policy").map(str::to_owned))
            .and_then(|p| (p == r#""key-86400s";q=5;w=86400"#).then_some(()).ok_or(p)),
    );
    let (status, body) = admin(
        &rig,
        reqwest::Method::PATCH,
        &format!("/v1/keys/{id}"),
        Some(json!({"rate_limits": [{"requests": 8, "per_seconds": 86400}]})),
    );
    cases.check(
        "keyservice takes the new limit",
        (status == 200)
            .then_some(())
            .ok_or(format!("{status} {body}")),
    );
    cases.check(
        "the change reaches the edge through the feed: 3 more are allowed",
        poll(Duration::from_secs(15), Duration::from_millis(200), || {
            (rig.get_with_token(&key, &[]).status == 200).then_some(())
        })
        .ok_or_else(|| "still refused after the change".to_owned()),
    );
    let (statuses, _) = burst(&rig, std::slice::from_ref(&key), 6);
    cases.check(
        "then the new limit holds",
        match count_of(&statuses, 200) {
            2 => Ok(()),
            other => Err(format!("{other} more allowed (8 in all expected)")),
        },
    );
    cases.check(
        "usage reaches keyservice: 8 allowed, the rest rate-limited, and last used",
        poll(Duration::from_secs(20), Duration::from_millis(250), || {
            let (status, usage) = admin(
                &rig,
                reqwest::Method::GET,
                &format!("/v1/keys/{id}/usage"),
                None,
            );
            (status == 200
                && usage["totals"]["allowed"] == 8
                && usage["totals"]["rate_limited"].as_u64().unwrap_or(0) >= 11
                && usage["last_used_at"].is_string())
            .then_some(())
        })
        .ok_or_else(|| {
            let (_, usage) = admin(
                &rig,
                reqwest::Method::GET,
                &format!("/v1/keys/{id}/usage"),
                None,
            );
            format!("usage {usage}")
        }),
    );
    cases.check("the listing shows when the key was last used", {
        let (_, list) = admin(
            &rig,
            reqwest::Method::GET,
            "/v1/keys?user_id=user_limits",
            None,
        );
        let item = list["keys"]
            .as_array()
            .and_then(|items| items.iter().find(|k| k["id"] == id.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        item["last_used_at"]
            .is_string()
            .then_some(())
            .ok_or(format!("{list}"))
    });
    cases.check(
        "reports went out and were taken",
        poll_keygate_stat(&rig, "usage_reports_ok", 1, Duration::from_secs(5)).map(|_| ()),
    );
    cases.finish(|| rig.envoy_log_tail(60));
}
