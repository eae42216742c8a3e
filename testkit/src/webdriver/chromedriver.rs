//! chromedriver as a process: on a free loopback port, in a process group of its own, its output
//! in files; stopped with everything it started (Chromium and its helpers).

use std::collections::HashMap;
use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::poll;
use crate::ports::free_port;
use crate::process::START_TIMEOUT;

/// chromedriver (`$CHROMEDRIVER_BIN`, default /usr/bin/chromedriver).
pub fn chromedriver_bin() -> PathBuf {
    browser_bin("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
}

/// Chromium (`$CHROMIUM_BIN`, default /usr/bin/chromium).
pub fn chromium_bin() -> PathBuf {
    browser_bin("CHROMIUM_BIN", "/usr/bin/chromium")
}

/// A missing browser fails the test (never skips it) and says how to install one.
fn browser_bin(var: &str, default: &str) -> PathBuf {
    let path = match std::env::var_os(var) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(default),
    };
    assert!(
        path.is_file(),
        "{} (${var}, default {default}) does not exist: run `make browser-tools` (Debian's \
         chromium and chromium-driver), or point {var} at one",
        path.display()
    );
    path
}

/// A running chromedriver, ready to create sessions.
pub(super) struct Chromedriver {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver and waits until its /status says ready.
    pub fn start(dir: &Path, http: &reqwest::blocking::Client) -> Chromedriver {
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let out = fs::File::create(&log).expect("creating chromedriver's log");
        let err = out.try_clone().expect("cloning a file handle");
        let bin = chromedriver_bin();
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            // Its own process group: stopping it stops the browsers it started too.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let status = format!("{}/status", driver.url);
        let ready = poll(START_TIMEOUT, Duration::from_millis(100), || {
            if let Ok(Some(exit)) = driver.child.try_wait() {
                return Some(Err(format!("exited with {exit}")));
            }
            let value: Value = http.get(&status).send().ok()?.json().ok()?;
            (value["value"]["ready"] == true).then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => driver,
            Some(Err(why)) => panic!("chromedriver {why}:\n{}", driver.log_text()),
            None => panic!(
                "chromedriver not ready within {START_TIMEOUT:?}:\n{}",
                driver.log_text()
            ),
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops chromedriver, then kills whatever of its process tree is left.
    pub fn stop(&mut self, http: &reqwest::blocking::Client) {
        let pid = self.child.id();
        // Chromium's helpers may leave chromedriver's process group (the zygote makes its own
        // sessions): note the whole tree now, before they are reparented.
        let tree = descendants(pid);
        let _ = http.get(format!("{}/shutdown", self.url)).send();
        let exited = poll(Duration::from_secs(5), Duration::from_millis(50), || {
            self.child.try_wait().ok().flatten()
        });
        kill(&format!("-{pid}"));
        for pid in tree {
            if Path::new(&format!("/proc/{pid}")).exists() {
                kill(&pid.to_string());
            }
        }
        if exited.is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn kill(target: &str) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Every process under `root`, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            found.push(*child);
            queue.push(*child);
        }
    }
    found
}
