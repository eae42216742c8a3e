//! `keyservice serve` as a process, the binary Cargo built for these tests.

use std::path::Path;
use std::process::Command;

use testkit::process::{Server, spawn_listening};

use super::{ADMIN, SECRET};

/// `keyservice serve` on a free port with `database`, the test secret and admin token, and
/// `extra` arguments; its output in `dir/NAME.stdout` and `dir/NAME.stderr`.
pub fn start_keyservice(database: &str, dir: &Path, name: &str, extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyservice"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("JWT_SECRET", SECRET)
        .env("KEYSERVICE_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "info");
    spawn_listening(name, command, dir)
}
