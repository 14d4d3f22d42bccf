//! Fire accuracy under load: does the daemon fire every rule on time with 10,000 rules?
//!
//! ```text
//! cargo bench -p attune-core-timer-sensor --bench fire_accuracy -- --rules 10000 --seconds 30
//! ```
//!
//! What it does:
//! 0. calibrates: times the component work of one fire (`next_fire` + `build_payload`) alone
//!    on one thread, so every run states the floor for a burst of N simultaneous fires
//!    (N × that / CPUs) and how fast the machine was that day (shared VMs vary);
//! 1. starts the in-process fake Attune API (`tests/support/fake_api.rs`) holding `--rules N`
//!    (default 10,000) `core.crontimer` rules `{"expression":"* * * * * *"}` — every second,
//!    on the second — and `--interval-rules M` (default 100) `core.intervaltimer` rules of 1,
//!    2, 3 or 5 seconds;
//! 2. starts the daemon in-process (`tests/support/daemon.rs`: `Daemon::start`, then its run
//!    with a shutdown future) against that API and the real RabbitMQ on 127.0.0.1:5672
//!    (guest/guest), with a unique exchange and queue that are deleted at the end; the daemon
//!    runs on its own multi-threaded tokio runtime, built as the binary builds it;
//! 3. once the daemon is ready, lets it run `--seconds S` (default 30), then drives its
//!    shutdown future (the outbox is flushed) and collects every event the API received;
//! 4. discards fires scheduled in the first `--warmup W` seconds (default 2) and reports,
//!    for the fires scheduled in the rest of the run:
//!    - lateness = payload `fired_at` − payload `scheduled_at` (both written by the daemon,
//!      so nothing is guessed) — when the clock task started computing the fire;
//!    - arrival lateness = when the fake API received the event − `scheduled_at`, on the
//!      daemon's own UTC timeline (the bench reads `Clock::now()` and `Instant::now()`
//!      together once to map the API's receive instants onto it);
//!    - count, expected count (per rule: every tick between its first and last fire in the
//!      window), missed ticks (gaps in a rule's `scheduled_at` sequence), duplicates (one
//!      rule, one `scheduled_at`, twice), and per whole-second tick how many rules fired it;
//!    - interval rules: lateness against `started_at + k × interval` (`started_at` read from
//!      the clock), and cumulative drift = last `fired_at` − first `fired_at` − (n−1)×interval
//!      (with n − 1 counted from the tick indices, so a lost event is not read as drift);
//!    - CPU seconds of the process over the window (getrusage), split by thread into the
//!      fake API's threads, the bench's own threads and the rest (the daemon), per 1,000
//!      fires; RSS; and how busy the rest of the machine was (/proc/stat: other processes'
//!      CPU, steal). A run with other processes busy is not a clean run.
//!
//! The daemon's logs go through its production subscriber (JSON, `info`): `--log null`
//! (default) writes each line to /dev/null with its own write(2), as the daemon writes
//! stderr; `--log file` to `target/bench/fire_accuracy.log`; `--log off` installs none.
//!
//! Figures: a table on stdout, JSON in `target/bench/fire_accuracy.json` (and one line
//! appended to `target/bench/fire_accuracy.history.jsonl`). Options may also come from the
//! environment: `FIRE_BENCH_RULES`, `FIRE_BENCH_INTERVAL_RULES`, `FIRE_BENCH_SECONDS`,
//! `FIRE_BENCH_WARMUP`, `FIRE_BENCH_LOG`, `FIRE_BENCH_OUT`.

#[path = "../tests/support/daemon.rs"]
mod daemon_support;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use attune_timer::config::LogFormat;
use daemon_support::TestDaemon;
use support::fake_api::{FakeApi, FakeOptions, RecordedEvent};

const NS: i64 = 1_000_000_000;
const INTERVALS: [i64; 4] = [1, 2, 3, 5];

// ---------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone, Copy, PartialEq)]
enum LogMode {
    Null,
    File,
    Off,
}

#[derive(Debug, Clone)]
struct Args {
    rules: usize,
    interval_rules: usize,
    seconds: u64,
    warmup: u64,
    log: LogMode,
    out: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate lives in the workspace")
        .to_path_buf()
}

