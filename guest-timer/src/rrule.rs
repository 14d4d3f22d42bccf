//! RRULE timers: fire on the occurrences of an iCalendar recurrence rule (RFC 5545).
//!
//! The rule text is either the user's raw `rule` (an `RRULE:` prefix stripped) or assembled
//! from structured fields in the platform's order (contract §1.7). The text is read here
//! (`parse_body`) into the `rrule` crate's rule type; the crate validates every rule (so the
//! platform's validation errors carry over) and enumerates
//! DAILY, WEEKLY, MONTHLY and YEARLY rules in the rule's time zone from `dtstart`. For those,
//! a local time that does not exist on a spring-forward day is read with the offset before
//! the gap (RFC 5545 §3.3.5; 02:30 becomes 03:30), and a repeated local time fires once, at
//! its first occurrence. SECONDLY, MINUTELY and HOURLY rules are enumerated by `subdaily`
//! instead, on real elapsed time, because the crate gets them wrong (see there).
//!
//! Differences from feeding the platform's iCal text to the crate, all deterministic:
//! - The start is handed to the crate as an instant rather than as `DTSTART` text, so a
//!   `dtstart` inside a repeated fall-back hour is not refused as ambiguous and no other
//!   iCal line (`DTSTART`, `RDATE`, …) can be smuggled in through `rule`.
//! - An `UNTIL` without `Z` (a floating local time, or a bare date meaning the end of that
//!   day) is read in the rule's time zone. The crate would read it in the *machine's* zone
//!   and then refuse it; a sandboxed component has no machine zone.
//! - `dtstart` is cut to whole seconds, as the iCal form (`YYYYMMDDTHHMMSS`) does.
//! - A `dtstart` whose wall time falls in a spring-forward gap (naive, or written with the
//!   offset before the gap) is read with that offset and keeps its wall time for the times of
//!   day it lends the rule (RFC 5545 §3.3.5; `docs/timer-semantics.md` §5).
//! - BYDAY ordinals are checked against FREQ as RFC 5545 says (MONTHLY −5…5, YEARLY −53…53,
//!   −5…5 with BYMONTH, none with BYWEEKNO or other frequencies); the crate's narrower
//!   ranges (it refuses −5 and −53) are worked around by an equivalent rule (`for_the_crate`).
//!
//! Iteration is bounded so that no rule can loop for long: for rules without `COUNT`, the
//! start handed to the crate is moved forward to the first day, at midnight, of a later
//! period (a day; a week, from WKST; a month; a year) just before the instant asked about,
//! which changes no occurrence after it (BYSETPOS then picks from whole periods); the crate's own loop limit is on; and at most
//! [`MAX_OCCURRENCES_SCANNED`] occurrences are looked at per question.

use std::str::FromStr;

use ::rrule::{Frequency, RRule, RRuleSet, Unvalidated, Validated};
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use crate::datetime;
use crate::error::{excerpt, ParamError};

mod subdaily;

use subdaily::SubDaily;

/// The frequencies accepted, for messages.
pub const FREQUENCIES: &str = "SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY";

/// The longest rule text accepted.
pub const MAX_RULE_LEN: usize = 1000;

/// The most occurrences looked at to answer one question (a rule with `COUNT`, which cannot be
/// fast-forwarded, and whose `dtstart` is long ago, may hit it).
pub const MAX_OCCURRENCES_SCANNED: usize = 200_000;

/// The message for rules giving both `COUNT` and `UNTIL`.
pub const COUNT_AND_UNTIL: &str = "'count' and 'until' are mutually exclusive (RFC 5545 §3.3.10)";

/// A validated RRULE schedule.
#[derive(Debug, Clone)]
pub struct RruleSchedule {
    rule: String,
    dtstart: DateTime<Utc>,
    timezone: Tz,
    /// `dtstart` in the rule's zone, as the crate wants it.
    start: DateTime<::rrule::Tz>,
    /// Validated against the real `dtstart`, so defaults taken from it (BYHOUR, BYMONTHDAY, …)
    /// stay put when iteration starts later.
    rrule: RRule<Validated>,
    /// SECONDLY, MINUTELY and HOURLY rules are enumerated here, not by the crate.
    subdaily: Option<SubDaily>,
    /// The wall time of a `dtstart` that fell in a daylight-saving gap (see
    /// [`RruleSchedule::with_gap_start`]); `None` otherwise.
    gap_wall: Option<NaiveDateTime>,
}

