//! Reading a rule's `trigger_params` into a [`TimerSpec`].
//!
//! Owns everything about the params' JSON: which timer kind a rule is (by trigger ref, by a
//! `type` tag, or inferred from the keys), which of the accepted forms the params use
//! (current, tagged, legacy, StackStorm), the JSON types of each field, and the checks that
//! depend on "now" (a one-shot in the past, a cron or RRULE with no fire left). The kind
//! modules check the values themselves.
//!
//! Error messages keep the platform sensor's messages (contract §1.7) as their prefix where
//! one exists, then say what is accepted; each names the field at fault.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::cron::{self, CronSchedule, StackStormFields};
use crate::datetime::{self, format_utc, parse_timezone};
use crate::error::{excerpt, ParamError};
use crate::interval::{IntervalSchedule, Unit, UNIT_NAMES};
use crate::oneshot::OneShotSchedule;
use crate::rrule::{self as rrule_kind, RruleSchedule, RuleParts, FREQUENCIES};
use crate::spec::TimerSpec;
use crate::{RuleInput, TimerKind, MAX_HORIZON_TEXT};

/// The trigger refs handled, in the order `describe` lists them.
pub const TRIGGER_REFS: [&str; 5] = [
    "core.intervaltimer",
    "core.crontimer",
    "core.datetimetimer",
    "core.rruletimer",
    "core.timer",
];

/// The `type` tags accepted (older platform versions and `core.timer`).
const TAGS: &str = "interval, cron, date_time, datetime, one_shot, rrule";

/// Params shown in messages are cut to about this many characters.
const SNIPPET_LEN: usize = 200;

/// Reads a rule: selects its kind, reads its params and applies the checks that depend on
/// `now`. Returns the trigger ref the rule is handled under and its schedule.
pub fn read_rule(rule: &RuleInput, now: DateTime<Utc>) -> Result<(String, TimerSpec), ParamError> {
    let trigger_ref = rule.trigger_ref.map(str::trim).filter(|r| !r.is_empty());
    let ref_kind = trigger_ref.map(kind_of_ref);
    if let (Some(r), Some(RefKind::Unknown)) = (trigger_ref, &ref_kind) {
        return Err(ParamError::general(format!(
            "Unknown timer trigger type: {r}"
        )));
    }
    let params: Value = serde_json::from_str(rule.params).map_err(|e| {
        ParamError::general(format!(
            "trigger_params is not valid JSON ({e}); expected a JSON object"
        ))
    })?;
    let Value::Object(obj) = &params else {
        return Err(ParamError::general(format!(
            "trigger_params must be a JSON object, not {}",
            snippet(&params)
        )));
    };
    let tag = read_tag(obj)?;
    let tagged_or_inferred = || {
        tag.as_ref()
            .map_or_else(|| infer_kind(obj, &params), |(_, k)| Ok(*k))
    };
    let (trigger_ref, kind) = match (trigger_ref, ref_kind) {
        (Some(r), Some(RefKind::Specific(kind))) => {
            if let Some((text, tagged)) = &tag {
                if *tagged != kind {
                    return Err(ParamError::field(
                        "type",
                        format!(
                            "'type' is '{}', but trigger {r} takes {} params; remove 'type' \
                             or use the trigger of that kind",
                            excerpt(text),
                            kind_name(kind)
                        ),
                    ));
                }
            }
            (r.to_string(), kind)
        }
        (Some(r), _) => (r.to_string(), tagged_or_inferred()?),
        (None, _) => {
            let kind = tagged_or_inferred()?;
            (ref_of_kind(kind).to_string(), kind)
        }
    };
    let spec = match kind {
        TimerKind::Interval => TimerSpec::Interval(read_interval(obj, &params)?),
        TimerKind::Cron => TimerSpec::Cron(read_cron(obj, &params, now)?),
        TimerKind::OneShot => TimerSpec::OneShot(read_one_shot(obj, &params, now)?),
        TimerKind::Rrule => TimerSpec::Rrule(read_rrule(obj, &params, rule.id, now)?),
    };
    Ok((trigger_ref, spec))
}

enum RefKind {
    Specific(TimerKind),
    Generic,
    Unknown,
}

