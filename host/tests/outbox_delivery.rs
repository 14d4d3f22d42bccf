//! The event outbox against the in-process fake API: delivery, retries of transient
//! failures, no retry of permanent ones, the full outbox, bounded concurrency and the
//! shutdown flush. Every undelivered event must be logged as `Failed to create event`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_testkit::fake_api::{make_jwt, now_unix, FakeApi, FakeOptions};
use attune_testkit::logs::LogCapture;
use attune_testkit::outbox::fast_retries as fast;
use attune_timer::platform::api::{ApiClient, DEFAULT_REQUEST_TIMEOUT};
use attune_timer::platform::outbox::{Outbox, OutboxOptions};
use attune_timer::platform::token::TokenHandle;
use attune_timer::schedule::event::{Event, EventSink};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn scheduled(rule_id: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(rule_id)
}

fn event(rule_id: i64) -> Event {
    let mut payload = serde_json::Map::new();
    payload.insert("type".into(), json!("interval"));
    payload.insert("execution_count".into(), json!(rule_id));
    Event {
        rule_id,
        trigger_ref: "core.intervaltimer".into(),
        payload: payload.into(),
        scheduled_at: scheduled(rule_id),
    }
}

fn api(fake: &FakeApi, token: &str, timeout: Duration) -> ApiClient {
    ApiClient::new(&fake.url(), TokenHandle::new(token), timeout).unwrap()
}

fn failures_for(logs: &LogCapture, rule_id: i64) -> Vec<Value> {
    logs.with_message("Failed to create event")
        .into_iter()
        .filter(|l| l["rule_id"] == rule_id)
        .collect()
}

#[tokio::test]
async fn delivers_events_and_logs_each() {
    let fake = FakeApi::start(FakeOptions::default());
    let (logs, _guard) = LogCapture::start("debug");
    let outbox = Outbox::start(api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT), fast());
    let sink: Arc<dyn EventSink> = outbox.sink();
    for id in 1..=20 {
        sink.submit(event(id));
    }
    let events = fake.wait_for_events(20, WAIT).await;
    assert_eq!(events.len(), 20);
    let mut ids: Vec<String> = events
        .iter()
        .map(|e| e.body["trigger_instance_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    let report = outbox.shutdown(Duration::from_secs(5)).await;
    assert!(report.abandoned.is_empty());
    let created = logs.with_message("Event created");
    assert_eq!(created.len(), 20);
    let one = created.iter().find(|l| l["rule_id"] == 5).unwrap();
    assert!(one["event_id"].as_i64().unwrap() >= 1000);
    assert_eq!(one["level"], "DEBUG", "per event: debug, not info");
    assert!(logs.with_message("Failed to create event").is_empty());
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered() {
    let fake = FakeApi::start(FakeOptions::default());
    let (logs, _guard) = LogCapture::start("debug");
    fake.fail_next_events(2, 503);
    let outbox = Outbox::start(api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT), fast());
    outbox.handle().submit(event(1));
    let events = fake.wait_for_events(1, WAIT).await;
    assert_eq!(events.len(), 1);
    let attempts = fake.requests_to("/api/v1/events");
    assert_eq!(
        attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 503, 201]
    );
    // 429 is transient too.
    fake.fail_next_events(1, 429);
    outbox.handle().submit(event(2));
    assert_eq!(fake.wait_for_events(2, WAIT).await.len(), 2);
    outbox.shutdown(Duration::from_secs(5)).await;
    let retries = logs.with_message("Event creation failed, retrying");
    assert_eq!(retries.len(), 3);
    assert_eq!(retries[0]["level"], "WARN");
    assert_eq!(logs.with_message("Event created")[0]["attempts"], 3);
    assert!(logs.with_message("Failed to create event").is_empty());
}

