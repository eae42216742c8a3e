//! The proxy-wasm contexts: a thin layer that moves data between Envoy and the host-free flows
//! (`RequestFlow` per request, `RootFlow` per worker). Compiled for wasm32 only.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::config::{Config, KeyMaterial};
use crate::gate::decision::Gate;
use crate::proxy::apply::FlowAction;
use crate::proxy::flow::RequestFlow;
use crate::proxy::host::{Callout, CalloutAnswer, Host};
use crate::proxy::root::RootFlow;
use crate::gate::metrics::{MetricKind, Metrics, PendingCounts};
use crate::gate::response::LocalReply;
use crate::revocation::cache::{SharedData, SharedSetError};
use crate::policy::rate_limits::KEY_LIMITS_HEADER;

/// How often the root context looks for revocation checks whose leading request went away.
const TICK: Duration = Duration::from_millis(100);

/// Registers the root context; Envoy calls this when it loads the module.
pub fn start() {
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| Box::new(KeygateRoot::new(context_id)));
}

/// Per-plugin, per-worker state: the root flow (with the gate its HTTP contexts share), once a
/// configuration is accepted.
struct KeygateRoot {
    context_id: u32,
    root: Option<RootFlow>,
}

impl KeygateRoot {
    fn new(context_id: u32) -> Self {
        Self {
            context_id,
            root: None,
        }
    }
}

impl Context for KeygateRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let Some(root) = self.root.as_mut() else {
            return;
        };
        let body = || {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
        };
        root.on_callout_response(&EnvoyHost, token_id, &callout_answer(), body, now_ms());
    }
}

