//! Per-fire cost of the timer component vs the same logic compiled natively.
//!
//! ```text
//! cargo bench -p attune-core-timer-sensor --bench component_cost
//! ```
//!
//! One fire is the component work the clock does per fire (`Clock::compute`): `next-fire`
//! for the tick after this one, then `build-payload` naming it. It is timed for three rules
//! (interval 5 s; cron with a time zone; RRULE with a time zone), three ways:
//! - `component`: through [`TimerRuntime`], the calls the clock makes (`next_fire`,
//!   `build_payload_text`): pool checkout, epoch deadline, lowering the spec text and the
//!   fire into the guest, the guest's spec-cache lookup and the logic, lifting the answer,
//!   and the host's checks of it (the payload is validated as one JSON object);
//! - `native_parsed`: guest-timer's `next_fire_parsed` + `build_payload_parsed` on the spec
//!   parsed once. This is the apples-to-apples pairing: the component caches parsed specs
//!   by their text (guest-timer/src/component.rs), so in steady state it does not re-parse
//!   either, and component / native_parsed is the price of the sandbox;
//! - `native_text`: `next_fire` + `build_payload` from the spec text, which re-parse it on
//!   every call: what the component would cost without its cache.
//!
//! Group `fire` times the pair; `next_fire` and `build_payload` time each call alone, and
//! group `parts` times two pieces of native work that account for differences: the host's
//! check of a payload's text (`host_payload_check`) and a spec parse (`spec_from_json`).
//!
//! Every variant gets the same normalized spec (the `Schedule.spec` text the component
//! returned from `validate`) and walks the same ring of consecutive ticks of its rule, one
//! tick on per iteration, so no call repeats the previous question. Before timing, the
//! component's answers are checked equal to the native ones over the whole ring.
//!
//! After criterion's report: a table of medians (ns per call) and ratios, also written as
//! JSON to `target/bench/component_cost.json`. Takes about 75 s.
//!
//! Environment: `COMPONENT_COST_WASM=file.wasm` times another build of the component;
//! `COMPONENT_COST_LOOP=RULE:N[:SIDE]` skips criterion and just runs N fires of one rule
//! (SIDE: component, native_parsed or native_text), to run under a profiler.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use attune_testkit::bench::write_json;
use attune_testkit::machine::workspace_root;
use attune_timer::component::{CompileCache, Fire, Rule, Schedule, TimerRuntime};
use attune_timer::schedule::event::Payload;
use chrono::{DateTime, Utc};
use criterion::{BatchSize, BenchmarkId, Criterion};
use guest_timer::TimerSpec;
use serde::Serialize;
use serde_json::{json, Value};

/// Ticks per rule the iterations cycle through (42 minutes of the interval rule, 19 working
/// days of the cron rule, 256 days of the RRULE): no answer comes round again soon.
const RING: usize = 512;
const SENSOR_REF: &str = "core.timer_sensor";

const RULES: [&str; 3] = ["interval", "cron_tz", "rrule_tz"];
const GROUPS: [&str; 3] = ["fire", "next_fire", "build_payload"];
const SIDES: [Side; 3] = [Side::Component, Side::NativeParsed, Side::NativeText];
const PARTS: [&str; 2] = ["host_payload_check", "spec_from_json"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Component,
    NativeParsed,
    NativeText,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Component => "component",
            Side::NativeParsed => "native_parsed",
            Side::NativeText => "native_text",
        }
    }
}

/// One rule, validated by the component, with its ring of ticks.
struct Case {
    name: &'static str,
    rule: Rule,
    schedule: Schedule,
    parsed: TimerSpec,
    started_at: DateTime<Utc>,
    /// `RING + 1` consecutive fires: iteration k fires `ticks[k]`, whose next is `ticks[k+1]`.
    ticks: Vec<DateTime<Utc>>,
}

