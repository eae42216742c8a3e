//! The proxy-wasm contexts: a thin layer that moves data between Envoy and the host-free core.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

use crate::config::Config;
use crate::decision::{DenyReason, Gate};
use crate::flow::{FlowAction, RequestFlow};
use crate::host::{Callout, Host};
use crate::response::LocalReply;

/// Registers the root context; Envoy calls this when it loads the module.
pub fn start() {
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| Box::new(KeygateRoot::new(context_id)));
}

/// Per-plugin state: the parsed configuration, shared by this worker's HTTP contexts.
struct KeygateRoot {
    context_id: u32,
    gate: Option<Rc<Gate>>,
}

impl KeygateRoot {
    fn new(context_id: u32) -> Self {
        Self {
            context_id,
            gate: None,
        }
    }
}

impl Context for KeygateRoot {}

impl RootContext for KeygateRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        // Follow Envoy's level for the wasm component, so filtered lines cost no host call.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let json = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                error!("cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        let env = |name: &str| std::env::var(name).ok();
        match Config::parse(&json, &env) {
            Ok(config) => {
                if config.secrets.iter().any(|s| s.as_bytes().len() < 32) {
                    warn!(
                        "a secret is shorter than 32 bytes; HS256 keys should have at least 256 bits"
                    );
                }
                info!(
                    "configured (root context {}): {} secret(s), revocation cluster {:?}",
                    self.context_id,
                    config.secrets.len(),
                    config.revocation.cluster
                );
                self.gate = Some(Rc::new(Gate::new(config)));
                true
            }
            Err(problem) => {
                error!("invalid plugin configuration: {problem}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(KeygateHttp {
            context_id,
            flow: self
                .gate
                .as_ref()
                .map(|gate| RequestFlow::new(Rc::clone(gate), context_id)),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct KeygateHttp {
    context_id: u32,
    /// `None` only if Envoy created a stream before a configuration was accepted.
    flow: Option<RequestFlow>,
}

impl Context for KeygateHttp {
    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, _body: usize, _: usize) {
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u16>().ok());
        if let Some(flow) = self.flow.as_mut() {
            flow.on_callout_response(&EnvoyHost, token_id, status);
        }
    }
}

impl HttpContext for KeygateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(flow) = self.flow.as_mut() else {
            error!(
                "[{}] keygate has no configuration; denying",
                self.context_id
            );
            EnvoyHost.send_reply(&DenyReason::Unavailable.reply("keygate"));
            return Action::Pause;
        };
        match flow.on_request_headers(&EnvoyHost, unix_seconds()) {
            FlowAction::Continue => Action::Continue,
            FlowAction::Pause => Action::Pause,
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.hold_while_waiting()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.hold_while_waiting()
    }
}

impl KeygateHttp {
    /// Envoy stops all iteration while the headers wait for keyservice, so it does not call
    /// these then; a host that delivered the body anyway must not be able to release the request
    /// before the answer by way of it.
    fn hold_while_waiting(&self) -> Action {
        match &self.flow {
            Some(flow) if flow.is_waiting() => Action::Pause,
            _ => Action::Continue,
        }
    }
}

/// Seconds since the Unix epoch from Envoy's clock. A clock error yields 0, which makes every
/// token with `exp` or `nbf` fail its time check rather than pass it.
fn unix_seconds() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Envoy through proxy-wasm host calls. Failures are logged, never unwrapped: a panic would
/// take the whole VM, and every request on this worker, down with it.
struct EnvoyHost;

impl Host for EnvoyHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
            warn!("cannot set request header {name}: {status:?}");
        }
    }

    fn dispatch_get(&self, callout: &Callout<'_>) -> Result<u32, String> {
        hostcalls::dispatch_http_call(
            callout.cluster,
            vec![
                (":method", "GET"),
                (":path", callout.path),
                (":authority", callout.authority),
                ("accept", "application/json"),
            ],
            None,
            vec![],
            callout.timeout,
        )
        .map_err(|status| format!("{status:?}"))
    }

    fn send_reply(&self, reply: &LocalReply) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        if let Err(status) =
            hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()))
        {
            error!("cannot send the local reply: {status:?}");
        }
    }

    fn resume_request(&self) {
        if let Err(status) = hostcalls::resume_http_request() {
            error!("cannot resume the request: {status:?}");
        }
    }
}
