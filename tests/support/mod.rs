//! The harness behind keygate's integration tests: a real Envoy with the built filter, a real
//! keyservice and echo-upstream, all on loopback ports picked by the OS, in a per-test tempdir.
//!
//! `Rig::builder()....start()` starts them and waits until Envoy is ready; dropping the `Rig`
//! kills everything. Every wait has a deadline and fails with the tail of the relevant log.
//! The binaries come from `ENVOY_BIN`, `KEYGATE_WASM`, `KEYSERVICE_BIN` and `ECHO_UPSTREAM_BIN`
//! (set by `make test`), or their default places in the repository.
#![allow(dead_code)] // each test crate uses a different part of this module

pub mod idp;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The secret the rig's keyservice signs with and the filter reads from `JWT_SECRET`.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const ADMIN_TOKEN: &str = "integration-test-admin-token";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Binaries

pub struct Bins {
    pub envoy: PathBuf,
    pub wasm: PathBuf,
    pub keyservice: PathBuf,
    pub echo_upstream: PathBuf,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binaries under test. A missing one fails the test (never skips it): `make test` builds
/// and installs all of them.
pub fn bins() -> Bins {
    Bins {
        envoy: bin("ENVOY_BIN", ".venv/bin/envoy"),
        wasm: bin("KEYGATE_WASM", "target/wasm32-wasip1/release/keygate.wasm"),
        keyservice: bin("KEYSERVICE_BIN", "target/debug/keyservice"),
        echo_upstream: bin("ECHO_UPSTREAM_BIN", "target/debug/echo-upstream"),
    }
}

fn bin(var: &str, default: &str) -> PathBuf {
    let (path, from) = match std::env::var_os(var) {
        Some(value) if !value.is_empty() => (PathBuf::from(value), format!("${var}")),
        _ => (
            repo_root().join(default),
            format!("default for unset ${var}"),
        ),
    };
    assert!(
        path.is_file(),
        "{} ({from}) does not exist. Run the integration tests with `make test`, which installs \
         Envoy, builds the filter, keyservice and echo-upstream and sets {var}; or run \
         `make tools build` first.",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// Tokens

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

pub fn sign(claims: &Value, secret: &str) -> String {
    sign_alg(Algorithm::HS256, claims, secret)
}

pub fn sign_alg(alg: Algorithm, claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing a test token")
}

/// A key the way ComfyUI Deploy makes them: `jwt.sign({user_id, org_id}, JWT_SECRET)`, i.e.
/// HS256 with `iat` and no `exp`.
pub fn comfyui_deploy_key(user_id: &str, org_id: &str, secret: &str) -> String {
    sign(
        &json!({"user_id": user_id, "org_id": org_id, "iat": now()}),
        secret,
    )
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

// ---------------------------------------------------------------------------------------------
// Plugin configuration

/// The documented plugin configuration (the one envoy/envoy.yaml ships), revocation callouts to
/// the Envoy cluster `keyservice`.
pub fn default_plugin_config() -> Value {
    json!({
        "secret": {"env": "JWT_SECRET"},
        "algorithms": ["HS256", "HS384", "HS512"],
        "clock_skew_seconds": 60,
        "max_token_bytes": 8192,
        "realm": "keygate",
        "claims_to_headers": {"user_id": "x-user-id", "org_id": "x-org-id"},
        "strip_authorization": false,
        "revocation": {
            "cluster": "keyservice",
            "authority": "keyservice",
            "path_prefix": "/v1/revocations/",
            "timeout_ms": 500,
            "check": "non_expiring",
            "unknown_keys": "deny",
            "failure_mode": "deny"
        }
    })
}

/// [`default_plugin_config`] with the shared revocation cache off (`revocation.cache.max_entries:
/// 0`): every check of a non-expiring key is a callout. For the tests of the revocation protocol
/// itself, which count one callout per request.
pub fn uncached_plugin_config() -> Value {
    let mut config = default_plugin_config();
    config["revocation"]["cache"] = json!({"max_entries": 0});
    config
}

/// Envoy's bootstrap, as JSON: listener and admin on port 0, the wasm filter then the router,
/// cluster `echo` for the upstream and cluster `keyservice` for the filter's callouts.
pub fn envoy_config(
    wasm: &Path,
    echo: SocketAddr,
    keyservice: SocketAddr,
    plugin_config: &str,
) -> Value {
    let cluster = |name: &str, addr: SocketAddr| {
        json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(addr)}}]}]
            }
        })
    };
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        // Histograms reach the admin pages at each flush (default 5 s): sooner for the tests.
        "stats_flush_interval": "1s",
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": {
                            "name": "local",
                            "virtual_hosts": [{
                                "name": "everything",
                                "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]
                            }]
                        },
                        "http_filters": [
                            {
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
                                            "value": plugin_config
                                        }
                                    }
                                }
                            },
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                }
                            }
                        ]
                    }
                }]}]
            }],
            "clusters": [cluster("echo", echo), cluster("keyservice", keyservice)]
        }
    })
}

/// A shipped Envoy configuration (YAML, relative to the repository root) as JSON.
pub fn shipped_bootstrap(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|err| panic!("{relative} is not YAML: {err}"))
}

