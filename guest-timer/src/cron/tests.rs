use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn schedule(expression: &str, zone: &str) -> CronSchedule {
    CronSchedule::new(expression, zone.parse().unwrap())
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
}

/// The next `n` fires after `from`, as RFC 3339 UTC text.
fn fires(expression: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    let s = schedule(expression, zone);
    let mut at = utc(from);
    let mut out = Vec::new();
    for _ in 0..n {
        let next = s.next_after(at).unwrap().expect("a next fire");
        assert!(next > at);
        out.push(crate::datetime::format_utc(next));
        at = next;
    }
    out
}

fn next(expression: &str, from: &str) -> String {
    fires(expression, "UTC", from, 1).remove(0)
}

#[test]
fn field_counts() {
    // 5 fields: minute level, second 0.
    assert_eq!(
        next("*/15 * * * *", "2026-05-01T10:07:31Z"),
        "2026-05-01T10:15:00Z"
    );
    // 6 fields: seconds first (the platform's format).
    assert_eq!(
        next("*/10 * * * * *", "2026-05-01T10:00:05Z"),
        "2026-05-01T10:00:10Z"
    );
    assert_eq!(
        next("0 30 9 * * *", "2026-05-01T10:00:00Z"),
        "2026-05-02T09:30:00Z"
    );
    // 7 fields: trailing year.
    assert_eq!(
        next("0 0 0 1 1 * 2030", "2026-05-01T10:00:00Z"),
        "2030-01-01T00:00:00Z"
    );
    let past = schedule("0 0 0 1 1 * 2020", "UTC");
    assert_eq!(past.next_after(utc("2026-05-01T10:00:00Z")).unwrap(), None);
}

#[test]
fn strictly_after_with_subseconds() {
    assert_eq!(
        next("*/10 * * * * *", "2026-05-01T10:00:09.5Z"),
        "2026-05-01T10:00:10Z"
    );
    assert_eq!(
        next("*/10 * * * * *", "2026-05-01T10:00:10Z"),
        "2026-05-01T10:00:20Z"
    );
    assert_eq!(
        next("*/10 * * * * *", "2026-05-01T10:00:10.000000001Z"),
        "2026-05-01T10:00:20Z"
    );
    assert_eq!(
        next("* * * * * *", "2026-05-01T10:00:10.999Z"),
        "2026-05-01T10:00:11Z"
    );
}

#[test]
fn macros() {
    let from = "2026-05-01T10:00:00Z"; // a Friday
    assert_eq!(next("@yearly", from), "2027-01-01T00:00:00Z");
    assert_eq!(next("@annually", from), "2027-01-01T00:00:00Z");
    assert_eq!(next("@monthly", from), "2026-06-01T00:00:00Z");
    assert_eq!(next("@weekly", from), "2026-05-03T00:00:00Z");
    assert_eq!(next("@daily", from), "2026-05-02T00:00:00Z");
    assert_eq!(next("@midnight", from), "2026-05-02T00:00:00Z");
    assert_eq!(next("@MIDNIGHT", from), "2026-05-02T00:00:00Z");
    assert_eq!(next("@hourly", from), "2026-05-01T11:00:00Z");
    // The expression is kept as written.
    assert_eq!(schedule(" @midnight ", "UTC").expression(), "@midnight");
}

#[test]
fn lists_ranges_steps_names() {
    assert_eq!(
        fires("0 10-40/15 * * * *", "UTC", "2026-05-01T10:00:00Z", 3),
        [
            "2026-05-01T10:10:00Z",
            "2026-05-01T10:25:00Z",
            "2026-05-01T10:40:00Z"
        ]
    );
    assert_eq!(
        fires("0 9 * * mon,Wed,FRI", "UTC", "2026-05-01T10:00:00Z", 3),
        [
            "2026-05-04T09:00:00Z",
            "2026-05-06T09:00:00Z",
            "2026-05-08T09:00:00Z"
        ]
    );
    assert_eq!(
        next("0 0 1 jul *", "2026-05-01T10:00:00Z"),
        "2026-07-01T00:00:00Z"
    );
    // Wrapping ranges are not cron.
    assert!(CronSchedule::new("0 0 1 Dec-Jan *", chrono_tz::UTC).is_err());
    // Quartz-style steps without a range (sloppy ranges).
    assert_eq!(
        fires("0/20 * * * *", "UTC", "2026-05-01T10:00:00Z", 3),
        [
            "2026-05-01T10:20:00Z",
            "2026-05-01T10:40:00Z",
            "2026-05-01T11:00:00Z"
        ]
    );
    // `?` in a day field is `*`.
    assert_eq!(
        next("0 0 12 ? * MON", "2026-05-01T10:00:00Z"),
        "2026-05-04T12:00:00Z"
    );
}

