use super::*;

const NOW: &str = "2026-05-01T12:00:00Z";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

fn read(trigger_ref: Option<&str>, params: &str) -> Result<(String, TimerSpec), ParamError> {
    read_rule(
        &RuleInput {
            id: 42,
            rule_ref: "pack.rule",
            trigger_ref,
            params,
        },
        now(),
    )
}

/// The spec text a rule reads to.
fn spec(trigger_ref: Option<&str>, params: &str) -> String {
    match read(trigger_ref, params) {
        Ok((_, spec)) => spec.to_json(),
        Err(e) => panic!("{trigger_ref:?} {params}: {e}"),
    }
}

/// The error a rule reads to: (field, message).
fn error(trigger_ref: Option<&str>, params: &str) -> (Option<String>, String) {
    match read(trigger_ref, params) {
        Ok((r, spec)) => panic!(
            "{trigger_ref:?} {params} should fail, got {r} {}",
            spec.to_json()
        ),
        Err(e) => (e.field, e.message),
    }
}

fn assert_error(trigger_ref: Option<&str>, params: &str, field: Option<&str>, prefix: &str) {
    let (f, message) = error(trigger_ref, params);
    assert_eq!(f.as_deref(), field, "{params}: {message}");
    assert!(
        message.starts_with(prefix),
        "{params}: expected '{prefix}…', got '{message}'"
    );
}

const INTERVAL: Option<&str> = Some("core.intervaltimer");
const CRON: Option<&str> = Some("core.crontimer");
const DATETIME: Option<&str> = Some("core.datetimetimer");
const RRULE: Option<&str> = Some("core.rruletimer");
const TIMER: Option<&str> = Some("core.timer");

// ----- selection ------------------------------------------------------------------------

#[test]
fn params_must_be_a_json_object() {
    for params in ["", "not json", "[1,2]", "null", "5", "\"interval\""] {
        let (field, message) = error(INTERVAL, params);
        assert_eq!(field, None, "{params}");
        assert!(message.starts_with("trigger_params"), "{params}: {message}");
    }
}

#[test]
fn unknown_trigger_ref() {
    assert_error(
        Some("core.webhook"),
        r#"{"interval":5}"#,
        None,
        "Unknown timer trigger type: core.webhook",
    );
    assert_error(
        Some("core.IntervalTimer"),
        r#"{"interval":5}"#,
        None,
        "Unknown timer trigger type: core.IntervalTimer",
    );
}