/// Moves a bootstrap onto loopback for a test, changing nothing else: the admin interface and
/// every listener on 127.0.0.1 port 0 (the admin added where the bootstrap has none), cluster
/// `keyservice` to `keyservice`, every other cluster to `echo`, and the keygate module loaded
/// from `wasm`.
pub fn loopback_bootstrap(
    mut config: Value,
    wasm: &Path,
    echo: SocketAddr,
    keyservice: SocketAddr,
) -> Value {
    let any_port = json!({"socket_address": {"address": "127.0.0.1", "port_value": 0}});
    config["admin"]["address"] = any_port.clone();
    config["stats_flush_interval"] = json!("1s");
    let resources = &mut config["static_resources"];
    for listener in resources["listeners"].as_array_mut().into_iter().flatten() {
        listener["address"] = any_port.clone();
    }
    for cluster in resources["clusters"].as_array_mut().into_iter().flatten() {
        let name = cluster["name"].as_str().unwrap_or_default().to_owned();
        let addr = if name == "keyservice" {
            keyservice
        } else {
            echo
        };
        cluster["type"] = json!("STATIC");
        cluster["load_assignment"] = json!({
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(addr)}}]}]
        });
    }
    for filter in wasm_filters_mut(&mut config) {
        filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] =
            json!(wasm.display().to_string());
    }
    config
}

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// The HTTP filter list of every HTTP connection manager of a bootstrap's listeners.
fn http_filter_lists_mut(config: &mut Value) -> Vec<&mut Vec<Value>> {
    let mut lists = Vec::new();
    let listeners = config["static_resources"]["listeners"].as_array_mut();
    for listener in listeners.into_iter().flatten() {
        let chains = listener["filter_chains"].as_array_mut();
        for chain in chains.into_iter().flatten() {
            for network in chain["filters"].as_array_mut().into_iter().flatten() {
                lists.extend(network["typed_config"]["http_filters"].as_array_mut());
            }
        }
    }
    lists
}

/// Every Wasm HTTP filter of a bootstrap's listeners.
fn wasm_filters_mut(config: &mut Value) -> Vec<&mut Value> {
    http_filter_lists_mut(config)
        .into_iter()
        .flatten()
        .filter(|filter| filter["typed_config"]["@type"] == WASM_FILTER)
        .collect()
}

/// The bootstrap without keygate: Envoy as it would forward requests with no filter deciding.
pub fn without_keygate(config: &Value) -> Value {
    let mut config = config.clone();
    for filters in http_filter_lists_mut(&mut config) {
        filters.retain(|filter| filter["typed_config"]["@type"] != WASM_FILTER);
    }
    config
}

/// Changes keygate's plugin configuration (the JSON in its `StringValue`) in a bootstrap.
pub fn edit_plugin_config(config: &mut Value, edit: impl Fn(&mut Value)) {
    let filters = wasm_filters_mut(config);
    assert!(!filters.is_empty(), "the bootstrap has no Wasm filter");
    for filter in filters {
        let value = &mut filter["typed_config"]["config"]["configuration"]["value"];
        let mut plugin: Value = serde_json::from_str(value.as_str().unwrap_or_default())
            .unwrap_or_else(|err| panic!("keygate's configuration is not JSON: {err}"));
        edit(&mut plugin);
        *value = json!(plugin.to_string());
    }
}

/// Adds a STATIC cluster `name` → `addr` to an Envoy bootstrap made by [`envoy_config`] (e.g.
/// `idp`, the test identity provider the filter fetches a JWKS from).
pub fn add_cluster(config: &mut Value, name: &str, addr: SocketAddr) {
    let clusters = config["static_resources"]["clusters"]
        .as_array_mut()
        .expect("the bootstrap has a clusters list");
    clusters.retain(|cluster| cluster["name"] != name);
    clusters.push(json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(addr)}}]}]
        }
    }));
}

/// Replaces the routes of an Envoy bootstrap made by [`envoy_config`].
pub fn set_routes(config: &mut Value, routes: Value) {
    let manager = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
    manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"] = routes;
}

/// A plugin configuration with these `providers` (and revocation callouts to the Envoy cluster
/// `keyservice`, which API-key providers use).
pub fn providers_plugin_config(providers: &[Value]) -> Value {
    json!({
        "revocation": {"cluster": "keyservice", "timeout_ms": 500},
        "providers": providers,
    })
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed (and reaped) on drop, with its output in files of the rig's tempdir.
pub struct Proc {
    pub name: String,
    child: Child,
    logs: Vec<PathBuf>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to exit by itself, at most `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, Duration::from_millis(50), || self.try_wait())
    }

    /// The last `lines` lines of each of its log files.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for path in &self.logs {
            let text = fs::read_to_string(path).unwrap_or_default();
            // Envoy's startup lists every extension on indented lines: noise here.
            let all: Vec<&str> = text
                .lines()
                .filter(|line| {
                    !line
                        .rsplit_once("] ")
                        .is_some_and(|(_, msg)| msg.starts_with("  "))
                })
                .collect();
            let start = all.len().saturating_sub(lines);
            let _ = writeln!(out, "---- {} ({}) ----", self.name, path.display());
            for line in &all[start..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    /// The full text of all its logs.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|path| fs::read_to_string(path).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server that prints `listening on http://ADDR` on stdout, and returns it with ADDR.
fn spawn_listening(name: &str, mut command: Command, dir: &Path) -> (Proc, SocketAddr) {
    let stdout_log = dir.join(format!("{name}.stdout"));
    let stderr_log = dir.join(format!("{name}.stderr"));
    let stderr = fs::File::create(&stderr_log).expect("creating a log file");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|err| panic!("starting {name} ({command:?}): {err}"));
    let mut proc = Proc {
        name: name.to_owned(),
        child,
        logs: vec![stdout_log.clone(), stderr_log],
    };
    let stdout = proc.child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Reads stdout to the end (so the child never blocks on a full pipe), copying it to a file
    // and handing over the first "listening on" line.
    thread::spawn(move || {
        let mut file = fs::File::create(stdout_log).ok();
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = file.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            if let Some(rest) = line.trim().strip_prefix("listening on http://")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    let addr = match rx.recv_timeout(START_TIMEOUT) {
        Ok(addr) => addr,
        Err(err) => panic!(
            "{name} did not print 'listening on http://ADDR' ({err}; exit status {:?})\n{}",
            proc.try_wait(),
            proc.log_tail(40)
        ),
    };
    let addr = addr
        .parse()
        .unwrap_or_else(|err| panic!("{name} printed a bad address {addr:?}: {err}"));
    (proc, addr)
}

/// Polls `f` every `interval` until it returns `Some`, at most `timeout`.
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(interval);
    }
}

pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("building an HTTP client")
}

