use super::*;
use wasm_encoder::{
    CodeSection, Function, FunctionSection, Instruction, MemorySection, MemoryType, TypeSection,
};

/// A module with three functions exported as `keep`, `drop` and `also_drop`, a memory exported
/// as `memory`, and a custom section.
fn module() -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut functions = FunctionSection::new();
    for _ in 0..3 {
        functions.function(0);
    }
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("keep", ExportKind::Func, 0);
    exports.export("drop", ExportKind::Func, 1);
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("also_drop", ExportKind::Func, 2);
    module.section(&exports);
    let mut code = CodeSection::new();
    for _ in 0..3 {
        let mut body = Function::new([]);
        body.instruction(&Instruction::End);
        code.function(&body);
    }
    module.section(&code);
    module.section(&wasm_encoder::CustomSection {
        name: "note".into(),
        data: b"kept as it is".as_slice().into(),
    });
    module.finish()
}

fn exports(module: &[u8]) -> Vec<(String, ExternalKind)> {
    let mut found = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::ExportSection(reader) = payload.unwrap() {
            for export in reader {
                let export = export.unwrap();
                found.push((export.name.to_owned(), export.kind));
            }
        }
    }
    found
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| name.to_string()).collect()
}

#[test]
fn the_named_function_exports_go_and_everything_else_stays() {
    let original = module();
    let (trimmed, dropped) =
        drop_exports(&original, &names(&["drop", "also_drop", "absent"])).unwrap();
    assert_eq!(dropped, ["drop", "also_drop"]);
    assert_eq!(
        exports(&trimmed),
        [
            ("keep".to_owned(), ExternalKind::Func),
            ("memory".to_owned(), ExternalKind::Memory)
        ]
    );
    // The rest is copied byte for byte: only the export section got shorter.
    let removed_bytes = original.len() - trimmed.len();
    assert!(
        (b"drop".len() + b"also_drop".len()..40).contains(&removed_bytes),
        "{removed_bytes}"
    );
    assert!(
        trimmed
            .windows(b"kept as it is".len())
            .any(|w| w == b"kept as it is")
    );
}

#[test]
fn a_second_run_changes_nothing() {
    let (once, _) = drop_exports(&module(), &names(&["drop"])).unwrap();
    let (twice, dropped) = drop_exports(&once, &names(&["drop"])).unwrap();
    assert!(dropped.is_empty());
    assert_eq!(once, twice);
}

#[test]
fn only_function_exports_are_dropped() {
    let (trimmed, dropped) = drop_exports(&module(), &names(&["memory"])).unwrap();
    assert!(dropped.is_empty());
    assert_eq!(exports(&trimmed), exports(&module()));
}

#[test]
fn what_is_not_a_valid_module_is_refused() {
    let mut broken = module();
    // The custom section at the end now claims more bytes than there are.
    broken.truncate(broken.len() - 3);
    let error = drop_exports(&broken, &names(&["drop"])).unwrap_err();
    assert!(
        error.starts_with("not a valid WebAssembly module"),
        "{error}"
    );
    assert!(drop_exports(b"not wasm", &names(&["drop"])).is_err());
}