#[test]
fn weekday_numbers_zero_and_seven_are_sunday() {
    let from = "2026-01-01T00:00:00Z"; // a Thursday
    assert_eq!(next("0 0 * * 0", from), "2026-01-04T00:00:00Z");
    assert_eq!(next("0 0 * * 7", from), "2026-01-04T00:00:00Z");
    assert_eq!(next("0 0 * * SUN", from), "2026-01-04T00:00:00Z");
    assert_eq!(next("0 0 * * 1", from), "2026-01-05T00:00:00Z");
    assert_eq!(next("0 0 * * 6-7", from), "2026-01-03T00:00:00Z");
    assert_eq!(
        next("0 0 * * FRI-SUN", "2026-01-03T12:00:00Z"),
        "2026-01-04T00:00:00Z"
    );
}

#[test]
fn dom_and_dow_are_ored_unless_plus() {
    // 13th or any Friday: Friday 2 Jan comes first.
    assert_eq!(
        fires("0 0 13 * FRI", "UTC", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-02T00:00:00Z",
            "2026-01-09T00:00:00Z",
            "2026-01-13T00:00:00Z"
        ]
    );
    // Only one restricted: that one alone.
    assert_eq!(
        next("0 0 13 * *", "2026-01-01T00:00:00Z"),
        "2026-01-13T00:00:00Z"
    );
    assert_eq!(
        next("0 0 * * FRI", "2026-01-01T00:00:00Z"),
        "2026-01-02T00:00:00Z"
    );
    // croner's `+` asks for both: Friday the 13th.
    assert_eq!(
        next("0 0 13 * +FRI", "2026-01-01T00:00:00Z"),
        "2026-02-13T00:00:00Z"
    );
}

#[test]
fn last_nearest_weekday_and_nth() {
    assert_eq!(
        next("0 0 L * *", "2026-02-01T00:00:00Z"),
        "2026-02-28T00:00:00Z"
    );
    assert_eq!(
        next("0 0 L * *", "2028-02-01T00:00:00Z"),
        "2028-02-29T00:00:00Z"
    );
    assert_eq!(
        next("0 0 L * *", "2026-04-30T00:00:00Z"),
        "2026-05-31T00:00:00Z"
    );
    // 15 Aug 2026 is a Saturday: the Friday before. 15 Mar 2026 is a Sunday: the Monday after.
    assert_eq!(
        next("0 0 15W * *", "2026-08-01T00:00:00Z"),
        "2026-08-14T00:00:00Z"
    );
    assert_eq!(
        next("0 0 15W * *", "2026-03-01T00:00:00Z"),
        "2026-03-16T00:00:00Z"
    );
    // 1 Aug 2026 is a Saturday: W does not leave the month, so Monday 3 Aug.
    assert_eq!(
        next("0 0 1W * *", "2026-07-31T00:00:00Z"),
        "2026-08-03T00:00:00Z"
    );
    // Last weekday: 31 Jan 2026 is a Saturday.
    assert_eq!(
        next("0 0 LW * *", "2026-01-01T00:00:00Z"),
        "2026-01-30T00:00:00Z"
    );
    // n-th weekday.
    assert_eq!(
        next("0 0 * * 5#2", "2026-01-01T00:00:00Z"),
        "2026-01-09T00:00:00Z"
    );
    assert_eq!(
        next("0 0 * * MON#1", "2026-01-06T00:00:00Z"),
        "2026-02-02T00:00:00Z"
    );
    assert_eq!(
        next("0 0 * * 5#L", "2026-01-01T00:00:00Z"),
        "2026-01-30T00:00:00Z"
    );
    assert_eq!(
        next("0 0 * * 5L", "2026-01-01T00:00:00Z"),
        "2026-01-30T00:00:00Z"
    );
    assert_eq!(
        next("0 0 * * 0#5", "2026-01-01T00:00:00Z"),
        "2026-03-29T00:00:00Z"
    );
}