/// A loopback port nothing listens on.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    listener.local_addr().expect("local address")
}

// ---------------------------------------------------------------------------------------------
// keyservice

pub struct Keyservice {
    proc: Proc,
    pub addr: SocketAddr,
    pub database: String,
    bin: PathBuf,
    secret: String,
    client: reqwest::blocking::Client,
}

#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub id: String,
    pub key: String,
    pub body: Value,
}

impl Keyservice {
    /// `keyservice serve` on a free loopback port, plus `extra_args` (e.g.
    /// `--cache-active-seconds 1`). Settings it would otherwise read from this process's
    /// environment are removed, so only the arguments count.
    pub fn start(bin: &Path, dir: &Path, secret: &str, extra_args: &[String]) -> Self {
        let database = format!("sqlite://{}", dir.join("keyservice.db").display());
        let mut command = Command::new(bin);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
            .args(["--admin-token", ADMIN_TOKEN])
            .args(extra_args)
            .env("JWT_SECRET", secret)
            .env_remove("KEYSERVICE_ADMIN_TOKEN")
            .env_remove("KEYSERVICE_CACHE_ACTIVE_SECONDS")
            .env_remove("KEYSERVICE_CACHE_REVOKED_SECONDS");
        let (proc, addr) = spawn_listening("keyservice", command, dir);
        Keyservice {
            proc,
            addr,
            database,
            bin: bin.to_owned(),
            secret: secret.to_owned(),
            client: http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
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
            .unwrap_or_else(|err| panic!("POST /v1/keys: {err}\n{}", self.proc.log_tail(20)));
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
        IssuedKey { id, key, body }
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

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Collects a child's output, killing it if it runs past `timeout`.
pub fn wait_output(mut child: Child, timeout: Duration, what: &str) -> Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
    );
    let status = poll(timeout, Duration::from_millis(50), || {
        child.try_wait().ok().flatten()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        panic!(
            "{what} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy

struct EnvoyFiles {
    config: PathBuf,
    admin_address: PathBuf,
    log: PathBuf,
    output: PathBuf,
}

fn spawn_envoy(
    bins: &Bins,
    dir: &Path,
    config: &Value,
    secret: Option<&str>,
    concurrency: u32,
) -> Proc {
    let files = EnvoyFiles {
        config: dir.join("envoy.json"),
        admin_address: dir.join("envoy-admin-address"),
        log: dir.join("envoy.log"),
        output: dir.join("envoy.output"),
    };
    let text = serde_json::to_string_pretty(config).expect("serializing the Envoy config");
    fs::write(&files.config, text).expect("writing the Envoy config");
    let output = fs::File::create(&files.output).expect("creating Envoy's output file");
    let output_err = output.try_clone().expect("cloning a file handle");
    let mut command = Command::new(&bins.envoy);
    command
        .arg("-c")
        .arg(&files.config)
        .arg("--admin-address-path")
        .arg(&files.admin_address)
        .arg("--log-path")
        .arg(&files.log)
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--use-dynamic-base-id")
        // The log file is otherwise flushed every 10s: failure messages show its tail.
        .args(["--file-flush-interval-msec", "100"])
        .args(["-l", "info", "--component-log-level", "wasm:debug"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(output_err);
    match secret {
        Some(secret) => command.env("JWT_SECRET", secret),
        None => command.env_remove("JWT_SECRET"),
    };
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("starting Envoy {}: {err}", bins.envoy.display()));
    Proc {
        name: "envoy".to_owned(),
        child,
        logs: vec![files.log, files.output],
    }
}

/// Which address the Envoy cluster `keyservice` points at.
#[derive(Debug, Clone, Copy)]
pub enum RevocationTarget {
    /// The rig's own keyservice.
    Keyservice,
    /// Something else: a fault server, or a closed port.
    At(SocketAddr),
}

pub struct RigBuilder {
    plugin_config: String,
    target: RevocationTarget,
    envoy_secret: Option<String>,
    concurrency: u32,
    keyservice_args: Vec<String>,
    /// Extra STATIC clusters, by name.
    clusters: Vec<(String, SocketAddr)>,
    /// The virtual host's routes, when not the single catch-all to `echo`.
    routes: Option<Value>,
    /// A whole Envoy bootstrap of the test's own, in place of [`envoy_config`].
    bootstrap: Option<Value>,
}

impl RigBuilder {
    /// The filter's configuration (JSON). Default: [`default_plugin_config`].
    pub fn plugin_config(mut self, config: &Value) -> Self {
        self.plugin_config = config.to_string();
        self
    }

    /// The filter's configuration as raw text (for configurations that are not even JSON).
    pub fn plugin_config_text(mut self, text: &str) -> Self {
        self.plugin_config = text.to_owned();
        self
    }

    /// Points the Envoy cluster `keyservice` somewhere else than the rig's keyservice.
    pub fn revocation_at(mut self, addr: SocketAddr) -> Self {
        self.target = RevocationTarget::At(addr);
        self
    }

    /// `JWT_SECRET` in Envoy's environment; `None` leaves it unset. Default: [`SECRET`].
    pub fn envoy_secret(mut self, secret: Option<&str>) -> Self {
        self.envoy_secret = secret.map(str::to_owned);
        self
    }

    /// Envoy's worker threads (`--concurrency`). Default: 1. With more, each worker runs its own
    /// Wasm VM; connections are spread over them by the kernel (`SO_REUSEPORT`).
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Extra arguments of `keyservice serve`, e.g. `["--cache-active-seconds", "1"]`.
    pub fn keyservice_args(mut self, args: &[&str]) -> Self {
        self.keyservice_args = args.iter().map(|arg| (*arg).to_owned()).collect();
        self
    }

    /// An extra STATIC Envoy cluster `name` → `addr` (replacing one of that name), e.g. `idp` for
    /// a provider's `remote_jwks`.
    pub fn cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.retain(|(known, _)| known != name);
        self.clusters.push((name.to_owned(), addr));
        self
    }

    /// The routes of Envoy's one virtual host (a JSON list of `RouteConfiguration` routes), in
    /// place of the catch-all route to cluster `echo`.
    pub fn routes(mut self, routes: Value) -> Self {
        self.routes = Some(routes);
        self
    }

    /// Runs Envoy with this bootstrap (e.g. a shipped configuration, [`shipped_bootstrap`]) instead
    /// of [`envoy_config`]'s, moved onto loopback by [`loopback_bootstrap`]: cluster `keyservice`
    /// goes to the rig's keyservice, every other cluster to echo-upstream. The plugin
    /// configuration is the bootstrap's own.
    pub fn bootstrap(mut self, bootstrap: Value) -> Self {
        self.bootstrap = Some(bootstrap);
        self
    }

    /// Starts echo-upstream, keyservice and Envoy; returns once Envoy is ready.
    pub fn start(self) -> Rig {
        let bins = bins();
        let dir = tempfile::Builder::new()
            .prefix("keygate-rig-")
            .tempdir()
            .expect("creating a tempdir");
        let (echo, echo_addr) = {
            let mut command = Command::new(&bins.echo_upstream);
            command.args(["--listen", "127.0.0.1:0"]);
            spawn_listening("echo-upstream", command, dir.path())
        };
        let keyservice =
            Keyservice::start(&bins.keyservice, dir.path(), SECRET, &self.keyservice_args);
        let revocation_addr = match self.target {
            RevocationTarget::Keyservice => keyservice.addr,
            RevocationTarget::At(addr) => addr,
        };
        let mut config = match self.bootstrap {
            Some(bootstrap) => {
                loopback_bootstrap(bootstrap, &bins.wasm, echo_addr, revocation_addr)
            }
            None => envoy_config(&bins.wasm, echo_addr, revocation_addr, &self.plugin_config),
        };
        for (name, addr) in &self.clusters {
            add_cluster(&mut config, name, *addr);
        }
        if let Some(routes) = self.routes {
            set_routes(&mut config, routes);
        }
        let mut envoy = spawn_envoy(
            &bins,
            dir.path(),
            &config,
            self.envoy_secret.as_deref(),
            self.concurrency,
        );
        let client = http_client();
        let admin = wait_for_admin(&mut envoy, &dir.path().join("envoy-admin-address"), &client);
        let listener = listener_address(&envoy, admin, &client);
        Rig {
            envoy,
            keyservice,
            echo,
            client,
            admin,
            listener,
            dir,
            concurrency: self.concurrency,
        }
    }

    /// Starts Envoy alone, expecting it to refuse the configuration: returns its exit status
    /// and log once it has exited, or fails the test if it is still running after `timeout`.
    pub fn start_expecting_refusal(self, timeout: Duration) -> Refusal {
        let bins = bins();
        let dir = tempfile::Builder::new()
            .prefix("keygate-refusal-")
            .tempdir()
            .expect("creating a tempdir");
        let nowhere = closed_port();
        let config = envoy_config(&bins.wasm, nowhere, nowhere, &self.plugin_config);
        let mut envoy = spawn_envoy(
            &bins,
            dir.path(),
            &config,
            self.envoy_secret.as_deref(),
            self.concurrency,
        );
        let status = envoy.wait_timeout(timeout);
        let log = envoy.log_text();
        let tail = envoy.log_tail(30);
        drop(envoy);
        Refusal { status, log, tail }
    }
}

pub struct Refusal {
    /// `None`: Envoy was still running when the time was up (and has been killed).
    pub status: Option<ExitStatus>,
    pub log: String,
    pub tail: String,
}

fn wait_for_admin(envoy: &mut Proc, path: &Path, client: &reqwest::blocking::Client) -> SocketAddr {
    let started = Instant::now();
    let mut last = String::from("no admin address yet");
    let ready = poll(START_TIMEOUT, Duration::from_millis(50), || {
        if let Some(status) = envoy.try_wait() {
            panic!(
                "Envoy exited during startup ({status})\n{}",
                envoy.log_tail(60)
            );
        }
        let text = fs::read_to_string(path).ok()?;
        let admin: SocketAddr = text.trim().parse().ok()?;
        match client.get(format!("http://{admin}/ready")).send() {
            Ok(response) if response.status().is_success() => Some(admin),
            Ok(response) => {
                last = format!("/ready answered {}", response.status());
                None
            }
            Err(err) => {
                last = format!("/ready: {err}");
                None
            }
        }
    });
    ready.unwrap_or_else(|| {
        panic!(
            "Envoy not ready after {:?} ({last})\n{}",
            started.elapsed(),
            envoy.log_tail(60)
        )
    })
}

fn listener_address(
    envoy: &Proc,
    admin: SocketAddr,
    client: &reqwest::blocking::Client,
) -> SocketAddr {
    let body: Value = client
        .get(format!("http://{admin}/listeners?format=json"))
        .send()
        .and_then(|response| response.json())
        .unwrap_or_else(|err| panic!("GET /listeners: {err}\n{}", envoy.log_tail(30)));
    let port = body["listener_statuses"]
        .as_array()
        .and_then(|listeners| listeners.iter().find(|listener| listener["name"] == "main"))
        .and_then(|listener| listener["local_address"]["socket_address"]["port_value"].as_u64())
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or_else(|| panic!("no port for listener 'main' in /listeners: {body}"));
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Envoy with the filter, keyservice and echo-upstream, for one test. Dropping it stops them.
pub struct Rig {
    // Dropped in this order: Envoy first, the tempdir last.
    pub envoy: Proc,
    pub keyservice: Keyservice,
    echo: Proc,
    client: reqwest::blocking::Client,
    pub admin: SocketAddr,
    pub listener: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Envoy's worker threads.
    pub concurrency: u32,
}

impl Rig {
    pub fn builder() -> RigBuilder {
        RigBuilder {
            plugin_config: default_plugin_config().to_string(),
            target: RevocationTarget::Keyservice,
            envoy_secret: Some(SECRET.to_owned()),
            concurrency: 1,
            keyservice_args: Vec::new(),
            clusters: Vec::new(),
            routes: None,
            bootstrap: None,
        }
    }

    /// The default rig: the documented plugin configuration, callouts to keyservice.
    pub fn start() -> Rig {
        Rig::builder().start()
    }

    /// `GET path` through Envoy with these request headers.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers, None)
    }

    /// A request through Envoy; repeated header names are sent repeated, not merged.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self
            .client
            .request(method.clone(), format!("http://{}{path}", self.listener));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().unwrap_or_else(|err| {
            panic!(
                "{method} {path} through Envoy: {err}\n{}",
                self.envoy.log_tail(30)
            )
        });
        let status = response.status().as_u16();
        let mut reply_headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in response.headers() {
            reply_headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let body = response.text().unwrap_or_default();
        Reply {
            status,
            headers: reply_headers,
            body,
        }
    }

    /// `GET /` with `Authorization: Bearer <token>` plus these headers.
    pub fn get_with_token(&self, token: &str, extra: &[(&str, &str)]) -> Reply {
        let authorization = format!("Bearer {token}");
        let mut headers = vec![("authorization", authorization.as_str())];
        headers.extend_from_slice(extra);
        self.get("/", &headers)
    }

    /// A request on a new TCP connection of its own (`Connection: close`), written byte for
    /// byte: the path reaches Envoy exactly as given, without the normalisation an HTTP client
    /// library applies (`/a/../b`, `//b` and `/%61` stay as they are).
    pub fn raw_request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        raw_http(self.listener, method, path, headers).unwrap_or_else(|err| {
            panic!(
                "{method} {path} through Envoy (raw): {err}\n{}",
                self.envoy.log_tail(30)
            )
        })
    }

    /// Envoy's counter `cluster.keyservice.upstream_rq_total`: how many revocation callouts the
    /// filter has made.
    pub fn callouts(&self) -> u64 {
        self.stat("cluster.keyservice.upstream_rq_total")
    }

    /// Every counter and gauge on the admin's `/stats?format=json`, by name.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let body: Value = self
            .client
            .get(format!("http://{}/stats?format=json", self.admin))
            .send()
            .and_then(|response| response.json())
            .unwrap_or_else(|err| panic!("GET /stats?format=json: {err}"));
        body["stats"]
            .as_array()
            .unwrap_or_else(|| panic!("/stats?format=json has no stats list: {body}"))
            .iter()
            .filter_map(|stat| Some((stat["name"].as_str()?.to_owned(), stat["value"].as_u64()?)))
            .collect()
    }

    /// One counter or gauge by the exact name Envoy shows, e.g.
    /// `wasmcustom.keygate.requests_allowed`. Fails the test when Envoy has no such stat.
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.stats();
        stats.get(name).copied().unwrap_or_else(|| {
            let similar: Vec<&String> = stats
                .keys()
                .filter(|known| known.contains("keygate") || known.contains(name))
                .collect();
            panic!("no stat {name} on /stats; similar ones: {similar:?}")
        })
    }

    /// keygate's counter `keygate.<name>` (the filter's name; Envoy shows it as
    /// `wasmcustom.keygate.<name>`), e.g. `keygate_stat("requests_allowed")`. keygate hands its
    /// counts to Envoy once per tick, so this waits for a tick first.
    pub fn keygate_stat(&self, name: &str) -> u64 {
        self.wait_for_keygate_counts();
        self.stat(&format!("{KEYGATE_STATS}{name}"))
    }

    /// Waits until every VM of the filter has handed over the counts made so far: each counts a
    /// flush per tick (`keygate.counts_flushed`), so two flushes more per VM (the workers and the
    /// main thread's) than at the start mean that each has flushed since.
    pub fn wait_for_keygate_counts(&self) {
        let flushes = || self.stat(&format!("{KEYGATE_STATS}counts_flushed"));
        let start = flushes();
        let wanted = start + 2 * (u64::from(self.concurrency) + 1);
        let mut seen = start;
        poll(Duration::from_secs(20), Duration::from_millis(20), || {
            seen = flushes();
            (seen >= wanted).then_some(())
        })
        .unwrap_or_else(|| {
            panic!("keygate.counts_flushed went from {start} to {seen}, not {wanted}: no ticks?")
        });
    }

    /// Every keygate counter, by its short name (`requests_allowed`, ...), in one admin call
    /// (after a tick, as `keygate_stat`).
    pub fn keygate_counters(&self) -> BTreeMap<String, u64> {
        self.wait_for_keygate_counts();
        self.stats()
            .into_iter()
            .filter_map(|(name, value)| Some((name.strip_prefix(KEYGATE_STATS)?.to_owned(), value)))
            .collect()
    }

    /// The names of the histograms on `/stats?format=json` (listed once Envoy has flushed them).
    pub fn histogram_names(&self) -> Result<Vec<String>, String> {
        let body: Value = self
            .client
            .get(format!("http://{}/stats?format=json", self.admin))
            .send()
            .and_then(|response| response.json())
            .map_err(|err| format!("GET /stats?format=json: {err}"))?;
        let names = body["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|stat| stat["histograms"]["computed_quantiles"].as_array())
            .flatten()
            .filter_map(|histogram| histogram["name"].as_str().map(str::to_owned))
            .collect();
        Ok(names)
    }

    /// A sample of `/stats/prometheus` by its name there, e.g. `keygate_requests_allowed` (Envoy
    /// drops the `wasmcustom` namespace there and adds no `envoy_` prefix to it); the first
    /// series' value. `None` while the page does not have it.
    pub fn prometheus_value(&self, sample: &str) -> Option<u64> {
        let text = self
            .client
            .get(format!("http://{}/stats/prometheus", self.admin))
            .send()
            .and_then(|response| response.text())
            .unwrap_or_else(|err| panic!("GET /stats/prometheus: {err}"));
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            let name = name.split('{').next()?;
            (name == sample)
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
                .map(|value| value as u64)
        })
    }

    /// How many samples a histogram holds, by its name on `/stats/prometheus` (e.g.
    /// `keygate_callout_latency_ms`), read from `<name>_count`.
    pub fn histogram_count(&self, prometheus_name: &str) -> Option<u64> {
        self.prometheus_value(&format!("{prometheus_name}_count"))
    }

    /// Waits (at most `timeout`) for a histogram to hold at least `samples` samples: Envoy merges
    /// the workers' histograms at each stats flush (every second in the rig). Returns the count.
    pub fn wait_for_histogram_count(
        &self,
        prometheus_name: &str,
        samples: u64,
        timeout: Duration,
    ) -> Result<u64, String> {
        let mut last = None;
        poll(timeout, Duration::from_millis(200), || {
            last = self.histogram_count(prometheus_name);
            last.filter(|count| *count >= samples)
        })
        .ok_or_else(|| {
            format!(
                "histogram {prometheus_name} has {last:?} samples after {timeout:?}, expected at least {samples}"
            )
        })
    }

    /// Connections each Envoy worker has accepted on the main listener
    /// (`listener.127.0.0.1_0.worker_<n>.downstream_cx_total`), indexed by worker.
    pub fn connections_per_worker(&self) -> Vec<u64> {
        let mut workers: Vec<(usize, u64)> = self
            .stats()
            .into_iter()
            .filter_map(|(name, value)| {
                let worker = name
                    .strip_prefix("listener.127.0.0.1_0.worker_")?
                    .strip_suffix(".downstream_cx_total")?;
                Some((worker.parse().ok()?, value))
            })
            .collect();
        workers.sort_unstable();
        workers.into_iter().map(|(_, value)| value).collect()
    }

    /// For failure messages: waits for Envoy to flush its log file, then reads its tail.
    pub fn envoy_log_tail(&self, lines: usize) -> String {
        thread::sleep(Duration::from_millis(300));
        self.envoy.log_tail(lines)
    }
}

/// The prefix of keygate's stats on Envoy's admin `/stats` page: the filter defines
/// `keygate.<name>` and Envoy files stats defined by Wasm code under its custom namespace.
pub const KEYGATE_STATS: &str = "wasmcustom.keygate.";

/// One HTTP/1.1 request on a new connection, written as given (see [`Rig::raw_request`]), and the
/// response read until Envoy closes the connection.
pub fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let stream = send_raw(addr, method, path, headers)?;
    read_raw(stream, method == "HEAD")
}

