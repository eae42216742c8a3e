//! Child processes killed (and reaped) on drop, with their output in files; servers that
//! announce `listening on http://ADDR`; commands run to their end within a deadline.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::poll;

/// How long a server may take to announce its address, or Envoy to get ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process killed (and reaped) on drop, with its output in files.
pub struct Proc {
    pub name: String,
    child: Child,
    logs: Vec<PathBuf>,
}

impl Proc {
    /// `child`, whose output went to the files `logs`.
    pub fn new(name: &str, child: Child, logs: Vec<PathBuf>) -> Self {
        Proc {
            name: name.to_owned(),
            child,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process now (a crash, as the tests of failure modes want it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A server process and the address it announced.
pub struct Server {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Starts a server whose first line on stdout is `listening on http://ADDR`, with its stdout and
/// stderr in `dir/NAME.stdout` and `dir/NAME.stderr`.
pub fn spawn_listening(name: &str, mut command: Command, dir: &Path) -> Server {
    let stdout_log = dir.join(format!("{name}.stdout"));
    let stderr_log = dir.join(format!("{name}.stderr"));
    let stderr = fs::File::create(&stderr_log).expect("creating a log file");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|err| panic!("starting {name} ({command:?}): {err}"));
    let mut proc = Proc::new(name, child, vec![stdout_log.clone(), stderr_log]);
    let stdout = proc.child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Reads stdout to the end (so the child never blocks on a full pipe), copying it to a file
    // and handing over the first line.
    thread::spawn(move || {
        let mut file = fs::File::create(stdout_log).ok();
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = file.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(line);
            }
        }
    });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => line,
        Err(err) => panic!(
            "{name} did not print 'listening on http://ADDR' ({err}; exit status {:?})\n{}",
            proc.try_wait(),
            proc.log_tail(40)
        ),
    };
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{name}: unexpected first line {line:?}"));
    let addr = addr
        .parse()
        .unwrap_or_else(|err| panic!("{name} printed a bad address {addr:?}: {err}"));
    Server { proc, addr }
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
