//! Helpers shared by the runtime-level sandbox tests: an instant, rules and fires for the
//! fixtures' interval logic, and the check that an ordinary rule still works.

#![allow(dead_code)] // each test file uses its own subset

use attune_timer::component::{Fire, Schedule, TimerRuntime};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// An interval rule with these params (the fixtures read `interval` and their own keys).
pub use attune_testkit::rules::interval_rule as rule;

/// The first fire of rule 1, at `at`.
pub fn fire(schedule: &Schedule, at: DateTime<Utc>) -> Fire {
    Fire {
        rule_id: 1,
        rule_ref: "test.rule_1".into(),
        trigger_ref: schedule.trigger_ref.clone(),
        sensor_ref: "core.timer_sensor".into(),
        scheduled_at: at,
        fired_at: at,
        execution_count: 1,
        next_fire_at: None,
    }
}

/// An ordinary interval rule still validates, fires and builds its payload: the pool
/// recovered from whatever happened before.
pub fn assert_ordinary_rule_works(rt: &TimerRuntime) {
    let schedule = rt
        .validate(&rule(99, json!({"interval": 5})), now())
        .expect("an ordinary rule validates");
    let next = rt.next_fire(&schedule, now(), now()).unwrap();
    assert_eq!(next, Some(now() + chrono::Duration::seconds(5)));
    rt.build_payload(&schedule, &fire(&schedule, now()))
        .expect("an ordinary payload");
}
