//! The real binary, run as a user would, against a SQLite file in a tempdir.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use testkit::process::{Server, spawn_listening};
use testkit::token::sha256_hex;

use crate::common::{self, verified_claims};

const SECRET: &str = "cli-test-secret";
const ADMIN: &str = "cli-admin-token";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("keys.db")
    }

    /// The binary with a clean environment: only what each test sets reaches it.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyservice"));
        cmd.args(args)
            .env_remove("JWT_SECRET")
            .env_remove("KEYSERVICE_ADMIN_TOKEN")
            .env_remove("KEYSERVICE_LISTEN")
            .env_remove("RUST_LOG")
            .env("DATABASE_URL", format!("sqlite://{}", self.db().display()))
            .env("JWT_SECRET", SECRET)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn issue(&self, extra: &[&str]) -> String {
        let mut args = vec!["issue", "--user", "user_1", "--name", "laptop"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "only the key on stdout: {stdout:?}");
        lines[0].to_owned()
    }

    fn list_json(&self) -> Vec<Value> {
        let out = self.run(&["list", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn claims(key: &str) -> Value {
    verified_claims(key, SECRET)
}

/// What ComfyUI Deploy's `jwt.sign({user_id, org_id}, JWT_SECRET)` produces: HS256, iat, no exp.
fn comfyui_key(secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &json!({"user_id": "user_2abc", "org_id": "org_9", "iat": 1_700_000_000}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn issue_prints_only_a_verifiable_key() {
    let env = Env::new();
    let key = env.issue(&["--org", "org_1", "--expires-in", "1h"]);
    let claims = claims(&key);
    assert_eq!(claims["user_id"], "user_1");
    assert_eq!(claims["org_id"], "org_1");
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);

    let listed = env.list_json();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], claims["jti"]);
    assert_eq!(listed[0]["name"], "laptop");
    assert_eq!(listed[0]["org_id"], "org_1");
    assert!(listed[0]["expires_at"].is_string());
    assert!(listed[0].get("key").is_none());
    assert!(listed[0].get("key_sha256").is_none());

    let key = env.issue(&[]);
    let claims = self::claims(&key);
    assert!(claims.get("exp").is_none() && claims.get("org_id").is_none());
}

#[test]
fn issue_rejects_bad_input_and_writes_nothing() {
    let env = Env::new();
    for args in [
        vec!["issue", "--user", " ", "--name", "n"],
        vec!["issue", "--user", "u", "--name", ""],
        vec![
            "issue",
            "--user",
            "u",
            "--name",
            "n",
            "--expires-in",
            "11years",
        ],
        vec![
            "issue",
            "--user",
            "u",
            "--name",
            "n",
            "--expires-in",
            "500ms",
        ],
    ] {
        let out = env.run(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
    let out = env.run(&[
        "issue",
        "--user",
        "u",
        "--name",
        "n",
        "--expires-in",
        "soon",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap rejects an unparsable duration"
    );
    assert!(env.list_json().is_empty());
}

#[test]
fn list_shows_a_table_without_key_material() {
    let env = Env::new();
    let key = env.issue(&[]);
    let id = claims(&key)["jti"].as_str().unwrap().to_owned();
    let out = env.run(&["list"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("ID"));
    assert!(lines[1].starts_with(&id));
    assert!(lines[1].contains("laptop") && lines[1].contains("user_1"));
    assert!(!stdout.contains(&key) && !stdout.contains(&sha256_hex(&key)));

    let out = env.run(&["list", "--user", "someone-else"]);
    assert_eq!(text(&out.stdout).lines().count(), 1, "header only");
}

#[test]
fn revoke_confirms_is_idempotent_and_rejects_unknown_ids() {
    let env = Env::new();
    let key = env.issue(&["--expires-in", "1d"]);
    let id = claims(&key)["jti"].as_str().unwrap().to_owned();

    let first = env.run(&["revoke", &id]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let confirmation = text(&first.stdout);
    assert!(
        confirmation.starts_with(&format!("revoked {id} at ")),
        "{confirmation}"
    );
    assert!(text(&first.stderr).contains("check: non_expiring"));
    let second = env.run(&["revoke", &id]);
    assert!(second.status.success());
    assert_eq!(text(&second.stdout), confirmation, "same revoked_at");
    assert!(env.list_json()[0]["revoked_at"].is_string());

    let out = env.run(&["revoke", "no-such-id"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no key with id no-such-id"));
    assert!(out.stdout.is_empty());
}

#[test]
fn import_takes_a_comfyui_key_once() {
    let env = Env::new();
    let key = comfyui_key(SECRET, Algorithm::HS256);

    let out = env.run_with_stdin(&["import", "--name", "legacy"], &format!("{key}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert!(!id.is_empty());

    let listed = env.list_json();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            &listed[0]["id"],
            &listed[0]["name"],
            &listed[0]["user_id"],
            &listed[0]["org_id"],
            &listed[0]["expires_at"]
        ),
        (
            &json!(id),
            &json!("legacy"),
            &json!("user_2abc"),
            &json!("org_9"),
            &Value::Null
        )
    );

    let again = env.run_with_stdin(&["import", "--name", "again"], &key);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already imported"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(env.list_json(), listed, "nothing changed");
}

#[test]
fn import_refuses_keys_it_cannot_trust() {
    let env = Env::new();
    let cases = [
        (
            comfyui_key("not-the-secret", Algorithm::HS256),
            "does not verify with JWT_SECRET",
        ),
        (comfyui_key(SECRET, Algorithm::HS384), "only HS256"),
        ("garbage".to_owned(), "not a well-formed JWT"),
        (String::new(), "no key on standard input"),
    ];
    for (key, message) in cases {
        let out = env.run_with_stdin(&["import", "--name", "n"], &key);
        assert_eq!(out.status.code(), Some(1), "{message}");
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
        assert!(
            !text(&out.stderr).contains(&key) || key.is_empty(),
            "key echoed"
        );
    }
    assert!(env.list_json().is_empty());
}

#[test]
fn import_uses_a_free_jti_as_the_id() {
    let env = Env::new();
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let first = env.run_with_stdin(
        &["import", "--name", "a"],
        &sign(json!({"user_id": "u", "jti": "legacy-7", "exp": 4_000_000_000_i64})),
    );
    assert_eq!(text(&first.stdout).trim(), "legacy-7");
    // Same jti on a different key: the id is taken, so a fresh one is made.
    let second = env.run_with_stdin(
        &["import", "--name", "b"],
        &sign(json!({"user_id": "v", "jti": "legacy-7"})),
    );
    assert!(second.status.success(), "{}", text(&second.stderr));
    let second_id = text(&second.stdout).trim().to_owned();
    assert_ne!(second_id, "legacy-7");
    let listed = env.list_json();
    assert_eq!(listed.len(), 2);
    let legacy = listed.iter().find(|k| k["id"] == "legacy-7").unwrap();
    assert_eq!(legacy["expires_at"], "2096-10-02T07:06:40Z");
}

#[test]
fn missing_secrets_exit_2_and_name_the_variable() {
    let env = Env::new();
    for secret in [None, Some(""), Some("  ")] {
        for args in [
            vec!["issue", "--user", "u", "--name", "n"],
            vec!["import", "--name", "n"],
            vec!["serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN],
        ] {
            let mut cmd = env.cmd(&args);
            match secret {
                Some(s) => cmd.env("JWT_SECRET", s),
                None => cmd.env_remove("JWT_SECRET"),
            };
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?} {secret:?}");
            assert!(
                text(&out.stderr).contains("JWT_SECRET"),
                "{}",
                text(&out.stderr)
            );
            assert!(out.stdout.is_empty());
        }
    }
    let out = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("KEYSERVICE_ADMIN_TOKEN"));
    assert!(
        !env.db().exists(),
        "config errors stop before the database is touched"
    );

    // revoke and list need no secret.
    let out = env
        .cmd(&["list"])
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn database_accepts_a_bare_path_given_after_the_subcommand() {
    let env = Env::new();
    let path = env.dir.path().join("bare.db");
    let out = env.run(&[
        "issue",
        "--user",
        "u",
        "--name",
        "n",
        "--database",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(path.exists());
    assert!(!env.db().exists(), "--database wins over DATABASE_URL");
}

// ---- serve -------------------------------------------------------------------------------

/// The server's stderr (its log), in the tempdir.
fn server_log(env: &Env) -> PathBuf {
    env.dir.path().join("server.stderr")
}

/// `serve` on a free port: it announces the port it got (not 0) on 127.0.0.1 within 30 s. It is
/// killed if a test fails before it shuts it down.
fn start_server(env: &Env) -> Server {
    let mut command = env.cmd(&["serve", "--listen", "127.0.0.1:0"]);
    command.env("KEYSERVICE_ADMIN_TOKEN", ADMIN);
    let started = Instant::now();
    let server = spawn_listening("server", command, env.dir.path());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "no `listening on` line within 30 s"
    );
    let addr = server.addr.to_string();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    server
}

/// One HTTP/1.1 exchange over a plain socket: (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(auth) = auth {
        request.push_str(&format!("Authorization: Bearer {auth}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}")),
    )
}

#[test]
fn serve_announces_its_port_answers_and_shuts_down_on_sigterm() {
    let env = Env::new();
    let mut server = start_server(&env);
    let addr = server.addr.to_string();

    assert_eq!(
        http(&addr, "GET", "/healthz", None, None),
        (200, json!({"status": "ok"}))
    );
    let (status, body) = http(&addr, "GET", "/v1/keys", None, None);
    assert_eq!((status, &body["error"]), (401, &json!("unauthorized")));

    let (status, created) = http(
        &addr,
        "POST",
        "/v1/keys",
        Some(ADMIN),
        Some(r#"{"user_id":"u","name":"over http"}"#),
    );
    assert_eq!(status, 201, "{created}");
    let hash = sha256_hex(created["key"].as_str().unwrap());
    let revocation = format!("/v1/revocations/{hash}");
    assert_eq!(
        http(&addr, "GET", &revocation, None, None),
        (200, json!({"status": "active"}))
    );

    // The CLI and the running server share the database file.
    let id = created["id"].as_str().unwrap();
    let out = env.run(&["revoke", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        http(&addr, "GET", &revocation, None, None),
        (410, json!({"status": "revoked"}))
    );
    let cli_key = env.issue(&[]);
    let (_, listed) = http(&addr, "GET", "/v1/keys", Some(ADMIN), None);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    let (status, _) = http(
        &addr,
        "GET",
        &format!("/v1/revocations/{}", sha256_hex(&cli_key)),
        None,
        None,
    );
    assert_eq!(status, 200);

    let pid = server.proc.pid().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let limit = Duration::from_secs(15);
    let status = server
        .proc
        .wait_timeout(limit)
        .unwrap_or_else(|| panic!("server did not exit within {limit:?}"));
    assert!(status.success(), "graceful shutdown exits 0, got {status}");

    // The log shows the requests, and no secret, token or key.
    let log = std::fs::read_to_string(server_log(&env)).unwrap();
    assert!(
        log.contains("/v1/keys") && log.contains("shutting down"),
        "{log}"
    );
    let key = created["key"].as_str().unwrap();
    let signature = key.rsplit('.').next().unwrap();
    for secret in [SECRET, ADMIN, key, signature, &cli_key] {
        assert!(!log.contains(secret), "log line carries a secret: {log}");
    }
    assert!(!log.contains('\x1b'), "no colour codes in a log file");
}

#[test]
fn serve_refuses_an_address_in_use() {
    let env = Env::new();
    let server = start_server(&env);
    let out = env
        .cmd(&["serve", "--listen", &server.addr.to_string()])
        .env("KEYSERVICE_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "no `listening on` line when binding failed"
    );
    assert!(!text(&out.stderr).is_empty());
}

#[test]
fn serve_refuses_the_removed_trust_edge_identity_and_bad_caller_flags() {
    let env = Env::new();
    let out = env
        .cmd(&["serve", "--listen", "127.0.0.1:0", "--trust-edge-identity"])
        .env("KEYSERVICE_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--trust-edge-identity") && stderr.contains("--api-key-callers"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    let out = env
        .cmd(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--session-issuer",
            "https://clerk.example.com",
            "--session-jwks-url",
            "https://clerk.example.com/.well-known/jwks.json",
        ])
        .env("KEYSERVICE_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--session-authorized-party"),
        "{}",
        text(&out.stderr)
    );
}

/// Records written straight into the store, as an older version or another tool may have.
fn insert_records(env: &Env, records: Vec<keyservice::store::KeyRecord>) {
    let url = format!("sqlite://{}", env.db().display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = keyservice::store::open(&url).await.unwrap();
        for record in &records {
            store.insert(record).await.unwrap();
        }
        store.close().await;
    });
}

fn record(id: String, name: &str, user_id: &str, created_at: i64) -> keyservice::store::KeyRecord {
    keyservice::store::KeyRecord {
        name: name.into(),
        ..common::record(&id, user_id, created_at)
    }
}

/// `list` reads the store a bounded page at a time and prints every key; `--limit` stops and
/// says how to go on, `--after` goes on.
#[test]
fn list_pages_through_any_number_of_keys() {
    let env = Env::new();
    let records = (0..2_500)
        .map(|n| record(format!("k{n:04}"), "n", "u", 1_700_000_000 + n / 7))
        .collect();
    insert_records(&env, records);
    let all: Vec<String> = env
        .list_json()
        .iter()
        .map(|key| key["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..2_500).map(|n| format!("k{n:04}")).collect();
    assert_eq!(all, expected);

    let first = env.run(&["list", "--json", "--limit", "1200"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let stderr = text(&first.stderr);
    let after = stderr
        .trim()
        .strip_prefix("more keys follow: keyservice list --after ")
        .unwrap_or_else(|| panic!("{stderr:?}"))
        .to_owned();
    let rest = env.run(&["list", "--json", "--after", &after]);
    assert!(rest.status.success(), "{}", text(&rest.stderr));
    assert!(
        text(&rest.stderr).is_empty(),
        "the last page says nothing more"
    );
    let ids = |out: &Output| -> Vec<String> {
        text(&out.stdout)
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let (first, rest) = (ids(&first), ids(&rest));
    assert_eq!(first.len(), 1200);
    assert_eq!([first, rest].concat(), expected);

    let bad = env.run(&["list", "--after", "not-a-cursor"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--after"),
        "{}",
        text(&bad.stderr)
    );
    let zero = env.run(&["list", "--limit", "0"]);
    assert_eq!(zero.status.code(), Some(2));
}

/// A name or an identity stored before they were checked (or by another tool) is shown with
/// its invisible characters escaped: one line per key, in the order written.
#[test]
fn the_table_escapes_what_it_cannot_show() {
    let env = Env::new();
    insert_records(
        &env,
        vec![record(
            "legacy-1".into(),
            "a\u{202e}b\nc\\",
            "bob\u{200b}",
            1,
        )],
    );
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.contains("a\\u{202e}b\\u{a}c\\\\") && stdout.contains("bob\\u{200b}"),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{202e}') && !stdout.contains('\u{200b}'));
}

/// Usage written into the store as `POST /v1/usage` would: `(digest, day, allowed, last use
/// in ms after the day's start)`.
fn record_usage(env: &Env, batch: u64, entries: &[(&str, i64, u64, i64)]) {
    let url = format!("sqlite://{}", env.db().display());
    let keys: Vec<Value> = entries
        .iter()
        .map(|(sha256, day, allowed, at_ms)| {
            json!({"sha256": sha256, "day": day, "last_used_ms": day * 86_400_000 + at_ms,
                   "allowed": allowed, "forbidden": 1, "rate_limited": 0})
        })
        .collect();
    let report: keyservice::usage::UsageReport = serde_json::from_value(
        json!({"batch": format!("{batch:032x}"), "dropped": 0, "keys": keys}),
    )
    .unwrap();
    let batch = report.check(keyservice::time::today()).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = keyservice::store::open(&url).await.unwrap();
        store.record_usage(&batch, 0).await.unwrap();
        store.close().await;
    });
}

/// The feed's events, as (event, digest).
fn feed_events(env: &Env) -> Vec<(String, String)> {
    let url = format!("sqlite://{}", env.db().display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = keyservice::store::open(&url).await.unwrap();
        let page = store.feed(0, 100).await.unwrap();
        store.close().await;
        page.entries
            .into_iter()
            .map(|e| (e.event.as_str().to_owned(), e.key_sha256))
            .collect()
    })
}

/// `issue --rate-limit`, `set-limits` (announced in the feed, as a PATCH is) and `usage`.
#[test]
fn rate_limits_and_usage_from_the_command_line() {
    let env = Env::new();
    // `create` is `issue` by another name.
    let out = env.run(&[
        "create",
        "--user",
        "user_1",
        "--name",
        "metered",
        "--rate-limit",
        "1000/86400",
        "--rate-limit",
        "100/60",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("(expires: never; scopes: none; rate limits: 100/60, 1000/86400)"),
        "{}",
        text(&out.stderr)
    );
    let key = text(&out.stdout).trim().to_owned();
    let id = claims(&key)["jti"].as_str().unwrap().to_owned();
    let sha = sha256_hex(&key);
    assert_eq!(
        env.list_json()[0]["rate_limits"],
        json!([{"requests": 100, "per_seconds": 60}, {"requests": 1000, "per_seconds": 86400}])
    );
    let bad = env.run(&["issue", "--user", "u", "--name", "n", "--rate-limit", "5/0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("rate_limits[0].per_seconds must be from 1 to 2678400"),
        "{}",
        text(&bad.stderr)
    );
    let bad = env.run(&[
        "issue",
        "--user",
        "u",
        "--name",
        "n",
        "--rate-limit",
        "5 per minute",
    ]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(text(&bad.stderr).contains("REQUESTS/SECONDS"));
    assert_eq!(env.list_json().len(), 1, "nothing issued");

    // set-limits replaces, says so, and is announced to the edges; the same again is not.
    let out = env.run(&["set-limits", &id, "--rate-limit", "5/1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("rate limits of {id}: 5/1\n"));
    let out = env.run(&["set-limits", &id, "--rate-limit", "5/1"]);
    assert_eq!(text(&out.stdout), format!("rate limits of {id}: 5/1\n"));
    assert!(
        text(&out.stderr).contains("unchanged"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["set-limits", &id, "--none"]);
    assert_eq!(text(&out.stdout), format!("rate limits of {id}: none\n"));
    assert_eq!(env.list_json()[0]["rate_limits"], json!([]));
    assert_eq!(
        feed_events(&env),
        [
            ("limits_changed".to_owned(), sha.clone()),
            ("limits_changed".to_owned(), sha.clone())
        ]
    );
    for (args, code, message) in [
        (
            vec!["set-limits", &id, "--rate-limit", "0/60"],
            1,
            "rate_limits[0].requests must be at least 1",
        ),
        (
            vec![
                "set-limits",
                &id,
                "--rate-limit",
                "1/60",
                "--rate-limit",
                "2/60",
            ],
            1,
            "rate_limits[1].per_seconds is the same",
        ),
        (vec!["set-limits", &id], 2, "--rate-limit"),
        (
            vec!["set-limits", &id, "--none", "--rate-limit", "1/1"],
            2,
            "cannot be used with",
        ),
        (
            vec!["set-limits", "no-such-id", "--none"],
            1,
            "no key with id no-such-id",
        ),
    ] {
        let out = env.run(&args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(
        feed_events(&env).len(),
        2,
        "refused changes are not announced"
    );

    // usage: the days with counts, oldest first, and their total; when last used on stderr.
    let today = keyservice::time::today();
    let out = env.run(&["usage", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "DAY    ALLOWED  FORBIDDEN  RATE_LIMITED\nTOTAL        0          0             0\n"
    );
    assert!(
        text(&out.stderr).contains("no use reported yet"),
        "{}",
        text(&out.stderr)
    );
    record_usage(
        &env,
        1,
        &[(&sha, today - 1, 1200, 5_000), (&sha, today, 7, 61_000)],
    );
    record_usage(
        &env,
        2,
        &[
            (&sha, today, 3, 1_000),
            (&sha256_hex("temporary"), today, 9, 0),
        ],
    );
    let out = env.run(&["usage", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (yesterday, day) = (
        keyservice::time::date(today - 1),
        keyservice::time::date(today),
    );
    assert_eq!(
        text(&out.stdout),
        format!(
            "DAY         ALLOWED  FORBIDDEN  RATE_LIMITED\n\
             {yesterday}     1200          1             0\n\
             {day}       10          2             0\n\
             TOTAL          1210          3             0\n"
        )
    );
    let last_used = keyservice::time::rfc3339(today * 86_400 + 61);
    assert_eq!(
        text(&out.stderr),
        format!("key {id} last used {last_used}\n")
    );
    let out = env.run(&["usage", &id, "--days", "1", "--json"]);
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        view,
        json!({"id": id, "last_used_at": last_used,
               "days": [{"day": day, "allowed": 10, "forbidden": 2, "rate_limited": 0}],
               "totals": {"allowed": 10, "forbidden": 2, "rate_limited": 0}})
    );
    let out = env.run(&["usage", "no-such-id"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no key with id no-such-id"));

    // list shows when each key was last used.
    let out = env.run(&["list"]);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].ends_with("REVOKED_AT  LAST_USED_AT"), "{stdout}");
    assert!(
        lines[1].ends_with(&format!("-           {last_used}")),
        "{stdout}"
    );

    // A revoked key's limits no longer change.
    assert!(env.run(&["revoke", &id]).status.success());
    let out = env.run(&["set-limits", &id, "--rate-limit", "1/1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "key {id} is revoked: its rate limits can no longer change"
        )),
        "{}",
        text(&out.stderr)
    );
}
