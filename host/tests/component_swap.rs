//! Live component swap in the clock and the rule table (host/src/swap.rs), with the real
//! embedded component under tokio's paused clock: every deadline is hit exactly, so "no
//! fire missed, none doubled" can be checked fire by fire.
//!
//! A second build of the same logic is the embedded component with a custom section
//! appended: a valid component with a different content hash. Swaps to components that
//! refuse rules (the fixtures) are in the conformance crate's tests/swap.rs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use attune_testkit::logs::LogCapture;
use attune_testkit::rules::rule;
use attune_testkit::sink::Collect;
use attune_timer::component::watch::{Trigger, Triggers};
use attune_timer::component::{Rule, TimerRuntime, EMBEDDED_COMPONENT};
use attune_timer::schedule::event::Event;
use attune_timer::schedule::rules::RuleTable;
use attune_timer::schedule::swap::{self, Check, SwapOutcome};
use attune_timer::schedule::Clock;

const SENSOR: &str = "core.timer_sensor";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-26T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The embedded component with a custom section appended: same logic, another content hash.
fn marked_component(mark: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"attune-test-mark";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(mark.as_bytes());
    let mut bytes = EMBEDDED_COMPONENT.to_vec();
    bytes.push(0); // a custom section
    leb(body.len(), &mut bytes);
    bytes.extend_from_slice(&body);
    bytes
}

fn setup() -> (Clock, RuleTable, Arc<Collect>) {
    let runtime = Arc::new(TimerRuntime::embedded().expect("embedded component"));
    let sink = Arc::new(Collect::default());
    let clock = Clock::spawn_at(runtime, sink.clone(), SENSOR.into(), t0());
    let table = RuleTable::new(
        clock.clone(),
        vec!["core.intervaltimer".into(), "core.crontimer".into()],
    );
    (clock, table, sink)
}

