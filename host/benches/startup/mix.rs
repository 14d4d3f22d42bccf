//! The rules the start-up bench lists: a realistic mix (and a quiet variant for the memory
//! figures), and the component work of applying one rule of each shape.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use attune_testkit::fake_api::{FakeApi, FakeOptions};
use attune_testkit::rules;

/// The component work per rule of one shape of the mix (µs, one thread, alone).
#[derive(Debug, Clone, Serialize)]
pub struct ShapeCost {
    pub shape: &'static str,
    pub share: f64,
    pub validate_us: f64,
    pub next_fire_us: f64,
    pub build_ahead_us: f64,
}

/// [`calibrate`]'s figures: by shape, and weighted by the mix.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub rules_per_shape: usize,
    pub by_shape: Vec<ShapeCost>,
    pub mix_validate_us: f64,
    pub mix_next_fire_us: f64,
    pub mix_per_rule_us: f64,
    pub mix_build_ahead_us: f64,
}

/// A well-mixed 64-bit hash of the rule id, so every rule gets its own but reproducible
/// params.
fn mix(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
];

/// The trigger ref, params and shape name of rule `id`.
///
/// Realistic (`quiet == false`): 60 % `core.intervaltimer` every 10–60 s; 40 %
/// `core.crontimer` in seven shapes — hourly (6 fields, seconds first, the platform's
/// format), daily (5 fields), weekdays, monthly, every 6 hours, weekly, and daily with a
/// trailing year (7 fields) — with the minute (and hour) spread by the id and five zones.
///
/// Quiet (`quiet == true`, for the memory figures): the same shapes where they can be kept
/// quiet — intervals of 10–60 *minutes*, and the daily, weekday, monthly, weekly and 7-field
/// cron rules in UTC at an hour 3 to 20 hours after `now_hour` — so nothing fires for at
/// least two hours.
pub fn mix_params(id: i64, quiet: bool, now_hour: u32) -> (&'static str, Value, &'static str) {
    let h = mix(id as u64);
    if h % 10 < 6 {
        let every = 10 + (h >> 4) % 51;
        let unit = if quiet { "minutes" } else { "seconds" };
        return (
            "core.intervaltimer",
            json!({"interval": every, "unit": unit}),
            "interval",
        );
    }
    let m = (h >> 8) % 60;
    let (hour, zone) = if quiet {
        ((u64::from(now_hour) + 3 + (h >> 16) % 18) % 24, "UTC")
    } else {
        (
            (h >> 16) % 24,
            ZONES[((h >> 24) % ZONES.len() as u64) as usize],
        )
    };
    let shape = (h >> 32) % 7;
    let (expression, name) = match (shape, quiet) {
        // Shapes that fire every few hours are replaced by a daily one when quiet.
        (0, false) => (format!("0 {m} * * * *"), "cron hourly"),
        (4, false) => (format!("0 {m} */6 * * *"), "cron every 6 h"),
        (0 | 4, true) | (1, _) => (format!("{m} {hour} * * *"), "cron daily (5 fields)"),
        (2, _) => (format!("0 {m} {hour} * * MON-FRI"), "cron weekdays"),
        (3, _) => (format!("0 {m} {hour} 1 * *"), "cron monthly"),
        (5, _) => (format!("0 {m} {hour} * * SUN"), "cron weekly"),
        _ => (format!("0 {m} {hour} * * * *"), "cron daily (7 fields)"),
    };
    (
        "core.crontimer",
        json!({"expression": expression, "timezone": zone}),
        name,
    )
}

/// The fake API holding rules 1..=n of the mix.
pub fn api_with_rules(n: usize, quiet: bool) -> FakeApi {
    let api = FakeApi::start(FakeOptions::default());
    let now_hour = chrono::Timelike::hour(&chrono::Utc::now());
    for id in 1..=n as i64 {
        let (trigger_ref, params, _) = mix_params(id, quiet, now_hour);
        api.add_rule(id, trigger_ref, params, true);
    }
    api
}

