//! The normalized schedule and its JSON text (`schedule.spec` in the WIT contract).
//!
//! The host stores the text and hands it back on every `next-fire` and `build-payload` call
//! without interpreting it. A host may hand back *any* string, so reading a spec re-checks
//! everything a rule's params were checked for (except "is it still in the future", which is
//! only a question when a rule starts) and answers a [`ParamError`], never a panic.
//!
//! Writing then reading a spec gives the same text back: fields are written in a fixed order
//! and every value in its canonical form (RFC 3339 UTC with `Z`, canonical zone names), so
//! equal texts mean equal behaviour and the host can compare texts to detect changed params.
//!
//! ```json
//! {"kind":"interval","interval_seconds":300}
//! {"kind":"cron","expression":"0 30 9 * * MON-FRI","timezone":"Europe/Berlin"}
//! {"kind":"one_shot","fire_at":"2026-05-01T07:00:00Z","timezone":"Europe/Berlin"}
//! {"kind":"rrule","rule":"FREQ=WEEKLY;BYDAY=MO","dtstart":"2026-01-05T08:00:00Z","timezone":"Europe/Berlin"}
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cron::CronSchedule;
use crate::datetime::{format_utc, parse_timezone};
use crate::error::ParamError;
use crate::interval::IntervalSchedule;
use crate::oneshot::OneShotSchedule;
use crate::rrule::RruleSchedule;
use crate::TimerKind;

/// A validated, parsed schedule of one of the four kinds.
// Variants differ in size (a parsed cron pattern is a few hundred bytes); specs are built
// once and then used in place, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum TimerSpec {
    Interval(IntervalSchedule),
    Cron(CronSchedule),
    OneShot(OneShotSchedule),
    Rrule(RruleSchedule),
}

/// The JSON shape of a spec. Private: only [`TimerSpec`] turns it into a checked schedule.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum SpecRepr {
    Interval {
        interval_seconds: u64,
    },
    Cron {
        expression: String,
        timezone: String,
    },
    OneShot {
        fire_at: String,
        timezone: String,
    },
    Rrule {
        rule: String,
        dtstart: String,
        timezone: String,
    },
}

/// The longest spec text read; every spec this crate writes is far shorter.
const MAX_SPEC_LEN: usize = 4096;

/// Whether [`TimerSpec::from_json`] reads a text this long at all.
pub(crate) fn readable(text: &str) -> bool {
    text.len() <= MAX_SPEC_LEN
}

impl TimerSpec {
    /// Reads and re-checks a spec text.
    pub fn from_json(text: &str) -> Result<TimerSpec, ParamError> {
        if !readable(text) {
            return Err(ParamError::general(format!(
                "Invalid schedule spec: longer than {MAX_SPEC_LEN} bytes"
            )));
        }
        let repr: SpecRepr = serde_json::from_str(text)
            .map_err(|e| ParamError::general(format!("Invalid schedule spec: {e}")))?;
        Self::from_repr(repr)
    }

    /// The spec text.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(&self.to_repr()).unwrap_or_default()
    }

    /// The kind of timer.
    pub fn kind(&self) -> TimerKind {
        match self {
            TimerSpec::Interval(_) => TimerKind::Interval,
            TimerSpec::Cron(_) => TimerKind::Cron,
            TimerSpec::OneShot(_) => TimerKind::OneShot,
            TimerSpec::Rrule(_) => TimerKind::Rrule,
        }
    }

    /// The IANA zone the schedule is evaluated in (`UTC` for intervals).
    pub fn timezone(&self) -> &'static str {
        match self {
            TimerSpec::Interval(_) => "UTC",
            TimerSpec::Cron(s) => s.timezone().name(),
            TimerSpec::OneShot(s) => s.timezone().name(),
            TimerSpec::Rrule(s) => s.timezone().name(),
        }
    }

    /// The first fire strictly after `after`, or `None` when the schedule has ended.
    /// `started_at` matters to interval timers only.
    pub fn next_fire(
        &self,
        started_at: DateTime<Utc>,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ParamError> {
        match self {
            TimerSpec::Interval(s) => s.next_after(started_at, after),
            TimerSpec::Cron(s) => s.next_after(after),
            TimerSpec::OneShot(s) => Ok(s.next_after(after)),
            TimerSpec::Rrule(s) => s.next_after(after),
        }
    }

    fn to_repr(&self) -> SpecRepr {
        match self {
            TimerSpec::Interval(s) => SpecRepr::Interval {
                interval_seconds: s.seconds(),
            },
            TimerSpec::Cron(s) => SpecRepr::Cron {
                expression: s.expression().to_string(),
                timezone: s.timezone().name().to_string(),
            },
            TimerSpec::OneShot(s) => SpecRepr::OneShot {
                fire_at: format_utc(s.fire_at()),
                timezone: s.timezone().name().to_string(),
            },
            TimerSpec::Rrule(s) => SpecRepr::Rrule {
                rule: s.rule().to_string(),
                dtstart: match s.gap_wall() {
                    // The wall time with the offset before the gap: the same instant, and
                    // read back as the same start (`datetime::start_in_gap`).
                    Some(wall) => {
                        let offset = (wall - s.dtstart().naive_utc()).num_seconds();
                        let sign = if offset < 0 { '-' } else { '+' };
                        let offset = offset.abs();
                        format!(
                            "{}{sign}{:02}:{:02}",
                            wall.format("%Y-%m-%dT%H:%M:%S"),
                            offset / 3600,
                            offset % 3600 / 60
                        )
                    }
                    None => format_utc(s.dtstart()),
                },
                timezone: s.timezone().name().to_string(),
            },
        }
    }

    fn from_repr(repr: SpecRepr) -> Result<TimerSpec, ParamError> {
        let instant = |field: &str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ParamError::field(
                        field,
                        format!("Invalid schedule spec: '{field}' is not RFC 3339 ({e})"),
                    )
                })
        };
        Ok(match repr {
            SpecRepr::Interval { interval_seconds } => {
                TimerSpec::Interval(IntervalSchedule::new(interval_seconds, "interval")?)
            }
            SpecRepr::Cron {
                expression,
                timezone,
            } => TimerSpec::Cron(CronSchedule::new(&expression, parse_timezone(&timezone)?)?),
            SpecRepr::OneShot { fire_at, timezone } => TimerSpec::OneShot(OneShotSchedule::new(
                instant("fire_at", &fire_at)?,
                parse_timezone(&timezone)?,
            )),
            SpecRepr::Rrule {
                rule,
                dtstart,
                timezone,
            } => {
                let timezone = parse_timezone(&timezone)?;
                let (start, gap_wall) =
                    match crate::datetime::start_in_gap(&dtstart, None, timezone) {
                        Some((start, wall)) => (start, Some(wall)),
                        None => (instant("dtstart", &dtstart)?, None),
                    };
                let schedule = RruleSchedule::with_gap_start(&rule, start, timezone, gap_wall)
                    .map_err(|e| {
                        ParamError::field("rule", format!("Failed to parse RRULE: {e}"))
                    })?;
                TimerSpec::Rrule(schedule)
            }
        })
    }
}

