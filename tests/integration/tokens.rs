//! Tokens through Envoy with the documented configuration: which are let through (and with which
//! claim headers), and how the others are refused.

use jsonwebtoken::Algorithm;
use serde_json::json;
use testkit::token::{b64url, now, sign, sign_alg};

use crate::support::{
    Cases, Rig, SECRET, expect_allowed, expect_invalid_token, expect_missing_credential,
};

#[test]
fn expiring_key_is_allowed_without_callout_and_its_claims_become_headers() {
    let rig = Rig::start();
    let issued = rig.keyservice.issue("user-42", Some("org-7"), Some(3600));
    let before = rig.callouts();
    let mut cases = Cases::new();

    let reply = rig.get_with_token(&issued.key, &[]);
    cases.check(
        "key issued by keyservice with expires_in_seconds",
        expect_allowed(&reply, Some("user-42"), Some("org-7")),
    );
    cases.check(
        "request path and Authorization reach the upstream unchanged",
        reply.echo().and_then(|echo| {
            let expected = json!({"path": "/", "authorization": format!("Bearer {}", issued.key)});
            let seen =
                json!({"path": echo["path"], "authorization": echo["headers"]["authorization"]});
            if seen == expected {
                Ok(())
            } else {
                Err(format!("upstream saw {seen}, expected {expected}"))
            }
        }),
    );

    let lowercase = format!("bearer {}", issued.key);
    cases.check(
        "scheme is case-insensitive (bearer)",
        expect_allowed(
            &rig.get("/", &[("authorization", &lowercase)]),
            Some("user-42"),
            Some("org-7"),
        ),
    );

    let local = sign(&json!({"user_id": "u-hs256", "exp": now() + 600}), SECRET);
    cases.check(
        "HS256 token with exp and no org_id: no x-org-id",
        expect_allowed(&rig.get_with_token(&local, &[]), Some("u-hs256"), None),
    );
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign_alg(
            alg,
            &json!({"user_id": "u-alg", "exp": now() + 600}),
            SECRET,
        );
        cases.check(
            &format!("{alg:?} token with exp"),
            expect_allowed(&rig.get_with_token(&token, &[]), Some("u-alg"), None),
        );
    }
    let skewed = sign(&json!({"user_id": "u-skew", "exp": now() - 20}), SECRET);
    cases.check(
        "expired 20s ago, within clock_skew_seconds=60",
        expect_allowed(&rig.get_with_token(&skewed, &[]), Some("u-skew"), None),
    );

    let after = rig.callouts();
    cases.check(
        "tokens with exp cost no revocation callout",
        if after == before {
            Ok(())
        } else {
            Err(format!(
                "{} callouts (upstream_rq_total {before} -> {after})",
                after - before
            ))
        },
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

#[test]
fn bad_or_missing_credentials_are_refused_with_401() {
    let rig = Rig::start();
    let mut cases = Cases::new();
    let good_claims = json!({"user_id": "user-1", "org_id": "org-1", "exp": now() + 600});
    let good = sign(&good_claims, SECRET);
    let (signing_input, signature) = good.rsplit_once('.').expect("a JWT has dots");

    // The reference: the same token is fine untouched.
    cases.check(
        "control: the untampered token",
        expect_allowed(
            &rig.get_with_token(&good, &[]),
            Some("user-1"),
            Some("org-1"),
        ),
    );

    // A credential was presented, but it is not a valid token.
    let mut invalid: Vec<(&str, String)> = Vec::new();
    invalid.push((
        "expired (an hour ago, past the 60s skew)",
        sign(&json!({"user_id": "user-1", "exp": now() - 3600}), SECRET),
    ));
    let flipped = {
        let mut chars: Vec<char> = signature.chars().collect();
        chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    invalid.push(("bad signature", format!("{signing_input}.{flipped}")));
    invalid.push((
        "signed with another secret",
        sign(&good_claims, "some-other-secret"),
    ));
    let none_header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let none_payload = b64url(good_claims.to_string().as_bytes());
    invalid.push(("alg none", format!("{none_header}.{none_payload}.")));
    invalid.push((
        "alg none with the real signature",
        format!("{none_header}.{none_payload}.{signature}"),
    ));
    invalid.push((
        "truncated (signature cut short)",
        good[..good.len() - 12].to_owned(),
    ));
    invalid.push((
        "truncated (header and payload only)",
        signing_input.to_owned(),
    ));
    invalid.push(("garbage", "not-a-jwt".to_owned()));
    invalid.push(("garbage with dots", "a.b.c".to_owned()));
    invalid.push((
        "oversized (validly signed, over max_token_bytes=8192)",
        sign(
            &json!({"user_id": "user-1", "exp": now() + 600, "pad": "x".repeat(9000)}),
            SECRET,
        ),
    ));
    for (case, token) in &invalid {
        cases.check(case, expect_invalid_token(&rig.get_with_token(token, &[])));
    }
    // "Bearer " with nothing after it: either "no credential" or "invalid token" is defensible.
    let empty = rig.get("/", &[("authorization", "Bearer ")]);
    cases.check(
        "empty bearer token",
        expect_invalid_token(&empty).or_else(|invalid| {
            expect_missing_credential(&empty).map_err(|missing| format!("{invalid}; {missing}"))
        }),
    );

    // No credential of ours at all.
    cases.check(
        "missing Authorization header",
        expect_missing_credential(&rig.get("/", &[])),
    );
    cases.check(
        "Basic scheme",
        expect_missing_credential(&rig.get("/", &[("authorization", "Basic dXNlcjpwYXNz")])),
    );
    cases.check(
        "token without a scheme",
        expect_missing_credential(&rig.get("/", &[("authorization", &good)])),
    );

    cases.finish(|| rig.envoy_log_tail(60));
}
