//! Occurrences of SECONDLY, MINUTELY and HOURLY rules, computed here rather than by the
//! `rrule` crate.
//!
//! Why: the crate's shortcuts for skipping filtered hours and days in these frequencies are
//! wrong in 0.14 — `FREQ=MINUTELY;BYHOUR=9,17;BYDAY=MO` yields nothing at all (its skip hits
//! its own "infinite loop" guard), and a MINUTELY/SECONDLY rule whose INTERVAL does not divide
//! the hour drifts off its grid when BYHOUR skips hours. It also steps these frequencies on
//! the local wall clock, so an HOURLY rule fires twice at one instant on a spring-forward day
//! and skips the repeated hour at fall-back.
//!
//! Here they run on the real time line, like cron's repeating jobs: periods start at
//! `anchor + k × INTERVAL units` (the anchor is DTSTART cut to its second, minute or local
//! hour), so a rule never drifts and a DST change neither doubles nor drops a period; each
//! period expands by BYSECOND (MINUTELY) or BYMINUTE × BYSECOND (HOURLY), with defaults taken
//! from DTSTART as RFC 5545 says; BYMONTH, BYYEARDAY, BYMONTHDAY, BYDAY, BYHOUR (and BYMINUTE,
//! BYSECOND where they limit) filter on the local time in the rule's zone; BYSETPOS picks
//! from each period's set; COUNT, UNTIL and "not before DTSTART" apply as usual. Periods whose
//! day, hour or minute is filtered out are skipped in one step, and the walk is bounded by
//! [`MAX_STEPS`].

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use rrule::{Frequency, NWeekday, RRule, Unvalidated};

use crate::datetime::resolve_local;
use crate::error::ParamError;

/// The most periods (or skips) looked at for one question; past it, the question fails.
pub const MAX_STEPS: u32 = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
}

/// A sub-daily rule, ready to enumerate.
#[derive(Debug, Clone)]
pub struct SubDaily {
    unit: Unit,
    /// Period length in seconds (unit × INTERVAL).
    period: i64,
    /// Start of period 0, Unix seconds.
    anchor: i64,
    /// DTSTART, Unix seconds: nothing before it counts.
    dtstart: i64,
    timezone: Tz,
    count: Option<u32>,
    until: Option<i64>,
    months: Vec<u32>,
    year_days: Vec<i32>,
    month_days: Vec<i32>,
    weekdays: Vec<Weekday>,
    hours: Vec<u32>,
    /// BYMINUTE as a limit (SECONDLY, MINUTELY); empty otherwise.
    minutes: Vec<u32>,
    /// BYSECOND as a limit (SECONDLY); empty otherwise.
    seconds: Vec<u32>,
    /// Offsets in seconds from a period's start to its candidate instants, sorted.
    offsets: Vec<i64>,
    set_pos: Vec<i32>,
}

/// What one period yields.
enum Period {
    /// Filtered out; the next period worth looking at.
    SkipTo(i64),
    /// Its occurrences, in order (maybe none).
    Occurrences(Vec<i64>),
}

