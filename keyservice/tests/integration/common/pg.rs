//! Temporary PostgreSQL clusters for the tests: `initdb` in a tempdir, `pg_ctl start` on a free
//! loopback port, removed afterwards. Run as the `postgres` user when the tests run as root
//! (PostgreSQL refuses to run as root).
//!
//! - [`shared`] is one cluster for the test binary; each test gets its own database in it
//!   ([`PgCluster::create_database`]). A guardian process stops it and removes its directory
//!   when the test binary exits, however it exits.
//! - [`PgCluster::start`] is a cluster of the test's own, for tests that stop and start it;
//!   dropping it stops it and removes it.
//!
//! `KEYSERVICE_TEST_POSTGRES_URL` (a server where we may `CREATE DATABASE`) replaces the
//! shared cluster. The server binaries come from `PG_BIN` (a directory), the `PATH`, or Debian's
//! `/usr/lib/postgresql/<version>/bin`. Missing ones fail the test: `make tools` installs them.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use testkit::ports::free_port;

pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    /// `Some` for a cluster this process started; `None` for an external server.
    admin_url: String,
    guardian: Option<Child>,
    owned: bool,
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The directory holding `initdb` and `pg_ctl`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("pg_ctl").is_file(),
            "PG_BIN={} has no initdb and pg_ctl",
            dir.display()
        );
        return dir;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return dir;
            }
        }
    }
    // Debian installs them outside the PATH, one directory per major version: take the newest.
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "the PostgreSQL server (initdb, pg_ctl) is not installed, and the keyservice tests \
             run every storage test against a real PostgreSQL as well as SQLite: run \
             `make tools` (installs Debian's postgresql package), or set PG_BIN to the directory \
             of initdb and pg_ctl, or KEYSERVICE_TEST_POSTGRES_URL to a server where the tests \
             may CREATE DATABASE"
        ),
    }
}

/// `program args…`, as the `postgres` user when we are root.
fn command(program: &Path, args: &[&str]) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn run(mut command: Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl PgCluster {
    /// A new cluster of this test's own.
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let dir = testkit::tempdir("keyservice-pg-").keep();
        if running_as_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:"]).arg(&dir);
                    c
                },
                "chown of the cluster directory to postgres",
            )
            .unwrap_or_else(|e| {
                panic!("{e}\n(is Debian's postgresql package installed? `make tools`)")
            });
        }
        let data = dir.join("data");
        let data_str = data.to_str().expect("UTF-8 tempdir path");
        if let Err(e) = run(
            command(
                &bin.join("initdb"),
                &[
                    "-D",
                    data_str,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "-N",
                ],
            ),
            "initdb",
        ) {
            let _ = fs::remove_dir_all(&dir);
            panic!("{e}");
        }
        let mut cluster = PgCluster {
            bin,
            dir,
            port: 0,
            admin_url: String::new(),
            guardian: None,
            owned: true,
        };
        cluster.guardian = Some(cluster.spawn_guardian());
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => {
                    cluster.admin_url = cluster.url("postgres");
                    return cluster;
                }
                Err(e) => last = e,
            }
        }
        panic!("could not start PostgreSQL: {last}\n{}", cluster.log_tail());
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        run(
            command(
                &self.bin.join("pg_ctl"),
                &[
                    "-D",
                    &self.data(),
                    "-l",
                    &log,
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ),
            "pg_ctl start",
        )
    }

    /// Stops the server (fast shutdown: connections are closed, as in a real outage).
    pub fn stop(&self) {
        run(
            command(
                &self.bin.join("pg_ctl"),
                &["-D", &self.data(), "-m", "fast", "-w", "-t", "60", "stop"],
            ),
            "pg_ctl stop",
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail()));
    }

    /// Starts a stopped server again, on the same port.
    pub fn restart(&self) {
        self.try_start()
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail()));
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the cluster and removes its directory once this test process is gone, even if it
    /// was killed; `Drop` does the same sooner for a cluster of a test's own.
    fn spawn_guardian(&self) -> Child {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let as_postgres = if running_as_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {as_postgres}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            data = self.data(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the PostgreSQL guardian")
    }

    pub fn url(&self, database: &str) -> String {
        if self.owned {
            format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
        } else {
            let base = self
                .admin_url
                .rsplit_once('/')
                .map_or(self.admin_url.as_str(), |(base, _)| base);
            format!("{base}/{database}")
        }
    }

    /// A new, empty database; returns its URL.
    pub async fn create_database(&self) -> String {
        let name = format!("kt_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("connecting to {}: {e}\n{}", self.admin_url, self.log_tail())
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        self.url(&name)
    }

    /// [`Self::create_database`] for synchronous tests.
    pub fn create_database_blocking(&self) -> String {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(self.create_database())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = run(
            command(
                &self.bin.join("pg_ctl"),
                &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
            ),
            "pg_ctl stop",
        );
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(mut guardian) = self.guardian.take() {
            let _ = guardian.kill();
            let _ = guardian.wait();
        }
    }
}

/// The cluster every test of the binary shares (one database each).
pub fn shared() -> &'static PgCluster {
    static SHARED: OnceLock<PgCluster> = OnceLock::new();
    SHARED.get_or_init(|| match std::env::var("KEYSERVICE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => PgCluster {
            bin: PathBuf::new(),
            dir: PathBuf::new(),
            port: 0,
            admin_url: url,
            guardian: None,
            owned: false,
        },
        _ => PgCluster::start(),
    })
}

/// How long to wait for something that should happen "at once" but crosses processes.
pub const SOON: Duration = Duration::from_secs(30);
