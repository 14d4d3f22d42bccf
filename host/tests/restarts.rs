//! Restarts on a real state store, with the daemon in-process against the fake API and the
//! real RabbitMQ: an interval keeps its phase and `execution_count`, the ticks missed while
//! it was down go through the misfire policy (skip, latest, all), a one-shot due during the
//! downtime fires once, and rules that went away are forgotten. Real time: a few seconds of
//! downtime per test.

use std::path::Path;
use std::time::Duration;

use attune_testkit::daemon::TestDaemon;
use attune_testkit::fake_api::{FakeApi, FakeOptions, RecordedEvent};
use attune_testkit::logs::LogCapture;
use attune_testkit::wait::until;
use chrono::{DateTime, Utc};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// The tick an event is for: `scheduled_at` (cron), `fire_at` (one-shot), or for an
/// interval `fired_at`, which is the tick itself when the fire was on time.
fn scheduled_at(e: &RecordedEvent) -> DateTime<Utc> {
    let p = &e.body["payload"];
    let text = ["scheduled_at", "fire_at", "fired_at"]
        .iter()
        .find_map(|k| p[k].as_str())
        .unwrap();
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn count(e: &RecordedEvent) -> u64 {
    e.body["payload"]["execution_count"].as_u64().unwrap()
}

async fn start(api: &FakeApi, dir: &Path, misfire: &str) -> TestDaemon {
    TestDaemon::start(
        api,
        &[
            ("ATTUNE_STATE_DIR", dir.to_str().unwrap()),
            ("ATTUNE_MISFIRE", misfire),
        ],
    )
    .await
}

/// Runs rule 1 (an interval or a cron rule, due every second) until it fired twice, stops,
/// stays down `down`, restarts with `misfire`, and returns the events of both runs, when
/// the second began and how many events the first run sent.
async fn down_and_up(
    cron: bool,
    misfire: &str,
    down: Duration,
) -> (Vec<RecordedEvent>, DateTime<Utc>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(FakeOptions::default());
    if cron {
        api.add_rule(
            1,
            "core.crontimer",
            json!({"expression": "* * * * * *"}),
            true,
        );
    } else {
        api.add_rule(
            1,
            "core.intervaltimer",
            json!({"interval": 1, "unit": "seconds"}),
            true,
        );
    }
    let d = start(&api, dir.path(), misfire).await;
    api.wait_for_events(2, WAIT).await;
    d.stop().await.unwrap();
    let before = api.events().len();
    tokio::time::sleep(down).await;
    let restarted = Utc::now();
    let d = start(&api, dir.path(), misfire).await;
    api.wait_for_events(before + 3, WAIT).await;
    d.stop().await.unwrap();
    (api.events(), restarted, before)
}

/// `skip`: nothing for the missed ticks; the count carries on and an interval keeps its
/// phase (every fire, before and after, on the first run's grid, within the 5 ms an
/// on-time fire may take).
#[tokio::test]
async fn restart_keeps_the_phase_and_count_and_skip_fires_nothing_missed() {
    let (logs, _guard) = LogCapture::start("info");
    let (events, restarted, before) = down_and_up(false, "skip", Duration::from_millis(3500)).await;
    let first = scheduled_at(&events[0]);
    for e in &events {
        let off_grid = (scheduled_at(e) - first)
            .num_milliseconds()
            .rem_euclid(1000);
        assert!(
            off_grid <= 5 || off_grid >= 995,
            "{off_grid} ms off the first run's grid: {}",
            e.body
        );
    }
    let after = &events[before..];
    assert!(
        after.iter().all(|e| scheduled_at(e) > restarted),
        "no catch-up under skip"
    );
    assert_eq!(
        count(&after[0]),
        count(&events[before - 1]) + 1,
        "the count carries on"
    );
    // Ticks kept on the grid: the first fire after the restart is within a second of it.
    assert!(scheduled_at(&after[0]) - restarted <= chrono::Duration::milliseconds(1100));
    let missed = logs.with_message_prefix("Rule 1 missed");
    assert_eq!(missed.len(), 1, "{}", logs.text());
    assert_eq!(missed[0]["misfire"], "skip");
    assert!(missed[0]["ticks_missed"].as_u64().unwrap() >= 3);
    assert!(logs.with_message_prefix("Catch-up fire").is_empty());
}

/// `latest` (the default): one catch-up fire for the most recent missed tick, logged with
/// the number of ticks it stands for; then the schedule carries on.
#[tokio::test]
async fn latest_fires_the_most_recent_missed_tick_once() {
    let (logs, _guard) = LogCapture::start("info");
    let (events, restarted, before) =
        down_and_up(true, "latest", Duration::from_millis(3500)).await;
    let after = &events[before..];
    let catch_up: Vec<_> = after
        .iter()
        .filter(|e| scheduled_at(e) < restarted)
        .collect();
    assert_eq!(catch_up.len(), 1, "one catch-up fire");
    assert_eq!(count(catch_up[0]), count(&events[before - 1]) + 1);
    // The most recent missed tick: less than one interval before the restart.
    assert!(restarted - scheduled_at(catch_up[0]) <= chrono::Duration::milliseconds(1100));
    let lines = logs.with_message_prefix("Catch-up fire for rule 1");
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert!(lines[0]["ticks_missed"].as_u64().unwrap() >= 3);
}

/// `all`: every missed tick fires, in order; across both runs each tick fired exactly once
/// and the counts run without a gap.
#[tokio::test]
async fn all_fires_every_missed_tick_in_order() {
    let (logs, _guard) = LogCapture::start("info");
    let (events, _restarted, _) = down_and_up(true, "all", Duration::from_millis(3500)).await;
    let ticks: Vec<DateTime<Utc>> = events.iter().map(scheduled_at).collect();
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(1), "{ticks:?}");
    }
    let counts: Vec<u64> = events.iter().map(count).collect();
    assert_eq!(counts, (1..=counts.len() as u64).collect::<Vec<_>>());
    let missed = logs.with_message_prefix("Rule 1 missed");
    assert_eq!(missed.len(), 1, "{}", logs.text());
    let fires = missed[0]["catch_up_fires"].as_u64().unwrap();
    assert!(fires >= 3, "{}", missed[0]);
    assert_eq!(
        logs.with_message_prefix("Catch-up fire for rule 1").len() as u64,
        fires,
        "each catch-up fire logged"
    );
}

