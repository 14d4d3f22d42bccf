//! Small helpers every layer shares. Nothing here knows about rules, components or the
//! platform: this module uses no other module of the crate.
//!
//! - [`backoff`]: the one exponential backoff behind every retry (broker reconnects, event
//!   delivery, token renewal).
//! - [`blocking`]: running work on blocking threads with the caller's tracing subscriber,
//!   and [`blocking::TaskGuard`], the owner that stops a background task when dropped.
//! - [`limit`]: the adaptive concurrency limit (event delivery's connections).
//! - [`redact`]: what may be shown of a URL or a JSON parse error in logs and messages.

pub(crate) mod backoff;
pub(crate) mod blocking;
pub(crate) mod limit;
pub mod redact;