#[test]
fn month_ends_leap_days_and_year_rollover() {
    // 31st skips 30-day months and February.
    assert_eq!(
        fires("0 0 31 * *", "UTC", "2026-01-31T00:00:00Z", 3),
        [
            "2026-03-31T00:00:00Z",
            "2026-05-31T00:00:00Z",
            "2026-07-31T00:00:00Z"
        ]
    );
    assert_eq!(
        next("0 0 30 * *", "2026-01-30T00:00:00Z"),
        "2026-03-30T00:00:00Z"
    );
    // Leap day, across the non-leap year 2100.
    assert_eq!(
        next("0 0 29 2 *", "2026-01-01T00:00:00Z"),
        "2028-02-29T00:00:00Z"
    );
    assert_eq!(
        next("0 0 29 2 *", "2096-03-01T00:00:00Z"),
        "2104-02-29T00:00:00Z"
    );
    // Year rollover.
    assert_eq!(
        next("59 23 31 12 *", "2026-12-31T23:59:00Z"),
        "2027-12-31T23:59:00Z"
    );
    assert_eq!(
        next("0 0 1 1 *", "2026-12-31T23:59:59Z"),
        "2027-01-01T00:00:00Z"
    );
    assert_eq!(
        next("* * * * * *", "2026-12-31T23:59:59Z"),
        "2027-01-01T00:00:00Z"
    );
    // A leap day on a Monday, with AND: rare but real.
    assert_eq!(
        next("0 0 29 2 +MON", "2026-01-01T00:00:00Z"),
        "2044-02-29T00:00:00Z"
    );
}

