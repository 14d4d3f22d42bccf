//! Figures of this process (the daemon runs in it, beside the fake API and the bench) and
//! of the machine, and the calibration of the component work per fire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use attune_testkit::machine::{loadavg, machine_ticks};

/// CPU time (user + system) of this process so far.
pub fn process_cpu() -> Duration {
    let ru = attune_testkit::machine::self_rusage();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU ticks (user + system) of every live thread of this process: tid → (name, ticks).
fn thread_ticks() -> HashMap<u64, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((name, user, system)) = attune_testkit::machine::stat_ticks(&stat) else {
            continue;
        };
        out.insert(tid, (name.to_string(), user + system));
    }
    out
}

/// `VmRSS` and `VmHWM` (peak) of this process, in KiB.
pub fn rss_kib() -> (u64, u64) {
    let [rss, hwm] =
        attune_testkit::machine::status_values("/proc/self/status", ["VmRSS:", "VmHWM:"]);
    (rss, hwm)
}

/// Between scenarios: gives freed heap back to the OS and resets the peak RSS (`VmHWM`), so
/// each scenario's memory figures are its own as far as possible.
pub fn release_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    // "5" resets the peak resident set size (Linux 4.0+); nothing happens elsewhere.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A snapshot at one end of the measured window.
pub struct Snapshot {
    pub at: Instant,
    pub process_cpu: Duration,
    pub threads: HashMap<u64, (String, u64)>,
    pub machine: (u64, u64, u64),
    pub rss: (u64, u64),
    pub load: String,
    /// Bytes this process caused to be written to storage (`/proc/self/io` `write_bytes`).
    pub write_bytes: u64,
}

pub fn snapshot() -> Snapshot {
    Snapshot {
        at: Instant::now(),
        process_cpu: process_cpu(),
        threads: thread_ticks(),
        machine: machine_ticks(),
        rss: rss_kib(),
        load: loadavg(),
        write_bytes: write_bytes(),
    }
}

/// `write_bytes` of `/proc/self/io`: what reached the storage layer (the state store's
/// commits; the logs of a bench go to memory or nowhere).
pub fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| {
                    l.strip_prefix("write_bytes:")
                        .map(|v| v.trim().parse().ok())
                })
                .flatten()
        })
        .unwrap_or(0)
}

/// Which part of the process a thread belongs to.
pub fn thread_group(tid: u64, name: &str) -> &'static str {
    let pid = std::process::id() as u64;
    if tid == pid || name == "bench-collector" {
        "bench"
    } else if name == "fake-attune-api" || name.starts_with("tokio-r") {
        // The fake API's thread and its runtime's worker (`tokio-rt-worker`, tokio's default
        // name; the daemon's runtime is named `attune-timer`, as in the binary).
        "fake_api"
    } else {
        "daemon"
    }
}

// Calibration: the component work of one fire, alone on one thread.

/// Microseconds of component work per fire on one thread, as the clock does it for a
/// `* * * * * *` rule: `next_fire`, then `build_payload` (and the host's checks and JSON
/// parse of it). Measured before the daemon starts, with the same component and cache.
pub fn calibrate(fires: usize) -> f64 {
    use attune_timer::component::{CompileCache, Fire, TimerRuntime};
    let cache = std::env::temp_dir().join("attune-timer-test-cache");
    let runtime = TimerRuntime::builder()
        .cache(CompileCache::in_dir(cache))
        .embedded()
        .expect("load the embedded component");
    let started = chrono::Utc::now();
    let rule =
        attune_testkit::rules::rule(1, "core.crontimer", json!({"expression": "* * * * * *"}));
    let schedule = runtime.validate(&rule, started).expect("valid rule");
    let mut tick = runtime
        .next_fire(&schedule, started, started)
        .unwrap()
        .unwrap();
    let mut one = |i: usize| {
        let fired = tick + chrono::Duration::microseconds(50);
        let next = runtime
            .next_fire(&schedule, started, tick.max(fired))
            .unwrap();
        let fire = Fire {
            rule_id: 1 + i as i64,
            rule_ref: rule.r#ref.clone(),
            trigger_ref: schedule.trigger_ref.clone(),
            sensor_ref: "core.timer_sensor".into(),
            scheduled_at: tick,
            fired_at: fired,
            execution_count: 1 + i as u64,
            next_fire_at: next,
        };
        std::hint::black_box(runtime.build_payload(&schedule, &fire).unwrap());
        tick = next.unwrap();
    };
    for i in 0..fires / 10 {
        one(i);
    }
    let t = Instant::now();
    for i in 0..fires {
        one(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / fires as f64
}
