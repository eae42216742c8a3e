//! Differential tests of the identity an upstream receives, through the shipped envoy/envoy.yaml:
//! the identity headers carry the verified claims byte for byte or the token is refused, and no
//! spelling of an identity header sent by a client reaches the upstream as one, not even one a
//! CGI/WSGI-style upstream would read as it (`x_user_id` is `HTTP_X_USER_ID`, as `x-user-id` is).

use serde_json::{Value, json};
use testkit::bootstrap_edit::{edit_plugin_config, shipped_bootstrap};
use testkit::http::Reply;
use testkit::token::{now, sign};

use crate::support::{Cases, Rig, SECRET, expect_invalid_token, expect_status};

/// The identity headers of the shipped configuration, and `x-roles` for an array claim.
const OWNED: [&str; 4] = ["x-user-id", "x-org-id", "x-jwt-payload", "x-roles"];

fn shipped() -> Value {
    let mut bootstrap = shipped_bootstrap("envoy/envoy.yaml");
    edit_plugin_config(&mut bootstrap, |plugin| {
        plugin["claims_to_headers"]["roles"] = json!("x-roles");
    });
    bootstrap
}

fn token(claims: Value) -> String {
    let mut claims = claims;
    claims["exp"] = json!(now() + 600);
    format!("Bearer {}", sign(&claims, SECRET))
}

/// How a CGI/WSGI upstream names a header: case and `-`/`_` do not matter.
fn cgi_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Every header the upstream received that it could read as an owned one, with its value.
fn owned_as_received(reply: &Reply) -> Result<Vec<(String, String)>, String> {
    let echo = reply.echo()?;
    let headers = echo["headers"]
        .as_object()
        .ok_or("no headers in the echo")?;
    Ok(headers
        .iter()
        .filter(|(name, _)| OWNED.contains(&cgi_name(name).as_str()))
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect())
}

/// The upstream received exactly `expected` (name, value) for the owned headers, under no
/// other spelling.
fn expect_identity(reply: &Reply, expected: &[(&str, &str)]) -> Result<(), String> {
    expect_status(reply, 200)?;
    let mut received = owned_as_received(reply)?;
    received.retain(|(name, _)| name != "x-jwt-payload");
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    received.sort();
    expected.sort();
    if received == expected {
        Ok(())
    } else {
        Err(format!(
            "the upstream received {received:?}, expected {expected:?}"
        ))
    }
}

#[test]
fn claim_values_reach_the_upstream_byte_for_byte_or_the_token_is_refused() {
    let rig = Rig::builder().bootstrap(shipped()).start();
    let mut cases = Cases::new();
    // Carried exactly: the upstream sees the claim as it is.
    for user_id in [
        "bob",
        "Ada Lovelace",
        "jos\u{e9}",
        "\u{4e16}\u{754c}",
        "a,b",
        "a;b=c\"d",
        "\u{a0}bob",
        "user_2abcDEF",
    ] {
        let reply = rig.raw_request(
            "GET",
            "/",
            &[(
                "authorization",
                &token(json!({"user_id": user_id, "org_id": "org_1"})),
            )],
        );
        cases.check(
            &format!("user_id {user_id:?} is forwarded as it is"),
            expect_identity(&reply, &[("x-user-id", user_id), ("x-org-id", "org_1")]),
        );
    }
    // Not carried exactly by a header: the token is invalid.
    for user_id in [
        " bob",
        "bob ",
        "\tbob",
        "bob\t",
        "   ",
        "",
        "ali\tce",
        "bob\u{85}",
        "bob\u{7f}",
        "a\r\nb",
    ] {
        let reply = rig.raw_request(
            "GET",
            "/",
            &[("authorization", &token(json!({"user_id": user_id})))],
        );
        cases.check(
            &format!("user_id {user_id:?} makes the token invalid"),
            expect_invalid_token(&reply),
        );
    }
    let reply = rig.raw_request(
        "GET",
        "/",
        &[(
            "authorization",
            &token(json!({"user_id": "bob", "org_id": "org_1 "})),
        )],
    );
    cases.check(
        "org_id \"org_1 \" makes the token invalid",
        expect_invalid_token(&reply),
    );
    // Arrays: joined with ',', so an element must not hold one.
    let arrays: [(Value, Option<&str>); 5] = [
        (json!(["admin", "billing"]), Some("admin,billing")),
        (json!(["admin", 7, true]), Some("admin,7,true")),
        (json!([]), None),
        (json!(["admin,billing"]), Some("refused")),
        (json!(["admin", " billing"]), Some("refused")),
    ];
    for (roles, expected) in arrays {
        let reply = rig.raw_request(
            "GET",
            "/",
            &[(
                "authorization",
                &token(json!({"user_id": "bob", "roles": roles})),
            )],
        );
        let outcome = match expected {
            Some("refused") => expect_invalid_token(&reply),
            Some(joined) => expect_identity(&reply, &[("x-user-id", "bob"), ("x-roles", joined)]),
            None => expect_identity(&reply, &[("x-user-id", "bob")]),
        };
        cases.check(&format!("roles {roles}"), outcome);
    }
    cases.finish(|| rig.envoy_log_tail(40));
}

