//! Tests of the public API, as the host uses it.

use super::*;
use serde_json::{json, Value};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn rule<'a>(trigger_ref: Option<&'a str>, params: &'a str) -> RuleInput<'a> {
    RuleInput {
        id: 7,
        rule_ref: "examples.rule",
        trigger_ref,
        params,
    }
}

fn validated(trigger_ref: Option<&str>, params: &str) -> Validated {
    validate(&rule(trigger_ref, params), utc("2026-05-01T12:00:00Z"))
        .unwrap_or_else(|e| panic!("{params}: {e}"))
}

fn fire<'a>(scheduled: &str, fired: &str, count: u64, next: Option<&str>) -> Fire<'a> {
    Fire {
        rule_id: 7,
        rule_ref: "examples.rule",
        trigger_ref: "core.timer",
        sensor_ref: "core.timer_sensor",
        scheduled_at: utc(scheduled),
        fired_at: utc(fired),
        execution_count: count,
        next_fire_at: next.map(utc),
    }
}

fn payload(spec: &str, fire: &Fire) -> Value {
    let text = build_payload(spec, fire).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert!(value.is_object());
    value
}

/// The payload's keys, in order.
fn keys(spec: &str, fire: &Fire) -> Vec<String> {
    let text = build_payload(spec, fire).unwrap();
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(&text);
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Keys<'k>(&'k mut Vec<String>);
    impl<'de> Visitor<'de> for Keys<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                self.0.push(k);
            }
            Ok(())
        }
    }
    de.deserialize_map(Keys(&mut keys)).unwrap();
    keys
}

#[test]
fn describe_names_the_component() {
    let info = describe();
    assert_eq!(info.name, "attune-timer-rust");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        info.trigger_refs,
        [
            "core.intervaltimer",
            "core.crontimer",
            "core.datetimetimer",
            "core.rruletimer",
            "core.timer"
        ]
    );
}

