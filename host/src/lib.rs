//! The Attune timer sensor: a daemon whose timer logic runs in a sandboxed WebAssembly
//! component behind the `attune:timer` WIT interface.
//!
//! Modules, and what each owns:
//! - [`policy`]: every limit put on a component (memory, CPU deadline, sizes), in one place.
//! - [`sandbox`]: the store state and the emptied WASI a component is linked with.
//! - [`runtime`]: loading, checking and calling a component through a pool of instances.
//! - [`check`]: the `check` command — try a rule's params against a component.

pub mod check;
pub mod policy;
pub mod runtime;
pub(crate) mod sandbox;
