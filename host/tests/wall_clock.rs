//! The clock follows the wall clock: a step forward (or a suspend, when the monotonic
//! clock stands still and the wall clock does not) and a step backward, with an injected
//! wall clock under tokio's paused time, the real embedded component, and exact assertions.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use attune_testkit::logs::LogCapture;
use attune_testkit::rules::rule;
use attune_testkit::sink::Collect;
use attune_timer::component::TimerRuntime;
use attune_timer::schedule::event::Event;
use attune_timer::schedule::rules::RuleTable;
use attune_timer::schedule::{Clock, ClockOptions, Misfire, MisfirePolicy, WallClock};
use tokio::time::Instant;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn runtime() -> Arc<TimerRuntime> {
    static RUNTIME: OnceLock<Arc<TimerRuntime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Arc::new(TimerRuntime::embedded().expect("embedded component")))
        .clone()
}

/// A wall clock that runs with tokio's (paused) time and can be stepped.
struct Wall {
    base: DateTime<Utc>,
    start: Instant,
    offset: Mutex<chrono::Duration>,
}

impl Wall {
    fn new(base: DateTime<Utc>) -> Arc<Wall> {
        Arc::new(Wall {
            base,
            start: Instant::now(),
            offset: Mutex::new(chrono::Duration::zero()),
        })
    }

    fn step(&self, by: chrono::Duration) {
        *self.offset.lock().unwrap() += by;
    }
}

impl WallClock for Wall {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(Instant::now() - self.start).unwrap();
        self.base + elapsed + *self.offset.lock().unwrap()
    }
}

fn setup(wall: Arc<Wall>, policy: MisfirePolicy) -> (Clock, RuleTable, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let clock = Clock::spawn_with(
        runtime(),
        sink.clone(),
        "core.timer_sensor".into(),
        ClockOptions {
            misfire: Misfire {
                policy,
                grace: Duration::from_secs(3600),
            },
            wall: Some(wall),
            ..ClockOptions::default()
        },
    );
    let table = RuleTable::new(
        clock.clone(),
        vec!["core.crontimer".into(), "core.intervaltimer".into()],
    );
    (clock, table, sink)
}

/// The ticks a rule's events name (`scheduled_at`), in the order they were handed over.
fn ticks(sink: &Collect, rule_id: i64) -> Vec<DateTime<Utc>> {
    sink.for_rule(rule_id)
        .iter()
        .map(|e: &Event| utc(e.payload.to_map()["scheduled_at"].as_str().unwrap()))
        .collect()
}

/// A forward step of an hour (or a suspend of an hour: here the monotonic clock does not
/// move while the wall clock does): the minute cron fires once for the latest tick the step
/// skipped, then carries on on the wall clock; the interval rule keeps firing every 10 s of
/// elapsed time.
#[tokio::test(start_paused = true)]
async fn a_forward_step_or_a_suspend_is_followed() {
    let (logs, _guard) = LogCapture::start("info");
    let wall = Wall::new(utc("2026-03-26T12:00:00Z"));
    let (clock, table, sink) = setup(wall.clone(), MisfirePolicy::Latest);
    assert!(table
        .upsert(rule(
            1,
            "core.crontimer",
            json!({"expression": "0 * * * * *"})
        ))
        .await
        .is_running());
    assert!(table
        .upsert(rule(
            2,
            "core.intervaltimer",
            json!({"interval": 10, "unit": "seconds"})
        ))
        .await
        .is_running());
    tokio::time::sleep(Duration::from_millis(65_000)).await; // 12:01:05
    assert_eq!(sink.for_rule(1).len(), 1);
    assert_eq!(sink.for_rule(2).len(), 6);
    // Suspended for an hour: the wall clock jumps, the monotonic one did not move.
    wall.step(chrono::Duration::hours(1));
    tokio::time::sleep(Duration::from_millis(1_500)).await; // 13:01:06.5
    let stepped = logs.with_message_prefix("Wall clock stepped by 3600000 ms");
    assert_eq!(stepped.len(), 1, "{}", logs.text());
    let cron = ticks(&sink, 1);
    assert_eq!(
        cron,
        vec![utc("2026-03-26T12:01:00Z"), utc("2026-03-26T13:01:00Z")],
        "one catch-up fire, for the latest skipped tick"
    );
    assert_eq!(
        logs.with_message_prefix("Catch-up fire for rule 1").len(),
        1
    );
    let missed = logs.with_message_prefix("Rule 1 missed");
    assert_eq!(missed[0]["ticks_missed"], 60);
    // On: the next minute on the wall clock.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let cron = ticks(&sink, 1);
    assert_eq!(cron.last(), Some(&utc("2026-03-26T13:02:00Z")));
    assert_eq!(cron.len(), 3);
    // The interval rule: every 10 s of elapsed time, 126.5 s in all; none lost, none extra.
    assert_eq!(sink.for_rule(2).len(), 12);
    assert_eq!(clock.len(), 2);
    clock.shutdown().await;
}

/// A backward step of ten minutes: the next cron tick keeps its UTC time, so it comes ten
/// minutes of elapsed time later, and no tick fires twice.
#[tokio::test(start_paused = true)]
async fn a_backward_step_never_fires_a_tick_twice() {
    let (logs, _guard) = LogCapture::start("info");
    let wall = Wall::new(utc("2026-03-26T12:00:00Z"));
    let (clock, table, sink) = setup(wall.clone(), MisfirePolicy::All);
    assert!(table
        .upsert(rule(
            1,
            "core.crontimer",
            json!({"expression": "0 * * * * *"})
        ))
        .await
        .is_running());
    tokio::time::sleep(Duration::from_millis(61_000)).await; // 12:01:01, fired 12:01
    wall.step(-chrono::Duration::minutes(10)); // 11:51:01
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        logs.with_message_prefix("Wall clock stepped by -600000 ms")
            .len(),
        1
    );
    // 11:52 .. 12:01 pass again on the wall clock: nothing fires for them.
    tokio::time::sleep(Duration::from_secs(600)).await; // 12:01:02.5
    let cron = ticks(&sink, 1);
    assert_eq!(cron, vec![utc("2026-03-26T12:01:00Z")]);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let cron = ticks(&sink, 1);
    assert_eq!(
        cron,
        vec![utc("2026-03-26T12:01:00Z"), utc("2026-03-26T12:02:00Z")]
    );
    clock.shutdown().await;
}

/// Small differences are not steps: a wall clock that runs with the monotonic one leaves the
/// clock alone.
#[tokio::test(start_paused = true)]
async fn no_step_no_reanchor() {
    let (logs, _guard) = LogCapture::start("info");
    let wall = Wall::new(utc("2026-03-26T12:00:00Z"));
    let (clock, table, sink) = setup(wall.clone(), MisfirePolicy::Latest);
    assert!(table
        .upsert(rule(
            1,
            "core.crontimer",
            json!({"expression": "* * * * * *"})
        ))
        .await
        .is_running());
    wall.step(chrono::Duration::milliseconds(300));
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    assert!(logs.with_message_prefix("Wall clock stepped").is_empty());
    assert_eq!(sink.for_rule(1).len(), 10);
    clock.shutdown().await;
}
