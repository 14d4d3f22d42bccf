//! What a component's store holds, and the (empty) world of capabilities it is linked with.
//!
//! The WIT world grants a component nothing: it only exports `timer`. Components built with
//! ordinary toolchains still import WASI for their language runtime (stdio, clocks, random),
//! so the host links WASI 0.2 — with every capability emptied: no files, no environment, no
//! arguments, no network, stdio that goes nowhere, clocks frozen at the epoch and a fixed
//! "random" stream. A component can link and run, but it cannot see or touch the machine,
//! and it stays deterministic. Any import beyond WASI and the `attune:timer` package is
//! refused at load (see `runtime::component`).

use std::time::Duration;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::policy::Limits;

/// Per-instance host state.
pub(crate) struct SandboxCtx {
    /// The emptied WASI context; see the module docs.
    wasi: WasiCtx,
    /// WASI's resource table (streams and the like; stays tiny for pure logic).
    table: ResourceTable,
    /// Memory caps, enforced through `Store::limiter`.
    pub(crate) limits: StoreLimits,
}

impl SandboxCtx {
    pub(crate) fn new(limits: &Limits) -> Self {
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x5a]))
            .insecure_random_seed(0)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.max_memory_bytes)
                .instances(16)
                .tables(64)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
        }
    }
}

impl WasiView for SandboxCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock that always reads the Unix epoch: "now" reaches a component only as an argument.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The linker every component is instantiated through: emptied WASI and nothing else.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<SandboxCtx>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}

/// Import names a component may have: WASI 0.2 (linked emptied) and this package's types.
/// `wasi:http` is WASI 0.2 too, but it is not linked: a timer has no business on the
/// network, and refusing it here names it, where linking would fail with a raw message.
pub(crate) fn import_is_granted(name: &str) -> bool {
    (name.starts_with("wasi:") && !name.starts_with("wasi:http/"))
        || name.starts_with("attune:timer/types@")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_and_our_types_are_granted_but_not_http() {
        assert!(import_is_granted("wasi:clocks/wall-clock@0.2.6"));
        assert!(import_is_granted("wasi:io/streams@0.2.6"));
        assert!(import_is_granted("attune:timer/types@0.1.0"));
        assert!(!import_is_granted("wasi:http/types@0.2.10"));
        assert!(!import_is_granted("wasi:http/outgoing-handler@0.2.0"));
        assert!(!import_is_granted("evil:host/exec"));
    }
}