/// No attempt count: an unreachable API is retried until the event is older than the
/// outbox's maximum age, then the event is given up on and logged.
#[tokio::test]
async fn unreachable_api_is_retried_until_the_event_is_too_old() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (logs, _guard) = LogCapture::start("info");
    let client = ApiClient::new(
        &format!("http://127.0.0.1:{port}"),
        TokenHandle::new("t"),
        Duration::from_secs(2),
    )
    .unwrap();
    let outbox = Outbox::start(
        client,
        OutboxOptions {
            max_age: Duration::from_millis(600),
            ..fast()
        },
    );
    outbox.handle().submit(event(4));
    let deadline = Instant::now() + WAIT;
    while outbox.stats().failed == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failed = failures_for(&logs, 4);
    assert_eq!(failed.len(), 1, "{}", logs.text());
    assert_eq!(
        failed[0]["reason"],
        "older than the outbox's maximum age (ATTUNE_OUTBOX_MAX_AGE)"
    );
    let attempts = failed[0]["attempts"].as_u64().unwrap();
    // Retried well past the old fixed count of 10 (10–40 ms apart for 600 ms).
    assert!(attempts > 10, "{attempts} attempts");
    assert_eq!(
        logs.with_message("Event creation failed, retrying").len() as u64,
        attempts - 1
    );
    outbox.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let fake = FakeApi::start(FakeOptions::default());
    let (logs, _guard) = LogCapture::start("info");
    let outbox = Outbox::start(api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT), fast());
    for (rule_id, status) in [(40, 400), (44, 404), (42, 422)] {
        fake.fail_next_events(1, status);
        outbox.handle().submit(event(rule_id));
        let deadline = Instant::now() + WAIT;
        while failures_for(&logs, rule_id).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let failed = failures_for(&logs, rule_id);
        assert_eq!(failed.len(), 1, "{status}");
        assert_eq!(failed[0]["level"], "ERROR");
        assert_eq!(failed[0]["status"], status);
        assert_eq!(failed[0]["reason"], "not retryable");
        assert_eq!(failed[0]["trigger_ref"], "core.intervaltimer");
        assert_eq!(
            failed[0]["scheduled_at"],
            scheduled(rule_id).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        );
    }
    // 403: the contract's message, never retried.
    fake.fail_next_events(1, 403);
    outbox.handle().submit(event(43));
    let deadline = Instant::now() + WAIT;
    while failures_for(&logs, 43).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let failed = failures_for(&logs, 43);
    assert!(failed[0]["error"].as_str().unwrap().contains(
        "Insufficient permissions to create event for trigger type 'core.intervaltimer'"
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.requests_to("/api/v1/events").len(),
        4,
        "one request per event"
    );
    assert!(fake.events().is_empty());
    assert_eq!(outbox.stats().failed, 4);
    outbox.shutdown(Duration::from_secs(1)).await;
    assert!(
        !logs.text().contains("SECRET-BODY"),
        "response bodies are never logged"
    );
}

#[tokio::test]
async fn unauthorized_events_renew_the_token_and_go_through() {
    let first = make_jwt(now_unix() + 3600, now_unix(), Some(&["core.intervaltimer"]));
    let fake = FakeApi::start(FakeOptions {
        initial_token: Some(first.clone()),
        ..FakeOptions::default()
    });
    let (logs, _guard) = LogCapture::start("trace");
    fake.revoke_all_tokens();
    let outbox = Outbox::start(api(&fake, &first, DEFAULT_REQUEST_TIMEOUT), fast());
    outbox.handle().submit(event(1));
    assert_eq!(fake.wait_for_events(1, WAIT).await.len(), 1);
    assert_eq!(fake.renewals(), 1);
    outbox.shutdown(Duration::from_secs(1)).await;
    let text = logs.text();
    for t in fake.issued_tokens().iter().chain([&first]) {
        assert!(!text.contains(t.as_str()), "a token was logged");
    }
}

