//! Shared by the build scripts (`host/build.rs`, `tests/build.rs`): builds a workspace crate
//! for `wasm32-wasip2` as a component. Called from a build script: it reads the cargo
//! environment of the build script that calls it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the parent of the crate being built).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap())
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds `package` (its sources under `watch`, relative to the root) with the `guest`
/// profile, copies the component into `OUT_DIR/<file>` and returns that path.
///
/// A nested cargo with its own target directory: sharing the outer build's would deadlock
/// on cargo's lock. The outer build's flags are meant for the host, so they are dropped.
pub fn build(root: &Path, package: &str, watch: &[&str]) -> PathBuf {
    for watched in watch
        .iter()
        .chain(["wit", "Cargo.lock", "Cargo.toml"].iter())
    {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guest");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            "guest",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    if env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
    if !status.success() {
        panic!(
            "building {package} for wasm32-wasip2 failed ({status}); \
             is the target installed? run `rustup target add wasm32-wasip2`"
        );
    }
    let file = format!("{}.wasm", package.replace('-', "_"));
    let built = target_dir.join("wasm32-wasip2/guest").join(&file);
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join(&file);
    std::fs::copy(&built, &out).unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    out
}