impl SubDaily {
    /// Builds the enumerator for a sub-daily rule, or `None` for DAILY and longer frequencies.
    /// `rule` is the parsed (not yet defaulted) rule; `dtstart` is in whole seconds.
    pub fn new(
        rule: &RRule<Unvalidated>,
        dtstart: DateTime<Utc>,
        timezone: Tz,
    ) -> Result<Option<Self>, String> {
        let unit = match rule.get_freq() {
            Frequency::Secondly => Unit::Second,
            Frequency::Minutely => Unit::Minute,
            Frequency::Hourly => Unit::Hour,
            _ => return Ok(None),
        };
        let local = dtstart.with_timezone(&timezone).naive_local();
        let unit_seconds = match unit {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
        };
        let start = dtstart.timestamp();
        let anchor = match unit {
            Unit::Second => start,
            Unit::Minute => start - i64::from(local.second()),
            Unit::Hour => start - i64::from(local.minute() * 60 + local.second()),
        };
        let mut weekdays = Vec::new();
        for day in rule.get_by_weekday() {
            match day {
                NWeekday::Every(weekday) => weekdays.push(*weekday),
                NWeekday::Nth(..) => {
                    return Err(
                        "BYDAY with an ordinal (e.g. 1MO) needs FREQ=MONTHLY or FREQ=YEARLY \
                                (RFC 5545)"
                            .to_string(),
                    )
                }
            }
        }
        let list = |values: &[u8]| values.iter().map(|v| u32::from(*v)).collect::<Vec<u32>>();
        let by_minute = list(rule.get_by_minute());
        // Second 60 (a leap second) never occurs on this time line.
        let by_second: Vec<u32> = list(rule.get_by_second())
            .into_iter()
            .filter(|s| *s < 60)
            .collect();
        if !rule.get_by_second().is_empty() && by_second.is_empty() {
            return Err("BYSECOND=60 alone never occurs".to_string());
        }
        let or_start = |values: &Vec<u32>, default: u32| {
            if values.is_empty() {
                vec![default]
            } else {
                values.clone()
            }
        };
        let (minutes, seconds, mut offsets) = match unit {
            Unit::Second => (by_minute, by_second, vec![0]),
            Unit::Minute => {
                let offsets = or_start(&by_second, local.second())
                    .iter()
                    .map(|s| i64::from(*s))
                    .collect();
                (by_minute, Vec::new(), offsets)
            }
            Unit::Hour => {
                let minutes = or_start(&by_minute, local.minute());
                let seconds = or_start(&by_second, local.second());
                let offsets = minutes
                    .iter()
                    .flat_map(|m| seconds.iter().map(move |s| i64::from(m * 60 + s)))
                    .collect();
                (Vec::new(), Vec::new(), offsets)
            }
        };
        offsets.sort_unstable();
        offsets.dedup();
        Ok(Some(SubDaily {
            unit,
            period: unit_seconds * i64::from(rule.get_interval()),
            anchor,
            dtstart: start,
            timezone,
            count: rule.get_count(),
            until: rule.get_until().map(|u| u.timestamp()),
            months: list(rule.get_by_month()),
            year_days: rule
                .get_by_year_day()
                .iter()
                .map(|v| i32::from(*v))
                .collect(),
            month_days: rule
                .get_by_month_day()
                .iter()
                .map(|v| i32::from(*v))
                .collect(),
            weekdays,
            hours: list(rule.get_by_hour()),
            minutes,
            seconds,
            offsets,
            set_pos: rule.get_by_set_pos().to_vec(),
        }))
    }

