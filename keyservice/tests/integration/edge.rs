//! The full loop of the rig: Envoy with the keygate filter, configured exactly as
//! envoy/envoy.yaml configures it, routes `/v1/keys` to keyservice (`--api-key-callers`: it
//! verifies the key again itself), and a key with `keys:write` (bootstrapped with the CLI)
//! creates, lists and revokes keys over the edge.

use std::process::Command;

use serde_json::{Value, json};
use testkit::bins;
use testkit::bootstrap_edit::{loopback_bootstrap, shipped_bootstrap};
use testkit::envoy::Envoy;
use testkit::http::client;
use testkit::process::{Server, spawn_listening};

use crate::common::{ADMIN, SECRET, start_keyservice};

struct Rig {
    envoy: Envoy,
    keyservice: Server,
    database: String,
    _echo: Server,
    _dir: tempfile::TempDir,
}

fn start() -> Rig {
    let wasm = bins::keygate_wasm();
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("keys.db").display());
    let keyservice = start_keyservice(&database, dir.path(), "keyservice", &["--api-key-callers"]);
    let echo = {
        let mut command = Command::new(bins::echo_upstream());
        command.args(["--listen", "127.0.0.1:0"]);
        spawn_listening("echo-upstream", command, dir.path())
    };
    // envoy/envoy.yaml as it ships (its filter configuration and routes), on loopback ports.
    let config = loopback_bootstrap(
        shipped_bootstrap("envoy/envoy.yaml"),
        &wasm,
        echo.addr,
        keyservice.addr,
    );
    let envoy = Envoy::start(&config, dir.path(), Some(SECRET), 1);
    Rig {
        envoy,
        keyservice,
        database,
        _echo: echo,
        _dir: dir,
    }
}

/// `keyservice issue` with the CLI, as an operator bootstraps the first key.
fn bootstrap_key(rig: &Rig, user: &str, org: &str, scopes: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyservice"));
    command
        .args([
            "--database",
            &rig.database,
            "issue",
            "--user",
            user,
            "--org",
            org,
            "--name",
            "bootstrap",
        ])
        .env("JWT_SECRET", SECRET);
    for scope in scopes {
        command.args(["--scope", scope]);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn call(
    rig: &Rig,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let mut request = client().request(method.parse().unwrap(), rig.envoy.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn a_keys_write_key_manages_its_orgs_keys_over_the_edge() {
    let rig = start();
    let (status, text) = call(&rig, "GET", "/v1/keys", None, None);
    assert_eq!((status, text.as_str()), (401, "Invalid or expired token"));

    let boot = bootstrap_key(&rig, "alice", "acme", &["keys:write"]);

    // Create: the key is alice's at acme, whatever the body would like.
    let (status, text) = call(
        &rig,
        "POST",
        "/v1/keys",
        Some(&boot),
        Some(json!({"name": "ci"})),
    );
    assert_eq!(status, 201, "{text}\n{}", rig.envoy.log_text());
    let ci = json_of(&text);
    assert_eq!(
        (&ci["user_id"], &ci["org_id"], &ci["scopes"]),
        (&json!("alice"), &json!("acme"), &json!([]))
    );
    let (status, text) = call(
        &rig,
        "POST",
        "/v1/keys",
        Some(&boot),
        Some(json!({"name": "temp", "scopes": ["keys:write"]})),
    );
    assert_eq!(status, 201, "{text}");
    let temp = json_of(&text);
    let (status, text) = call(
        &rig,
        "POST",
        "/v1/keys",
        Some(&boot),
        Some(json!({"name": "x", "scopes": ["admin"]})),
    );
    assert_eq!(
        (status, json_of(&text)["error"].clone()),
        (403, json!("insufficient_scope"))
    );
    let (status, _) = call(
        &rig,
        "POST",
        "/v1/keys",
        Some(&boot),
        Some(json!({"name": "x", "user_id": "bob"})),
    );
    assert_eq!(status, 403);

    // List: acme's keys, and a forged x-user-id changes nothing (keygate replaces it, and
    // keyservice never reads it).
    let listed = client()
        .get(rig.envoy.url("/v1/keys"))
        .bearer_auth(&boot)
        .header("x-user-id", "mallory")
        .header("x-org-id", "globex")
        .send()
        .unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().unwrap();
    let mut names: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["bootstrap", "ci", "temp"]);

    // The same listing a page at a time, the cursor passed through the edge as it came.
    let mut paged = Vec::new();
    let mut path = "/v1/keys?limit=2".to_owned();
    loop {
        let (status, text) = call(&rig, "GET", &path, Some(&boot), None);
        assert_eq!(status, 200, "{path}: {text}");
        let page = json_of(&text);
        let keys = page["keys"].as_array().unwrap();
        assert!(keys.len() <= 2);
        paged.extend(keys.iter().map(|k| k["name"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/keys?limit=2&after={next}"),
            None => break,
        }
    }
    paged.sort_unstable();
    assert_eq!(paged, ["bootstrap", "ci", "temp"]);

    // A key without keys:write is refused by keyservice; it still works elsewhere.
    let ci_key = ci["key"].as_str().unwrap();
    let (status, text) = call(&rig, "GET", "/v1/keys", Some(ci_key), None);
    assert_eq!(
        (status, json_of(&text)["error"].clone()),
        (403, json!("forbidden")),
        "{text}"
    );
    let (status, text) = call(&rig, "GET", "/hello", Some(ci_key), None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(json_of(&text)["headers"]["x-user-id"], "alice");

    // Another org's writer sees none of acme's keys and cannot revoke them.
    let other = bootstrap_key(&rig, "carol", "globex", &["keys:write"]);
    let (_, text) = call(&rig, "GET", "/v1/keys", Some(&other), None);
    let names: Vec<Value> = json_of(&text)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["org_id"].clone())
        .collect();
    assert_eq!(names, [json!("globex")]);
    let temp_id = temp["id"].as_str().unwrap();
    let (status, text) = call(
        &rig,
        "DELETE",
        &format!("/v1/keys/{temp_id}"),
        Some(&other),
        None,
    );
    assert_eq!(
        (status, json_of(&text)["error"].clone()),
        (404, json!("not_found"))
    );

    // Revoke: and the revoked key is refused at the edge.
    let (status, text) = call(
        &rig,
        "DELETE",
        &format!("/v1/keys/{temp_id}"),
        Some(&boot),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let temp_key = temp["key"].as_str().unwrap();
    let (status, text) = call(&rig, "GET", "/hello", Some(temp_key), None);
    assert_eq!((status, text.as_str()), (401, "Revoked token"));

    // Straight to keyservice with the identity headers keygate would set: nobody.
    let payload =
        testkit::token::b64url(br#"{"user_id":"alice","org_id":"acme","scopes":["keys:write"]}"#);
    let forged = client()
        .get(rig.keyservice.url("/v1/keys"))
        .header("x-user-id", "alice")
        .header("x-org-id", "acme")
        .header("x-jwt-payload", payload)
        .send()
        .unwrap();
    assert_eq!(forged.status(), 401);

    // The admin token still works directly at keyservice.
    let all: Value = client()
        .get(rig.keyservice.url("/v1/keys"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(all["keys"].as_array().unwrap().len(), 4);
    let log = rig.keyservice.proc.log_text();
    assert!(
        log.contains("API keys with keys:write manage their own keys"),
        "{log}"
    );
    for secret in [boot.as_str(), ci_key, temp_key, SECRET] {
        assert!(!log.contains(secret), "{log}");
    }
}
