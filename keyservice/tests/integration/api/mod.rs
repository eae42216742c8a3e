//! The HTTP API through `app(state).oneshot(..)`, every test run twice (`both_backends!`): on
//! SQLite in a tempdir and on a real PostgreSQL (a database of its own in a cluster the harness
//! starts).

mod admin_token;
mod authorize;
mod bad_input;
mod callers;
mod dashboard;
mod health;
mod issue;
mod list;
mod rate_limits;
mod revoke;
mod sessions;
mod usage;

use serde_json::Value;

use crate::common::{SECRET, verified_claims};

/// The claims of a key keyservice issued, its signature checked.
fn decode(key: &str) -> Value {
    verified_claims(key, SECRET)
}