impl RruleSchedule {
    /// Parses `rule` (an `RRULE:` prefix is stripped) with its start and time zone. The error
    /// is a detail sentence; callers prefix it (`Failed to parse RRULE for rule <id>: …`).
    pub fn new(rule: &str, dtstart: DateTime<Utc>, timezone: Tz) -> Result<Self, String> {
        Self::with_gap_start(rule, dtstart, timezone, None)
    }

    /// [`RruleSchedule::new`] for a `dtstart` whose local wall time `gap_wall` does not exist
    /// (a spring-forward gap): `dtstart` is that wall time read with the offset before the
    /// gap (RFC 5545 §3.3.5, see [`datetime::start_in_gap`]), and the times of day the rule
    /// takes from its start are the wall time's (02:30), not the instant's (03:30).
    pub fn with_gap_start(
        rule: &str,
        dtstart: DateTime<Utc>,
        timezone: Tz,
        gap_wall: Option<NaiveDateTime>,
    ) -> Result<Self, String> {
        let body = strip_prefix(rule);
        if body.is_empty() {
            return Err("the rule is empty; expected e.g. FREQ=DAILY;BYHOUR=9".to_string());
        }
        if body.len() > MAX_RULE_LEN {
            return Err(format!("the rule is longer than {MAX_RULE_LEN} characters"));
        }
        if body.contains(['\n', '\r', ':']) {
            return Err(
                "expected a single RRULE value such as FREQ=WEEKLY;BYDAY=MO,WE (no \
                        DTSTART or other iCalendar lines; give the start in 'dtstart')"
                    .to_string(),
            );
        }
        let unvalidated = parse_body(&body.to_ascii_uppercase(), timezone)?;
        let dtstart = DateTime::from_timestamp(dtstart.timestamp(), 0).unwrap_or(dtstart);
        let start = dtstart.with_timezone(&::rrule::Tz::Tz(timezone));
        let subdaily = SubDaily::new(&unvalidated, dtstart, timezone)?;
        let gap_wall = gap_wall
            .filter(|_| subdaily.is_none())
            .map(|w| w.with_nanosecond(0).unwrap_or(w));
        let mut unvalidated = unvalidated;
        if let Some(wall) = gap_wall {
            // The defaults the crate would take from the start's time of day, from the wall.
            if unvalidated.get_by_hour().is_empty() {
                unvalidated = unvalidated.by_hour(vec![wall.hour() as u8]);
            }
            if unvalidated.get_by_minute().is_empty() {
                unvalidated = unvalidated.by_minute(vec![wall.minute() as u8]);
            }
            if unvalidated.get_by_second().is_empty() {
                unvalidated = unvalidated.by_second(vec![wall.second() as u8]);
            }
        }
        if let Some(until) = unvalidated.get_until() {
            if until.with_timezone(&Utc) < dtstart {
                return Err(format!(
                    "UNTIL {} is before dtstart {}, so the rule has no occurrence; give an \
                     UNTIL at or after the start",
                    datetime::format_utc(until.with_timezone(&Utc)),
                    datetime::format_utc(dtstart)
                ));
            }
        }
        let rrule = for_the_crate(unvalidated)?
            .validate(start)
            .map_err(crate_error)?;
        Ok(RruleSchedule {
            rule: body.to_string(),
            dtstart,
            timezone,
            start,
            rrule,
            subdaily,
            gap_wall,
        })
    }

    /// The rule text (prefix stripped, trimmed, as given otherwise).
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The start, in UTC, whole seconds.
    pub fn dtstart(&self) -> DateTime<Utc> {
        self.dtstart
    }

    /// The time zone the rule is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The wall time of a start inside a daylight-saving gap, if it was one.
    pub fn gap_wall(&self) -> Option<NaiveDateTime> {
        self.gap_wall
    }

