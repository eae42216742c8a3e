//! Envoy picks the route after keygate, with keygate's headers: routes can match the verified
//! `x-user-id` and `x-org-id`, and a client's own copies of them never select a route.
//!
//! Envoy clears its route cache whenever a filter of proxy-wasm ABI 0.2.1 (every filter made
//! with the Rust SDK 0.2) changes the request headers, so the router matches the routes again
//! on the headers keygate leaves. Each route here tags the request (`x-route`) for the echo
//! upstream, so the reply tells which route was taken.

use serde_json::{Value, json};
use testkit::http::Reply;
use testkit::token::{now, sign};

use crate::support::{
    Cases, Rig, SECRET, default_plugin_config, expect_echoed, expect_invalid_token, expect_status,
};

/// A route to the echo upstream that tags the request with `x-route: <tag>` (replacing any
/// the client sent).
fn tagged_route(tag: &str, headers: Value) -> Value {
    json!({
        "match": {"prefix": "/", "headers": headers},
        "route": {"cluster": "echo"},
        "request_headers_to_add": [{
            "header": {"key": "x-route", "value": tag},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
        }]
    })
}

fn routes() -> Value {
    json!([
        tagged_route(
            "acme",
            json!([{"name": "x-org-id", "string_match": {"exact": "acme"}}])
        ),
        tagged_route(
            "signed-in",
            json!([{"name": "x-user-id", "present_match": true}])
        ),
        tagged_route("anonymous", json!([])),
    ])
}

fn expect_route(reply: &Reply, tag: &str) -> Result<(), String> {
    expect_status(reply, 200)?;
    expect_echoed(reply, "x-route", Some(tag))
}

#[test]
fn routes_match_the_verified_identity_and_never_a_forged_one() {
    let mut config = default_plugin_config();
    config["rules"] = json!([
        {"match": {"prefix": "/open/"}, "action": "allow"},
        {"match": {"prefix": "/"}, "action": "authenticate"}
    ]);
    let rig = Rig::builder()
        .plugin_config(&config)
        .routes(routes())
        .start();
    let mut cases = Cases::new();
    let forged = [("x-user-id", "mallory"), ("x-org-id", "acme")];

    let alice = sign(
        &json!({"user_id": "alice", "org_id": "acme", "exp": now() + 600}),
        SECRET,
    );
    let reply = rig.get_with_token(&alice, &[]);
    cases.check(
        "a token with org_id acme takes the route that matches x-org-id: acme",
        expect_route(&reply, "acme").and_then(|()| expect_echoed(&reply, "x-org-id", Some("acme"))),
    );

    let bob = sign(&json!({"user_id": "bob", "exp": now() + 600}), SECRET);
    cases.check(
        "a token without org_id takes the route for any signed-in user",
        expect_route(&rig.get_with_token(&bob, &[]), "signed-in"),
    );

    let reply = rig.get_with_token(&bob, &forged);
    cases.check(
        "the same token with a forged x-org-id: acme does not take acme's route",
        expect_route(&reply, "signed-in")
            .and_then(|()| expect_echoed(&reply, "x-user-id", Some("bob")))
            .and_then(|()| expect_echoed(&reply, "x-org-id", None)),
    );

    let reply = rig.get("/open/page", &forged);
    cases.check(
        "an open route (no token) with forged identity headers takes the anonymous route",
        expect_route(&reply, "anonymous")
            .and_then(|()| expect_echoed(&reply, "x-user-id", None))
            .and_then(|()| expect_echoed(&reply, "x-org-id", None)),
    );

    let forged_token = sign(
        &json!({"user_id": "mallory", "org_id": "acme"}),
        "not-the-secret",
    );
    cases.check(
        "a token signed with another secret is refused before any route is taken",
        expect_invalid_token(&rig.get_with_token(&forged_token, &forged)),
    );

    cases.finish(|| rig.envoy_log_tail(40));
}
