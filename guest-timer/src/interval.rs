//! Interval timers: fire every fixed duration, counted from the timer's start.
//!
//! The next fire is computed from the start instant by arithmetic (`start + k × interval`),
//! never as "last fire + interval", so a late fire does not push later ones (drift-free) and
//! the answer does not depend on how often the host asked before.

use chrono::{DateTime, Utc};

use crate::error::ParamError;

/// The longest interval accepted: 100 Julian years. Anything longer is surely a mistake, and
/// the bound keeps every later computation far from overflow.
pub const MAX_INTERVAL_SECONDS: u64 = 3_155_760_000;

/// The unit names accepted, for error messages.
pub const UNIT_NAMES: &str = "seconds, minutes, hours, days, weeks";

/// A unit an interval may be given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
}

impl Unit {
    /// Reads a unit name: plural or singular, any letter case (`seconds`, `Second`, …).
    pub fn parse(name: &str) -> Option<Unit> {
        let lower = name.trim().to_ascii_lowercase();
        let singular = lower.strip_suffix('s').unwrap_or(&lower);
        match singular {
            "second" => Some(Unit::Seconds),
            "minute" => Some(Unit::Minutes),
            "hour" => Some(Unit::Hours),
            "day" => Some(Unit::Days),
            "week" => Some(Unit::Weeks),
            _ => None,
        }
    }

    /// How many seconds one of this unit is.
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3_600,
            Unit::Days => 86_400,
            Unit::Weeks => 604_800,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Minutes => "minutes",
            Unit::Hours => "hours",
            Unit::Days => "days",
            Unit::Weeks => "weeks",
        }
    }
}

/// A validated interval schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalSchedule {
    seconds: u64,
}

impl IntervalSchedule {
    /// An interval of `seconds` (1 ..= [`MAX_INTERVAL_SECONDS`]). `field` names the params
    /// field blamed for a bad value.
    pub fn new(seconds: u64, field: &str) -> Result<Self, ParamError> {
        if seconds == 0 {
            return Err(ParamError::field(field, "Interval must be greater than 0"));
        }
        if seconds > MAX_INTERVAL_SECONDS {
            return Err(ParamError::field(
                field,
                format!(
                    "Interval of {seconds} seconds is too long; the maximum is 100 years \
                     ({MAX_INTERVAL_SECONDS} seconds)"
                ),
            ));
        }
        Ok(IntervalSchedule { seconds })
    }

    /// An interval of `count` × `unit`.
    pub fn from_units(count: u64, unit: Unit, field: &str) -> Result<Self, ParamError> {
        if count == 0 {
            return Err(ParamError::field(field, "Interval must be greater than 0"));
        }
        match count.checked_mul(unit.seconds()) {
            Some(seconds) if seconds <= MAX_INTERVAL_SECONDS => Self::new(seconds, field),
            _ => Err(ParamError::field(
                field,
                format!(
                    "Interval of {count} {} is too long; the maximum is 100 years \
                     ({MAX_INTERVAL_SECONDS} seconds)",
                    unit.name()
                ),
            )),
        }
    }

    /// The interval in seconds.
    pub fn seconds(&self) -> u64 {
        self.seconds
    }

