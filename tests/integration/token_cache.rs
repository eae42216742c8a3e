//! The verified-token cache (`token_cache`, on by default): a repeated token skips verification,
//! but only tokens that passed it are cached, an entry ends at the token's `exp`, and the
//! revocation check still runs for keys without `exp`.

use std::time::Duration;

use serde_json::json;
use testkit::poll;
use testkit::token::{now, sign};

use crate::support::{
    Cases, Rig, SECRET, expect_allowed, expect_invalid_token, expect_revoked,
    uncached_plugin_config,
};

const OTHER_SECRET: &str = "another-secret-0123456789abcdef0123";

#[test]
fn only_verified_tokens_are_cached_and_never_past_exp() {
    let mut config = uncached_plugin_config();
    config["token_cache"] = json!({"max_entries": 4, "ttl_seconds": 60});
    // No leeway: a cached token must stop at its exact exp.
    config["clock_skew_seconds"] = json!(0);
    let rig = Rig::builder().plugin_config(&config).start();
    let mut cases = Cases::new();
    let counter = |name: &str| rig.keygate_stat(name);

    // A token that expires in 2 s: allowed (and cached), then refused once exp passes.
    let soon = sign(&json!({"user_id": "sam", "exp": now() + 2}), SECRET);
    cases.check(
        "a token expiring in 2 s: allowed",
        expect_allowed(&rig.get_with_token(&soon, &[]), Some("sam"), None),
    );
    let refused = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let reply = rig.get_with_token(&soon, &[]);
        (reply.status != 200).then_some(reply)
    });
    cases.check(
        "the cached token is refused once its exp has passed",
        match &refused {
            Some(reply) => expect_invalid_token(reply),
            None => Err("still allowed 10 s after a 2 s exp".to_owned()),
        },
    );
    cases.check(
        "and stays refused",
        expect_invalid_token(&rig.get_with_token(&soon, &[])),
    );

    // Repeated valid tokens, more than max_entries of them: each keeps its own identity.
    let users: Vec<(String, String)> = (0..6)
        .map(|n| {
            let user = format!("user-{n}");
            let token = sign(&json!({"user_id": user, "exp": now() + 600}), SECRET);
            (user, token)
        })
        .collect();
    for round in 0..3 {
        for (user, token) in &users {
            cases.check(
                &format!("round {round}: {user}'s token allowed as {user}"),
                expect_allowed(&rig.get_with_token(token, &[]), Some(user), None),
            );
        }
    }

    // Never cached as good: an expired token, a token signed with another secret (with the
    // same claims as a cached good one), a tampered payload, a token not valid yet.
    let (user, good) = &users[0];
    let expired = sign(&json!({"user_id": user, "exp": now() - 3600}), SECRET);
    let forged = sign(&json!({"user_id": user, "exp": now() + 600}), OTHER_SECRET);
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = testkit::token::b64url(
            json!({"user_id": "mallory", "exp": now() + 600})
                .to_string()
                .as_bytes(),
        );
        parts.join(".")
    };
    let not_yet = sign(
        &json!({"user_id": user, "nbf": now() + 300, "exp": now() + 600}),
        SECRET,
    );
    let bad_signature_before = counter("requests_denied_bad_signature");
    let expired_before = counter("requests_denied_expired");
    for round in 0..3 {
        cases.check(
            &format!("round {round}: the good token is allowed"),
            expect_allowed(&rig.get_with_token(good, &[]), Some(user), None),
        );
        for (what, token) in [
            ("expired", &expired),
            ("signed with another secret", &forged),
            ("tampered payload", &tampered),
            ("not valid yet", &not_yet),
        ] {
            cases.check(
                &format!("round {round}: {what}: 401 invalid_token"),
                expect_invalid_token(&rig.get_with_token(token, &[])),
            );
        }
    }
    cases.check(
        "each refusal was a fresh verification: 6 bad signatures, 6 expired/not yet valid",
        match (
            counter("requests_denied_bad_signature") - bad_signature_before,
            counter("requests_denied_expired") - expired_before,
        ) {
            (6, 6) => Ok(()),
            other => Err(format!("(bad_signature, expired) deltas {other:?}")),
        },
    );

    // A key without exp: verified from the cache, still checked with keyservice every time.
    let issued = rig.keyservice.issue("kim", Some("acme"), None);
    for n in 0..2 {
        cases.check(
            &format!("non-expiring key ({n}): allowed"),
            expect_allowed(
                &rig.get_with_token(&issued.key, &[]),
                Some("kim"),
                Some("acme"),
            ),
        );
    }
    rig.keyservice.revoke(&issued.id);
    cases.check(
        "the same key once revoked: 401 Revoked token despite the cached verification",
        expect_revoked(&rig.get_with_token(&issued.key, &[])),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}