#[test]
fn never_firing_expressions_are_refused_quickly() {
    for expression in [
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
        "0 0 31 2 +MON",
        "0 0 0 30 2 * 2030",
        "0 0 0 31 6 ?",
    ] {
        let started = std::time::Instant::now();
        let err = CronSchedule::new(expression, chrono_tz::UTC).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("expression"));
        assert!(
            err.message.contains("never fires"),
            "{expression}: {}",
            err.message
        );
        assert!(
            started.elapsed() < std::time::Duration::from_millis(200),
            "{expression} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn invalid_expressions() {
    for (expression, says) in [
        ("", &["empty", "expected 5 fields"][..]),
        ("   ", &["empty"]),
        ("* * *", &["3 fields", "expected 5 fields", "@daily"]),
        ("* * * * * * * *", &["8 fields", "expected 5 fields"]),
        ("61 * * * *", &["minute field '61'", "out of range 0-59"]),
        ("* 24 * * *", &["hour field '24'", "0-23"]),
        ("0 0 32 * *", &["day-of-month field '32'", "1-31"]),
        ("0 0 * 13 *", &["month field '13'", "JAN-DEC"]),
        ("@sometimes", &["unknown macro", "@midnight"]),
        ("0 0 * * MOO", &["day-of-week field 'MOO'", "SUN-SAT"]),
        (
            "0 0 * * MONDAY",
            &["day-of-week field 'MONDAY'", "three-letter"],
        ),
        ("a b c d e", &["minute field 'a'", "not a number"]),
        // Names only where they belong.
        ("0 0 * MON *", &["month field 'MON'", "not a month"]),
        ("0 0 JAN * *", &["day-of-month field 'JAN'", "not a number"]),
        ("0 0 * * JAN", &["day-of-week field 'JAN'"]),
        // Suffixes are not mixed, lists have no empty items.
        ("0 0 * * 5#3L", &["'#3L'", "k from 1 to 5"]),
        ("0 1,,2 * * *", &["hour field '1,,2'", "empty list item"]),
        ("0 ,1 * * *", &["empty list item"]),
        ("0 1, * * *", &["empty list item"]),
        // Reversed ranges say so.
        ("0 5-1 * * *", &["hour field '5-1'", "reversed range"]),
        (
            "0 0 1 DEC-JAN *",
            &["month field 'DEC-JAN'", "reversed range"],
        ),
        // Six fields put seconds first.
        (
            "0 0 29 2 * *",
            &["hour field '29'", "with 6 fields the first is the second"],
        ),
        ("0 0 * * L", &["'L' alone", "5L"]),
        ("*/0 * * * *", &["step '/0'"]),
        ("0 ? * * *", &["hour field '?'", "only for the day fields"]),
        ("0 0 31W * *", &[]),
    ] {
        let Err(err) = CronSchedule::new(expression, chrono_tz::UTC) else {
            if says.is_empty() {
                continue;
            }
            panic!("{expression} was accepted");
        };
        assert_eq!(err.field.as_deref(), Some("expression"), "{expression}");
        for part in says {
            assert!(err.message.contains(part), "{expression}: {}", err.message);
        }
        assert!(
            !err.message.contains("@yearly")
                || !(5..=7).contains(&expression.split_whitespace().count()),
            "{expression}: macros listed without cause: {}",
            err.message
        );
    }
    let err = CronSchedule::new(&"1,".repeat(400), chrono_tz::UTC).unwrap_err();
    assert!(err.message.chars().count() < 400, "{}", err.message);
    let err = CronSchedule::new("0 0 * *\u{1b} *", chrono_tz::UTC).unwrap_err();
    assert!(!err.message.contains('\u{1b}'), "{}", err.message);
}

#[test]
fn accepted_syntax_still_parses() {
    for expression in [
        "0 0 * * 5#L",
        "0 0 * * FRI-SUN",
        "0 0 * * +MON#1",
        "0 0 1 JAN,jul *",
        "0 /5 * * * *",
        "0 0/5 * * * *",
        "0 10-40/5 9 * * *",
        "0 0 LW * *",
        "0 0 15W * *",
        "0 0 ? * 7L",
        "*/15 */2 * * *",
        "0 0 0 1 1 ? 2027-2029",
    ] {
        schedule(expression, "UTC");
    }
}

// ----- daylight saving, three zones -------------------------------------------------

#[test]
fn berlin_spring_forward() {
    // 29 Mar 2026: 02:00 CET → 03:00 CEST (01:00Z). 02:30 does not exist.
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 3),
        [
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z"
        ]
    );
    // A repeating job sees no gap: every 30 minutes of real time.
    assert_eq!(
        fires("0 */30 * * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 4),
        [
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-29T02:00:00Z"
        ]
    );
}

#[test]
fn berlin_fall_back() {
    // 25 Oct 2026: 03:00 CEST → 02:00 CET (01:00Z). 02:30 happens twice; fires at the first.
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    // Asked from inside the repeated hour, after the first 02:30: no second fire that day.
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2026-10-25T00:45:00Z", 1),
        ["2026-10-26T01:30:00Z"]
    );
    // A repeating job fires on real elapsed instants through both passes.
    assert_eq!(
        fires("0 */30 * * * *", "Europe/Berlin", "2026-10-24T23:00:00Z", 6),
        [
            "2026-10-24T23:30:00Z",
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T02:00:00Z"
        ]
    );
}

