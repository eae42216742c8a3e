//! What only a shared PostgreSQL can show: replicas that see each other's writes at once, a
//! database that goes away and comes back, and the CLI against a server.

use std::process::Command;
use std::time::{Duration, Instant};

use keyservice::store::StoreOptions;
use serde_json::{Value, json};
use testkit::http::client;
use testkit::poll;
use testkit::token::sha256_hex;

use crate::common::pg::{self, PgCluster, SOON};
use crate::common::{ADMIN, Harness, SECRET, sample, start_keyservice};

/// Two `keyservice serve` processes on one database: what one issues or revokes, the other
/// answers at once (no replica caches anything).
#[test]
fn two_replicas_on_one_database_agree_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = pg::shared().create_database_blocking();
    let a = start_keyservice(&url, dir.path(), "replica-a", &[]);
    let b = start_keyservice(&url, dir.path(), "replica-b", &[]);
    let http = client();

    for round in 0..3 {
        // Issued through A, active through B on the very next request.
        let created: Value = http
            .post(a.url("/v1/keys"))
            .bearer_auth(ADMIN)
            .json(&json!({"user_id": "u", "org_id": "acme", "name": format!("round {round}"), "scopes": ["read"]}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let key = created["key"].as_str().unwrap();
        let id = created["id"].as_str().unwrap();
        let revocation = format!("/v1/revocations/{}", sha256_hex(key));
        let answer = http.get(b.url(&revocation)).send().unwrap();
        assert_eq!(
            answer.status(),
            200,
            "round {round}: B does not know A's key yet"
        );
        let listed: Value = http
            .get(b.url("/v1/keys?org_id=acme"))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            listed["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["id"] == id && k["scopes"] == json!(["read"]))
        );

        // Revoked through B, revoked through A on the very next request.
        let revoked = http
            .delete(b.url(&format!("/v1/keys/{id}")))
            .bearer_auth(ADMIN)
            .send()
            .unwrap();
        assert_eq!(revoked.status(), 200);
        let answer = http.get(a.url(&revocation)).send().unwrap();
        assert_eq!(
            answer.status(),
            410,
            "round {round}: A still thinks the key is active"
        );
        // And revoking again through A keeps B's time.
        let again: Value = http
            .delete(a.url(&format!("/v1/keys/{id}")))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let first: Value = http
            .get(b.url("/v1/keys?org_id=acme"))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let stored = first["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()["revoked_at"]
            .clone();
        assert_eq!(again["revoked_at"], stored);
    }
    for replica in [&a, &b] {
        let log = replica.proc.log_text();
        assert!(
            log.contains("backend=postgres") || log.contains("postgres"),
            "{log}"
        );
        assert!(!log.contains(SECRET) && !log.contains(ADMIN), "{log}");
    }
}

/// Stop PostgreSQL under a running keyservice: every route that needs it answers 503 with a
/// JSON reason, nothing is half-written, and it recovers by itself once the server is back.
#[tokio::test]
async fn database_outage_is_503_and_recovers_by_itself() {
    let cluster = PgCluster::start();
    let url = cluster.create_database().await;
    let options = StoreOptions {
        acquire_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    let h = Harness::on(&url, options, |s| s).await;
    let created = h.create(json!({"user_id": "u", "name": "before"})).await;
    assert_eq!(created.status, 201);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let revocation = format!(
        "/v1/revocations/{}",
        sha256_hex(created.json["key"].as_str().unwrap())
    );
    assert_eq!(h.get(&revocation).await.status, 200);
    assert_eq!(h.get("/readyz").await.status, 200);

    // A usage report the edge will keep and send again while the database is away.
    let today = keyservice::time::today();
    let report = json!({"batch": "0000000000000000000000000000000a", "dropped": 0, "keys": [{
        "sha256": sha256_hex(created.json["key"].as_str().unwrap()), "day": today,
        "last_used_ms": today * 86_400_000 + 1, "allowed": 4, "forbidden": 0, "rate_limited": 0
    }]});

    cluster.stop();
    let started = Instant::now();
    let down = [
        ("GET", revocation.clone(), None),
        (
            "POST",
            "/v1/keys".to_owned(),
            Some(json!({"user_id": "u", "name": "during"})),
        ),
        ("GET", "/v1/keys".to_owned(), None),
        ("DELETE", format!("/v1/keys/{id}"), None),
        (
            "PATCH",
            format!("/v1/keys/{id}"),
            Some(json!({"rate_limits": [{"requests": 1, "per_seconds": 1}]})),
        ),
        ("GET", format!("/v1/keys/{id}/usage"), None),
        ("POST", "/v1/usage".to_owned(), Some(report.clone())),
        ("GET", "/readyz".to_owned(), None),
    ];
    for (method, uri, body) in &down {
        let r = h.admin(method, uri, body.clone()).await;
        assert_eq!(r.status, 503, "{method} {uri}: {}", r.text);
        assert_eq!(
            r.json,
            json!({"error": "unavailable", "message": "the database is unavailable"}),
            "{method} {uri}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "503s should come within the acquire timeout, took {:?}",
        started.elapsed()
    );
    assert_eq!(h.get("/healthz").await.status, 200, "alive, only not ready");
    let m = h.metrics().await;
    assert!(
        sample(&m, "keyservice_database_errors_total{kind=\"unavailable\"}") >= 5.0,
        "{m}"
    );
    assert!(
        sample(&m, "keyservice_revocation_lookups_total{result=\"error\"}") >= 1.0,
        "{m}"
    );

    cluster.restart();
    let deadline = Instant::now() + SOON;
    loop {
        let r = h.get("/readyz").await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready {SOON:?} after PostgreSQL came back: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every route works again, with nothing from the outage: the POST wrote no row and the
    // DELETE revoked nothing.
    assert_eq!(h.get(&revocation).await.status, 200);
    let listed = h.admin("GET", "/v1/keys", None).await;
    let names: Vec<&str> = listed.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["before"]);
    assert_eq!(
        listed.json["keys"][0]["rate_limits"],
        json!([]),
        "the PATCH wrote nothing"
    );
    assert_eq!(
        listed.json["keys"][0]["last_used_at"],
        Value::Null,
        "the report wrote nothing"
    );
    assert_eq!(h.row_count().await, 1);
    assert!(
        sample(
            &h.metrics().await,
            "keyservice_usage_reports_total{result=\"error\"}"
        ) >= 1.0
    );
    // The report sent again is applied, once.
    for _ in 0..2 {
        let r = h.admin("POST", "/v1/usage", Some(report.clone())).await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let usage = h.admin("GET", &format!("/v1/keys/{id}/usage"), None).await;
    assert_eq!(usage.json["totals"]["allowed"], 4, "{}", usage.text);
    let after = h.create(json!({"user_id": "u", "name": "after"})).await;
    assert_eq!(after.status, 201, "{}", after.text);
    let r = h.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.get(&revocation).await.status, 410);
}

/// A real keyservice process started while PostgreSQL is still down waits for it.
#[test]
fn serve_waits_for_a_database_that_is_starting() {
    let cluster = PgCluster::start();
    let url = cluster.create_database_blocking();
    cluster.stop();
    let dir = tempfile::tempdir().unwrap();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        cluster.restart();
        cluster
    });
    let server = start_keyservice(&url, dir.path(), "waiting", &["--database-wait", "60s"]);
    let _cluster = restarter.join().unwrap();
    let ready = poll(SOON, Duration::from_millis(100), || {
        let r = client().get(server.url("/readyz")).send().ok()?;
        (r.status() == 200).then_some(())
    });
    assert!(ready.is_some(), "{}", server.proc.log_text());
    assert!(
        server.proc.log_text().contains("retrying"),
        "{}",
        server.proc.log_text()
    );
}

fn cli(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyservice"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("JWT_SECRET", SECRET)
        .output()
        .unwrap()
}

#[test]
fn the_cli_works_on_postgres() {
    let url = pg::shared().create_database_blocking();
    let out = cli(
        &url,
        &[
            "issue",
            "--user",
            "boot",
            "--org",
            "acme",
            "--name",
            "bootstrap",
            "--scope",
            "keys:write",
            "--scope",
            "read",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(String::from_utf8_lossy(&out.stderr).contains("scopes: keys:write read"));
    let out = cli(&url, &["list", "--json", "--org", "acme"]);
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["scopes"], json!(["keys:write", "read"]));
    assert_eq!(line["user_id"], "boot");
    let id = line["id"].as_str().unwrap();
    let out = cli(&url, &["revoke", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&url, &["list", "--json", "--org", "nobody"]);
    assert!(out.stdout.is_empty());
    assert!(!key.is_empty());
    // A server that cannot be reached is an error that says so, quickly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = cli(
        &format!("postgres://postgres@127.0.0.1:{closed}/x"),
        &["list"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("database unavailable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
