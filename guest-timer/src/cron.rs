//! Cron timers: fire on the matches of a cron expression, in the local time of a time zone.
//!
//! Parsing and searching are croner's (POSIX/Vixie semantics): 5 fields fire at second 0,
//! 6 fields put seconds first, 7 add a trailing year; day-of-month and day-of-week are ORed
//! when both are restricted; 0 and 7 are Sunday; names are case-insensitive; `?`, `L`, `W`
//! and `#` are supported, and croner's `+` prefix on day-of-week asks for AND instead.
//! The platform's older sensor ANDed the two day fields and needed exactly 6 fields; both
//! readings differ from this one only for expressions the platform rejected or for rules
//! restricting both day fields.
//!
//! Daylight-saving behaviour is Vixie cron's (`docs/timer-semantics.md`): an expression whose
//! second, minute and hour fields do not start with `*` has *fixed* local times (single
//! values, lists and ranges alike; a 5-field expression's implicit second 0 counts as fixed,
//! and croner's sloppy `/n` counts as `*/n`). Each fixed local time that falls in a
//! spring-forward gap fires once, at the first instant after the gap (several in one gap fire
//! once), and one that occurs twice at fall-back fires once, at its first occurrence. These
//! are searched here on the local wall clock (croner itself only treats single values so).
//! Every other expression fires on real elapsed instants (no gap, no double), as croner does.
//!
//! Before croner parses an expression, `syntax` checks it strictly (names only in the month
//! and day-of-week fields, no empty list items, no reversed ranges, `n#k` and `nL` not
//! mixed), so that croner's leniencies do not turn typos into schedules, and errors name the
//! field, the value and what the field accepts.
//!
//! Two additions around croner:
//! - `@midnight` (a Vixie macro croner lacks) is read as `@daily`;
//! - quartz-style steps without a range (`0/5`, `/5`) are accepted ("sloppy ranges"), since
//!   the platform's earlier croner accepted them and rules stored there may use them.
//! - An expression whose day/month fields can never match (`0 0 30 2 *`) is refused when
//!   parsed, by a check over every possible month shape, because croner would otherwise search
//!   to the year 5000 (tens of milliseconds) before giving up.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, Weekday};

use crate::datetime::resolve_local;
use crate::error::{excerpt, ParamError};

mod syntax;

/// The longest expression accepted; real ones are far shorter.
pub const MAX_EXPRESSION_LEN: usize = 1000;

/// What the error messages say is accepted.
const ACCEPTED: &str = "expected 5 fields (minute hour day-of-month month day-of-week), 6 \
    (second first), 7 (with a trailing year) or one of @yearly, @annually, @monthly, @weekly, \
    @daily, @midnight, @hourly";

/// The macros accepted.
const MACROS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// A validated cron schedule: the expression as the user wrote it, its time zone and the
/// parsed pattern.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    timezone: Tz,
    cron: Cron,
    /// Fixed local times (see the module doc): searched on the wall clock.
    fixed_time: bool,
}

/// The most wall-clock matches looked at for one fixed-time question. Only matches inside a
/// repeated fall-back range (at most one per second of it) are ever passed over.
const MAX_FIXED_CANDIDATES: usize = 20_000;