/// A 401 that renewing the token does not cure (an expired token, a revoked one) is the
/// token's fault, not the event's: the event waits, retried, instead of being lost.
#[tokio::test]
async fn an_uncured_401_is_retried_not_lost() {
    let token = make_jwt(now_unix() + 3600, now_unix(), Some(&["core.intervaltimer"]));
    let fake = FakeApi::start(FakeOptions {
        initial_token: Some(token.clone()),
        ..FakeOptions::default()
    });
    let (logs, _guard) = LogCapture::start("info");
    // The first attempt and its retry after the renewal are both refused.
    fake.fail_next_events(2, 401);
    let outbox = Outbox::start(api(&fake, &token, DEFAULT_REQUEST_TIMEOUT), fast());
    outbox.handle().submit(event(5));
    assert_eq!(fake.wait_for_events(1, WAIT).await.len(), 1);
    assert_eq!(fake.requests_to("/api/v1/events").len(), 3);
    assert!(
        failures_for(&logs, 5).is_empty(),
        "the event was not given up on"
    );
    let retried = logs.with_message("Event creation failed, retrying");
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert!(retried[0]["error"].as_str().unwrap().contains("401"));
    assert_eq!(outbox.stats().failed, 0);
    outbox.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_full_outbox_refuses_without_blocking_and_logs_it() {
    let fake = FakeApi::start(FakeOptions::default());
    fake.set_event_delay(Duration::from_millis(300));
    let (logs, _guard) = LogCapture::start("info");
    let outbox = Outbox::start(
        api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT),
        OutboxOptions {
            capacity: 2,
            ..fast()
        },
    );
    let sink = outbox.sink();
    let started = Instant::now();
    for id in 1..=5 {
        sink.submit(event(id));
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "submit must not block"
    );
    for id in 3..=5 {
        let failed = failures_for(&logs, id);
        assert_eq!(failed.len(), 1, "rule {id}");
        assert_eq!(failed[0]["level"], "ERROR");
        assert_eq!(failed[0]["reason"], "the outbox is full");
        assert_eq!(failed[0]["trigger_ref"], "core.intervaltimer");
        assert!(failed[0]["scheduled_at"]
            .as_str()
            .unwrap()
            .starts_with("2030-01-01T00:00:0"));
    }
    assert_eq!(fake.wait_for_events(2, WAIT).await.len(), 2);
    let stats = outbox.stats();
    assert_eq!((stats.accepted, stats.refused), (2, 3));
    // Room again once delivered.
    let deadline = Instant::now() + WAIT;
    while outbox.stats().pending > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sink.submit(event(6));
    assert_eq!(fake.wait_for_events(3, WAIT).await.len(), 3);
    outbox.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn submit_works_from_any_thread() {
    let fake = FakeApi::start(FakeOptions::default());
    let outbox = Outbox::start(api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT), fast());
    let sink = outbox.sink();
    std::thread::spawn(move || {
        for id in 1..=3 {
            sink.submit(event(id));
        }
    })
    .join()
    .unwrap();
    assert_eq!(fake.wait_for_events(3, WAIT).await.len(), 3);
    outbox.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let fake = FakeApi::start(FakeOptions::default());
    fake.set_event_delay(Duration::from_millis(100));
    let outbox = Outbox::start(
        api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT),
        OutboxOptions {
            concurrency: 2,
            ..fast()
        },
    );
    for id in 1..=8 {
        outbox.handle().submit(event(id));
    }
    assert_eq!(fake.wait_for_events(8, WAIT).await.len(), 8);
    assert_eq!(fake.max_events_in_flight(), 2);
    outbox.shutdown(Duration::from_secs(1)).await;
}

/// A burst gets more connections: from 8, one more with each success while events wait, up
/// to the cap and never past it.
#[tokio::test]
async fn concurrency_grows_under_a_burst_up_to_the_cap() {
    let fake = FakeApi::start(FakeOptions::default());
    fake.set_event_delay(Duration::from_millis(20));
    let outbox = Outbox::start(
        api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT),
        OutboxOptions {
            concurrency: 24,
            ..fast()
        },
    );
    for id in 1..=300 {
        outbox.handle().submit(event(id));
    }
    assert_eq!(fake.wait_for_events(300, WAIT).await.len(), 300);
    assert_eq!(fake.max_events_in_flight(), 24, "grew from 8 to the cap");
    assert_eq!(outbox.stats().concurrency_limit, 24);
    outbox.shutdown(Duration::from_secs(1)).await;
}

/// A 429 with `Retry-After` holds every delivery back until it has passed, not only the
/// event it answered.
#[tokio::test]
async fn retry_after_holds_every_delivery_back() {
    let fake = FakeApi::start(FakeOptions::default());
    fake.set_retry_after(Some(1));
    fake.fail_next_events(1, 429);
    let outbox = Outbox::start(
        api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT),
        OutboxOptions {
            // Retry-After is honoured up to the longest backoff.
            max_backoff: Duration::from_secs(5),
            ..fast()
        },
    );
    outbox.handle().submit(event(1));
    fake.wait_for_requests("/api/v1/events", 1, WAIT).await;
    let refused_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for id in 2..=5 {
        outbox.handle().submit(event(id));
    }
    assert_eq!(fake.wait_for_events(5, WAIT).await.len(), 5);
    let requests = fake.requests_to("/api/v1/events");
    assert_eq!(requests.len(), 6, "one 429, then each event once");
    let first_after = requests[1].received_at.duration_since(refused_at);
    assert!(
        first_after >= Duration::from_millis(900),
        "nothing was sent during the Retry-After second: the next came {first_after:?} later"
    );
    outbox.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_flushes_pending_events() {
    let fake = FakeApi::start(FakeOptions::default());
    fake.set_event_delay(Duration::from_millis(150));
    let (logs, _guard) = LogCapture::start("info");
    let outbox = Outbox::start(
        api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT),
        OutboxOptions {
            concurrency: 2,
            ..fast()
        },
    );
    let sink = outbox.sink();
    for id in 1..=6 {
        sink.submit(event(id));
    }
    let report = outbox.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.pending_at_start, 6);
    assert_eq!(report.delivered, 6);
    assert!(report.abandoned.is_empty());
    assert_eq!(fake.events().len(), 6);
    assert_eq!(logs.with_message("Event outbox flushed").len(), 1);
    // After shutdown nothing is accepted, and the refusal is logged.
    sink.submit(event(99));
    let refused = failures_for(&logs, 99);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["reason"], "the outbox is shutting down");
}