    /// The first occurrence strictly after `after`; `None` when the rule has ended (COUNT,
    /// UNTIL, or past the year 9999); an error when none turns up within [`MAX_STEPS`] or
    /// more than `max_scanned` occurrences lie before `after` (COUNT rules only).
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        max_scanned: usize,
    ) -> Result<Option<DateTime<Utc>>, ParamError> {
        let after_s = after.timestamp();
        // Occurrences fall on whole seconds: "> after" is ">= the next whole second".
        let threshold = after_s + 1;
        let mut k = match self.count {
            // Earlier periods hold only instants before `after`'s period.
            None => ((after_s - self.anchor).div_euclid(self.period)).max(0),
            // With COUNT, every earlier occurrence counts: walk from the start.
            Some(_) => 0,
        };
        let mut counted: u64 = 0;
        for _ in 0..MAX_STEPS {
            let start = self.anchor + k * self.period;
            if self.until.is_some_and(|until| start > until) || start > MAX_UNIX {
                return Ok(None);
            }
            match self.period(k) {
                Period::SkipTo(next) => k = next,
                Period::Occurrences(instants) => {
                    for t in instants {
                        if t < self.dtstart {
                            continue;
                        }
                        if self.until.is_some_and(|until| t > until) {
                            return Ok(None);
                        }
                        counted += 1;
                        if t >= threshold {
                            return Ok(DateTime::from_timestamp(t, 0));
                        }
                        if self.count.is_some_and(|c| counted >= u64::from(c)) {
                            return Ok(None);
                        }
                        if counted as usize > max_scanned {
                            return Err(ParamError::field(
                                "rule",
                                format!(
                                    "The RRULE has more than {max_scanned} occurrences between its \
                                     dtstart and now; move 'dtstart' closer"
                                ),
                            ));
                        }
                    }
                    k += 1;
                }
            }
        }
        Err(ParamError::field(
            "rule",
            format!(
                "No occurrence of the RRULE found within {MAX_STEPS} steps after {}; its filters \
                 (BYMONTH, BYMONTHDAY, BYDAY, BYHOUR, …) may never match, or with COUNT its \
                 'dtstart' is too far back",
                crate::datetime::format_utc(after)
            ),
        ))
    }

    fn local(&self, t: i64) -> Option<NaiveDateTime> {
        DateTime::from_timestamp(t, 0).map(|d| d.with_timezone(&self.timezone).naive_local())
    }

    /// The first period index whose start is at or after instant `t` (and after `k`).
    fn first_period_from(&self, t: i64, k: i64) -> i64 {
        let next = (t - self.anchor + self.period - 1).div_euclid(self.period);
        next.max(k + 1)
    }

    /// The instant of a local wall-clock time (DST gaps move it to the gap's end).
    fn instant(&self, local: NaiveDateTime) -> Option<i64> {
        resolve_local(&self.timezone, local).map(|d| d.timestamp())
    }

    fn period(&self, k: i64) -> Period {
        let start = self.anchor + k * self.period;
        let Some(local) = self.local(start) else {
            return Period::SkipTo(k + 1);
        };
        // Filters on the period's start decide whole days, hours or minutes at once.
        if !self.date_matches(local.date()) {
            let next_day = local.date().succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0));
            let to = next_day.and_then(|d| self.instant(d)).unwrap_or(start + 1);
            return Period::SkipTo(self.first_period_from(to, k));
        }
        if !matches_any(&self.hours, local.hour()) {
            let next_hour = local
                .date()
                .and_hms_opt(local.hour(), 0, 0)
                .map(|h| h + chrono::Duration::hours(1));
            let to = next_hour
                .and_then(|h| self.instant(h))
                .filter(|t| *t > start)
                .unwrap_or(start + 1);
            return Period::SkipTo(self.first_period_from(to, k));
        }
        if self.unit != Unit::Hour && !matches_any(&self.minutes, local.minute()) {
            let to = start - i64::from(local.second()) + 60;
            return Period::SkipTo(self.first_period_from(to, k));
        }
        let mut set: Vec<i64> = Vec::with_capacity(self.offsets.len());
        for offset in &self.offsets {
            let t = start + offset;
            let Some(at) = self.local(t) else { continue };
            if self.date_matches(at.date())
                && matches_any(&self.hours, at.hour())
                && matches_any(&self.minutes, at.minute())
                && matches_any(&self.seconds, at.second())
            {
                set.push(t);
            }
        }
        if !self.set_pos.is_empty() {
            set = select_positions(&set, &self.set_pos);
        }
        Period::Occurrences(set)
    }

    fn date_matches(&self, date: NaiveDate) -> bool {
        if !matches_any(&self.months, date.month()) {
            return false;
        }
        if !self.weekdays.is_empty() && !self.weekdays.contains(&date.weekday()) {
            return false;
        }
        if !self.month_days.is_empty() {
            let length = days_in_month(date) as i32;
            let day = date.day() as i32;
            if !self
                .month_days
                .iter()
                .any(|&md| md == day || (md < 0 && length + md + 1 == day))
            {
                return false;
            }
        }
        if !self.year_days.is_empty() {
            let length = if date.leap_year() { 366 } else { 365 };
            let day = date.ordinal() as i32;
            if !self
                .year_days
                .iter()
                .any(|&yd| yd == day || (yd < 0 && length + yd + 1 == day))
            {
                return false;
            }
        }
        true
    }
}

/// The end of chrono's comfortable range for this walk (year 9999).
const MAX_UNIX: i64 = 253_402_300_799;

fn matches_any(values: &[u32], value: u32) -> bool {
    values.is_empty() || values.contains(&value)
}

fn days_in_month(date: NaiveDate) -> u32 {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| d.day())
}

/// BYSETPOS: the 1-based (negative: from the end) positions of a sorted set, sorted, once each.
fn select_positions(set: &[i64], positions: &[i32]) -> Vec<i64> {
    let n = set.len() as i64;
    let mut out: Vec<i64> = positions
        .iter()
        .filter_map(|&p| {
            let p = i64::from(p);
            let index = if p > 0 { p - 1 } else { n + p };
            (0..n).contains(&index).then(|| set[index as usize])
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
