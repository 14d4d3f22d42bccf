//! One-shot (date-time) timers: fire once, at a fixed instant.
//!
//! The instant is kept in UTC; the time zone only says how the user wrote it (for the
//! payload's `timezone`). Whether the instant is still in the future is a question for
//! validation time only (`DateTime timer fire_at must be in the future`): once accepted, the
//! schedule simply has one fire, and none after it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A validated one-shot schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneShotSchedule {
    fire_at: DateTime<Utc>,
    timezone: Tz,
}

impl OneShotSchedule {
    /// A one-shot at `fire_at`, written in `timezone`.
    pub fn new(fire_at: DateTime<Utc>, timezone: Tz) -> Self {
        OneShotSchedule { fire_at, timezone }
    }

    /// The instant it fires.
    pub fn fire_at(&self) -> DateTime<Utc> {
        self.fire_at
    }

    /// The time zone the rule gave (`UTC` if none).
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// `fire_at` if it is strictly after `after`, else `None` (the timer has fired).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.fire_at > after).then_some(self.fire_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once() {
        let at = DateTime::parse_from_rfc3339("2026-05-01T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = OneShotSchedule::new(at, chrono_tz::UTC);
        assert_eq!(s.next_after(at - chrono::Duration::seconds(1)), Some(at));
        assert_eq!(
            s.next_after(at - chrono::Duration::nanoseconds(1)),
            Some(at)
        );
        assert_eq!(s.next_after(at), None);
        assert_eq!(s.next_after(at + chrono::Duration::days(1)), None);
    }
}