impl CronSchedule {
    /// Parses `expression` (trimmed) for evaluation in `timezone`. Refuses an expression that
    /// can never fire on any date. Errors name the field `expression`.
    pub fn new(expression: &str, timezone: Tz) -> Result<Self, ParamError> {
        let expression = expression.trim();
        if expression.is_empty() {
            return Err(ParamError::field(
                "expression",
                format!("The cron expression is empty; {ACCEPTED}"),
            ));
        }
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(ParamError::field(
                "expression",
                format!("The cron expression is longer than {MAX_EXPRESSION_LEN} characters"),
            ));
        }
        if expression.starts_with('@') {
            if !MACROS.iter().any(|m| m.eq_ignore_ascii_case(expression)) {
                return Err(ParamError::field(
                    "expression",
                    format!(
                        "Invalid cron expression '{}': unknown macro; expected one of {}",
                        excerpt(expression),
                        MACROS.join(", ")
                    ),
                ));
            }
        } else if let Err(detail) = syntax::check(expression) {
            let fields = expression.split_whitespace().count();
            let accepted = if syntax::layout(fields).is_none() {
                format!("; {ACCEPTED}")
            } else {
                String::new()
            };
            return Err(ParamError::field(
                "expression",
                format!(
                    "Invalid cron expression '{}': {detail}{accepted}",
                    excerpt(expression)
                ),
            ));
        }
        let cron = parse(expression).map_err(|e| {
            ParamError::field(
                "expression",
                format!("Invalid cron expression '{}': {e}", excerpt(expression)),
            )
        })?;
        if !dates_can_match(&cron) {
            return Err(ParamError::field(
                "expression",
                format!(
                    "Cron expression '{}' never fires: no date matches its day-of-month, \
                     month and day-of-week fields together (e.g. day 30 in February)",
                    excerpt(expression)
                ),
            ));
        }
        Ok(CronSchedule {
            expression: expression.to_string(),
            timezone,
            cron,
            fixed_time: is_fixed_time(expression),
        })
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the expression is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first match strictly after `after`, or `None` when there is none (the year field
    /// excludes every later year, or the search passed croner's year limit, 5000).
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ParamError> {
        // Matches fall on whole seconds, so searching after the whole second at or before
        // `after` gives the same answer, and croner works in whole seconds anyway.
        let mut from = DateTime::from_timestamp(after.timestamp(), 0).unwrap_or(after);
        if self.fixed_time {
            return self.next_fixed_after(from, after);
        }
        // croner returns a strictly later match; the loop only guards that promise.
        for _ in 0..4 {
            let local = from.with_timezone(&self.timezone);
            match self.cron.find_next_occurrence(&local, false) {
                Ok(next) => {
                    let next = next.with_timezone(&Utc);
                    if next > after {
                        return Ok(Some(next));
                    }
                    from = next;
                }
                Err(CronError::TimeSearchLimitExceeded) => return Ok(None),
                Err(e) => return Err(self.search_failed(Some(&e))),
            }
        }
        Err(self.search_failed(None))
    }
}

impl CronSchedule {
    /// The error when the next fire cannot be found, with croner's reason when it gave one.
    fn search_failed(&self, cause: Option<&CronError>) -> ParamError {
        let reason = cause.map(|e| format!(": {e}")).unwrap_or_default();
        ParamError::field(
            "expression",
            format!(
                "Could not compute the next fire of cron expression '{}'{reason}",
                excerpt(&self.expression)
            ),
        )
    }