    /// The first occurrence strictly after `after`; `None` when the rule has run out (or no
    /// occurrence turns up within the crate's loop limit).
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ParamError> {
        if let Some(until) = self.rrule.get_until() {
            if until.with_timezone(&Utc) <= after {
                return Ok(None);
            }
        }
        if let Some(subdaily) = &self.subdaily {
            return subdaily.next_after(after, MAX_OCCURRENCES_SCANNED);
        }
        let start = self.iteration_start(after);
        let set = RRuleSet::new(start).rrule(self.rrule.clone()).limit();
        for (scanned, occurrence) in (&set).into_iter().enumerate() {
            let occurrence = occurrence.with_timezone(&Utc);
            if occurrence > after {
                return Ok(Some(occurrence));
            }
            if scanned >= MAX_OCCURRENCES_SCANNED {
                return Err(ParamError::field(
                    "rule",
                    format!(
                        "RRULE '{}' has more than {MAX_OCCURRENCES_SCANNED} occurrences between \
                         its dtstart {} and {}; move 'dtstart' closer",
                        self.rule,
                        datetime::format_utc(self.dtstart),
                        datetime::format_utc(after)
                    ),
                ));
            }
        }
        Ok(None)
    }

    /// Where to start iterating to answer "next after `after`": `dtstart` itself, or the
    /// first day (at midnight) of a later period (FREQ × INTERVAL, counted on the local wall
    /// clock as the crate counts), at or before `after`. Every occurrence from that start on is
    /// the same as from `dtstart`, because the crate's periods and the defaults it takes from
    /// the start (already fixed in `self.rrule`) do not move. Not done with `COUNT`, where
    /// the earlier occurrences count.
    fn iteration_start(&self, after: DateTime<Utc>) -> DateTime<::rrule::Tz> {
        if self.rrule.get_count().is_some() {
            return self.start;
        }
        let interval = i64::from(self.rrule.get_interval());
        let start_local = self.start.naive_local();
        let after_local = after
            .with_timezone(&::rrule::Tz::Tz(self.timezone))
            .naive_local();
        if after_local <= start_local {
            return self.start;
        }
        if let Some(days) = match self.rrule.get_freq() {
            Frequency::Daily => Some(1),
            Frequency::Weekly => Some(7),
            _ => None,
        } {
            // Restart at the first day of a period (a week begins on WKST), at midnight, so
            // that the crate builds whole periods: a restart mid-period would make a partial
            // set, and BYSETPOS would pick from it. The crate's times and days come from the
            // rule alone (its defaults were taken from the real dtstart).
            let period = days * interval;
            let start_date = start_local.date();
            let base = if days == 7 {
                let wkst = self.rrule.get_week_start().num_days_from_monday();
                let back = (start_date.weekday().num_days_from_monday() + 7 - wkst) % 7;
                start_date - Duration::days(i64::from(back))
            } else {
                start_date
            };
            let k = (after_local.date() - base).num_days().div_euclid(period);
            return self.first_fitting(k, after, |k| {
                base.checked_add_signed(Duration::days(k.checked_mul(period)?))?
                    .and_hms_opt(0, 0, 0)
            });
        }
        // Sub-daily rules do not come here (see `subdaily`).
        // Months and years vary in length: restart at the first day of a period, at midnight.
        // The crate builds these periods' days and times from the rule alone (its BYxxx
        // defaults were taken from the real dtstart), so the start's own day and time do not
        // matter beyond not excluding anything after `after`.
        let months = |d: NaiveDateTime| i64::from(d.year()) * 12 + i64::from(d.month0());
        let (unit_months, base) = match self.rrule.get_freq() {
            Frequency::Monthly => (interval, months(start_local)),
            _ => (
                12 * interval,
                months(start_local) - i64::from(start_local.month0()),
            ),
        };
        let mut k = (months(after_local) - base) / unit_months;
        if self.rrule.get_freq() == Frequency::Yearly {
            // A year's set can reach across New Year (BYWEEKNO weeks): start one period early.
            k -= 1;
        }
        self.first_fitting(k, after, |k| {
            let month = base.checked_add(k.checked_mul(unit_months)?)?;
            let year = i32::try_from(month.div_euclid(12)).ok()?;
            NaiveDate::from_ymd_opt(year, month.rem_euclid(12) as u32 + 1, 1)?.and_hms_opt(0, 0, 0)
        })
    }

