//! keygate: JWT and API-key enforcement at the proxy edge.
//!
//! The decision logic knows nothing of Envoy and is tested natively: `config` (parsing and
//! validation), `credential`, `jws` + `signature` + `rsa_pkcs1` + `montgomery` + `ecdsa_verify` +
//! `verify`, `claims` + `text` (claim values as headers; the identity alphabet keyservice
//! shares), `path` + `rules` + `scopes` (what a route requires), `cors`, `revocation` +
//! `revocation_cache` + `in_flight` (the keyservice protocol, its shared cache and request
//! coalescing), `token_cache`, `decision`, `response`, `metrics`, and `flow` (one request,
//! against the `host::Host` trait). `plugin` implements the proxy-wasm contexts on top of it.

pub mod claims;
pub mod config;
pub mod cors;
pub mod credential;
pub mod decision;
pub mod ecdsa_verify;
pub mod flow;
pub mod headers;
pub mod host;
pub mod in_flight;
pub mod jws;
pub mod keys;
pub mod metrics;
pub mod montgomery;
pub mod parked;
pub mod path;
pub mod remote_jwks;
pub mod response;
pub mod revocation;
pub mod revocation_cache;
pub mod rsa_pkcs1;
pub mod rules;
pub mod scopes;
pub mod signature;
pub mod sources;
pub mod text;
pub mod token_cache;
pub mod verify;

#[cfg(test)]
mod test_keys;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod wycheproof_tests;

#[cfg(target_arch = "wasm32")]
mod plugin;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    plugin::start();
}}
