//! What a user runs: the shipped envoy/envoy.yaml, and `make run`'s scripts/run.sh driven by
//! scripts/demo.sh on the fixed ports.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use testkit::bins::{self, repo_root};
use testkit::poll;
use testkit::process::wait_output;

#[test]
fn shipped_envoy_config_is_valid() {
    let root = repo_root();
    let shipped_wasm = root.join("target/wasm32-wasip1/release/keygate.wasm");
    assert!(
        shipped_wasm.is_file(),
        "{} is missing (envoy/envoy.yaml names it): run `make test` or `make build`",
        shipped_wasm.display()
    );
    let child = Command::new(bins::envoy())
        .args(["--mode", "validate", "-c", "envoy/envoy.yaml"])
        .args(["--use-dynamic-base-id", "-l", "info"])
        .current_dir(&root)
        .env("JWT_SECRET", crate::support::SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting envoy --mode validate");
    let output = wait_output(child, Duration::from_secs(60), "envoy --mode validate");
    assert!(
        output.status.success(),
        "envoy --mode validate -c envoy/envoy.yaml failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const RIG_PORTS: [u16; 5] = [8080, 8081, 8082, 9901, 10000];
const ADMIN_TOKEN: &str = "rig-test-admin-token";

/// scripts/run.sh, stopped (SIGTERM, then SIGKILL for it and its children) if the test fails.
struct RunSh {
    child: Child,
    output: Arc<Mutex<String>>,
    children: Vec<u32>,
}

impl RunSh {
    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn signal(pid: u32, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for RunSh {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            Self::signal(self.child.id(), "TERM");
            let exited = poll(Duration::from_secs(15), Duration::from_millis(100), || {
                self.child.try_wait().ok().flatten()
            });
            if exited.is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        for pid in &self.children {
            if pid_exists(*pid) {
                Self::signal(*pid, "KILL");
            }
        }
    }
}

fn pid_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// `make run`'s fixed ports are for one test at a time (this file's and dashboard.rs's): the lock,
/// once nothing else (a `make run` of the user's) holds them.
pub(crate) fn lock_fixed_ports() -> MutexGuard<'static, ()> {
    static FIXED_PORTS: Mutex<()> = Mutex::new(());
    let guard = FIXED_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
    let taken: Vec<u16> = RIG_PORTS.into_iter().filter(|p| port_taken(*p)).collect();
    assert!(
        taken.is_empty(),
        "the rig's fixed ports {taken:?} are taken on 127.0.0.1 (is `make run` running?); \
         stop whatever holds them and rerun"
    );
    guard
}

fn port_taken(port: u16) -> bool {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).is_err()
}

fn port_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Copies a pipe into `output` line by line.
fn collect(pipe: impl Read + Send + 'static, output: Arc<Mutex<String>>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut output = output.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
}

/// The part of the demo's output under the heading "== N.".
fn section(output: &str, n: u32) -> &str {
    let heading = format!("== {n}.");
    let start = output.find(&heading).unwrap_or(output.len());
    let rest = &output[start..];
    let end = rest[heading.len()..]
        .find("\n== ")
        .map_or(rest.len(), |i| i + heading.len());
    &rest[..end]
}

#[test]
fn make_run_rig_serves_the_demo_and_stops_on_sigterm() {
    let _ports = lock_fixed_ports();
    let run_dir = tempfile::Builder::new()
        .prefix("keygate-run-")
        .tempdir()
        .expect("tempdir");
    let root = repo_root();

    let mut child = Command::new("bash")
        .arg(root.join("scripts/run.sh"))
        .current_dir(&root)
        .env("ENVOY_BIN", bins::envoy())
        .env("KEYSERVICE_BIN", bins::keyservice())
        .env("ECHO_UPSTREAM_BIN", bins::echo_upstream())
        .env("KEYGATE_RUN_DIR", run_dir.path())
        .env("JWT_SECRET", "rig-test-secret")
        .env("KEYSERVICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting scripts/run.sh");
    let output = Arc::new(Mutex::new(String::new()));
    collect(child.stdout.take().unwrap(), output.clone());
    collect(child.stderr.take().unwrap(), output.clone());
    let mut rig = RunSh {
        child,
        output,
        children: Vec::new(),
    };

    // run.sh prints "keygate rig is ready", then the demo, then "Ctrl-C stops everything."
    // last: wait for the whole of it, not just the first line.
    let ready = poll(Duration::from_secs(90), Duration::from_millis(100), || {
        let output = rig.output();
        if output.contains("keygate rig is ready") && output.contains("Ctrl-C stops everything") {
            return Some(true);
        }
        rig.child.try_wait().ok().flatten().map(|_| false)
    });
    let logs = || {
        ["envoy", "keyservice", "echo-upstream"]
            .iter()
            .map(|name| {
                let path = run_dir.path().join(format!("{name}.log"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "---- {name}.log ----\n{}",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        ready,
        Some(true),
        "scripts/run.sh did not get ready:\n{}\n{}",
        rig.output(),
        logs()
    );
    let started = rig.output();
    rig.children = started
        .lines()
        .filter_map(|line| line.split_once("(pid ")?.1.split_once(')')?.0.parse().ok())
        .collect();
    assert_eq!(
        rig.children.len(),
        4,
        "expected four children in:\n{started}"
    );
    assert!(
        started.contains("scripts/demo.sh") && started.contains("curl"),
        "run.sh should print the demo's commands:\n{started}"
    );

    let demo = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .current_dir(&root)
        .env("KEYSERVICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting scripts/demo.sh");
    let demo = wait_output(demo, Duration::from_secs(60), "scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&demo.stdout);
    let report = format!(
        "demo ({}):\n{stdout}\nstderr:\n{}\n{}",
        demo.status,
        String::from_utf8_lossy(&demo.stderr),
        logs()
    );
    assert!(demo.status.success(), "{report}");
    let allowed = section(&stdout, 2);
    assert!(
        allowed.contains("HTTP/1.1 200") && allowed.contains(r#""x-user-id":"alice""#),
        "step 2 should be 200 with x-user-id alice: {report}"
    );
    assert!(
        !allowed.contains("mallory"),
        "step 2: the forged x-user-id reached the upstream: {report}"
    );
    let unauthenticated = section(&stdout, 3);
    assert!(
        unauthenticated.contains("HTTP/1.1 401")
            && unauthenticated.contains("Invalid or expired token"),
        "step 3 should be 401: {report}"
    );
    let revoked = section(&stdout, 5);
    assert!(
        revoked.contains("HTTP/1.1 401") && revoked.contains("Revoked token"),
        "step 5 should be 401 Revoked token: {report}"
    );

    RunSh::signal(rig.child.id(), "TERM");
    let status = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        rig.child.try_wait().ok().flatten()
    });
    let output = rig.output();
    let status =
        status.unwrap_or_else(|| panic!("run.sh still running 30s after SIGTERM:\n{output}"));
    assert!(
        status.success(),
        "run.sh exited with {status} after SIGTERM:\n{output}"
    );
    let alive: Vec<u32> = rig
        .children
        .iter()
        .copied()
        .filter(|pid| pid_exists(*pid))
        .collect();
    assert!(
        alive.is_empty(),
        "children still alive after run.sh exited: {alive:?}\n{output}"
    );
    let open: Vec<u16> = RIG_PORTS.into_iter().filter(|p| port_accepts(*p)).collect();
    assert!(
        open.is_empty(),
        "ports still accepting after run.sh exited: {open:?}\n{output}"
    );
}