#[test]
fn selection_by_trigger_ref_ignores_unknown_keys() {
    let (r, s) = read(
        INTERVAL,
        r#"{"interval":5,"unit":"seconds","note":"x","expression":"* * * * *"}"#,
    )
    .unwrap();
    assert_eq!(r, "core.intervaltimer");
    assert_eq!(s.to_json(), r#"{"kind":"interval","interval_seconds":5}"#);
    // The ref decides even when other kinds' keys are present.
    assert_eq!(
        spec(CRON, r#"{"expression":"0 * * * *","interval":5}"#),
        r#"{"kind":"cron","expression":"0 * * * *","timezone":"UTC"}"#
    );
}

#[test]
fn tagged_params_under_any_timer_ref() {
    assert_eq!(
        spec(
            INTERVAL,
            r#"{"type":"interval","interval":5,"unit":"seconds"}"#
        ),
        r#"{"kind":"interval","interval_seconds":5}"#
    );
    assert_eq!(
        spec(CRON, r#"{"type":"cron","expression":"0 0 * * *"}"#),
        r#"{"kind":"cron","expression":"0 0 * * *","timezone":"UTC"}"#
    );
    for tag in ["date_time", "datetime", "one_shot", "DateTime"] {
        let params = format!(r#"{{"type":"{tag}","fire_at":"2026-06-01T00:00:00Z"}}"#);
        assert_eq!(
            spec(DATETIME, &params),
            r#"{"kind":"one_shot","fire_at":"2026-06-01T00:00:00Z","timezone":"UTC"}"#
        );
        assert_eq!(
            spec(TIMER, &params),
            r#"{"kind":"one_shot","fire_at":"2026-06-01T00:00:00Z","timezone":"UTC"}"#
        );
    }
    let (r, s) = read(
        TIMER,
        r#"{"type":"rrule","rule":"FREQ=DAILY","dtstart":"2026-01-01T09:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(r, "core.timer");
    assert_eq!(s.kind(), TimerKind::Rrule);
    let (r, s) = read(
        TIMER,
        r#"{"type":"interval","seconds":10,"minutes":0,"hours":0}"#,
    )
    .unwrap();
    assert_eq!(
        (r.as_str(), s.to_json().as_str()),
        ("core.timer", r#"{"kind":"interval","interval_seconds":10}"#)
    );
}

#[test]
fn tag_contradicting_the_ref_is_an_error() {
    assert_error(
        CRON,
        r#"{"type":"interval","interval":5}"#,
        Some("type"),
        "'type' is 'interval', but trigger core.crontimer takes cron params",
    );
    assert_error(
        INTERVAL,
        r#"{"type":"one_shot","fire_at":"2026-06-01T00:00:00Z"}"#,
        Some("type"),
        "'type' is 'one_shot'",
    );
    assert_error(INTERVAL, r#"{"type":"hourly","interval":5}"#, Some("type"), "Unknown timer 'type' value 'hourly'; expected one of interval, cron, date_time, datetime, one_shot, rrule");
    assert_error(
        TIMER,
        r#"{"type":5}"#,
        Some("type"),
        "Unknown timer 'type' value 5",
    );
}

#[test]
fn inference_without_trigger_ref() {
    let cases = [
        (r#"{"interval":5}"#, "core.intervaltimer"),
        (r#"{"expression":"0 * * * *"}"#, "core.crontimer"),
        (
            r#"{"fire_at":"2026-06-01T00:00:00Z"}"#,
            "core.datetimetimer",
        ),
        (
            r#"{"rule":"FREQ=DAILY","dtstart":"2026-01-01T00:00:00Z"}"#,
            "core.rruletimer",
        ),
        (
            r#"{"freq":"daily","dtstart":"2026-01-01T00:00:00Z"}"#,
            "core.rruletimer",
        ),
        // An RRULE's own interval does not make it an interval timer.
        (
            r#"{"freq":"daily","interval":2,"dtstart":"2026-01-01T00:00:00Z"}"#,
            "core.rruletimer",
        ),
        // Order: interval before expression.
        (
            r#"{"expression":"0 * * * *","interval":5}"#,
            "core.intervaltimer",
        ),
        // A tag decides.
        (
            r#"{"type":"cron","expression":"0 * * * *","interval":5}"#,
            "core.crontimer",
        ),
    ];
    for (params, expected) in cases {
        let (r, _) = read(None, params).unwrap_or_else(|e| panic!("{params}: {e}"));
        assert_eq!(r, expected, "{params}");
        // An empty ref counts as none.
        let (r, _) = read(Some(" "), params).unwrap();
        assert_eq!(r, expected, "{params}");
    }
    // Under core.timer without a tag, the same inference.
    assert_eq!(
        read(TIMER, r#"{"interval":5}"#).unwrap().1.kind(),
        TimerKind::Interval
    );
    let (field, message) = error(None, r#"{"delta":5}"#);
    assert_eq!(field, None);
    assert!(
        message.starts_with("Cannot tell which kind of timer"),
        "{message}"
    );
    assert!(
        message.contains("'interval', 'expression', 'fire_at', 'rule' or 'freq'"),
        "{message}"
    );
    assert!(message.ends_with(r#"params: {"delta":5}"#), "{message}");
}

// ----- interval -------------------------------------------------------------------------

#[test]
fn interval_forms() {
    let s = |params: &str| spec(INTERVAL, params);
    assert_eq!(
        s(r#"{"interval":5}"#),
        r#"{"kind":"interval","interval_seconds":5}"#
    );
    assert_eq!(
        s(r#"{"interval":5,"unit":null}"#),
        r#"{"kind":"interval","interval_seconds":5}"#
    );
    assert_eq!(
        s(r#"{"interval":2,"unit":"minutes"}"#),
        r#"{"kind":"interval","interval_seconds":120}"#
    );
    assert_eq!(
        s(r#"{"interval":1,"unit":"minute"}"#),
        r#"{"kind":"interval","interval_seconds":60}"#
    );
    assert_eq!(
        s(r#"{"interval":3,"unit":"Hours"}"#),
        r#"{"kind":"interval","interval_seconds":10800}"#
    );
    assert_eq!(
        s(r#"{"interval":1,"unit":"days"}"#),
        r#"{"kind":"interval","interval_seconds":86400}"#
    );
    assert_eq!(
        s(r#"{"interval":2,"unit":"weeks"}"#),
        r#"{"kind":"interval","interval_seconds":1209600}"#
    );
    // Same schedule, same spec, whatever the unit.
    assert_eq!(
        s(r#"{"interval":60,"unit":"seconds"}"#),
        s(r#"{"interval":1,"unit":"minutes"}"#)
    );
    // Legacy parts, summed.
    assert_eq!(
        s(r#"{"type":"interval","seconds":10,"minutes":0,"hours":0}"#),
        r#"{"kind":"interval","interval_seconds":10}"#
    );
    assert_eq!(
        s(r#"{"seconds":30,"minutes":1,"hours":1,"days":1}"#),
        r#"{"kind":"interval","interval_seconds":90090}"#
    );
    // StackStorm IntervalTimer.
    assert_eq!(
        s(r#"{"unit":"minutes","delta":5}"#),
        r#"{"kind":"interval","interval_seconds":300}"#
    );
    assert_eq!(
        s(r#"{"delta":7}"#),
        r#"{"kind":"interval","interval_seconds":7}"#
    );
}

#[test]
fn interval_errors() {
    let expected = "Missing or invalid 'interval' field in params: ";
    for params in [
        r#"{}"#,
        r#"{"interval":"5"}"#,
        r#"{"interval":5.5}"#,
        r#"{"interval":5.0}"#,
        r#"{"interval":-5}"#,
        r#"{"interval":true}"#,
        r#"{"interval":null}"#,
    ] {
        let (field, message) = error(INTERVAL, params);
        assert_eq!(field.as_deref(), Some("interval"), "{params}");
        assert!(message.starts_with(expected), "{params}: {message}");
        assert!(
            message.ends_with("; expected a whole number greater than 0"),
            "{params}: {message}"
        );
    }
    let (_, message) = error(INTERVAL, r#"{"interval":"5"}"#);
    assert_eq!(
        message,
        r#"Missing or invalid 'interval' field in params: {"interval":"5"}; expected a whole number greater than 0"#
    );
    assert_error(
        INTERVAL,
        r#"{"interval":0}"#,
        Some("interval"),
        "Interval must be greater than 0",
    );
    assert_eq!(
        error(INTERVAL, r#"{"interval":0}"#).1,
        "Interval must be greater than 0"
    );
    assert_error(INTERVAL, r#"{"interval":5,"unit":"x"}"#, Some("unit"), "Failed to parse 'unit' field: unknown unit 'x'; expected one of seconds, minutes, hours, days, weeks");
    assert_error(
        INTERVAL,
        r#"{"interval":5,"unit":5}"#,
        Some("unit"),
        "Failed to parse 'unit' field: 5 is not a string",
    );
    assert!(read(INTERVAL, r#"{"interval":5217,"unit":"weeks"}"#).is_ok());
    assert_error(
        INTERVAL,
        r#"{"interval":5300,"unit":"weeks"}"#,
        Some("interval"),
        "Interval of 5300 weeks is too long; the maximum is 100 years",
    );
    assert_error(
        INTERVAL,
        r#"{"interval":18446744073709551615,"unit":"days"}"#,
        Some("interval"),
        "Interval of 18446744073709551615 days is too long",
    );
    // StackStorm and legacy forms name their own fields.
    assert_error(
        INTERVAL,
        r#"{"delta":"5","unit":"seconds"}"#,
        Some("delta"),
        "Missing or invalid 'delta' field in params: ",
    );
    assert_error(
        INTERVAL,
        r#"{"delta":0}"#,
        Some("delta"),
        "Interval must be greater than 0",
    );
    assert_error(
        INTERVAL,
        r#"{"seconds":0,"minutes":0}"#,
        Some("seconds"),
        "Interval must be greater than 0",
    );
    assert_error(
        INTERVAL,
        r#"{"seconds":-1}"#,
        Some("seconds"),
        "Invalid 'seconds' value -1; expected a whole number of 0 or more",
    );
    assert_error(
        INTERVAL,
        r#"{"hours":"1"}"#,
        Some("hours"),
        "Invalid 'hours' value \"1\"",
    );
    assert_error(
        INTERVAL,
        r#"{"days":40000}"#,
        Some("seconds"),
        "Interval of 3456000000 seconds is too long",
    );
}

#[test]
fn params_shown_in_messages_are_truncated() {
    let long = format!(r#"{{"interval":"x","pad":"{}"}}"#, "y".repeat(500));
    let (_, message) = error(INTERVAL, &long);
    assert!(message.contains('…'), "{message}");
    assert!(message.len() < 400, "{}", message.len());
    // Multi-byte characters are cut on a character boundary.
    let long = format!(r#"{{"interval":"x","pad":"{}"}}"#, "é".repeat(500));
    assert!(error(INTERVAL, &long).1.contains('…'));
}

// ----- cron -----------------------------------------------------------------------------

#[test]
fn cron_forms() {
    assert_eq!(
        spec(
            CRON,
            r#"{"expression":" 0 30 9 * * MON-FRI ","timezone":"Europe/Berlin"}"#
        ),
        r#"{"kind":"cron","expression":"0 30 9 * * MON-FRI","timezone":"Europe/Berlin"}"#
    );
    assert_eq!(
        spec(CRON, r#"{"expression":"*/5 * * * *"}"#),
        r#"{"kind":"cron","expression":"*/5 * * * *","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(CRON, r#"{"expression":"@midnight","timezone":""}"#),
        r#"{"kind":"cron","expression":"@midnight","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(CRON, r#"{"expression":"@hourly","timezone":null}"#),
        r#"{"kind":"cron","expression":"@hourly","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(
            CRON,
            r#"{"expression":"0 0 * * *","timezone":"america/new_york"}"#
        ),
        r#"{"kind":"cron","expression":"0 0 * * *","timezone":"America/New_York"}"#
    );
    // StackStorm CronTimer fields.
    assert_eq!(
        spec(
            CRON,
            r#"{"hour":9,"minute":30,"day_of_week":"mon-fri","timezone":"Europe/Berlin"}"#
        ),
        r#"{"kind":"cron","expression":"0 30 9 * * MON-FRI *","timezone":"Europe/Berlin"}"#
    );
    assert_eq!(
        spec(CRON, r#"{"day_of_week":0,"hour":"8"}"#),
        r#"{"kind":"cron","expression":"0 0 8 * * MON *","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(CRON, r#"{"second":"*/10"}"#),
        r#"{"kind":"cron","expression":"*/10 * * * * * *","timezone":"UTC"}"#
    );
}

#[test]
fn cron_errors() {
    let missing = "Missing or invalid 'expression' field in params: ";
    for params in [
        r#"{}"#,
        r#"{"expression":""}"#,
        r#"{"expression":"  "}"#,
        r#"{"expression":5}"#,
        r#"{"expression":["* * * * *"]}"#,
        r#"{"timezone":"UTC"}"#,
    ] {
        assert_error(CRON, params, Some("expression"), missing);
    }
    assert_error(
        CRON,
        r#"{"expression":"* * *"}"#,
        Some("expression"),
        "Invalid cron expression '* * *': ",
    );
    assert_error(
        CRON,
        r#"{"expression":"0 0 30 2 *"}"#,
        Some("expression"),
        "Cron expression '0 0 30 2 *' never fires",
    );
    assert_error(
        CRON,
        r#"{"expression":"0 0 0 1 1 * 2025"}"#,
        Some("expression"),
        "Cron expression '0 0 0 1 1 * 2025' never fires after 2026-05-01T12:00:00Z",
    );
    assert_error(
        CRON,
        r#"{"expression":"* * * * *","timezone":"Mars/Base"}"#,
        Some("timezone"),
        "Invalid timezone 'Mars/Base': ",
    );
    assert_error(
        CRON,
        r#"{"expression":"* * * * *","timezone":1}"#,
        Some("timezone"),
        "Invalid timezone '1': ",
    );
    assert_error(
        CRON,
        r#"{"hour":"9","week":"1"}"#,
        Some("week"),
        "The StackStorm/APScheduler 'week' field",
    );
    assert_error(
        CRON,
        r#"{"hour":9.5}"#,
        Some("hour"),
        "Invalid 'hour' value 9.5; expected a string or a whole number",
    );
    assert_error(
        CRON,
        r#"{"day_of_week":7}"#,
        Some("day_of_week"),
        "Invalid 'day_of_week' value '7'",
    );
    assert_error(
        CRON,
        r#"{"hour":"25"}"#,
        Some("hour"),
        "Invalid 'hour' value '25'",
    );
}

// ----- one-shot -------------------------------------------------------------------------

#[test]
fn one_shot_forms() {
    assert_eq!(
        spec(DATETIME, r#"{"fire_at":"2026-06-01T09:00:00+02:00"}"#),
        r#"{"kind":"one_shot","fire_at":"2026-06-01T07:00:00Z","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(
            DATETIME,
            r#"{"fire_at":"2026-06-01T09:00:00Z","timezone":"Europe/Berlin"}"#
        ),
        r#"{"kind":"one_shot","fire_at":"2026-06-01T09:00:00Z","timezone":"Europe/Berlin"}"#
    );
    // Naive local times need a zone.
    assert_eq!(
        spec(
            DATETIME,
            r#"{"fire_at":"2026-06-01T09:00:00","timezone":"Europe/Berlin"}"#
        ),
        r#"{"kind":"one_shot","fire_at":"2026-06-01T07:00:00Z","timezone":"Europe/Berlin"}"#
    );
    assert_eq!(
        spec(
            DATETIME,
            r#"{"fire_at":"2026-06-01 09:00:00","timezone":"America/New_York"}"#
        ),
        r#"{"kind":"one_shot","fire_at":"2026-06-01T13:00:00Z","timezone":"America/New_York"}"#
    );
    // Spring-forward gap: the first instant after it. Fall-back: the earlier one.
    assert_eq!(
        spec(
            DATETIME,
            r#"{"fire_at":"2027-03-28T02:30:00","timezone":"Europe/Berlin"}"#
        ),
        r#"{"kind":"one_shot","fire_at":"2027-03-28T01:00:00Z","timezone":"Europe/Berlin"}"#
    );
    assert_eq!(
        spec(
            DATETIME,
            r#"{"fire_at":"2026-10-25T02:30:00","timezone":"Europe/Berlin"}"#
        ),
        r#"{"kind":"one_shot","fire_at":"2026-10-25T00:30:00Z","timezone":"Europe/Berlin"}"#
    );
    // Legacy tagged and StackStorm DateTimer (naive, default UTC).
    assert_eq!(
        spec(
            DATETIME,
            r#"{"type":"one_shot","fire_at":"2026-06-01T00:00:00.5Z"}"#
        ),
        r#"{"kind":"one_shot","fire_at":"2026-06-01T00:00:00.500Z","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(DATETIME, r#"{"date":"2026-06-01 09:00:00"}"#),
        r#"{"kind":"one_shot","fire_at":"2026-06-01T09:00:00Z","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(
            DATETIME,
            r#"{"date":"2026-06-01 09:00:00","timezone":"Australia/Sydney"}"#
        ),
        r#"{"kind":"one_shot","fire_at":"2026-05-31T23:00:00Z","timezone":"Australia/Sydney"}"#
    );
}

#[test]
fn one_shot_errors() {
    assert_error(
        DATETIME,
        r#"{}"#,
        Some("fire_at"),
        "Missing 'fire_at' field in params: {}; expected an RFC 3339",
    );
    assert_error(
        DATETIME,
        r#"{"fire_at":"next tuesday"}"#,
        Some("fire_at"),
        "Failed to parse 'fire_at' as DateTime: 'next tuesday' is not an RFC 3339 date-time",
    );
    assert_error(
        DATETIME,
        r#"{"fire_at":1780000000}"#,
        Some("fire_at"),
        "Failed to parse 'fire_at' as DateTime: 1780000000 is not a string",
    );
    assert_error(
        DATETIME,
        r#"{"fire_at":"2026-06-01T09:00:00"}"#,
        Some("fire_at"),
        "Failed to parse 'fire_at' as DateTime: '2026-06-01T09:00:00' has no UTC offset",
    );
    assert_error(
        DATETIME,
        r#"{"date":"soon"}"#,
        Some("date"),
        "Failed to parse 'date' as DateTime: ",
    );
    // Past, and exactly now.
    assert_error(
        DATETIME,
        r#"{"fire_at":"2026-01-01T00:00:00Z"}"#,
        Some("fire_at"),
        "DateTime timer fire_at must be in the future",
    );
    assert_error(
        DATETIME,
        &format!(r#"{{"fire_at":"{NOW}"}}"#),
        Some("fire_at"),
        "DateTime timer fire_at must be in the future",
    );
    assert_error(
        DATETIME,
        r#"{"date":"2020-01-01 00:00:00"}"#,
        Some("date"),
        "DateTime timer fire_at must be in the future",
    );
    // A nanosecond after now is the future.
    assert!(read(DATETIME, r#"{"fire_at":"2026-05-01T12:00:00.000000001Z"}"#).is_ok());
    assert_error(
        DATETIME,
        r#"{"fire_at":"2026-06-01T09:00:00Z","timezone":"Nowhere"}"#,
        Some("timezone"),
        "Invalid timezone 'Nowhere': ",
    );
}

// ----- rrule ----------------------------------------------------------------------------

#[test]
fn rrule_forms() {
    assert_eq!(
        spec(
            RRULE,
            r#"{"rule":"RRULE:FREQ=WEEKLY;BYDAY=MO","dtstart":"2026-01-05T09:00:00+01:00"}"#
        ),
        r#"{"kind":"rrule","rule":"FREQ=WEEKLY;BYDAY=MO","dtstart":"2026-01-05T08:00:00Z","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(
            RRULE,
            r#"{"rule":"FREQ=WEEKLY;BYDAY=MO","dtstart":"2026-01-05T09:00:00","timezone":"Europe/Berlin"}"#
        ),
        r#"{"kind":"rrule","rule":"FREQ=WEEKLY;BYDAY=MO","dtstart":"2026-01-05T08:00:00Z","timezone":"Europe/Berlin"}"#
    );
    // Structured, in the platform's order.
    assert_eq!(
        spec(
            RRULE,
            r#"{"freq":"monthly","interval":1,"by_set_pos":[-1],"by_day":["MO","TU","WE","TH","FR"],"by_hour":[17],"dtstart":"2026-01-01T00:00:00Z"}"#
        ),
        r#"{"kind":"rrule","rule":"FREQ=MONTHLY;INTERVAL=1;BYDAY=MO,TU,WE,TH,FR;BYHOUR=17;BYSETPOS=-1","dtstart":"2026-01-01T00:00:00Z","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(
            RRULE,
            r#"{"freq":"DAILY","until":"2026-12-31T23:59:59","by_hour":9,"by_day":"mo, we","timezone":"Europe/Berlin","dtstart":"2026-01-01T00:00:00Z"}"#
        ),
        r#"{"kind":"rrule","rule":"FREQ=DAILY;UNTIL=20261231T225959Z;BYDAY=MO,WE;BYHOUR=9","dtstart":"2026-01-01T00:00:00Z","timezone":"Europe/Berlin"}"#
    );
    // A non-empty raw rule overrides structured fields; an empty one does not.
    assert_eq!(
        spec(
            RRULE,
            r#"{"rule":"FREQ=YEARLY","freq":"DAILY","dtstart":"2026-01-01T00:00:00Z"}"#
        ),
        r#"{"kind":"rrule","rule":"FREQ=YEARLY","dtstart":"2026-01-01T00:00:00Z","timezone":"UTC"}"#
    );
    assert_eq!(
        spec(
            RRULE,
            r#"{"rule":"RRULE:","freq":"DAILY","dtstart":"2026-01-01T00:00:00Z"}"#
        ),
        r#"{"kind":"rrule","rule":"FREQ=DAILY","dtstart":"2026-01-01T00:00:00Z","timezone":"UTC"}"#
    );
    // A future dtstart is fine.
    assert!(read(
        RRULE,
        r#"{"rule":"FREQ=DAILY;COUNT=1","dtstart":"2030-01-01T00:00:00Z"}"#
    )
    .is_ok());
}

#[test]
fn rrule_errors() {
    assert_error(
        RRULE,
        r#"{"rule":"FREQ=DAILY"}"#,
        Some("dtstart"),
        r#"Missing 'dtstart' field in params: {"rule":"FREQ=DAILY"}"#,
    );
    assert_error(
        RRULE,
        r#"{"rule":"FREQ=DAILY","dtstart":"someday"}"#,
        Some("dtstart"),
        "Failed to parse 'dtstart' as DateTime: ",
    );
    assert_error(
        RRULE,
        r#"{"rule":"FREQ=DAILY","dtstart":"2026-01-01T00:00:00"}"#,
        Some("dtstart"),
        "Failed to parse 'dtstart' as DateTime: ",
    );
    assert_error(
        RRULE,
        r#"{"dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("freq"),
        "Missing required 'freq' field for RRULE timer",
    );
    assert_error(
        RRULE,
        r#"{"rule":"","dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("freq"),
        "Missing required 'freq' field for RRULE timer",
    );
    assert_error(RRULE, r#"{"freq":"often","dtstart":"2026-01-01T00:00:00Z"}"#, Some("freq"),
        "Invalid 'freq' value 'often'; must be one of SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY");
    assert_error(
        RRULE,
        r#"{"freq":3,"dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("freq"),
        "Invalid 'freq' value '3'",
    );
    assert_error(
        RRULE,
        r#"{"freq":"daily","count":3,"until":"2027-01-01T00:00:00Z","dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("count"),
        "'count' and 'until' are mutually exclusive (RFC 5545 §3.3.10)",
    );
    assert_error(
        RRULE,
        r#"{"freq":"daily","count":"3","dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("count"),
        "Invalid 'count' value \"3\"",
    );
    assert_error(
        RRULE,
        r#"{"freq":"daily","until":"tomorrow","dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("until"),
        "Failed to parse 'until' as DateTime: ",
    );
    assert_error(
        RRULE,
        r#"{"freq":"daily","by_hour":[9,"10"],"dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("by_hour"),
        "Invalid 'by_hour' value \"10\"",
    );
    assert_error(
        RRULE,
        r#"{"freq":"daily","by_hour":[24],"dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("by_hour"),
        "Invalid 'by_hour' value 24",
    );
    assert_error(
        RRULE,
        r#"{"freq":"weekly","by_day":[1],"dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("by_day"),
        "Invalid 'by_day' value 1",
    );
    assert_error(
        RRULE,
        r#"{"freq":"weekly","week_start":"XX","dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("week_start"),
        "Invalid 'week_start' value 'XX'",
    );
    assert_error(
        RRULE,
        r#"{"rule":"FREQ=DAILY","dtstart":"2026-01-01T00:00:00Z","timezone":"Atlantis"}"#,
        Some("timezone"),
        "Invalid timezone 'Atlantis': ",
    );
    assert_error(
        RRULE,
        r#"{"rule":42,"dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("rule"),
        "Invalid 'rule' value 42",
    );
    // The crate's own parse errors, with the platform's prefix and the rule id.
    assert_error(
        RRULE,
        r#"{"rule":"FREQ=SOMETIMES","dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("rule"),
        "Failed to parse RRULE for rule 42: ",
    );
    assert_error(
        RRULE,
        r#"{"rule":"FREQ=DAILY\nRDATE:20260101T000000Z","dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("rule"),
        "Failed to parse RRULE for rule 42: ",
    );
    assert_error(RRULE, r#"{"rule":"FREQ=DAILY;COUNT=2;UNTIL=20270101T000000Z","dtstart":"2026-01-01T00:00:00Z"}"#, Some("rule"),
        "Failed to parse RRULE for rule 42: 'count' and 'until' are mutually exclusive (RFC 5545 §3.3.10)");
    assert_error(
        RRULE,
        r#"{"freq":"daily","by_week_no":[3],"dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("by_week_no"),
        "Failed to parse RRULE for rule 42: ",
    );
    // Ended before now.
    assert_error(
        RRULE,
        r#"{"rule":"FREQ=DAILY;COUNT=3","dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("rule"),
        "RRULE 'FREQ=DAILY;COUNT=3' (from 2026-01-01T00:00:00Z) has no occurrence after now",
    );
    assert_error(
        RRULE,
        r#"{"freq":"daily","count":3,"dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("count"),
        "RRULE 'FREQ=DAILY;COUNT=3'",
    );
    assert_error(
        RRULE,
        r#"{"freq":"daily","until":"2026-02-01T00:00:00Z","dtstart":"2026-01-01T00:00:00Z"}"#,
        Some("until"),
        "RRULE 'FREQ=DAILY;UNTIL=20260201T000000Z'",
    );
}
