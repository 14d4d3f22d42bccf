//! The sandbox against hostile components, one misbehaviour at a time, at the runtime level
//! (see `hostile_daemon.rs` for the same under the running clock). Complements `sandbox.rs`.
//!
//! Fixtures (built by build.rs from `fixtures/`):
//! - `hostile-timer`: traps / loops / grows / lies for the rule whose params ask it to;
//! - `stuck-timer`: spins forever in `describe`;
//! - `snoop-timer`: tries files, environment, sockets, DNS and clocks, and reports;
//! - `evil-import-timer`: imports `evil:host/exec`, which the world does not grant;
//! - `garbage-timer`: answers with invalid UTF-8 strings.

use std::time::{Duration, Instant};

use attune_timer::component::Limits;
use attune_timer::component::{CallError, LoadError, TimerRuntime};
use serde_json::{json, Value};

mod common;
use common::{assert_ordinary_rule_works, fire, now, rule};

const HOSTILE: &str = env!("HOSTILE_TIMER_WASM");
const STUCK: &str = env!("STUCK_TIMER_WASM");
const SNOOP: &str = env!("SNOOP_TIMER_WASM");
const EVIL_IMPORT: &str = env!("EVIL_IMPORT_TIMER_WASM");
const GARBAGE: &str = env!("GARBAGE_TIMER_WASM");

fn fast_deadline() -> Limits {
    Limits {
        call_deadline: Duration::from_millis(50),
        ..Limits::default()
    }
}

/// Asserts `err` is a deadline hit in `func`, within a bound that proves it did not run on.
fn assert_deadline(err: &CallError, func: &str, took: Duration) {
    assert!(
        matches!(err, CallError::Deadline { func: f, deadline_ms: 50 } if *f == func),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(func) && msg.contains("CPU deadline of 50 ms"),
        "a clear message: {msg}"
    );
    assert!(
        took < Duration::from_secs(2),
        "interrupted only after {took:?}"
    );
}

// ---- infinite loops: every exported function ------------------------------------------