/// Sends one HTTP/1.1 request, written as given, on a new connection (`Connection: close`) and
/// returns the connection, for [`read_raw`] to read the response, or for the test to drop (the
/// client going away).
pub fn send_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|err| format!("connecting to {addr}: {err}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|err| format!("setting socket timeouts: {err}"))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("connection: close\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|err| format!("writing the request: {err}"))?;
    Ok(stream)
}

/// Reads the response to a request sent by [`send_raw`]: until it is complete by its framing
/// (Envoy delays closing the connection after a local reply by a second), or the server closes
/// the connection. `head_only`: the response to a HEAD request, which has no body.
pub fn read_raw(mut stream: TcpStream, head_only: bool) -> Result<Reply, String> {
    let mut bytes = Vec::new();
    let mut buf = [0_u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                if response_complete(&bytes, head_only) {
                    break;
                }
            }
            // A reset after a complete response still leaves the response to read.
            Err(err) if !bytes.is_empty() && err.kind() == std::io::ErrorKind::ConnectionReset => {
                break;
            }
            Err(err) => {
                return Err(format!(
                    "reading the response ({} bytes so far): {err}",
                    bytes.len()
                ));
            }
        }
    }
    parse_response(&bytes, head_only)
}

/// Whether `bytes` hold a whole response, by `content-length` or chunked framing.
fn response_complete(bytes: &[u8], head_only: bool) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    if head_only {
        return true;
    }
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let rest = &bytes[end + 4..];
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        match line.split_once(':') {
            Some((name, value)) if name.trim() == "content-length" => {
                length = value.trim().parse::<usize>().ok();
            }
            Some((name, value))
                if name.trim() == "transfer-encoding" && value.contains("chunked") =>
            {
                return rest.starts_with(b"0\r\n\r\n") || rest.ends_with(b"\r\n0\r\n\r\n");
            }
            _ => {}
        }
    }
    length.is_some_and(|length| rest.len() >= length)
}

