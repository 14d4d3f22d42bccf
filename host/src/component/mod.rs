//! The component layer: finding, loading, checking and calling a timer component in its
//! sandbox. It knows nothing of rules' lifecycles, clocks or the platform; it uses only
//! `support`.
//!
//! - [`policy`]: every limit put on a component, in one place.
//! - `sandbox`: the store state and the emptied WASI a component is linked with.
//! - `load`: compiling (with the on-disk cache) and checking a component's exports.
//! - [`source`]: the one place a component is found and loaded (a file, or the built-in one).
//! - [`watch`]: what asks for a swap (SIGHUP, a changed component file).
//! - [`fault`]: host panics as errors, and the retry-after-fault rule.
//! - `runtime`: [`TimerRuntime`] — one engine, one compiled component, a pool of
//!   instances, and calls that are checked on the way in and on the way out.
//! - `types`: what goes into a call and what comes back; `payload`: an event payload.
//!
//! This file is the layer's façade: it only declares and re-exports. Submodules reach each
//! other directly (`super::types::…`), never through it.
//!
//! Invariants: a call never runs on an async worker thread (see
//! `support::blocking`); a call that faults poisons nothing but its own instance; every
//! answer is checked against [`Limits`] before anyone above sees it.

mod bindings;
pub mod fault;
mod load;
mod payload;
pub mod policy;
mod runtime;
mod sandbox;
pub mod source;
mod types;
pub mod watch;

pub use bindings::WIT_PACKAGE_VERSION;
pub use load::CompileCache;
pub use payload::{NotAnObject, Payload};
pub use policy::Limits;
pub use runtime::{TimerRuntime, TimerRuntimeBuilder, EMBEDDED_COMPONENT};
pub use source::Source;
pub use types::{CallError, ComponentInfo, Fire, LoadError, Rule, RuleError, Schedule, TimerKind};
