//! The clock's wait for its next deadline.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::blocking::spawn_blocking_traced;

/// tokio's timer wakes on whole milliseconds; the clock sleeps the last one more precisely.
const TOKIO_TIMER_TICK: Duration = Duration::from_millis(1);

/// Sleeps until a deadline more precisely than tokio's timer, which rounds every wait up
/// to its next millisecond tick: it sleeps on tokio until just before, then the rest on a
/// blocking thread (the OS sleeps to tens of microseconds).
#[derive(Default)]
pub(super) struct PreciseWait {
    /// Set once a blocking sleep left tokio's clock where it was: the clock is paused (a
    /// test), and only tokio's own sleep can move it.
    paused: bool,
}

impl PreciseWait {
    pub(super) async fn until(&mut self, deadline: Instant) {
        if !self.paused {
            if let Some(early) = deadline.checked_sub(TOKIO_TIMER_TICK) {
                if Instant::now() < early {
                    tokio::time::sleep_until(early).await;
                }
            }
            let before = Instant::now();
            if let Some(rest) = deadline
                .checked_duration_since(before)
                .filter(|d| !d.is_zero())
            {
                let _ = spawn_blocking_traced(move || std::thread::sleep(rest)).await;
                self.paused = Instant::now() == before;
            }
        }
        if Instant::now() < deadline {
            tokio::time::sleep_until(deadline).await;
        }
    }
}
