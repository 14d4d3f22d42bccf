//! The clock and the rule table, with the real embedded component, under tokio's paused
//! clock: every deadline is hit exactly, so the assertions can be exact too.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use attune_testkit::rules::rule;
use attune_testkit::sink::Collect;
use attune_timer::component::{Rule, TimerRuntime};
use attune_timer::schedule::event::Event;
use attune_timer::schedule::rules::{Applied, RuleTable};
use attune_timer::schedule::Clock;

const SENSOR: &str = "core.timer_sensor";
const ALL_REFS: [&str; 4] = [
    "core.intervaltimer",
    "core.crontimer",
    "core.datetimetimer",
    "core.rruletimer",
];

fn t0() -> DateTime<Utc> {
    utc("2026-03-26T12:00:00Z")
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

/// One runtime for the whole file (compiling the component takes ~0.1 s).
fn runtime() -> Arc<TimerRuntime> {
    static RUNTIME: OnceLock<Arc<TimerRuntime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Arc::new(TimerRuntime::embedded().expect("embedded component")))
        .clone()
}

fn setup() -> (Clock, RuleTable, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let clock = Clock::spawn_at(runtime(), sink.clone(), SENSOR.into(), t0());
    let table = RuleTable::new(
        clock.clone(),
        ALL_REFS.iter().map(|s| s.to_string()).collect(),
    );
    (clock, table, sink)
}

fn interval(id: i64, seconds: u64) -> Rule {
    rule(
        id,
        "core.intervaltimer",
        json!({"interval": seconds, "unit": "seconds"}),
    )
}

fn payload_time(e: &Event, key: &str) -> DateTime<Utc> {
    let map = e.payload.to_map();
    let text = map[key]
        .as_str()
        .unwrap_or_else(|| panic!("payload has no {key}: {:?}", e.payload));
    utc(text)
}

