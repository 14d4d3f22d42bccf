//! The platform layer: everything that talks to Attune.
//!
//! - [`token`]: the sensor token, its unverified claims, its scope and its renewal plan.
//! - [`api`]: the Attune API client (health, rules listing, events, token renewal), and
//!   [`api::ApiRules`], the listing as the rule table's snapshot source.
//! - [`renewal`]: the loop that renews the token before it expires.
//! - [`outbox`]: asynchronous, bounded, retrying event delivery behind the schedule's
//!   `EventSink`.
//! - [`feed`]: what the lifecycle transports share: the message, the one way it reaches
//!   the rule table, the REST re-sync, the reconnect policy.
//! - [`lifecycle`]: the RabbitMQ rule-lifecycle listener, with reconnects and re-syncs.
//! - [`notifier`]: the notifier WebSocket rule-lifecycle listener (platform V4+), with
//!   reconnects, re-syncs and token renewal on a refusal.
//! - [`transport`]: the one seam the daemon sees: whichever transport the settings chose.
//!
//! May use: `schedule` (to feed the rule table and take events), `component` (its types),
//! `support`. Never: the daemon or the binary. What the platform promises and expects is
//! written down in `docs/platform.md`; comments cite its sections.

pub mod api;
pub mod feed;
pub mod lifecycle;
pub mod notifier;
pub mod outbox;
pub mod renewal;
pub mod token;
pub mod transport;