/// A one-shot whose time passed while the daemon was down fires once on start; after it
/// fired, another restart does not fire it again.
#[tokio::test]
async fn a_one_shot_due_during_downtime_fires_once() {
    // Every test here captures its logs: a test logging with no subscriber could leave the
    // log lines of the tests beside it disabled.
    let (_logs, _guard) = LogCapture::start("info");
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(FakeOptions::default());
    let fire_at = Utc::now() + chrono::Duration::seconds(2);
    api.add_rule(
        7,
        "core.datetimetimer",
        json!({"fire_at": fire_at.to_rfc3339()}),
        true,
    );
    let d = start(&api, dir.path(), "latest").await;
    d.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(api.events().is_empty());
    let d = start(&api, dir.path(), "latest").await;
    let events = api.wait_for_events(1, WAIT).await;
    assert_eq!(scheduled_at(&events[0]), fire_at.with_timezone(&Utc));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.stop().await.unwrap();
    let d = start(&api, dir.path(), "latest").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.stop().await.unwrap();
    assert_eq!(api.events().len(), 1, "fired once in all");
}

/// A rule deleted while the daemon was down: its saved state goes at the first snapshot.
#[tokio::test]
async fn rules_gone_while_down_are_forgotten() {
    // Every test here captures its logs: a test logging with no subscriber could leave the
    // log lines of the tests beside it disabled.
    let (_logs, _guard) = LogCapture::start("info");
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(FakeOptions::default());
    for id in [1, 2] {
        api.add_rule(
            id,
            "core.intervaltimer",
            json!({"interval": 1, "unit": "seconds"}),
            true,
        );
    }
    let d = start(&api, dir.path(), "latest").await;
    api.wait_for_events(2, WAIT).await;
    d.stop().await.unwrap();
    assert_eq!(saved_rules(dir.path()), vec![1, 2]);
    api.remove_rule(2);
    let d = start(&api, dir.path(), "latest").await;
    until(WAIT, "rule 2 forgotten", || {
        saved_rules(dir.path()) == vec![1]
    })
    .await;
    d.stop().await.unwrap();
}

/// The rule ids with a saved state, read with SQLite directly (the daemon's lock is on a
/// separate file; WAL lets a reader in beside the writer).
fn saved_rules(dir: &Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT rule_id FROM rule_state ORDER BY rule_id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
