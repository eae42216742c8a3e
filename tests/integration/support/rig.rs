//! The rig: Envoy with the filter, keyservice and echo-upstream, all on loopback ports picked by
//! the OS, in a per-test tempdir.
//!
//! `Rig::builder()....start()` starts them and waits until Envoy is ready; dropping the `Rig`
//! kills everything. Every wait has a deadline and fails with the tail of the relevant log.

use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use testkit::bins;
use testkit::bootstrap::Bootstrap;
use testkit::bootstrap_edit::{add_cluster, loopback_bootstrap};
use testkit::envoy::{self, Envoy};
use testkit::http::{Reply, client};
use testkit::ports::closed_port;
use testkit::process::{Server, spawn_listening};
use testkit::raw_http::raw_http;

use super::keyservice::Keyservice;
use super::{SECRET, default_plugin_config};

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
    /// A whole Envoy bootstrap of the test's own, in place of the one the builder makes.
    bootstrap: Option<Value>,
    /// More keyservice processes on the same database, beside the first in cluster `keyservice`.
    replicas: usize,
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
    /// place of the catch-all route to cluster `echo` (not for a [`RigBuilder::bootstrap`]).
    pub fn routes(mut self, routes: Value) -> Self {
        self.routes = Some(routes);
        self
    }

    /// Runs Envoy with this bootstrap (e.g. a shipped configuration,
    /// [`testkit::bootstrap_edit::shipped_bootstrap`]) instead of the one the builder makes, moved
    /// onto loopback by [`loopback_bootstrap`]: cluster `keyservice` goes to the rig's keyservice,
    /// every other cluster to echo-upstream. The plugin configuration is the bootstrap's own.
    pub fn bootstrap(mut self, bootstrap: Value) -> Self {
        self.bootstrap = Some(bootstrap);
        self
    }

    /// `count` more keyservice processes on the rig's database; cluster `keyservice` sends to
    /// all of them, round robin (not with a bootstrap of the test's own).
    pub fn keyservice_replicas(mut self, count: usize) -> Self {
        self.replicas = count;
        self
    }

    /// Starts echo-upstream, keyservice and Envoy; returns once Envoy is ready.
    pub fn start(self) -> Rig {
        let wasm = bins::keygate_wasm();
        let dir = testkit::tempdir("keygate-rig-");
        let echo = {
            let mut command = Command::new(bins::echo_upstream());
            command.args(["--listen", "127.0.0.1:0"]);
            spawn_listening("echo-upstream", command, dir.path())
        };
        let keyservice = Keyservice::start(
            &bins::keyservice(),
            dir.path(),
            SECRET,
            &self.keyservice_args,
        );
        let replicas: Vec<Keyservice> = (0..self.replicas)
            .map(|index| {
                let replica_dir = dir.path().join(format!("replica-{index}"));
                std::fs::create_dir_all(&replica_dir).expect("a replica's directory");
                Keyservice::start_on(
                    &bins::keyservice(),
                    &replica_dir,
                    &keyservice.database,
                    SECRET,
                    &self.keyservice_args,
                )
            })
            .collect();
        let revocation_addr = match self.target {
            RevocationTarget::Keyservice => keyservice.addr(),
            RevocationTarget::At(addr) => addr,
        };
        let config = match self.bootstrap {
            Some(bootstrap) => {
                let mut config = loopback_bootstrap(bootstrap, &wasm, echo.addr, revocation_addr);
                for (name, addr) in &self.clusters {
                    add_cluster(&mut config, name, *addr);
                }
                config
            }
            None => {
                let mut config = Bootstrap::new()
                    .keygate(&wasm, &self.plugin_config)
                    .cluster("echo", echo.addr)
                    .cluster("keyservice", revocation_addr);
                for (name, addr) in &self.clusters {
                    config = config.cluster(name, *addr);
                }
                if let Some(routes) = self.routes {
                    config = config.routes(routes);
                }
                if !replicas.is_empty() {
                    let mut addrs = vec![revocation_addr];
                    addrs.extend(replicas.iter().map(Keyservice::addr));
                    config = config.cluster_of("keyservice", &addrs);
                }
                config.build()
            }
        };
        let envoy = Envoy::start(
            &config,
            dir.path(),
            self.envoy_secret.as_deref(),
            self.concurrency,
        );
        Rig {
            admin: envoy.admin,
            listener: envoy.listener,
            envoy,
            keyservice,
            replicas,
            _echo: echo,
            client: client(),
            _dir: dir,
            concurrency: self.concurrency,
        }
    }

    /// Starts Envoy alone, expecting it to refuse the configuration: returns its exit status
    /// and log once it has exited, or fails the test if it is still running after `timeout`.
    pub fn start_expecting_refusal(self, timeout: Duration) -> Refusal {
        let dir = testkit::tempdir("keygate-refusal-");
        let nowhere = closed_port();
        let config = Bootstrap::new()
            .keygate(&bins::keygate_wasm(), &self.plugin_config)
            .cluster("echo", nowhere)
            .cluster("keyservice", nowhere)
            .build();
        let mut envoy = envoy::spawn(
            &config,
            dir.path(),
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

/// Envoy with the filter, keyservice and echo-upstream, for one test. Dropping it stops them.
pub struct Rig {
    // Dropped in this order: Envoy first, the tempdir last.
    pub envoy: Envoy,
    pub keyservice: Keyservice,
    /// With [`RigBuilder::keyservice_replicas`].
    pub replicas: Vec<Keyservice>,
    _echo: Server,
    pub(super) client: reqwest::blocking::Client,
    pub admin: SocketAddr,
    pub listener: SocketAddr,
    _dir: tempfile::TempDir,
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
            replicas: 0,
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
        Reply::read(response)
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

    /// For failure messages: waits for Envoy to flush its log file, then reads its tail.
    pub fn envoy_log_tail(&self, lines: usize) -> String {
        thread::sleep(Duration::from_millis(300));
        self.envoy.log_tail(lines)
    }
}
