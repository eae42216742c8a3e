//! Envoy bootstraps for the tests, as JSON: the admin interface and one listener `main` on
//! 127.0.0.1 port 0 (the OS picks; [`crate::envoy::Envoy`] reads back which), the HTTP filters
//! then the router, STATIC clusters on loopback addresses.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

/// The `@type` of Envoy's Wasm HTTP filter, keygate's carrier.
pub const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// A bootstrap being built: by default no filter but the router, one catch-all route to cluster
/// `echo`, no clusters.
pub struct Bootstrap {
    http_filters: Vec<Value>,
    routes: Value,
    clusters: Vec<Value>,
    normalize_paths: bool,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            http_filters: Vec::new(),
            routes: json!([{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]),
            clusters: Vec::new(),
            normalize_paths: false,
        }
    }
}

impl Bootstrap {
    pub fn new() -> Self {
        Self::default()
    }

    /// An HTTP filter, run after those added before it and before the router.
    pub fn http_filter(mut self, filter: Value) -> Self {
        self.http_filters.push(filter);
        self
    }

    /// The keygate filter ([`keygate_filter`]).
    pub fn keygate(self, wasm: &Path, plugin_config: &str) -> Self {
        self.http_filter(keygate_filter(wasm, plugin_config))
    }

    /// The routes of the one virtual host (a JSON list of `RouteConfiguration` routes).
    pub fn routes(mut self, routes: Value) -> Self {
        self.routes = routes;
        self
    }

    /// A STATIC cluster `name` → `addr`, replacing one of that name.
    pub fn cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.retain(|cluster| cluster["name"] != name);
        self.clusters.push(cluster(name, addr));
        self
    }

    /// A STATIC cluster `name` with several endpoints (round robin), replacing one of that name.
    pub fn cluster_of(mut self, name: &str, addrs: &[SocketAddr]) -> Self {
        self.clusters.retain(|cluster| cluster["name"] != name);
        let endpoints: Vec<Value> = addrs
            .iter()
            .map(|addr| json!({"endpoint": {"address": socket_address(*addr)}}))
            .collect();
        self.clusters.push(json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]}
        }));
        self
    }

    /// Envoy resolves `.`/`..` and merges `//` before any filter, as a deployment does.
    pub fn normalize_paths(mut self) -> Self {
        self.normalize_paths = true;
        self
    }

    pub fn build(self) -> Value {
        let mut http_filters = self.http_filters;
        http_filters.push(router_filter());
        let mut listener = http_listener("main", self.routes, http_filters);
        if self.normalize_paths {
            let manager = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
            manager["normalize_path"] = json!(true);
            manager["merge_slashes"] = json!(true);
        }
        json!({
            "admin": {"address": any_port()},
            // Histograms reach the admin pages at each flush (default 5 s): sooner for the tests.
            "stats_flush_interval": "1s",
            "static_resources": {
                "listeners": [listener],
                "clusters": self.clusters
            }
        })
    }
}

/// A listener `name` on 127.0.0.1 port 0 whose HTTP connection manager runs `http_filters` (the
/// router among them) over `routes`, in one virtual host for every domain.
pub fn http_listener(name: &str, routes: Value, http_filters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "address": any_port(),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "ingress",
                "route_config": {
                    "name": "local",
                    "virtual_hosts": [{"name": "everything", "domains": ["*"], "routes": routes}]
                },
                "http_filters": http_filters
            }
        }]}]
    })
}

/// The keygate filter: the module at `wasm` in Envoy's V8 runtime, reading `JWT_SECRET` from
/// Envoy's environment, configured with `plugin_config` (JSON text, passed on as it is).
pub fn keygate_filter(wasm: &Path, plugin_config: &str) -> Value {
    json!({
        "name": "keygate",
        "typed_config": {
            "@type": WASM_FILTER,
            "config": {
                "name": "keygate",
                "root_id": "keygate",
                "vm_config": {
                    "vm_id": "keygate",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm.display().to_string()}},
                    "environment_variables": {"host_env_keys": ["JWT_SECRET"]}
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config
                }
            }
        }
    })
}

pub fn router_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        }
    })
}

/// A STATIC cluster `name` with the one endpoint `addr`.
pub fn cluster(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": load_assignment(name, addr)
    })
}

/// A cluster's one endpoint, `addr`.
pub fn load_assignment(name: &str, addr: SocketAddr) -> Value {
    json!({
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(addr)}}]}]
    })
}

pub fn socket_address(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

/// 127.0.0.1 port 0: the OS picks the port.
pub fn any_port() -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": 0}})
}
