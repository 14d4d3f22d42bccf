// Builds the component: target/timer_js.wasm, from src/timer.js and ../../wit.
//
//   npm ci && npm run build      (or: node build.mjs [OUT])
//
// The host links WASI 0.2 *without* wasi:http, so componentize-js is told to leave out its
// `http` feature (fetch) and `fetch-event` (an incoming-HTTP handler); a component built
// with them imports wasi:http and is refused at load. stdio, random and clocks stay: the
// host links them (emptied), and stdio is how the engine reports an uncaught exception.
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, "target/timer_js.wasm"));
const started = Date.now();
const { component } = await componentize({
  sourcePath: resolve(here, "src/timer.js"),
  witPath: resolve(here, "../../wit"),
  worldName: "timer-component",
  disableFeatures: ["http", "fetch-event"],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`${out}: ${(component.length / 1e6).toFixed(1)} MB in ${seconds} s`);
