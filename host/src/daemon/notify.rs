//! Notifications to systemd (`Type=notify`, see `deploy/systemd/`): `READY=1` once the
//! rules are loaded, `STOPPING=1` when shutdown begins, and — when the unit sets
//! `WatchdogSec=` — `WATCHDOG=1` at half that interval, but only while the clock's loop
//! turns, so that systemd restarts a daemon whose clock is wedged. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::instrument::WithSubscriber;
use tracing::{debug, warn};

use super::admin::WEDGED_AFTER;
use crate::schedule::{Clock, HEARTBEAT};
use crate::support::blocking::TaskGuard;

/// Tells systemd the daemon is ready.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        debug!(error = %e, "Cannot notify systemd");
    }
}

/// Starts petting the watchdog if systemd asked for one (`WATCHDOG_USEC`); `None` if not.
pub fn start_watchdog(clock: Clock) -> Option<TaskGuard> {
    let interval = sd_notify::watchdog_enabled()?;
    // Half the interval, as systemd advises. The petting stops once the clock has not
    // turned for WEDGED_AFTER or the interval, whichever is shorter — but never under three
    // of its idle turns, which an idle clock may take a hair over a second each.
    let every = (interval / 2).max(Duration::from_millis(100));
    let stale_after = WEDGED_AFTER.min(interval).max(HEARTBEAT * 3);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut wedged = false;
        loop {
            tick.tick().await;
            let since = clock.since_last_turn();
            if since < stale_after {
                wedged = false;
                send(&[NotifyState::Watchdog]);
            } else if !wedged {
                wedged = true;
                warn!(
                    clock_last_turn_ms_ago = since.as_millis() as u64,
                    "The clock's loop has not turned for {} s; no longer petting the systemd watchdog",
                    since.as_secs()
                );
            }
        }
    }
    .with_current_subscriber());
    Some(TaskGuard::new(task))
}
