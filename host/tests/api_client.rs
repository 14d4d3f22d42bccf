//! The API client against the in-process fake API: health, the paginated rules listing,
//! event creation, 401 → renew → retry, token renewal (at 80 % of a short-lived token) and
//! what the logs may never contain.

use std::time::Duration;

use attune_testkit::fake_api::{make_jwt, now_unix, FakeApi, FakeOptions};
use attune_testkit::logs::LogCapture;
use attune_timer::platform::api::{ApiClient, ApiError, DEFAULT_REQUEST_TIMEOUT};
use attune_timer::platform::renewal;
use attune_timer::platform::token::{self, TokenHandle};
use attune_timer::schedule::event::Event;
use chrono::{TimeZone, Utc};
use serde_json::json;

const ALL: [&str; 4] = [
    "core.intervaltimer",
    "core.crontimer",
    "core.datetimetimer",
    "core.rruletimer",
];

fn valid_token() -> String {
    make_jwt(now_unix() + 3600, now_unix(), None)
}

fn client(fake: &FakeApi, token: &str) -> ApiClient {
    ApiClient::new(
        &format!("{}/", fake.url()),
        TokenHandle::new(token),
        DEFAULT_REQUEST_TIMEOUT,
    )
    .unwrap()
}

fn event(rule_id: i64, trigger_ref: &str) -> Event {
    let mut payload = serde_json::Map::new();
    payload.insert("type".into(), json!("interval"));
    payload.insert("interval_seconds".into(), json!(5));
    Event {
        rule_id,
        trigger_ref: trigger_ref.into(),
        payload: payload.into(),
        scheduled_at: Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap(),
    }
}

#[tokio::test]
async fn health_ok_and_failures() {
    let fake = FakeApi::start(FakeOptions::default());
    let api = client(&fake, "t");
    api.health().await.unwrap();
    let req = &fake.requests_to("/health")[0];
    assert_eq!(req.auth_header, None, "health is called without auth");

    fake.set_health_status(503);
    let err = api.health().await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(
        err.to_string(),
        format!(
            "Failed to check API health at {}: 503 Service Unavailable",
            fake.url()
        )
    );

    // Nothing listening: a transport error naming the origin only.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = ApiClient::new(
        &format!("http://127.0.0.1:{port}/some/prefix"),
        TokenHandle::new("t"),
        Duration::from_secs(2),
    )
    .unwrap();
    let err = dead.health().await.unwrap_err();
    assert!(err.is_transient());
    assert!(
        matches!(err, ApiError::Transport { connect: true, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "Failed to check API health at http://127.0.0.1:{port}: "
        )),
        "{text}"
    );
    assert!(
        !text.contains("prefix") && !text.contains("/health"),
        "{text}"
    );
}

