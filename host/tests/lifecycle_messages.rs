//! Rule-lifecycle messages over the real RabbitMQ (127.0.0.1:5672, guest/guest), into a
//! daemon running in-process against the fake Attune API. Each test has its own exchange
//! and queue, deleted at the end. Real time: each test takes a few seconds at most.

use std::time::Duration;

use serde_json::{json, Value};

use attune_testkit::daemon::{envelope, flat, TestDaemon};
use attune_testkit::fake_api::{FakeApi, FakeOptions};
use attune_testkit::logs::LogCapture;
use attune_testkit::machine::proc_mem;
use attune_testkit::wait::eventually;

const WAIT: Duration = Duration::from_secs(5);

fn every(seconds: u64) -> Value {
    json!({"interval": seconds, "unit": "seconds"})
}

/// The payload of a created/enabled message for an interval rule.
fn rule_payload(id: i64, params: Option<Value>) -> Value {
    let mut p = json!({
        "rule_id": id, "rule_ref": format!("test.rule_{id}"), "trigger_id": 3,
        "trigger_ref": "core.intervaltimer", "action_id": 5, "action_ref": "core.echo",
        "enabled": true,
    });
    if let Some(params) = params {
        p["trigger_params"] = params;
    }
    p
}

#[tokio::test]
async fn every_lifecycle_message_in_both_shapes() {
    let api = FakeApi::start(FakeOptions::default());
    let d = TestDaemon::start(&api, &[]).await;
    let clock = d.clock.clone();

    // API envelopes, with the message_type spellings the platform has used.
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(1, Some(every(3600)))),
    )
    .await;
    d.publish(
        "rule.enabled",
        &envelope("rule_enabled", rule_payload(2, Some(every(3600)))),
    )
    .await;
    let mut disabled = rule_payload(3, Some(every(3600)));
    disabled["enabled"] = json!(false);
    d.publish("rule.created", &envelope("rule.created", disabled))
        .await;
    assert!(eventually(WAIT, || clock.contains(1) && clock.contains(2)).await);
    d.publish(
        "rule.disabled",
        &envelope(
            "RuleDisabled",
            json!({"rule_id": 1, "rule_ref": "test.rule_1", "trigger_ref": "core.intervaltimer"}),
        ),
    )
    .await;
    d.publish("rule.deleted", &envelope("rule.deleted", json!({"rule_id": 2, "rule_ref": "test.rule_2", "trigger_id": 3, "trigger_ref": "core.intervaltimer"}))).await;
    assert!(eventually(WAIT, || !clock.contains(1) && !clock.contains(2)).await);
    assert!(!clock.contains(3), "created disabled: nothing starts");

    // The flat schema (`event_type`, `trigger_type`).
    let params = every(3600);
    d.publish("rule.created", &flat("RuleCreated", json!({"rule_id": 11, "rule_ref": "r11", "trigger_type": "core.intervaltimer", "trigger_params": params, "enabled": true}))).await;
    d.publish("rule.enabled", &flat("rule.enabled", json!({"rule_id": 12, "rule_ref": "r12", "trigger_type": "core.crontimer", "trigger_params": {"expression": "0 0 * * * *"}}))).await;
    d.publish("rule.created", &flat("rule_created", json!({"rule_id": 13, "rule_ref": "r13", "trigger_type": "core.intervaltimer", "trigger_params": params, "enabled": false}))).await;
    assert!(eventually(WAIT, || clock.contains(11) && clock.contains(12)).await);
    assert_eq!(clock.timer(12).unwrap().trigger_ref, "core.crontimer");
    d.publish(
        "rule.disabled",
        &flat(
            "RuleDisabled",
            json!({"rule_id": 11, "rule_ref": "r11", "trigger_type": "core.intervaltimer"}),
        ),
    )
    .await;
    d.publish(
        "rule.deleted",
        &flat(
            "RuleDeleted",
            json!({"rule_id": 12, "rule_ref": "r12", "trigger_type": "core.crontimer"}),
        ),
    )
    .await;
    assert!(eventually(WAIT, || !clock.contains(11) && !clock.contains(12)).await);
    assert!(!clock.contains(13));
    assert!(clock.is_empty());
    d.stop().await.unwrap();
}