    /// The smallest `started_at + k × interval` (k ≥ 1) strictly after `after`.
    ///
    /// Exact integer arithmetic on nanoseconds, so the phase never drifts. Always `Some`: an
    /// interval timer never ends (an error only if the answer is past chrono's range).
    pub fn next_after(
        &self,
        started_at: DateTime<Utc>,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ParamError> {
        const NANOS: i128 = 1_000_000_000;
        let nanos = |t: DateTime<Utc>| {
            i128::from(t.timestamp()) * NANOS + i128::from(t.timestamp_subsec_nanos())
        };
        let start = nanos(started_at);
        let after = nanos(after);
        let step = i128::from(self.seconds) * NANOS;
        let k = if after < start {
            1
        } else {
            (after - start) / step + 1
        };
        let next = start + k * step;
        let seconds = i64::try_from(next.div_euclid(NANOS)).ok();
        let subsec = next.rem_euclid(NANOS) as u32;
        seconds
            .and_then(|s| DateTime::from_timestamp(s, subsec))
            .map(Some)
            .ok_or_else(|| {
                ParamError::general("The next interval fire is beyond the supported time range")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn units() {
        assert_eq!(Unit::parse("seconds"), Some(Unit::Seconds));
        assert_eq!(Unit::parse("Second"), Some(Unit::Seconds));
        assert_eq!(Unit::parse("MINUTES"), Some(Unit::Minutes));
        assert_eq!(Unit::parse("hour"), Some(Unit::Hours));
        assert_eq!(Unit::parse("days"), Some(Unit::Days));
        assert_eq!(Unit::parse("week"), Some(Unit::Weeks));
        assert_eq!(Unit::parse("fortnight"), None);
        assert_eq!(Unit::parse("s"), None);
        assert_eq!(Unit::parse(""), None);
    }

    #[test]
    fn bounds() {
        assert_eq!(
            IntervalSchedule::new(0, "interval").unwrap_err().message,
            "Interval must be greater than 0"
        );
        assert!(IntervalSchedule::new(MAX_INTERVAL_SECONDS, "interval").is_ok());
        assert!(IntervalSchedule::new(MAX_INTERVAL_SECONDS + 1, "interval").is_err());
        assert!(IntervalSchedule::from_units(5_217, Unit::Weeks, "interval").is_ok());
        let err = IntervalSchedule::from_units(5_218, Unit::Weeks, "interval").unwrap_err();
        assert!(
            err.message.contains("5218 weeks is too long"),
            "{}",
            err.message
        );
        assert!(IntervalSchedule::from_units(u64::MAX, Unit::Weeks, "interval").is_err());
    }

    #[test]
    fn first_fire_is_one_interval_after_start() {
        let s = IntervalSchedule::new(10, "interval").unwrap();
        let start = utc("2026-01-01T00:00:00Z");
        assert_eq!(
            s.next_after(start, start).unwrap(),
            Some(utc("2026-01-01T00:00:10Z"))
        );
        // Asked before the start (clock skew): still one interval after the start.
        assert_eq!(
            s.next_after(start, utc("2025-12-31T23:00:00Z")).unwrap(),
            Some(utc("2026-01-01T00:00:10Z"))
        );
    }

    #[test]
    fn strictly_after_and_drift_free() {
        let s = IntervalSchedule::new(10, "interval").unwrap();
        let start = utc("2026-01-01T00:00:00.250Z");
        // Exactly on a tick: the next one.
        assert_eq!(
            s.next_after(start, utc("2026-01-01T00:00:10.250Z"))
                .unwrap(),
            Some(utc("2026-01-01T00:00:20.250Z"))
        );
        // A late fire does not shift the phase.
        assert_eq!(
            s.next_after(start, utc("2026-01-01T00:00:17.9Z")).unwrap(),
            Some(utc("2026-01-01T00:00:20.250Z"))
        );
        // A day later, still on the original phase.
        assert_eq!(
            s.next_after(start, utc("2026-01-02T00:00:00Z")).unwrap(),
            Some(utc("2026-01-02T00:00:00.250Z"))
        );
        // A nanosecond before a tick gives that tick.
        assert_eq!(
            s.next_after(start, utc("2026-01-01T00:00:30.249999999Z"))
                .unwrap(),
            Some(utc("2026-01-01T00:00:30.250Z"))
        );
    }

    #[test]
    fn long_intervals_and_range() {
        let s = IntervalSchedule::new(MAX_INTERVAL_SECONDS, "interval").unwrap();
        let start = utc("2026-01-01T00:00:00Z");
        assert_eq!(
            s.next_after(start, start).unwrap(),
            Some(utc("2126-01-02T00:00:00Z"))
        ); // 2100 is not a leap year
        let far = DateTime::<Utc>::MAX_UTC;
        assert!(s.next_after(far, far).is_err());
    }
}
