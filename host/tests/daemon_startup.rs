//! The daemon's startup and shutdown, in-process, against the fake Attune API and the real
//! RabbitMQ (127.0.0.1:5672, guest/guest). Real time; a few seconds per test at most.

use std::time::Duration;

use serde_json::json;

use attune_testkit::daemon::{test_env, Broker, TestDaemon};
use attune_testkit::fake_api::{make_jwt, now_unix, FakeApi, FakeOptions};
use attune_testkit::logs::LogCapture;
use attune_timer::daemon::config::Settings;
use attune_timer::daemon::Daemon;
use attune_timer::platform::lifecycle::ListenerConfig;

/// A rule far in the future, so nothing fires during the test.
fn quiet_params(trigger_ref: &str, n: i64) -> serde_json::Value {
    match trigger_ref {
        "core.intervaltimer" => json!({"interval": 3600 + n, "unit": "seconds"}),
        "core.crontimer" => {
            json!({"expression": format!("0 {} 3 * * *", n % 60), "timezone": "Europe/Berlin"})
        }
        "core.datetimetimer" => json!({"fire_at": "2099-01-01T00:00:00Z"}),
        _ => json!({"rule": "FREQ=DAILY;BYHOUR=3", "dtstart": "2026-01-01T03:00:00Z"}),
    }
}

#[tokio::test]
async fn startup_loads_every_page_of_every_ref_and_the_bootstrap_rules() {
    let (logs, _guard) = LogCapture::start("debug");
    let api = FakeApi::start(FakeOptions::default());
    let mut id = 0;
    for (trigger_ref, count) in [
        ("core.intervaltimer", 130),
        ("core.crontimer", 101),
        ("core.datetimetimer", 20),
        ("core.rruletimer", 10),
    ] {
        for _ in 0..count {
            id += 1;
            api.add_rule(id, trigger_ref, quiet_params(trigger_ref, id), true);
        }
    }
    // Disabled rules and rules of other triggers are not run.
    api.add_rule(
        5001,
        "core.intervaltimer",
        quiet_params("core.intervaltimer", 1),
        false,
    );
    api.add_rule(5002, "core.webhook", json!({}), true);
    let bootstrap = json!([
        {"id": 9001, "trigger_ref": "core.intervaltimer", "config": {"interval": 3600}},
        {"id": 9002, "config": {"expression": "0 0 4 * * *"}},
        {"id": 9003, "ref": "ignored", "config": {"interval": "bad"}}
    ])
    .to_string();
    let d = TestDaemon::start(&api, &[("ATTUNE_SENSOR_TRIGGERS", &bootstrap)]).await;

    assert_eq!(
        d.clock.len(),
        261 + 2,
        "every page of every ref, and the good bootstrap rules"
    );
    assert!(!d.clock.contains(5001) && !d.clock.contains(5002) && !d.clock.contains(9003));
    assert_eq!(
        d.clock.timer(9002).unwrap().trigger_ref,
        "core.crontimer",
        "inferred"
    );
    let pages: Vec<(String, String)> = api
        .requests_to("/api/v1/rules")
        .iter()
        .map(|r| {
            assert_eq!(r.query_value("enabled"), Some("true"));
            assert_eq!(r.query_value("page_size"), Some("100"));
            (
                r.query_value("trigger_ref").unwrap().to_string(),
                r.query_value("page").unwrap().to_string(),
            )
        })
        .collect();
    for (r, page) in [
        ("core.intervaltimer", "1"),
        ("core.intervaltimer", "2"),
        ("core.crontimer", "1"),
        ("core.crontimer", "2"),
        ("core.datetimetimer", "1"),
        ("core.rruletimer", "1"),
    ] {
        assert!(
            pages.contains(&(r.to_string(), page.to_string())),
            "{r} page {page}: {pages:?}"
        );
    }
    // The order of the startup: health, broker (bound and consuming), then the listing.
    let messages: Vec<String> = logs
        .lines()
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect();
    let at = |m: &str| {
        messages
            .iter()
            .position(|x| x.starts_with(m))
            .unwrap_or_else(|| panic!("no log line {m:?}"))
    };
    assert!(at("API connectivity verified") < at("Timer component loaded"));
    assert!(at("Timer component loaded") < at("Connected to RabbitMQ"));
    assert!(at("Connected to RabbitMQ") < at("Fetched rules page"));
    assert!(at("Fetched rules page") < at("Timer sensor ready"));
    let ready = logs.with_message("Timer sensor ready: 263 rules running");
    assert_eq!(ready[0]["rules_running"], 263);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_health_check_is_fatal() {
    let api = FakeApi::start(FakeOptions::default());
    api.set_health_status(503);
    let settings = Settings::from_env(&test_env(&api, &[])).unwrap();
    let err = Daemon::start(settings).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.starts_with("Failed to connect to Attune API: "),
        "{text}"
    );
    assert!(text.contains("503"), "says why: {text}");
}

