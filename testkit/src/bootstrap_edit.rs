//! Changes to a whole bootstrap, shipped or built: onto loopback for a test, without keygate, with
//! another plugin configuration or one more cluster.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use crate::bins::repo_root;
use crate::bootstrap::{WASM_FILTER, any_port, cluster, load_assignment};

/// A shipped Envoy configuration (YAML, relative to the repository root) as JSON.
pub fn shipped_bootstrap(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|err| panic!("{relative} is not YAML: {err}"))
}

/// Moves a bootstrap onto loopback for a test, changing nothing else: the admin interface and
/// every listener on 127.0.0.1 port 0 (the admin added where the bootstrap has none), cluster
/// `keyservice` to `keyservice`, every other cluster to `echo`, and the keygate module loaded
/// from `wasm`.
pub fn loopback_bootstrap(
    mut config: Value,
    wasm: &Path,
    echo: SocketAddr,
    keyservice: SocketAddr,
) -> Value {
    config["admin"]["address"] = any_port();
    config["stats_flush_interval"] = json!("1s");
    let resources = &mut config["static_resources"];
    for listener in resources["listeners"].as_array_mut().into_iter().flatten() {
        listener["address"] = any_port();
    }
    for cluster in resources["clusters"].as_array_mut().into_iter().flatten() {
        let name = cluster["name"].as_str().unwrap_or_default().to_owned();
        let addr = if name == "keyservice" {
            keyservice
        } else {
            echo
        };
        cluster["type"] = json!("STATIC");
        cluster["load_assignment"] = load_assignment(&name, addr);
    }
    for filter in wasm_filters_mut(&mut config) {
        filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] =
            json!(wasm.display().to_string());
    }
    config
}

/// The HTTP filter list of every HTTP connection manager of a bootstrap's listeners.
fn http_filter_lists_mut(config: &mut Value) -> Vec<&mut Vec<Value>> {
    let mut lists = Vec::new();
    let listeners = config["static_resources"]["listeners"].as_array_mut();
    for listener in listeners.into_iter().flatten() {
        let chains = listener["filter_chains"].as_array_mut();
        for chain in chains.into_iter().flatten() {
            for network in chain["filters"].as_array_mut().into_iter().flatten() {
                lists.extend(network["typed_config"]["http_filters"].as_array_mut());
            }
        }
    }
    lists
}

/// Every Wasm HTTP filter of a bootstrap's listeners.
fn wasm_filters_mut(config: &mut Value) -> Vec<&mut Value> {
    http_filter_lists_mut(config)
        .into_iter()
        .flatten()
        .filter(|filter| filter["typed_config"]["@type"] == WASM_FILTER)
        .collect()
}

/// The bootstrap without keygate: Envoy as it would forward requests with no filter deciding.
pub fn without_keygate(config: &Value) -> Value {
    let mut config = config.clone();
    for filters in http_filter_lists_mut(&mut config) {
        filters.retain(|filter| filter["typed_config"]["@type"] != WASM_FILTER);
    }
    config
}

/// Changes keygate's plugin configuration (the JSON in its `StringValue`) in a bootstrap.
pub fn edit_plugin_config(config: &mut Value, edit: impl Fn(&mut Value)) {
    let filters = wasm_filters_mut(config);
    assert!(!filters.is_empty(), "the bootstrap has no Wasm filter");
    for filter in filters {
        let value = &mut filter["typed_config"]["config"]["configuration"]["value"];
        let mut plugin: Value = serde_json::from_str(value.as_str().unwrap_or_default())
            .unwrap_or_else(|err| panic!("keygate's configuration is not JSON: {err}"));
        edit(&mut plugin);
        *value = json!(plugin.to_string());
    }
}

/// Adds a STATIC cluster `name` → `addr` to a bootstrap, replacing one of that name (e.g. `idp`,
/// the test identity provider the filter fetches a JWKS from).
pub fn add_cluster(config: &mut Value, name: &str, addr: SocketAddr) {
    let clusters = config["static_resources"]["clusters"]
        .as_array_mut()
        .expect("the bootstrap has a clusters list");
    clusters.retain(|cluster| cluster["name"] != name);
    clusters.push(cluster(name, addr));
}