fn parse_response(bytes: &[u8], head_only: bool) -> Result<Reply, String> {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete response head in {:?}", text()))?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line in {:?}", text()))?;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers
            .entry(name.trim().to_ascii_lowercase())
            .or_default()
            .push(value.trim().to_owned());
    }
    let rest = &bytes[end + 4..];
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|values| values.iter().any(|v| v.eq_ignore_ascii_case("chunked")));
    let body = if head_only {
        Vec::new()
    } else if chunked {
        decode_chunked(rest)?
    } else if let Some(length) = headers
        .get("content-length")
        .and_then(|values| values.first())
        .and_then(|value| value.parse::<usize>().ok())
    {
        rest.get(..length)
            .ok_or_else(|| format!("body shorter than content-length {length}: {:?}", text()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body: no chunk size line")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|err| format!("chunked body: bad size {size_text:?}: {err}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).ok_or("chunked body: short chunk")?);
        rest = rest
            .get(size + 2..)
            .ok_or("chunked body: no CRLF after a chunk")?;
    }
}

/// A response from Envoy.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Lowercase name → every value, in order.
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl Reply {
    /// The only value of a response header (`Err` when absent or repeated).
    pub fn header(&self, name: &str) -> Result<&str, String> {
        match self.headers.get(name).map(Vec::as_slice) {
            Some([value]) => Ok(value),
            None | Some([]) => Err(format!("no {name} header")),
            Some(values) => Err(format!("{name} header repeated: {values:?}")),
        }
    }

    /// What echo-upstream saw (its JSON echo).
    pub fn echo(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body)
            .map_err(|err| format!("body is not echo-upstream's JSON ({err}): {:?}", self.body))
    }

    /// A request header as echo-upstream received it (`Ok(None)` when it did not).
    pub fn echoed_header(&self, name: &str) -> Result<Option<String>, String> {
        let echo = self.echo()?;
        match &echo["headers"][name] {
            Value::Null => Ok(None),
            Value::String(value) => Ok(Some(value.clone())),
            other => Err(format!("odd echoed header {name}: {other}")),
        }
    }

    /// Status, headers and body, for failure messages.
    pub fn describe(&self) -> String {
        format!("{} {:?} {:?}", self.status, self.headers, self.body)
    }
}

