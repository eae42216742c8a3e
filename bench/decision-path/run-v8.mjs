// Runs the wasm32-wasip1 build of the decision-path harness under node's V8 (Envoy's wasm engine):
//   node run-v8.mjs keygate-decision-path.wasm [budget-ms] [cases]
// The module links keygate, whose proxy-wasm imports are never called here: they are stubbed with
// functions that throw, and its `_initialize` export (the proxy-wasm entry) is hidden from WASI.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, env } from 'node:process';

const wasi = new WASI({ version: 'preview1', args: argv.slice(2), env });
const module = await WebAssembly.compile(await readFile(argv[2]));
const imports = wasi.getImportObject();
imports.env = {};
for (const { module: from, name } of WebAssembly.Module.imports(module)) {
  if (from === 'env') {
    imports.env[name] = () => { throw new Error(`host call ${name} outside Envoy`); };
  }
}
const instance = await WebAssembly.instantiate(module, imports);
const { _initialize, ...exports } = instance.exports;
process.exitCode = wasi.start({ exports });
