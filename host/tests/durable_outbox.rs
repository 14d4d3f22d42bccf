//! The outbox on a real state store (SQLite files in a temporary directory) against the
//! in-process fake API: what is pending survives a crash and a shutdown, a full memory
//! spills to disk and loses nothing, and the age and size limits drop exactly what they
//! say — each drop logged as `Failed to create event`, and nothing else logged so.

use std::time::{Duration, Instant};

use attune_testkit::fake_api::{FakeApi, FakeOptions};
use attune_testkit::logs::LogCapture;
use attune_testkit::outbox::fast_retries as fast;
use attune_testkit::wait::until;
use attune_timer::platform::api::{ApiClient, DEFAULT_REQUEST_TIMEOUT};
use attune_timer::platform::outbox::{Outbox, OutboxOptions};
use attune_timer::platform::token::TokenHandle;
use attune_timer::schedule::event::Event;
use attune_timer::store::{Store, StoreOptions};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn scheduled(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(n)
}

/// Event `n` of rule `n % 7`: `n` is in the payload, so arrivals can be told apart.
fn event(n: i64) -> Event {
    let mut payload = serde_json::Map::new();
    payload.insert("type".into(), json!("interval"));
    payload.insert("n".into(), json!(n));
    Event {
        rule_id: n % 7,
        trigger_ref: "core.intervaltimer".into(),
        payload: payload.into(),
        scheduled_at: scheduled(n),
    }
}

fn api(fake: &FakeApi) -> ApiClient {
    ApiClient::new(
        &fake.url(),
        TokenHandle::new("tok"),
        DEFAULT_REQUEST_TIMEOUT,
    )
    .unwrap()
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, &StoreOptions::default()).expect("open the store")
}

/// The `n`s of the events the API has, sorted.
fn arrived(fake: &FakeApi) -> Vec<i64> {
    let mut ns: Vec<i64> = fake
        .events()
        .iter()
        .map(|e| e.body["payload"]["n"].as_i64().unwrap())
        .collect();
    ns.sort_unstable();
    ns
}

/// Events pending while the API fails are journaled; the process "dies" (the outbox is
/// dropped without a shutdown, the store with it); a new outbox on the same directory
/// delivers every one of them, oldest first.
#[tokio::test]
async fn pending_events_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApi::start(FakeOptions::default());
    fake.fail_next_events(1_000_000, 503);
    let store = open(dir.path());
    let outbox = Outbox::start_durable(api(&fake), fast(), store.clone())
        .await
        .unwrap();
    let sink = outbox.handle();
    for n in 1..=40 {
        attune_timer::schedule::EventSink::submit(&sink, event(n));
    }
    // Every event has been tried (and so journaled) at least once.
    until(WAIT, "every event tried", || {
        let tried: std::collections::HashSet<i64> = fake
            .requests_to("/api/v1/events")
            .iter()
            .filter_map(|r| r.body.as_ref().and_then(|b| b["payload"]["n"].as_i64()))
            .collect();
        tried.len() == 40
    })
    .await;
    // Undelivered events are journaled within JOURNAL_AFTER (100 ms).
    let deadline = Instant::now() + WAIT;
    while store.journal_summary().await.unwrap().events < 40 {
        assert!(Instant::now() < deadline, "every pending event journaled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(outbox);
    drop(sink);
    store.close().await;
    drop(store);

    let fake2 = FakeApi::start(FakeOptions::default());
    let (logs, _guard) = LogCapture::start("info");
    let store = open(dir.path());
    let outbox = Outbox::start_durable(api(&fake2), fast(), store.clone())
        .await
        .unwrap();
    assert_eq!(fake2.wait_for_events(40, WAIT).await.len(), 40);
    assert_eq!(arrived(&fake2), (1..=40).collect::<Vec<_>>());
    assert!(logs
        .text()
        .contains("Delivering 40 events left in the state store by an earlier run"));
    let report = outbox.shutdown(Duration::from_secs(2)).await;
    assert_eq!(report.kept, 0);
    assert_eq!(
        store.journal_summary().await.unwrap().events,
        0,
        "delivered ones leave the journal"
    );
    assert!(!logs.text().contains("Failed to create event"));
    store.close().await;
}

/// A shutdown that cannot deliver within its budget keeps what is left for the next start
/// (no loss, so no `Failed to create event`), and the next start delivers it.
#[tokio::test]
async fn shutdown_keeps_what_it_cannot_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApi::start(FakeOptions::default());
    fake.fail_next_events(1_000_000, 503);
    let (logs, _guard) = LogCapture::start("info");
    let store = open(dir.path());
    let outbox = Outbox::start_durable(api(&fake), fast(), store.clone())
        .await
        .unwrap();
    for n in 1..=12 {
        attune_timer::schedule::EventSink::submit(&outbox.handle(), event(n));
    }
    fake.wait_for_requests("/api/v1/events", 12, WAIT).await;
    let report = outbox.shutdown(Duration::from_millis(300)).await;
    assert_eq!((report.kept, report.delivered), (12, 0));
    assert!(report.abandoned.is_empty());
    assert!(logs
        .text()
        .contains("Outbox events kept for the next start: 12 events stay in the state store"));
    assert!(
        !logs.text().contains("Failed to create event"),
        "{}",
        logs.text()
    );
    store.close().await;
    drop(store);

    let fake2 = FakeApi::start(FakeOptions::default());
    let store = open(dir.path());
    let outbox = Outbox::start_durable(api(&fake2), fast(), store.clone())
        .await
        .unwrap();
    fake2.wait_for_events(12, WAIT).await;
    assert_eq!(arrived(&fake2), (1..=12).collect::<Vec<_>>());
    outbox.shutdown(Duration::from_secs(1)).await;
    store.close().await;
}