/// 260 interval rules (every 10th disabled) and a cron rule, listed with or without the
/// page count: with it, the pages after the first are fetched several at a time.
async fn lists_all_pages_of_enabled_rules_with(omit_page_count: bool) -> (FakeApi, ApiClient) {
    let fake = FakeApi::start(FakeOptions {
        omit_page_count,
        ..FakeOptions::default()
    });
    for id in 1..=260 {
        // Every 10th disabled: 234 enabled interval rules.
        fake.add_rule(
            id,
            "core.intervaltimer",
            json!({"interval": id}),
            id % 10 != 0,
        );
    }
    fake.add_rule(
        1000,
        "core.crontimer",
        json!({"expression": "0 * * * * *"}),
        true,
    );
    let api = client(&fake, "tok");
    let rules = api.list_active_rules("core.intervaltimer").await.unwrap();
    let ids: Vec<i64> = rules.iter().map(|r| r.id).collect();
    let want: Vec<i64> = (1..=260).filter(|id| id % 10 != 0).collect();
    assert_eq!(ids, want, "every enabled rule once, in listing order");
    assert!(rules
        .iter()
        .all(|r| r.enabled && r.trigger_ref == "core.intervaltimer"));
    let r7 = rules.iter().find(|r| r.id == 7).unwrap();
    assert_eq!(r7.r#ref, "test.rule_7");
    assert_eq!(r7.trigger_params, json!({"interval": 7}));

    let reqs = fake.requests_to("/api/v1/rules");
    let mut pages: Vec<String> = reqs
        .iter()
        .map(|r| r.query_value("page").unwrap().to_string())
        .collect();
    pages.sort();
    assert_eq!(pages, ["1", "2", "3"], "234 rules = 3 pages of 100");
    for req in &reqs {
        assert_eq!(req.query_value("trigger_ref"), Some("core.intervaltimer"));
        assert_eq!(req.query_value("enabled"), Some("true"));
        assert_eq!(req.query_value("page_size"), Some("100"));
        assert_eq!(req.auth_header.as_deref(), Some("Bearer tok"));
    }
    (fake, api)
}

#[tokio::test]
async fn lists_pages_following_has_next_without_a_page_count() {
    lists_all_pages_of_enabled_rules_with(true).await;
}

#[tokio::test]
async fn lists_all_pages_of_enabled_rules() {
    let (_fake, api) = lists_all_pages_of_enabled_rules_with(false).await;

    // An empty listing is one request and no rules.
    assert!(api
        .list_active_rules("core.rruletimer")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn disabled_rules_are_filtered_client_side() {
    let fake = FakeApi::start(FakeOptions {
        ignore_enabled_filter: true,
        ..FakeOptions::default()
    });
    for id in 1..=150 {
        fake.add_rule(
            id,
            "core.crontimer",
            json!({"expression": "* * * * * *"}),
            id % 2 == 0,
        );
    }
    let rules = client(&fake, "t")
        .list_active_rules("core.crontimer")
        .await
        .unwrap();
    assert_eq!(rules.len(), 75);
    assert!(rules.iter().all(|r| r.id % 2 == 0));
    assert_eq!(fake.requests_to("/api/v1/rules").len(), 2);
}

#[tokio::test]
async fn listing_errors() {
    let scoped = make_jwt(now_unix() + 3600, now_unix(), Some(&["core.intervaltimer"]));
    let fake = FakeApi::start(FakeOptions::default());
    let api = client(&fake, &scoped);
    // Out of the token's scope: 403, not retried.
    let err = api.list_active_rules("core.crontimer").await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(!err.is_transient());
    assert_eq!(fake.requests_to("/api/v1/rules").len(), 1);
    // A server error fails the whole listing.
    fake.fail_next_rule_lists(1, 500);
    let err = api
        .list_active_rules("core.intervaltimer")
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert!(!err.to_string().contains("SECRET-BODY"));
    assert!(!err.to_string().contains("page_size"));
    assert!(api.list_active_rules("core.intervaltimer").await.is_ok());
}

#[tokio::test]
async fn creates_events_and_classifies_failures() {
    let fake = FakeApi::start(FakeOptions::default());
    let api = client(&fake, "tok");
    let id = api
        .create_event(&event(7, "core.intervaltimer"))
        .await
        .unwrap();
    let events = fake.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, id);
    assert_eq!(
        events[0].body,
        json!({"trigger_ref": "core.intervaltimer",
               "payload": {"type": "interval", "interval_seconds": 5},
               "trigger_instance_id": "rule_7"})
    );
    assert_eq!(events[0].auth_header.as_deref(), Some("Bearer tok"));

    for status in [400, 404, 422] {
        fake.fail_next_events(1, status);
        let err = api
            .create_event(&event(8, "core.intervaltimer"))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(status));
        assert!(!err.is_transient(), "{status}");
    }
    fake.fail_next_events(1, 403);
    let err = api
        .create_event(&event(9, "core.crontimer"))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Forbidden { .. }));
    assert!(err
        .to_string()
        .contains("Insufficient permissions to create event for trigger type 'core.crontimer'"));
    fake.set_retry_after(Some(7));
    fake.fail_next_events(1, 503);
    let err = api
        .create_event(&event(9, "core.crontimer"))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    fake.fail_next_events(1, 429);
    assert!(api
        .create_event(&event(9, "core.crontimer"))
        .await
        .unwrap_err()
        .is_transient());
    // Each call was exactly one request.
    assert_eq!(fake.requests_to("/api/v1/events").len(), 7);
}

