//! The admin listener from outside, on a daemon running against the fake API and the real
//! RabbitMQ: `/metrics` parsed with a parser that is not the daemon's, counters that move
//! as rules fire and as the API fails, `/readyz` across a broker-side close, `/rules` with
//! a refused rule, and a listener that bad and slow clients cannot take down. No answer
//! ever contains the token.

use std::net::SocketAddr;
use std::time::Duration;

use attune_testkit::admin::{get, get_accepting, scrape, Answer};
use attune_testkit::daemon::{
    broker_connection, close_from_broker, envelope, test_env, TestDaemon,
};
use attune_testkit::fake_api::{FakeApi, FakeOptions};
use attune_testkit::wait::until;
use attune_timer::daemon::config::Settings;
use attune_timer::daemon::Daemon;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INTERVAL: &str = "core.intervaltimer";

fn assert_no_token(answer: &Answer, token: &str) {
    // The signature alone would be enough to give a token away.
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !answer.body.contains(token) && !answer.body.contains(signature),
        "an admin answer contains the token"
    );
}

async fn started(api: &FakeApi) -> (TestDaemon, SocketAddr) {
    let daemon = TestDaemon::start(api, &[]).await;
    let addr = daemon.admin.expect("the admin listener is on");
    (daemon, addr)
}

/// A rule every second, and what the fake API received of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_fires_and_deliveries_as_they_happen() {
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(7, INTERVAL, json!({"interval": 1, "unit": "seconds"}), true);
    let (daemon, addr) = started(&api).await;

    until(Duration::from_secs(15), "three events at the API", || {
        api.events().len() >= 3
    })
    .await;
    let m = scrape(addr).await;
    let fired = m.sum("attune_timer_fires_total", &[("trigger_ref", INTERVAL)]);
    assert!(fired >= 3.0, "fires counted: {fired}\n{}", m.text);
    assert_eq!(
        m.label_values("attune_timer_fires_total", "outcome")
            .iter()
            .all(|o| ["on_time", "late", "catch_up", "faulted"].contains(&o.as_str())),
        true
    );
    assert!(m.sum("attune_timer_events_delivered_total", &[]) >= 3.0);
    assert!(m.histogram_count("attune_timer_handover_lateness_seconds", &[]) >= 3.0);
    assert!(
        m.histogram_count(
            "attune_timer_api_request_duration_seconds",
            &[("endpoint", "events"), ("status_class", "2xx")]
        ) >= 3.0
    );
    assert_eq!(
        m.value(
            "attune_timer_transport_connected",
            &[("transport", "rabbitmq")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("attune_timer_rules", &[("state", "running")]),
        Some(1.0)
    );
    assert_eq!(
        m.value("attune_timer_rules", &[("state", "refused")]),
        Some(0.0)
    );
    assert_eq!(m.value("attune_timer_ready", &[]), Some(1.0));
    assert_eq!(m.value("attune_timer_store_writable", &[]), Some(1.0));
    assert!(
        m.sum(
            "attune_timer_component_calls_total",
            &[("function", "next-fire")]
        ) >= 3.0
    );
    let hash = daemon.clock.runtime().info().content_hash.clone();
    assert_eq!(
        m.value("attune_timer_component_info", &[("sha256", hash.as_str())]),
        Some(1.0),
        "{}",
        m.text
    );
    let exp = attune_timer::platform::token::TokenHandle::new(daemon.settings.api_token.clone())
        .expires_at()
        .unwrap();
    assert_eq!(
        m.value("attune_timer_token_expiry_timestamp_seconds", &[]),
        Some(exp as f64)
    );
    // Bounded labels: no series is keyed by a rule.
    assert!(!m.text.contains("rule_id"), "{}", m.text);

    // Counters only grow: another scrape a couple of fires later counts more.
    until(Duration::from_secs(10), "two more events", || {
        api.events().len() >= 5
    })
    .await;
    let later = scrape(addr).await;
    assert!(later.sum("attune_timer_fires_total", &[("trigger_ref", INTERVAL)]) > fired);
    daemon.stop().await.unwrap();
}

/// 503s are retried (and counted as retries), a 400 loses the event (and is counted as
/// lost, by reason and status class).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_retries_and_losses_when_the_api_fails() {
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(8, INTERVAL, json!({"interval": 1, "unit": "seconds"}), true);
    let (daemon, addr) = started(&api).await;
    let before = scrape(addr).await;
    assert_eq!(
        before.value(
            "attune_timer_events_failed_total",
            &[("reason", "rejected"), ("status_class", "4xx")]
        ),
        Some(0.0),
        "loss series start at 0, so their first increase shows"
    );

    api.fail_next_events(2, 503);
    until(Duration::from_secs(20), "two 503s, then a delivery", || {
        api.requests_to("/api/v1/events").len() >= 3 && !api.events().is_empty()
    })
    .await;
    let m = scrape(addr).await;
    assert!(
        m.sum(
            "attune_timer_event_retries_total",
            &[("status_class", "5xx")]
        ) >= 2.0,
        "{}",
        m.text
    );
    assert!(
        m.histogram_count(
            "attune_timer_api_request_duration_seconds",
            &[("endpoint", "events"), ("status_class", "5xx")]
        ) >= 2.0
    );

    api.fail_next_events(1, 400);
    until(Duration::from_secs(10), "a 400 answered", || {
        api.requests_to("/api/v1/events")
            .iter()
            .any(|r| r.status == 400)
    })
    .await;
    let m = scrape(addr).await;
    let lost = m.sum(
        "attune_timer_events_failed_total",
        &[("reason", "rejected"), ("status_class", "4xx")],
    );
    assert_eq!(lost, 1.0, "{}", m.text);
    daemon.stop().await.unwrap();
}

