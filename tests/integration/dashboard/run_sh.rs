//! `make run`'s rig for the dashboard test: scripts/run.sh on its fixed ports, exactly as a user
//! runs it, one test at a time ([`crate::rig::lock_fixed_ports`]); stopped with everything it
//! started when the test ends, passing or not.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use testkit::bins::{self, repo_root};
use testkit::poll;

pub const ENVOY: &str = "http://127.0.0.1:10000";
const JWT_SECRET: &str = "dashboard-test-secret-0123456789abcdef";
const ADMIN_TOKEN: &str = "dashboard-test-admin-token";
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The rig's logs, in the order a failure message shows them.
const LOGS: [&str; 4] = ["keyservice", "dev-idp", "envoy", "echo-upstream"];

/// scripts/run.sh, ready; on drop: SIGTERM (it stops its children), then SIGKILL for its whole
/// process group.
pub struct RunSh {
    child: Child,
    output: Arc<Mutex<String>>,
    run_dir: tempfile::TempDir,
    // Dropped last: the ports are free again once the rig is gone.
    _ports: MutexGuard<'static, ()>,
}

impl RunSh {
    pub fn start() -> RunSh {
        let ports = crate::rig::lock_fixed_ports();
        let run_dir = testkit::tempdir("keygate-dashboard-run-");
        let root = repo_root();
        let mut child = Command::new("bash")
            .arg(root.join("scripts/run.sh"))
            .current_dir(&root)
            .env("ENVOY_BIN", bins::envoy())
            .env("KEYSERVICE_BIN", bins::keyservice())
            .env("ECHO_UPSTREAM_BIN", bins::echo_upstream())
            .env("DEV_IDP_BIN", dev_idp_bin())
            .env("KEYGATE_RUN_DIR", run_dir.path())
            .env("JWT_SECRET", JWT_SECRET)
            .env("KEYSERVICE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("DATABASE_URL")
            // Its own process group: the drop stops run.sh and all it started, whatever it is.
            .process_group(0)
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
            run_dir,
            _ports: ports,
        };
        // run.sh prints "keygate rig is ready", then the demo, then "Ctrl-C stops everything."
        let ready = poll(READY_TIMEOUT, Duration::from_millis(200), || {
            let output = rig.output();
            if output.contains("keygate rig is ready") && output.contains("Ctrl-C stops everything")
            {
                return Some(true);
            }
            rig.child.try_wait().ok().flatten().map(|_| false)
        });
        assert_eq!(
            ready,
            Some(true),
            "scripts/run.sh did not get ready:\n{}",
            rig.report()
        );
        rig
    }

    /// run.sh's output and the end of each log: for failure messages.
    pub fn report(&self) -> String {
        let mut report = format!("---- run.sh ----\n{}", self.output());
        for name in LOGS {
            let path = self.run_dir.path().join(format!("{name}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Envoy's startup lists every extension on indented lines: noise here.
            let lines: Vec<&str> = text
                .lines()
                .filter(|line| {
                    !line
                        .rsplit_once("] ")
                        .is_some_and(|(_, msg)| msg.starts_with("  "))
                })
                .collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            report.push_str(&format!("\n---- {name}.log ----\n{tail}"));
        }
        report
    }

    fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for RunSh {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        if self.child.try_wait().ok().flatten().is_none() {
            signal("TERM", &self.child.id().to_string());
            let exited = poll(Duration::from_secs(15), Duration::from_millis(100), || {
                self.child.try_wait().ok().flatten()
            });
            if exited.is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        signal("KILL", &group);
    }
}

/// The dev IdP `make run` starts (`$DEV_IDP_BIN`, default target/debug/dev-idp).
fn dev_idp_bin() -> PathBuf {
    let path = std::env::var_os("DEV_IDP_BIN")
        .filter(|value| !value.is_empty())
        .map_or_else(|| repo_root().join("target/debug/dev-idp"), PathBuf::from);
    assert!(
        path.is_file(),
        "{} ($DEV_IDP_BIN) does not exist: run `make build` (or `cargo build -p dev-idp`)",
        path.display()
    );
    path
}

fn signal(name: &str, target: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), "--", target])
        .stderr(Stdio::null())
        .status();
}

/// Copies a pipe into `output` line by line.
fn collect(pipe: impl Read + Send + 'static, output: Arc<Mutex<String>>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
            output.push_str(&line);
            output.push('\n');
        }
    });
}
