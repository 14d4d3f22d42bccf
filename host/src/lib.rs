//! The Attune timer sensor: a daemon whose timer logic runs in a sandboxed WebAssembly
//! component behind the `attune:timer` WIT interface.
//!
//! The crate is layered; each layer may use the layers below it and never one above
//! (`tests/layers.rs` checks it). Data flows one way: lifecycle messages → rule table →
//! clock → component → outbox → API. `ARCHITECTURE.md` at the repository root is the map.
//!
//! | layer | owns |
//! |---|---|
//! | [`app`] | the binary's commands: `check`, local mode, logging set-up |
//! | [`daemon`] | settings, and the daemon's start, run and shutdown; owns every task it starts; the admin listener and systemd notifications |
//! | [`platform`] | the Attune side: API client, token and its renewal, the outbox, the rule-lifecycle transport |
//! | [`schedule`] | the rule table, the clock, live component swap, and the events they produce |
//! | [`component`] | finding, loading, checking and calling a timer component in its sandbox |
//! | [`store`] | the state store: undelivered events and rules' timer state, in SQLite |
//! | [`telemetry`] | every exported metric: names, help, units, bounded label sets |
//! | `support` | small helpers every layer shares: backoff, blocking calls, redaction |

pub mod app;
pub mod component;
pub mod daemon;
pub mod platform;
pub mod schedule;
pub mod store;
pub(crate) mod support;
pub mod telemetry;