#[tokio::test]
async fn shutdown_retries_waiting_events_at_once() {
    let fake = FakeApi::start(FakeOptions::default());
    fake.fail_next_events(1, 503);
    let outbox = Outbox::start(
        api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT),
        OutboxOptions {
            // Without shutdown, the retry would come a minute later.
            initial_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(60),
            ..OutboxOptions::default()
        },
    );
    outbox.handle().submit(event(1));
    assert_eq!(
        fake.wait_for_requests("/api/v1/events", 1, WAIT)
            .await
            .len(),
        1
    );
    let started = Instant::now();
    let report = outbox.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.delivered, 1);
    assert!(report.abandoned.is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(fake.events().len(), 1);
}

#[tokio::test]
async fn shutdown_abandons_what_it_cannot_flush_in_time_and_logs_each() {
    let fake = FakeApi::start(FakeOptions::default());
    fake.set_event_delay(Duration::from_secs(5));
    let (logs, _guard) = LogCapture::start("info");
    let outbox = Outbox::start(
        api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT),
        OutboxOptions {
            concurrency: 1,
            ..fast()
        },
    );
    for id in [11, 12, 13] {
        outbox.handle().submit(event(id));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let report = outbox.shutdown(Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(report.pending_at_start, 3);
    let mut abandoned: Vec<i64> = report.abandoned.iter().map(|a| a.rule_id).collect();
    abandoned.sort();
    assert_eq!(abandoned, vec![11, 12, 13]);
    assert_eq!(
        report.abandoned[0].scheduled_at,
        scheduled(report.abandoned[0].rule_id)
    );
    for id in [11, 12, 13] {
        let failed = failures_for(&logs, id);
        assert_eq!(failed.len(), 1, "rule {id}");
        assert_eq!(failed[0]["reason"], "abandoned at shutdown");
        assert!(failed[0]["scheduled_at"].is_string());
    }
    assert_eq!(
        logs.with_message("Event outbox flush timed out; abandoned the remaining events")
            .len(),
        1
    );
}

/// A failure that is retried says so in a warning, and nothing the outbox logs reads
/// `Failed to create event`: operators alert on that line, and it means an event was lost.
#[tokio::test]
async fn a_retried_failure_never_logs_the_words_operators_alert_on() {
    let fake = FakeApi::start(FakeOptions::default());
    let (logs, _guard) = LogCapture::start("info");
    fake.fail_next_events(3, 503);
    let outbox = Outbox::start(api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT), fast());
    outbox.handle().submit(event(1));
    assert_eq!(fake.wait_for_events(1, WAIT).await.len(), 1);
    outbox.shutdown(Duration::from_secs(5)).await;
    let retries = logs.with_message("Event creation failed, retrying");
    assert_eq!(retries.len(), 3);
    assert!(
        retries[0]["error"].as_str().unwrap().contains("503"),
        "the warning says why: {}",
        retries[0]
    );
    assert!(
        !logs.text().contains("Failed to create event"),
        "{}",
        logs.text()
    );
}

/// While shutting down, the flush's time budget bounds the retries: an API that answers
/// 503 for a few seconds into the flush and then recovers within the budget still gets
/// the event.
#[tokio::test]
async fn a_shutdown_flush_retries_for_its_whole_budget() {
    let fake = FakeApi::start(FakeOptions::default());
    fake.fail_next_events(12, 503);
    let outbox = Outbox::start(
        api(&fake, "tok", DEFAULT_REQUEST_TIMEOUT),
        OutboxOptions {
            // Without shutdown, the next retry would come a minute later.
            initial_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(60),
            flush_backoff: Duration::from_millis(20),
            ..OutboxOptions::default()
        },
    );
    outbox.handle().submit(event(1));
    fake.wait_for_requests("/api/v1/events", 1, WAIT).await;
    let report = outbox.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.delivered, report.failed), (1, 0));
    assert!(report.abandoned.is_empty());
    assert_eq!(fake.events().len(), 1);
    assert_eq!(
        fake.requests_to("/api/v1/events").len(),
        13,
        "12 failures, then the event"
    );
}