impl RootContext for KeygateRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        // Follow Envoy's level for the wasm component, so filtered lines cost no host call.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let json = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                error!("cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        let env = |name: &str| std::env::var(name).ok();
        let config = match Config::parse(&json, &env) {
            Ok(config) => config,
            Err(problem) => {
                error!("invalid plugin configuration: {problem}");
                return false;
            }
        };
        for provider in &config.providers {
            if let KeyMaterial::Secrets(secrets) = &provider.keys
                && secrets.iter().any(|s| s.as_bytes().len() < 32)
            {
                warn!(
                    "provider {:?}: a secret is shorter than 32 bytes; HS256 keys should have at least 256 bits",
                    provider.name
                );
            }
        }
        info!(
            "configured (root context {}): {} provider(s), revocation cluster {:?}",
            self.context_id,
            config.providers.len(),
            config.revocation.as_ref().map(|r| r.cluster.as_str())
        );
        let mut metrics = Metrics::define(&mut define_metric);
        metrics.define_providers(
            &mut define_metric,
            config.providers.iter().map(|provider| provider.name.as_str()),
        );
        let gate = Rc::new(Gate::new(config, metrics));
        self.root = Some(RootFlow::new(gate, self.context_id));
        if let Err(status) = hostcalls::set_tick_period(TICK) {
            warn!("cannot set the tick period: {status:?}");
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(root) = self.root.as_mut() else {
            return;
        };
        flush_counts(root.gate().metrics.counts_flushed);
        root.on_tick(&EnvoyHost, now_ms());
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(KeygateHttp {
            context_id,
            flow: self
                .root
                .as_ref()
                .map(|root| RequestFlow::new(Rc::clone(root.gate()), context_id)),
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
        if let Some(flow) = self.flow.as_mut() {
            flow.on_callout_response(&EnvoyHost, token_id, &callout_answer(), now_ms());
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
            EnvoyHost.send_reply(&LocalReply {
                status: 503,
                headers: vec![("content-type", "text/plain".to_owned())],
                body: crate::gate::response::UNAVAILABLE_BODY.to_owned(),
            });
            return Action::Pause;
        };
        match flow.on_request_headers(&EnvoyHost, now_ms()) {
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

impl Drop for KeygateHttp {
    fn drop(&mut self) {
        if let Some(flow) = self.flow.as_mut() {
            flow.on_destroyed();
        }
    }
}

thread_local! {
    /// This VM's counter increments since the last tick (see `PendingCounts`).
    static PENDING_COUNTS: RefCell<PendingCounts> = RefCell::new(PendingCounts::default());
}

/// Hands the counters' increments since the last tick to Envoy, one host call per counter, then
/// counts the flush itself (directly: it must arrive after them).
fn flush_counts(counts_flushed: Option<u32>) {
    PENDING_COUNTS.with(|pending| {
        for (metric, count) in pending.borrow_mut().take() {
            let _ = hostcalls::increment_metric(metric, i64::try_from(count).unwrap_or(i64::MAX));
        }
    });
    if let Some(metric) = counts_flushed {
        let _ = hostcalls::increment_metric(metric, 1);
    }
}

/// Milliseconds since the Unix epoch from Envoy's clock. A clock error yields 0, which makes every
/// token with `exp` fail its time check rather than pass it.
fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The answer to the callout being delivered: `:status` and `cache-control`.
fn callout_answer() -> CalloutAnswer {
    let header = |name: &str| {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
    };
    CalloutAnswer::from_headers(
        header(":status").as_deref(),
        header("cache-control").as_deref(),
    )
    .with_key_limits(header(KEY_LIMITS_HEADER).as_deref())
}

fn define_metric(kind: MetricKind, name: &str) -> Option<u32> {
    let kind = match kind {
        MetricKind::Counter => MetricType::Counter,
        MetricKind::Histogram => MetricType::Histogram,
        MetricKind::Gauge => MetricType::Gauge,
    };
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            warn!("cannot define stat {name}: {status:?}");
            None
        }
    }
}

/// Envoy through proxy-wasm host calls. Failures are logged, never unwrapped: a panic would
/// take the whole VM, and every request on this worker, down with it.
struct EnvoyHost;

impl SharedData for EnvoyHost {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => SharedSetError::CasMismatch,
            _ => SharedSetError::Failed,
        })
    }
}

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

    fn dispatch_post(&self, callout: &Callout<'_>, body: &[u8]) -> Result<u32, String> {
        hostcalls::dispatch_http_call(
            callout.cluster,
            vec![
                (":method", "POST"),
                (":path", callout.path),
                (":authority", callout.authority),
                ("content-type", "application/json"),
            ],
            Some(body),
            vec![],
            callout.timeout,
        )
        .map_err(|status| format!("{status:?}"))
    }

    fn queue(&self, name: &str) -> Option<u32> {
        // Envoy's host always grants a queue (the SDK would panic on any other status).
        hostcalls::register_shared_queue(name).ok()
    }

    fn enqueue(&self, queue: u32, message: &[u8]) -> bool {
        hostcalls::enqueue_shared_queue(queue, Some(message)).is_ok()
    }

    fn dequeue(&self, queue: u32) -> Option<Vec<u8>> {
        hostcalls::dequeue_shared_queue(queue).ok().flatten()
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

    fn switch_context(&self, context_id: u32) -> bool {
        hostcalls::set_effective_context(context_id).is_ok()
    }

    fn increment(&self, metric: Option<u32>) {
        if let Some(metric) = metric {
            PENDING_COUNTS.with(|pending| pending.borrow_mut().add(metric));
        }
    }

    fn record(&self, metric: Option<u32>, value: u64) {
        if let Some(metric) = metric {
            let _ = hostcalls::record_metric(metric, value);
        }
    }

    fn route_requirement(&self) -> Option<Vec<u8>> {
        hostcalls::get_property(ROUTE_REQUIREMENT.to_vec()).ok().flatten()
    }

    fn set_filter_state(&self, name: &str, value: &str) {
        if let Err(status) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
            warn!("cannot set filter state {name}: {status:?}");
        }
    }
}

/// Where a route selects its requirement: `metadata.filter_metadata.keygate.requirement`.
const ROUTE_REQUIREMENT: &[&str] = &[
    "xds",
    "route_metadata",
    "filter_metadata",
    "keygate",
    "requirement",
];
