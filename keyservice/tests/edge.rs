#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The full loop of the rig: Envoy with the keygate filter, configured exactly as
//! envoy/envoy.yaml configures it, routes `/v1/keys` to keyservice (`--trust-edge-identity`), and
//! a key with `keys:write` (bootstrapped with the CLI) creates, lists and revokes keys over the
//! edge.

#[macro_use]
mod common;

use std::process::Command;

use common::envoy::{Envoy, bootstrap, cluster, echo_upstream_bin, keygate_wasm};
use common::{ADMIN, SECRET, client, repo_root, spawn_listening, start_keyservice};
use serde_json::{Value, json};

/// The keygate configuration envoy/envoy.yaml ships (the block under `value: |`).
fn shipped_plugin_config() -> String {
    let yaml = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.trim_start().starts_with("value: |"))
        .expect("envoy/envoy.yaml has the filter's configuration under `value: |`");
    let indent = |line: &str| line.len() - line.trim_start().len();
    let outer = indent(lines[start]);
    let block: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|line| line.trim().is_empty() || indent(line) > outer)
        .copied()
        .collect();
    let text = block.join("\n");
    serde_json::from_str::<Value>(&text)
        .unwrap_or_else(|e| panic!("the shipped configuration is not JSON ({e}):\n{text}"));
    text
}

struct Rig {
    envoy: Envoy,
    keyservice: common::Proc,
    database: String,
    _echo: common::Proc,
    _dir: tempfile::TempDir,
}

fn start() -> Rig {
    let wasm = keygate_wasm();
    assert!(
        wasm.is_file(),
        "{} does not exist: run `make test` (or `make build`), which builds the filter",
        wasm.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("keys.db").display());
    let keyservice = start_keyservice(
        &database,
        dir.path(),
        "keyservice",
        &["--trust-edge-identity"],
    );
    let echo = {
        let mut command = Command::new(echo_upstream_bin());
        command.args(["--listen", "127.0.0.1:0"]);
        spawn_listening(command, dir.path().join("echo.log"))
    };
    let keygate = json!({
        "name": "keygate",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "keygate",
                "root_id": "keygate",
                "vm_config": {
                    "vm_id": "keygate",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm.display().to_string()}},
                    "environment_variables": {"host_env_keys": ["JWT_SECRET"]}
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": shipped_plugin_config()
                }
            }
        }
    });
    // The routes of envoy/envoy.yaml.
    let routes = json!([
        {"match": {"path_separated_prefix": "/v1/keys"}, "route": {"cluster": "keyservice"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "echo"}}
    ]);
    let config = bootstrap(
        vec![keygate],
        routes,
        vec![
            cluster("echo", &echo.addr),
            cluster("keyservice", &keyservice.addr),
        ],
    );
    let envoy = Envoy::start(&config, dir.path(), &[("JWT_SECRET", SECRET)]);
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
    assert_eq!(status, 201, "{text}\n{}", rig.envoy.log());
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

    // List: acme's keys, and a forged x-user-id changes nothing (keygate replaces it).
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

    // A key without keys:write is stopped at the edge; it still works elsewhere.
    let ci_key = ci["key"].as_str().unwrap();
    let (status, text) = call(&rig, "GET", "/v1/keys", Some(ci_key), None);
    assert_eq!((status, text.as_str()), (403, "Insufficient scope"));
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

    // The admin token still works directly at keyservice.
    let all: Value = client()
        .get(rig.keyservice.url("/v1/keys"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(all["keys"].as_array().unwrap().len(), 4);
    let log = rig.keyservice.log_text();
    assert!(
        log.contains("trusting the edge's identity headers"),
        "{log}"
    );
    for secret in [boot.as_str(), ci_key, temp_key, SECRET] {
        assert!(!log.contains(secret), "{log}");
    }
}
