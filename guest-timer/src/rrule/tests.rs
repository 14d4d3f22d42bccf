use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn schedule(rule: &str, dtstart: &str, zone: &str) -> RruleSchedule {
    RruleSchedule::new(rule, utc(dtstart), zone.parse().unwrap())
        .unwrap_or_else(|e| panic!("{rule}: {e}"))
}

/// Up to `n` fires after `from`, as RFC 3339 UTC text (fewer when the rule ends).
fn fires(s: &RruleSchedule, from: &str, n: usize) -> Vec<String> {
    let mut at = utc(from);
    let mut out = Vec::new();
    for _ in 0..n {
        match s.next_after(at).unwrap() {
            Some(next) => {
                assert!(next > at);
                out.push(crate::datetime::format_utc(next));
                at = next;
            }
            None => break,
        }
    }
    out
}

/// The crate's answer iterating from dtstart, no fast-forward (DAILY and longer).
fn brute_next(s: &RruleSchedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    assert!(s.subdaily.is_none());
    let set = RRuleSet::new(s.start).rrule(s.rrule.clone());
    (&set)
        .into_iter()
        .map(|d| d.with_timezone(&Utc))
        .find(|d| *d > after)
}

fn parts(freq: &str) -> RuleParts {
    RuleParts {
        freq: freq.to_string(),
        ..RuleParts::default()
    }
}

#[test]
fn assembles_in_the_platform_order() {
    let p = RuleParts {
        freq: "monthly".into(),
        interval: Some(2),
        count: Some(5),
        by_day: vec!["mo".into(), "-1fr".into(), "+2TU".into()],
        by_month_day: vec![1, -1],
        by_month: vec![1, 6],
        by_year_day: vec![100],
        by_week_no: vec![10],
        by_hour: vec![9],
        by_minute: vec![30],
        by_second: vec![0],
        by_set_pos: vec![1],
        week_start: Some("su".into()),
        ..RuleParts::default()
    };
    assert_eq!(
        assemble(&p).unwrap(),
        "FREQ=MONTHLY;INTERVAL=2;COUNT=5;BYDAY=MO,-1FR,+2TU;BYMONTHDAY=1,-1;BYMONTH=1,6;\
         BYYEARDAY=100;BYWEEKNO=10;BYHOUR=9;BYMINUTE=30;BYSECOND=0;BYSETPOS=1;WKST=SU"
    );
    let p = RuleParts {
        until: Some(utc("2026-12-31T23:59:59+01:00")),
        ..parts("Daily")
    };
    assert_eq!(assemble(&p).unwrap(), "FREQ=DAILY;UNTIL=20261231T225959Z");
    assert_eq!(assemble(&parts("yearly")).unwrap(), "FREQ=YEARLY");
}

#[test]
fn structured_errors() {
    let err = assemble(&parts("fortnightly")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("freq"));
    assert_eq!(
        err.message,
        "Invalid 'freq' value 'fortnightly'; must be one of SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY"
    );
    let err = assemble(&RuleParts {
        count: Some(3),
        until: Some(utc("2026-12-31T00:00:00Z")),
        ..parts("DAILY")
    })
    .unwrap_err();
    assert_eq!(
        err.message,
        "'count' and 'until' are mutually exclusive (RFC 5545 §3.3.10)"
    );
    assert_eq!(err.field.as_deref(), Some("count"));
    let cases: Vec<(RuleParts, &str)> = vec![
        (
            RuleParts {
                interval: Some(0),
                ..parts("DAILY")
            },
            "interval",
        ),
        (
            RuleParts {
                interval: Some(70_000),
                ..parts("DAILY")
            },
            "interval",
        ),
        (
            RuleParts {
                count: Some(0),
                ..parts("DAILY")
            },
            "count",
        ),
        (
            RuleParts {
                by_month_day: vec![32],
                ..parts("MONTHLY")
            },
            "by_month_day",
        ),
        (
            RuleParts {
                by_month_day: vec![0],
                ..parts("MONTHLY")
            },
            "by_month_day",
        ),
        (
            RuleParts {
                by_month_day: vec![-32],
                ..parts("MONTHLY")
            },
            "by_month_day",
        ),
        (
            RuleParts {
                by_month: vec![0],
                ..parts("YEARLY")
            },
            "by_month",
        ),
        (
            RuleParts {
                by_month: vec![13],
                ..parts("YEARLY")
            },
            "by_month",
        ),
        (
            RuleParts {
                by_year_day: vec![367],
                ..parts("YEARLY")
            },
            "by_year_day",
        ),
        (
            RuleParts {
                by_week_no: vec![-54],
                ..parts("YEARLY")
            },
            "by_week_no",
        ),
        (
            RuleParts {
                by_hour: vec![24],
                ..parts("DAILY")
            },
            "by_hour",
        ),
        (
            RuleParts {
                by_minute: vec![60],
                ..parts("DAILY")
            },
            "by_minute",
        ),
        (
            RuleParts {
                by_second: vec![61],
                ..parts("DAILY")
            },
            "by_second",
        ),
        (
            RuleParts {
                by_set_pos: vec![367],
                ..parts("MONTHLY")
            },
            "by_set_pos",
        ),
        (
            RuleParts {
                by_day: vec!["XX".into()],
                ..parts("WEEKLY")
            },
            "by_day",
        ),
        (
            RuleParts {
                by_day: vec!["54MO".into()],
                ..parts("MONTHLY")
            },
            "by_day",
        ),
        (
            RuleParts {
                by_day: vec!["0MO".into()],
                ..parts("MONTHLY")
            },
            "by_day",
        ),
        (
            RuleParts {
                by_day: vec!["1".into()],
                ..parts("MONTHLY")
            },
            "by_day",
        ),
        (
            RuleParts {
                by_day: vec!["ÄMO".into()],
                ..parts("MONTHLY")
            },
            "by_day",
        ),
        (
            RuleParts {
                week_start: Some("XX".into()),
                ..parts("WEEKLY")
            },
            "week_start",
        ),
    ];
    for (p, field) in cases {
        let err = assemble(&p).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field), "{p:?}: {}", err.message);
    }
    // Bounds are inclusive.
    assert!(assemble(&RuleParts {
        by_second: vec![59],
        by_year_day: vec![-366, 366],
        ..parts("YEARLY")
    })
    .is_ok());
    // Second 60 is refused as the raw rule refuses it (the crate has no leap seconds).
    let err = assemble(&RuleParts {
        by_second: vec![60],
        ..parts("YEARLY")
    })
    .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("by_second"));
}