fn kind_of_ref(trigger_ref: &str) -> RefKind {
    match trigger_ref {
        "core.intervaltimer" => RefKind::Specific(TimerKind::Interval),
        "core.crontimer" => RefKind::Specific(TimerKind::Cron),
        "core.datetimetimer" => RefKind::Specific(TimerKind::OneShot),
        "core.rruletimer" => RefKind::Specific(TimerKind::Rrule),
        "core.timer" => RefKind::Generic,
        _ => RefKind::Unknown,
    }
}

fn ref_of_kind(kind: TimerKind) -> &'static str {
    match kind {
        TimerKind::Interval => "core.intervaltimer",
        TimerKind::Cron => "core.crontimer",
        TimerKind::OneShot => "core.datetimetimer",
        TimerKind::Rrule => "core.rruletimer",
    }
}

fn kind_name(kind: TimerKind) -> &'static str {
    match kind {
        TimerKind::Interval => "interval",
        TimerKind::Cron => "cron",
        TimerKind::OneShot => "date-time (one-shot)",
        TimerKind::Rrule => "rrule",
    }
}

/// The `type` tag, if present: its text and the kind it names.
fn read_tag(obj: &Map<String, Value>) -> Result<Option<(String, TimerKind)>, ParamError> {
    let unknown = |shown: String| {
        ParamError::field(
            "type",
            format!("Unknown timer 'type' value {shown}; expected one of {TAGS}"),
        )
    };
    match obj.get("type") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let kind = match text.trim().to_ascii_lowercase().as_str() {
                "interval" => TimerKind::Interval,
                "cron" => TimerKind::Cron,
                "date_time" | "datetime" | "one_shot" => TimerKind::OneShot,
                "rrule" => TimerKind::Rrule,
                _ => return Err(unknown(format!("'{}'", excerpt(text)))),
            };
            Ok(Some((text.clone(), kind)))
        }
        Some(other) => Err(unknown(snippet(other))),
    }
}

/// Infers the kind of untagged params without a specific trigger ref, from their keys, in
/// the documented order: `interval`, `expression`, `fire_at`, `rule`/`freq`.
///
/// One refinement: structured RRULE params have an `interval` of their own, so `interval`
/// next to `freq` or `rule` means an RRULE, not an interval timer.
fn infer_kind(obj: &Map<String, Value>, params: &Value) -> Result<TimerKind, ParamError> {
    let has = |key: &str| obj.get(key).is_some_and(|v| !v.is_null());
    if has("interval") && !has("freq") && !has("rule") {
        Ok(TimerKind::Interval)
    } else if has("expression") {
        Ok(TimerKind::Cron)
    } else if has("fire_at") {
        Ok(TimerKind::OneShot)
    } else if has("rule") || has("freq") {
        Ok(TimerKind::Rrule)
    } else {
        Err(ParamError::general(format!(
            "Cannot tell which kind of timer these params are for: expected a 'type' ({TAGS}) \
             or one of the keys 'interval', 'expression', 'fire_at', 'rule' or 'freq'; params: {}",
            snippet(params)
        )))
    }
}