/// The clock builds each fire ahead of its tick as if released on time, so `fired_at` is
/// the tick and `next-fire` is asked for the first fire after it.
fn fired_at(tick: DateTime<Utc>) -> DateTime<Utc> {
    tick
}

fn main() {
    let (runtime, source) = load_runtime();
    // A fixed "now" (a Monday, 07:30 UTC) keeps every run on the same ticks.
    let now: DateTime<Utc> = "2026-03-02T07:30:00Z".parse().unwrap();
    let cases = [
        make_case(
            &runtime,
            "interval",
            "core.intervaltimer",
            json!({"unit": "seconds", "interval": 5}),
            now,
        ),
        make_case(
            &runtime,
            "cron_tz",
            "core.crontimer",
            json!({"expression": "0 */5 9-17 * * 1-5", "timezone": "Europe/Berlin"}),
            now,
        ),
        make_case(
            &runtime,
            "rrule_tz",
            "core.rruletimer",
            json!({
                "rule": "FREQ=DAILY;BYHOUR=9,17;BYMINUTE=0;BYSECOND=0",
                "dtstart": "2026-01-05T09:00:00+01:00",
                "timezone": "Europe/Berlin",
            }),
            now,
        ),
    ];
    if let Ok(spec) = std::env::var("COMPONENT_COST_LOOP") {
        profile_loop(&runtime, &cases, &spec);
        return;
    }

    let started = SystemTime::now();
    let criterion_dir = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"));
    // Short runs: the calls take micro- or nanoseconds, so 1.5 s gives hundreds of
    // thousands of iterations at least; 33 benchmarks then finish in about 75 s.
    let mut c = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_millis(400))
        .measurement_time(Duration::from_millis(1500))
        .without_plots()
        .output_directory(&criterion_dir)
        .configure_from_args();

    for group in GROUPS {
        let mut g = c.benchmark_group(group);
        for case in &cases {
            for side in SIDES {
                g.bench_function(BenchmarkId::new(side.name(), case.name), |b| {
                    let mut walker = Walker::new(&runtime, case);
                    match group {
                        "fire" => b.iter(|| walker.fire(side)),
                        "next_fire" => b.iter(|| walker.next_only(side)),
                        _ => b.iter(|| walker.payload_only(side)),
                    }
                });
            }
        }
        g.finish();
    }
    let mut g = c.benchmark_group("parts");
    for case in &cases {
        let payload = native_payload(case, 0);
        // The copy the check takes ownership of is made outside the timing.
        g.bench_function(BenchmarkId::new("host_payload_check", case.name), |b| {
            b.iter_batched(
                || payload.clone(),
                |text| Payload::from_text(text).unwrap(),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("spec_from_json", case.name), |b| {
            b.iter(|| TimerSpec::from_json(black_box(&case.schedule.spec)).unwrap())
        });
    }
    g.finish();
    c.final_summary();

    summarize(&criterion_dir, started, &cases, &runtime, &source);
}

/// The embedded component, or `COMPONENT_COST_WASM`, with the tests' compile cache so a
/// run does not spend seconds compiling it again.
fn load_runtime() -> (TimerRuntime, String) {
    let builder = TimerRuntime::builder().cache(CompileCache::in_dir(
        std::env::temp_dir().join("attune-timer-test-cache"),
    ));
    match std::env::var("COMPONENT_COST_WASM") {
        Ok(path) => (builder.file(&path).expect("load COMPONENT_COST_WASM"), path),
        Err(_) => (
            builder.embedded().expect("load the embedded component"),
            "embedded".into(),
        ),
    }
}

/// Validates the rule through the component, checks the native side normalizes it to the
/// same spec, lays out its ring of ticks, and checks both sides agree on all of it.
fn make_case(
    runtime: &TimerRuntime,
    name: &'static str,
    trigger_ref: &str,
    params: Value,
    now: DateTime<Utc>,
) -> Case {
    let rule = Rule {
        id: 1,
        r#ref: format!("bench.{name}"),
        trigger_ref: Some(trigger_ref.into()),
        trigger_params: params,
    };
    let schedule = runtime
        .validate(&rule, now)
        .unwrap_or_else(|e| panic!("{name}: the component refused the rule: {e}"));
    let params_text = rule.trigger_params.to_string();
    let native = guest_timer::validate(
        &guest_timer::RuleInput {
            id: rule.id,
            rule_ref: &rule.r#ref,
            trigger_ref: Some(trigger_ref),
            params: &params_text,
        },
        now,
    )
    .unwrap_or_else(|e| panic!("{name}: natively refused: {e:?}"));
    assert_eq!(native.spec, schedule.spec, "{name}: specs differ");
    let parsed = TimerSpec::from_json(&schedule.spec).expect("the spec reads back");

    let started_at = now;
    let mut ticks = Vec::with_capacity(RING + 1);
    let mut after = now;
    while ticks.len() <= RING {
        after = guest_timer::next_fire_parsed(&parsed, started_at, after)
            .expect("next fire")
            .unwrap_or_else(|| panic!("{name}: the schedule ended within the ring"));
        ticks.push(after);
    }
    let case = Case {
        name,
        rule,
        schedule,
        parsed,
        started_at,
        ticks,
    };
    for k in 0..RING {
        let next = runtime
            .next_fire(&case.schedule, started_at, fired_at(case.ticks[k]))
            .expect("component next-fire");
        assert_eq!(
            next,
            Some(case.ticks[k + 1]),
            "{name}: next fire of tick {k}"
        );
        let payload = runtime
            .build_payload_text(&case.schedule, &host_fire(&case, k))
            .expect("component build-payload");
        assert_eq!(
            payload.as_str(),
            native_payload(&case, k),
            "{name}: payload of tick {k}"
        );
    }
    case
}

fn host_fire(case: &Case, k: usize) -> Fire {
    Fire {
        rule_id: case.rule.id,
        rule_ref: case.rule.r#ref.clone(),
        trigger_ref: case.schedule.trigger_ref.clone(),
        sensor_ref: SENSOR_REF.into(),
        scheduled_at: case.ticks[k],
        fired_at: fired_at(case.ticks[k]),
        execution_count: 1 + k as u64,
        next_fire_at: Some(case.ticks[k + 1]),
    }
}

fn native_payload(case: &Case, k: usize) -> String {
    let fire = host_fire(case, k);
    guest_timer::build_payload_parsed(&case.parsed, &native_fire(case, &fire)).unwrap()
}

fn native_fire<'a>(case: &'a Case, fire: &Fire) -> guest_timer::Fire<'a> {
    guest_timer::Fire {
        rule_id: case.rule.id,
        rule_ref: &case.rule.r#ref,
        trigger_ref: &case.schedule.trigger_ref,
        sensor_ref: SENSOR_REF,
        scheduled_at: fire.scheduled_at,
        fired_at: fire.fired_at,
        execution_count: fire.execution_count,
        next_fire_at: fire.next_fire_at,
    }
}