#[test]
fn raw_parts_are_checked_as_the_structured_fields_are() {
    let new = |rule: &str| {
        RruleSchedule::new(rule, utc("2026-01-01T00:00:00Z"), chrono_tz::UTC).unwrap_err()
    };
    assert_eq!(
        new("FREQ=MONTHLY;BYMONTHDAY=0"),
        "BYMONTHDAY=0 is invalid; expected numbers from -31 to -1 or 1 to 31"
    );
    assert!(new("FREQ=YEARLY;BYYEARDAY=0").contains("-366 to -1 or 1 to 366"));
    assert!(new("FREQ=YEARLY;BYWEEKNO=0").contains("-53 to -1 or 1 to 53"));
    assert!(new("FREQ=DAILY;BYHOUR=9;BYSETPOS=0").contains("BYSETPOS=0"));
    assert_eq!(
        new("FREQ=DAILY;BYSECOND=60"),
        "BYSECOND=60 is invalid; expected numbers from 0 to 59"
    );
    let err = new("FREQ=DAILY;UNTIL=20251201T000000Z");
    assert!(
        err.starts_with("UNTIL 2025-12-01T00:00:00Z is before dtstart 2026-01-01T00:00:00Z"),
        "{err}"
    );
    assert!(!err.contains("should not be happening"), "{err}");
    // Quoted values are short and escaped.
    let err = new(&format!("FREQ=DAILY;X{}=1", "Y".repeat(300)));
    assert!(err.chars().count() < 300, "{err}");
    let err = new("FREQ=DAILY;BYHOUR=9\u{7}");
    assert!(err.contains("\\u{7}") && !err.contains('\u{7}'), "{err}");
}

#[test]
fn parse_messages_say_what_is_accepted() {
    let new = |rule: &str| {
        RruleSchedule::new(rule, utc("2026-01-01T00:00:00Z"), chrono_tz::UTC).unwrap_err()
    };
    assert_eq!(
        new("FREQ=DAILY;COLOR=BLUE"),
        "unknown RRULE part 'COLOR'; expected FREQ, INTERVAL, COUNT, UNTIL, BYDAY, \
        BYMONTHDAY, BYMONTH, BYYEARDAY, BYWEEKNO, BYHOUR, BYMINUTE, BYSECOND, BYSETPOS or WKST"
    );
    assert_eq!(new("FREQ=DAILY;FREQ=WEEKLY"), "FREQ is given twice");
    assert_eq!(new("BYHOUR=9"), "FREQ is missing; expected one of SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY");
    assert_eq!(
        new("FREQ=WEEKLY;BYDAY=XTU"),
        "BYDAY=XTU is invalid; expected weekdays like MO, 2TU or -1FR"
    );
    assert_eq!(
        new("FREQ=DAILY;BYHOUR=24"),
        "BYHOUR=24 is invalid; expected numbers from 0 to 23"
    );
    assert_eq!(
        new("FREQ=DAILY;INTERVAL=0"),
        "INTERVAL=0 is invalid; expected a whole number from 1 to 65535"
    );
}