// ---------------------------------------------------------------------------------------------
// Expectations: each returns Err(description) so that a test can check many cases and report
// every failing one by name.

const INVALID_BODY: &str = "Invalid or expired token";
const DEFAULT_REALM: &str = "keygate";

pub fn expect_status(reply: &Reply, status: u16) -> Result<(), String> {
    if reply.status == status {
        Ok(())
    } else {
        Err(format!(
            "expected status {status}, got {}",
            reply.describe()
        ))
    }
}

pub fn expect_body(reply: &Reply, body: &str) -> Result<(), String> {
    if reply.body == body {
        Ok(())
    } else {
        Err(format!("expected body {body:?}, got {}", reply.describe()))
    }
}

fn expect_text_plain(reply: &Reply) -> Result<(), String> {
    let content_type = reply.header("content-type")?;
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("text/plain") {
        Ok(())
    } else {
        Err(format!(
            "expected content-type text/plain, got {content_type:?}"
        ))
    }
}

/// `Bearer realm="<realm>", error="invalid_token", error_description="<short reason>"`.
fn expect_invalid_token_challenge(reply: &Reply, realm: &str) -> Result<(), String> {
    let challenge = reply.header("www-authenticate")?;
    let prefix = format!(r#"Bearer realm="{realm}", error="invalid_token", error_description=""#);
    let description = challenge
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix('"'))
        .ok_or_else(|| format!("www-authenticate {challenge:?} is not {prefix}<reason>\""))?;
    if description.is_empty() || description.contains(['"', '\\']) {
        return Err(format!("bad error_description in {challenge:?}"));
    }
    Ok(())
}