#[tokio::test]
async fn disabled_and_deleted_rules_stop_firing() {
    let api = FakeApi::start(FakeOptions::default());
    let d = TestDaemon::start(&api, &[]).await;
    for id in [21, 22, 23] {
        d.publish(
            "rule.created",
            &envelope("RuleCreated", rule_payload(id, Some(every(1)))),
        )
        .await;
    }
    let fired = |api: &FakeApi, id: i64| {
        api.events()
            .iter()
            .filter(|e| e.body["trigger_instance_id"] == format!("rule_{id}"))
            .count()
    };
    assert!(eventually(WAIT, || [21, 22, 23].iter().all(|&id| fired(&api, id) >= 1)).await);
    d.publish(
        "rule.disabled",
        &envelope(
            "RuleDisabled",
            json!({"rule_id": 21, "trigger_ref": "core.intervaltimer"}),
        ),
    )
    .await;
    d.publish(
        "rule.deleted",
        &envelope(
            "RuleDeleted",
            json!({"rule_id": 22, "trigger_ref": "core.intervaltimer"}),
        ),
    )
    .await;
    assert!(eventually(WAIT, || !d.clock.contains(21) && !d.clock.contains(22)).await);
    let (n21, n22, n23) = (fired(&api, 21), fired(&api, 22), fired(&api, 23));
    // Two more seconds: rule 23 fires twice more, 21 and 22 never again. (An event already
    // handed to the outbox when the stop arrived may still land: allow one.)
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(fired(&api, 21) <= n21 + 1 && fired(&api, 22) <= n22 + 1);
    assert!(fired(&api, 23) >= n23 + 2);
    // Events carry what the API expects.
    let e = api
        .events()
        .into_iter()
        .find(|e| e.body["trigger_instance_id"] == "rule_23")
        .unwrap();
    assert_eq!(e.body["trigger_ref"], "core.intervaltimer");
    assert_eq!(e.body["payload"]["type"], "interval");
    assert_eq!(e.body["payload"]["interval_seconds"], 1);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn identical_reapply_keeps_phase_and_new_params_replace() {
    let api = FakeApi::start(FakeOptions::default());
    let d = TestDaemon::start(&api, &[]).await;
    let clock = d.clock.clone();
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(31, Some(every(1)))),
    )
    .await;
    assert!(
        eventually(WAIT, || clock
            .timer(31)
            .is_some_and(|t| t.execution_count >= 1))
        .await
    );
    let before = clock.timer(31).unwrap();

    // The same params again, in every form the platform may send them.
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(31, Some(every(1)))),
    )
    .await;
    d.publish(
        "rule.enabled",
        &envelope("RuleEnabled", rule_payload(31, Some(every(1)))),
    )
    .await;
    d.publish("rule.enabled", &flat("RuleEnabled", json!({"rule_id": 31, "rule_ref": "test.rule_31", "trigger_type": "core.intervaltimer", "trigger_params": every(1)}))).await;
    assert!(d.drained(WAIT).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = clock.timer(31).unwrap();
    assert_eq!(after.generation, before.generation, "same timer");
    assert_eq!(after.started_at, before.started_at, "same phase");
    assert!(
        after.execution_count >= before.execution_count,
        "count not reset"
    );

    // A params-only edit of an enabled rule arrives as one rule.enabled: it replaces.
    d.publish(
        "rule.enabled",
        &envelope("RuleEnabled", rule_payload(31, Some(every(7)))),
    )
    .await;
    assert!(
        eventually(WAIT, || clock
            .timer(31)
            .is_some_and(|t| t.generation != before.generation))
        .await
    );
    let replaced = clock.timer(31).unwrap();
    assert_eq!(replaced.execution_count, 0);
    assert!(replaced.started_at > before.started_at);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_messages_are_acked_and_the_consumer_carries_on() {
    let (logs, _guard) = LogCapture::start("info");
    let api = FakeApi::start(FakeOptions::default());
    let d = TestDaemon::start(&api, &[]).await;
    d.publish_raw("rule.created", b"this is not json").await;
    d.publish_raw("rule.created", b"[1, 2, 3]").await;
    d.publish_raw("rule.created", b"{\"hello\": \"world\"}")
        .await;
    d.publish("rule.created", &json!({"message_type": "RuleCreated"}))
        .await;
    d.publish(
        "rule.created",
        &envelope(
            "RuleCreated",
            json!({"rule_id": "forty-two", "trigger_params": {"password": "hunter2"}}),
        ),
    )
    .await;
    d.publish(
        "rule.enabled",
        &envelope("RuleUpdated", rule_payload(41, Some(every(3600)))),
    )
    .await;
    // Params the component refuses: logged with the component's own message (which, like
    // the platform's, may quote the params), acked, nothing else affected.
    d.publish(
        "rule.created",
        &envelope(
            "RuleCreated",
            rule_payload(42, Some(json!({"interval": "often"}))),
        ),
    )
    .await;
    // And then a good one.
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(43, Some(every(3600)))),
    )
    .await;
    assert!(
        eventually(WAIT, || d.clock.contains(43)).await,
        "the consumer carried on"
    );
    assert!(
        d.drained(WAIT).await,
        "every message was acked (none left or requeued)"
    );
    assert!(!d.clock.contains(41) && !d.clock.contains(42));
    let text = logs.text();
    let leaks: Vec<&str> = text.lines().filter(|l| l.contains("hunter2")).collect();
    assert!(
        leaks.is_empty(),
        "a malformed message's params are never logged: {leaks:#?}"
    );
    assert_eq!(
        logs.with_message("Dropping a malformed rule lifecycle message: the body is not JSON")
            .len(),
        1
    );
    let dropped = text
        .matches("Dropping a malformed rule lifecycle message")
        .count();
    assert_eq!(dropped, 5, "{text}");
    let refused = logs
        .lines()
        .into_iter()
        .filter(|l| l["rule_id"] == 42 && l["level"] == "ERROR")
        .count();
    assert_eq!(refused, 1, "the refused rule is logged with its id");
    d.stop().await.unwrap();
}

