//! Builds the default timer component from `guest-timer/` and hands its path to the host as
//! `GUEST_TIMER_WASM`, so the binary embeds it and runs on its own. Setting
//! `ATTUNE_GUEST_WASM` to a prebuilt component skips that build (useful for packagers).

use attune_build_support as wasm_component;

fn main() {
    let root = wasm_component::workspace_root();
    println!(
        "cargo:rustc-env=WASMTIME_VERSION={}",
        wasmtime_version(&root)
    );
    println!("cargo:rerun-if-env-changed=ATTUNE_GUEST_WASM");
    let wasm = match std::env::var("ATTUNE_GUEST_WASM") {
        Ok(prebuilt) => {
            println!("cargo:rerun-if-changed={prebuilt}");
            prebuilt.into()
        }
        Err(_) => wasm_component::build(
            &root,
            "guest-timer",
            &["guest-timer/src", "guest-timer/Cargo.toml"],
        ),
    };
    println!("cargo:rustc-env=GUEST_TIMER_WASM={}", wasm.display());
}

/// The wasmtime version in the lockfile: part of the compiled-component cache key.
fn wasmtime_version(root: &std::path::Path) -> String {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasmtime\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = ")) {
                return v.trim_matches('"').to_string();
            }
        }
    }
    "unknown".to_string()
}