impl Serialize for TimerSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_repr().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TimerSpec {
    /// Deserializing re-checks every invariant (see the module docs).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = SpecRepr::deserialize(deserializer)?;
        TimerSpec::from_repr(repr).map_err(|e| serde::de::Error::custom(e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let texts = [
            r#"{"kind":"interval","interval_seconds":300}"#,
            r#"{"kind":"cron","expression":"0 30 9 * * MON-FRI","timezone":"Europe/Berlin"}"#,
            r#"{"kind":"cron","expression":"@midnight","timezone":"UTC"}"#,
            r#"{"kind":"one_shot","fire_at":"2026-05-01T07:00:00Z","timezone":"Europe/Berlin"}"#,
            r#"{"kind":"one_shot","fire_at":"2026-05-01T07:00:00.123Z","timezone":"UTC"}"#,
            r#"{"kind":"rrule","rule":"FREQ=WEEKLY;BYDAY=MO","dtstart":"2026-01-05T08:00:00Z","timezone":"Europe/Berlin"}"#,
        ];
        for text in texts {
            let spec = TimerSpec::from_json(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(spec.to_json(), text);
            // Through serde's traits too.
            let again: TimerSpec = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&again).unwrap(), text);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let texts = [
            "",
            "null",
            "42",
            "[]",
            "{}",
            "not json",
            r#"{"kind":"weekly"}"#,
            r#"{"kind":"interval"}"#,
            r#"{"kind":"interval","interval_seconds":0}"#,
            r#"{"kind":"interval","interval_seconds":-5}"#,
            r#"{"kind":"interval","interval_seconds":1.5}"#,
            r#"{"kind":"interval","interval_seconds":"10"}"#,
            r#"{"kind":"interval","interval_seconds":99999999999999}"#,
            r#"{"kind":"interval","interval_seconds":10,"extra":1}"#,
            r#"{"kind":"cron","expression":"* * *","timezone":"UTC"}"#,
            r#"{"kind":"cron","expression":"0 0 30 2 *","timezone":"UTC"}"#,
            r#"{"kind":"cron","expression":"* * * * *","timezone":"Nowhere/City"}"#,
            r#"{"kind":"cron","expression":"* * * * *"}"#,
            r#"{"kind":"one_shot","fire_at":"yesterday","timezone":"UTC"}"#,
            r#"{"kind":"one_shot","fire_at":"2026-05-01T07:00:00","timezone":"UTC"}"#,
            r#"{"kind":"rrule","rule":"FREQ=SOMETIMES","dtstart":"2026-01-05T08:00:00Z","timezone":"UTC"}"#,
            r#"{"kind":"rrule","rule":"FREQ=DAILY\nDTSTART:20260101T000000","dtstart":"2026-01-05T08:00:00Z","timezone":"UTC"}"#,
            r#"{"kind":"rrule","rule":"FREQ=DAILY","dtstart":"soon","timezone":"UTC"}"#,
            "{\"kind\":\"interval\",\"interval_seconds\":\u{1F600}}",
        ];
        for text in texts {
            assert!(
                TimerSpec::from_json(text).is_err(),
                "{text} should be refused"
            );
        }
        let long = format!(
            r#"{{"kind":"cron","expression":"{}","timezone":"UTC"}}"#,
            "1,".repeat(3000)
        );
        assert!(TimerSpec::from_json(&long).is_err());
    }
}