    /// The start `k` periods on (trying smaller `k` a few times if that local time does not
    /// exist or lies after `after`), or `dtstart` when none fits.
    fn first_fitting(
        &self,
        mut k: i64,
        after: DateTime<Utc>,
        candidate: impl Fn(i64) -> Option<NaiveDateTime>,
    ) -> DateTime<::rrule::Tz> {
        let tz = ::rrule::Tz::Tz(self.timezone);
        for _ in 0..8 {
            if k <= 0 {
                break;
            }
            let Some(local) = candidate(k) else { break };
            let start = match tz.from_local_datetime(&local) {
                LocalResult::Single(dt) | LocalResult::Ambiguous(dt, _) => dt,
                LocalResult::None => {
                    k -= 1;
                    continue;
                }
            };
            if start <= after && start >= self.start {
                return start;
            }
            k -= 1;
        }
        self.start
    }
}

/// Reads an RRULE value (`FREQ=…;BYDAY=…`, already upper case) into the crate's rule type.
///
/// Done here instead of with the crate's parser for three reasons: that parser pulls in
/// `regex` (about 400 KB of the component's code), it reads a floating `UNTIL` in the
/// machine's zone, and its messages do not say what is accepted. The checks match the
/// crate's; value ranges that depend on FREQ are left to the crate's validation.
fn parse_body(body: &str, timezone: Tz) -> Result<RRule<Unvalidated>, String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut freq = None;
    let mut rule = RRule::new(Frequency::Yearly);
    let mut has_count = false;
    for part in body.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| {
                format!(
                    "'{}' is not NAME=VALUE; expected parts like FREQ=WEEKLY;BYDAY=MO",
                    excerpt(part)
                )
            })?;
        if seen.contains(&key) {
            return Err(format!("{} is given twice", excerpt(key)));
        }
        seen.push(key);
        let bad = |what: &str| {
            format!(
                "{}={} is invalid; expected {what}",
                excerpt(key),
                excerpt(value)
            )
        };
        rule = match key {
            "FREQ" => {
                freq = Some(
                    Frequency::from_str(value)
                        .map_err(|_| bad(&format!("one of {FREQUENCIES}")))?,
                );
                rule
            }
            "INTERVAL" => match value.parse::<u16>() {
                Ok(n) if n >= 1 => rule.interval(n),
                _ => return Err(bad("a whole number from 1 to 65535")),
            },
            "COUNT" => {
                has_count = true;
                match value.parse::<u32>() {
                    Ok(n) if n >= 1 => rule.count(n),
                    _ => return Err(bad("a whole number of at least 1")),
                }
            }
            "UNTIL" => {
                let until = until_in_utc(value, timezone)?;
                let until = NaiveDateTime::parse_from_str(&until, "%Y%m%dT%H%M%SZ")
                    .map_err(|_| bad("a date-time like 20261231T235959Z"))?;
                rule.until(until.and_utc().with_timezone(&::rrule::Tz::UTC))
            }
            "WKST" => rule.week_start(
                weekday(value).ok_or_else(|| bad("one of MO, TU, WE, TH, FR, SA, SU"))?,
            ),
            "BYSETPOS" => rule.by_set_pos(
                numbers(value, -366, 366)
                    .ok_or_else(|| bad("numbers from -366 to -1 or 1 to 366"))?,
            ),
            "BYMONTH" => {
                let months: Vec<chrono::Month> = numbers::<u8>(value, 1, 12)
                    .ok_or_else(|| bad("numbers from 1 to 12"))?
                    .into_iter()
                    .filter_map(|m| chrono::Month::try_from(m).ok())
                    .collect();
                rule.by_month(&months)
            }
            "BYMONTHDAY" => rule.by_month_day(
                numbers(value, -31, 31).ok_or_else(|| bad("numbers from -31 to -1 or 1 to 31"))?,
            ),
            "BYYEARDAY" => rule.by_year_day(
                numbers(value, -366, 366)
                    .ok_or_else(|| bad("numbers from -366 to -1 or 1 to 366"))?,
            ),
            "BYWEEKNO" => rule.by_week_no(
                numbers(value, -53, 53).ok_or_else(|| bad("numbers from -53 to -1 or 1 to 53"))?,
            ),
            "BYHOUR" => {
                rule.by_hour(numbers(value, 0, 23).ok_or_else(|| bad("numbers from 0 to 23"))?)
            }
            "BYMINUTE" => {
                rule.by_minute(numbers(value, 0, 59).ok_or_else(|| bad("numbers from 0 to 59"))?)
            }
            "BYSECOND" => {
                rule.by_second(numbers(value, 0, 59).ok_or_else(|| bad("numbers from 0 to 59"))?)
            }
            "BYDAY" => {
                let days = value
                    .split(',')
                    .map(|token| nth_weekday(token.trim()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("weekdays like MO, 2TU or -1FR"))?;
                rule.by_weekday(days)
            }
            _ => {
                return Err(format!(
                    "unknown RRULE part '{}'; expected FREQ, INTERVAL, COUNT, UNTIL, BYDAY, \
                     BYMONTHDAY, BYMONTH, BYYEARDAY, BYWEEKNO, BYHOUR, BYMINUTE, BYSECOND, \
                     BYSETPOS or WKST",
                    excerpt(key)
                ))
            }
        };
    }
    if has_count && seen.contains(&"UNTIL") {
        return Err(COUNT_AND_UNTIL.to_string());
    }
    let freq = freq.ok_or_else(|| format!("FREQ is missing; expected one of {FREQUENCIES}"))?;
    check_ordinals(
        freq,
        rule.get_by_weekday(),
        !rule.get_by_month().is_empty(),
        !rule.get_by_week_no().is_empty(),
    )?;
    Ok(rule.freq(freq))
}

