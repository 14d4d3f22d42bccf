//! Builds the test fixture components (see `fixtures/`) and hands their paths to the tests.

use attune_build_support as wasm_component;

/// Each fixture crate, and the env var its `.wasm` path is exposed under.
const FIXTURES: &[(&str, &str)] = &[
    // Misbehaves per rule on request: traps, loops, memory growth, bad answers.
    ("hostile-timer", "HOSTILE_TIMER_WASM"),
    // Exports an incompatible `attune:timer` version.
    ("future-timer", "FUTURE_TIMER_WASM"),
    // Spins forever in `describe`: can never load.
    ("stuck-timer", "STUCK_TIMER_WASM"),
    // Tries files, environment, sockets and clocks on request, and reports what it got.
    ("snoop-timer", "SNOOP_TIMER_WASM"),
    // Imports `evil:host/exec`, which the world does not grant.
    ("evil-import-timer", "EVIL_IMPORT_TIMER_WASM"),
    // Answers with invalid UTF-8 strings on request.
    ("garbage-timer", "GARBAGE_TIMER_WASM"),
];

fn main() {
    let root = wasm_component::workspace_root();
    for (package, var) in FIXTURES {
        let src = format!("tests/fixtures/{package}/src");
        let manifest = format!("tests/fixtures/{package}/Cargo.toml");
        let wasm = wasm_component::build(&root, package, &[&src, &manifest]);
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}
