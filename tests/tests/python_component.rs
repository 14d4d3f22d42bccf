//! The Python timer component (`guest-python/`, built with componentize-py) held to the
//! conformance suite through the host runtime, plus its per-call cost next to the Rust
//! component's and the memory it needs.
//!
//! The component is not built by cargo: build it (see `guest-python/README.md`) and point
//! `PYTHON_TIMER_WASM` at it. An unset variable or a missing file FAILS these tests; they
//! never skip.
//!
//! ```sh
//! PYTHON_TIMER_WASM=$PWD/guest-python/target/timer_python.wasm \
//!     cargo test --release -p conformance --test python_component -- --nocapture --test-threads=1
//! ```
//!
//! Compiling the ~19 MB component takes ~15 s; the compiled form is cached under cargo's
//! test temp dir, so later runs (and the memory probes) load it in milliseconds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use attune_timer::component::Limits;
use attune_timer::component::{CompileCache, Fire, Rule, Schedule, TimerRuntime};
use chrono::{DateTime, Utc};
use conformance::{default_cases_dir, load_cases, run_cases, Outcome};
use serde_json::json;

const ENV: &str = "PYTHON_TIMER_WASM";
const NAME: &str = "attune-timer-python";
const REFS: [&str; 2] = ["core.intervaltimer", "core.crontimer"];
/// Case files whose every case the Python component must run (it implements all of them).
const FULL_FILES: [&str; 4] = [
    "interval.json",
    "cron-basic.json",
    "cron-dst.json",
    "cron-extensions.json",
];
/// At least this many cases must run (239 apply today: every interval and cron case, the
/// legacy/StackStorm and tagged forms of those two refs, inference to them, and every
/// unknown-ref and error case).
const MIN_CASES: usize = 230;

/// The component file named by `PYTHON_TIMER_WASM` (relative paths are tried from the
/// working directory, then from the workspace root).
fn python_wasm() -> PathBuf {
    let Some(value) = std::env::var_os(ENV).filter(|v| !v.is_empty()) else {
        panic!(
            "{ENV} is not set. Build the Python component (guest-python/README.md: \
             `cd guest-python && ./build.sh`) and run with \
             {ENV}=$PWD/guest-python/target/timer_python.wasm"
        );
    };
    let given = PathBuf::from(&value);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = if given.is_absolute() {
        vec![given.clone()]
    } else {
        vec![given.clone(), workspace.join(&given)]
    };
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{ENV}={} does not name a file (also tried relative to the workspace root). \
                 Build it with `cd guest-python && ./build.sh`",
                given.display()
            )
        })
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-component-cache")
}

fn cache() -> CompileCache {
    CompileCache::in_dir(cache_dir())
}

