//! The `check` command as a user runs it: the real binary, its output and exit status.

use std::process::{Command, Output};

use serde_json::{json, Value};

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attune-core-timer-sensor"))
        .arg("check")
        .args(args)
        // Keep the user's cache out of it.
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("attune-check-cli-test"),
        )
        .env_remove("ATTUNE_TIMER_COMPONENT")
        .env_remove("ATTUNE_SENSOR_REF")
        .output()
        .expect("run the binary")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const BERLIN_WEEKDAYS: &str = r#"{"expression":"0 30 9 * * MON-FRI","timezone":"Europe/Berlin"}"#;

#[test]
fn berlin_weekday_cron_across_the_march_dst_change() {
    // Berlin leaves CET (+01:00) for CEST (+02:00) on Sunday 2026-03-29.
    let out = check(&[
        "--trigger-ref",
        "core.crontimer",
        BERLIN_WEEKDAYS,
        "--count",
        "5",
        "--now",
        "2026-03-26T12:00:00Z",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert_eq!(report["trigger_ref"], "core.crontimer");
    assert_eq!(report["schedule"]["timezone"], "Europe/Berlin");
    assert_eq!(
        report["next_fires"],
        json!([
            "2026-03-27T08:30:00Z", // Friday, 09:30 CET
            "2026-03-30T07:30:00Z", // Monday, 09:30 CEST: the weekend skipped, the offset changed
            "2026-03-31T07:30:00Z",
            "2026-04-01T07:30:00Z",
            "2026-04-02T07:30:00Z",
        ])
    );
    let payload = &report["payload"];
    assert_eq!(payload["type"], "cron");
    assert_eq!(payload["scheduled_at"], "2026-03-27T08:30:00Z");
    assert_eq!(payload["next_fire_at"], "2026-03-30T07:30:00Z");
    assert_eq!(payload["expression"], "0 30 9 * * MON-FRI");
    assert_eq!(payload["timezone"], "Europe/Berlin");
    assert_eq!(payload["execution_count"], 1);
    assert_eq!(payload["sensor_ref"], "core.timer_sensor");
}

#[test]
fn human_output_shows_utc_and_the_rules_zone() {
    let out = check(&[
        "--trigger-ref",
        "core.crontimer",
        BERLIN_WEEKDAYS,
        "--count",
        "2",
        "--now",
        "2026-03-26T12:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2026-03-27T08:30:00Z"), "{text}");
    assert!(
        text.contains("2026-03-27 09:30:00 CET (+01:00) Fri"),
        "{text}"
    );
    assert!(
        text.contains("2026-03-30 09:30:00 CEST (+02:00) Mon"),
        "{text}"
    );
    assert!(text.contains("Payload of the first fire"), "{text}");
}

#[test]
fn a_schedule_that_ends_lists_fewer_fires() {
    let out = check(&[
        "--trigger-ref",
        "core.datetimetimer",
        r#"{"fire_at":"2026-05-01T10:00:00+02:00"}"#,
        "--count",
        "3",
        "--now",
        "2026-04-01T00:00:00Z",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert_eq!(report["next_fires"], json!(["2026-05-01T08:00:00Z"]));
    assert_eq!(report["payload"]["type"], "one_shot");
}

#[test]
fn refused_params_exit_2_with_the_field_named() {
    let out = check(&[
        "--trigger-ref",
        "core.intervaltimer",
        r#"{"interval":0}"#,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let report = stdout_json(&out);
    assert_eq!(report["error"]["field"], "interval");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Interval must be greater than 0"),
        "{report}"
    );

    let out = check(&["--trigger-ref", "core.crontimer", "{not json", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let report = stdout_json(&out);
    assert_eq!(report["error"]["field"], Value::Null);

    let out = check(&[
        "--trigger-ref",
        "core.crontimer",
        r#"{"expression":"61 * * * *"}"#,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expression"), "{stderr}");
}

#[test]
fn a_component_that_cannot_load_exits_1_with_the_reason() {
    let out = check(&[
        "--component",
        "/nonexistent/timer.wasm",
        r#"{"interval":5}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/timer.wasm"), "{stderr}");
}

#[test]
fn the_kind_is_inferred_when_no_trigger_ref_is_given() {
    let out = check(&[
        r#"{"interval":90}"#,
        "--now",
        "2026-01-01T00:00:00Z",
        "--count",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert_eq!(report["trigger_ref"], "core.intervaltimer");
    assert_eq!(
        report["next_fires"],
        json!(["2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z"])
    );
    assert_eq!(report["payload"]["interval_seconds"], 90);
}

#[test]
fn a_leap_second_now_is_refused_with_a_clear_message() {
    let out = check(&[r#"{"interval":5}"#, "--now", "2026-12-31T23:59:60Z"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("leap second"), "{stderr}");
    assert!(!stderr.contains("nanoseconds"), "{stderr}");
}

/// `ATTUNE_TIMER_CACHE_DIR` means for `check` what it means for the daemon: where the
/// compiled component is kept, or `off`.
#[test]
fn check_uses_the_compile_cache_the_environment_names() {
    let base = std::env::temp_dir().join(format!("attune-check-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let cache = base.join("cache");
    let xdg = base.join("xdg");
    let run = |cache_setting: &str| {
        Command::new(env!("CARGO_BIN_EXE_attune-core-timer-sensor"))
            .args(["check", r#"{"interval":5}"#, "--json"])
            .env("XDG_CACHE_HOME", &xdg)
            .env("ATTUNE_TIMER_CACHE_DIR", cache_setting)
            .env_remove("ATTUNE_TIMER_COMPONENT")
            .output()
            .expect("run the binary")
    };
    let files = |dir: &std::path::Path| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    assert!(run("off").status.success());
    assert_eq!(files(&cache), 0, "off: nothing cached");
    assert_eq!(
        files(&xdg.join("attune-timer-sensor")),
        0,
        "off: not the default place either"
    );
    assert!(run(cache.to_str().unwrap()).status.success());
    assert!(
        files(&cache) > 0,
        "the compiled component is kept where the variable says"
    );
    assert_eq!(files(&xdg.join("attune-timer-sensor")), 0);
    let _ = std::fs::remove_dir_all(&base);
}
