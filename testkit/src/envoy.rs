//! Envoy as a process: its bootstrap written to a file in the test's tempdir, admin and listener
//! on ports the OS picks (read back from Envoy), `--use-dynamic-base-id` so that several run at
//! once, its log in the tempdir.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::client;
use crate::poll;
use crate::process::{Proc, START_TIMEOUT};

/// A running Envoy, ready; killed on drop.
pub struct Envoy {
    pub proc: Proc,
    pub admin: SocketAddr,
    /// Where listener `main` listens.
    pub listener: SocketAddr,
}

impl Envoy {
    /// Starts Envoy (see [`spawn`]) and waits until it is ready.
    pub fn start(config: &Value, dir: &Path, jwt_secret: Option<&str>, concurrency: u32) -> Envoy {
        let mut proc = spawn(config, dir, jwt_secret, concurrency);
        let http = client();
        let admin = wait_for_admin(&mut proc, &dir.join("envoy-admin-address"), &http);
        let listener = listener_address(&proc, admin, &http);
        Envoy {
            proc,
            admin,
            listener,
        }
    }

    /// The URL of `path` on listener `main`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listener)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// Starts Envoy on `config` (written to `dir/envoy.json`) without waiting for it: `JWT_SECRET` in
/// its environment is `jwt_secret` (unset for `None`), `concurrency` its worker threads (each
/// runs its own Wasm VM; the kernel spreads connections over them with `SO_REUSEPORT`).
pub fn spawn(config: &Value, dir: &Path, jwt_secret: Option<&str>, concurrency: u32) -> Proc {
    let config_path = dir.join("envoy.json");
    let log = dir.join("envoy.log");
    let output_path = dir.join("envoy.output");
    let text = serde_json::to_string_pretty(config).expect("serializing the Envoy config");
    fs::write(&config_path, text).expect("writing the Envoy config");
    let output = fs::File::create(&output_path).expect("creating Envoy's output file");
    let output_err = output.try_clone().expect("cloning a file handle");
    let envoy = crate::bins::envoy();
    let mut command = Command::new(&envoy);
    command
        .arg("-c")
        .arg(&config_path)
        .arg("--admin-address-path")
        .arg(dir.join("envoy-admin-address"))
        .arg("--log-path")
        .arg(&log)
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
    match jwt_secret {
        Some(secret) => command.env("JWT_SECRET", secret),
        None => command.env_remove("JWT_SECRET"),
    };
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("starting Envoy {}: {err}", envoy.display()));
    Proc::new("envoy", child, vec![log, output_path])
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
