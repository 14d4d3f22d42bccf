//! A strict check of a cron expression's fields, made before croner parses it.
//!
//! croner is lenient where a typo should be an error (it replaces month and weekday names
//! anywhere in the text, so `0 0 * MON *` runs in January and `0 0 JAN * *` at 01:00; it reads
//! `5#3L` as `5L`; it skips empty list items, so `1,,2` and `,1` pass), and its messages name
//! neither the field nor the value ("Number out of bounds."). This check accepts exactly the
//! documented syntax (`docs/timer-semantics.md` §3) and says, for the first field at fault,
//! which field, which value and what that field accepts.
//!
//! Grammar, per field (after upper-casing): a list of items separated by `,` (no empty
//! items); an item is `*`, a value, a range `a-b` (low to high), any of those with a step
//! `/n` (n ≥ 1; `a/n` means `a-max/n`, and a bare `/n` means `*/n`, as croner's sloppy
//! ranges have it). Values are numbers in the field's range; the month field also takes
//! `JAN`…`DEC` and the day-of-week field `SUN`…`SAT` (0 and 7 are Sunday; `SUN` ends a range
//! as 7). Day-of-month also takes `L`, `LW`, `nW`; day-of-week `nL` and `n#k` (k 1–5); both
//! take `?` as the whole field; day-of-week may start with croner's `+` (AND with the day of
//! month).

use crate::error::excerpt;

/// What a field is, for messages and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
    Year,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
            Field::Year => "year",
        }
    }

    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
            Field::Year => (1970, 4999),
        }
    }

    /// What the field accepts, for messages.
    fn accepted(self) -> &'static str {
        match self {
            Field::Second => "numbers 0-59",
            Field::Minute => "numbers 0-59",
            Field::Hour => "numbers 0-23",
            Field::DayOfMonth => {
                "numbers 1-31, L (last day), LW (last weekday), nW (weekday \
                 nearest day n) or ? (any)"
            }
            Field::Month => "numbers 1-12 or names JAN-DEC",
            Field::DayOfWeek => {
                "numbers 0-7 (0 and 7 are Sunday) or names SUN-SAT, nL (last \
                 such weekday of the month), n#k (k-th such weekday, k 1-5) or ? (any)"
            }
            Field::Year => "years 1970-4999",
        }
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The fields of an expression of 5, 6 or 7 fields, in order, with what each is.
pub(super) fn layout(count: usize) -> Option<&'static [Field]> {
    use Field::*;
    match count {
        5 => Some(&[Minute, Hour, DayOfMonth, Month, DayOfWeek]),
        6 => Some(&[Second, Minute, Hour, DayOfMonth, Month, DayOfWeek]),
        7 => Some(&[Second, Minute, Hour, DayOfMonth, Month, DayOfWeek, Year]),
        _ => None,
    }
}

/// Checks every field of a (non-macro) expression; the error is a detail sentence naming
/// the field, its value and what the field accepts.
pub(super) fn check(expression: &str) -> Result<(), String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let Some(kinds) = layout(fields.len()) else {
        return Err(format!(
            "it has {} field{}",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        ));
    };
    for (text, &kind) in fields.iter().zip(kinds) {
        if let Err(problem) = check_field(&text.to_ascii_uppercase(), kind) {
            let mut message = format!(
                "the {} field '{}': {problem}; that field accepts {}, as a single value, a \
                 range (a-b), a list (a,b) or a step (*/n, a/n, a-b/n)",
                kind.name(),
                excerpt(text),
                kind.accepted()
            );
            if fields.len() == 6 {
                message.push_str(
                    " (with 6 fields the first is the second: second minute hour \
                     day-of-month month day-of-week)",
                );
            }
            return Err(message);
        }
    }
    Ok(())
}

