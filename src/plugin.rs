//! The proxy-wasm contexts: a thin layer that moves data between Envoy and the host-free core.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::config::{Config, KeyMaterial};
use crate::decision::Gate;
use crate::flow::{
    FlowAction, RequestFlow, expire_parked, flight_path, settle_flight, wake, wake_parked,
};
use crate::host::{Callout, CalloutAnswer, Host};
use crate::metrics::{MetricKind, Metrics, PendingCounts};
use crate::remote_jwks::FetchOutcome;
use crate::response::LocalReply;
use crate::revocation::Digest;
use crate::revocation_cache::{SharedData, SharedSetError};

/// How often the root context looks for revocation checks whose leading request went away.
const TICK: Duration = Duration::from_millis(100);

/// Registers the root context; Envoy calls this when it loads the module.
pub fn start() {
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| Box::new(KeygateRoot::new(context_id)));
}

/// Per-plugin, per-worker state: the parsed configuration and the worker's caches, shared by
/// this worker's HTTP contexts.
struct KeygateRoot {
    context_id: u32,
    gate: Option<Rc<Gate>>,
    /// Callouts the root context dispatched for orphaned flights.
    callouts: HashMap<u32, (Digest, u64)>,
    /// JWKS and discovery fetches in flight, by provider.
    jwks_fetches: HashMap<u32, usize>,
}

impl KeygateRoot {
    fn new(context_id: u32) -> Self {
        Self {
            context_id,
            gate: None,
            callouts: HashMap::new(),
            jwks_fetches: HashMap::new(),
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
        let Some(gate) = self.gate.clone() else {
            return;
        };
        let now = now_ms();
        if let Some(provider) = self.jwks_fetches.remove(&token_id) {
            self.jwks_answered(&gate, provider, body_size, now);
        } else if let Some((digest, started_ms)) = self.callouts.remove(&token_id) {
            EnvoyHost.record(
                gate.metrics.callout_latency_ms,
                now.saturating_sub(started_ms),
            );
            let (status, waiters) =
                settle_flight(&gate, &EnvoyHost, &digest, &callout_answer(), now);
            wake(&gate, &EnvoyHost, waiters, status);
        }
        EnvoyHost.switch_context(self.context_id);
    }
}

impl KeygateRoot {
    /// Dispatches the JWKS fetches that are due, from the root context, so their answers
    /// come back here whatever happens to requests.
    fn fetch_due_keys(&mut self, gate: &Gate, now: u64) {
        for (index, provider) in gate.config.providers.iter().enumerate() {
            let (KeyMaterial::Remote(remote), Some(state)) = (
                &provider.keys,
                gate.providers.get(index).and_then(|p| p.jwks.as_ref()),
            ) else {
                continue;
            };
            let Some(fetch) = state.borrow().due(remote, now) else {
                continue;
            };
            let callout = Callout {
                cluster: &remote.cluster,
                authority: &remote.authority,
                path: &fetch.path,
                timeout: Duration::from_millis(remote.timeout_ms),
            };
            match EnvoyHost.dispatch_get(&callout) {
                Ok(call_id) => {
                    state.borrow_mut().started(call_id, fetch.kind, now);
                    self.jwks_fetches.insert(call_id, index);
                }
                Err(problem) => {
                    EnvoyHost.increment(gate.metrics.jwks_error);
                    state.borrow_mut().dispatch_failed(now);
                    warn!(
                        "provider {:?}: JWKS fetch from cluster {:?} could not be dispatched: {problem}",
                        provider.name, remote.cluster
                    );
                }
            }
        }
    }

    fn jwks_answered(&mut self, gate: &Gate, provider: usize, body_size: usize, now: u64) {
        let (Some(config), Some(state)) = (
            gate.config.providers.get(provider),
            gate.providers.get(provider).and_then(|p| p.jwks.as_ref()),
        ) else {
            return;
        };
        let KeyMaterial::Remote(remote) = &config.keys else {
            return;
        };
        let answer = callout_answer();
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten();
        let outcome = state.borrow_mut().on_response(
            remote,
            &config.algorithms,
            answer.status,
            body.as_deref(),
            now,
        );
        match outcome {
            FetchOutcome::Updated { keys } => {
                EnvoyHost.increment(gate.metrics.jwks_ok);
                info!("provider {:?}: {keys} key(s) from its JWKS", config.name);
                gate.keys_changed();
                wake_parked(gate, &EnvoyHost, provider, now);
            }
            FetchOutcome::Discovered => {
                EnvoyHost.increment(gate.metrics.jwks_ok);
                info!("provider {:?}: JWKS location discovered", config.name);
                // Fetch the keys now rather than on the next tick.
                self.fetch_due_keys(gate, now);
            }
            FetchOutcome::Failed(reason) => {
                EnvoyHost.increment(gate.metrics.jwks_error);
                warn!(
                    "provider {:?}: JWKS fetch failed ({reason}); keeping the current keys and retrying",
                    config.name
                );
                // Requests that waited for a refetch (an unknown `kid`) are decided now, with the
                // keys in hand; without keys they keep waiting for a retry, up to their bound.
                if state.borrow().keys().is_some() {
                    wake_parked(gate, &EnvoyHost, provider, now);
                }
            }
        }
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
        let metrics = Metrics::define(&mut define_metric);
        self.gate = Some(Rc::new(Gate::new(config, metrics)));
        if let Err(status) = hostcalls::set_tick_period(TICK) {
            warn!("cannot set the tick period: {status:?}");
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(gate) = self.gate.clone() else {
            return;
        };
        flush_counts(gate.metrics.counts_flushed);
        let now = now_ms();
        self.fetch_due_keys(&gate, now);
        expire_parked(&gate, &EnvoyHost, now);
        EnvoyHost.switch_context(self.context_id);
        if !gate.in_flight.borrow().has_orphans() {
            return;
        }
        let orphans = gate.in_flight.borrow_mut().adopt_orphans(self.context_id);
        let Some(revocation) = &gate.config.revocation else {
            return;
        };
        for digest in orphans {
            let Some(path) = flight_path(&gate, &digest) else {
                continue;
            };
            let callout = Callout {
                cluster: &revocation.cluster,
                authority: &revocation.authority,
                path: &path,
                timeout: Duration::from_millis(revocation.timeout_ms),
            };
            let now = now_ms();
            match EnvoyHost.dispatch_get(&callout) {
                Ok(call_id) => {
                    self.callouts.insert(call_id, (digest, now));
                }
                Err(problem) => {
                    warn!("revocation check could not be dispatched: {problem}");
                    let (status, waiters) =
                        settle_flight(&gate, &EnvoyHost, &digest, &CalloutAnswer::default(), now);
                    wake(&gate, &EnvoyHost, waiters, status);
                    EnvoyHost.switch_context(self.context_id);
                }
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
                body: crate::response::UNAVAILABLE_BODY.to_owned(),
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
}

fn define_metric(kind: MetricKind, name: &str) -> Option<u32> {
    let kind = match kind {
        MetricKind::Counter => MetricType::Counter,
        MetricKind::Histogram => MetricType::Histogram,
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
}
