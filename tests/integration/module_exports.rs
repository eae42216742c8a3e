//! The built keygate.wasm exports the proxy-wasm callbacks keygate implements and no others:
//! Envoy enters the VM for every callback a module exports, on every request, so `make wasm`
//! drops the ones the SDK exports for callbacks keygate leaves to its do-nothing defaults.

use std::collections::BTreeSet;

use wasmparser::{Parser, Payload};

/// What Envoy may call: the module's setup, the host's allocator, and the callbacks keygate
/// implements (`proxy_on_delete` drops a request's context, which keygate's `Drop` acts on).
const EXPORTED: &[&str] = &[
    "_initialize",
    "memory",
    "proxy_abi_version_0_2_1",
    "proxy_on_configure",
    "proxy_on_context_create",
    "proxy_on_delete",
    "proxy_on_http_call_response",
    "proxy_on_memory_allocate",
    "proxy_on_request_body",
    "proxy_on_request_headers",
    "proxy_on_request_trailers",
    "proxy_on_tick",
    "proxy_on_vm_start",
];

fn exports(module: &[u8]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::ExportSection(reader) = payload.unwrap() {
            for export in reader {
                let export = export.unwrap();
                found.insert(export.name.to_owned());
            }
        }
    }
    found
}

#[test]
fn the_module_exports_only_what_keygate_implements() {
    let path = testkit::bins::keygate_wasm();
    let module = std::fs::read(&path).unwrap();
    let found = exports(&module);
    let names: BTreeSet<&str> = found.iter().map(String::as_str).collect();
    let expected: BTreeSet<&str> = EXPORTED.iter().copied().collect();
    assert_eq!(
        names,
        expected,
        "{} exports other callbacks than keygate implements. Built without `make wasm`? It \
         drops the unused ones (UNUSED_CALLBACKS in the Makefile). If the SDK or keygate \
         changed, update UNUSED_CALLBACKS and this list together.",
        path.display()
    );
}
