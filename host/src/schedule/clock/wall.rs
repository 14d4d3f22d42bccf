//! Following the wall clock. Deadlines run on the monotonic clock from one anchor; when
//! the wall clock steps (an NTP step, a manual change, a daemon started before the clock
//! was synchronised) or the machine was suspended (the monotonic clock stands still while
//! the wall clock does not), the two part. Every [`CHECK_EVERY`] the clock compares them;
//! a difference over [`STEP_THRESHOLD`] is a step: the clock re-anchors, calendar rules
//! (cron, one-shot, RRULE) keep their UTC ticks and get new deadlines, interval rules keep
//! elapsed-time semantics (their ticks move with the step), and calendar ticks a forward
//! step skipped go through the misfire policy. A backward step never fires a tick twice:
//! a timer's next tick is always after the last one it fired.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How often the wall clock is compared with the monotonic one.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A larger difference is a step. NTP slews differences below 128 ms without stepping;
/// a second leaves room for a slow check on a loaded machine.
pub const STEP_THRESHOLD: Duration = Duration::from_secs(1);

/// Where the current wall time comes from (tests inject one they can step).
pub trait WallClock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's realtime clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemWall;

impl WallClock for SystemWall {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
