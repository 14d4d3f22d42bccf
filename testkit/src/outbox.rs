//! What the outbox tests share.

use std::time::Duration;

use attune_timer::platform::outbox::OutboxOptions;

/// The outbox's defaults with retries fast enough for tests: 10 ms doubling to 40 ms, and
/// 10 ms apart while flushing.
pub fn fast_retries() -> OutboxOptions {
    OutboxOptions {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        flush_backoff: Duration::from_millis(10),
        ..OutboxOptions::default()
    }
}