fn parse_args() -> Args {
    let env = |k: &str| std::env::var(k).ok();
    let mut rules = env("FIRE_BENCH_RULES");
    let mut interval_rules = env("FIRE_BENCH_INTERVAL_RULES");
    let mut seconds = env("FIRE_BENCH_SECONDS");
    let mut warmup = env("FIRE_BENCH_WARMUP");
    let mut log = env("FIRE_BENCH_LOG");
    let mut out = env("FIRE_BENCH_OUT");
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let slot = match key.as_str() {
            "--rules" => &mut rules,
            "--interval-rules" => &mut interval_rules,
            "--seconds" => &mut seconds,
            "--warmup" => &mut warmup,
            "--log" => &mut log,
            "--out" => &mut out,
            // `cargo bench` passes `--bench`; filters are not used here.
            "--bench" => continue,
            "-h" | "--help" => {
                println!(
                    "fire_accuracy [--rules N] [--interval-rules M] [--seconds S] [--warmup W] \
                     [--log null|file|off] [--out PATH]"
                );
                std::process::exit(0);
            }
            other if other.starts_with('-') => panic!("unknown option {other}"),
            _ => continue,
        };
        *slot = Some(
            inline
                .or_else(|| it.next())
                .expect("a value after the option"),
        );
    }
    let num = |v: Option<String>, default: u64, what: &str| -> u64 {
        v.map(|s| {
            s.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("bad {what}: {s}"))
        })
        .unwrap_or(default)
    };
    let args = Args {
        rules: num(rules, 10_000, "--rules") as usize,
        interval_rules: num(interval_rules, 100, "--interval-rules") as usize,
        seconds: num(seconds, 30, "--seconds"),
        warmup: num(warmup, 2, "--warmup"),
        log: match log.as_deref().unwrap_or("null") {
            "null" => LogMode::Null,
            "file" => LogMode::File,
            "off" => LogMode::Off,
            other => panic!("--log must be null, file or off, not {other}"),
        },
        out: out
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/bench/fire_accuracy.json")),
    };
    assert!(
        args.seconds >= args.warmup + 3,
        "--seconds must exceed the warm-up by at least 3"
    );
    args
}

// ---------------------------------------------------------------------------------------
// The daemon's logs: production format, counted, written where asked.

#[derive(Default)]
struct LogCounters {
    lines: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    warnings: AtomicU64,
    failed_events: AtomicU64,
}

#[derive(Clone)]
struct LogSink {
    counters: Arc<LogCounters>,
    file: Option<Arc<std::fs::File>>,
}

struct LogWriter(LogSink);

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // This runs on the daemon's threads: keep it cheap. The level is near the start of a
        // JSON line (`{"timestamp":"…","level":"INFO",…`).
        let c = &self.0.counters;
        c.lines.fetch_add(
            data.iter().filter(|b| **b == b'\n').count() as u64,
            Ordering::Relaxed,
        );
        c.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let head = &data[..data.len().min(96)];
        if contains(head, b"\"level\":\"ERROR\"") {
            c.errors.fetch_add(1, Ordering::Relaxed);
            if contains(data, b"Failed to create event") {
                c.failed_events.fetch_add(1, Ordering::Relaxed);
            }
        } else if contains(head, b"\"level\":\"WARN\"") {
            c.warnings.fetch_add(1, Ordering::Relaxed);
        }
        match &self.0.file {
            // One write(2) per line, as the daemon writes stderr.
            Some(f) => (&**f).write_all(data).map(|()| data.len()),
            None => Ok(data.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.clone())
    }
}

fn install_logging(mode: LogMode, log_path: &Path) -> Arc<LogCounters> {
    let counters = Arc::new(LogCounters::default());
    let file = match mode {
        LogMode::Off => return counters,
        LogMode::Null => std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("open /dev/null"),
        LogMode::File => std::fs::File::create(log_path).expect("create the log file"),
    };
    let sink = LogSink {
        counters: counters.clone(),
        file: Some(Arc::new(file)),
    };
    let subscriber =
        attune_timer::logging::subscriber("info", LogFormat::Json, sink).expect("subscriber");
    tracing::subscriber::set_global_default(subscriber).expect("global subscriber");
    counters
}

// ---------------------------------------------------------------------------------------
// Process and machine figures (Linux).

fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
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
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        // After ") ": state is field 3; utime and stime are fields 14 and 15.
        let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let field = |n: usize| {
            rest.get(n - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(tid, (name, field(14) + field(15)));
    }
    out
}

/// `VmRSS` and `VmHWM` (peak) of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// (busy, total, steal) CPU ticks of the whole machine, from /proc/stat.
fn machine_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total, v.get(7).copied().unwrap_or(0))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A snapshot at one end of the measured window.
struct Snapshot {
    at: Instant,
    process_cpu: Duration,
    threads: HashMap<u64, (String, u64)>,
    machine: (u64, u64, u64),
    rss: (u64, u64),
    load: String,
}