fn check_field(text: &str, kind: Field) -> Result<(), String> {
    let body = match kind {
        Field::DayOfWeek => text.strip_prefix('+').unwrap_or(text),
        _ => text,
    };
    if body == "?" {
        return match kind {
            Field::DayOfMonth | Field::DayOfWeek => Ok(()),
            _ => Err("'?' is only for the day fields".to_string()),
        };
    }
    if body.is_empty() {
        return Err("empty".to_string());
    }
    for item in body.split(',') {
        if item.is_empty() {
            return Err("an empty list item (a stray comma)".to_string());
        }
        check_item(item, kind).map_err(|problem| {
            if body.contains(',') {
                format!("in item '{}': {problem}", excerpt(item))
            } else {
                problem
            }
        })?;
    }
    Ok(())
}

fn check_item(item: &str, kind: Field) -> Result<(), String> {
    // Day-of-month specials.
    if kind == Field::DayOfMonth {
        if item == "L" || item == "LW" {
            return Ok(());
        }
        if let Some(day) = item.strip_suffix('W') {
            return match day.parse::<u32>() {
                Ok(1..=31) if all_digits(day) => Ok(()),
                _ => Err(format!(
                    "'{}' is not a valid nW (n a day 1-31)",
                    excerpt(item)
                )),
            };
        }
    }
    // Day-of-week specials.
    if kind == Field::DayOfWeek {
        if item == "L" {
            return Err(
                "'L' alone is not a weekday; use nL for the last such weekday \
                 of the month (5L: the last Friday), or L in the day-of-month field for the \
                 month's last day"
                    .to_string(),
            );
        }
        if let Some((day, nth)) = item.split_once('#') {
            value(day, kind, false)?;
            return match nth.parse::<u32>() {
                Ok(1..=5) if all_digits(nth) => Ok(()),
                // croner's spelling of nL.
                _ if nth == "L" => Ok(()),
                _ => Err(format!(
                    "'#{}' after a weekday: n#k takes k from 1 to 5",
                    excerpt(nth)
                )),
            };
        }
        if let Some(day) = item.strip_suffix('L') {
            return value(day, kind, false).map(|_| ());
        }
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step {
        match step.parse::<u32>() {
            Ok(n) if n >= 1 && all_digits(step) => {}
            _ => {
                return Err(format!(
                    "step '/{}' is not a whole number of at least 1",
                    excerpt(step)
                ))
            }
        }
    }
    if range == "*" || (range.is_empty() && step.is_some()) {
        return Ok(());
    }
    match range.split_once('-') {
        Some((low, high)) => {
            let low_value = value(low, kind, false)?;
            let high_value = value(high, kind, true)?;
            if low_value > high_value {
                return Err(format!(
                    "'{low}-{high}' is a reversed range ({low} is after {high}); ranges go from low to high \
                     (for a range across the end, list two: e.g. 22-23,0-2)"
                ));
            }
            Ok(())
        }
        None => value(range, kind, false).map(|_| ()),
    }
}

/// One value of the field: a number in range or, for month and day-of-week, a name.
fn value(text: &str, kind: Field, range_end: bool) -> Result<u32, String> {
    let (min, max) = kind.bounds();
    if all_digits(text) && !text.is_empty() {
        return match text.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("{} is out of range {min}-{max}", excerpt(text))),
        };
    }
    let names: &[&str] = match kind {
        Field::Month => &MONTHS,
        Field::DayOfWeek => &WEEKDAYS,
        _ => &[],
    };
    if let Some(index) = names.iter().position(|name| *name == text) {
        let n = index as u32 + min;
        // SUN ends a range as 7 (FRI-SUN), as croner reads it.
        return Ok(if kind == Field::DayOfWeek && n == 0 && range_end {
            7
        } else {
            n
        });
    }
    Err(match kind {
        Field::Month => format!("'{}' is not a month number or name", excerpt(text)),
        Field::DayOfWeek => format!(
            "'{}' is not a weekday number or three-letter name",
            excerpt(text)
        ),
        _ if text.is_empty() => "an empty value".to_string(),
        _ => format!("'{}' is not a number", excerpt(text)),
    })
}

fn all_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}