#[tokio::test]
async fn refs_out_of_scope_are_ignored() {
    let api = FakeApi::start(FakeOptions::default());
    let now = attune_testkit::fake_api::now_unix();
    let token = attune_testkit::fake_api::make_jwt(
        now + 3600,
        now,
        Some(&["core.crontimer", "core.webhook"]),
    );
    let d = TestDaemon::start(&api, &[("ATTUNE_API_TOKEN", &token)]).await;
    assert_eq!(d.rules.scope(), ["core.crontimer"]);
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(51, Some(every(1)))),
    )
    .await;
    d.publish("rule.created", &envelope("RuleCreated", json!({"rule_id": 52, "rule_ref": "w", "trigger_ref": "core.webhook", "trigger_params": {}, "enabled": true}))).await;
    d.publish("rule.created", &envelope("RuleCreated", json!({"rule_id": 53, "rule_ref": "c", "trigger_ref": "core.crontimer", "trigger_params": {"expression": "0 0 * * * *"}, "enabled": true}))).await;
    assert!(eventually(WAIT, || d.clock.contains(53)).await);
    assert!(d.drained(WAIT).await);
    assert!(!d.clock.contains(51) && !d.clock.contains(52));
    d.stop().await.unwrap();
}

#[tokio::test]
async fn an_enable_without_params_is_fetched_from_the_api() {
    let (logs, _guard) = LogCapture::start("info");
    let api = FakeApi::start(FakeOptions::default());
    let d = TestDaemon::start(&api, &[]).await;
    // Rule 61 exists (enabled) in the API; 62 does not.
    api.add_rule(61, "core.intervaltimer", every(3600), true);
    d.publish(
        "rule.enabled",
        &envelope("RuleEnabled", rule_payload(61, None)),
    )
    .await;
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(62, None)),
    )
    .await;
    assert!(
        eventually(WAIT, || d.clock.contains(61)).await,
        "fetched, not dropped"
    );
    assert!(d.drained(WAIT).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!d.clock.contains(62));
    assert_eq!(
        logs.text()
            .matches("was enabled without trigger_params")
            .count(),
        2,
        "said clearly"
    );
    d.stop().await.unwrap();
}