#[test]
fn new_york_spring_forward() {
    // 8 Mar 2026: 02:00 EST → 03:00 EDT (07:00Z).
    assert_eq!(
        fires("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2),
        ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    );
    // Hourly: 01:00 EST then 03:00 EDT, one real hour apart.
    assert_eq!(
        fires("0 * * * *", "America/New_York", "2026-03-08T05:30:00Z", 3),
        [
            "2026-03-08T06:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z"
        ]
    );
}

#[test]
fn new_york_fall_back() {
    // 1 Nov 2026: 02:00 EDT → 01:00 EST (06:00Z). 01:30 happens twice.
    assert_eq!(
        fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
    // Hourly fires at both 01:00s.
    assert_eq!(
        fires("0 * * * *", "America/New_York", "2026-11-01T04:30:00Z", 3),
        [
            "2026-11-01T05:00:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T07:00:00Z"
        ]
    );
    // With seconds and minutes fixed but every hour: a repeating job, both passes.
    assert_eq!(
        fires(
            "15 30 * * * *",
            "America/New_York",
            "2026-11-01T05:00:00Z",
            2
        ),
        ["2026-11-01T05:30:15Z", "2026-11-01T06:30:15Z"]
    );
}

#[test]
fn sydney_spring_forward() {
    // 4 Oct 2026: 02:00 AEST → 03:00 AEDT (3 Oct 16:00Z).
    assert_eq!(
        fires("30 2 * * *", "Australia/Sydney", "2026-10-03T00:00:00Z", 2),
        ["2026-10-03T16:00:00Z", "2026-10-04T15:30:00Z"]
    );
    // A job repeating inside the missing hour has nothing to fire that day.
    assert_eq!(
        fires(
            "*/15 2 * * *",
            "Australia/Sydney",
            "2026-10-03T15:00:00Z",
            1
        ),
        ["2026-10-04T15:00:00Z"]
    );
}

#[test]
fn sydney_fall_back() {
    // 5 Apr 2026: 03:00 AEDT → 02:00 AEST (4 Apr 16:00Z). 02:30 happens twice.
    assert_eq!(
        fires("30 2 * * *", "Australia/Sydney", "2026-04-04T00:00:00Z", 2),
        ["2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"]
    );
    assert_eq!(
        fires(
            "*/30 2 * * *",
            "Australia/Sydney",
            "2026-04-04T14:00:00Z",
            5
        ),
        [
            "2026-04-04T15:00:00Z",
            "2026-04-04T15:30:00Z",
            "2026-04-04T16:00:00Z",
            "2026-04-04T16:30:00Z",
            "2026-04-05T16:00:00Z"
        ]
    );
}

#[test]
fn fixed_lists_and_ranges_follow_the_fixed_time_rule() {
    // Lists, ranges and list-stepped values count as fixed local times, like single values.
    for expression in ["30 2,14 * * *", "0 30 2,14 * * *"] {
        assert_eq!(
            fires(expression, "Europe/Berlin", "2026-03-28T22:00:00Z", 2),
            ["2026-03-29T01:00:00Z", "2026-03-29T12:30:00Z"],
            "{expression}"
        );
        assert_eq!(
            fires(expression, "Europe/Berlin", "2026-10-24T22:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-25T13:30:00Z"],
            "{expression}"
        );
    }
    // Two fixed times in one gap fire once; so does 03:00, the gap's end.
    assert_eq!(
        fires(
            "0,30 2-3 * * *",
            "America/New_York",
            "2026-03-08T05:00:00Z",
            3
        ),
        [
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:30:00Z",
            "2026-03-09T06:00:00Z"
        ]
    );
    // Asked from inside the second pass of a repeated hour: nothing more in it.
    assert_eq!(
        fires(
            "0 15,45 1 * * *",
            "America/New_York",
            "2026-11-01T06:20:00Z",
            1
        ),
        ["2026-11-02T06:15:00Z"]
    );
    // A step without `*` is fixed too (`0/20`), while `*/20` is not.
    assert_eq!(
        fires(
            "0/20 2 * * *",
            "Australia/Sydney",
            "2026-10-03T15:00:00Z",
            2
        ),
        ["2026-10-03T16:00:00Z", "2026-10-04T15:00:00Z"]
    );
    assert_eq!(
        fires(
            "*/20 2 * * *",
            "Australia/Sydney",
            "2026-10-03T15:00:00Z",
            1
        ),
        ["2026-10-04T15:00:00Z"]
    );
    assert!(is_fixed_time("@daily") && !is_fixed_time("@hourly"));
    assert!(is_fixed_time("5 4 * * sun") && !is_fixed_time("* 4 * * *"));
    assert!(!is_fixed_time("0 /5 4 * * *"));
}

// ----- StackStorm CronTimer fields --------------------------------------------------

fn stackstorm(f: impl FnOnce(&mut StackStormFields)) -> Result<String, ParamError> {
    let mut fields = StackStormFields::default();
    f(&mut fields);
    assemble_stackstorm(&fields)
}

fn some(text: &str) -> Option<String> {
    Some(text.to_string())
}

#[test]
fn stackstorm_defaults_follow_apscheduler() {
    assert_eq!(stackstorm(|f| f.hour = some("9")).unwrap(), "0 0 9 * * * *");
    assert_eq!(
        stackstorm(|f| f.minute = some("*/5")).unwrap(),
        "0 */5 * * * * *"
    );
    assert_eq!(
        stackstorm(|f| f.second = some("30")).unwrap(),
        "30 * * * * * *"
    );
    assert_eq!(
        stackstorm(|f| f.month = some("6")).unwrap(),
        "0 0 0 1 6 * *"
    );
    assert_eq!(
        stackstorm(|f| f.year = some("2030")).unwrap(),
        "0 0 0 1 1 * 2030"
    );
    assert_eq!(
        stackstorm(|f| f.day = some("last")).unwrap(),
        "0 0 0 L * * *"
    );
    assert_eq!(
        stackstorm(|f| {
            f.day_of_week = some("mon-fri");
            f.hour = some("9");
            f.minute = some("30");
        })
        .unwrap(),
        "0 30 9 * * MON-FRI *"
    );
}

#[test]
fn stackstorm_weekdays_count_from_monday() {
    assert_eq!(
        stackstorm(|f| f.day_of_week = some("0")).unwrap(),
        "0 0 0 * * MON *"
    );
    assert_eq!(
        stackstorm(|f| f.day_of_week = some("6")).unwrap(),
        "0 0 0 * * SUN *"
    );
    assert_eq!(
        stackstorm(|f| f.day_of_week = some("5-6")).unwrap(),
        "0 0 0 * * SAT-SUN *"
    );
    assert_eq!(
        stackstorm(|f| f.day_of_week = some("0,2,4")).unwrap(),
        "0 0 0 * * MON,WED,FRI *"
    );
    assert_eq!(
        stackstorm(|f| f.day_of_week = some("*/2")).unwrap(),
        "0 0 0 * * MON,WED,FRI,SUN *"
    );
    assert_eq!(
        stackstorm(|f| f.day_of_week = some("mon-fri/2")).unwrap(),
        "0 0 0 * * MON-FRI/2 *"
    );
    for bad in ["7", "-1", "monday", "1st mon", "mon#1", "0-", "*-1", "*/0"] {
        let err = stackstorm(|f| f.day_of_week = some(bad)).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("day_of_week"), "{bad}");
    }
    // And the schedules really are those days: 0 = Monday, 6 = Sunday.
    let expression = stackstorm(|f| f.day_of_week = some("6")).unwrap();
    assert_eq!(
        fires(&expression, "UTC", "2026-01-01T00:00:00Z", 1),
        ["2026-01-04T00:00:00Z"]
    );
    let expression = stackstorm(|f| f.day_of_week = some("*/2")).unwrap();
    assert_eq!(
        fires(&expression, "UTC", "2026-01-04T12:00:00Z", 3),
        [
            "2026-01-05T00:00:00Z",
            "2026-01-07T00:00:00Z",
            "2026-01-09T00:00:00Z"
        ]
    );
}

#[test]
fn stackstorm_day_and_weekday_are_anded() {
    let expression = stackstorm(|f| {
        f.day = some("13");
        f.day_of_week = some("fri");
    })
    .unwrap();
    assert_eq!(expression, "0 0 0 13 * +FRI *");
    assert_eq!(
        fires(&expression, "UTC", "2026-01-01T00:00:00Z", 1),
        ["2026-02-13T00:00:00Z"]
    );
    let err = stackstorm(|f| f.day = some("1st mon")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("day"));
}

#[test]
fn stackstorm_errors_name_the_field_at_fault() {
    let mut fields = StackStormFields {
        hour: some("25"),
        minute: some("30"),
        ..StackStormFields::default()
    };
    let err = blame_stackstorm_field(&fields).expect("hour is at fault");
    assert_eq!(err.field.as_deref(), Some("hour"));
    assert!(
        err.message.contains("Invalid 'hour' value '25'"),
        "{}",
        err.message
    );

    fields.hour = some("9");
    assert!(
        blame_stackstorm_field(&fields).is_none(),
        "all fields parse"
    );
    fields.minute = some("61");
    assert_eq!(
        blame_stackstorm_field(&fields)
            .and_then(|e| e.field)
            .as_deref(),
        Some("minute")
    );
}
