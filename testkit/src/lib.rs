//! What keygate's integration tests (`tests/integration/`) and keyservice's
//! (`keyservice/tests/integration/`) share: the binaries under test, processes killed on drop,
//! Envoy (its bootstrap and the process), polling, HTTP over a client and byte for byte, servers
//! that stand in for keyservice or an identity provider, free ports and tempdirs, and a headless
//! browser ([`webdriver`]) with pages of a test's own to load in it ([`static_site`]).
//!
//! It drives keygate, keyservice and echo-upstream as processes and through their JSON
//! configuration, never as crates, so it compiles once for both test suites. Every wait has a
//! deadline; a missing binary fails the test with what to run, never skips it.
// A test harness: a failure it cannot recover from is a failed test, with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bins;
pub mod bootstrap;
pub mod bootstrap_edit;
pub mod envoy;
pub mod fault;
pub mod http;
pub mod idp;
pub mod idp_keys;
mod loopback;
pub mod poll;
pub mod ports;
pub mod process;
pub mod raw_http;
pub mod static_site;
pub mod token;
pub mod webdriver;

pub use poll::poll;

/// A tempdir named `<prefix>…`, removed when dropped.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("creating a tempdir")
}