#[test]
fn prefix_case_and_whitespace() {
    assert_eq!(strip_prefix("  RRULE:FREQ=DAILY "), "FREQ=DAILY");
    assert_eq!(strip_prefix("rrule: FREQ=DAILY"), "FREQ=DAILY");
    assert_eq!(strip_prefix("FREQ=DAILY"), "FREQ=DAILY");
    let s = schedule(
        "rrule:freq=daily; count = 2 ;",
        "2026-01-01T09:00:00Z",
        "UTC",
    );
    assert_eq!(s.rule(), "freq=daily; count = 2 ;");
    assert_eq!(
        fires(&s, "2025-12-31T00:00:00Z", 5),
        ["2026-01-01T09:00:00Z", "2026-01-02T09:00:00Z"]
    );
}

#[test]
fn count_until_and_end() {
    let s = schedule("FREQ=DAILY;COUNT=3", "2026-01-01T09:00:00Z", "UTC");
    assert_eq!(
        fires(&s, "2026-01-01T09:00:00Z", 5),
        ["2026-01-02T09:00:00Z", "2026-01-03T09:00:00Z"]
    );
    assert_eq!(s.next_after(utc("2026-01-03T09:00:00Z")).unwrap(), None);
    let s = schedule(
        "FREQ=DAILY;UNTIL=20260105T090000Z",
        "2026-01-01T09:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2026-01-03T12:00:00Z", 5),
        ["2026-01-04T09:00:00Z", "2026-01-05T09:00:00Z"]
    );
    assert_eq!(s.next_after(utc("2030-01-01T00:00:00Z")).unwrap(), None);
    let err = RruleSchedule::new(
        "FREQ=DAILY;COUNT=3;UNTIL=20260105T090000Z",
        utc("2026-01-01T09:00:00Z"),
        chrono_tz::UTC,
    )
    .unwrap_err();
    assert_eq!(
        err,
        "'count' and 'until' are mutually exclusive (RFC 5545 §3.3.10)"
    );
}

#[test]
fn floating_and_date_until_are_read_in_the_rule_zone() {
    let berlin = "Europe/Berlin";
    let s = schedule(
        "FREQ=HOURLY;UNTIL=20260105T100000",
        "2026-01-05T06:00:00Z",
        berlin,
    );
    // 10:00 Berlin is 09:00Z.
    assert_eq!(
        fires(&s, "2026-01-05T07:30:00Z", 5),
        ["2026-01-05T08:00:00Z", "2026-01-05T09:00:00Z"]
    );
    let s = schedule("FREQ=DAILY;UNTIL=20260103", "2026-01-01T22:30:00Z", berlin);
    // 23:30 Berlin each day through 3 Jan.
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 5),
        [
            "2026-01-01T22:30:00Z",
            "2026-01-02T22:30:00Z",
            "2026-01-03T22:30:00Z"
        ]
    );
    assert!(RruleSchedule::new(
        "FREQ=DAILY;UNTIL=soon",
        utc("2026-01-01T00:00:00Z"),
        chrono_tz::UTC
    )
    .is_err());
}

#[test]
fn by_set_pos_last_weekday_of_month() {
    let s = schedule(
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        "2026-01-01T17:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-30T17:00:00Z",
            "2026-02-27T17:00:00Z",
            "2026-03-31T17:00:00Z"
        ]
    );
}

#[test]
fn weekly_with_interval_and_wkst() {
    // Every other week on Monday and Wednesday, from Monday 5 Jan 2026.
    let s = schedule(
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE",
        "2026-01-05T08:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2026-01-04T00:00:00Z", 4),
        [
            "2026-01-05T08:00:00Z",
            "2026-01-07T08:00:00Z",
            "2026-01-19T08:00:00Z",
            "2026-01-21T08:00:00Z"
        ]
    );
}

