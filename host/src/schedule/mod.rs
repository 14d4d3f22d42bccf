//! The schedule layer: which rules run, and when each fires.
//!
//! - [`rules`]: the rule table — the desired rules by id; starts, keeps, replaces or stops
//!   their timers, and is the only way in for lifecycle messages and snapshots.
//! - `clock`: the scheduler — one structure holds every rule's next fire; the host owns
//!   time (its anchor to UTC and its precise wait are submodules).
//! - [`swap`]: live component swap — every running rule checked against the new component
//!   before the clock takes it.
//! - [`event`]: an event on its way out, and the [`EventSink`] the clock hands it to.
//!
//! May use: `component`, `support`. Never: the platform (the API, the broker, the outbox
//! sit above; they reach the schedule through [`rules::RuleTable`] and [`EventSink`]).
//! Invariant: nothing here blocks an async worker on a component call (calls go through
//! `support::blocking`).

mod clock;
pub mod event;
pub mod rules;
pub mod swap;

pub use clock::misfire::{Misfire, MisfirePolicy};
pub use clock::wall::{SystemWall, WallClock};
pub use clock::{
    Clock, ClockGuard, ClockOptions, Prepared, ReplaceError, TimerStatus, HEARTBEAT, ON_TIME,
};
pub use event::{Event, EventSink};
pub use rules::{Applied, RuleSource, RuleTable, RuleView, SnapshotReport};
