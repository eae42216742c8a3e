//! keygate: JWT and API-key enforcement at the proxy edge.
//!
//! The decision logic (`config`, `credential`, `verify`, `revocation`, `decision`, `response`,
//! `flow`) knows nothing of Envoy and is tested natively; `plugin` implements the proxy-wasm
//! contexts on top of it.

pub mod config;
pub mod credential;
pub mod decision;
pub mod flow;
pub mod headers;
pub mod host;
pub mod response;
pub mod revocation;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod plugin;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    plugin::start();
}}