/// With room in memory for 4 events and a slow API, 300 events are spilled to disk and
/// loaded back as room frees up: none is refused, all arrive, the memory bound holds.
#[tokio::test]
async fn a_full_memory_spills_to_disk_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApi::start(FakeOptions::default());
    fake.set_event_delay(Duration::from_millis(2));
    let (logs, _guard) = LogCapture::start("info");
    let store = open(dir.path());
    let outbox = Outbox::start_durable(
        api(&fake),
        OutboxOptions {
            capacity: 4,
            ..fast()
        },
        store.clone(),
    )
    .await
    .unwrap();
    let sink = outbox.handle();
    let mut most_in_memory = 0;
    for n in 1..=300 {
        attune_timer::schedule::EventSink::submit(&sink, event(n));
        most_in_memory = most_in_memory.max(outbox.stats().pending);
    }
    assert!(outbox.stats().spilled > 0, "some went to disk");
    assert_eq!(fake.wait_for_events(300, WAIT).await.len(), 300);
    assert_eq!(arrived(&fake), (1..=300).collect::<Vec<_>>());
    let stats = outbox.stats();
    assert_eq!((stats.refused, stats.failed, stats.spilled), (0, 0, 0));
    assert!(most_in_memory <= 4, "{most_in_memory} in memory");
    assert!(!logs.text().contains("Failed to create event"));
    outbox.shutdown(Duration::from_secs(1)).await;
    store.close().await;
}

/// No attempt count: while the API keeps failing, nothing is dropped before the maximum
/// age; then every event is dropped, each logged with its reason, and the journal is empty.
#[tokio::test]
async fn events_wait_until_the_maximum_age_then_each_drop_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApi::start(FakeOptions::default());
    fake.fail_next_events(1_000_000, 503);
    let (logs, _guard) = LogCapture::start("info");
    let store = open(dir.path());
    let max_age = Duration::from_secs(2);
    let outbox = Outbox::start_durable(
        api(&fake),
        OutboxOptions { max_age, ..fast() },
        store.clone(),
    )
    .await
    .unwrap();
    let accepted = Instant::now();
    for n in 1..=10 {
        attune_timer::schedule::EventSink::submit(&outbox.handle(), event(n));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        outbox.stats().failed,
        0,
        "nothing dropped before the age limit"
    );
    assert!(
        fake.requests_to("/api/v1/events").len() > 100,
        "retried all along"
    );
    until(WAIT, "all dropped", || outbox.stats().failed == 10).await;
    assert!(accepted.elapsed() >= max_age);
    let lost = logs.with_message("Failed to create event");
    assert_eq!(lost.len(), 10, "{}", logs.text());
    for line in &lost {
        assert_eq!(
            line["reason"],
            "older than the outbox's maximum age (ATTUNE_OUTBOX_MAX_AGE)"
        );
    }
    assert_eq!(store.journal_summary().await.unwrap().events, 0);
    outbox.shutdown(Duration::from_secs(1)).await;
    store.close().await;
}

