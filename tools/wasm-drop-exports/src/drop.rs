//! The module rewrite: every section copied as it is, but the export section, rebuilt without
//! the dropped function exports.

use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
use wasmparser::{ExternalKind, Parser, Payload, Validator};

/// `module` without the function exports named in `names`, and the names it dropped (in the
/// module's order). Other exports, and names it does not export as functions, are kept.
pub fn drop_exports(module: &[u8], names: &[String]) -> Result<(Vec<u8>, Vec<String>), String> {
    Validator::new()
        .validate_all(module)
        .map_err(|error| format!("not a valid WebAssembly module: {error}"))?;
    let mut out = Module::new();
    let mut dropped = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|error| error.to_string())?;
        if let Payload::ExportSection(reader) = &payload {
            let mut exports = ExportSection::new();
            for export in reader.clone() {
                let export = export.map_err(|error| error.to_string())?;
                if export.kind == ExternalKind::Func && names.iter().any(|n| n == export.name) {
                    dropped.push(export.name.to_owned());
                    continue;
                }
                exports.export(export.name, export_kind(export.kind)?, export.index);
            }
            out.section(&exports);
        } else if let Some((id, range)) = payload.as_section() {
            let data = usize::try_from(range.start)
                .ok()
                .zip(usize::try_from(range.end).ok())
                .and_then(|(start, end)| module.get(start..end))
                .ok_or("a section reaches past the end of the module")?;
            out.section(&RawSection { id, data });
        }
    }
    let trimmed = out.finish();
    Validator::new()
        .validate_all(&trimmed)
        .map_err(|error| format!("the rewritten module does not validate: {error}"))?;
    Ok((trimmed, dropped))
}

fn export_kind(kind: ExternalKind) -> Result<ExportKind, String> {
    match kind {
        ExternalKind::Func => Ok(ExportKind::Func),
        ExternalKind::Table => Ok(ExportKind::Table),
        ExternalKind::Memory => Ok(ExportKind::Memory),
        ExternalKind::Global => Ok(ExportKind::Global),
        ExternalKind::Tag => Ok(ExportKind::Tag),
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "an export of a kind this tool does not know: {other:?}"
        )),
    }
}

#[cfg(test)]
#[path = "drop_tests.rs"]
mod tests;
