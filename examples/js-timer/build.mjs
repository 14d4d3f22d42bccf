// Builds the component: target/timer_js.wasm, from src/timer.js and ../../wit.
//
//   npm ci && npm run build      (or: node build.mjs [OUT])
//
// componentize-js is told to leave out every WASI feature of its engine, so the component
// imports nothing but `attune:timer/types`:
// - `http` (fetch) and `fetch-event` (an incoming-HTTP handler) import wasi:http, which the
//   host does not link: a component built with them is refused at load;
// - `stdio`, `random` and `clocks` would import WASI that the host links only emptied
//   (output discarded, a fixed "random" stream, clocks stuck at the epoch), so they bring
//   nothing. Without them, Math.random() is a fixed sequence and Date.now() is the moment
//   the component was built: the timer logic must not read either.
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
  disableFeatures: ["http", "fetch-event", "stdio", "random", "clocks"],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`${out}: ${(component.length / 1e6).toFixed(1)} MB in ${seconds} s`);
