//! Hostile components under the running daemon clock: hundreds of ordinary rules keep firing
//! on time — every tick, at exactly its scheduled instant — while each hostile rule beside
//! them is stopped alone, with a clear error or log line.
//!
//! The clock (`attune_timer::schedule::Clock`) runs on tokio's paused clock: virtual time
//! advances only when every task is idle (a component call on a blocking thread holds it),
//! so "exactly on time" is checked to the nanosecond and the test runs in real seconds.
//! `ordinary_rules_keep_firing_in_real_time_beside_a_looping_rule` checks the same on the
//! real clock, with the delay a deadline hit really costs.
//!
//! Rules are started the way the daemon starts them: `validate` through the runtime, then
//! `Clock::start` (both on a blocking thread).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use attune_testkit::logs::LogCapture;
use attune_testkit::rules::interval_rule as rule;
use attune_testkit::sink::Collect;
use attune_timer::component::Limits;
use attune_timer::component::{CallError, Rule, TimerRuntime};
use attune_timer::schedule::event::Event;
use attune_timer::schedule::Clock;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::time::Instant;

const HOSTILE: &str = env!("HOSTILE_TIMER_WASM");
const GARBAGE: &str = env!("GARBAGE_TIMER_WASM");
const ORDINARY: i64 = 500;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-26T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The log lines (WARN and above, captured with the daemon's own JSON subscriber) about
/// rule `id`.
fn logs_for_rule(logs: &LogCapture, id: i64) -> Vec<Value> {
    logs.lines()
        .into_iter()
        .filter(|l| l["rule_id"] == id)
        .collect()
}

/// Validates and starts every rule as the daemon does, on a blocking thread; returns each
/// rule's refusal or fault (the rules that did not start).
async fn start_all(clock: &Clock, rules: Vec<Rule>) -> BTreeMap<i64, CallError> {
    let clock = clock.clone();
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    tokio::task::spawn_blocking(move || {
        tracing::dispatcher::with_default(&dispatch, || {
            let mut failed = BTreeMap::new();
            for rule in rules {
                let result = clock
                    .runtime()
                    .validate(&rule, clock.now())
                    .and_then(|schedule| clock.start(rule.id, &rule.r#ref, schedule));
                match result {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("rule {} has no fire at all", rule.id),
                    Err(e) => {
                        failed.insert(rule.id, e);
                    }
                }
            }
            failed
        })
    })
    .await
    .unwrap()
}

/// Rule `id` fired exactly `ticks` times, at `t0 + k s` (k = 1..=ticks) both as scheduled
/// and as delivered on the (paused) monotonic clock, with counts 1, 2, ….
fn assert_fired_on_time(
    id: i64,
    events: Option<&Vec<(Instant, Event)>>,
    base: Instant,
    ticks: i64,
) {
    let events = events.unwrap_or_else(|| panic!("rule {id} never fired"));
    let scheduled: Vec<DateTime<Utc>> = events.iter().map(|(_, e)| e.scheduled_at).collect();
    let expected: Vec<DateTime<Utc>> = (1..=ticks)
        .map(|k| t0() + chrono::Duration::seconds(k))
        .collect();
    assert_eq!(scheduled, expected, "rule {id}: every tick, as scheduled");
    for (k, (at, e)) in events.iter().enumerate() {
        let k = k as u64 + 1;
        assert_eq!(
            *at,
            base + Duration::from_secs(k),
            "rule {id}: fire {k} delivered exactly on its tick"
        );
        assert_eq!(e.payload.to_map()["execution_count"], json!(k), "rule {id}");
    }
}

/// The rule's log has the clock's "stopped" line, naming why.
fn assert_stopped_in_log(logs: &LogCapture, id: i64, why: &str) {
    let lines = logs_for_rule(logs, id);
    let stopped: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["level"] == "ERROR"
                && l["message"]
                    == format!(
                        "Timer for rule {id} stopped: the timer component failed twice in a row"
                    )
        })
        .collect();
    assert_eq!(stopped.len(), 1, "rule {id}: one stop line: {lines:#?}");
    let error = stopped[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains(why), "rule {id}: `{error}` names `{why}`");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ordinary_rules_keep_time_while_hostile_rules_are_stopped_alone() {
    let (logs, _guard) = LogCapture::start("warn");
    // A 32 MiB cap: the memory hogs reach it in milliseconds; a 4 MiB payload still fits.
    let limits = Limits {
        max_memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let runtime = TimerRuntime::builder()
        .limits(limits)
        .file(HOSTILE)
        .expect("hostile fixture loads");
    let sink = Arc::new(Collect::default());
    let clock = Clock::spawn_at(
        Arc::new(runtime),
        sink.clone(),
        "core.timer_sensor".into(),
        t0(),
    );
    let base = Instant::now();

    // Hostile rules, each misbehaving in its own way, all on the same 1 s tick as the
    // ordinary ones, so they share every batch with them.
    let hostile: &[(i64, &str, &str)] = &[
        // Refused by validate: never start.
        (1001, "trap-validate", "component call `validate` trapped"),
        (
            1002,
            "loop-validate",
            "`validate` exceeded its CPU deadline",
        ),
        // Memory hogs hit the cap, or (on a loaded machine) the deadline while filling it.
        (1003, "grow-validate", "component call `validate` exceeded"),
        // Fail their first next-fire (retried once): never start.
        (1011, "trap-next", "component call `next-fire` trapped"),
        (1012, "loop-next", "`next-fire` exceeded its CPU deadline"),
        (1013, "grow-next", "component call `next-fire` exceeded"),
        (1014, "past-next", "is not after"),
        (1015, "far-next", "absurdly far"),
        // Start, then fail their first fire (retried once): stopped by the clock.
        (
            1021,
            "trap-payload",
            "component call `build-payload` trapped",
        ),
        (
            1022,
            "loop-payload",
            "`build-payload` exceeded its CPU deadline",
        ),
        (1023, "not-object-payload", "not the text of a JSON object"),
        (1024, "huge-payload", "exceeds the limit of 65536 bytes"),
    ];
    let mut rules: Vec<Rule> = (1..=ORDINARY)
        .map(|id| rule(id, json!({"interval": 1})))
        .collect();
    // Interleaved with the ordinary rules, not after them.
    for (i, (id, mode, _)) in hostile.iter().enumerate() {
        rules.insert(i * 40, rule(*id, json!({"interval": 1, "hostile": mode})));
    }
    let failed = start_all(&clock, rules).await;

    let refused_at_start: Vec<i64> = hostile
        .iter()
        .map(|h| h.0)
        .filter(|id| *id < 1020)
        .collect();
    assert_eq!(
        failed.keys().copied().collect::<Vec<_>>(),
        refused_at_start,
        "exactly the validate- and next-fire-hostile rules fail to start: {failed:#?}"
    );
    for (id, _, why) in hostile.iter().filter(|h| h.0 < 1020) {
        let msg = failed[id].to_string();
        assert!(msg.contains(why), "rule {id}: `{msg}` names `{why}`");
    }
    // The four payload-hostile rules started (next-fire works for them); building their
    // first fire ahead may already have stopped some, which is checked below.
    assert!(
        (ORDINARY as usize..=ORDINARY as usize + 4).contains(&clock.len()),
        "{} timers",
        clock.len()
    );
    for id in 1..=ORDINARY {
        assert_eq!(clock.timer(id).unwrap().started_at, t0());
    }

    // Ten seconds of virtual time.
    tokio::time::sleep_until(base + Duration::from_millis(10_500)).await;

    let events = sink.timed_by_rule();
    for id in 1..=ORDINARY {
        assert_fired_on_time(id, events.get(&id), base, 10);
        assert!(clock.contains(id), "rule {id} still runs");
    }
    for (id, _, why) in hostile {
        assert!(
            !events.contains_key(id),
            "hostile rule {id} delivered nothing"
        );
        assert!(!clock.contains(*id), "hostile rule {id} holds no timer");
        if *id > 1020 {
            assert_stopped_in_log(&logs, *id, why);
        }
    }
    assert_eq!(
        events.values().map(Vec::len).sum::<usize>(),
        10 * ORDINARY as usize
    );
    clock.shutdown().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rule_that_turns_hostile_mid_run_is_stopped_alone() {
    let (logs, _guard) = LogCapture::start("warn");
    let runtime = Arc::new(TimerRuntime::from_file(GARBAGE).expect("garbage fixture loads"));
    let sink = Arc::new(Collect::default());
    let clock = Clock::spawn_at(runtime, sink.clone(), "core.timer_sensor".into(), t0());
    let base = Instant::now();

    let mut rules: Vec<Rule> = (1..=ORDINARY)
        .map(|id| rule(id, json!({"interval": 1})))
        .collect();
    // Fires normally twice, then answers its third payload with invalid UTF-8.
    rules.insert(
        250,
        rule(
            2001,
            json!({"interval": 1, "garbage": "utf8-payload", "from": 3}),
        ),
    );
    // Its spec is not UTF-8: refused at validate.
    rules.insert(
        100,
        rule(2002, json!({"interval": 1, "garbage": "utf8-spec"})),
    );
    let failed = start_all(&clock, rules).await;
    assert_eq!(failed.keys().copied().collect::<Vec<_>>(), [2002]);
    assert!(
        failed[&2002].to_string().contains("invalid utf-8"),
        "{}",
        failed[&2002]
    );

    tokio::time::sleep_until(base + Duration::from_millis(8_500)).await;

    let events = sink.timed_by_rule();
    for id in 1..=ORDINARY {
        assert_fired_on_time(id, events.get(&id), base, 8);
    }
    // The turncoat fired on time twice, then stopped; the others never noticed.
    assert_fired_on_time(2001, events.get(&2001), base, 2);
    assert!(!clock.contains(2001));
    assert_stopped_in_log(&logs, 2001, "invalid utf-8");
    clock.shutdown().await;
}

/// On the real clock: a rule that spins to its CPU deadline costs its batch that time
/// (twice: the clock retries once), and nothing more — every ordinary tick still arrives,
/// with exact scheduled times, well within a second of its instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_rules_keep_firing_in_real_time_beside_a_looping_rule() {
    let (logs, _guard) = LogCapture::start("warn");
    let runtime = Arc::new(TimerRuntime::from_file(HOSTILE).expect("hostile fixture loads"));
    let sink = Arc::new(Collect::default());
    let start = Utc::now();
    let clock = Clock::spawn_at(runtime, sink.clone(), "core.timer_sensor".into(), start);
    let base = Instant::now();
    let n = 200;
    let mut rules: Vec<Rule> = (1..=n).map(|id| rule(id, json!({"interval": 1}))).collect();
    rules.push(rule(
        3001,
        json!({"interval": 1, "hostile": "loop-payload"}),
    ));
    rules.push(rule(
        3002,
        json!({"interval": 2, "hostile": "trap-payload"}),
    ));
    let failed = start_all(&clock, rules).await;
    assert!(failed.is_empty(), "{failed:#?}");

    tokio::time::sleep_until(base + Duration::from_millis(3_600)).await;
    clock.shutdown().await;

    let events = sink.timed_by_rule();
    let deadline = clock.runtime().limits().call_deadline;
    for id in 1..=n {
        let mine = events
            .get(&id)
            .unwrap_or_else(|| panic!("rule {id} never fired"));
        let started = clock_start(&mine[0].1, 1);
        let scheduled: Vec<_> = mine.iter().map(|(_, e)| e.scheduled_at).collect();
        let expected: Vec<_> = (1..=3)
            .map(|k| started + chrono::Duration::seconds(k))
            .collect();
        assert_eq!(scheduled, expected, "rule {id}: every tick");
        for (k, (at, _)) in mine.iter().enumerate() {
            let due =
                base + (started - start).to_std().unwrap() + Duration::from_secs(k as u64 + 1);
            let late = at.saturating_duration_since(due);
            // Worst case: the batch with the looping rule's two deadline hits, plus slack
            // for a loaded 2-core machine.
            assert!(
                late < 2 * deadline + Duration::from_millis(400),
                "rule {id} fire {} late by {late:?}",
                k + 1
            );
        }
    }
    for (id, why) in [
        (3001, "`build-payload` exceeded its CPU deadline"),
        (3002, "component call `build-payload` trapped"),
    ] {
        assert!(!events.contains_key(&id));
        assert_stopped_in_log(&logs, id, why);
    }
}

/// The start of an interval rule, from an event of its `k`-th 1 s tick.
fn clock_start(event: &Event, k: i64) -> DateTime<Utc> {
    event.scheduled_at - chrono::Duration::seconds(k)
}