/// Walks a case's ring, one tick per call, for any side.
struct Walker<'a> {
    runtime: &'a TimerRuntime,
    case: &'a Case,
    k: usize,
    /// The host's fire record, updated in place: both sides then build the payload from the
    /// same values without the host side paying for cloning its strings each time.
    fire: Fire,
}

impl<'a> Walker<'a> {
    fn new(runtime: &'a TimerRuntime, case: &'a Case) -> Self {
        Self {
            runtime,
            case,
            k: 0,
            fire: host_fire(case, 0),
        }
    }

    /// Moves to the next tick of the ring and returns it.
    fn step(&mut self) -> DateTime<Utc> {
        let tick = self.case.ticks[self.k];
        self.k = (self.k + 1) % RING;
        self.fire.execution_count += 1;
        tick
    }

    fn next_fire(&self, side: Side, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let case = self.case;
        match side {
            Side::Component => self
                .runtime
                .next_fire(&case.schedule, case.started_at, after),
            Side::NativeParsed => {
                Ok(guest_timer::next_fire_parsed(&case.parsed, case.started_at, after).unwrap())
            }
            Side::NativeText => {
                Ok(guest_timer::next_fire(&case.schedule.spec, case.started_at, after).unwrap())
            }
        }
        .unwrap()
    }