/// RFC 5545 §3.3.10: a BYDAY ordinal (`1MO`, `-1FR`) only with FREQ=MONTHLY (−5…5) or
/// FREQ=YEARLY (−53…53; with BYMONTH it counts within the month, so −5…5; not with
/// BYWEEKNO). The error is a detail sentence.
fn check_ordinals(
    freq: Frequency,
    days: &[::rrule::NWeekday],
    by_month: bool,
    by_week_no: bool,
) -> Result<(), String> {
    for day in days {
        let ::rrule::NWeekday::Nth(n, weekday) = day else {
            continue;
        };
        let code = WEEKDAYS[weekday.num_days_from_monday() as usize];
        let max = match freq {
            Frequency::Monthly => 5,
            Frequency::Yearly if by_week_no => {
                return Err(format!(
                    "BYDAY value {n}{code} has an ordinal, which RFC 5545 does not allow with FREQ=YEARLY and BYWEEKNO; use a plain weekday ({code})"
                ))
            }
            Frequency::Yearly if by_month => 5,
            Frequency::Yearly => 53,
            _ => {
                return Err(format!(
                    "BYDAY value {n}{code} has an ordinal, which RFC 5545 allows only with FREQ=MONTHLY or FREQ=YEARLY; with FREQ={freq} use a plain weekday ({code})"
                ))
            }
        };
        if !(-max..=max).contains(n) {
            let within = if by_month { " and BYMONTH" } else { "" };
            return Err(format!(
                "BYDAY value {n}{code} is out of range; with FREQ={freq}{within} an ordinal is from -{max} to {max}, not 0"
            ));
        }
    }
    Ok(())
}