fn snapshot() -> Snapshot {
    Snapshot {
        at: Instant::now(),
        process_cpu: process_cpu(),
        threads: thread_ticks(),
        machine: machine_ticks(),
        rss: rss_kib(),
        load: loadavg(),
    }
}

/// Which part of the process a thread belongs to.
fn thread_group(tid: u64, name: &str) -> &'static str {
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

// ---------------------------------------------------------------------------------------
// Calibration: the component work of one fire, alone on one thread.

/// Microseconds of component work per fire on one thread, as the clock does it for a
/// `* * * * * *` rule: `next_fire`, then `build_payload` (and the host's checks and JSON
/// parse of it). Measured before the daemon starts, with the same component and cache.
fn calibrate(fires: usize) -> f64 {
    use attune_timer::runtime::{CompileCache, Fire, Rule, TimerRuntime};
    let cache = std::env::temp_dir().join("attune-timer-test-cache");
    let runtime = TimerRuntime::builder()
        .cache(CompileCache::in_dir(cache))
        .embedded()
        .expect("load the embedded component");
    let started = chrono::Utc::now();
    let rule = Rule {
        id: 1,
        r#ref: "test.rule_1".into(),
        trigger_ref: Some("core.crontimer".into()),
        trigger_params: json!({"expression": "* * * * * *"}),
    };
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

// ---------------------------------------------------------------------------------------
// Collected fires

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cron,
    Interval,
}

#[derive(Debug, Clone, Copy)]
struct Rec {
    rule: i64,
    kind: Kind,
    /// The tick (daemon UTC, ns since the epoch).
    sched: i64,
    fired: i64,
    received: i64,
    execution_count: u64,
}

/// Maps a `std::time::Instant` onto the daemon's UTC timeline.
#[derive(Clone, Copy)]
struct TimeMap {
    instant: Instant,
    utc_ns: i64,
}

impl TimeMap {
    fn utc_ns(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.instant) {
            Some(d) => self.utc_ns + d.as_nanos() as i64,
            None => self.utc_ns - self.instant.duration_since(at).as_nanos() as i64,
        }
    }
}

fn parse_ns(v: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()?
        .timestamp_nanos_opt()
}

/// Interval rules: id → (started_at ns, interval ns).
type IntervalStarts = HashMap<i64, (i64, i64)>;

