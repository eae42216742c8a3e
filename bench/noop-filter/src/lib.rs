//! The floor of any proxy-wasm filter, for keygate's benchmark (`bench/`): one host call per
//! request to read `authorization`, then `Continue`. Without the header it answers `401`, so
//! the harness can check that the filter is really in the request path; the benchmark's
//! requests always carry the header, so what is measured is the read and nothing else.
//!
//! Built for `wasm32-wasip1` by `make bench-wasm` into
//! `target/wasm32-wasip1/release/keygate_bench_noop.wasm`; Envoy loads it with `root_id: noop`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(NoopRoot));
}}

struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if self.get_http_request_header("authorization").is_some() {
            Action::Continue
        } else {
            self.send_http_response(401, vec![], Some(b"missing authorization"));
            Action::Pause
        }
    }
}
