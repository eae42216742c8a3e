//! The filter's configurations the tests start from.

use serde_json::{Value, json};

/// The documented single-provider plugin configuration (envoy/envoy.yaml ships the same for API
/// keys, beside its dev IdP provider), revocation callouts to
/// the Envoy cluster `keyservice`.
pub fn default_plugin_config() -> Value {
    json!({
        "secret": {"env": "JWT_SECRET"},
        "algorithms": ["HS256", "HS384", "HS512"],
        "clock_skew_seconds": 60,
        "max_token_bytes": 8192,
        "realm": "keygate",
        "claims_to_headers": {"user_id": "x-user-id", "org_id": "x-org-id"},
        "strip_authorization": false,
        "revocation": {
            "cluster": "keyservice",
            "authority": "keyservice",
            "path_prefix": "/v1/revocations/",
            "timeout_ms": 500,
            "check": "non_expiring",
            "unknown_keys": "deny",
            "failure_mode": "deny"
        }
    })
}

/// [`default_plugin_config`] with the shared revocation cache off (`revocation.cache.max_entries:
/// 0`): every check of a non-expiring key is a callout. For the tests of the revocation protocol
/// itself, which count one callout per request.
pub fn uncached_plugin_config() -> Value {
    let mut config = default_plugin_config();
    config["revocation"]["cache"] = json!({"max_entries": 0});
    config
}

/// A plugin configuration with these `providers` (and revocation callouts to the Envoy cluster
/// `keyservice`, which API-key providers use).
pub fn providers_plugin_config(providers: &[Value]) -> Value {
    json!({
        "revocation": {"cluster": "keyservice", "timeout_ms": 500},
        "providers": providers,
    })
}