/// The crate's validation error, said as the other messages are (the part, its value and
/// what is accepted) instead of in the crate's words.
fn crate_error(error: ::rrule::RRuleError) -> String {
    use ::rrule::ValidationError as V;
    let ::rrule::RRuleError::ValidationError(error) = error else {
        return error.to_string();
    };
    match error {
        V::InvalidByRuleAndFrequency { by_rule, freq } => format!(
            "{by_rule} cannot be used with FREQ={freq} (RFC 5545: BYWEEKNO only with YEARLY, \
             BYYEARDAY not with DAILY, WEEKLY or MONTHLY, BYMONTHDAY not with WEEKLY)"
        ),
        V::BySetPosWithoutByRule => "BYSETPOS needs another BY part to pick from (e.g. \
             BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1)"
            .to_string(),
        V::InvalidFieldValueRangeWithFreq {
            field,
            value,
            freq,
            start_idx,
            end_idx,
        } => format!(
            "{field}={} is out of range for FREQ={freq}; expected {start_idx} to {end_idx}",
            excerpt(&value)
        ),
        V::InvalidFieldValueRange {
            field,
            value,
            start_idx,
            end_idx,
        } => format!(
            "{field}={} is out of range; expected {start_idx} to {end_idx}",
            excerpt(&value)
        ),
        V::TooBigInterval(interval) => {
            format!("INTERVAL={interval} is too large for this FREQ; expected a smaller interval")
        }
        V::StartYearOutOfRange(year) => format!(
            "dtstart's year {year} is out of the range supported; expected a year from \
             -10000 to 10000"
        ),
        other => other.to_string(),
    }
}

/// Rewrites what the crate would refuse although RFC 5545 allows it: the ordinal −5 with
/// MONTHLY and −53 with YEARLY (the crate accepts −4…5 and −52…53). The n-th last weekday
/// of a month with 5 of them is its first one, which falls on a day whose count from the
/// end is −29 or lower; so `-5MO` is `MO` with BYMONTHDAY=-31,-30,-29 (and `-53MO` is `MO`
/// with BYYEARDAY=-366,-365). That holds when every BYDAY value is such an ordinal and no
/// other day filter is given; other mixes are refused.
fn for_the_crate(rule: RRule<Unvalidated>) -> Result<RRule<Unvalidated>, String> {
    use ::rrule::NWeekday;
    let (edge, monthly) = match rule.get_freq() {
        Frequency::Monthly => (-5, true),
        Frequency::Yearly if rule.get_by_month().is_empty() => (-53, false),
        _ => return Ok(rule),
    };
    let days = rule.get_by_weekday();
    let is_edge = |d: &NWeekday| matches!(d, NWeekday::Nth(n, _) if *n == edge);
    if !days.iter().any(is_edge) {
        return Ok(rule);
    }
    let other_filter = !rule.get_by_month_day().is_empty()
        || !rule.get_by_year_day().is_empty()
        || !rule.get_by_week_no().is_empty();
    if !days.iter().all(is_edge) || other_filter {
        return Err(format!(
            "BYDAY ordinal {edge} is supported only when every BYDAY value has it and no BYMONTHDAY, BYYEARDAY or BYWEEKNO is given; give {edge} in a rule of its own"
        ));
    }
    let plain: Vec<NWeekday> = days
        .iter()
        .map(|d| match d {
            NWeekday::Nth(_, weekday) => NWeekday::Every(*weekday),
            other => *other,
        })
        .collect();
    let rule = rule.by_weekday(plain);
    Ok(if monthly {
        rule.by_month_day(vec![-31, -30, -29])
    } else {
        rule.by_year_day(vec![-366, -365])
    })
}

/// A comma-separated list of numbers, each in `min..=max` (not 0 when `min` is negative).
fn numbers<T: TryFrom<i16>>(value: &str, min: i16, max: i16) -> Option<Vec<T>> {
    value
        .split(',')
        .map(|item| {
            let n: i16 = item.trim().parse().ok()?;
            // RFC 5545 gives no 0 in the ranges that count from both ends.
            if n < min || n > max || (n == 0 && min < 0) {
                return None;
            }
            T::try_from(n).ok()
        })
        .collect()
}

fn weekday(token: &str) -> Option<chrono::Weekday> {
    let index = WEEKDAYS.iter().position(|d| *d == token)?;
    Some(
        [
            chrono::Weekday::Mon,
            chrono::Weekday::Tue,
            chrono::Weekday::Wed,
            chrono::Weekday::Thu,
            chrono::Weekday::Fri,
            chrono::Weekday::Sat,
            chrono::Weekday::Sun,
        ][index],
    )
}

