//! The sandbox, end to end: a hostile component's misbehaviour costs one call, never the
//! pool, and never another rule. The fixture is `fixtures/hostile-timer`, built by build.rs.
//! Answers the host refuses (bad fire times, bad payloads) are in `hostile_sandbox.rs`.

use std::time::{Duration, Instant};

use attune_timer::component::Limits;
use attune_timer::component::{CallError, TimerRuntime};
use serde_json::json;

mod common;
use common::{assert_ordinary_rule_works, fire, now, rule};

const HOSTILE: &str = env!("HOSTILE_TIMER_WASM");

fn runtime(limits: Limits) -> TimerRuntime {
    TimerRuntime::builder()
        .limits(limits)
        .file(HOSTILE)
        .expect("the hostile fixture loads: it only misbehaves when asked")
}

#[test]
fn a_trap_fails_that_call_only_and_the_next_call_works() {
    let rt = runtime(Limits::default());
    assert_ordinary_rule_works(&rt);
    let err = rt
        .validate(
            &rule(1, json!({"interval": 5, "hostile": "trap-validate"})),
            now(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Trap {
                func: "validate",
                ..
            }
        ),
        "{err:?}"
    );
    assert_ordinary_rule_works(&rt);

    let schedule = rt
        .validate(
            &rule(2, json!({"interval": 5, "hostile": "trap-next"})),
            now(),
        )
        .unwrap();
    for _ in 0..3 {
        let err = rt.next_fire(&schedule, now(), now()).unwrap_err();
        assert!(
            matches!(
                err,
                CallError::Trap {
                    func: "next-fire",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_ordinary_rule_works(&rt);
    }
}

#[test]
fn an_infinite_loop_is_interrupted_at_the_deadline() {
    let limits = Limits {
        call_deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    let rt = runtime(limits);
    let started = Instant::now();
    let err = rt
        .validate(
            &rule(1, json!({"interval": 5, "hostile": "loop-validate"})),
            now(),
        )
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            CallError::Deadline {
                func: "validate",
                deadline_ms: 50
            }
        ),
        "{err:?}"
    );
    // Epoch ticks are 10 ms: the call stops a tick or so past its deadline. A full second
    // leaves room for a loaded CI machine while still proving the loop did not run on.
    assert!(
        took < Duration::from_secs(1),
        "interrupted only after {took:?}"
    );
    assert_ordinary_rule_works(&rt);

    let schedule = rt
        .validate(
            &rule(2, json!({"interval": 5, "hostile": "loop-payload"})),
            now(),
        )
        .unwrap();
    let err = rt
        .build_payload(&schedule, &fire(&schedule, now()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Deadline {
                func: "build-payload",
                ..
            }
        ),
        "{err:?}"
    );
    assert_ordinary_rule_works(&rt);
}

#[test]
fn unbounded_memory_growth_hits_the_cap() {
    let limits = Limits {
        max_memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let rt = runtime(limits);
    let err = rt
        .validate(
            &rule(1, json!({"interval": 5, "hostile": "grow-validate"})),
            now(),
        )
        .unwrap_err();
    assert!(
        matches!(err, CallError::MemoryCap { func: "validate", cap_bytes } if cap_bytes == 16 << 20),
        "{err:?}"
    );
    assert_ordinary_rule_works(&rt);
}

#[test]
fn a_params_error_is_a_rule_error_not_a_fault() {
    let rt = runtime(Limits::default());
    let err = rt
        .validate(&rule(1, json!({"interval": 0})), now())
        .unwrap_err();
    let rule_error = err.as_rule_error().expect("a domain error");
    assert_eq!(rule_error.field.as_deref(), Some("interval"));
}

#[test]
fn many_threads_share_one_runtime() {
    let rt = runtime(Limits::default());
    std::thread::scope(|scope| {
        for t in 0..4 {
            let rt = &rt;
            scope.spawn(move || {
                for i in 0..200 {
                    if i % 50 == 0 {
                        let hostile = rule(t, json!({"interval": 5, "hostile": "trap-validate"}));
                        assert!(rt.validate(&hostile, now()).is_err());
                    }
                    assert_ordinary_rule_works(rt);
                }
            });
        }
    });
}

#[test]
fn a_trap_on_an_async_worker_thread_is_contained() {
    // A trapping Rust guest writes its panic message through WASI, whose synchronous
    // bindings cannot run on a tokio worker. The runtime turns that into the call's error.
    let rt = runtime(Limits::default());
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = tokio.block_on(async {
        rt.validate(
            &rule(1, json!({"interval": 5, "hostile": "trap-validate"})),
            now(),
        )
        .unwrap_err()
    });
    assert!(
        matches!(
            err,
            CallError::Trap {
                func: "validate",
                ..
            }
        ),
        "{err:?}"
    );
    assert_ordinary_rule_works(&rt);
}
