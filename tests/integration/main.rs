//! keygate's integration tests, one test binary: each module was a test file of its own. Most
//! start a real Envoy with the built `.wasm`, the real keyservice on SQLite and echo-upstream on
//! loopback ports the OS picks, so they run in parallel (`support`, and `testkit` for what
//! keyservice's tests share); `deploy` and `docs_examples` check files offline, `rig` and
//! `dashboard` run `make run`'s script on its fixed ports, one at a time; `browser` and
//! `dashboard` drive headless Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod bench_smoke;
mod browser;
mod cors;
mod dashboard;
mod deploy;
mod docs_examples;
mod failure_mode;
mod global_ratelimit;
mod headers;
mod identity_differential;
mod jwks;
mod module_exports;
mod options;
mod path_differential;
mod plugin_config;
mod providers;
mod requirements;
mod response_format;
mod revocation;
mod revocation_cache;
mod revocation_feed;
mod rig;
mod routing;
mod rules;
mod stats;
mod token_cache;
mod tokens;
mod usage_limits;
