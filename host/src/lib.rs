//! The Attune timer sensor: a daemon whose timer logic runs in a sandboxed WebAssembly
//! component behind the `attune:timer` WIT interface.
//!
//! Modules, and what each owns:
//! - [`policy`]: every limit put on a component (memory, CPU deadline, sizes), in one place.
//! - [`sandbox`]: the store state and the emptied WASI a component is linked with.
//! - [`runtime`]: loading, checking and calling a component through a pool of instances.
//! - [`check`]: the `check` command — try a rule's params against a component.
//! - [`config`]: settings from the environment or stdin JSON, validated in the platform's order.
//! - [`logging`]: tracing to stderr (JSON lines or pretty) and URL redaction for logs.
//! - [`token`]: the sensor token, its unverified claims and scope, and its renewal loop.
//! - [`api`]: the Attune API client (health, rules listing, events, token renewal).
//! - [`outbox`]: asynchronous, bounded, retrying event delivery behind [`event::EventSink`].
//! - [`rules`]: the rule table — desired rules by id; starts, keeps, replaces or stops timers.
//! - [`clock`]: the scheduler — one structure holds every rule's next fire; the host owns time.
//! - [`lifecycle`]: the RabbitMQ rule-lifecycle listener, with reconnects and re-syncs.
//! - [`swap`]: live component swap — on SIGHUP or a changed component file, checked
//!   against every running rule before it is swapped in.
//! - [`local`]: local mode — the clock and component on a rules file, events on stdout.
//! - [`daemon`]: the daemon's startup sequence, run and graceful shutdown.

pub mod api;
pub mod check;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod event;
pub mod lifecycle;
pub mod local;
pub mod logging;
pub mod outbox;
pub mod policy;
pub mod rules;
pub mod runtime;
pub(crate) mod sandbox;
pub mod swap;
pub mod token;