    fn build_payload(&mut self, side: Side, tick: DateTime<Utc>, next: Option<DateTime<Utc>>) {
        self.fire.scheduled_at = tick;
        self.fire.fired_at = fired_at(tick);
        self.fire.next_fire_at = next;
        let case = self.case;
        match side {
            Side::Component => {
                black_box(
                    self.runtime
                        .build_payload_text(&case.schedule, &self.fire)
                        .unwrap(),
                );
            }
            Side::NativeParsed => {
                let fire = native_fire(case, &self.fire);
                black_box(guest_timer::build_payload_parsed(&case.parsed, &fire).unwrap());
            }
            Side::NativeText => {
                let fire = native_fire(case, &self.fire);
                black_box(guest_timer::build_payload(&case.schedule.spec, &fire).unwrap());
            }
        }
    }

    /// What the clock does per fire: the next tick, then the payload naming it.
    fn fire(&mut self, side: Side) {
        let tick = self.step();
        let next = self.next_fire(side, fired_at(tick));
        self.build_payload(side, tick, next);
    }

    fn next_only(&mut self, side: Side) {
        let tick = self.step();
        black_box(self.next_fire(side, fired_at(tick)));
    }

    /// The payload alone, naming the next tick from the ring instead of computing it.
    fn payload_only(&mut self, side: Side) {
        let k = self.k;
        let tick = self.step();
        self.build_payload(side, tick, Some(self.case.ticks[k + 1]));
    }
}