#[test]
fn leap_days_and_month_ends() {
    let s = schedule(
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        "2024-02-29T12:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2024-03-01T00:00:00Z", 2),
        ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"]
    );
    let s = schedule("FREQ=MONTHLY;BYMONTHDAY=-1", "2026-01-31T00:00:00Z", "UTC");
    assert_eq!(
        fires(&s, "2026-01-31T00:00:00Z", 3),
        [
            "2026-02-28T00:00:00Z",
            "2026-03-31T00:00:00Z",
            "2026-04-30T00:00:00Z"
        ]
    );
    // A monthly rule from the 31st skips shorter months (RFC 5545).
    let s = schedule("FREQ=MONTHLY", "2026-01-31T00:00:00Z", "UTC");
    assert_eq!(
        fires(&s, "2026-01-31T00:00:00Z", 2),
        ["2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"]
    );
    // Year rollover.
    let s = schedule(
        "FREQ=DAILY;BYHOUR=23;BYMINUTE=59",
        "2026-12-30T00:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2026-12-31T00:00:00Z", 2),
        ["2026-12-31T23:59:00Z", "2027-01-01T23:59:00Z"]
    );
}

#[test]
fn time_zones_and_dst() {
    // 09:00 Berlin every day, across the spring-forward change.
    let s = schedule("FREQ=DAILY", "2026-03-27T08:00:00Z", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-03-27T08:00:00Z", 2),
        ["2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z"]
    );
    // 02:30 Berlin on the day it does not exist: RFC 5545 reads it with the offset before
    // the gap (03:30 CEST); it does not fire twice at fall-back.
    let s = schedule("FREQ=DAILY", "2026-03-27T01:30:00Z", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-03-28T12:00:00Z", 2),
        ["2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"]
    );
    let s = schedule("FREQ=DAILY", "2026-10-23T00:30:00Z", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    // New York and Sydney keep their wall-clock time too.
    let s = schedule(
        "FREQ=WEEKLY;BYDAY=SU;BYHOUR=12;BYMINUTE=0;BYSECOND=0",
        "2026-03-01T17:00:00Z",
        "America/New_York",
    );
    assert_eq!(
        fires(&s, "2026-03-02T00:00:00Z", 2),
        ["2026-03-08T16:00:00Z", "2026-03-15T16:00:00Z"]
    );
    let s = schedule(
        "FREQ=DAILY;BYHOUR=8",
        "2026-04-03T21:00:00Z",
        "Australia/Sydney",
    );
    assert_eq!(
        fires(&s, "2026-04-03T22:00:00Z", 2),
        ["2026-04-04T22:00:00Z", "2026-04-05T22:00:00Z"]
    );
    // A dtstart inside a repeated hour is fine (the iCal text form would be ambiguous).
    let s = schedule("FREQ=HOURLY", "2026-10-25T01:30:00Z", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-10-25T01:00:00Z", 2),
        ["2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z"]
    );
}

#[test]
fn dtstart_is_whole_seconds() {
    let s = RruleSchedule::new(
        "FREQ=DAILY",
        utc("2026-01-01T09:00:00.750Z"),
        chrono_tz::UTC,
    )
    .unwrap();
    assert_eq!(s.dtstart(), utc("2026-01-01T09:00:00Z"));
    assert_eq!(
        fires(&s, "2026-01-01T08:00:00Z", 1),
        ["2026-01-01T09:00:00Z"]
    );
}

#[test]
fn refuses_other_lines_and_bad_rules() {
    for rule in [
        "",
        "RRULE:",
        "FREQ=DAILY\nDTSTART:20260101T000000Z",
        "FREQ=DAILY\r\nRDATE:20260101T000000Z",
        "DTSTART:20260101T000000Z",
        "FREQ=SOMETIMES",
        "BYHOUR=9",
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;FREQ=WEEKLY",
        "FREQ=HOURLY;BYDAY=1MO",
        "FREQ=DAILY;BYWEEKNO=3",
        "FREQ=DAILY;UNTIL=20200101T000000Z",
        "FREQ=DAILY;COLOR=BLUE",
        "FREQ=WEEKLY;BYDAY=XTU",
        "FREQ=WEEKLY;BYDAY=MO,",
        "FREQ=DAILY;BYHOUR=9,,10",
        "FREQ=DAILY;INTERVAL=-1",
        "FREQ=DAILY;BYSECOND=60",
        "FREQ=DAILY;BYMONTH=13",
        "FREQ=DAILY;=5",
        "FREQ",
        "FREQ=DAILY;UNTIL=2026-12-31",
        "FREQ=DAILY;WKST=XX",
    ] {
        assert!(
            RruleSchedule::new(rule, utc("2026-01-01T00:00:00Z"), chrono_tz::UTC).is_err(),
            "{rule:?} should be refused"
        );
    }
    assert!(RruleSchedule::new(
        &"FREQ=DAILY;".repeat(200),
        utc("2026-01-01T00:00:00Z"),
        chrono_tz::UTC
    )
    .is_err());
}

#[test]
fn fast_forward_matches_iterating_from_dtstart() {
    let rules = [
        (
            "FREQ=DAILY;INTERVAL=3;BYHOUR=2,14;BYMINUTE=30",
            "2026-01-01T00:00:00Z",
            "Europe/Berlin",
        ),
        (
            "FREQ=DAILY;BYMONTH=3,10;BYHOUR=2;BYMINUTE=30",
            "2026-01-01T00:00:00Z",
            "Australia/Sydney",
        ),
        (
            "FREQ=DAILY;BYDAY=MO,FR;BYSETPOS=1",
            "2025-06-01T06:45:00Z",
            "America/New_York",
        ),
        (
            "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,FR;WKST=SU",
            "2026-01-01T10:00:00Z",
            "America/New_York",
        ),
        (
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            "2026-01-02T16:00:00Z",
            "UTC",
        ),
        (
            "FREQ=MONTHLY;INTERVAL=5;BYMONTHDAY=31",
            "2026-01-31T08:00:00Z",
            "Europe/Berlin",
        ),
        (
            "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=9,18",
            "2026-01-01T00:00:00Z",
            "America/New_York",
        ),
        (
            "FREQ=MONTHLY;INTERVAL=2;BYDAY=-1SU;BYHOUR=2;BYMINUTE=30",
            "2025-03-30T00:30:00Z",
            "Europe/Berlin",
        ),
        (
            "FREQ=YEARLY;INTERVAL=3;BYWEEKNO=1,52;BYDAY=MO",
            "2026-01-01T00:00:00Z",
            "UTC",
        ),
        (
            "FREQ=YEARLY;INTERVAL=4",
            "2024-02-29T12:00:00Z",
            "Australia/Sydney",
        ),
        (
            "FREQ=YEARLY;BYMONTH=10;BYDAY=1SU;BYHOUR=2",
            "2020-10-04T00:00:00Z",
            "Australia/Sydney",
        ),
        (
            "FREQ=DAILY;UNTIL=20270301T000000Z",
            "2026-01-01T00:00:00Z",
            "Europe/Berlin",
        ),
    ];
    let afters = [
        "2026-01-01T00:00:00Z",
        "2026-01-07T13:14:15Z",
        "2026-03-29T00:59:59Z",
        "2026-03-29T01:00:00Z",
        "2026-04-04T15:45:00Z",
        "2026-10-04T16:00:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:15:00Z",
        "2026-11-01T05:30:00Z",
        "2027-02-28T23:59:59Z",
        "2027-07-19T04:05:06Z",
        "2031-12-31T23:59:59Z",
        "2026-12-28T12:00:00Z",
        "2027-01-01T00:00:00Z",
        "2027-01-02T12:00:00Z",
        "2025-12-29T08:00:00Z",
    ];
    for (rule, dtstart, zone) in rules {
        let s = schedule(rule, dtstart, zone);
        for after in afters {
            let after = utc(after);
            assert_eq!(
                s.next_after(after).unwrap(),
                brute_next(&s, after),
                "{rule} in {zone} after {after}"
            );
        }
    }
}

/// Sub-daily rules with INTERVAL=1 against croner's repeating (non fixed-time) jobs, which
/// also fire on real elapsed instants: an independent oracle, DST days included. (`*/60` in
/// the seconds field is second 0 written with `*`, which keeps a job with listed hours and
/// minutes repeating rather than fixed-time.)
#[test]
fn subdaily_matches_cron() {
    let pairs = [
        (
            "FREQ=MINUTELY;BYHOUR=9,17;BYDAY=MO",
            "2026-01-01T00:00:00Z",
            "0 * 9,17 * * MON",
            "UTC",
        ),
        (
            "FREQ=MINUTELY;BYHOUR=9,17;BYDAY=MO",
            "2026-01-01T00:00:00Z",
            "0 * 9,17 * * MON",
            "Europe/Berlin",
        ),
        (
            "FREQ=MINUTELY;INTERVAL=15;BYHOUR=9,10,11;BYDAY=MO,TU,WE,TH,FR",
            "2026-01-01T00:00:00Z",
            "0 */15 9-11 * * MON-FRI",
            "America/New_York",
        ),
        (
            "FREQ=HOURLY",
            "2026-01-01T00:00:00Z",
            "0 0 * * * *",
            "Europe/Berlin",
        ),
        (
            "FREQ=HOURLY;BYMINUTE=0,30",
            "2026-01-01T00:00:00Z",
            "0 0,30 * * * *",
            "America/New_York",
        ),
        (
            "FREQ=HOURLY;BYHOUR=1,2,3;BYMINUTE=15",
            "2026-01-01T00:00:00Z",
            "*/60 15 1-3 * * *",
            "Europe/Berlin",
        ),
        (
            "FREQ=HOURLY;BYHOUR=2;BYMINUTE=0,30",
            "2026-01-01T00:00:00Z",
            "*/60 0,30 2 * * *",
            "Australia/Sydney",
        ),
        (
            "FREQ=SECONDLY;BYSECOND=0,30;BYMINUTE=15;BYHOUR=1,2",
            "2026-01-01T00:00:00Z",
            "*/30 15 1,2 * * *",
            "America/New_York",
        ),
        (
            "FREQ=MINUTELY;BYMONTHDAY=-1;BYHOUR=23",
            "2026-01-01T00:00:10Z",
            "10 * 23 L * *",
            "UTC",
        ),
        (
            "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=29;BYMINUTE=0,1",
            "2026-01-01T00:00:00Z",
            "0 0,1 * 29 2 *",
            "UTC",
        ),
    ];
    let afters = [
        "2026-01-01T00:00:00Z",
        "2026-03-07T23:00:00Z",
        "2026-03-28T23:00:00Z",
        "2026-04-04T13:00:00Z",
        "2026-10-03T14:00:00Z",
        "2026-10-24T22:00:00Z",
        "2026-10-31T23:00:00Z",
        "2026-12-31T20:00:00Z",
    ];
    for (rule, dtstart, cron, zone) in pairs {
        let s = schedule(rule, dtstart, zone);
        let c = crate::cron::CronSchedule::new(cron, zone.parse().unwrap()).unwrap();
        for after in afters {
            let mut at_r = utc(after);
            let mut at_c = utc(after);
            for i in 0..6 {
                let r = s.next_after(at_r).unwrap();
                let expected = c.next_after(at_c).unwrap();
                assert_eq!(
                    r, expected,
                    "{rule} vs {cron} in {zone}, fire {i} after {after}"
                );
                at_r = r.unwrap();
                at_c = expected.unwrap();
            }
        }
    }
}

#[test]
fn subdaily_interval_stays_on_its_grid() {
    // Every 7 minutes during hour 9 (UTC): the grid from dtstart is kept across days, where
    // the crate would restart it at 09:00 each day.
    let s = schedule(
        "FREQ=MINUTELY;INTERVAL=7;BYHOUR=9",
        "2026-01-05T09:00:00Z",
        "UTC",
    );
    let start = utc("2026-01-05T09:00:00Z");
    let mut at = start - chrono::Duration::seconds(1);
    let mut per_day = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let next = s.next_after(at).unwrap().unwrap();
        assert_eq!((next - start).num_seconds() % 420, 0, "{next}");
        assert_eq!(next.format("%H").to_string(), "09");
        *per_day.entry(next.date_naive()).or_insert(0) += 1;
        at = next;
    }
    assert_eq!(
        per_day[&chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()],
        9
    ); // 09:00 … 09:56
    assert_eq!(
        s.next_after(utc("2026-01-05T09:56:00Z")).unwrap(),
        Some(utc("2026-01-06T09:02:00Z"))
    );
}

