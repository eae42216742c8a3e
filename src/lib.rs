//! keygate: JWT and API-key enforcement at the proxy edge.
//!
//! Folders by concern, each depending only on those before it, with no import circle between
//! files (both checked by `src/architecture_tests.rs`):
//!
//! | folder | owns |
//! | --- | --- |
//! | `jose` | JWS parsing, keys (secrets, JWK/JWKS), signature algorithms |
//! | `extract` | where a request carries its token |
//! | `policy` | the path as Envoy forwards it, rules, scopes, CORS |
//! | `revocation` | the keyservice protocol, the shared answer cache, callouts in flight |
//! | `metering` | rate limits, the shared counters, per-key usage and its reports |
//! | `config` | the plugin configuration, parsed and validated once |
//! | `gate` | the per-request decision and the state it keeps |
//! | `proxy` | the `Host` trait, request and root flows, the proxy-wasm contexts |
//!
//! Everything but `proxy::plugin` is host-free and tested natively. The public surface is the
//! embedding API below, used by keyservice (`/v1/authorize` makes the filter's decision
//! natively) and the benchmarks; the `internals` feature opens every module to the fuzz targets.

/// The folder modules: private, unless the `internals` feature (the fuzz targets) opens them.
macro_rules! modules {
    ($($name:ident),* $(,)?) => {
        $(
            #[cfg(feature = "internals")]
            pub mod $name;
            #[cfg(not(feature = "internals"))]
            mod $name;
        )*
    };
}

modules!(
    config, extract, gate, jose, metering, policy, proxy, revocation
);

#[cfg(test)]
mod architecture_tests;
#[cfg(test)]
mod testing;

pub use config::{Config, ConfigError, KeyMaterial};
pub use gate::claims::HeaderWrite;
pub use gate::decision::{Decision, DenyReason, Gate, Grant, RequestHead};
pub use gate::metrics::Metrics;
pub use gate::response::LocalReply;
pub use gate::text;
pub use proxy::apply::FlowAction;
pub use proxy::flow::RequestFlow;
pub use proxy::host::{Callout, Host};
pub use revocation::cache::{SharedData, SharedSetError, Verdict};
pub use revocation::protocol::{RevocationStatus, digest};

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy::plugin::start();
}}