/// Sleeps on the paused clock (auto-advance fires every timer due on the way).
async fn elapse(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn intervals_are_drift_free() {
    let (clock, table, sink) = setup();
    assert!(table.upsert(interval(1, 5)).await.is_running());
    elapse(Duration::from_millis(500 * 1000 + 1)).await; // 500 s: 100 fires
    let events = sink.take();
    assert_eq!(events.len(), 100);
    for (k, e) in events.iter().enumerate() {
        let k = k as i64 + 1;
        let tick = t0() + secs(5 * k);
        assert_eq!(e.scheduled_at, tick, "fire {k} is due at start + {k} × 5 s");
        assert_eq!(payload_time(e, "fired_at"), tick);
        assert_eq!(e.payload.to_map()["execution_count"], json!(k));
        assert_eq!(e.payload.to_map()["type"], "interval");
        assert_eq!(e.payload.to_map()["sensor_ref"], SENSOR);
        assert_eq!(&*e.trigger_ref, "core.intervaltimer");
    }
    let status = clock.timer(1).unwrap();
    assert_eq!(status.next_fire_at, t0() + secs(505));
    assert_eq!(status.execution_count, 100);
    // Every fire was built ahead and reached the sink on its tick (the clock is paused,
    // so "on its tick" is exact up to tokio's millisecond timer).
    let lateness = clock.take_lateness();
    assert_eq!(lateness.len(), 100);
    assert!(lateness.max() <= 1_000_000, "max {} ns", lateness.max());
    assert_eq!(clock.take_lateness().len(), 0, "taking it starts a new one");
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_late_fire_does_not_push_later_ones() {
    let (clock, table, sink) = setup();
    table.upsert(interval(1, 5)).await;
    // Jump 7.3 s at once: tick 5 s fires 2.3 s late, tick 10 s is still due at 10 s.
    tokio::time::advance(Duration::from_millis(7300)).await;
    elapse(Duration::from_millis(3000)).await; // to 10.3 s
    let events = sink.take();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].scheduled_at, t0() + secs(5));
    assert_eq!(
        payload_time(&events[0], "fired_at"),
        t0() + chrono::Duration::milliseconds(7300)
    );
    assert_eq!(events[1].scheduled_at, t0() + secs(10));
    assert_eq!(payload_time(&events[1], "fired_at"), t0() + secs(10));
    // The late fire was built when it fired (its payload has the real time, above) and
    // counts as 2.3 s late; the next one was built ahead and is on time.
    let lateness = clock.take_lateness();
    assert_eq!(lateness.len(), 2);
    assert!(lateness.max() >= 2_300_000_000, "max {} ns", lateness.max());
    assert!(lateness.min() <= 1_000_000, "min {} ns", lateness.min());
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_process_fires_the_missed_tick_once_without_a_burst() {
    let (clock, table, sink) = setup();
    table.upsert(interval(1, 5)).await;
    // As if the process was stopped for 23 s: ticks 5, 10, 15 and 20 s are all missed.
    tokio::time::advance(Duration::from_secs(23)).await;
    elapse(Duration::from_millis(1)).await;
    let events = sink.take();
    assert_eq!(
        events.len(),
        1,
        "one fire for the missed ticks, not a burst"
    );
    assert_eq!(events[0].scheduled_at, t0() + secs(5));
    assert_eq!(payload_time(&events[0], "fired_at"), t0() + secs(23));
    assert_eq!(events[0].payload.to_map()["execution_count"], 1);
    // The next fire is the first tick after now, still on the original phase.
    assert_eq!(clock.timer(1).unwrap().next_fire_at, t0() + secs(25));
    elapse(Duration::from_secs(2)).await;
    let events = sink.take();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].scheduled_at, t0() + secs(25));
    assert_eq!(events[0].payload.to_map()["execution_count"], 2);
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn identical_reapply_keeps_phase_and_count() {
    let (clock, table, sink) = setup();
    table.upsert(interval(1, 5)).await;
    elapse(Duration::from_millis(12_000)).await; // fires at 5 and 10 s
    let before = clock.timer(1).unwrap();
    assert_eq!(before.execution_count, 2);
    // The same rule again (a repeated lifecycle message, a re-sync): nothing changes.
    assert_eq!(table.upsert(interval(1, 5)).await, Applied::Kept);
    let report = table.apply_snapshot(vec![interval(1, 5)]).await;
    assert_eq!((report.kept, report.started, report.replaced), (1, 0, 0));
    assert_eq!(clock.timer(1).unwrap(), before);
    elapse(Duration::from_millis(3_500)).await; // to 15.5 s
    let events = sink.take();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].scheduled_at, t0() + secs(15), "same phase");
    assert_eq!(
        events[2].payload.to_map()["execution_count"],
        3,
        "same count"
    );
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn params_that_normalize_the_same_keep_the_timer() {
    let (clock, table, _sink) = setup();
    table.upsert(interval(1, 60)).await;
    elapse(Duration::from_secs(61)).await;
    let before = clock.timer(1).unwrap();
    // A bootstrap entry without a trigger ref and with the default unit left out.
    let same = Rule {
        id: 1,
        r#ref: "test.rule_1".into(),
        trigger_ref: None,
        trigger_params: json!({"interval": 1, "unit": "minutes"}),
    };
    assert_eq!(table.upsert(same).await, Applied::Kept);
    assert_eq!(clock.timer(1).unwrap(), before);
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn new_params_replace_the_timer() {
    let (clock, table, sink) = setup();
    table.upsert(interval(1, 5)).await;
    elapse(Duration::from_millis(7_000)).await; // one fire, at 5 s
    let old = clock.timer(1).unwrap();
    let applied = table.upsert(interval(1, 3)).await;
    assert_eq!(
        applied,
        Applied::Replaced {
            next_fire_at: Some(t0() + secs(10))
        },
        "new phase: 3 s after the replacement at 7 s"
    );
    let new = clock.timer(1).unwrap();
    assert_ne!(new.generation, old.generation);
    assert_eq!(new.execution_count, 0);
    assert_eq!(new.started_at, t0() + secs(7));
    elapse(Duration::from_millis(6_500)).await; // to 13.5 s: fires at 10 and 13 s
    let events = sink.take();
    let ticks: Vec<_> = events.iter().map(|e| e.scheduled_at).collect();
    assert_eq!(ticks, [t0() + secs(5), t0() + secs(10), t0() + secs(13)]);
    assert_eq!(
        events[1].payload.to_map()["execution_count"],
        1,
        "count restarts"
    );
    assert_eq!(events[1].payload.to_map()["interval_seconds"], 3);
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_one_shot_fires_once_and_then_holds_no_timer() {
    let (clock, table, sink) = setup();
    let mut running = clock.watch_running();
    let one_shot = rule(
        7,
        "core.datetimetimer",
        json!({"fire_at": "2026-03-26T12:00:10Z"}),
    );
    assert_eq!(
        table.upsert(one_shot.clone()).await,
        Applied::Started {
            next_fire_at: Some(t0() + secs(10))
        }
    );
    assert_eq!(*running.borrow_and_update(), 1);
    elapse(Duration::from_secs(60)).await;
    let events = sink.take();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].scheduled_at, t0() + secs(10));
    assert_eq!(events[0].payload.to_map()["type"], "one_shot");
    assert!(!clock.contains(7), "a fired one-shot holds no timer");
    assert_eq!(*running.borrow_and_update(), 0);
    // Re-applying it (a re-sync) does not fire it again.
    assert_eq!(table.upsert(one_shot).await, Applied::Kept);
    elapse(Duration::from_secs(60)).await;
    assert!(sink.take().is_empty());
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn cron_payload_names_the_tick_and_the_next_one() {
    let (clock, table, sink) = setup();
    table
        .upsert(rule(
            3,
            "core.crontimer",
            json!({"expression": "*/15 * * * * *", "timezone": "Europe/Berlin"}),
        ))
        .await;
    elapse(Duration::from_secs(46)).await;
    let events = sink.take();
    assert_eq!(events.len(), 3);
    for (k, e) in events.iter().enumerate() {
        let tick = t0() + secs(15 * (k as i64 + 1));
        assert_eq!(e.scheduled_at, tick);
        assert_eq!(payload_time(e, "scheduled_at"), tick);
        assert_eq!(payload_time(e, "next_fire_at"), tick + secs(15));
        assert_eq!(e.payload.to_map()["execution_count"], json!(k + 1));
    }
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stop_and_snapshot_stop_firing() {
    let (clock, table, sink) = setup();
    table
        .apply_snapshot(vec![interval(1, 2), interval(2, 2), interval(3, 2)])
        .await;
    elapse(Duration::from_millis(2_500)).await;
    assert_eq!(sink.take().len(), 3);
    assert!(table.remove(1).await);
    let report = table
        .apply_snapshot(vec![interval(3, 2), interval(4, 2)])
        .await;
    // 2 is gone; 3 kept; 4 new (1 was already removed).
    assert_eq!(
        (report.stopped, report.kept, report.started, report.running),
        (1, 1, 1, 2)
    );
    elapse(Duration::from_secs(4)).await;
    let mut ids: Vec<i64> = sink.take().iter().map(|e| e.rule_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids, [3, 4]);
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bad_params_stop_only_that_rule() {
    let (clock, table, sink) = setup();
    let report = table
        .apply_snapshot(vec![
            interval(1, 2),
            rule(2, "core.intervaltimer", json!({"interval": "soon"})),
            rule(3, "core.crontimer", json!({"expression": "not cron"})),
            rule(
                4,
                "core.datetimetimer",
                json!({"fire_at": "2020-01-01T00:00:00Z"}),
            ),
            interval(5, 2),
        ])
        .await;
    assert_eq!(
        (report.started, report.not_running, report.running),
        (2, 3, 2)
    );
    match table
        .upsert(rule(2, "core.intervaltimer", json!({"interval": 0})))
        .await
    {
        Applied::Refused(e) => assert_eq!(e.field.as_deref(), Some("interval")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    elapse(Duration::from_millis(2_500)).await;
    let mut ids: Vec<i64> = sink.take().iter().map(|e| e.rule_id).collect();
    ids.sort();
    assert_eq!(ids, [1, 5]);
    // A running rule whose params turn bad stops; the others carry on.
    assert!(matches!(
        table
            .upsert(rule(1, "core.intervaltimer", json!({"interval": -1})))
            .await,
        Applied::Refused(_)
    ));
    assert!(!clock.contains(1));
    elapse(Duration::from_secs(2)).await;
    assert_eq!(sink.for_rule(5).len(), 1);
    assert!(sink.for_rule(1).is_empty());
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn out_of_scope_refs_do_not_run() {
    let sink = Arc::new(Collect::default());
    let clock = Clock::spawn_at(runtime(), sink.clone(), SENSOR.into(), t0());
    let table = RuleTable::new(clock.clone(), vec!["core.crontimer".into()]);
    assert_eq!(
        table.upsert(interval(1, 2)).await,
        Applied::OutOfScope("core.intervaltimer".into())
    );
    // An explicit ref out of scope never reaches the component: params it would refuse
    // are not even validated.
    assert_eq!(
        table
            .upsert(rule(3, "core.datetimetimer", json!({"fire_at": "garbage"})))
            .await,
        Applied::OutOfScope("core.datetimetimer".into())
    );
    // Inferred refs are checked too.
    let inferred = Rule {
        id: 2,
        r#ref: String::new(),
        trigger_ref: None,
        trigger_params: json!({"interval": 2}),
    };
    assert!(matches!(
        table.upsert(inferred).await,
        Applied::OutOfScope(_)
    ));
    assert!(clock.is_empty());
    clock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bootstrap_rules_join_every_snapshot_until_removed() {
    let (clock, table, _sink) = setup();
    let boot = Rule {
        id: 50,
        r#ref: String::new(),
        trigger_ref: None,
        trigger_params: json!({"expression": "0 * * * * *"}),
    };
    table.set_bootstrap(vec![boot]).await;
    let report = table.apply_snapshot(vec![interval(1, 5)]).await;
    assert_eq!(report.running, 2);
    assert_eq!(clock.timer(50).unwrap().trigger_ref, "core.crontimer");
    // The API listing wins for the same id.
    table.apply_snapshot(vec![interval(50, 7)]).await;
    assert_eq!(clock.timer(50).unwrap().trigger_ref, "core.intervaltimer");
    table.apply_snapshot(vec![]).await;
    assert_eq!(clock.timer(50).unwrap().trigger_ref, "core.crontimer");
    // Disabled by a lifecycle message: gone for good.
    table.remove(50).await;
    table.apply_snapshot(vec![]).await;
    assert!(clock.is_empty());
    clock.shutdown().await;
}

/// 100,000 rules in the one scheduler: every rule fires on its exact ticks. Intervals run
/// from 1 to 60 s, so about 470,000 fires happen in the minute covered.
#[tokio::test(start_paused = true)]
async fn a_hundred_thousand_rules_fire_on_their_ticks() {
    const RULES: i64 = 100_000;
    let (clock, table, sink) = setup();
    let rules: Vec<Rule> = (1..=RULES)
        .map(|id| interval(id, (id % 60 + 1) as u64))
        .collect();
    let started = std::time::Instant::now();
    let report = table.apply_snapshot(rules).await;
    eprintln!("started {RULES} rules in {:?}", started.elapsed());
    assert_eq!(report.running, RULES as usize);
    let started = std::time::Instant::now();
    elapse(Duration::from_millis(60_500)).await;
    eprintln!("ran a minute of fires in {:?}", started.elapsed());
    let events = sink.take();
    let expected: i64 = (1..=RULES).map(|id| 60 / (id % 60 + 1)).sum();
    assert_eq!(events.len() as i64, expected);
    let mut counts = vec![0u64; RULES as usize + 1];
    for e in &events {
        let every = e.rule_id % 60 + 1;
        counts[e.rule_id as usize] += 1;
        let k = counts[e.rule_id as usize] as i64;
        assert_eq!(e.scheduled_at, t0() + secs(every * k), "rule {}", e.rule_id);
        assert_eq!(e.payload.to_map()["execution_count"], json!(k));
    }
    // No time passed while firing (the clock is paused), so nothing fired late.
    assert!(events
        .iter()
        .all(|e| payload_time(e, "fired_at") == e.scheduled_at));
    clock.shutdown().await;
}