    /// The next fire of a fixed-time expression: walks the wall-clock matches from the local
    /// time of `from` and resolves each (a gap gives the first instant after it, a repeated
    /// time its first occurrence). That resolution never goes backwards as the wall clock
    /// advances, so the first match resolving after `after` is the answer, and matches
    /// before `from`'s local time cannot be.
    fn next_fixed_after(
        &self,
        from: DateTime<Utc>,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ParamError> {
        let mut cursor = from.with_timezone(&self.timezone).naive_local().and_utc();
        for _ in 0..MAX_FIXED_CANDIDATES {
            match self.cron.find_next_occurrence(&cursor, false) {
                Ok(next) => {
                    if let Some(instant) = resolve_local(&self.timezone, next.naive_utc()) {
                        if instant > after {
                            return Ok(Some(instant));
                        }
                    }
                    cursor = next;
                }
                Err(CronError::TimeSearchLimitExceeded) => return Ok(None),
                Err(e) => return Err(self.search_failed(Some(&e))),
            }
        }
        Err(self.search_failed(None))
    }
}

/// Whether an expression has fixed local times: its second, minute and hour fields (the
/// implicit second 0 of a 5-field expression included) do not start with `*` (nor with `/`,
/// croner's sloppy `*/n`). Among the macros only `@hourly` is not fixed.
fn is_fixed_time(expression: &str) -> bool {
    let expression = expression.trim();
    if expression.starts_with('@') {
        return !expression.eq_ignore_ascii_case("@hourly");
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let time_fields = match fields.len() {
        5 => &fields[..2],
        6 | 7 => &fields[..3],
        _ => return false,
    };
    time_fields.iter().all(|f| !f.starts_with(['*', '/']))
}

/// Parses with croner's default field layout (seconds and year optional, dom/dow ORed),
/// plus sloppy ranges and the `@midnight` macro.
fn parse(expression: &str) -> Result<Cron, CronError> {
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Optional)
        .dom_and_dow(false)
        .sloppy_ranges(true)
        .build();
    if expression.eq_ignore_ascii_case("@midnight") {
        parser.parse("@daily")
    } else {
        parser.parse(expression)
    }
}

/// Whether some real date matches the pattern's month and day fields (the year field aside).
///
/// What a day field matches inside a month depends only on the month, its length and the
/// weekday it starts on, and every such shape recurs (within 40 years, for each month and
/// leap/common year). So checking the 12 × 7 shapes (plus leap Februaries) is exact and costs
/// at most ~5,000 cheap day checks, only when nothing matches.
fn dates_can_match(cron: &Cron) -> bool {
    let pattern = &cron.pattern;
    for month in 1..=12u32 {
        if !pattern.month_match(month).unwrap_or(false) {
            continue;
        }
        // 2001 is a common year and 2000 a leap year; only the month length depends on it.
        let years: &[i32] = if month == 2 { &[2001, 2000] } else { &[2001] };
        for &year in years {
            let length = days_in_month(year, month);
            for first_weekday in 0..7u32 {
                for day in 1..=length {
                    let weekday = Weekday::from_days_from_sunday(first_weekday + day - 1);
                    if pattern
                        .day_match(year, month, day, weekday)
                        .unwrap_or(false)
                    {
                        return true;
                    }
                }
            }
        }
    }
    false
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// The fields of StackStorm's CronTimer (APScheduler's `CronTrigger`), as given. Each value is
/// an APScheduler field expression (`*`, `*/5`, `1-5`, `mon-fri`, `1,15`, `last` for the day).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StackStormFields {
    pub year: Option<String>,
    pub month: Option<String>,
    pub day: Option<String>,
    pub day_of_week: Option<String>,
    pub hour: Option<String>,
    pub minute: Option<String>,
    pub second: Option<String>,
}

/// Turns StackStorm CronTimer fields into a 7-field croner expression
/// (`second minute hour day month day-of-week year`), following APScheduler's rules:
///
/// - fields more significant than the least significant field given default to `*`, and less
///   significant ones to their minimum (month 1, day 1, hour/minute/second 0; day-of-week `*`),
///   so `{"hour": 9}` is every day at 09:00:00;
/// - **`day_of_week` numbers use APScheduler's numbering, 0 = Monday … 6 = Sunday** (not
///   cron's 0 = Sunday); they are converted to names (`MON` … `SUN`), names pass through;
/// - `day: "last"` becomes `L`;
/// - APScheduler matches a date only when *all* fields match, so when both `day` and
///   `day_of_week` are restricted the day-of-week gets croner's `+` (AND) prefix.
///
/// APScheduler's `week` field and its `"1st mon"`-style day expressions have no cron
/// equivalent and are refused by the caller or here.
pub fn assemble_stackstorm(fields: &StackStormFields) -> Result<String, ParamError> {
    // (name, given value, default once a less significant field was given), most significant first.
    let order: [(&str, &Option<String>, &str); 7] = [
        ("year", &fields.year, "*"),
        ("month", &fields.month, "1"),
        ("day", &fields.day, "1"),
        ("day_of_week", &fields.day_of_week, "*"),
        ("hour", &fields.hour, "0"),
        ("minute", &fields.minute, "0"),
        ("second", &fields.second, "0"),
    ];
    let least_significant_given = order.iter().rposition(|(_, value, _)| value.is_some());
    let mut out: Vec<String> = Vec::with_capacity(7);
    for (index, (name, value, default)) in order.iter().enumerate() {
        let text = match value {
            Some(value) => {
                let value = value.trim();
                if value.is_empty() || value.contains(char::is_whitespace) {
                    return Err(ParamError::field(
                        name,
                        format!(
                            "Invalid '{name}' value '{}': expected one APScheduler field \
                             expression such as '*', '*/5', '1-5' or '1,15' (no spaces; forms \
                             like '1st mon' are not supported)",
                            excerpt(value)
                        ),
                    ));
                }
                match *name {
                    "day_of_week" => apscheduler_weekdays(value)?,
                    "day" if value.eq_ignore_ascii_case("last") => "L".to_string(),
                    _ => value.to_string(),
                }
            }
            None if least_significant_given.is_some_and(|last| index > last) => default.to_string(),
            None => "*".to_string(),
        };
        out.push(text);
    }
    let [year, month, mut day, mut dow, hour, minute, second] =
        <[String; 7]>::try_from(out).expect("seven fields");
    if day == "?" {
        day = "*".to_string();
    }
    if dow == "?" {
        dow = "*".to_string();
    }
    if day != "*" && dow != "*" {
        dow = format!("+{dow}");
    }
    Ok(format!(
        "{second} {minute} {hour} {day} {month} {dow} {year}"
    ))
}

/// When the expression assembled from StackStorm fields does not parse, finds the field at
/// fault by parsing each given field on its own, so the error names `hour`, not an
/// `expression` the rule never had.
pub fn blame_stackstorm_field(fields: &StackStormFields) -> Option<ParamError> {
    let given: [(&str, &Option<String>); 7] = [
        ("second", &fields.second),
        ("minute", &fields.minute),
        ("hour", &fields.hour),
        ("day", &fields.day),
        ("month", &fields.month),
        ("day_of_week", &fields.day_of_week),
        ("year", &fields.year),
    ];
    given.into_iter().find_map(|(name, value)| {
        let value = value.as_ref()?;
        let mut alone = StackStormFields::default();
        let slot = match name {
            "second" => &mut alone.second,
            "minute" => &mut alone.minute,
            "hour" => &mut alone.hour,
            "day" => &mut alone.day,
            "month" => &mut alone.month,
            "day_of_week" => &mut alone.day_of_week,
            _ => &mut alone.year,
        };
        *slot = Some(value.clone());
        let error = match assemble_stackstorm(&alone) {
            Err(e) => return Some(e),
            Ok(expression) => match syntax::check(&expression) {
                Err(detail) => detail,
                Ok(()) => parse(&expression).err()?.to_string(),
            },
        };
        Some(ParamError::field(
            name,
            format!("Invalid '{name}' value '{}': {error}", excerpt(value)),
        ))
    })
}

/// Converts an APScheduler day-of-week expression to croner's: numbers 0–6 (Monday first)
/// become names; names, `*`, ranges, lists and steps keep their shape.
fn apscheduler_weekdays(value: &str) -> Result<String, ParamError> {
    const NAMES: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let bad = || {
        ParamError::field(
            "day_of_week",
            format!(
                "Invalid 'day_of_week' value '{}': expected APScheduler weekdays, numbers \
                 0-6 with 0 = Monday or names mon-sun, as a single value, range, list or step \
                 (e.g. 'mon-fri', '0,2,4')",
                excerpt(value)
            ),
        )
    };
    let mut items = Vec::new();
    for item in value.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if range == "*" {
            if let Some(step) = step {
                // `*/n` steps from Monday in APScheduler but from Sunday in cron: spell it out.
                let step = step
                    .parse::<usize>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(bad)?;
                items.extend(NAMES.iter().step_by(step).map(|name| name.to_string()));
                continue;
            }
        }
        let mut ends = Vec::new();
        for end in range.split('-') {
            let converted = if end == "*" {
                "*".to_string()
            } else if let Ok(n) = end.parse::<usize>() {
                NAMES.get(n).ok_or_else(bad)?.to_string()
            } else if end.len() == 3 && NAMES.iter().any(|name| name.eq_ignore_ascii_case(end)) {
                end.to_ascii_uppercase()
            } else {
                return Err(bad());
            };
            ends.push(converted);
        }
        if ends.len() > 2 || (ends.len() == 2 && ends.iter().any(|e| e == "*")) {
            return Err(bad());
        }
        let mut text = ends.join("-");
        if let Some(step) = step {
            if step.parse::<u32>().map_or(true, |s| s == 0) {
                return Err(bad());
            }
            text = format!("{text}/{step}");
        }
        items.push(text);
    }
    Ok(items.join(","))
}

#[cfg(test)]
mod tests;