/// Drops compiled forms of earlier builds (each ~35 MB; componentize-py builds are not
/// reproducible, so every rebuild has a new content hash).
fn prune_cache(content_hash: &str) {
    let Ok(entries) = std::fs::read_dir(cache_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(content_hash)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn load_python(limits: Limits) -> Result<TimerRuntime, attune_timer::component::LoadError> {
    TimerRuntime::builder()
        .limits(limits)
        .cache(cache())
        .file(python_wasm())
}

/// One Python runtime with the default limits, shared by the tests of this file.
fn python() -> &'static TimerRuntime {
    static RT: OnceLock<TimerRuntime> = OnceLock::new();
    RT.get_or_init(|| {
        let started = Instant::now();
        let rt = load_python(Limits::default()).unwrap_or_else(|e| {
            panic!(
                "the Python component {} does not load: {e}",
                python_wasm().display()
            )
        });
        prune_cache(&rt.info().content_hash);
        println!(
            "loaded {} ({} bytes) in {:.1?} (compile or cache, plus describe)",
            python_wasm().display(),
            std::fs::metadata(python_wasm())
                .map(|m| m.len())
                .unwrap_or(0),
            started.elapsed()
        );
        rt
    })
}

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn python_component_describes_itself() {
    let info = python().info();
    assert_eq!(info.name, NAME);
    assert_eq!(
        info.trigger_refs,
        REFS.map(String::from).to_vec(),
        "it must declare only the refs it handles"
    );
    assert_eq!(info.wit_version, "0.1.0");
}

#[test]
fn python_component_conforms() {
    let cases = load_cases(default_cases_dir()).expect("cases load");
    let rt = python();
    let report = run_cases(rt, &cases);
    println!("--- Python component ---\n{report}");

    // Every case of the files it fully implements ran.
    let mut not_applicable_by_file: BTreeMap<&str, usize> = BTreeMap::new();
    for (case, result) in cases.iter().zip(&report.results) {
        if matches!(result.outcome, Outcome::NotApplicable(_)) {
            *not_applicable_by_file
                .entry(case.file.as_str())
                .or_default() += 1;
            // ...and a case is skipped only for a ref the component does not declare.
            assert!(
                case.required_refs()
                    .iter()
                    .any(|r| !REFS.contains(&r.as_str())),
                "{} was skipped although it needs only {:?}",
                case.name,
                case.required_refs()
            );
        }
    }
    for file in FULL_FILES {
        assert_eq!(
            not_applicable_by_file.get(file).copied().unwrap_or(0),
            0,
            "cases of {file} were not run"
        );
    }
    println!("not applicable, by file: {not_applicable_by_file:?}");
    assert!(
        report.ran() >= MIN_CASES,
        "only {} cases ran (at least {MIN_CASES} expected)\n{report}",
        report.ran()
    );
    assert!(
        report.is_success(),
        "{} case(s) failed\n\n{report}",
        report.failed()
    );
}

// ----------------------------------------------------------------------------- cost

struct Workload {
    name: &'static str,
    rule: Rule,
}

fn workloads() -> Vec<Workload> {
    use attune_testkit::rules::rule;
    vec![
        Workload {
            name: "interval 5 minutes",
            rule: rule(
                1,
                "core.intervaltimer",
                json!({"interval": 5, "unit": "minutes"}),
            ),
        },
        Workload {
            name: "cron 0 30 9 * * MON-FRI Europe/Berlin",
            rule: rule(
                2,
                "core.crontimer",
                json!({"expression": "0 30 9 * * MON-FRI", "timezone": "Europe/Berlin"}),
            ),
        },
    ]
}

fn fire_of(
    rule: &Rule,
    schedule: &Schedule,
    at: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) -> Fire {
    Fire {
        rule_id: rule.id,
        rule_ref: rule.r#ref.clone(),
        trigger_ref: schedule.trigger_ref.clone(),
        sensor_ref: "core.timer_sensor".into(),
        scheduled_at: at,
        fired_at: at,
        execution_count: 1,
        next_fire_at: next,
    }
}

#[derive(Default)]
struct Samples {
    validate: Vec<Duration>,
    next_fire: Vec<Duration>,
    build_payload: Vec<Duration>,
    all_three: Vec<Duration>,
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn max(v: &[Duration]) -> Duration {
    v.iter().copied().max().unwrap_or_default()
}

/// Times `rounds` rounds of validate + next-fire + build-payload on one rule, each call on
/// its own. `after` advances every round so next-fire does real work.
fn measure(rt: &TimerRuntime, w: &Workload, rounds: usize) -> Samples {
    let now = t("2026-03-26T12:00:00Z");
    let mut s = Samples::default();
    for i in 0..rounds {
        let after = now + chrono::Duration::minutes(37 * i as i64);
        let a = Instant::now();
        let schedule = rt.validate(&w.rule, now).expect("validate");
        let b = Instant::now();
        let next = rt
            .next_fire(&schedule, now, after)
            .expect("next-fire")
            .expect("a next fire");
        let c = Instant::now();
        let payload = rt
            .build_payload(&schedule, &fire_of(&w.rule, &schedule, next, None))
            .expect("build-payload");
        let d = Instant::now();
        assert!(payload.contains_key("type"));
        s.validate.push(b - a);
        s.next_fire.push(c - b);
        s.build_payload.push(d - c);
        s.all_three.push(d - a);
    }
    s
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[test]
#[ignore = "a measurement, not a unit test: run by `make bench`"]
fn per_call_cost_python_vs_rust() {
    const ROUNDS: usize = 1000;
    let py = python();
    let rust = TimerRuntime::embedded().expect("embedded Rust component loads");
    println!("\nper-call cost through the host runtime (pooled, warm instances), median of {ROUNDS} rounds");
    println!(
        "{:<40} {:>9} {:>13} {:>13} {:>13} {:>13} {:>11}",
        "workload", "component", "validate", "next-fire", "build-payload", "all three", "max call"
    );
    let mut worst_python = Duration::ZERO;
    for w in workloads() {
        let mut medians = Vec::new();
        for (label, rt) in [("rust", &rust), ("python", py)] {
            measure(rt, &w, 50); // warm the pool and the caches
            let mut s = measure(rt, &w, ROUNDS);
            let worst = max(&s.validate)
                .max(max(&s.next_fire))
                .max(max(&s.build_payload));
            let m = [
                median(&mut s.validate),
                median(&mut s.next_fire),
                median(&mut s.build_payload),
                median(&mut s.all_three),
            ];
            println!(
                "{:<40} {:>9} {:>10.1} µs {:>10.1} µs {:>10.1} µs {:>10.1} µs {:>8.2} ms",
                w.name,
                label,
                us(m[0]),
                us(m[1]),
                us(m[2]),
                us(m[3]),
                worst.as_secs_f64() * 1e3
            );
            if label == "python" {
                worst_python = worst_python.max(worst);
            }
            medians.push(m);
        }
        let ratio = |i: usize| medians[1][i].as_secs_f64() / medians[0][i].as_secs_f64();
        println!(
            "{:<40} {:>9} {:>12.1}x {:>12.1}x {:>12.1}x {:>12.1}x",
            "",
            "py/rust",
            ratio(0),
            ratio(1),
            ratio(2),
            ratio(3)
        );
    }

    // A fresh instance for every call (what a call costs right after a trap, or with no pool).
    let cold = Limits {
        pool_size: 0,
        ..Limits::default()
    };
    let py_cold = load_python(cold.clone()).expect("Python component loads with pool_size 0");
    let rust_cold = TimerRuntime::builder()
        .limits(cold)
        .embedded()
        .expect("Rust loads");
    let w = &workloads()[1];
    let mut line = String::new();
    let mut cold_medians = Vec::new();
    for (label, rt) in [("rust", &rust_cold), ("python", &py_cold)] {
        let mut s = measure(rt, w, 100);
        let m = median(&mut s.validate);
        cold_medians.push(m);
        line += &format!(
            "{label} {:.1} µs (max {:.2} ms)  ",
            us(m),
            max(&s.validate).as_secs_f64() * 1e3
        );
    }
    println!(
        "\ncold call (new instance per call, pool_size 0), validate of the cron rule: {line}ratio {:.1}x",
        cold_medians[1].as_secs_f64() / cold_medians[0].as_secs_f64()
    );

    let deadline = Limits::default().call_deadline;
    assert!(
        worst_python < deadline / 2,
        "a Python call took {worst_python:?}, too close to the {deadline:?} deadline"
    );
}

/// Expressions that make a cron search work hardest: never-firing day patterns, rare dates,
/// year-bounded searches, every-second schedules in DST zones, a zone parsed at call time,
/// a maximal-length expression. Each call must stay far below the CPU deadline.
#[test]
#[ignore = "a measurement, not a unit test: run by `make bench`"]
fn worst_case_calls_stay_far_below_the_deadline() {
    let rt = python();
    let now = t("2026-03-26T12:00:00Z");
    let long_list = (0..60).map(|m| m.to_string()).collect::<Vec<_>>().join(",");
    let long_expression = format!("{long_list} {long_list} * * * *");
    let cases: Vec<(serde_json::Value, bool)> = vec![
        (
            json!({"expression": "0 0 31 2,4,6,9,11 *", "timezone": "Europe/Berlin"}),
            false,
        ),
        (
            json!({"expression": "* * * 30 2 ?", "timezone": "America/New_York"}),
            false,
        ),
        (json!({"expression": "0 0 0 29 2 ? 2100"}), false),
        (
            json!({"day": 31, "day_of_week": "mon", "month": "2,4,6,9,11", "timezone": "Europe/Berlin"}),
            false,
        ),
        (
            json!({"expression": "0 0 29 2 *", "timezone": "Australia/Lord_Howe"}),
            true,
        ),
        (
            json!({"expression": "*/30 * 29 2 *", "timezone": "Europe/Berlin"}),
            true,
        ),
        (
            json!({"expression": "0 9 * FEB MON#5", "timezone": "America/Santiago"}),
            true,
        ),
        (
            json!({"expression": "* * * 29 2 ? 2096-2104", "timezone": "Europe/Berlin"}),
            true,
        ),
        (json!({"expression": "0 0 0 1 1 ? 2999"}), true),
        (
            json!({"expression": "* * * * * ? 2999", "timezone": "Europe/Berlin"}),
            true,
        ),
        (
            json!({"expression": "* * * * * *", "timezone": "Australia/Sydney"}),
            true,
        ),
        (
            json!({"day": 31, "day_of_week": "mon", "month": 1, "hour": 9}),
            true,
        ),
        (
            json!({"expression": long_expression, "timezone": "Asia/Kolkata"}),
            true,
        ),
    ];
    let mut worst = Duration::ZERO;
    println!("\nworst-case calls (Python component, warm pool):");
    for (params, fires) in cases {
        let rule = Rule {
            id: 7,
            r#ref: "worst.case".into(),
            trigger_ref: Some("core.crontimer".into()),
            trigger_params: params.clone(),
        };
        let a = Instant::now();
        let validated = rt.validate(&rule, now);
        let v = a.elapsed();
        let mut slowest_next = Duration::ZERO;
        match (validated, fires) {
            (Ok(schedule), true) => {
                let mut after = now;
                for _ in 0..5 {
                    let b = Instant::now();
                    let next = rt.next_fire(&schedule, now, after).expect("next-fire");
                    slowest_next = slowest_next.max(b.elapsed());
                    match next {
                        Some(n) => after = n,
                        None => break,
                    }
                }
            }
            (Err(e), false) => assert!(e.as_rule_error().is_some(), "{params}: {e}"),
            (other, _) => panic!("{params}: unexpected {other:?}"),
        }
        println!(
            "  validate {:>8.2} ms  slowest next-fire {:>8.2} ms  {}",
            v.as_secs_f64() * 1e3,
            slowest_next.as_secs_f64() * 1e3,
            params.to_string().chars().take(90).collect::<String>()
        );
        worst = worst.max(v).max(slowest_next);
    }
    let deadline = Limits::default().call_deadline;
    assert!(
        worst < deadline / 4,
        "slowest call {worst:?} is too close to the {deadline:?} deadline"
    );
}

// ----------------------------------------------------------------------------- memory

/// Whether a small but complete workload runs under a memory cap of `mib` MiB: load,
/// both workload rules end to end, and a time zone parsed at call time.
fn works_with_memory_cap(mib: usize) -> Result<(), String> {
    let limits = Limits {
        max_memory_bytes: mib << 20,
        ..Limits::default()
    };
    let rt = load_python(limits).map_err(|e| format!("load: {e}"))?;
    let now = t("2026-03-26T12:00:00Z");
    let mut rules: Vec<Rule> = workloads().into_iter().map(|w| w.rule).collect();
    rules.push(Rule {
        id: 3,
        r#ref: "bench.sydney".into(),
        trigger_ref: Some("core.crontimer".into()),
        trigger_params: json!({"expression": "*/15 * * * *", "timezone": "Australia/Sydney"}),
    });
    for rule in &rules {
        let schedule = rt
            .validate(rule, now)
            .map_err(|e| format!("validate: {e}"))?;
        let next = rt
            .next_fire(&schedule, now, now)
            .map_err(|e| format!("next-fire: {e}"))?
            .ok_or("no next fire")?;
        rt.build_payload(&schedule, &fire_of(rule, &schedule, next, None))
            .map_err(|e| format!("build-payload: {e}"))?;
    }
    Ok(())
}

#[test]
fn memory_needed_by_the_python_component() {
    python(); // compile once (cached for the probes below)
    let default_mib = Limits::default().max_memory_bytes >> 20;
    works_with_memory_cap(default_mib)
        .unwrap_or_else(|e| panic!("fails under the default {default_mib} MiB cap: {e}"));
    // Smallest whole-MiB cap that works (the need is monotonic in the cap).
    let (mut lo, mut hi) = (1usize, default_mib); // lo fails (assumed), hi works
    let mut last_failure = String::new();
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        match works_with_memory_cap(mid) {
            Ok(()) => hi = mid,
            Err(e) => {
                last_failure = e;
                lo = mid;
            }
        }
    }
    println!(
        "\nPython component: smallest memory cap that works = {hi} MiB (default cap {default_mib} MiB); \
         at {lo} MiB: {last_failure}"
    );
    if let Err(e) = works_with_memory_cap(lo) {
        assert!(
            e.contains("memory")
                || e.contains("Memory")
                || e.contains("instantiat")
                || e.contains("limit"),
            "below the smallest cap the failure should be about memory, got: {e}"
        );
    }
}

// ----------------------------------------------------------------------------- local mode

/// A `Write` into a buffer the test can read.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The daemon's local mode runs on the Python component: its events come out on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_fires_events_with_the_python_component() {
    use attune_timer::app::local::{self, LineSink, LocalOptions};
    let _ = python(); // compile once (and cache) before the clock starts
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        json!([
            {"id": 1, "trigger_ref": "core.intervaltimer", "trigger_params": {"interval": 1}},
            {"id": 2, "trigger_ref": "core.crontimer",
             "trigger_params": {"expression": "* * * * * *", "timezone": "Europe/Berlin"}},
        ])
        .to_string(),
    )
    .unwrap();
    let out = Lines::default();
    let sink = LineSink::new(out.clone());
    let options = LocalOptions {
        rules_file: rules,
        component: Some(python_wasm()),
        limits: Limits::default(),
        cache: cache(),
        sensor_ref: "core.timer_sensor".into(),
        state_dir: None,
        misfire: Default::default(),
        admin_addr: None,
    };
    // 3.5 s: three or four ticks of each rule. Only a lower bound is asserted, so a slow
    // machine cannot fail it by firing late; exact timing is the conformance suite's job.
    local::run(
        options,
        sink.clone(),
        tokio::time::sleep(Duration::from_millis(3500)),
    )
    .await
    .expect("local mode runs");
    sink.close();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    for (rule, kind) in [("rule_1", "interval"), ("rule_2", "cron")] {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e["trigger_instance_id"] == rule)
            .collect();
        assert!(mine.len() >= 2, "{rule}: {} events in\n{text}", mine.len());
        for (i, e) in mine.iter().enumerate() {
            assert_eq!(e["payload"]["type"], kind, "{e}");
            assert_eq!(e["payload"]["execution_count"], i as u64 + 1, "{e}");
        }
    }
}