/// The params as compact JSON, cut to about [`SNIPPET_LEN`] characters.
fn snippet(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(SNIPPET_LEN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A present, non-null value.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// The rule's `timezone`, if it gave one (absent, null or blank means none).
fn read_timezone(obj: &Map<String, Value>) -> Result<Option<Tz>, ParamError> {
    match get(obj, "timezone") {
        None => Ok(None),
        Some(Value::String(name)) if name.trim().is_empty() => Ok(None),
        Some(Value::String(name)) => parse_timezone(name).map(Some),
        Some(other) => Err(ParamError::field(
            "timezone",
            format!(
                "Invalid timezone '{}': expected an IANA time zone name as a string, such as \
                 'UTC' or 'Europe/Berlin'",
                snippet(other)
            ),
        )),
    }
}

// ----- interval -------------------------------------------------------------------------

/// Interval params, in the first form that matches: `{"interval": N, "unit": U}`,
/// StackStorm's `{"delta": N, "unit": U}`, or the legacy `{"seconds": …, "minutes": …,
/// "hours": …, "days": …}` (parts summed).
fn read_interval(obj: &Map<String, Value>, params: &Value) -> Result<IntervalSchedule, ParamError> {
    for field in ["interval", "delta"] {
        if let Some(value) = get(obj, field) {
            let count = value.as_u64().ok_or_else(|| {
                ParamError::field(
                    field,
                    format!(
                        "Missing or invalid '{field}' field in params: {}; expected a whole \
                         number greater than 0",
                        snippet(params)
                    ),
                )
            })?;
            return IntervalSchedule::from_units(count, read_unit(obj)?, field);
        }
    }
    const LEGACY: [(&str, u64); 5] = [
        ("seconds", 1),
        ("minutes", 60),
        ("hours", 3_600),
        ("days", 86_400),
        ("weeks", 604_800),
    ];
    if LEGACY.iter().any(|(key, _)| get(obj, key).is_some()) {
        let mut total: u64 = 0;
        for (key, unit) in LEGACY {
            let Some(value) = get(obj, key) else { continue };
            let n = value.as_u64().ok_or_else(|| {
                ParamError::field(
                    key,
                    format!(
                        "Invalid '{key}' value {}; expected a whole number of 0 or more",
                        snippet(value)
                    ),
                )
            })?;
            total = n
                .checked_mul(unit)
                .and_then(|s| total.checked_add(s))
                .unwrap_or(u64::MAX);
        }
        return IntervalSchedule::new(total, "seconds");
    }
    Err(ParamError::field(
        "interval",
        format!(
            "Missing or invalid 'interval' field in params: {}; expected a whole number greater \
             than 0",
            snippet(params)
        ),
    ))
}

fn read_unit(obj: &Map<String, Value>) -> Result<Unit, ParamError> {
    match get(obj, "unit") {
        None => Ok(Unit::Seconds),
        Some(Value::String(name)) => Unit::parse(name).ok_or_else(|| {
            ParamError::field(
                "unit",
                format!(
                    "Failed to parse 'unit' field: unknown unit '{}'; expected one of {UNIT_NAMES}",
                    excerpt(name)
                ),
            )
        }),
        Some(other) => Err(ParamError::field(
            "unit",
            format!(
                "Failed to parse 'unit' field: {} is not a string; expected one of {UNIT_NAMES}",
                snippet(other)
            ),
        )),
    }
}

// ----- cron -----------------------------------------------------------------------------

/// The StackStorm CronTimer fields, most significant first.
const STACKSTORM_CRON_FIELDS: [&str; 7] = [
    "year",
    "month",
    "day",
    "day_of_week",
    "hour",
    "minute",
    "second",
];

/// Cron params: `{"expression": E, "timezone"?: TZ}`, or StackStorm's CronTimer fields.
/// The expression must fire at least once after `now`.
fn read_cron(
    obj: &Map<String, Value>,
    params: &Value,
    now: DateTime<Utc>,
) -> Result<CronSchedule, ParamError> {
    let timezone = read_timezone(obj)?.unwrap_or(chrono_tz::UTC);
    let missing = || {
        ParamError::field(
            "expression",
            format!(
                "Missing or invalid 'expression' field in params: {}; expected a cron expression \
                 string such as '0 */5 * * * *' (or StackStorm fields second, minute, hour, day, \
                 month, day_of_week, year)",
                snippet(params)
            ),
        )
    };
    let schedule = match get(obj, "expression") {
        Some(Value::String(expression)) if !expression.trim().is_empty() => {
            CronSchedule::new(expression, timezone)?
        }
        Some(_) => return Err(missing()),
        None if STACKSTORM_CRON_FIELDS
            .iter()
            .any(|key| get(obj, key).is_some()) =>
        {
            if get(obj, "week").is_some() {
                return Err(ParamError::field(
                    "week",
                    "The StackStorm/APScheduler 'week' field (ISO week number) is not supported; \
                     use a cron 'expression' or the day, month and day_of_week fields",
                ));
            }
            let fields = read_stackstorm_fields(obj)?;
            let expression = cron::assemble_stackstorm(&fields)?;
            CronSchedule::new(&expression, timezone)
                .map_err(|e| cron::blame_stackstorm_field(&fields).unwrap_or(e))?
        }
        None => return Err(missing()),
    };
    match schedule.next_after(now)? {
        Some(next) if crate::beyond_horizon(now, next) => Err(ParamError::field(
            "expression",
            format!(
                "Cron expression '{}' first fires at {}, more than {MAX_HORIZON_TEXT} after \
                 now ({}); the limit is {MAX_HORIZON_TEXT}",
                excerpt(schedule.expression()),
                format_utc(next),
                format_utc(now)
            ),
        )),
        Some(_) => Ok(schedule),
        None => Err(ParamError::field(
            "expression",
            format!(
                "Cron expression '{}' never fires after {} (in {})",
                excerpt(schedule.expression()),
                format_utc(now),
                timezone.name()
            ),
        )),
    }
}

fn read_stackstorm_fields(obj: &Map<String, Value>) -> Result<StackStormFields, ParamError> {
    let read = |key: &str| -> Result<Option<String>, ParamError> {
        match get(obj, key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
            Some(other) => Err(ParamError::field(
                key,
                format!(
                    "Invalid '{key}' value {}; expected a string or a whole number",
                    snippet(other)
                ),
            )),
        }
    };
    Ok(StackStormFields {
        year: read("year")?,
        month: read("month")?,
        day: read("day")?,
        day_of_week: read("day_of_week")?,
        hour: read("hour")?,
        minute: read("minute")?,
        second: read("second")?,
    })
}

// ----- one-shot -------------------------------------------------------------------------

/// One-shot params: `{"fire_at": T, "timezone"?: TZ}` or StackStorm's `{"date": T,
/// "timezone"?: TZ}`. `fire_at` needs an offset unless `timezone` is given; StackStorm's
/// `date` is a local time in `timezone` (default UTC). The instant must be after `now`.
fn read_one_shot(
    obj: &Map<String, Value>,
    params: &Value,
    now: DateTime<Utc>,
) -> Result<OneShotSchedule, ParamError> {
    let given_zone = read_timezone(obj)?;
    let timezone = given_zone.unwrap_or(chrono_tz::UTC);
    let (field, value, naive_zone) = if let Some(value) = get(obj, "fire_at") {
        ("fire_at", value, given_zone)
    } else if let Some(value) = get(obj, "date") {
        ("date", value, Some(timezone))
    } else {
        return Err(ParamError::field(
            "fire_at",
            format!(
                "Missing 'fire_at' field in params: {}; expected an RFC 3339 date-time such as \
                 2026-05-01T09:00:00Z",
                snippet(params)
            ),
        ));
    };
    let fire_at = match value {
        Value::String(text) => datetime::parse_datetime(text, naive_zone),
        other => Err(format!(
            "{} is not a string; expected an RFC 3339 date-time",
            snippet(other)
        )),
    }
    .map_err(|detail| {
        ParamError::field(
            field,
            format!("Failed to parse '{field}' as DateTime: {detail}"),
        )
    })?;
    if fire_at <= now {
        return Err(ParamError::field(
            field,
            format!(
                "DateTime timer fire_at must be in the future ({} is not after now, {})",
                format_utc(fire_at),
                format_utc(now)
            ),
        ));
    }
    if crate::beyond_horizon(now, fire_at) {
        return Err(ParamError::field(
            field,
            format!(
                "DateTime timer fire_at {} is more than {MAX_HORIZON_TEXT} after now ({}); \
                 the limit is {MAX_HORIZON_TEXT}",
                format_utc(fire_at),
                format_utc(now)
            ),
        ));
    }
    Ok(OneShotSchedule::new(fire_at, timezone))
}

// ----- rrule ----------------------------------------------------------------------------

/// RRULE params: `dtstart` (required), optional `timezone`, and either a raw `rule` (which
/// wins when non-empty) or the structured fields of contract §1.7. The rule must have an
/// occurrence after `now`.
fn read_rrule(
    obj: &Map<String, Value>,
    params: &Value,
    rule_id: i64,
    now: DateTime<Utc>,
) -> Result<RruleSchedule, ParamError> {
    let given_zone = read_timezone(obj)?;
    let timezone = given_zone.unwrap_or(chrono_tz::UTC);
    let dtstart = read_datetime(obj, "dtstart", given_zone)?.ok_or_else(|| {
        ParamError::field(
            "dtstart",
            format!(
                "Missing 'dtstart' field in params: {}; expected an RFC 3339 date-time such as \
                 2026-01-05T09:00:00Z",
                snippet(params)
            ),
        )
    })?;
    let raw = match get(obj, "rule") {
        None => None,
        Some(Value::String(text)) if rrule_kind::strip_prefix(text).is_empty() => None,
        Some(Value::String(text)) => Some(rrule_kind::strip_prefix(text).to_string()),
        Some(other) => {
            return Err(ParamError::field(
                "rule",
                format!(
                    "Invalid 'rule' value {}; expected an RRULE string such as FREQ=DAILY;BYHOUR=9",
                    snippet(other)
                ),
            ))
        }
    };
    let (text, field, parts) = match raw {
        Some(text) => (text, Some("rule"), None),
        None => {
            let parts = read_rule_parts(obj, given_zone)?;
            (rrule_kind::assemble(&parts)?, None, Some(parts))
        }
    };
    // A start inside a daylight-saving gap keeps its wall time (RFC 5545 §3.3.5).
    let gap = match get(obj, "dtstart") {
        Some(Value::String(given)) => datetime::start_in_gap(given, given_zone, timezone),
        _ => None,
    };
    let (dtstart, gap_wall) = match gap {
        Some((start, wall)) => (start, Some(wall)),
        None => (dtstart, None),
    };
    let schedule =
        RruleSchedule::with_gap_start(&text, dtstart, timezone, gap_wall).map_err(|detail| {
            // The platform's prefix names the rule; a rule id of 0 (a rule not stored yet)
            // names nothing.
            let prefix = if rule_id == 0 {
                "Failed to parse RRULE".to_string()
            } else {
                format!("Failed to parse RRULE for rule {rule_id}")
            };
            ParamError {
                field: Some(
                    field
                        .or_else(|| structured_field_of(&detail))
                        .unwrap_or("freq")
                        .to_string(),
                ),
                message: format!("{prefix}: {detail}"),
            }
        })?;
    let shown = excerpt(&text);
    match schedule.next_after(now)? {
        Some(next) if crate::beyond_horizon(now, next) => {
            let field = if crate::beyond_horizon(now, schedule.dtstart()) {
                "dtstart"
            } else if parts.is_some() {
                "freq"
            } else {
                "rule"
            };
            Err(ParamError::field(
                field,
                format!(
                    "RRULE '{shown}' first fires at {}, more than {MAX_HORIZON_TEXT} after now \
                     ({}); the limit is {MAX_HORIZON_TEXT}",
                    format_utc(next),
                    format_utc(now)
                ),
            ))
        }
        Some(_) => Ok(schedule),
        None => {
            // Whether the rule has any occurrence at all, from its start on.
            let ever = DateTime::from_timestamp(schedule.dtstart().timestamp() - 1, 0)
                .map(|before| schedule.next_after(before))
                .transpose()?
                .flatten();
            let has_until = match &parts {
                Some(p) => p.until.is_some(),
                None => shown.to_ascii_uppercase().contains("UNTIL="),
            };
            let field = match &parts {
                None => "rule",
                Some(p) if p.until.is_some() => "until",
                Some(p) if p.count.is_some() => "count",
                Some(_) => "freq",
            };
            let message = match ever {
                Some(last_seen) if last_seen <= now => format!(
                    "RRULE '{shown}' (from {}) has no occurrence after now ({}); the schedule \
                     has already ended",
                    format_utc(schedule.dtstart()),
                    format_utc(now)
                ),
                _ if has_until => format!(
                    "RRULE '{shown}' (from {}) has no occurrence at all: no date between its \
                     start and its UNTIL matches its parts",
                    format_utc(schedule.dtstart())
                ),
                _ => format!(
                    "RRULE '{shown}' (from {}) has no occurrence at all: no date matches its \
                     parts together (e.g. BYMONTH=2;BYMONTHDAY=30)",
                    format_utc(schedule.dtstart())
                ),
            };
            // A structured rule that never fires: UNTIL when it cuts every occurrence off,
            // else the parts as a whole (named by FREQ).
            let field = match &parts {
                Some(_) if ever.is_none() && !has_until => "freq",
                _ => field,
            };
            Err(ParamError::field(field, message))
        }
    }
}

/// The structured field an RRULE detail message is about, by the part it names first.
fn structured_field_of(detail: &str) -> Option<&'static str> {
    const PARTS: [(&str, &str); 13] = [
        ("BYMONTHDAY", "by_month_day"),
        ("BYMONTH", "by_month"),
        ("BYYEARDAY", "by_year_day"),
        ("BYWEEKNO", "by_week_no"),
        ("BYHOUR", "by_hour"),
        ("BYMINUTE", "by_minute"),
        ("BYSECOND", "by_second"),
        ("BYSETPOS", "by_set_pos"),
        ("BYDAY", "by_day"),
        ("UNTIL", "until"),
        ("COUNT", "count"),
        ("INTERVAL", "interval"),
        ("WKST", "week_start"),
    ];
    PARTS
        .iter()
        .filter_map(|(part, field)| detail.find(part).map(|at| (at, *field)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, field)| field)
}

/// A date-time field: `None` if absent; an error if present but unreadable.
fn read_datetime(
    obj: &Map<String, Value>,
    field: &str,
    zone: Option<Tz>,
) -> Result<Option<DateTime<Utc>>, ParamError> {
    match get(obj, field) {
        None => Ok(None),
        Some(Value::String(text)) => datetime::parse_datetime(text, zone).map(Some),
        Some(other) => Err(format!(
            "{} is not a string; expected an RFC 3339 date-time",
            snippet(other)
        )),
    }
    .map_err(|detail| {
        ParamError::field(
            field,
            format!("Failed to parse '{field}' as DateTime: {detail}"),
        )
    })
}

fn read_rule_parts(obj: &Map<String, Value>, zone: Option<Tz>) -> Result<RuleParts, ParamError> {
    let freq = match get(obj, "freq") {
        None => {
            return Err(ParamError::field(
                "freq",
                format!(
                    "Missing required 'freq' field for RRULE timer; give 'freq' (one of \
                     {FREQUENCIES}) or a raw 'rule' such as FREQ=DAILY;BYHOUR=9"
                ),
            ))
        }
        Some(Value::String(text)) => text.clone(),
        Some(other) => {
            return Err(ParamError::field(
                "freq",
                format!(
                    "Invalid 'freq' value '{}'; must be one of {FREQUENCIES}",
                    snippet(other)
                ),
            ))
        }
    };
    Ok(RuleParts {
        freq,
        interval: read_int(obj, "interval")?,
        count: read_int(obj, "count")?,
        until: read_datetime(obj, "until", zone)?,
        by_day: read_string_list(obj, "by_day")?,
        by_month_day: read_int_list(obj, "by_month_day")?,
        by_month: read_int_list(obj, "by_month")?,
        by_year_day: read_int_list(obj, "by_year_day")?,
        by_week_no: read_int_list(obj, "by_week_no")?,
        by_hour: read_int_list(obj, "by_hour")?,
        by_minute: read_int_list(obj, "by_minute")?,
        by_second: read_int_list(obj, "by_second")?,
        by_set_pos: read_int_list(obj, "by_set_pos")?,
        week_start: match get(obj, "week_start") {
            None => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(snippet(other)),
        },
    })
}

fn read_int(obj: &Map<String, Value>, field: &str) -> Result<Option<i64>, ParamError> {
    match get(obj, field) {
        None => Ok(None),
        Some(value) => value.as_i64().map(Some).ok_or_else(|| {
            ParamError::field(
                field,
                format!(
                    "Invalid '{field}' value {}; expected a whole number",
                    snippet(value)
                ),
            )
        }),
    }
}

/// A list of whole numbers: a JSON array, or a single number.
fn read_int_list(obj: &Map<String, Value>, field: &str) -> Result<Vec<i64>, ParamError> {
    let bad = |value: &Value| {
        ParamError::field(
            field,
            format!(
                "Invalid '{field}' value {}; expected a list of whole numbers",
                snippet(value)
            ),
        )
    };
    match get(obj, field) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_i64().ok_or_else(|| bad(item)))
            .collect(),
        Some(value) => value.as_i64().map(|n| vec![n]).ok_or_else(|| bad(value)),
    }
}

/// A list of strings: a JSON array, or one string with comma-separated items.
fn read_string_list(obj: &Map<String, Value>, field: &str) -> Result<Vec<String>, ParamError> {
    let bad = |value: &Value| {
        ParamError::field(
            field,
            format!(
                "Invalid '{field}' value {}; expected a list of strings",
                snippet(value)
            ),
        )
    };
    match get(obj, field) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string).ok_or_else(|| bad(item)))
            .collect(),
        Some(Value::String(text)) => Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()),
        Some(value) => Err(bad(value)),
    }
}

#[cfg(test)]
mod tests;