#[test]
fn subdaily_across_dst_fires_on_elapsed_time() {
    // Berlin fall-back: the 02:00 hour happens twice, both fire; spring-forward: none.
    let s = schedule(
        "FREQ=HOURLY;BYHOUR=2",
        "2026-01-01T01:00:00Z",
        "Europe/Berlin",
    );
    assert_eq!(
        fires(&s, "2026-10-24T12:00:00Z", 3),
        [
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-26T01:00:00Z"
        ]
    );
    assert_eq!(
        fires(&s, "2026-03-28T12:00:00Z", 1),
        ["2026-03-30T00:00:00Z"]
    );
    // Plain HOURLY: one hour apart in real time through both changes.
    let s = schedule("FREQ=HOURLY", "2026-01-01T00:00:00Z", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-03-28T23:30:00Z", 3),
        [
            "2026-03-29T00:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00Z"
        ]
    );
    // A dtstart in the second pass of a repeated hour is its own first occurrence.
    let s = schedule("FREQ=HOURLY", "2026-10-25T01:30:00Z", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-10-25T01:00:00Z", 2),
        ["2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z"]
    );
    // Zones with half-hour offsets keep local hours.
    let s = schedule(
        "FREQ=HOURLY;BYHOUR=9;BYMINUTE=0",
        "2026-01-01T00:00:00Z",
        "Asia/Kolkata",
    );
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 1),
        ["2026-01-01T03:30:00Z"]
    );
}