#[tokio::test]
async fn request_timeout_is_configurable() {
    let fake = FakeApi::start(FakeOptions::default());
    fake.set_event_delay(Duration::from_secs(3));
    let api = ApiClient::new(
        &fake.url(),
        TokenHandle::new("t"),
        Duration::from_millis(200),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = api
        .create_event(&event(1, "core.intervaltimer"))
        .await
        .unwrap_err();
    assert!(err.is_timeout() && err.is_transient(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn unauthorized_renews_once_and_retries_once() {
    let first = valid_token();
    let fake = FakeApi::start(FakeOptions {
        initial_token: Some(first.clone()),
        ..FakeOptions::default()
    });
    let (logs, _guard) = LogCapture::start("trace");
    fake.add_rule(1, "core.intervaltimer", json!({"interval": 1}), true);
    let api = client(&fake, &first);
    api.create_event(&event(1, "core.intervaltimer"))
        .await
        .unwrap();
    assert_eq!(fake.renewals(), 0);

    // The API stops accepting the (unexpired) token: renew, then retry with the new one.
    fake.revoke_all_tokens();
    api.create_event(&event(1, "core.intervaltimer"))
        .await
        .unwrap();
    assert_eq!(fake.renewals(), 1);
    let second = fake.issued_tokens()[0].clone();
    assert_eq!(api.token().current(), second);
    assert_eq!(api.token().generation(), 1);
    let renewal = &fake.requests_to("/auth/internal/sensor-token")[0];
    assert_eq!(renewal.auth_header, Some(format!("Bearer {first}")));
    assert_eq!(renewal.body, Some(json!({})));
    let events = fake.events();
    assert_eq!(events[1].auth_header, Some(format!("Bearer {second}")));

    // Rules listing does the same.
    fake.revoke_all_tokens();
    assert_eq!(
        api.list_active_rules("core.intervaltimer")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(fake.renewals(), 2);

    // Concurrent 401s renew once.
    fake.revoke_all_tokens();
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move { api.create_event(&event(i, "core.intervaltimer")).await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(fake.renewals(), 3);

    // A renewal that fails leaves the token alone and reports the 401.
    fake.revoke_all_tokens();
    fake.fail_next_renewals(1, 500);
    let before = api.token().current();
    let err = api
        .create_event(&event(1, "core.intervaltimer"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_transient());
    assert!(err.to_string().contains("token renewal failed"), "{err}");
    assert_eq!(api.token().current(), before);

    // Nothing logged any token, path, query or response body.
    let text = logs.text();
    assert!(!text.is_empty());
    for t in fake.issued_tokens().iter().chain([&first]) {
        let signature = t.rsplit('.').next().unwrap();
        assert!(
            !text.contains(t.as_str()) && !text.contains(signature),
            "token in logs: {text}"
        );
    }
    for leak in [
        "SECRET-BODY",
        "/api/v1",
        "/auth/internal",
        "trigger_ref=",
        "page_size",
        "Bearer",
    ] {
        assert!(!text.contains(leak), "{leak} in logs: {text}");
    }
    assert!(logs.with_message("Sensor token renewed").len() >= 3);
}

#[tokio::test]
async fn an_expired_token_is_not_renewed_on_401() {
    let expired = make_jwt(now_unix() - 10, now_unix() - 3610, None);
    let fake = FakeApi::start(FakeOptions::default());
    let api = client(&fake, &expired);
    let err = api
        .create_event(&event(1, "core.intervaltimer"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(err.to_string().contains("Token expired"), "{err}");
    assert_eq!(fake.renewals(), 0);
    assert!(fake.requests_to("/auth/internal/sensor-token").is_empty());
    // Nor is a token whose expiry can't be read.
    let fake = FakeApi::start(FakeOptions {
        initial_token: Some("valid-but-opaque".into()),
        ..FakeOptions::default()
    });
    fake.revoke_all_tokens();
    let api = client(&fake, "valid-but-opaque");
    let err = api.list_active_rules("core.crontimer").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(fake.renewals(), 0);
}

#[tokio::test]
async fn renew_token_swaps_the_token_or_keeps_the_old_one() {
    let first = make_jwt(
        now_unix() + 60,
        now_unix(),
        Some(&["core.intervaltimer", "core.crontimer"]),
    );
    let fake = FakeApi::start(FakeOptions {
        issued_token_ttl_secs: 7200,
        ..FakeOptions::default()
    });
    let api = client(&fake, &first);
    fake.fail_next_renewals(1, 503);
    let err = api.renew_token().await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(
        err.to_string(),
        format!(
            "Failed to refresh sensor token at {}: 503 Service Unavailable",
            fake.url()
        )
    );
    assert_eq!(api.token().current(), first);
    api.renew_token().await.unwrap();
    assert_ne!(api.token().current(), first);
    let claims = api.token().claims().unwrap();
    assert_eq!(claims.exp.unwrap() - claims.iat.unwrap(), 7200);
    // The new token keeps the scope.
    let handled: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        token::trigger_scope(&api.token().current(), &handled).unwrap(),
        vec!["core.intervaltimer", "core.crontimer"]
    );
}

#[tokio::test]
async fn renewal_loop_renews_at_80_percent_of_a_short_lived_token() {
    // A 3-second token: renewed 2 s after issue (floor(0.8 × 3)), and again 2 s after that.
    let now = now_unix();
    let first = make_jwt(now + 3, now, None);
    let fake = FakeApi::start(FakeOptions {
        issued_token_ttl_secs: 3,
        ..FakeOptions::default()
    });
    let (logs, _guard) = LogCapture::start("info");
    let api = client(&fake, &first);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = renewal::spawn_renewal(api.clone(), async move {
        let _ = stop_rx.await;
    });
    // The loop reads whole seconds and never wakes early: not before iat + 2 ≥ start + 1 s.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(fake.renewals(), 0, "not before 80 % of the lifetime");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.renewals() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fake.renewals() >= 2, "renewals: {}", fake.renewals());
    let issued = fake.issued_tokens();
    assert_eq!(api.token().current(), *issued.last().unwrap());
    // Each renewal presented the token it replaced.
    let renewals = fake.requests_to("/auth/internal/sensor-token");
    assert_eq!(renewals[0].auth_header, Some(format!("Bearer {first}")));
    assert_eq!(
        renewals[1].auth_header,
        Some(format!("Bearer {}", issued[0]))
    );
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    assert!(!logs
        .with_message("Token refresh manager started (will refresh at 80% of TTL)")
        .is_empty());
    assert!(!logs.text().contains(&first));
}

#[tokio::test]
async fn renewal_loop_logs_token_expired() {
    let expired = make_jwt(now_unix() - 1, now_unix() - 100, None);
    let fake = FakeApi::start(FakeOptions::default());
    let (logs, _guard) = LogCapture::start("info");
    let api = client(&fake, &expired);
    let task = renewal::spawn_renewal(api, std::future::pending());
    tokio::time::sleep(Duration::from_millis(200)).await;
    task.abort();
    let expired_logs = logs.with_message("Token expired");
    assert_eq!(expired_logs.len(), 1, "{}", logs.text());
    assert_eq!(expired_logs[0]["level"], "ERROR");
    assert_eq!(fake.renewals(), 0);
}
