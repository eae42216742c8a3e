//! The binaries under test: from `ENVOY_BIN`, `KEYGATE_WASM`, `KEYSERVICE_BIN` and
//! `ECHO_UPSTREAM_BIN` (set by `make test`), or their default places in the repository.

use std::path::{Path, PathBuf};

/// The repository's root (testkit/ is inside it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is inside the repository")
        .to_owned()
}

/// Envoy with the V8 Wasm runtime (`make tools` installs it into `.venv`).
pub fn envoy() -> PathBuf {
    bin("ENVOY_BIN", ".venv/bin/envoy")
}

/// The filter as `make wasm` builds it.
pub fn keygate_wasm() -> PathBuf {
    bin("KEYGATE_WASM", "target/wasm32-wasip1/release/keygate.wasm")
}

/// keyservice as a process (keyservice's own tests run the binary Cargo built for them).
pub fn keyservice() -> PathBuf {
    bin("KEYSERVICE_BIN", "target/debug/keyservice")
}

pub fn echo_upstream() -> PathBuf {
    bin("ECHO_UPSTREAM_BIN", "target/debug/echo-upstream")
}

/// `$var`, or `default` under the repository root. A missing one fails the test (never skips
/// it): `make test` builds and installs all of them.
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