/// `COMPONENT_COST_LOOP=RULE:N[:SIDE]`: N fires without criterion, for a profiler. Never
/// inlined, so a profiler can be told to count this function only (callgrind:
/// `--toggle-collect='component_cost::profile_loop'`) and leave the setup out.
#[inline(never)]
fn profile_loop(runtime: &TimerRuntime, cases: &[Case], spec: &str) {
    let mut it = spec.split(':');
    let rule = it.next().unwrap_or_default();
    let n: usize = it.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let side = match it.next().unwrap_or("component") {
        "component" => Side::Component,
        "native_parsed" => Side::NativeParsed,
        "native_text" => Side::NativeText,
        other => panic!("unknown side {other}"),
    };
    let case = cases
        .iter()
        .find(|c| c.name == rule)
        .unwrap_or_else(|| panic!("COMPONENT_COST_LOOP: unknown rule {rule:?}; one of {RULES:?}"));
    let mut walker = Walker::new(runtime, case);
    let t = Instant::now();
    for _ in 0..n {
        walker.fire(side);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{rule} {}: {n} fires, {ns:.0} ns per fire", side.name());
}

// ---------------------------------------------------------------------------------------
// Summary

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Criterion's median (ns per iteration) for one benchmark, if this run measured it: a
/// filtered run leaves older estimates on disk, which must not be reported as this run's.
fn median(dir: &Path, group: &str, function: &str, rule: &str, since: SystemTime) -> Option<f64> {
    let path = dir
        .join(group)
        .join(function)
        .join(rule)
        .join("new/estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let estimates: Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

/// One call of one rule: the median of each side, and the ratios.
#[derive(Debug, Clone, Serialize)]
struct CallCost {
    component_ns: Option<f64>,
    native_parsed_ns: Option<f64>,
    native_text_ns: Option<f64>,
    ratio_vs_native_parsed: Option<f64>,
    ratio_vs_native_text: Option<f64>,
}

/// The parts of the native side, timed alone.
#[derive(Debug, Clone, Serialize)]
struct Parts {
    host_payload_check_ns: Option<f64>,
    spec_from_json_ns: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct RuleCost {
    rule: &'static str,
    trigger_ref: String,
    params: Value,
    spec: String,
    fire: CallCost,
    next_fire: CallCost,
    build_payload: CallCost,
    parts: Parts,
}

#[derive(Debug, Clone, Serialize)]
struct ComponentInfo {
    source: String,
    content_hash: String,
    version: String,
}

/// `target/bench/component_cost.json`.
#[derive(Debug, Clone, Serialize)]
struct Report {
    bench: &'static str,
    unit: &'static str,
    pairing: &'static str,
    component: ComponentInfo,
    ring_ticks: usize,
    finished_at: String,
    rules: Vec<RuleCost>,
}

fn summarize(dir: &Path, since: SystemTime, cases: &[Case], runtime: &TimerRuntime, source: &str) {
    let cell = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.1}{unit}"));
    let mut rows = Vec::new();
    let mut table = String::from(
        "\ncomponent_cost: median ns per call; ratio = component / native\n\
         rule      call           component  native_parsed   ratio  native_text   ratio\n",
    );
    for case in cases {
        let [fire, next_fire, build_payload] = GROUPS.map(|group| {
            let [component, parsed, text] =
                SIDES.map(|side| median(dir, group, side.name(), case.name, since));
            table.push_str(&format!(
                "{:<9} {:<13} {:>10} {:>14} {:>7} {:>12} {:>7}\n",
                case.name,
                group,
                cell(component, ""),
                cell(parsed, ""),
                cell(ratio(component, parsed), "x"),
                cell(text, ""),
                cell(ratio(component, text), "x"),
            ));
            CallCost {
                component_ns: component,
                native_parsed_ns: parsed,
                native_text_ns: text,
                ratio_vs_native_parsed: ratio(component, parsed),
                ratio_vs_native_text: ratio(component, text),
            }
        });
        let [host_payload_check_ns, spec_from_json_ns] =
            PARTS.map(|p| median(dir, "parts", p, case.name, since));
        table.push_str(&format!(
            "{:<9} native parts: host check of a payload {} ns, spec parse {} ns\n",
            case.name,
            cell(host_payload_check_ns, ""),
            cell(spec_from_json_ns, ""),
        ));
        rows.push(RuleCost {
            rule: case.name,
            trigger_ref: case.schedule.trigger_ref.clone(),
            params: case.rule.trigger_params.clone(),
            spec: case.schedule.spec.clone(),
            fire,
            next_fire,
            build_payload,
            parts: Parts {
                host_payload_check_ns,
                spec_from_json_ns,
            },
        });
    }
    // Criterion's test mode (`cargo test --benches`) measures nothing: no table then.
    let measured = rows.iter().any(|r| {
        [&r.fire, &r.next_fire, &r.build_payload].iter().any(|c| {
            c.component_ns.is_some() || c.native_parsed_ns.is_some() || c.native_text_ns.is_some()
        })
    });
    if !measured {
        println!("component_cost: no fresh estimates, nothing written");
        return;
    }
    print!("{table}");
    let report = Report {
        bench: "component_cost",
        unit: "ns per call, criterion's median",
        pairing: "component = TimerRuntime next_fire + build_payload_text (guest caches \
                  parsed specs by text); \
                  native_parsed = next_fire_parsed + build_payload_parsed on a spec parsed \
                  once (the apples-to-apples baseline); native_text = next_fire + \
                  build_payload re-parsing the spec text on every call",
        component: ComponentInfo {
            source: source.to_string(),
            content_hash: runtime.info().content_hash.clone(),
            version: runtime.info().version.clone(),
        },
        ring_ticks: RING,
        finished_at: Utc::now().to_rfc3339(),
        rules: rows,
    };
    let out = target_dir().join("bench/component_cost.json");
    write_json(&out, &report);
    println!("written to {}", out.display());
}
