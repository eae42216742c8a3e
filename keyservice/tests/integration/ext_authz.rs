//! `/v1/authorize` behind a real Envoy's HTTP `ext_authz` filter (no wasm): keygate's decision,
//! made by keyservice, for a proxy that cannot run the filter.

use std::process::Command;

use serde_json::{Value, json};
use testkit::bins;
use testkit::bootstrap::Bootstrap;
use testkit::envoy::Envoy;
use testkit::http::client;
use testkit::process::{Server, spawn_listening};
use testkit::token::{now, sign};

use crate::common::{ADMIN, SECRET, start_keyservice};

/// keygate's configuration, as keyservice reads it from `--authorize-config`.
fn plugin_config() -> Value {
    json!({
        "secret": {"env": "JWT_SECRET"},
        "claims_to_headers": {"user_id": "x-user-id", "org_id": "x-org-id"},
        "revocation": {"cluster": "keyservice"},
        "rules": [
            {"match": {"path": "/public"}, "action": "allow"},
            {"match": {"glob": "/admin/**"}, "action": "require_scopes", "scopes": ["admin"]}
        ]
    })
}

/// Envoy's documented HTTP ext_authz setup for keyservice.
fn ext_authz_filter() -> Value {
    json!({
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": false,
            "http_service": {
                "server_uri": {"uri": "http://keyservice", "cluster": "keyservice", "timeout": "2s"},
                "path_prefix": "/v1/authorize",
                "authorization_response": {
                    "allowed_upstream_headers": {"patterns": [
                        {"exact": "x-user-id"}, {"exact": "x-org-id"}
                    ]},
                    "allowed_client_headers": {"patterns": [
                        {"exact": "content-type"}, {"exact": "www-authenticate"}
                    ]}
                }
            }
        }
    })
}

struct Rig {
    envoy: Envoy,
    keyservice: Server,
    _echo: Server,
    _dir: tempfile::TempDir,
}

fn start() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("keygate.json");
    std::fs::write(&config_path, plugin_config().to_string()).unwrap();
    let database = format!("sqlite://{}", dir.path().join("keys.db").display());
    let keyservice = start_keyservice(
        &database,
        dir.path(),
        "keyservice",
        &["--authorize-config", config_path.to_str().unwrap()],
    );
    let echo = {
        let mut command = Command::new(bins::echo_upstream());
        command.args(["--listen", "127.0.0.1:0"]);
        spawn_listening("echo-upstream", command, dir.path())
    };
    let config = Bootstrap::new()
        .http_filter(ext_authz_filter())
        .normalize_paths()
        .cluster("echo", echo.addr)
        .cluster("keyservice", keyservice.addr)
        .build();
    let envoy = Envoy::start(&config, dir.path(), None, 1);
    Rig {
        envoy,
        keyservice,
        _echo: echo,
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    /// The request headers the upstream saw (echo-upstream's answer).
    fn upstream_headers(&self) -> Value {
        let echo: Value = serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not the echo ({e}): {}", self.text));
        echo["headers"].clone()
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }
}

fn call(rig: &Rig, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client().request(method.parse().unwrap(), rig.envoy.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if method == "POST" {
        request = request.body("{\"payload\": true}");
    }
    let response = request.send().unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().unwrap(),
    }
}