/// A BYDAY token: `MO`, or with an ordinal from -53 to 53 (not 0): `2TU`, `-1FR`, `+1MO`.
fn nth_weekday(token: &str) -> Option<::rrule::NWeekday> {
    if token.len() < 2 || !token.is_char_boundary(token.len() - 2) {
        return None;
    }
    let (ordinal, day) = token.split_at(token.len() - 2);
    let day = weekday(day)?;
    if ordinal.is_empty() {
        return Some(::rrule::NWeekday::Every(day));
    }
    let digits = ordinal.strip_prefix(['+', '-']).unwrap_or(ordinal);
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i16 = ordinal.trim_start_matches('+').parse().ok()?;
    (n != 0 && (-53..=53).contains(&n)).then_some(::rrule::NWeekday::Nth(n, day))
}

/// Trims the rule and strips a leading `RRULE:` (any case).
pub fn strip_prefix(rule: &str) -> &str {
    let trimmed = rule.trim();
    match trimmed.get(..6) {
        Some(prefix) if prefix.eq_ignore_ascii_case("RRULE:") => trimmed[6..].trim(),
        _ => trimmed,
    }
}

/// An `UNTIL` value in UTC iCal form (`YYYYMMDDTHHMMSSZ`). A floating value is read in the
/// rule's zone; a bare date means the end of that day there.
fn until_in_utc(value: &str, timezone: Tz) -> Result<String, String> {
    if value.ends_with('Z') {
        return Ok(value.to_string());
    }
    let naive = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(value, "%Y%m%d")
                .ok()
                .and_then(|d| d.and_hms_opt(23, 59, 59))
        });
    let naive = naive.ok_or_else(|| {
        format!(
            "UNTIL value '{}' is not a date-time like 20261231T235959Z",
            excerpt(value)
        )
    })?;
    let utc = datetime::resolve_local(&timezone, naive)
        .ok_or_else(|| format!("UNTIL value '{}' is out of range", excerpt(value)))?;
    Ok(utc.format("%Y%m%dT%H%M%SZ").to_string())
}

/// Structured RRULE params (contract §1.7), as read from JSON; [`assemble`] checks the values.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RuleParts {
    pub freq: String,
    pub interval: Option<i64>,
    pub count: Option<i64>,
    pub until: Option<DateTime<Utc>>,
    pub by_day: Vec<String>,
    pub by_month_day: Vec<i64>,
    pub by_month: Vec<i64>,
    pub by_year_day: Vec<i64>,
    pub by_week_no: Vec<i64>,
    pub by_hour: Vec<i64>,
    pub by_minute: Vec<i64>,
    pub by_second: Vec<i64>,
    pub by_set_pos: Vec<i64>,
    pub week_start: Option<String>,
}