#[test]
fn subdaily_count_until_and_set_pos() {
    let s = schedule(
        "FREQ=SECONDLY;INTERVAL=10;COUNT=3",
        "2026-01-01T00:00:05Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2025-12-31T00:00:00Z", 5),
        [
            "2026-01-01T00:00:05Z",
            "2026-01-01T00:00:15Z",
            "2026-01-01T00:00:25Z"
        ]
    );
    let s = schedule(
        "FREQ=MINUTELY;INTERVAL=30;UNTIL=20260101T013000Z",
        "2026-01-01T00:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 5),
        [
            "2026-01-01T00:30:00Z",
            "2026-01-01T01:00:00Z",
            "2026-01-01T01:30:00Z"
        ]
    );
    // COUNT counts only what passes the filters, from dtstart on.
    let s = schedule(
        "FREQ=HOURLY;BYHOUR=9;BYDAY=MO;COUNT=2",
        "2026-01-01T09:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2025-12-31T00:00:00Z", 5),
        ["2026-01-05T09:00:00Z", "2026-01-12T09:00:00Z"]
    );
    // BYSETPOS picks within each period: the last of the expanded seconds of each minute.
    let s = schedule(
        "FREQ=MINUTELY;INTERVAL=20;BYSECOND=10,20,30;BYSETPOS=-1",
        "2026-01-01T00:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 2),
        ["2026-01-01T00:00:30Z", "2026-01-01T00:20:30Z"]
    );
    // BYYEARDAY counts from either end of the year.
    let s = schedule(
        "FREQ=HOURLY;BYYEARDAY=1,-1;BYHOUR=12;BYMINUTE=5",
        "2026-01-01T00:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-01T12:05:00Z",
            "2026-12-31T12:05:00Z",
            "2027-01-01T12:05:00Z"
        ]
    );
    // Defaults come from dtstart: HOURLY keeps its minute and second.
    let s = schedule("FREQ=HOURLY;INTERVAL=2", "2026-01-01T00:17:42Z", "UTC");
    assert_eq!(
        fires(&s, "2026-01-01T00:17:42Z", 2),
        ["2026-01-01T02:17:42Z", "2026-01-01T04:17:42Z"]
    );
}