/// The broker closes the daemon's connection: not ready while it reconnects, ready again
/// once it has reconnected and re-synced; the reconnection is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_broker_connection() {
    let api = FakeApi::start(FakeOptions::default());
    let (daemon, addr) = started(&api).await;
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["transport_connected"]["ok"], true);

    let pid = broker_connection(&daemon.connection_name()).expect("the daemon's connection");
    close_from_broker(&pid);
    let mut saw_not_ready = None;
    for _ in 0..200 {
        let answer = get(addr, "/readyz").await;
        if answer.status == 503 {
            saw_not_ready = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let not_ready =
        saw_not_ready.expect("/readyz turned 503 after the broker closed the connection");
    let body = not_ready.json();
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["transport_connected"]["ok"], false, "{body}");
    assert_eq!(body["checks"]["rules_loaded"]["ok"], true);
    let m = scrape(addr).await;
    assert_eq!(m.value("attune_timer_ready", &[]), Some(0.0));
    assert_eq!(
        m.value(
            "attune_timer_transport_connected",
            &[("transport", "rabbitmq")]
        ),
        Some(0.0)
    );

    // The reconnect waits 1 s first (the reconnect policy), then re-syncs.
    let mut back = false;
    for _ in 0..150 {
        if get(addr, "/readyz").await.status == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "/readyz is 200 again after the reconnect and re-sync");
    let m = scrape(addr).await;
    assert_eq!(
        m.value(
            "attune_timer_transport_reconnects_total",
            &[("transport", "rabbitmq")]
        ),
        Some(1.0)
    );
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_shows_each_rule_and_a_refused_one_with_its_error() {
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(
        11,
        "core.crontimer",
        json!({"expression": "0 30 9 * * MON-FRI", "timezone": "Europe/Berlin"}),
        true,
    );
    api.add_rule(12, INTERVAL, json!({"interval": -5}), true);
    api.add_rule(13, INTERVAL, json!({"interval": 1, "unit": "hours"}), true);
    let (daemon, addr) = started(&api).await;
    let token = daemon.settings.api_token.clone();

    let refused = get(addr, "/rules?id=12").await;
    assert_eq!(refused.status, 200);
    assert_no_token(&refused, &token);
    let rule = &refused.json()["rules"][0];
    assert_eq!(rule["id"], 12);
    assert_eq!(rule["state"], "refused");
    assert_eq!(rule["trigger_ref"], INTERVAL);
    let error = rule["last_error"]
        .as_str()
        .expect("a refused rule says why");
    assert!(error.contains("interval"), "{error}");
    assert!(rule["next_fire_at"].is_null());

    let cron = get(addr, "/rules?id=11").await.json();
    let cron = &cron["rules"][0];
    assert_eq!(cron["state"], "running");
    assert_eq!(cron["trigger_ref"], "core.crontimer");
    assert_eq!(cron["timezone"], "Europe/Berlin");
    assert!(cron["schedule"].is_object(), "{cron}");
    assert!(cron["next_fire_at"].is_string());
    assert_eq!(cron["execution_count"], 0);
    assert!(cron["last_error"].is_null());

    // Pages in id order; a filter by state.
    let page = get(addr, "/rules?limit=2").await.json();
    let ids: Vec<i64> = page["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [11, 12]);
    assert_eq!(page["next_after"], 12);
    let rest = get(addr, "/rules?after=12&limit=2").await.json();
    assert_eq!(rest["rules"].as_array().unwrap().len(), 1);
    assert!(rest["next_after"].is_null());
    let running = get(addr, "/rules?state=running").await.json();
    assert_eq!(running["rules"].as_array().unwrap().len(), 2);
    let refused_only = get(addr, "/rules?state=refused").await.json();
    assert_eq!(refused_only["rules"][0]["id"], 12);

    assert_eq!(get(addr, "/rules?id=999").await.status, 404);
    for bad in [
        "/rules?id=x",
        "/rules?state=sleeping",
        "/rules?limit=0",
        "/rules?limit=10001",
    ] {
        let answer = get(addr, bad).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert!(answer.json()["error"].is_string());
    }
    let m = scrape(addr).await;
    assert_eq!(
        m.value("attune_timer_rules", &[("state", "refused")]),
        Some(1.0)
    );
    assert_eq!(
        m.value("attune_timer_rules", &[("state", "running")]),
        Some(2.0)
    );
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_messages_are_counted_by_type_and_result() {
    let api = FakeApi::start(FakeOptions::default());
    let (daemon, addr) = started(&api).await;
    daemon
        .publish(
            "rule.created",
            &envelope(
                "RuleCreated",
                json!({"rule_id": 21, "rule_ref": "t.r21", "trigger_ref": INTERVAL,
                       "trigger_params": {"interval": 1, "unit": "hours"}, "enabled": true,
                       "trigger_id": 3, "action_id": 5, "action_ref": "core.echo"}),
            ),
        )
        .await;
    daemon.publish_raw("rule.created", b"{ not json").await;
    assert!(daemon.drained(Duration::from_secs(10)).await);
    until(Duration::from_secs(5), "rule 21 running", || {
        daemon.clock.contains(21)
    })
    .await;
    let m = scrape(addr).await;
    assert_eq!(
        m.value(
            "attune_timer_lifecycle_messages_total",
            &[("type", "created"), ("result", "applied")]
        ),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.value(
            "attune_timer_lifecycle_messages_total",
            &[("type", "other"), ("result", "invalid")]
        ),
        Some(1.0)
    );
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_the_two_metrics_formats() {
    let api = FakeApi::start(FakeOptions::default());
    let (daemon, addr) = started(&api).await;
    let token = daemon.settings.api_token.clone();
    let health = get(addr, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    let text = get(addr, "/metrics").await;
    assert!(
        text.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        text.content_type
    );
    assert!(!text.body.contains("# EOF"));
    assert_no_token(&text, &token);
    let open = get_accepting(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert!(
        open.content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        open.content_type
    );
    assert!(open.body.trim_end().ends_with("# EOF"));
    // OpenMetrics names a counter family without its `_total`.
    assert!(open
        .body
        .contains("# TYPE attune_timer_events_delivered counter\n"));
    assert!(open
        .body
        .contains("\nattune_timer_events_delivered_total 0\n"));
    for path in ["/readyz", "/rules", "/healthz", "/"] {
        assert_no_token(&get(addr, path).await, &token);
    }
    assert_eq!(get(addr, "/nothing").await.status, 404);
    daemon.stop().await.unwrap();
}

/// Sends `bytes` on a fresh connection and reads what comes back until the server closes
/// it (or 15 s pass).
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_survives_garbage_and_slow_clients() {
    let api = FakeApi::start(FakeOptions::default());
    let (daemon, addr) = started(&api).await;

    // Garbage: a 400, and the connection closed.
    let answer = raw_exchange(
        addr,
        b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // A head over the limit: refused, not buffered.
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    huge.extend(b"\r\n\r\n");
    let answer = raw_exchange(addr, &huge).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:?}"
    );
    // Anything but GET and HEAD.
    let answer = raw_exchange(
        addr,
        b"POST /rules HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer:?}");
    assert!(answer.contains("allow: GET, HEAD"), "{answer:?}");

    // Slow clients: more than the listener serves at once, each sending half a head and
    // then nothing. Extra ones are closed at once; the rest after the head timeout (10 s).
    let mut slow = Vec::new();
    for _ in 0..80 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        slow.push(s);
    }
    let started = std::time::Instant::now();
    let mut closed = 0;
    for mut s in slow {
        let mut buf = Vec::new();
        // Read until the server closes it: it must, well within the 30 s connection cap.
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        if read.is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, 80, "every slow connection was closed by the server");
    assert!(started.elapsed() < Duration::from_secs(20));
    // And the listener still answers.
    let health = get(addr, "/healthz").await;
    assert_eq!(health.status, 200);
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_address_in_use_fails_the_start_clearly() {
    let api = FakeApi::start(FakeOptions::default());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let env = test_env(&api, &[("ATTUNE_ADMIN_ADDR", &addr)]);
    let settings = Settings::from_env(&env).unwrap();
    let err = Daemon::start(settings).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!(
            "Cannot listen on the admin address {addr} (ATTUNE_ADMIN_ADDR)"
        )),
        "{text}"
    );
    // Nothing else started: the API was not even asked for its health.
    assert!(api.requests_to("/health").is_empty());
    drop(taken);
}
