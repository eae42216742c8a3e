//! keyservice's integration tests, one test binary: the HTTP API in-process on both backends
//! (`api`, `hostile`), the binary as a user runs it (`cli`, `slow_clients`), PostgreSQL under
//! several processes and outages (`postgres`), usage reports through two replicas and their
//! retention (`usage`), and keyservice behind a real Envoy (`edge`, `ext_authz`). `common` is
//! their harness; `testkit` what they share with keygate's tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

mod api;
mod cli;
mod edge;
mod ext_authz;
mod feed;
mod hostile;
mod postgres;
mod slow_clients;
mod usage;
