//! Removes function exports from a WebAssembly module, in place.
//!
//! `make wasm` runs it on keygate.wasm. The proxy-wasm Rust SDK exports every callback of the
//! ABI, and Envoy enters the VM for every callback a module exports, on every request, even
//! when the filter leaves it to the SDK's default that does nothing; without the export, Envoy
//! (proxy-wasm-cpp-host) skips the call and carries on as that default would.
//!
//! ```text
//! wasm-drop-exports FILE NAME...
//! ```
//!
//! Names the module does not export as functions are left alone, so a second run changes
//! nothing. The module is validated before and after; the file is replaced only by a valid one.

mod drop;

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((file, names)) = args.split_first() else {
        eprintln!("usage: wasm-drop-exports FILE NAME...");
        return ExitCode::from(2);
    };
    match run(Path::new(file), names) {
        Ok(removed) if removed.is_empty() => {
            println!(
                "{file}: none of the {} exports to drop is there",
                names.len()
            );
            ExitCode::SUCCESS
        }
        Ok(removed) => {
            println!("{file}: dropped {}", removed.join(", "));
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("wasm-drop-exports: {file}: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// Drops `names` from the exports of the module in `file`; returns the names dropped.
fn run(file: &Path, names: &[String]) -> Result<Vec<String>, String> {
    let module = std::fs::read(file).map_err(|error| format!("cannot read it: {error}"))?;
    let (trimmed, removed) = drop::drop_exports(&module, names)?;
    if removed.is_empty() {
        return Ok(removed);
    }
    // Written beside it, then renamed over it: a reader never sees half a module.
    let partial = file.with_extension("wasm.partial");
    std::fs::write(&partial, trimmed)
        .map_err(|error| format!("cannot write {}: {error}", partial.display()))?;
    std::fs::rename(&partial, file)
        .map_err(|error| format!("cannot replace it with {}: {error}", partial.display()))?;
    Ok(removed)
}
