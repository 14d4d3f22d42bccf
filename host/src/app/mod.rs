//! The binary's commands, above everything else: what `main.rs` calls.
//!
//! - [`check`]: the `check` command — try a rule's params against a component.
//! - [`local`]: local mode — the clock and component on a rules file, events on stdout.
//! - [`logging`]: tracing to stderr (JSON lines or pretty).
//!
//! May use every layer below. Nothing below uses it.

pub mod check;
pub mod local;
pub mod logging;