fn to_rec(ev: &RecordedEvent, map: &TimeMap, starts: &IntervalStarts) -> Option<Rec> {
    let body = &ev.body;
    let rule: i64 = body["trigger_instance_id"]
        .as_str()?
        .strip_prefix("rule_")?
        .parse()
        .ok()?;
    let p = &body["payload"];
    let fired = parse_ns(&p["fired_at"])?;
    let execution_count = p["execution_count"].as_u64().unwrap_or(0);
    let received = map.utc_ns(ev.received_at);
    match body["trigger_ref"].as_str()? {
        "core.crontimer" => Some(Rec {
            rule,
            kind: Kind::Cron,
            sched: parse_ns(&p["scheduled_at"])?,
            fired,
            received,
            execution_count,
        }),
        "core.intervaltimer" => {
            let (start, every) = *starts.get(&rule)?;
            // The tick it fired for: the last `start + k × interval` at or before fired_at
            // (a fire is never early; see the clock's docs).
            let k = (fired - start).div_euclid(every);
            Some(Rec {
                rule,
                kind: Kind::Interval,
                sched: start + k * every,
                fired,
                received,
                execution_count,
            })
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Statistics

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(ns: i64) -> f64 {
    (ns as f64 / 1e6 * 1000.0).round() / 1000.0
}

fn dist(mut v: Vec<i64>) -> Value {
    v.sort_unstable();
    let mean = if v.is_empty() {
        0.0
    } else {
        v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64 / 1e6
    };
    json!({
        "n": v.len(),
        "min_ms": ms(v.first().copied().unwrap_or(0)),
        "p50_ms": ms(pct(&v, 50.0)),
        "p90_ms": ms(pct(&v, 90.0)),
        "p99_ms": ms(pct(&v, 99.0)),
        "p99_9_ms": ms(pct(&v, 99.9)),
        "max_ms": ms(v.last().copied().unwrap_or(0)),
        "mean_ms": (mean * 1000.0).round() / 1000.0,
    })
}

/// How many fires fall into each lateness bucket (upper bounds in ms).
fn histogram(v: &[i64]) -> Value {
    const EDGES: [f64; 11] = [
        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
    ];
    let mut counts = [0usize; EDGES.len() + 1];
    for &x in v {
        let m = x as f64 / 1e6;
        let i = EDGES.iter().position(|e| m < *e).unwrap_or(EDGES.len());
        counts[i] += 1;
    }
    let mut out = Vec::new();
    let mut lo = 0.0;
    for (i, c) in counts.iter().enumerate() {
        let key = match EDGES.get(i) {
            Some(hi) => format!("{lo}-{hi} ms"),
            None => format!(">={lo} ms"),
        };
        out.push(json!([key, c]));
        lo = EDGES.get(i).copied().unwrap_or(lo);
    }
    Value::Array(out)
}

/// Sequence checks for one kind of rule: ticks between each rule's first and last fire in
/// the window, gaps and duplicates.
fn sequences(recs: &[&Rec], rules: &[(i64, i64)]) -> Value {
    let mut by_rule: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in recs {
        by_rule.entry(r.rule).or_default().push(r.sched);
    }
    let (mut expected, mut missed, mut duplicates, mut never) = (0i64, 0i64, 0i64, 0usize);
    let mut worst_gap_rule: Option<(i64, i64)> = None;
    for &(rule, every) in rules {
        let Some(ticks) = by_rule.get_mut(&rule) else {
            never += 1;
            continue;
        };
        ticks.sort_unstable();
        expected += (ticks[ticks.len() - 1] - ticks[0]) / every + 1;
        for w in ticks.windows(2) {
            let d = w[1] - w[0];
            if d == 0 {
                duplicates += 1;
            } else if d > every {
                let gap = d / every - 1;
                missed += gap;
                if worst_gap_rule.is_none_or(|(_, g)| gap > g) {
                    worst_gap_rule = Some((rule, gap));
                }
            }
        }
    }
    json!({
        "fires": recs.len(),
        "expected": expected,
        "missed": missed,
        "duplicates": duplicates,
        "rules": rules.len(),
        "rules_without_a_fire": never,
        "worst_gap": worst_gap_rule.map(|(rule, gap)| json!({"rule_id": rule, "ticks": gap})),
    })
}

// ---------------------------------------------------------------------------------------

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn main() {
    let args = parse_args();
    let bench_dir = args
        .out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&bench_dir).expect("create the output directory");
    let log_path = bench_dir.join("fire_accuracy.log");
    let logs = install_logging(args.log, &log_path);

    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let started_utc = chrono::Utc::now();
    eprintln!(
        "fire_accuracy: {} cron rules (* * * * * *) + {} interval rules, {} s run ({} s warm-up \
         discarded), logs: {:?}; {} CPUs ({}); load {}",
        args.rules,
        args.interval_rules,
        args.seconds,
        args.warmup,
        args.log,
        nproc,
        cpu_model(),
        loadavg()
    );

    // The component work of one fire, alone: what a burst of N simultaneous fires costs at
    // the very least (N × this / CPUs, with nothing else running).
    let compute_us = calibrate(10_000);
    let floor_ms = args.rules as f64 * compute_us / 1000.0 / nproc.max(1) as f64;
    eprintln!(
        "component work per fire (one thread, alone): {compute_us:.2} µs -> a burst of {} \
         fires needs at least {floor_ms:.1} ms on {nproc} CPUs",
        args.rules
    );

    // The API and its rules.
    let api = FakeApi::start(FakeOptions::default());
    let n_cron = args.rules as i64;
    for id in 1..=n_cron {
        api.add_rule(
            id,
            "core.crontimer",
            json!({"expression": "* * * * * *"}),
            true,
        );
    }
    let mut interval_rules = Vec::new();
    for i in 0..args.interval_rules as i64 {
        let id = n_cron + 1 + i;
        let every = INTERVALS[i as usize % INTERVALS.len()];
        api.add_rule(
            id,
            "core.intervaltimer",
            json!({"interval": every, "unit": "seconds"}),
            true,
        );
        interval_rules.push((id, every * NS));
    }
    let cron_rules: Vec<(i64, i64)> = (1..=n_cron).map(|id| (id, NS)).collect();

    // The daemon's runtime, as the binary builds it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("attune-timer")
        .build()
        .expect("tokio runtime");

    let stop_collecting = AtomicBool::new(false);
    let records: Mutex<Vec<Rec>> = Mutex::new(Vec::new());
    let rss_max_in_window = AtomicU64::new(0);
    let in_window = AtomicBool::new(false);
    let context: Mutex<Option<(TimeMap, IntervalStarts)>> = Mutex::new(None);
    let unparsed = AtomicU64::new(0);

    let outcome = std::thread::scope(|scope| {
        // Drains the API's recordings every 250 ms into compact records.
        let collector = std::thread::Builder::new()
            .name("bench-collector".into())
            .spawn_scoped(scope, || {
                let ctx = loop {
                    if let Some(c) = context.lock().unwrap().clone() {
                        break c;
                    }
                    if stop_collecting.load(Ordering::Acquire) {
                        return; // the daemon never became ready
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                let (map, starts) = ctx;
                loop {
                    let last = stop_collecting.load(Ordering::Acquire);
                    let drained = api.drain_events();
                    let mut parsed = Vec::with_capacity(drained.len());
                    for ev in &drained {
                        match to_rec(ev, &map, &starts) {
                            Some(r) => parsed.push(r),
                            None => {
                                unparsed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    drop(drained);
                    records.lock().unwrap().extend(parsed);
                    if in_window.load(Ordering::Relaxed) {
                        rss_max_in_window.fetch_max(rss_kib().0, Ordering::Relaxed);
                    }
                    if last {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
            .expect("spawn the collector");

        // Stops the collector even when the run below panics.
        let _stop = SetOnDrop(&stop_collecting);
        let result = runtime.block_on(async {
            let t0 = Instant::now();
            let daemon = TestDaemon::start(&api, &[]).await;
            let startup = t0.elapsed();
            let want = args.rules + args.interval_rules;
            let deadline = Instant::now() + Duration::from_secs(60);
            while daemon.clock.len() < want {
                assert!(
                    Instant::now() < deadline,
                    "only {} timers running",
                    daemon.clock.len()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The daemon's UTC timeline: read both clocks together, keep the tightest pair.
            let mut best: Option<(Duration, TimeMap)> = None;
            for _ in 0..100 {
                let a = Instant::now();
                let utc = daemon.clock.now();
                let b = Instant::now();
                let pair = TimeMap {
                    instant: a + (b - a) / 2,
                    utc_ns: utc.timestamp_nanos_opt().unwrap(),
                };
                if best.as_ref().is_none_or(|(gap, _)| b - a < *gap) {
                    best = Some((b - a, pair));
                }
            }
            let map = best.unwrap().1;
            let mut starts = IntervalStarts::new();
            for &(id, every) in &interval_rules {
                let t = daemon.clock.timer(id).expect("interval timer running");
                starts.insert(id, (t.started_at.timestamp_nanos_opt().unwrap(), every));
            }
            *context.lock().unwrap() = Some((map, starts));
            let rss_ready = rss_kib();
            let ready = Instant::now();
            eprintln!(
                "daemon ready in {:.1} s with {} timers (RSS {} MiB); running {} s...",
                startup.as_secs_f64(),
                daemon.clock.len(),
                rss_ready.0 / 1024,
                args.seconds
            );

            tokio::time::sleep_until((ready + Duration::from_secs(args.warmup)).into()).await;
            let begin = snapshot();
            in_window.store(true, Ordering::Relaxed);
            tokio::time::sleep_until((ready + Duration::from_secs(args.seconds)).into()).await;
            let end = snapshot();
            in_window.store(false, Ordering::Relaxed);

            let stopping = Instant::now();
            daemon.stop().await.expect("the daemon shut down cleanly");
            let shutdown = stopping.elapsed();
            (map, startup, rss_ready, begin, end, shutdown)
        });
        stop_collecting.store(true, Ordering::Release);
        collector.join().expect("collector");
        result
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    let (map, startup, rss_ready, begin, end, shutdown) = outcome;

    // ---- analysis ----
    let records = records.into_inner().unwrap();
    let w0 = map.utc_ns(begin.at);
    let w1 = map.utc_ns(end.at);
    let window_s = (w1 - w0) as f64 / 1e9;
    let in_win: Vec<&Rec> = records
        .iter()
        .filter(|r| r.sched >= w0 && r.sched < w1)
        .collect();
    let cron: Vec<&Rec> = in_win
        .iter()
        .copied()
        .filter(|r| r.kind == Kind::Cron)
        .collect();
    let interval: Vec<&Rec> = in_win
        .iter()
        .copied()
        .filter(|r| r.kind == Kind::Interval)
        .collect();
    let early = in_win.iter().filter(|r| r.fired < r.sched).count();

    // Every whole-second tick of the window that ended at least 1 s before the stop: how
    // many cron rules fired it (each should be fired by all of them).
    let mut per_tick: BTreeMap<i64, usize> = BTreeMap::new();
    let first_tick = (w0 + NS - 1).div_euclid(NS) * NS;
    let mut t = first_tick;
    while t <= w1 - NS {
        per_tick.insert(t, 0);
        t += NS;
    }
    for r in &cron {
        if let Some(c) = per_tick.get_mut(&r.sched) {
            *c += 1;
        }
    }
    let ticks_short = per_tick.values().filter(|c| **c < args.rules).count();
    let per_tick_min = per_tick.values().min().copied().unwrap_or(0);
    let per_tick_max = per_tick.values().max().copied().unwrap_or(0);
    // How long each second's burst took: the latest fired_at of each tick.
    let mut burst: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &cron {
        let e = burst.entry(r.sched).or_insert(i64::MIN);
        *e = (*e).max(r.fired - r.sched);
    }
    let burst_end: Vec<i64> = burst.values().copied().collect();

    let cron_late: Vec<i64> = cron.iter().map(|r| r.fired - r.sched).collect();
    let cron_arrival: Vec<i64> = cron.iter().map(|r| r.received - r.sched).collect();
    let int_late: Vec<i64> = interval.iter().map(|r| r.fired - r.sched).collect();
    let int_arrival: Vec<i64> = interval.iter().map(|r| r.received - r.sched).collect();

    // Drift of each interval rule over the window: last fired_at − first fired_at − (the
    // ticks between them) × interval. The ticks between them are (n − 1) when nothing was
    // missed; a missed fire must not read as an interval of drift, so they are counted from
    // the tick indices (missed ticks are reported in the interval sequence figures).
    let mut by_rule: HashMap<i64, Vec<&Rec>> = HashMap::new();
    for r in &interval {
        by_rule.entry(r.rule).or_default().push(r);
    }
    let mut drifts = Vec::new();
    let mut count_mismatch = 0usize;
    for &(id, every) in &interval_rules {
        let Some(v) = by_rule.get_mut(&id) else {
            continue;
        };
        v.sort_by_key(|r| r.fired);
        if v.len() < 2 {
            continue;
        }
        let (first, last) = (v[0], v[v.len() - 1]);
        drifts.push(last.fired - first.fired - (last.sched - first.sched));
        // execution_count advances by one per fire; a tick skipped by a late clock (not one
        // whose event was lost on the way) would make it lag the tick index.
        for r in v.iter() {
            let k_delta = (r.sched - first.sched) / every;
            if r.execution_count != first.execution_count + k_delta as u64 {
                count_mismatch += 1;
            }
        }
    }
    let drift_abs_max = drifts.iter().map(|d| d.abs()).max().unwrap_or(0);

    // CPU and memory over the window.
    let tck = clk_tck();
    let mut groups: BTreeMap<&str, f64> = BTreeMap::new();
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    for (tid, (name, ticks)) in &end.threads {
        let before = begin.threads.get(tid).map(|(_, t)| *t).unwrap_or(0);
        let secs = ticks.saturating_sub(before) as f64 / tck;
        *groups.entry(thread_group(*tid, name)).or_default() += secs;
        *by_name.entry(name.clone()).or_default() += secs;
    }
    let wall = (end.at - begin.at).as_secs_f64();
    let process_cpu = (end.process_cpu - begin.process_cpu).as_secs_f64();
    let fake_cpu = groups.get("fake_api").copied().unwrap_or(0.0);
    let bench_cpu = groups.get("bench").copied().unwrap_or(0.0);
    // Threads that ended inside the window are in the process total only; they can only be
    // the daemon's (blocking-pool threads), so the daemon is the process minus the rest.
    let daemon_cpu = (process_cpu - fake_cpu - bench_cpu).max(0.0);
    let fires_in_cpu_window = records
        .iter()
        .filter(|r| r.fired >= w0 && r.fired < w1)
        .count();
    let per_1000 = |cpu: f64| {
        if fires_in_cpu_window == 0 {
            0.0
        } else {
            cpu / fires_in_cpu_window as f64 * 1000.0
        }
    };
    let machine_busy = (end.machine.0 - begin.machine.0) as f64 / tck;
    let others_cores = ((machine_busy - process_cpu) / wall).max(0.0);
    let steal_s = (end.machine.2 - begin.machine.2) as f64 / tck;
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let round5 = |x: f64| format!("{x:.5}").parse::<f64>().unwrap_or(x);

    let report = json!({
        "bench": "fire_accuracy",
        "date_utc": started_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "commit": git_commit(),
        "machine": {
            "nproc": nproc,
            "cpu_model": cpu_model(),
            "load_avg_at_start": begin.load,
            "load_avg_at_end": end.load,
            "other_processes_cores_busy": round3(others_cores),
            "steal_seconds": round3(steal_s),
        },
        "params": {
            "cron_rules": args.rules,
            "cron_expression": "* * * * * *",
            "interval_rules": args.interval_rules,
            "interval_seconds": INTERVALS,
            "run_seconds": args.seconds,
            "warmup_seconds_discarded": args.warmup,
            "window_seconds": round3(window_s),
            "logs": format!("{:?}", args.log).to_lowercase(),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        },
        "calibration": {
            "component_us_per_fire_one_thread": round3(compute_us),
            "burst_floor_ms": round3(floor_ms),
            "note": "N × per-fire component work / CPUs: the last fire of a burst of N simultaneous fires cannot be earlier, even with nothing else running",
        },
        "startup_seconds": round3(startup.as_secs_f64()),
        "shutdown_seconds": round3(shutdown.as_secs_f64()),
        "cron": {
            "sequence": sequences(&cron, &cron_rules),
            "ticks_in_window": per_tick.len(),
            "ticks_short_of_all_rules": ticks_short,
            "rules_per_tick_min": per_tick_min,
            "rules_per_tick_max": per_tick_max,
            "lateness": dist(cron_late.clone()),
            "lateness_histogram": histogram(&cron_late),
            "arrival_lateness": dist(cron_arrival.clone()),
            "arrival_histogram": histogram(&cron_arrival),
            "burst_last_fire_lateness": dist(burst_end),
        },
        "interval": {
            "sequence": sequences(&interval, &interval_rules),
            "lateness": dist(int_late),
            "arrival_lateness": dist(int_arrival),
            "drift_rules": drifts.len(),
            "drift_abs_max_ms": ms(drift_abs_max),
            "drift": dist(drifts),
            "execution_count_mismatches": count_mismatch,
        },
        "early_fires": early,
        "events_received_total": records.len(),
        "events_unparsed": unparsed.load(Ordering::Relaxed),
        "cpu": {
            "window_wall_seconds": round3(wall),
            "fires_in_window": fires_in_cpu_window,
            "process_seconds": round3(process_cpu),
            "daemon_seconds": round3(daemon_cpu),
            "fake_api_seconds": round3(fake_cpu),
            "bench_seconds": round3(bench_cpu),
            "process_per_1000_fires_seconds": round5(per_1000(process_cpu)),
            "daemon_per_1000_fires_seconds": round5(per_1000(daemon_cpu)),
            "fake_api_per_1000_fires_seconds": round5(per_1000(fake_cpu)),
            "daemon_cores_busy": round3(daemon_cpu / wall),
            "by_thread_name_seconds": by_name.iter().map(|(k, v)| (k.clone(), json!(round3(*v)))).collect::<serde_json::Map<_, _>>(),
        },
        "memory": {
            "rss_ready_mib": round3(rss_ready.0 as f64 / 1024.0),
            "rss_window_start_mib": round3(begin.rss.0 as f64 / 1024.0),
            "rss_window_end_mib": round3(end.rss.0 as f64 / 1024.0),
            "rss_window_max_mib": round3(rss_max_in_window.load(Ordering::Relaxed).max(end.rss.0) as f64 / 1024.0),
            "rss_peak_hwm_mib": round3(end.rss.1 as f64 / 1024.0),
            "bench_records_mib": round3((records.capacity() * std::mem::size_of::<Rec>()) as f64 / 1048576.0),
        },
        "logs": {
            "lines": logs.lines.load(Ordering::Relaxed),
            "bytes": logs.bytes.load(Ordering::Relaxed),
            "errors": logs.errors.load(Ordering::Relaxed),
            "warnings": logs.warnings.load(Ordering::Relaxed),
            "failed_to_create_event": logs.failed_events.load(Ordering::Relaxed),
        },
    });

    print_table(&report);
    let text = serde_json::to_string_pretty(&report).unwrap();
    std::fs::write(&args.out, format!("{text}\n")).expect("write the JSON report");
    let history = bench_dir.join("fire_accuracy.history.jsonl");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&history)
    {
        let _ = writeln!(f, "{}", serde_json::to_string(&report).unwrap());
    }
    println!("\nJSON: {}", args.out.display());
    drop(api);
}

fn print_table(r: &Value) {
    let f = |v: &Value| match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let p = &r["params"];
    println!();
    println!(
        "fire_accuracy  {}  commit {}  {} CPUs ({})",
        f(&r["date_utc"]),
        f(&r["commit"]),
        f(&r["machine"]["nproc"]),
        f(&r["machine"]["cpu_model"])
    );
    println!(
        "{} cron rules `* * * * * *` + {} interval rules; run {} s, first {} s discarded as \
         warm-up -> window {} s; logs {}",
        f(&p["cron_rules"]),
        f(&p["interval_rules"]),
        f(&p["run_seconds"]),
        f(&p["warmup_seconds_discarded"]),
        f(&p["window_seconds"]),
        f(&p["logs"])
    );
    println!(
        "component work per fire {} µs (one thread, alone) -> floor for the last fire of a \
         {}-fire burst on {} CPUs: {} ms",
        f(&r["calibration"]["component_us_per_fire_one_thread"]),
        f(&p["cron_rules"]),
        f(&r["machine"]["nproc"]),
        f(&r["calibration"]["burst_floor_ms"])
    );
    println!(
        "startup {} s, shutdown {} s; other processes kept {} cores busy (steal {} s); load {} \
         -> {}",
        f(&r["startup_seconds"]),
        f(&r["shutdown_seconds"]),
        f(&r["machine"]["other_processes_cores_busy"]),
        f(&r["machine"]["steal_seconds"]),
        f(&r["machine"]["load_avg_at_start"]),
        f(&r["machine"]["load_avg_at_end"])
    );
    println!();
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "(ms)", "min", "p50", "p99", "p99.9", "max", "mean"
    );
    let row = |name: &str, d: &Value| {
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name,
            f(&d["min_ms"]),
            f(&d["p50_ms"]),
            f(&d["p99_ms"]),
            f(&d["p99_9_ms"]),
            f(&d["max_ms"]),
            f(&d["mean_ms"])
        )
    };
    row("cron lateness (fired-scheduled)", &r["cron"]["lateness"]);
    row(
        "cron arrival (received-scheduled)",
        &r["cron"]["arrival_lateness"],
    );
    row(
        "cron: last fire of each tick",
        &r["cron"]["burst_last_fire_lateness"],
    );
    row("interval lateness", &r["interval"]["lateness"]);
    row("interval arrival", &r["interval"]["arrival_lateness"]);
    row("interval drift over window", &r["interval"]["drift"]);
    println!();
    let c = &r["cron"]["sequence"];
    let i = &r["interval"]["sequence"];
    println!(
        "{:<10} {:>9} {:>9} {:>8} {:>10} {:>14}",
        "", "fires", "expected", "missed", "duplicates", "rules w/o fire"
    );
    for (name, s) in [("cron", c), ("interval", i)] {
        println!(
            "{:<10} {:>9} {:>9} {:>8} {:>10} {:>14}",
            name,
            f(&s["fires"]),
            f(&s["expected"]),
            f(&s["missed"]),
            f(&s["duplicates"]),
            f(&s["rules_without_a_fire"])
        );
    }
    println!(
        "cron ticks in window {} (each should have {} fires): min {} max {}, short {}; early \
         fires {}; execution_count mismatches {}; unparsed events {}",
        f(&r["cron"]["ticks_in_window"]),
        f(&p["cron_rules"]),
        f(&r["cron"]["rules_per_tick_min"]),
        f(&r["cron"]["rules_per_tick_max"]),
        f(&r["cron"]["ticks_short_of_all_rules"]),
        f(&r["early_fires"]),
        f(&r["interval"]["execution_count_mismatches"]),
        f(&r["events_unparsed"])
    );
    let cpu = &r["cpu"];
    println!();
    println!(
        "CPU over {} s and {} fires: process {} s ({} s / 1,000 fires), daemon {} s ({} s / \
         1,000 fires, {} cores), fake API {} s, bench {} s",
        f(&cpu["window_wall_seconds"]),
        f(&cpu["fires_in_window"]),
        f(&cpu["process_seconds"]),
        f(&cpu["process_per_1000_fires_seconds"]),
        f(&cpu["daemon_seconds"]),
        f(&cpu["daemon_per_1000_fires_seconds"]),
        f(&cpu["daemon_cores_busy"]),
        f(&cpu["fake_api_seconds"]),
        f(&cpu["bench_seconds"])
    );
    let m = &r["memory"];
    println!(
        "RSS (whole process, fake API included): ready {} MiB, window {} -> {} MiB (max {}), \
         peak {} MiB",
        f(&m["rss_ready_mib"]),
        f(&m["rss_window_start_mib"]),
        f(&m["rss_window_end_mib"]),
        f(&m["rss_window_max_mib"]),
        f(&m["rss_peak_hwm_mib"])
    );
    let l = &r["logs"];
    println!(
        "daemon logs: {} lines, {} errors, {} warnings, {} `Failed to create event`",
        f(&l["lines"]),
        f(&l["errors"]),
        f(&l["warnings"]),
        f(&l["failed_to_create_event"])
    );
    let hist = |name: &str, h: &Value| {
        let parts: Vec<String> = h
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b[1].as_u64() != Some(0))
            .map(|b| format!("{}: {}", f(&b[0]), f(&b[1])))
            .collect();
        println!("{name}: {}", parts.join(", "));
    };
    hist("cron lateness histogram", &r["cron"]["lateness_histogram"]);
    hist("cron arrival histogram ", &r["cron"]["arrival_histogram"]);
}