#[test]
fn validate_reports_ref_kind_spec_and_zone() {
    let v = validated(
        Some("core.crontimer"),
        r#"{"expression":"0 30 9 * * MON-FRI","timezone":"Europe/Berlin"}"#,
    );
    assert_eq!(
        v,
        Validated {
            trigger_ref: "core.crontimer".into(),
            kind: TimerKind::Cron,
            spec: r#"{"kind":"cron","expression":"0 30 9 * * MON-FRI","timezone":"Europe/Berlin"}"#
                .into(),
            timezone: "Europe/Berlin".into(),
        }
    );
    let v = validated(None, r#"{"interval":5,"unit":"minutes"}"#);
    assert_eq!(
        (v.trigger_ref.as_str(), v.kind, v.timezone.as_str()),
        ("core.intervaltimer", TimerKind::Interval, "UTC")
    );
    let v = validated(
        Some("core.timer"),
        r#"{"type":"datetime","fire_at":"2026-06-01T09:00:00","timezone":"Australia/Sydney"}"#,
    );
    assert_eq!(
        (v.trigger_ref.as_str(), v.kind, v.timezone.as_str()),
        ("core.timer", TimerKind::OneShot, "Australia/Sydney")
    );
    let v = validated(
        None,
        r#"{"rule":"FREQ=DAILY","dtstart":"2026-01-01T09:00:00","timezone":"America/New_York"}"#,
    );
    assert_eq!(
        (v.trigger_ref.as_str(), v.kind, v.timezone.as_str()),
        ("core.rruletimer", TimerKind::Rrule, "America/New_York")
    );
}

#[test]
fn specs_from_validate_round_trip_and_revalidate() {
    let rules = [
        (Some("core.intervaltimer"), r#"{"interval":90}"#),
        (
            Some("core.crontimer"),
            r#"{"expression":"0 0 L * *","timezone":"Europe/Berlin"}"#,
        ),
        (Some("core.crontimer"), r#"{"day_of_week":"0-4","hour":9}"#),
        (
            Some("core.datetimetimer"),
            r#"{"fire_at":"2026-06-01T09:00:00.123456789+02:00"}"#,
        ),
        (
            Some("core.rruletimer"),
            r#"{"freq":"weekly","by_day":["MO"],"dtstart":"2026-01-05T09:00:00","timezone":"Europe/Berlin"}"#,
        ),
        (
            Some("core.rruletimer"),
            r#"{"rule":"FREQ=MINUTELY;INTERVAL=15;BYHOUR=9","dtstart":"2026-01-05T09:00:00Z"}"#,
        ),
    ];
    for (r, params) in rules {
        let v = validated(r, params);
        let parsed = TimerSpec::from_json(&v.spec).unwrap();
        assert_eq!(parsed.to_json(), v.spec);
        assert_eq!(parsed.kind(), v.kind);
        assert_eq!(parsed.timezone(), v.timezone);
        // Validating again gives the same spec.
        assert_eq!(validated(r, params).spec, v.spec);
    }
}

#[test]
fn next_fire_for_each_kind() {
    let start = utc("2026-05-01T12:00:00Z");
    let v = validated(None, r#"{"interval":10}"#);
    assert_eq!(
        next_fire(&v.spec, start, start).unwrap(),
        Some(utc("2026-05-01T12:00:10Z"))
    );
    assert_eq!(
        next_fire(&v.spec, start, utc("2026-05-01T12:00:10Z")).unwrap(),
        Some(utc("2026-05-01T12:00:20Z"))
    );

    let v = validated(
        None,
        r#"{"expression":"0 0 9 * * *","timezone":"America/New_York"}"#,
    );
    assert_eq!(
        next_fire(&v.spec, start, start).unwrap(),
        Some(utc("2026-05-01T13:00:00Z"))
    );

    let v = validated(None, r#"{"fire_at":"2026-05-01T13:00:00Z"}"#);
    assert_eq!(
        next_fire(&v.spec, start, start).unwrap(),
        Some(utc("2026-05-01T13:00:00Z"))
    );
    assert_eq!(
        next_fire(&v.spec, start, utc("2026-05-01T13:00:00Z")).unwrap(),
        None
    );

    let v = validated(
        None,
        r#"{"freq":"hourly","count":20,"dtstart":"2026-05-01T00:00:00Z"}"#,
    );
    assert_eq!(
        next_fire(&v.spec, start, start).unwrap(),
        Some(utc("2026-05-01T13:00:00Z"))
    );
    assert_eq!(
        next_fire(&v.spec, start, utc("2026-05-01T19:00:00Z")).unwrap(),
        None
    );
}

#[test]
fn garbage_spec_text_is_a_param_error() {
    let start = utc("2026-05-01T12:00:00Z");
    for spec in [
        "",
        "{",
        "[]",
        r#"{"kind":"cron"}"#,
        r#"{"kind":"interval","interval_seconds":0}"#,
        "\u{0}",
    ] {
        let err = next_fire(spec, start, start).unwrap_err();
        assert!(!err.message.is_empty());
        assert!(build_payload(
            spec,
            &fire("2026-05-01T12:00:00Z", "2026-05-01T12:00:00Z", 1, None)
        )
        .is_err());
    }
}

#[test]
fn interval_payload() {
    let spec = validated(
        Some("core.intervaltimer"),
        r#"{"interval":5,"unit":"minutes"}"#,
    )
    .spec;
    let f = fire(
        "2026-05-01T12:05:00Z",
        "2026-05-01T12:05:00.012Z",
        3,
        Some("2026-05-01T12:10:00Z"),
    );
    assert_eq!(
        payload(&spec, &f),
        json!({
            "type": "interval",
            "interval_seconds": 300,
            "fired_at": "2026-05-01T12:05:00.012Z",
            "execution_count": 3,
            "sensor_ref": "core.timer_sensor"
        })
    );
    assert_eq!(
        keys(&spec, &f),
        [
            "type",
            "interval_seconds",
            "fired_at",
            "execution_count",
            "sensor_ref"
        ]
    );
}

#[test]
fn cron_payload() {
    let spec = validated(
        Some("core.crontimer"),
        r#"{"expression":" 0 30 9 * * mon-fri ","timezone":"Europe/Berlin"}"#,
    )
    .spec;
    let f = fire(
        "2026-05-04T07:30:00Z",
        "2026-05-04T07:30:01.5Z",
        1,
        Some("2026-05-05T07:30:00Z"),
    );
    assert_eq!(
        payload(&spec, &f),
        json!({
            "type": "cron",
            "fired_at": "2026-05-04T07:30:01.500Z",
            "scheduled_at": "2026-05-04T07:30:00Z",
            "expression": "0 30 9 * * mon-fri",
            "timezone": "Europe/Berlin",
            "next_fire_at": "2026-05-05T07:30:00Z",
            "execution_count": 1,
            "sensor_ref": "core.timer_sensor"
        })
    );
    assert_eq!(
        keys(&spec, &f),
        [
            "type",
            "fired_at",
            "scheduled_at",
            "expression",
            "timezone",
            "next_fire_at",
            "execution_count",
            "sensor_ref"
        ]
    );
    // No next fire: the platform's "unknown".
    let f = fire("2026-05-04T07:30:00Z", "2026-05-04T07:30:00Z", 2, None);
    assert_eq!(payload(&spec, &f)["next_fire_at"], "unknown");
}

#[test]
fn one_shot_payload() {
    let spec = validated(
        Some("core.datetimetimer"),
        r#"{"fire_at":"2026-06-01T09:00:00","timezone":"Europe/Berlin"}"#,
    )
    .spec;
    let f = fire(
        "2026-06-01T07:00:00Z",
        "2026-06-01T07:00:01.234567Z",
        1,
        None,
    );
    assert_eq!(
        payload(&spec, &f),
        json!({
            "type": "one_shot",
            "fire_at": "2026-06-01T07:00:00Z",
            "fired_at": "2026-06-01T07:00:01.234567Z",
            "timezone": "Europe/Berlin",
            "delay_ms": 1234,
            "sensor_ref": "core.timer_sensor"
        })
    );
    assert_eq!(
        keys(&spec, &f),
        [
            "type",
            "fire_at",
            "fired_at",
            "timezone",
            "delay_ms",
            "sensor_ref"
        ]
    );
    // Fired early (host clock skew): never a negative delay.
    let f = fire("2026-06-01T07:00:00Z", "2026-06-01T06:59:59Z", 1, None);
    assert_eq!(payload(&spec, &f)["delay_ms"], 0);
}

#[test]
fn rrule_payload() {
    let spec = validated(
        Some("core.rruletimer"),
        r#"{"rule":"FREQ=DAILY","dtstart":"2026-01-01T09:00:00Z"}"#,
    )
    .spec;
    let f = fire(
        "2026-05-02T09:00:00Z",
        "2026-05-02T09:00:02Z",
        12,
        Some("2026-05-03T09:00:00Z"),
    );
    assert_eq!(
        payload(&spec, &f),
        json!({
            "type": "rrule",
            "fired_at": "2026-05-02T09:00:02Z",
            "scheduled_at": "2026-05-02T09:00:00Z",
            "delay_ms": 2000,
            "execution_count": 12,
            "sensor_ref": "core.timer_sensor"
        })
    );
    assert_eq!(
        keys(&spec, &f),
        [
            "type",
            "fired_at",
            "scheduled_at",
            "delay_ms",
            "execution_count",
            "sensor_ref"
        ]
    );
}

#[test]
fn payload_type_follows_the_kind_under_core_timer() {
    let cases = [
        (r#"{"type":"interval","interval":5}"#, "interval"),
        (r#"{"type":"cron","expression":"* * * * *"}"#, "cron"),
        (
            r#"{"type":"date_time","fire_at":"2026-06-01T00:00:00Z"}"#,
            "one_shot",
        ),
        (
            r#"{"type":"rrule","freq":"daily","dtstart":"2026-01-01T00:00:00Z"}"#,
            "rrule",
        ),
    ];
    for (params, kind) in cases {
        let v = validated(Some("core.timer"), params);
        assert_eq!(v.trigger_ref, "core.timer");
        let f = fire("2026-06-01T00:00:00Z", "2026-06-01T00:00:00Z", 1, None);
        assert_eq!(payload(&v.spec, &f)["type"], kind, "{params}");
    }
}

#[test]
fn next_fire_is_strictly_after_for_many_instants() {
    let specs = [
        validated(None, r#"{"interval":7}"#).spec,
        validated(None, r#"{"expression":"*/3 * * * * *"}"#).spec,
        validated(None, r#"{"expression":"0 0 2 * * *","timezone":"Europe/Berlin"}"#).spec,
        validated(None, r#"{"freq":"secondly","interval":5,"dtstart":"2026-01-01T00:00:00Z"}"#).spec,
        validated(None, r#"{"freq":"daily","by_hour":[2],"dtstart":"2026-01-01T00:00:00Z","timezone":"Europe/Berlin"}"#).spec,
    ];
    let start = utc("2026-03-28T00:00:00.5Z");
    for spec in &specs {
        let mut at = start;
        for _ in 0..50 {
            let next = next_fire(spec, start, at).unwrap().unwrap();
            assert!(next > at, "{spec}: {next} after {at}");
            at = next;
        }
        // Nanosecond boundaries.
        let next = next_fire(spec, start, at - chrono::Duration::nanoseconds(1))
            .unwrap()
            .unwrap();
        assert_eq!(next, at, "{spec}");
    }
}

/// `validate_parsed` answers as `validate` does, and its schedule is the one reading the spec
/// text back gives (the component caches it under that text): compared by their full debug
/// form, which shows every field, parsed cron patterns and RRULEs included.
fn check_validate_parsed(rule: &RuleInput, now: DateTime<Utc>) -> bool {
    let plain = validate(rule, now);
    match validate_parsed(rule, now) {
        Ok((validated, Some(spec))) => {
            assert_eq!(plain.as_ref(), Ok(&validated), "{}", rule.params);
            let back = TimerSpec::from_json(&validated.spec)
                .unwrap_or_else(|e| panic!("{}: {e}", validated.spec));
            assert_eq!(format!("{spec:?}"), format!("{back:?}"), "{}", rule.params);
            assert_eq!(spec.to_json(), validated.spec);
            true
        }
        Ok((validated, None)) => panic!("{}: no parsed spec for {}", rule.params, validated.spec),
        Err(e) => {
            assert_eq!(plain, Err(e), "{}", rule.params);
            false
        }
    }
}

#[test]
fn validate_parsed_gives_the_spec_its_text_reads_back_as() {
    let now = utc("2026-05-01T12:00:00Z");
    let cases = [
        (
            Some("core.intervaltimer"),
            r#"{"interval":90,"unit":"minutes"}"#,
        ),
        (None, r#"{"type":"interval","seconds":30,"minutes":1}"#),
        (
            Some("core.crontimer"),
            r#"{"expression":"  0 30 9 * * mon-fri ","timezone":"europe/berlin"}"#,
        ),
        (
            Some("core.crontimer"),
            r#"{"expression":"@midnight","timezone":"US/Eastern"}"#,
        ),
        (
            Some("core.crontimer"),
            r#"{"minute":"*/5","hour":"9-17","day_of_week":"0"}"#,
        ),
        (
            Some("core.datetimetimer"),
            r#"{"fire_at":"2026-06-01T09:00:00.123456789+02:00","timezone":"Asia/Kolkata"}"#,
        ),
        (
            Some("core.datetimetimer"),
            r#"{"date":"2026-06-01 09:00","timezone":"America/New_York"}"#,
        ),
        (
            Some("core.rruletimer"),
            r#"{"rule":"RRULE:freq=weekly;byday=mo,we","dtstart":"2026-01-05T08:00:00.75Z","timezone":"Europe/Berlin"}"#,
        ),
        (
            Some("core.rruletimer"),
            r#"{"freq":"minutely","interval":15,"dtstart":"2026-01-05T08:00:00Z"}"#,
        ),
        (
            Some("core.rruletimer"),
            r#"{"freq":"monthly","by_month_day":[-1],"count":500,"dtstart":"2026-01-31T23:00:00Z","timezone":"Pacific/Chatham"}"#,
        ),
    ];
    for (trigger_ref, params) in cases {
        let rule = rule(trigger_ref, params);
        assert!(
            check_validate_parsed(&rule, now),
            "{params}: {:?}",
            validate(&rule, now)
        );
    }
}

/// The same over every rule of the conformance cases (`tests/cases`), where the crate sits in
/// its workspace.
#[test]
fn validate_parsed_over_the_conformance_cases() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let (mut accepted, mut refused) = (0, 0);
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for case in cases {
            let params = case["params"].to_string();
            let rule = RuleInput {
                id: case["rule_id"].as_i64().unwrap_or(1),
                rule_ref: case["rule_ref"].as_str().unwrap_or("conformance.rule"),
                trigger_ref: case["trigger_ref"].as_str(),
                params: &params,
            };
            let now = utc(case["now"].as_str().unwrap());
            if check_validate_parsed(&rule, now) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
    }
    assert!(
        accepted > 150 && refused > 50,
        "{accepted} accepted, {refused} refused"
    );
}

/// Successive fires of validated params, through the spec text as the host uses it.
fn fires_of(trigger_ref: &str, params: &str, now: &str, n: usize) -> Vec<String> {
    let v = validate(&rule(Some(trigger_ref), params), utc(now))
        .unwrap_or_else(|e| panic!("{params}: {e}"));
    let mut at = utc(now);
    let mut out = Vec::new();
    for _ in 0..n {
        let next = next_fire(&v.spec, at, at).unwrap().expect("a next fire");
        out.push(datetime::format_utc(next));
        at = next;
    }
    out
}

#[test]
fn rrule_start_in_a_dst_gap_keeps_its_wall_time() {
    // 02:30 does not exist on 2026-03-29 in Berlin: the start is read with the offset before
    // the gap (01:30Z), and later days fire at 02:30 local (00:30Z).
    let params =
        r#"{"rule":"FREQ=DAILY","dtstart":"2026-03-29T02:30:00","timezone":"Europe/Berlin"}"#;
    assert_eq!(
        fires_of("core.rruletimer", params, "2026-03-28T12:00:00Z", 3),
        [
            "2026-03-29T01:30:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z"
        ]
    );
    let v = validate(
        &rule(Some("core.rruletimer"), params),
        utc("2026-03-28T12:00:00Z"),
    )
    .unwrap();
    assert!(
        v.spec.contains(r#""dtstart":"2026-03-29T02:30:00+01:00""#),
        "{}",
        v.spec
    );
    // The same start written with the offset before the gap; weekly, in New York.
    let params =
        r#"{"freq":"WEEKLY","dtstart":"2026-03-08T02:15:00-05:00","timezone":"America/New_York"}"#;
    assert_eq!(
        fires_of("core.rruletimer", params, "2026-03-01T00:00:00Z", 2),
        ["2026-03-08T07:15:00Z", "2026-03-15T06:15:00Z"]
    );
}

#[test]
fn fires_beyond_the_horizon_are_refused_at_validation() {
    let now = utc("2026-03-30T07:30:00Z");
    for (trigger_ref, params, field) in [
        (
            "core.datetimetimer",
            r#"{"fire_at":"5000-01-01T00:00:00Z"}"#,
            "fire_at",
        ),
        (
            "core.crontimer",
            r#"{"expression":"0 0 0 1 1 * 3100"}"#,
            "expression",
        ),
        (
            "core.rruletimer",
            r#"{"rule":"FREQ=YEARLY","dtstart":"3500-01-01T00:00:00Z"}"#,
            "dtstart",
        ),
        (
            "core.rruletimer",
            r#"{"rule":"FREQ=YEARLY;INTERVAL=1500","dtstart":"2000-01-01T00:00:00Z"}"#,
            "rule",
        ),
    ] {
        let err = validate(&rule(Some(trigger_ref), params), now).expect_err(params);
        assert_eq!(err.field.as_deref(), Some(field), "{params}: {err}");
        assert!(err.message.contains("1000 years"), "{params}: {err}");
    }
    // Just inside the horizon is fine.
    let v = validate(
        &rule(
            Some("core.datetimetimer"),
            r#"{"fire_at":"3025-01-01T00:00:00Z"}"#,
        ),
        now,
    )
    .unwrap();
    assert!(next_fire(&v.spec, now, now).unwrap().is_some());
    // A later fire beyond the horizon ends the schedule rather than failing the call.
    let v = validate(
        &rule(
            Some("core.crontimer"),
            r#"{"expression":"0 0 0 1 1 * 2027,3100"}"#,
        ),
        now,
    )
    .unwrap();
    let first = next_fire(&v.spec, now, now).unwrap().unwrap();
    assert_eq!(first, utc("2027-01-01T00:00:00Z"));
    assert_eq!(next_fire(&v.spec, now, first).unwrap(), None);
}

#[test]
fn rrule_errors_say_what_is_wrong() {
    let now = utc("2026-03-30T07:30:00Z");
    let error = |id: i64, params: &str| {
        validate(
            &RuleInput {
                id,
                rule_ref: "r",
                trigger_ref: Some("core.rruletimer"),
                params,
            },
            now,
        )
        .unwrap_err()
    };
    // No "for rule 0" for a rule without an id yet.
    let err = error(
        0,
        r#"{"rule":"FREQ=SOMETIMES","dtstart":"2026-03-01T00:00:00Z"}"#,
    );
    assert!(err.message.starts_with("Failed to parse RRULE: "), "{err}");
    let err = error(
        5,
        r#"{"rule":"FREQ=SOMETIMES","dtstart":"2026-03-01T00:00:00Z"}"#,
    );
    assert!(
        err.message
            .starts_with("Failed to parse RRULE for rule 5: "),
        "{err}"
    );
    // A rule that never matches is not "already ended", even with a future start.
    let err = error(
        5,
        r#"{"rule":"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30","dtstart":"2027-01-01T00:00:00Z"}"#,
    );
    assert_eq!(err.field.as_deref(), Some("rule"));
    assert!(err.message.contains("no occurrence at all"), "{err}");
    assert!(!err.message.contains("already ended"), "{err}");
    let err = error(
        5,
        r#"{"freq":"DAILY","count":2,"dtstart":"2026-03-01T00:00:00Z"}"#,
    );
    assert_eq!(err.field.as_deref(), Some("count"));
    assert!(err.message.contains("already ended"), "{err}");
    // UNTIL before the first match (May 2027 has no fifth Thursday): the until field.
    let err = error(
        5,
        r#"{"freq":"MONTHLY","by_day":["5TH"],"by_month":[5,12],"until":"2027-05-09T11:58:00Z","dtstart":"2027-02-02T19:38:00Z"}"#,
    );
    assert_eq!(err.field.as_deref(), Some("until"), "{err}");
    assert!(
        err.message
            .contains("no date between its start and its UNTIL matches its parts"),
        "{err}"
    );
    // UNTIL before the start, structured: the until field, and no crate wording.
    let err = error(
        5,
        r#"{"freq":"DAILY","until":"2026-05-01T00:00:00Z","dtstart":"2026-06-01T00:00:00Z"}"#,
    );
    assert_eq!(err.field.as_deref(), Some("until"), "{err}");
    assert!(err.message.contains("is before dtstart"), "{err}");
}

#[test]
fn quoted_values_are_short_and_escaped() {
    let now = utc("2026-03-30T07:30:00Z");
    let huge = format!("Mars/{}\u{1b}", "x".repeat(5000));
    for (trigger_ref, params) in [
        (
            "core.crontimer",
            json!({"expression": "0 9 * * *", "timezone": huge}),
        ),
        ("core.intervaltimer", json!({"interval": 5, "unit": huge})),
        ("core.datetimetimer", json!({"fire_at": huge})),
        (
            "core.rruletimer",
            json!({"freq": huge, "dtstart": "2026-03-01T00:00:00Z"}),
        ),
        (
            "core.rruletimer",
            json!({"rule": huge, "dtstart": "2026-03-01T00:00:00Z"}),
        ),
        ("core.crontimer", json!({"expression": huge})),
        ("core.crontimer", json!({"hour": huge})),
    ] {
        let text = params.to_string();
        let err = validate(&rule(Some(trigger_ref), &text), now).unwrap_err();
        assert!(
            err.message.chars().count() < 1000,
            "{trigger_ref}: {}",
            err.message
        );
        assert!(
            !err.message.contains('\u{1b}'),
            "{trigger_ref}: {}",
            err.message
        );
    }
}
