//! The floor of any proxy-wasm filter, for keygate's benchmark (`bench/`): one host call per
//! request to read `authorization`, then `Continue`. Without the header it answers `401`, so
//! the harness can check that the filter is really in the request path; the benchmark's
//! requests always carry the header, so what is measured is the read and nothing else.
//!
//! With the plugin configuration `set-identity-headers` it also sets `x-user-id` and `x-org-id`
//! to fixed values: the floor of a wasm filter that passes an identity on as keygate does (two
//! header writes, each of which makes Envoy choose the route again), without any verification.
//!
//! Built for `wasm32-wasip1` by `make bench-wasm` into
//! `target/wasm32-wasip1/release/keygate_bench_noop.wasm`; Envoy loads it with `root_id: noop`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(NoopRoot { set_identity: false }));
}}

const SET_IDENTITY_HEADERS: &[u8] = b"set-identity-headers";

struct NoopRoot {
    set_identity: bool,
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _configuration_size: usize) -> bool {
        match self.get_plugin_configuration().as_deref() {
            None | Some(b"") => self.set_identity = false,
            Some(SET_IDENTITY_HEADERS) => self.set_identity = true,
            Some(_) => {
                log::error!("noop filter: the configuration is empty or `set-identity-headers`");
                return false;
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop {
            set_identity: self.set_identity,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    set_identity: bool,
}

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if self.get_http_request_header("authorization").is_none() {
            self.send_http_response(401, vec![], Some(b"missing authorization"));
            return Action::Pause;
        }
        if self.set_identity {
            self.set_http_request_header("x-user-id", Some("bench-user"));
            self.set_http_request_header("x-org-id", Some("bench-org"));
        }
        Action::Continue
    }
}