/// The broker closes the daemon's connection mid-run. The daemon reconnects (after 1 s) and
/// re-syncs from the REST listing, so a rule created and one deleted while it was
/// disconnected (their messages lost) are picked up; then it consumes again.
#[tokio::test]
async fn reconnects_and_resyncs_after_the_broker_closes_the_connection() {
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(71, "core.intervaltimer", every(3600), true);
    api.add_rule(72, "core.intervaltimer", every(3600), true);
    let d = TestDaemon::start(&api, &[]).await;
    assert!(d.clock.contains(71) && d.clock.contains(72));
    let kept_generation = d.clock.timer(72).unwrap().generation;
    let name = d.connection_name();
    let broker_name = attune_testkit::daemon::broker_connection(&name)
        .unwrap_or_else(|| panic!("the broker lists no connection named {name:?}"));

    attune_testkit::daemon::close_from_broker(&broker_name);
    // Changed while disconnected, with no message: only a re-sync can see these.
    api.add_rule(
        73,
        "core.crontimer",
        json!({"expression": "0 0 * * * *"}),
        true,
    );
    api.remove_rule(71);
    let listings_before = api.requests_to("/api/v1/rules").len();

    assert!(
        eventually(Duration::from_secs(8), || d.clock.contains(73)
            && !d.clock.contains(71))
        .await,
        "re-synced after reconnecting"
    );
    assert!(api.requests_to("/api/v1/rules").len() > listings_before);
    assert_eq!(
        d.clock.timer(72).unwrap().generation,
        kept_generation,
        "unchanged rules keep their timer"
    );
    let again = attune_testkit::daemon::broker_connection(&name).expect("a new connection");
    assert_ne!(again, broker_name);

    // Consuming again.
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(74, Some(every(3600)))),
    )
    .await;
    assert!(eventually(WAIT, || d.clock.contains(74)).await);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn oversize_and_invalid_messages_are_refused_clearly() {
    let (logs, _guard) = LogCapture::start("info");
    let api = FakeApi::start(FakeOptions::default());
    let d = TestDaemon::start(
        &api,
        &[
            ("ATTUNE_MAX_MESSAGE_BYTES", "2048"),
            ("ATTUNE_MAX_RULE_PARAMS_BYTES", "256"),
        ],
    )
    .await;
    let clock = d.clock.clone();

    // Over the message cap: refused unread (size and kind logged, never content).
    let mut big = rule_payload(1, Some(every(60)));
    big["padding"] = json!(format!("secret-{}", "x".repeat(3000)));
    d.publish("rule.created", &envelope("RuleCreated", big))
        .await;
    // Params over their cap; a rule id that is not positive; a spaced trigger ref.
    let mut params = every(60);
    params["note"] = json!(format!("hush-{}", "y".repeat(400)));
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(2, Some(params))),
    )
    .await;
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(0, Some(every(60)))),
    )
    .await;
    let mut spaced = rule_payload(3, Some(every(60)));
    spaced["trigger_ref"] = json!(" core.intervaltimer ");
    d.publish("rule.created", &envelope("RuleCreated", spaced))
        .await;
    d.publish(
        "rule.created",
        &envelope("RuleCreated", rule_payload(4, Some(every(60)))),
    )
    .await;
    assert!(eventually(WAIT, || clock.contains(4)).await);
    assert!(!clock.contains(1) && !clock.contains(2) && !clock.contains(3) && !clock.contains(0));

    let text = logs.text();
    assert!(
        text.contains("Refusing an oversize rule lifecycle message (broker message"),
        "{text}"
    );
    assert!(
        text.contains("over the 256-byte limit (ATTUNE_MAX_RULE_PARAMS_BYTES)"),
        "{text}"
    );
    assert!(text.contains("rule ids are positive"), "{text}");
    assert!(text.contains("has surrounding spaces"), "{text}");
    assert!(!text.contains("secret-") && !text.contains("hush-"));
    d.stop().await.unwrap();
}

