//! The clock when the component misbehaves for one rule: the call is retried once, then
//! that rule alone is stopped. Uses the hostile fixture (`tests/fixtures/hostile-timer`), a
//! plain interval timer that traps or spins only for rules whose params ask it to.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use attune_testkit::logs::LogCapture;
use attune_testkit::rules::interval_rule as rule;
use attune_testkit::sink::Collect;
use attune_timer::component::TimerRuntime;
use attune_timer::schedule::rules::{Applied, RuleTable};
use attune_timer::schedule::Clock;

/// The hostile fixture, built by this crate's build script.
const HOSTILE: &str = env!("HOSTILE_TIMER_WASM");

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-26T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn setup() -> (Clock, RuleTable, Arc<Collect>) {
    let runtime = TimerRuntime::from_file(HOSTILE).expect("hostile fixture loads");
    let sink = Arc::new(Collect::default());
    let clock = Clock::spawn_at(
        Arc::new(runtime),
        sink.clone(),
        "core.timer_sensor".into(),
        t0(),
    );
    let table = RuleTable::new(clock.clone(), vec!["core.intervaltimer".into()]);
    (clock, table, sink)
}

#[tokio::test(start_paused = true)]
async fn a_rule_whose_fires_fail_twice_stops_alone() {
    let (logs, _guard) = LogCapture::start("info");
    let (clock, table, sink) = setup();
    let report = table
        .apply_snapshot(vec![
            rule(1, json!({"interval": 5})),
            // Traps in build-payload, every time.
            rule(2, json!({"interval": 5, "hostile": "trap-payload"})),
            // Spins in build-payload until the CPU deadline interrupts it, every time.
            rule(3, json!({"interval": 5, "hostile": "loop-payload"})),
        ])
        .await;
    // They all start (next-fire works for all); 2 and 3 may already have failed while
    // their first fire was built ahead.
    assert_eq!(report.started, 3, "they all start: next-fire works for all");
    tokio::time::sleep(Duration::from_millis(11_000)).await;

    let events = sink.events();
    let ids: Vec<i64> = events.iter().map(|e| e.rule_id).collect();
    assert_eq!(
        ids,
        [1, 1],
        "rule 1 fired at 5 and 10 s; 2 and 3 never delivered"
    );
    assert!(clock.contains(1));
    assert!(
        !clock.contains(2) && !clock.contains(3),
        "the failing rules are stopped"
    );

    for id in [2, 3] {
        let lines: Vec<Value> = logs
            .lines()
            .into_iter()
            .filter(|l| l["rule_id"] == id)
            .collect();
        let retried = lines
            .iter()
            .filter(|l| {
                l["level"] == "WARN"
                    && l["message"]
                        .as_str()
                        .unwrap()
                        .contains("retrying once on a fresh instance")
            })
            .count();
        assert_eq!(retried, 1, "rule {id}: one retry, logged: {lines:#?}");
        let stopped = lines
            .iter()
            .filter(|l| {
                l["level"] == "ERROR"
                    && l["message"]
                        == format!(
                            "Timer for rule {id} stopped: the timer component failed twice in a row"
                        )
            })
            .count();
        assert_eq!(stopped, 1, "rule {id}: {lines:#?}");
    }
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_rule_that_cannot_start_is_retried_when_applied_again() {
    let (logs, _guard) = LogCapture::start("info");
    let (clock, table, _sink) = setup();
    let faulty = rule(4, json!({"interval": 5, "hostile": "trap-next"}));
    assert!(matches!(
        table.upsert(faulty.clone()).await,
        Applied::Faulted(_)
    ));
    assert!(!clock.contains(4));
    assert!(table
        .upsert(rule(5, json!({"interval": 5})))
        .await
        .is_running());
    // The same params again: a fault is not the params' fault, so it is tried again.
    assert!(matches!(table.upsert(faulty).await, Applied::Faulted(_)));
    let retries = logs
        .text()
        .matches("retrying once on a fresh instance")
        .count();
    assert_eq!(retries, 2, "each attempt retried once");
    clock.shutdown().await;
}