/// How many rules of 1..=n are interval rules (the rest are cron rules).
pub fn interval_share(n: usize) -> usize {
    (1..=n as i64)
        .filter(|id| mix_params(*id, false, 0).2 == "interval")
        .count()
}

/// The component work of applying one rule at start-up, by shape of the mix: `validate`,
/// then `next-fire` (its first fire), the two calls the daemon makes per rule, timed alone
/// on one thread of the bench with the embedded component (`per_shape` rules each). Their
/// mix-weighted sum × N / CPUs is the least the apply phase can take. Also the work of
/// building that first fire ahead (`next-fire` after it, then `build-payload`), which the
/// clock does for every newly started timer.
pub fn calibrate(per_shape: usize) -> Calibration {
    use attune_timer::component::{CompileCache, Fire, TimerRuntime};
    let cache = tempfile::Builder::new()
        .prefix("attune-startup-cache")
        .tempdir()
        .expect("a temporary cache directory");
    let runtime = TimerRuntime::builder()
        .cache(CompileCache::in_dir(cache.path()))
        .embedded()
        .expect("load the embedded component");
    let now = chrono::Utc::now();
    let rule = |id: i64| {
        let (trigger_ref, params, shape) = mix_params(id, false, 0);
        (rules::rule(id, trigger_ref, params), shape)
    };
    // Shares of each shape in the mix (over the first 100,000 ids), and ids of each.
    let mut shares: std::collections::BTreeMap<&'static str, (usize, Vec<i64>)> =
        Default::default();
    for id in 1..=100_000 {
        let (_, shape) = rule(id);
        let slot = shares.entry(shape).or_default();
        slot.0 += 1;
        if slot.1.len() < per_shape {
            slot.1.push(id);
        }
    }
    // Warm the instance pool and the caches of the call path.
    for id in 1..=200 {
        let (r, _) = rule(id);
        let schedule = runtime.validate(&r, now).expect("a valid rule");
        runtime
            .next_fire(&schedule, now, now)
            .expect("a first fire");
    }
    let mut rows = Vec::new();
    let mut weighted = (0.0, 0.0, 0.0);
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    for (shape, (count, ids)) in &shares {
        let (mut validate, mut next_fire, mut ahead) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for &id in ids {
            let (r, _) = rule(id);
            let t = Instant::now();
            let schedule = runtime.validate(&r, now).expect("a valid rule");
            let t1 = Instant::now();
            let first = runtime
                .next_fire(&schedule, now, now)
                .expect("a first fire")
                .expect("a fire left");
            let t2 = Instant::now();
            let after = runtime
                .next_fire(&schedule, now, first)
                .expect("a next fire");
            let fire = Fire {
                rule_id: id,
                rule_ref: r.r#ref.clone(),
                trigger_ref: schedule.trigger_ref.clone(),
                sensor_ref: "bench.startup".into(),
                scheduled_at: first,
                fired_at: first,
                execution_count: 1,
                next_fire_at: after,
            };
            runtime.build_payload(&schedule, &fire).expect("a payload");
            ahead += t2.elapsed();
            next_fire += t2 - t1;
            validate += t1 - t;
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6 / ids.len() as f64;
        let share = *count as f64 / 100_000.0;
        weighted.0 += share * us(validate);
        weighted.1 += share * us(next_fire);
        weighted.2 += share * us(ahead);
        rows.push(ShapeCost {
            shape,
            share,
            validate_us: r2(us(validate)),
            next_fire_us: r2(us(next_fire)),
            build_ahead_us: r2(us(ahead)),
        });
    }
    Calibration {
        rules_per_shape: per_shape,
        by_shape: rows,
        mix_validate_us: r2(weighted.0),
        mix_next_fire_us: r2(weighted.1),
        mix_per_rule_us: r2(weighted.0 + weighted.1),
        mix_build_ahead_us: r2(weighted.2),
    }
}