/// Checks structured fields and assembles the rule text in the platform's order: FREQ,
/// INTERVAL, COUNT, UNTIL, BYDAY, BYMONTHDAY, BYMONTH, BYYEARDAY, BYWEEKNO, BYHOUR, BYMINUTE,
/// BYSECOND, BYSETPOS, WKST; parts joined with `;`, list values with `,`.
pub fn assemble(parts: &RuleParts) -> Result<String, ParamError> {
    let freq = parts.freq.trim().to_ascii_uppercase();
    if !FREQUENCIES.split(", ").any(|f| f == freq) {
        return Err(ParamError::field(
            "freq",
            format!(
                "Invalid 'freq' value '{}'; must be one of {FREQUENCIES}",
                excerpt(&parts.freq)
            ),
        ));
    }
    let mut out = vec![format!("FREQ={freq}")];
    if let Some(interval) = parts.interval {
        if !(1..=i64::from(u16::MAX)).contains(&interval) {
            return Err(ParamError::field(
                "interval",
                format!(
                    "Invalid 'interval' value {interval}; must be a whole number from 1 to 65535"
                ),
            ));
        }
        out.push(format!("INTERVAL={interval}"));
    }
    if parts.count.is_some() && parts.until.is_some() {
        return Err(ParamError::field("count", COUNT_AND_UNTIL));
    }
    if let Some(count) = parts.count {
        if !(1..=i64::from(u32::MAX)).contains(&count) {
            return Err(ParamError::field(
                "count",
                format!("Invalid 'count' value {count}; must be a whole number of at least 1"),
            ));
        }
        out.push(format!("COUNT={count}"));
    }
    if let Some(until) = parts.until {
        out.push(format!("UNTIL={}", until.format("%Y%m%dT%H%M%SZ")));
    }
    if !parts.by_day.is_empty() {
        let days = parts
            .by_day
            .iter()
            .map(|d| by_day_token(d))
            .collect::<Result<Vec<_>, _>>()?;
        let parsed: Vec<::rrule::NWeekday> = days.iter().filter_map(|d| nth_weekday(d)).collect();
        if let Ok(frequency) = Frequency::from_str(&freq) {
            check_ordinals(
                frequency,
                &parsed,
                !parts.by_month.is_empty(),
                !parts.by_week_no.is_empty(),
            )
            .map_err(|detail| {
                ParamError::field("by_day", format!("Invalid 'by_day' value: {detail}"))
            })?;
        }
        out.push(format!("BYDAY={}", days.join(",")));
    }
    list_part(
        &mut out,
        "BYMONTHDAY",
        "by_month_day",
        &parts.by_month_day,
        -31,
        31,
    )?;
    list_part(&mut out, "BYMONTH", "by_month", &parts.by_month, 1, 12)?;
    list_part(
        &mut out,
        "BYYEARDAY",
        "by_year_day",
        &parts.by_year_day,
        -366,
        366,
    )?;
    list_part(
        &mut out,
        "BYWEEKNO",
        "by_week_no",
        &parts.by_week_no,
        -53,
        53,
    )?;
    list_part(&mut out, "BYHOUR", "by_hour", &parts.by_hour, 0, 23)?;
    list_part(&mut out, "BYMINUTE", "by_minute", &parts.by_minute, 0, 59)?;
    list_part(&mut out, "BYSECOND", "by_second", &parts.by_second, 0, 59)?;
    list_part(
        &mut out,
        "BYSETPOS",
        "by_set_pos",
        &parts.by_set_pos,
        -366,
        366,
    )?;
    if let Some(week_start) = &parts.week_start {
        let wkst = week_start.trim().to_ascii_uppercase();
        if !WEEKDAYS.contains(&wkst.as_str()) {
            return Err(ParamError::field(
                "week_start",
                format!(
                    "Invalid 'week_start' value '{}'; must be one of MO, TU, WE, TH, FR, SA, SU",
                    excerpt(week_start)
                ),
            ));
        }
        out.push(format!("WKST={wkst}"));
    }
    Ok(out.join(";"))
}

/// Appends `PART=v1,v2` after checking each value is in `min..=max` (and, for signed
/// ranges, not 0, which RFC 5545 does not allow there).
fn list_part(
    out: &mut Vec<String>,
    part: &str,
    field: &str,
    values: &[i64],
    min: i64,
    max: i64,
) -> Result<(), ParamError> {
    if values.is_empty() {
        return Ok(());
    }
    for &v in values {
        if v < min || v > max || (v == 0 && min < 0) {
            let zero = if min < 0 { " and not 0" } else { "" };
            return Err(ParamError::field(
                field,
                format!("Invalid '{field}' value {v}; each must be from {min} to {max}{zero}"),
            ));
        }
    }
    let text: Vec<String> = values.iter().map(i64::to_string).collect();
    out.push(format!("{part}={}", text.join(",")));
    Ok(())
}

const WEEKDAYS: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];

/// One structured `by_day` token, checked and upper-cased.
fn by_day_token(token: &str) -> Result<String, ParamError> {
    let upper = token.trim().to_ascii_uppercase();
    match nth_weekday(&upper) {
        Some(_) => Ok(upper),
        None => Err(ParamError::field(
            "by_day",
            format!(
                "Invalid 'by_day' value '{}'; expected a weekday MO, TU, WE, TH, FR, SA or \
                 SU, optionally with an ordinal from -53 to 53 (e.g. 2TU, -1FR)",
                excerpt(token)
            ),
        )),
    }
}

#[cfg(test)]
mod tests;