#[tokio::test]
async fn an_unreachable_broker_is_fatal() {
    let api = FakeApi::start(FakeOptions::default());
    let settings = Settings::from_env(&test_env(
        &api,
        &[("ATTUNE_MQ_URL", "amqp://guest:guest@127.0.0.1:1/%2f")],
    ))
    .unwrap();
    let err = Daemon::start(settings).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.starts_with("Failed to connect to RabbitMQ at amqp://127.0.0.1:1"),
        "{text}"
    );
    assert!(!text.contains("guest:guest"), "no credentials: {text}");
}

#[tokio::test]
async fn the_token_scope_limits_what_is_listed_and_run() {
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(
        1,
        "core.intervaltimer",
        quiet_params("core.intervaltimer", 1),
        true,
    );
    api.add_rule(2, "core.crontimer", quiet_params("core.crontimer", 2), true);
    let now = now_unix();
    let token = make_jwt(now + 3600, now, Some(&["core.crontimer"]));
    let d = TestDaemon::start(&api, &[("ATTUNE_API_TOKEN", &token)]).await;
    assert!(d.clock.contains(2) && !d.clock.contains(1));
    assert!(api
        .requests_to("/api/v1/rules")
        .iter()
        .all(|r| r.query_value("trigger_ref") == Some("core.crontimer")));
    d.stop().await.unwrap();

    // No overlap at all: refused at startup.
    let token = make_jwt(now + 3600, now, Some(&["core.webhook"]));
    let settings = Settings::from_env(&test_env(&api, &[("ATTUNE_API_TOKEN", &token)])).unwrap();
    let err = Daemon::start(settings).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("Sensor token scope does not allow any lifecycle trigger refs"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_failed_rules_listing_at_startup_is_fatal_and_leaves_nothing_running() {
    let api = FakeApi::start(FakeOptions::default());
    api.fail_next_rule_lists(1, 500);
    let settings = Settings::from_env(&test_env(&api, &[])).unwrap();
    let queue = format!("sensor.{}", settings.sensor_ref);
    let exchange = settings.mq_exchange.clone();
    let err = Daemon::start(settings).await.unwrap_err();
    assert!(
        format!("{err:#}").starts_with("Failed to load active rules from the Attune API"),
        "{err:#}"
    );
    let broker = Broker::connect().await;
    broker.delete(&queue, &exchange).await;
    broker.close().await;
}

/// SIGTERM-style shutdown (the shutdown future resolves) delivers the events still pending:
/// the API answers slowly, so when shutdown starts the fired events are still in flight.
#[tokio::test]
async fn shutdown_flushes_pending_events() {
    let (logs, _guard) = LogCapture::start("debug");
    let api = FakeApi::start(FakeOptions::default());
    for id in 1..=5 {
        api.add_rule(id, "core.intervaltimer", json!({"interval": 1}), true);
    }
    api.set_event_delay(Duration::from_millis(1500));
    let d = TestDaemon::start(&api, &[]).await;
    // All five fire at ~1 s; their posts take 1.5 s each.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while logs.with_message("Timer fired for rule").len() < 5 {
        assert!(tokio::time::Instant::now() < deadline, "the rules fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(api.events().len() < 5, "still pending when shutdown starts");
    d.stop().await.unwrap();
    let fired = logs.with_message("Timer fired for rule").len();
    assert_eq!(
        api.events().len(),
        fired,
        "every fired event was delivered before exit"
    );
    let messages: Vec<String> = logs
        .lines()
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect();
    let at = |m: &str| {
        messages
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("no {m:?}"))
    };
    assert!(at("Shutting down") < at("Stopped consuming rule lifecycle messages"));
    assert!(at("Stopped consuming rule lifecycle messages") < at("Outbox flushed"));
    assert!(at("Outbox flushed") < at("Timer sensor has shut down gracefully"));
    assert!(!logs.text().contains("Failed to create event"));
}

/// The environment of a daemon with one rule firing every second from the start.
fn busy_env(api: &FakeApi) -> std::collections::HashMap<String, String> {
    let bootstrap = json!([
        {"id": 1, "trigger_ref": "core.intervaltimer", "config": {"interval": 1, "unit": "seconds"}}
    ])
    .to_string();
    test_env(api, &[("ATTUNE_SENSOR_TRIGGERS", &bootstrap)])
}

/// Waits (at most 10 s: aborted tasks and the HTTP client's connection tasks end within
/// moments, even on a loaded CI machine) for the runtime's live tasks to drop to `n`.
async fn live_tasks_settle_to(n: usize) -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.num_alive_tasks() > n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    metrics.num_alive_tasks()
}

/// A start that fails halfway — connected to the broker, with the clock, the outbox and
/// token renewal running and a rule firing, when the rules listing fails — stops everything
/// it started: afterwards the runtime has no more live tasks than before, but for what the
/// broker client itself leaves behind a closed connection (measured here on a connection of
/// the test's own: lapin keeps one task per closed connection until its next heartbeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_halfway_leaves_no_task_running() {
    let api = FakeApi::start(FakeOptions::default());
    // 403 is not retried: the first listing fails the start.
    api.fail_next_rule_lists(100, 403);
    let env = busy_env(&api);
    let settings = Settings::from_env(&env).expect("test settings");
    let (queue, exchange) = (
        format!("sensor.{}", settings.sensor_ref),
        settings.mq_exchange.clone(),
    );
    let metrics = tokio::runtime::Handle::current().metrics();
    let probe_config = ListenerConfig::new(&settings.mq_url, &exchange, &settings.sensor_ref);
    let idle = metrics.num_alive_tasks();
    let probe = attune_timer::platform::lifecycle::connect(&probe_config)
        .await
        .expect("the test broker");
    probe.close(&probe_config.consumer_tag).await;
    let residue = live_tasks_settle_to(idle).await - idle;
    let before = metrics.num_alive_tasks();

    let err = Daemon::start(settings)
        .await
        .expect_err("the listing fails");
    assert!(
        format!("{err:#}").contains("Failed to load active rules"),
        "{err:#}"
    );
    let left = live_tasks_settle_to(before + residue).await;
    attune_testkit::daemon::delete_now(queue, exchange);
    assert_eq!(
        left,
        before + residue,
        "tasks left running after a failed start (the broker client's own: {residue})"
    );
}

/// A start that fails because the broker cannot be reached, after the clock had started
/// firing a rule, leaves no timer firing: no event reaches the API afterwards. (The broker
/// client itself keeps a task or two after a refused connection; that is its own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_a_broker_stops_its_clock() {
    let api = FakeApi::start(FakeOptions::default());
    let mut env = busy_env(&api);
    // Port 1 on loopback: nothing listens there, so connecting is refused at once.
    env.insert(
        "ATTUNE_MQ_URL".into(),
        "amqp://guest:guest@127.0.0.1:1/%2f".into(),
    );
    let settings = Settings::from_env(&env).expect("test settings");
    let err = Daemon::start(settings).await.expect_err("no broker");
    assert!(
        format!("{err:#}").contains("Failed to connect to RabbitMQ"),
        "{err:#}"
    );
    let sent = api.events().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(api.events().len(), sent, "a timer still fires");
}
