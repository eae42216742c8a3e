//! keyservice as the rig runs it: `keyservice serve` on SQLite in the rig's tempdir, and the
//! admin calls the tests make to it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::http::client;
use testkit::process::{Server, spawn_listening, wait_output};
use testkit::token::sha256_hex;

use super::ADMIN_TOKEN;

pub struct Keyservice {
    server: Server,
    pub database: String,
    bin: PathBuf,
    secret: String,
    client: reqwest::blocking::Client,
}

#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub id: String,
    pub key: String,
}

impl Keyservice {
    /// `keyservice serve` on a free loopback port, plus `extra_args` (e.g.
    /// `--cache-active-seconds 1`). Settings it would otherwise read from this process's
    /// environment are removed, so only the arguments count.
    pub fn start(bin: &Path, dir: &Path, secret: &str, extra_args: &[String]) -> Self {
        let database = format!("sqlite://{}", dir.join("keyservice.db").display());
        Self::start_on(bin, dir, &database, secret, extra_args)
    }

    /// `keyservice serve` on `database`, its logs in `dir` (a replica: another process on the
    /// same database, in a directory of its own).
    pub fn start_on(
        bin: &Path,
        dir: &Path,
        database: &str,
        secret: &str,
        extra_args: &[String],
    ) -> Self {
        let database = database.to_owned();
        let mut command = Command::new(bin);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
            .args(["--admin-token", ADMIN_TOKEN])
            .args(extra_args)
            .env("JWT_SECRET", secret)
            .env_remove("KEYSERVICE_ADMIN_TOKEN")
            .env_remove("KEYSERVICE_CACHE_ACTIVE_SECONDS")
            .env_remove("KEYSERVICE_CACHE_REVOKED_SECONDS");
        Keyservice {
            server: spawn_listening("keyservice", command, dir),
            database,
            bin: bin.to_owned(),
            secret: secret.to_owned(),
            client: client(),
        }
    }

    /// Kills keyservice: from now on the edge's callouts and feed polls fail.
    pub fn kill(&mut self) {
        self.server.proc.kill();
    }

    /// The value of a series on keyservice's `/metrics` (e.g.
    /// `keyservice_revocation_feed_reads_total{result="start"}`); 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .and_then(|response| response.text())
            .unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// `POST /v1/keys`; `expires_in_seconds: None` issues a key without `exp`.
    pub fn issue(
        &self,
        user_id: &str,
        org_id: Option<&str>,
        expires_in_seconds: Option<u64>,
    ) -> IssuedKey {
        let mut request = json!({"user_id": user_id, "name": format!("test key of {user_id}")});
        if let Some(org_id) = org_id {
            request["org_id"] = json!(org_id);
        }
        if let Some(seconds) = expires_in_seconds {
            request["expires_in_seconds"] = json!(seconds);
        }
        let response = self
            .client
            .post(self.url("/v1/keys"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&request)
            .send()
            .unwrap_or_else(|err| {
                panic!("POST /v1/keys: {err}\n{}", self.server.proc.log_tail(20))
            });
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        assert_eq!(status, 201, "POST /v1/keys {request}: {status} {text}");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("POST /v1/keys answered non-JSON {text:?}: {err}"));
        let id = match &body["id"] {
            Value::String(id) => id.clone(),
            Value::Number(id) => id.to_string(),
            other => panic!("POST /v1/keys answered no usable id ({other}): {text}"),
        };
        let key = body["key"]
            .as_str()
            .unwrap_or_else(|| panic!("POST /v1/keys answered no key: {text}"))
            .to_owned();
        IssuedKey { id, key }
    }

    /// `DELETE /v1/keys/{id}`.
    pub fn revoke(&self, id: &str) {
        let response = self
            .client
            .delete(self.url(&format!("/v1/keys/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .unwrap_or_else(|err| panic!("DELETE /v1/keys/{id}: {err}"));
        let status = response.status();
        assert!(
            status.is_success(),
            "DELETE /v1/keys/{id}: {status} {}",
            response.text().unwrap_or_default()
        );
    }

    /// `GET /v1/revocations/{sha256}`: the status keyservice itself answers for a token.
    pub fn revocation_status(&self, token: &str) -> u16 {
        self.client
            .get(self.url(&format!("/v1/revocations/{}", sha256_hex(token))))
            .send()
            .map(|response| response.status().as_u16())
            .unwrap_or_else(|err| panic!("GET /v1/revocations: {err}"))
    }

    /// `GET /v1/revocations/{sha256}`: the status and `Cache-Control` keyservice answers.
    pub fn revocation_answer(&self, token: &str) -> (u16, Option<String>) {
        let response = self
            .client
            .get(self.url(&format!("/v1/revocations/{}", sha256_hex(token))))
            .send()
            .unwrap_or_else(|err| panic!("GET /v1/revocations: {err}"));
        let cache_control = response
            .headers()
            .get("cache-control")
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        (response.status().as_u16(), cache_control)
    }

    /// `keyservice --database … import --name NAME` with the token on stdin.
    pub fn import(&self, token: &str, name: &str) {
        let mut child = Command::new(&self.bin)
            .args(["--database", &self.database, "import", "--name", name])
            .env("JWT_SECRET", &self.secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting keyservice import");
        {
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(format!("{token}\n").as_bytes())
                .expect("writing the token to keyservice import");
        }
        let output = wait_output(child, Duration::from_secs(30), "keyservice import");
        assert!(
            output.status.success(),
            "keyservice import failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