fn issue(rig: &Rig, body: Value) -> (String, String) {
    let created: Value = client()
        .post(rig.keyservice.url("/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn envoy_ext_authz_gets_keygates_decisions_from_keyservice() {
    let rig = start();
    let (id, key) = issue(
        &rig,
        json!({"user_id": "alice", "org_id": "acme", "name": "k"}),
    );
    let bearer = format!("Bearer {key}");
    let (_, personal) = issue(&rig, json!({"user_id": "bob", "name": "p"}));
    let personal = format!("Bearer {personal}");

    // Allowed: the identity reaches the upstream, replacing what the client sent.
    let a = call(
        &rig,
        "GET",
        "/hello?x=1",
        &[("authorization", &bearer), ("x-user-id", "mallory")],
    );
    assert_eq!(a.status, 200, "{}\n{}", a.text, rig.envoy.log_text());
    let seen = a.upstream_headers();
    assert_eq!(
        (&seen["x-user-id"], &seen["x-org-id"]),
        (&json!("alice"), &json!("acme"))
    );
    let a = call(&rig, "POST", "/upload", &[("authorization", &bearer)]);
    assert_eq!(a.status, 200, "{}", a.text);
    // A key without an org: a client's own x-org-id does not survive either.
    let a = call(
        &rig,
        "GET",
        "/hello",
        &[("authorization", &personal), ("x-org-id", "forged")],
    );
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = a.upstream_headers();
    assert_eq!(seen["x-user-id"], "bob");
    assert!(
        seen.get("x-org-id").is_none(),
        "forged x-org-id reached the upstream: {seen}"
    );

    // Denied: keygate's status, body and WWW-Authenticate reach the client.
    let a = call(&rig, "GET", "/hello", &[]);
    assert_eq!(
        (a.status, a.text.as_str()),
        (401, "Invalid or expired token")
    );
    assert_eq!(a.header("www-authenticate"), "Bearer realm=\"keygate\"");
    assert_eq!(a.header("content-type"), "text/plain");
    let a = call(
        &rig,
        "GET",
        "/hello",
        &[("authorization", "Bearer e30.e30.e30")],
    );
    assert_eq!(a.status, 401);
    assert!(
        a.header("www-authenticate")
            .contains("error=\"invalid_token\""),
        "{:?}",
        a.headers
    );
    let a = call(&rig, "GET", "/admin/panel", &[("authorization", &bearer)]);
    assert_eq!((a.status, a.text.as_str()), (403, "Insufficient scope"));
    assert!(
        a.header("www-authenticate").contains("scope=\"admin\""),
        "{:?}",
        a.headers
    );
    let (_, admin) = issue(
        &rig,
        json!({"user_id": "root", "name": "a", "scopes": ["admin"]}),
    );
    let a = call(
        &rig,
        "GET",
        "/admin/panel",
        &[("authorization", &format!("Bearer {admin}"))],
    );
    assert_eq!(a.status, 200, "{}", a.text);

    // Open route: no key needed, and no identity passes.
    let a = call(&rig, "GET", "/public", &[("x-user-id", "mallory")]);
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.upstream_headers().get("x-user-id").is_none());

    // Revoked at keyservice: refused at Envoy on the next request (no cache in between).
    let revoked = client()
        .delete(rig.keyservice.url(&format!("/v1/keys/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let a = call(&rig, "GET", "/hello", &[("authorization", &bearer)]);
    assert_eq!((a.status, a.text.as_str()), (401, "Revoked token"));
    assert!(
        a.header("www-authenticate")
            .contains("token has been revoked")
    );

    // keyservice logged its decisions (by route: the path may hold a token), and never a key.
    let log = rig.keyservice.proc.log_text();
    assert!(log.contains("authorize: denied"), "{log}");
    assert!(log.contains("/v1/authorize/{*rest}"), "{log}");
    for secret in [key.as_str(), SECRET, ADMIN] {
        assert!(!log.contains(secret), "{log}");
    }
}

/// A non-ASCII identity reaches the upstream byte for byte, as through the filter; a header
/// the authorization answer left out would have let the client's own copy through.
#[test]
fn a_non_ascii_identity_replaces_the_clients_copy() {
    let rig = start();
    // keyservice issues only ASCII identities; a token signed with the secret elsewhere (an
    // older issuer, a session) may carry any text, which the filter forwards as UTF-8.
    let key = sign(
        &json!({"user_id": "jos\u{e9}", "org_id": "\u{4e16}\u{754c}", "exp": now() + 600}),
        SECRET,
    );
    let a = call(
        &rig,
        "GET",
        "/hello",
        &[
            ("authorization", &format!("Bearer {key}")),
            ("x-user-id", "mallory"),
            ("x-org-id", "evil"),
        ],
    );
    assert_eq!(a.status, 200, "{}\n{}", a.text, rig.envoy.log_text());
    let seen = a.upstream_headers();
    assert_eq!(
        (&seen["x-user-id"], &seen["x-org-id"]),
        (&json!("jos\u{e9}"), &json!("\u{4e16}\u{754c}")),
        "{seen}"
    );
}