/// Over its byte limit the journal drops its oldest events first — exactly as many as it
/// takes to get under the limit — and logs each.
#[tokio::test]
async fn over_the_size_limit_the_oldest_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApi::start(FakeOptions::default());
    fake.fail_next_events(1_000_000, 503);
    let (logs, _guard) = LogCapture::start("info");
    let store = open(dir.path());
    // Each event counts its payload and trigger ref: {"type":"interval","n":NN} is 26
    // bytes for n = 10..=99, plus 18 for "core.intervaltimer": 44 bytes.
    let per_event = 44;
    let outbox = Outbox::start_durable(
        api(&fake),
        OutboxOptions {
            max_bytes: 20 * per_event,
            ..fast()
        },
        store.clone(),
    )
    .await
    .unwrap();
    for n in 10..40 {
        attune_timer::schedule::EventSink::submit(&outbox.handle(), event(n));
    }
    until(WAIT, "10 dropped", || outbox.stats().failed == 10).await;
    let lost = logs.with_message("Failed to create event");
    let mut dropped: Vec<i64> = lost
        .iter()
        .map(|l| {
            assert!(l["reason"]
                .as_str()
                .unwrap()
                .contains("ATTUNE_OUTBOX_MAX_BYTES"));
            DateTime::parse_from_rfc3339(l["scheduled_at"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc)
        })
        .map(|t| (t - scheduled(0)).num_seconds())
        .collect();
    dropped.sort_unstable();
    assert_eq!(dropped, (10..20).collect::<Vec<_>>(), "the oldest ten");
    let summary = store.journal_summary().await.unwrap();
    assert_eq!((summary.events, summary.bytes), (20, 20 * per_event));
    outbox.shutdown(Duration::from_millis(100)).await;
    store.close().await;
}

/// A store that cannot be written (here: full, through SQLite's own page limit, the same
/// error a full disk gives) is reported loudly once; events are still delivered from
/// memory; once it can be written again, it says so.
#[tokio::test]
async fn an_unwritable_store_keeps_delivering_from_memory_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApi::start(FakeOptions::default());
    fake.fail_next_events(1_000_000, 503);
    let (logs, _guard) = LogCapture::start("info");
    let store = Store::open(
        dir.path(),
        &StoreOptions {
            max_pages: Some(8),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let outbox = Outbox::start_durable(api(&fake), fast(), store.clone())
        .await
        .unwrap();
    // Payloads of 4 KiB: 8 pages fill after a few.
    for n in 0..20 {
        let mut e = event(n);
        let mut payload = serde_json::Map::new();
        payload.insert("n".into(), json!(n));
        payload.insert("pad".into(), json!("x".repeat(4096)));
        e.payload = payload.into();
        attune_timer::schedule::EventSink::submit(&outbox.handle(), e);
    }
    until(WAIT, "the write fails", || !store.is_writable()).await;
    let failures = logs.with_message(
        "State store write failed: events and rule state are kept in memory only until it \
         recovers (a crash or restart now loses them)",
    );
    assert_eq!(failures.len(), 1, "said once, not per write");
    assert_eq!(failures[0]["level"], "ERROR");
    assert!(
        failures[0]["error"].as_str().unwrap().contains("full"),
        "{}",
        failures[0]
    );
    // The API comes back: every event is delivered from memory.
    fake.clear_event_failures();
    assert_eq!(fake.wait_for_events(20, WAIT).await.len(), 20);
    // Deliveries empty the journal: writes succeed again, and it says so.
    until(WAIT, "writable again", || store.is_writable()).await;
    assert!(logs.text().contains("State store writable again"));
    assert!(!logs.text().contains("Failed to create event"));
    outbox.shutdown(Duration::from_secs(1)).await;
    store.close().await;
}