/// Spellings of the owned headers a client might send, each with the value "mallory".
const FORGED: [&str; 10] = [
    "x-user-id",
    "X-User-Id",
    "x_user_id",
    "X_USER_ID",
    "x-user_id",
    "x_org_id",
    "x-org_id",
    "x-jwt-payload",
    "x_jwt_payload",
    "x_roles",
];

#[test]
fn no_spelling_of_an_identity_header_from_a_client_reaches_the_upstream() {
    let rig = Rig::builder().bootstrap(shipped()).start();
    let mut cases = Cases::new();
    let bob = token(json!({"user_id": "bob"}));
    for forged in FORGED {
        let headers = [("authorization", bob.as_str()), (forged, "mallory")];
        cases.check(
            &format!("{forged}: mallory with bob's token: only bob's identity arrives"),
            expect_identity(
                &rig.raw_request("GET", "/", &headers),
                &[("x-user-id", "bob")],
            ),
        );
        cases.check(
            &format!("{forged}: mallory on an open route: no identity arrives"),
            expect_identity(
                &rig.raw_request("GET", "/healthz", &[(forged, "mallory")]),
                &[],
            ),
        );
    }
    // All of them at once, and twice over.
    let mut headers = vec![("authorization", bob.as_str())];
    for forged in FORGED {
        headers.push((forged, "mallory"));
        headers.push((forged, "eve"));
    }
    cases.check(
        "every spelling twice with bob's token",
        expect_identity(
            &rig.raw_request("GET", "/", &headers),
            &[("x-user-id", "bob")],
        ),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// Why the shipped configurations set `headers_with_underscores_action`: with Envoy's default
/// (`ALLOW`), `x_user_id` reaches the upstream untouched, and a CGI/WSGI upstream reads it as
/// the identity header. The filter owns `x-user-id` only; Envoy's setting is what drops the rest.
#[test]
fn with_envoys_default_underscore_handling_a_forged_x_user_id_would_arrive() {
    let mut bootstrap = shipped();
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        .as_object_mut()
        .unwrap()
        .remove("common_http_protocol_options");
    let rig = Rig::builder().bootstrap(bootstrap).start();
    let bob = token(json!({"user_id": "bob"}));
    let reply = rig.raw_request(
        "GET",
        "/",
        &[("authorization", bob.as_str()), ("x_user_id", "mallory")],
    );
    let received = owned_as_received(&reply).unwrap();
    assert!(
        received.contains(&("x_user_id".to_owned(), "mallory".to_owned())),
        "{received:?}"
    );
}

/// The same over HTTP/2 (h2c, prior knowledge, by curl): header names arrive lowercase, and
/// underscore spellings are dropped as over HTTP/1.1.
#[test]
fn over_http2_no_spelling_of_an_identity_header_reaches_the_upstream_either() {
    let rig = Rig::builder().bootstrap(shipped()).start();
    let bob = token(json!({"user_id": "bob"}));
    let mut command = std::process::Command::new("curl");
    command.args([
        "-sS",
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_code} %{http_version}",
    ]);
    command.args(["-H", &format!("authorization: {bob}")]);
    for forged in FORGED {
        command.args(["-H", &format!("{forged}: mallory")]);
    }
    let output = command
        .arg(format!("http://{}/", rig.listener))
        .output()
        .expect("running curl (Debian package curl) for HTTP/2");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status_line) = text.rsplit_once('\n').expect("curl's output and status");
    let status = status_line
        .strip_suffix(" 2")
        .unwrap_or_else(|| panic!("not HTTP/2: {text}"));
    let reply = Reply {
        status: status.parse().unwrap(),
        headers: Default::default(),
        body: body.to_owned(),
    };
    expect_identity(&reply, &[("x-user-id", "bob")]).unwrap();
}
