//! Driving the gate from a proxy: the `Host` trait (what the filter needs of Envoy), the flow of
//! one request against it, the end of a revocation flight, the root context's work, and the
//! proxy-wasm contexts (`plugin`, wasm32 only) that only drive them.

pub mod apply;
pub mod flight;
pub mod flow;
pub mod follower;
pub mod host;
pub mod reporter;
pub mod root;
#[cfg(target_arch = "wasm32")]
pub mod plugin;