/// A flood of large and malformed lifecycle messages, round after round, each with a new
/// rule id — invalid cron expressions of 2 MiB (over the default 1 MiB message cap), rules
/// with 200 KiB params (over the default 64 KiB params cap), 512 KiB of malformed JSON —
/// leaves nothing behind: memory stays flat from one round to the next, nothing of the flood
/// runs, and a rule firing every second keeps every fire, on time.
///
/// Like every test here that logs, it runs on one thread with its own capture of the logs:
/// tracing decides once per log statement which subscribers want it, and a test logging with
/// none could leave the statements it reaches first disabled for the tests that capture.
#[tokio::test]
async fn a_flood_of_large_and_malformed_messages_leaves_memory_flat_and_fires_on_time() {
    let (_logs, _guard) = LogCapture::start("info");
    let api = FakeApi::start(FakeOptions::default());
    let bootstrap = json!([
        {"id": 1, "trigger_ref": "core.intervaltimer", "config": {"interval": 1, "unit": "seconds"}}
    ])
    .to_string();
    let d = TestDaemon::start(&api, &[("ATTUNE_SENSOR_TRIGGERS", &bootstrap)]).await;
    let clock = d.clock.clone();
    // The heap of this process (the daemon runs in it): what kept messages would grow.
    let heap_kib = || proc_mem(std::process::id()).rss_anon_kib;
    let huge_expression = "*".repeat(2 * 1024 * 1024);
    let mut id = 1000;
    let mut after_round = Vec::new();
    clock.take_lateness();
    // Round after round for five seconds (twelve rounds at least, forty at most), so that
    // the rule fires several times while the flood goes on.
    let started = tokio::time::Instant::now();
    while after_round.len() < 12
        || (started.elapsed() < Duration::from_secs(5) && after_round.len() < 40)
    {
        for _ in 0..4 {
            id += 1;
            let mut cron = rule_payload(id, Some(json!({"expression": huge_expression})));
            cron["trigger_ref"] = json!("core.crontimer");
            d.publish("rule.created", &envelope("RuleCreated", cron))
                .await;
            id += 1;
            let mut params = every(60);
            params["padding"] = json!("y".repeat(200 * 1024));
            d.publish(
                "rule.created",
                &envelope("RuleCreated", rule_payload(id, Some(params))),
            )
            .await;
            let mut junk = br#"{"message_type":"RuleCreated","payload":"#.to_vec();
            junk.extend(std::iter::repeat_n(b'[', 512 * 1024));
            d.publish_raw("rule.created", &junk).await;
        }
        assert!(
            d.drained(Duration::from_secs(60)).await,
            "the daemon keeps up with the flood"
        );
        after_round.push(heap_kib());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(clock.len(), 1, "nothing of the flood runs");
    // Each round pushes 11 MiB through the daemon: kept, it would grow the heap by that
    // much per round. The first four rounds warm the allocator; over the eight or more after
    // them (88 MiB or more if kept), 32 MiB of slack is for the allocator and for the other
    // tests of this file, which share the process's heap.
    let growth_kib = after_round.last().unwrap().saturating_sub(after_round[3]);
    assert!(
        growth_kib < 32 * 1024,
        "the heap grew {growth_kib} KiB over {} rounds (KiB after each: {after_round:?})",
        after_round.len() - 4
    );

    // On time: a hand-over normally takes about a millisecond; 250 ms leaves room for a
    // loaded CI machine, while a clock held up by the flood would be seconds late.
    let lateness = clock.take_lateness();
    assert!(
        lateness.max() < 250_000_000,
        "a fire reached the outbox {} ms late during the flood",
        lateness.max() / 1_000_000
    );
    // Every fire: execution counts 1..=n all reach the API, none missed or doubled.
    let fired = clock.timer(1).expect("rule 1 runs").execution_count;
    assert!(fired >= 4, "five seconds of flood, {fired} fires");
    assert!(eventually(WAIT, || api.execution_counts(1).len() as u64 >= fired).await);
    let counts = api.execution_counts(1);
    assert_eq!(
        counts[..fired as usize],
        (1..=fired).collect::<Vec<_>>()[..],
        "every fire, once"
    );
    d.stop().await.unwrap();
}
