//! Live component swap (host/src/swap.rs) to and from the fixtures: a component that
//! handles fewer trigger refs and refuses some params (`fixtures/hostile-timer`, a plain
//! interval timer), and one of an incompatible WIT version (`fixtures/future-timer`). Under
//! tokio's paused clock, so every fire is checked exactly.

use std::sync::Arc;
use std::time::Duration;

use attune_testkit::rules::rule;
use attune_testkit::sink::Collect;
use attune_timer::component::{Rule, TimerRuntime};
use attune_timer::schedule::event::Event;
use attune_timer::schedule::rules::RuleTable;
use attune_timer::schedule::swap::{self, Check, SwapOutcome};
use attune_timer::schedule::Clock;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

const HOSTILE: &str = env!("HOSTILE_TIMER_WASM");
const FUTURE: &str = env!("FUTURE_TIMER_WASM");

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 26, 12, 0, 0).unwrap()
}

fn interval(id: i64, seconds: u64) -> Rule {
    rule(id, "core.intervaltimer", json!({"interval": seconds}))
}

/// The embedded component on a paused clock, for interval and cron rules.
fn setup() -> (Clock, RuleTable, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let clock = Clock::spawn_at(
        Arc::new(TimerRuntime::embedded().unwrap()),
        sink.clone(),
        "core.timer_sensor".into(),
        t0(),
    );
    let table = RuleTable::new(
        clock.clone(),
        vec!["core.intervaltimer".into(), "core.crontimer".into()],
    );
    (clock, table, sink)
}

/// (scheduled_at, execution_count) of every fire, which must be ticks 1..=n exactly.
fn assert_ticks(events: &[Event], period_s: i64, n: i64) {
    let got: Vec<(DateTime<Utc>, u64)> = events
        .iter()
        .map(|e| {
            (
                e.scheduled_at,
                e.payload.to_map()["execution_count"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(DateTime<Utc>, u64)> = (1..=n)
        .map(|k| (t0() + chrono::Duration::seconds(k * period_s), k as u64))
        .collect();
    assert_eq!(got, want);
}

/// The embedded component's payloads carry `fired_at`; the hostile fixture's do not.
fn built_by_embedded(e: &Event) -> bool {
    e.payload.to_map().contains_key("fired_at")
}

#[tokio::test(start_paused = true)]
async fn the_scheduled_fire_is_the_new_components_first() {
    let (clock, table, sink) = setup();
    table
        .apply_snapshot(vec![interval(1, 1), interval(2, 3)])
        .await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let outcome = swap::swap(&table, || Ok(TimerRuntime::from_file(HOSTILE)?)).await;
    let SwapOutcome::Swapped { old, new, rules } = outcome else {
        panic!("expected a swap: {outcome:?}");
    };
    assert_eq!(
        (old.name.as_str(), new.name.as_str()),
        ("attune-timer-rust", "hostile-timer")
    );
    assert_eq!(rules, 2);
    assert_eq!(clock.runtime().info().name, "hostile-timer");
    tokio::time::sleep(Duration::from_millis(3_000)).await; // to 6.5 s

    let by_rule = sink.by_rule();
    // No fire missed or doubled, the count carries on...
    assert_ticks(&by_rule[&1], 1, 6);
    assert_ticks(&by_rule[&2], 3, 2);
    // ...and the fires from the swap on are the new component's.
    let makers: Vec<bool> = by_rule[&1].iter().map(built_by_embedded).collect();
    assert_eq!(makers, [true, true, true, false, false, false]);
    assert!(built_by_embedded(&by_rule[&2][0]));
    assert!(!built_by_embedded(&by_rule[&2][1]));
    assert_eq!(by_rule[&2][1].payload.to_map()["interval_seconds"], 3);
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_component_that_refuses_rules_is_rejected_naming_them() {
    let (clock, table, sink) = setup();
    let report = table
        .apply_snapshot(vec![
            interval(1, 1),
            // The embedded component reads `seconds`; the hostile one wants `interval`.
            rule(2, "core.intervaltimer", json!({"seconds": 2})),
            rule(3, "core.crontimer", json!({"expression": "* * * * * *"})),
            rule(4, "core.crontimer", json!({"expression": "*/2 * * * * *"})),
        ])
        .await;
    assert_eq!(report.running, 4);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let before = clock.runtime().info().clone();

    let outcome = swap::swap(&table, || Ok(TimerRuntime::from_file(HOSTILE)?)).await;
    let SwapOutcome::Rejected(rejection) = outcome else {
        panic!("expected a rejection: {outcome:?}");
    };
    assert_eq!(rejection.checks(), "trigger-ref,validate");
    assert_eq!(rejection.failures[0].check, Check::TriggerRef);
    assert_eq!(rejection.failures[0].rule_ids, [3, 4]);
    assert!(
        rejection.failures[0].reason.contains("core.crontimer"),
        "{rejection}"
    );
    assert_eq!(rejection.failures[1].check, Check::Validate);
    assert_eq!(rejection.failures[1].rule_ids, [2]);
    assert!(
        rejection.failures[1].reason.contains("interval"),
        "{rejection}"
    );
    assert_eq!(rejection.rule_ids(), [2, 3, 4]);
    // What the log line's `reason` says.
    let text = rejection.to_string();
    assert!(
        text.contains("trigger-ref failed for 2 rule(s) (ids 3, 4)")
            && text.contains("validate failed for 1 rule(s) (ids 2)"),
        "{text}"
    );
    assert_eq!(rejection.new.as_ref().unwrap().name, "hostile-timer");

    // The old component stays, and every rule keeps firing on it.
    assert_eq!(clock.runtime().info(), &before);
    tokio::time::sleep(Duration::from_millis(2_000)).await; // to 4.5 s
    let by_rule = sink.by_rule();
    assert_ticks(&by_rule[&1], 1, 4);
    assert_ticks(&by_rule[&2], 2, 2);
    assert_ticks(&by_rule[&3], 1, 4);
    assert_ticks(&by_rule[&4], 2, 2);
    assert!(by_rule.values().flatten().all(built_by_embedded));
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_component_of_another_wit_version_is_rejected_at_load() {
    let (clock, table, sink) = setup();
    table.upsert(interval(1, 1)).await;
    let outcome = swap::swap(&table, || Ok(TimerRuntime::from_file(FUTURE)?)).await;
    let SwapOutcome::Rejected(rejection) = outcome else {
        panic!("expected a rejection: {outcome:?}");
    };
    assert_eq!(rejection.checks(), "load");
    assert!(rejection.new.is_none());
    assert!(
        rejection.failures[0].reason.contains("0.2.0"),
        "{rejection}"
    );
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_ticks(&sink.by_rule()[&1], 1, 3);
    assert_eq!(clock.runtime().info().name, "attune-timer-rust");
    clock.shutdown().await;
}