/// No credential (or not a Bearer one): 401 with the bare challenge.
pub fn expect_missing_credential(reply: &Reply) -> Result<(), String> {
    expect_missing_credential_in(reply, DEFAULT_REALM)
}

pub fn expect_missing_credential_in(reply: &Reply, realm: &str) -> Result<(), String> {
    expect_status(reply, 401)?;
    expect_body(reply, INVALID_BODY)?;
    expect_text_plain(reply)?;
    let challenge = reply.header("www-authenticate")?;
    let expected = format!(r#"Bearer realm="{realm}""#);
    if challenge != expected {
        return Err(format!(
            "expected www-authenticate {expected:?}, got {challenge:?}"
        ));
    }
    Ok(())
}

/// A credential that is not a valid token: 401 `Invalid or expired token`, error="invalid_token".
pub fn expect_invalid_token(reply: &Reply) -> Result<(), String> {
    expect_invalid_token_in(reply, DEFAULT_REALM)
}

pub fn expect_invalid_token_in(reply: &Reply, realm: &str) -> Result<(), String> {
    expect_status(reply, 401)?;
    expect_body(reply, INVALID_BODY)?;
    expect_text_plain(reply)?;
    expect_invalid_token_challenge(reply, realm)
}

/// A valid token that keyservice says is revoked (or does not know): 401 `Revoked token`.
pub fn expect_revoked(reply: &Reply) -> Result<(), String> {
    expect_revoked_in(reply, DEFAULT_REALM)
}

pub fn expect_revoked_in(reply: &Reply, realm: &str) -> Result<(), String> {
    expect_status(reply, 401)?;
    expect_body(reply, "Revoked token")?;
    expect_text_plain(reply)?;
    expect_invalid_token_challenge(reply, realm)
}

/// The revocation check failed and failure_mode is deny: 503.
pub fn expect_unavailable(reply: &Reply) -> Result<(), String> {
    expect_status(reply, 503)?;
    expect_body(reply, "Authorization service unavailable")
}

/// Allowed: 200 from echo-upstream, which saw exactly these claim headers (`None`: absent).
pub fn expect_allowed(
    reply: &Reply,
    user_id: Option<&str>,
    org_id: Option<&str>,
) -> Result<(), String> {
    expect_status(reply, 200)?;
    expect_echoed(reply, "x-user-id", user_id)?;
    expect_echoed(reply, "x-org-id", org_id)
}

pub fn expect_echoed(reply: &Reply, name: &str, expected: Option<&str>) -> Result<(), String> {
    let seen = reply.echoed_header(name)?;
    if seen.as_deref() == expected {
        Ok(())
    } else {
        Err(format!(
            "upstream saw {name}: {seen:?}, expected {expected:?} (echo: {})",
            reply.body
        ))
    }
}

/// Collects the outcome of named cases; `finish` fails the test listing every failed case.
pub struct Cases {
    failures: Vec<String>,
    passed: Vec<String>,
}

impl Cases {
    pub fn new() -> Self {
        Cases {
            failures: Vec::new(),
            passed: Vec::new(),
        }
    }

    pub fn check(&mut self, case: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.passed.push(case.to_owned()),
            Err(err) => self.failures.push(format!("case '{case}': {err}")),
        }
    }

    /// Panics if any case failed, with each failure and the tail of Envoy's log.
    pub fn finish(self, envoy_log_tail: impl FnOnce() -> String) {
        if !self.failures.is_empty() {
            panic!(
                "{} case(s) failed (passed: {:?}):\n{}\n\n{}",
                self.failures.len(),
                self.passed,
                self.failures.join("\n"),
                envoy_log_tail()
            );
        }
    }
}

