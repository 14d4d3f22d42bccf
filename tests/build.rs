//! Builds the test fixture components (see `fixtures/`) and hands their paths to the tests.

#[path = "../host/build/wasm_component.rs"]
mod wasm_component;

fn main() {
    let root = wasm_component::workspace_root();
    let hostile = wasm_component::build(
        &root,
        "hostile-timer",
        &[
            "tests/fixtures/hostile-timer/src",
            "tests/fixtures/hostile-timer/Cargo.toml",
        ],
    );
    println!("cargo:rustc-env=HOSTILE_TIMER_WASM={}", hostile.display());
    let future = wasm_component::build(
        &root,
        "future-timer",
        &[
            "tests/fixtures/future-timer/src",
            "tests/fixtures/future-timer/Cargo.toml",
        ],
    );
    println!("cargo:rustc-env=FUTURE_TIMER_WASM={}", future.display());
}