/// Every rule's fires are exactly its ticks 1..=n in order: none missed, none doubled.
fn assert_exact_sequence(events: &[Event], id: i64, period_s: i64, n: usize) {
    let ticks: Vec<(DateTime<Utc>, u64)> = events
        .iter()
        .map(|e| {
            (
                e.scheduled_at,
                e.payload.to_map()["execution_count"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(DateTime<Utc>, u64)> = (1..=n as i64)
        .map(|k| (t0() + chrono::Duration::seconds(k * period_s), k as u64))
        .collect();
    assert_eq!(
        ticks, expected,
        "rule {id}: (scheduled_at, execution_count)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_swap_under_load_misses_no_fire_and_doubles_none() {
    let (logs, _guard) = LogCapture::start("warn,attune_timer::schedule::swap=info");
    let (clock, table, sink) = setup();
    let mut rules: Vec<Rule> = (1..=1000)
        .map(|id| {
            rule(
                id,
                "core.intervaltimer",
                json!({"interval": 1, "unit": "seconds"}),
            )
        })
        .collect();
    rules.extend(
        (1001..=1020).map(|id| rule(id, "core.crontimer", json!({"expression": "*/2 * * * * *"}))),
    );
    let report = table.apply_snapshot(rules).await;
    assert_eq!(report.running, 1020);
    let old_hash = clock.runtime().info().content_hash.clone();

    // Just before the 6 s tick, when 1,010 rules are due at once: the swap races that batch.
    tokio::time::sleep(Duration::from_millis(5_999)).await;
    let bytes = marked_component("second build");
    let swapping = {
        let table = table.clone();
        tokio::spawn(async move {
            swap::swap(&table, move || Ok(TimerRuntime::builder().bytes(&bytes)?)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(4_501)).await; // to 10.5 s
    let outcome = swapping.await.unwrap();
    let SwapOutcome::Swapped { old, new, rules } = outcome else {
        panic!("expected a swap, got {outcome:?}");
    };
    assert_eq!(rules, 1020);
    assert_eq!(old.content_hash, old_hash);
    assert_ne!(new.content_hash, old_hash);
    assert_eq!(clock.runtime().info().content_hash, new.content_hash);

    let by_rule = sink.by_rule();
    assert_eq!(by_rule.len(), 1020, "every rule fired");
    for id in 1..=1000 {
        assert_exact_sequence(&by_rule[&id], id, 1, 10);
    }
    for id in 1001..=1020 {
        assert_exact_sequence(&by_rule[&id], id, 2, 5);
    }
    // Phase and count carry on.
    let status = clock.timer(1).unwrap();
    assert_eq!(status.started_at, t0());
    assert_eq!(status.execution_count, 10);
    assert_eq!(status.next_fire_at, t0() + chrono::Duration::seconds(11));

    let swapped = logs.with_message("Timer component swapped");
    assert_eq!(swapped.len(), 1, "{}", logs.text());
    let fields = &swapped[0];
    let old_label = fields["old_component"].as_str().unwrap();
    let new_label = fields["new_component"].as_str().unwrap();
    assert!(
        old_label.contains("attune-timer-rust") && old_label.contains(&old.content_hash),
        "{old_label}"
    );
    assert!(new_label.contains(&new.content_hash), "{new_label}");
    assert_eq!(fields["rules"], 1020);
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_swap_keeps_the_scheduled_deadline_and_the_count() {
    // Every test logs to a capture: a callsite first seen with no subscriber would not
    // log in the tests that look at the logs.
    let (_logs, _guard) = LogCapture::start("info");
    let (clock, table, sink) = setup();
    table
        .upsert(rule(
            1,
            "core.intervaltimer",
            json!({"interval": 5, "unit": "seconds"}),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(7_000)).await; // fired at 5 s
    let before = clock.timer(1).unwrap();
    let bytes = marked_component("b");
    let outcome = swap::swap(&table, move || Ok(TimerRuntime::builder().bytes(&bytes)?)).await;
    assert!(matches!(outcome, SwapOutcome::Swapped { rules: 1, .. }));
    let after = clock.timer(1).unwrap();
    assert_eq!(after, before, "same deadline, phase, count and generation");
    tokio::time::sleep(Duration::from_millis(8_500)).await; // to 15.5 s
    assert_exact_sequence(&sink.by_rule()[&1], 1, 5, 3);
    // Re-applying the same rule after the swap keeps its timer.
    let applied = table
        .upsert(rule(
            1,
            "core.intervaltimer",
            json!({"interval": 5, "unit": "seconds"}),
        ))
        .await;
    assert_eq!(applied, attune_timer::schedule::rules::Applied::Kept);
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_file_that_is_not_a_component_is_rejected_and_the_old_one_keeps_firing() {
    let (logs, _guard) = LogCapture::start("info");
    let (clock, table, sink) = setup();
    table
        .upsert(rule(
            7,
            "core.intervaltimer",
            json!({"interval": 1, "unit": "seconds"}),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timer.wasm");
    std::fs::write(&path, b"this is not a component").unwrap();
    let source = attune_timer::component::Source {
        component: Some(path),
        limits: Default::default(),
        cache: attune_timer::component::CompileCache::disabled(),
        metrics: Default::default(),
    };
    let old_hash = clock.runtime().info().content_hash.clone();
    let outcome = swap::swap(&table, move || source.load()).await;
    let SwapOutcome::Rejected(rejection) = outcome else {
        panic!("expected a rejection, got {outcome:?}");
    };
    assert_eq!(rejection.failures[0].check, Check::Load);
    assert!(rejection.new.is_none());
    assert_eq!(clock.runtime().info().content_hash, old_hash);
    tokio::time::sleep(Duration::from_millis(3_000)).await; // to 5.5 s
    assert_exact_sequence(&sink.by_rule()[&7], 7, 1, 5);

    let lines = logs.with_message("Timer component swap rejected");
    assert_eq!(lines.len(), 1, "{}", logs.text());
    let fields = &lines[0];
    assert_eq!(fields["check"], "load");
    assert!(fields["old_component"]
        .as_str()
        .unwrap()
        .contains(&old_hash));
    assert!(
        fields["reason"].as_str().unwrap().contains("timer.wasm"),
        "{fields}"
    );
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_same_component_again_is_not_swapped() {
    // Every test logs to a capture: a callsite first seen with no subscriber would not
    // log in the tests that look at the logs.
    let (_logs, _guard) = LogCapture::start("info");
    let (clock, table, _sink) = setup();
    table
        .upsert(rule(1, "core.intervaltimer", json!({"interval": 3})))
        .await;
    let outcome = swap::swap(&table, || Ok(TimerRuntime::embedded()?)).await;
    assert!(matches!(outcome, SwapOutcome::Unchanged(_)), "{outcome:?}");
    clock.shutdown().await;
}

/// The file watch, on real time: a change is reported once the file has settled.
#[tokio::test]
async fn a_changed_component_file_triggers_a_swap() {
    // Every test logs to a capture: a callsite first seen with no subscriber would not
    // log in the tests that look at the logs.
    let (_logs, _guard) = LogCapture::start("info");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timer.wasm");
    std::fs::write(&path, EMBEDDED_COMPONENT).unwrap();
    let mut triggers = Triggers::install(Some(path.clone()), Duration::from_millis(100));
    // Nothing changes: no trigger.
    let quiet = tokio::time::timeout(Duration::from_millis(400), triggers.next()).await;
    assert!(quiet.is_err(), "no change, no trigger");
    std::fs::write(&path, marked_component("changed")).unwrap();
    let trigger = tokio::time::timeout(Duration::from_secs(3), triggers.next())
        .await
        .expect("the change is noticed");
    assert_eq!(trigger, Trigger::FileChanged);
    // Reported once.
    let again = tokio::time::timeout(Duration::from_millis(400), triggers.next()).await;
    assert!(again.is_err(), "one change, one trigger");
}