#[test]
fn old_dtstart_secondly_is_fast() {
    let s = schedule("FREQ=SECONDLY;INTERVAL=3", "2016-01-01T00:00:01Z", "UTC");
    let started = std::time::Instant::now();
    let after = utc("2026-06-15T12:00:00Z");
    // 2016-01-01T00:00:01Z is 1451606401; (1781524800 - 1451606401) mod 3 = 2, so the next
    // tick is one second on.
    assert_eq!(
        s.next_after(after).unwrap(),
        Some(utc("2026-06-15T12:00:01Z"))
    );
    assert!(
        started.elapsed() < std::time::Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn count_rules_far_behind_hit_the_scan_limit() {
    let s = schedule(
        "FREQ=SECONDLY;COUNT=4000000000",
        "2016-01-01T00:00:00Z",
        "UTC",
    );
    let err = s.next_after(utc("2026-01-01T00:00:00Z")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("rule"));
    assert!(
        err.message.contains("within 200000 steps"),
        "{}",
        err.message
    );
    // Through the crate (DAILY and longer) the occurrence cap applies.
    let s = schedule("FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23;COUNT=4000000", "1990-01-01T00:00:00Z", "UTC");
    let err = s.next_after(utc("2026-01-01T00:00:00Z")).unwrap_err();
    assert!(
        err.message.contains("move 'dtstart' closer"),
        "{}",
        err.message
    );
}

#[test]
fn impossible_rules_end_instead_of_looping() {
    // Sub-daily: the step budget runs out, which is an error (not "ended").
    for rule in [
        "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=SECONDLY;INTERVAL=2;BYSECOND=1",
    ] {
        let s = schedule(rule, "2026-01-01T00:00:00Z", "UTC");
        let started = std::time::Instant::now();
        let err = s.next_after(utc("2026-01-01T00:00:00Z")).unwrap_err();
        assert!(
            err.message.contains("may never match"),
            "{rule}: {}",
            err.message
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{rule}: {:?}",
            started.elapsed()
        );
    }
    // The crate's loop limit ends the others.
    let s = schedule(
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
        "2026-01-01T00:00:00Z",
        "UTC",
    );
    let started = std::time::Instant::now();
    assert_eq!(s.next_after(utc("2026-01-01T00:00:00Z")).unwrap(), None);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn set_position_picks_from_whole_periods_after_a_skip() {
    // Restarting mid-week must not make a partial week for BYSETPOS to pick from.
    let s = schedule(
        "FREQ=WEEKLY;BYDAY=MO,FR;BYSETPOS=1",
        "2026-03-04T09:00:00Z",
        "UTC",
    );
    assert_eq!(
        fires(&s, "2026-03-19T12:00:00Z", 2),
        ["2026-03-23T09:00:00Z", "2026-03-30T09:00:00Z"]
    );
    // The first week runs from dtstart on (as python-dateutil and the crate count it).
    assert_eq!(
        fires(&s, "2026-03-04T10:00:00Z", 1),
        ["2026-03-06T09:00:00Z"]
    );
    // Last of the week, WKST=SU, every other week, in a zone.
    let s = schedule(
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=SU,WE,SA;BYSETPOS=-1;WKST=SU",
        "2026-01-07T15:00:00Z",
        "America/New_York",
    );
    for after in [
        "2026-02-05T12:00:00Z",
        "2026-02-08T12:00:00Z",
        "2026-02-13T00:00:00Z",
    ] {
        assert_eq!(
            s.next_after(utc(after)).unwrap(),
            brute_next(&s, utc(after)),
            "{after}"
        );
    }
    // DAILY: restarting mid-day must not drop the day's first hour from BYSETPOS.
    let s = schedule(
        "FREQ=DAILY;BYHOUR=8,17;BYSETPOS=1",
        "2026-03-02T08:00:00Z",
        "Europe/Berlin",
    );
    assert_eq!(
        fires(&s, "2026-03-19T12:00:00Z", 2),
        ["2026-03-20T07:00:00Z", "2026-03-21T07:00:00Z"]
    );
    for after in ["2026-03-02T08:30:00Z", "2026-03-19T12:00:00Z"] {
        assert_eq!(
            s.next_after(utc(after)).unwrap(),
            brute_next(&s, utc(after)),
            "{after}"
        );
    }
}

#[test]
fn ordinal_weekdays_follow_rfc_5545() {
    for rule in [
        "FREQ=WEEKLY;BYDAY=1MO",
        "FREQ=DAILY;BYDAY=-1FR",
        "FREQ=HOURLY;BYDAY=2TU",
        "FREQ=MONTHLY;BYDAY=6MO",
        "FREQ=MONTHLY;BYDAY=-6MO",
        "FREQ=YEARLY;BYDAY=54MO",
        "FREQ=YEARLY;BYMONTH=3;BYDAY=-6SU",
        "FREQ=YEARLY;BYWEEKNO=10;BYDAY=1MO",
        "FREQ=MONTHLY;BYDAY=-5MO,1TU",
        "FREQ=MONTHLY;BYDAY=-5MO;BYMONTHDAY=1",
    ] {
        let err =
            RruleSchedule::new(rule, utc("2026-03-01T09:00:00Z"), chrono_tz::UTC).expect_err(rule);
        assert!(err.contains("BYDAY"), "{rule}: {err}");
    }
    // −5 (MONTHLY) and −53 (YEARLY) are as valid as 5 and 53.
    let s = schedule("FREQ=MONTHLY;BYDAY=-5MO", "2026-03-01T09:00:00Z", "UTC");
    assert_eq!(
        fires(&s, "2026-03-26T12:00:00Z", 2),
        ["2026-06-01T09:00:00Z", "2026-08-03T09:00:00Z"]
    );
    let s = schedule(
        "FREQ=MONTHLY;BYDAY=-5FR,-5SA",
        "2026-01-01T18:00:00Z",
        "Europe/Berlin",
    );
    assert_eq!(
        fires(&s, "2026-02-01T00:00:00Z", 3),
        [
            "2026-05-01T17:00:00Z",
            "2026-05-02T17:00:00Z",
            "2026-07-03T17:00:00Z"
        ]
    );
    let s = schedule("FREQ=YEARLY;BYDAY=-53MO", "2023-01-01T09:00:00Z", "UTC");
    assert_eq!(
        fires(&s, "2023-06-01T00:00:00Z", 2),
        ["2024-01-01T09:00:00Z", "2029-01-01T09:00:00Z"]
    );
    let s = schedule("FREQ=YEARLY;BYDAY=53MO", "2023-01-01T09:00:00Z", "UTC");
    assert_eq!(
        fires(&s, "2023-06-01T00:00:00Z", 2),
        ["2024-12-30T09:00:00Z", "2029-12-31T09:00:00Z"]
    );
}

#[test]
fn crate_errors_are_said_plainly() {
    let new = |rule: &str| {
        RruleSchedule::new(rule, utc("2026-01-01T00:00:00Z"), chrono_tz::UTC).unwrap_err()
    };
    assert!(new("FREQ=DAILY;BYWEEKNO=3").starts_with("BYWEEKNO cannot be used with FREQ=DAILY"));
    assert!(new("FREQ=WEEKLY;BYMONTHDAY=3").contains("BYMONTHDAY not with WEEKLY"));
    assert!(new("FREQ=MONTHLY;BYMONTHDAY=1;BYSETPOS=40").contains("BYSETPOS=40"));
}