#[test]
fn an_infinite_loop_in_describe_fails_the_load_with_a_deadline_error() {
    let started = Instant::now();
    let err = TimerRuntime::builder()
        .limits(fast_deadline())
        .file(STUCK)
        .expect_err("a component stuck in describe cannot load");
    let took = started.elapsed();
    match &err {
        LoadError::Describe(call) => assert_deadline(call, "describe", took),
        other => panic!("expected a describe deadline, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "component failed `describe`: component call `describe` exceeded its CPU deadline of 50 ms"
    );
}

#[test]
fn an_infinite_loop_in_validate_next_fire_or_build_payload_hits_the_deadline() {
    let rt = TimerRuntime::builder()
        .limits(fast_deadline())
        .file(HOSTILE)
        .unwrap();

    let started = Instant::now();
    let err = rt
        .validate(
            &rule(1, json!({"interval": 5, "hostile": "loop-validate"})),
            now(),
        )
        .unwrap_err();
    assert_deadline(&err, "validate", started.elapsed());
    assert_ordinary_rule_works(&rt);

    let schedule = rt
        .validate(
            &rule(2, json!({"interval": 5, "hostile": "loop-next"})),
            now(),
        )
        .unwrap();
    let started = Instant::now();
    let err = rt.next_fire(&schedule, now(), now()).unwrap_err();
    assert_deadline(&err, "next-fire", started.elapsed());
    assert_ordinary_rule_works(&rt);

    let schedule = rt
        .validate(
            &rule(3, json!({"interval": 5, "hostile": "loop-payload"})),
            now(),
        )
        .unwrap();
    let started = Instant::now();
    let err = rt
        .build_payload(&schedule, &fire(&schedule, now()))
        .unwrap_err();
    assert_deadline(&err, "build-payload", started.elapsed());
    assert_ordinary_rule_works(&rt);
}

#[test]
fn memory_growth_in_next_fire_hits_the_cap() {
    let rt = TimerRuntime::builder()
        .limits(Limits {
            max_memory_bytes: 16 << 20,
            ..Limits::default()
        })
        .file(HOSTILE)
        .unwrap();
    let schedule = rt
        .validate(
            &rule(1, json!({"interval": 5, "hostile": "grow-next"})),
            now(),
        )
        .unwrap();
    let err = rt.next_fire(&schedule, now(), now()).unwrap_err();
    assert!(
        matches!(err, CallError::MemoryCap { func: "next-fire", cap_bytes } if cap_bytes == 16 << 20),
        "{err:?}"
    );
    assert!(err.to_string().contains("memory cap of 16777216 bytes"));
    assert_ordinary_rule_works(&rt);
}

// ---- capabilities ---------------------------------------------------------------------

#[test]
fn an_import_outside_the_world_is_refused_at_load_by_name() {
    let err = TimerRuntime::from_file(EVIL_IMPORT).expect_err("evil:host/exec is not granted");
    assert!(
        matches!(&err, LoadError::ForbiddenImports { imports } if imports == "evil:host/exec"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("component imports evil:host/exec, which this host does not grant"),
        "{msg}"
    );
}

#[test]
fn wasi_is_linked_but_empty_no_files_env_network_or_clock() {
    // Something real to connect to: if the sandbox leaked, the connection would land here.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _ = std::fs::remove_file("/tmp/attune-snoop-timer");

    let rt = TimerRuntime::from_file(SNOOP).unwrap();
    let err = rt
        .validate(&rule(1, json!({"snoop": {"tcp": addr}})), now())
        .unwrap_err();
    let refusal = err
        .as_rule_error()
        .expect("the fixture reports as a refusal");
    assert_eq!(refusal.field.as_deref(), Some("snoop"));
    let report: Value = serde_json::from_str(&refusal.message).unwrap();

    // Files: nothing is preopened, so no path resolves, absolute or relative, read or write.
    for probe in ["file", "relative_file", "read_dir", "write_file"] {
        assert!(
            report[probe]["err"].is_string(),
            "{probe} must fail: {report:#}"
        );
    }
    assert!(
        !std::path::Path::new("/tmp/attune-snoop-timer").exists(),
        "the component wrote a file on the host"
    );
    // Environment and command line: empty, although this test process has both.
    assert!(std::env::var_os("PATH").is_some());
    assert_eq!(report["env"], json!([]), "{report:#}");
    assert_eq!(report["env_path"], Value::Null);
    assert_eq!(report["args"], json!([]));
    // Network: TCP, UDP and DNS are denied, and nothing reached the listener.
    for probe in ["tcp", "udp", "dns"] {
        assert!(
            report[probe]["err"].is_string(),
            "{probe} must fail: {report:#}"
        );
    }
    assert!(
        report["tcp"]["err"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{report:#}"
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the component reached the host's network: {other:?}"),
    }
    // Clocks: the wall clock reads the Unix epoch and the monotonic clock stands still.
    assert_eq!(report["wall_clock_secs"], json!(0.0), "{report:#}");
    assert_eq!(report["monotonic_elapsed_ns"], json!(0), "{report:#}");

    // The same component serves ordinary rules normally.
    assert_ordinary_rule_works(&rt);
}

// ---- garbage answers ------------------------------------------------------------------

fn assert_invalid_utf8(err: &CallError, func: &str) {
    assert!(
        matches!(err, CallError::Trap { func: f, detail } if *f == func && detail.contains("invalid utf-8")),
        "{err:?}"
    );
    assert!(err.to_string().contains("invalid utf-8"), "{err}");
}

#[test]
fn invalid_utf8_strings_are_rejected_for_that_call() {
    let rt = TimerRuntime::from_file(GARBAGE).unwrap();

    // As a schedule's spec, and as a refusal's message.
    for mode in ["utf8-spec", "utf8-error"] {
        let err = rt
            .validate(&rule(1, json!({"interval": 5, "garbage": mode})), now())
            .unwrap_err();
        assert_invalid_utf8(&err, "validate");
        assert_ordinary_rule_works(&rt);
    }

    // As next-fire's error message.
    let schedule = rt
        .validate(
            &rule(2, json!({"interval": 5, "garbage": "utf8-next-error"})),
            now(),
        )
        .unwrap();
    let err = rt.next_fire(&schedule, now(), now()).unwrap_err();
    assert_invalid_utf8(&err, "next-fire");
    assert_ordinary_rule_works(&rt);

    // As a payload.
    let schedule = rt
        .validate(
            &rule(3, json!({"interval": 5, "garbage": "utf8-payload"})),
            now(),
        )
        .unwrap();
    assert!(rt.next_fire(&schedule, now(), now()).is_ok());
    let err = rt
        .build_payload(&schedule, &fire(&schedule, now()))
        .unwrap_err();
    assert_invalid_utf8(&err, "build-payload");
    assert_ordinary_rule_works(&rt);
}

#[test]
fn bad_fire_times_and_payloads_name_what_was_wrong() {
    let rt = TimerRuntime::from_file(HOSTILE).unwrap();
    let cases = [
        (
            "past-next",
            "next-fire",
            "is not after 2026-03-01 12:00:00 UTC",
        ),
        ("far-next", "next-fire", "lies absurdly far after"),
        (
            "not-object-payload",
            "build-payload",
            "payload is not the text of a JSON object",
        ),
        (
            "huge-payload",
            "build-payload",
            "exceeds the limit of 65536 bytes",
        ),
    ];
    for (i, (mode, func, says)) in cases.into_iter().enumerate() {
        let schedule = rt
            .validate(
                &rule(i as i64, json!({"interval": 5, "hostile": mode})),
                now(),
            )
            .unwrap();
        let err = match func {
            "next-fire" => rt.next_fire(&schedule, now(), now()).map(|_| ()),
            _ => rt
                .build_payload(&schedule, &fire(&schedule, now()))
                .map(|_| ()),
        }
        .unwrap_err();
        assert!(
            matches!(&err, CallError::BadAnswer { func: f, .. } if f == &func),
            "{mode}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "component call `{func}` returned an invalid answer"
            )) && msg.contains(says),
            "{mode}: {msg}"
        );
        assert_ordinary_rule_works(&rt);
    }
}

// ---- one rule's params ----------------------------------------------------------------

#[test]
fn a_component_failing_on_one_rules_params_fails_that_rule_only() {
    let rt = TimerRuntime::builder()
        .limits(fast_deadline())
        .file(HOSTILE)
        .unwrap();
    let hostile = ["trap-validate", "loop-validate", "grow-validate"];
    let mut failed = Vec::new();
    for id in 0..60i64 {
        let params = match hostile.get((id / 20) as usize).filter(|_| id % 20 == 7) {
            Some(mode) => json!({"interval": 1 + id, "hostile": mode}),
            None => json!({"interval": 1 + id}),
        };
        match rt.validate(&rule(id, params), now()) {
            Ok(schedule) => {
                let next = rt.next_fire(&schedule, now(), now()).unwrap();
                assert_eq!(next, Some(now() + chrono::Duration::seconds(1 + id)));
            }
            Err(e) => failed.push((id, e)),
        }
    }
    let ids: Vec<i64> = failed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [7, 27, 47], "{failed:?}");
    assert!(matches!(failed[0].1, CallError::Trap { .. }));
    assert!(matches!(failed[1].1, CallError::Deadline { .. }));
    // Filling 64 MiB may take longer than the 50 ms deadline: either limit stops it.
    assert!(
        matches!(
            failed[2].1,
            CallError::MemoryCap { .. } | CallError::Deadline { .. }
        ),
        "{:?}",
        failed[2].1
    );
}