impl Default for Cases {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Fault server: stands in for keyservice to make the revocation check fail.

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answers at once with this status and an empty body.
    Status(u16),
    /// Answers 200 (the key is fine), but only after this long.
    SlowOk(Duration),
    /// Answers at once with this status and this `Cache-Control` header.
    Cached(u16, &'static str),
    /// Answers this status (no `Cache-Control`) once [`FaultServer::release`] is called, or
    /// after [`HOLD_LIMIT`] so that a failing test cannot hang: a callout held out for as long
    /// as the test needs.
    Held(u16),
}

/// The longest a [`Fault::Held`] answer waits for its release.
pub const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// The gate that [`Fault::Held`] answers wait on.
#[derive(Default)]
struct Hold {
    released: Mutex<bool>,
    changed: std::sync::Condvar,
}

impl Hold {
    fn wait(&self) {
        let released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(released, HOLD_LIMIT, |released| !*released);
    }

    fn set(&self, released: bool) {
        *self.released.lock().unwrap_or_else(|e| e.into_inner()) = released;
        self.changed.notify_all();
    }
}

/// A tiny HTTP/1.1 server on a loopback port. Every connection gets one response and is closed.
/// `close` stops listening, so that the port refuses connections (keyservice down).
pub struct FaultServer {
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<String>>>,
    hold: Arc<Hold>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultServer {
    pub fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fault server");
        listener
            .set_nonblocking(true)
            .expect("making the fault server's listener non-blocking");
        let addr = listener.local_addr().expect("fault server address");
        let fault = Arc::new(Mutex::new(fault));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(Hold::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fault, requests, hold, stop) =
                (fault.clone(), requests.clone(), hold.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let fault = *fault.lock().unwrap_or_else(|e| e.into_inner());
                            let (requests, hold) = (requests.clone(), hold.clone());
                            thread::spawn(move || serve_fault(stream, fault, &requests, &hold));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                // The listener is dropped here: the port is closed from now on.
            })
        };
        FaultServer {
            addr,
            fault,
            requests,
            hold,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Lets every [`Fault::Held`] answer go, those waiting and those to come (until
    /// [`FaultServer::hold_again`]).
    pub fn release(&self) {
        self.hold.set(true);
    }

    /// [`Fault::Held`] answers wait again, from now on, until the next `release`.
    pub fn hold_again(&self) {
        self.hold.set(false);
    }

    /// How many requests it has received so far.
    pub fn request_count(&self) -> usize {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Stops listening: connections to `addr` are refused from now on.
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// The requests received so far, as `"METHOD PATH host=AUTHORITY"`.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.release();
        self.close();
    }
}

fn serve_fault(mut stream: TcpStream, fault: Fault, requests: &Mutex<Vec<String>>, hold: &Hold) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0_u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let host = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{method} {path} host={host}"));
    let (status, cache_control) = match fault {
        Fault::Status(status) => (status, None),
        Fault::SlowOk(delay) => {
            thread::sleep(delay);
            (200, None)
        }
        Fault::Cached(status, cache_control) => (status, Some(cache_control)),
        Fault::Held(status) => {
            hold.wait();
            (status, None)
        }
    };
    let cache_control = cache_control
        .map(|value| format!("cache-control: {value}\r\n"))
        .unwrap_or_default();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Fault\r\n{cache_control}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    let _ = stream.flush();
}
