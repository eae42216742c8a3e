//! The harness of keygate's integration tests: the rig (a real Envoy with the built filter, a
//! real keyservice and echo-upstream, [`rig`]), the filter's configurations, expectations of its
//! replies. What keyservice's tests share with these is in `testkit`.

mod expect;
mod keyservice;
mod plugin_config;
pub mod providers;
mod rig;
mod rig_stats;
pub mod round_trip;

pub use expect::*;
pub use plugin_config::{default_plugin_config, providers_plugin_config, uncached_plugin_config};
pub use rig::Rig;

use serde_json::json;
use testkit::token::{now, sign};

/// The secret the rig's keyservice signs with and the filter reads from `JWT_SECRET`.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const ADMIN_TOKEN: &str = "integration-test-admin-token";

/// A key the way ComfyUI Deploy makes them: `jwt.sign({user_id, org_id}, JWT_SECRET)`, i.e.
/// HS256 with `iat` and no `exp`.
pub fn comfyui_deploy_key(user_id: &str, org_id: &str, secret: &str) -> String {
    sign(
        &json!({"user_id": user_id, "org_id": org_id, "iat": now()}),
        secret,
    )
}
