//! Fire accuracy under load: does the daemon fire every rule on time, with none missed or
//! doubled, when 1,000, 10,000 or 100,000 rules are running?
//!
//! ```text
//! # needs RabbitMQ on 127.0.0.1:5672 (guest/guest), like `make test`
//! # the full measurement: three scenarios, 60 s each after the warm-up (about 4 minutes)
//! cargo bench -p attune-core-timer-sensor --bench fire_accuracy
//! # a smoke run
//! cargo bench -p attune-core-timer-sensor --bench fire_accuracy -- --scenario 1k,10k --seconds 10
//! ```
//!
//! # Scenarios
//!
//! `--scenario` takes a comma-separated list (default `1k,10k,100k`). They run one after
//! the other in this process, each with a fresh fake API, daemon and tokio runtime:
//! - `1k`: 1,000 `core.crontimer` rules `{"expression":"* * * * * *"}`: every second, on
//!   the second, all together;
//! - `10k`: 10,000 such rules;
//! - `100k`: 100,000 rules firing every 10 seconds, spread over the 10 s as real rules would
//!   be rather than all due at once: rule `i` has `{"expression":"{i % 10}/10 * * * * *"}`
//!   (seconds `i % 10`, `i % 10 + 10`, …; the cron parser reads the quartz-style `3/10` as
//!   `3-59/10`), so 10,000 rules fire in every second, and each rule fires every 10 s;
//! - any other `N` or `N/P` (`2500`, `50k/5`): N rules, every P seconds (P divides 60),
//!   spread over the P seconds like `100k` (a bare `N` is every second, all together).
//!
//! Every scenario also has `--interval-rules M` (default 100) `core.intervaltimer` rules of
//! 1, 2, 3 or 5 seconds, for drift.
//!
//! # What one scenario does
//!
//! 0. calibrates: times the component work of one fire (`next_fire` + `build_payload`) alone
//!    on one thread, to state how fast the machine was (shared VMs vary by ±30%) and how many
//!    cores the component work of the scenario's fire rate takes;
//! 1. starts the in-process fake Attune API (`tests/support/fake_api.rs`) holding the rules;
//! 2. starts the daemon in-process (`tests/support/daemon.rs`: `Daemon::start`, then its run
//!    with a shutdown future) against that API and the real RabbitMQ on 127.0.0.1:5672
//!    (guest/guest), with a unique exchange and queue that are deleted at the end; the daemon
//!    runs on its own multi-threaded tokio runtime, built as the binary builds it;
//! 3. once every timer is running, waits `--warmup W` seconds (default 5), calls
//!    `Clock::take_lateness` to discard the warm-up, measures for `--seconds S` (default 60;
//!    the published figures need at least 60, shorter runs are smoke runs), calls
//!    `Clock::take_lateness` again, then drives the daemon's shutdown future (the outbox is
//!    flushed) and collects every event the API received;
//! 4. reports, for the window (the fires the clock handed on in it, or the events whose
//!    `scheduled_at` falls in it):
//!    - **lateness**, from `Clock::take_lateness`: for every fire (cron and interval), the
//!      instant the sink (the outbox) had it minus its tick, on the monotonic clock. This is
//!      when a fire happened. The payload's `fired_at` is not: the clock builds each fire
//!      ahead with `fired_at` = its tick, and uses that payload when it takes the fire within
//!      `clock::ON_TIME` (5 ms) of the tick (see `host/src/clock.rs`);
//!    - **arrival lateness**: when the fake API received the event − `scheduled_at`, on the
//!      daemon's own UTC timeline (the bench reads `Clock::now()` and `Instant::now()`
//!      together once to map the API's receive instants onto it); for interval rules, whose
//!      payload has no `scheduled_at`, the tick is `started_at + k × interval` at or before
//!      `fired_at` (`started_at` read from the clock);
//!    - **the payload check**: cron payloads' `fired_at − scheduled_at`: never negative (no
//!      early fire), its max, and how many fires (cron and interval) carry a `fired_at` after
//!      their tick — those the clock took more than `ON_TIME` late and built when they
//!      fired. That count should be close to the clock's count of fires that reached the sink
//!      later than `ON_TIME`; payloads that claim on-time fires for late ones open a gap
//!      between the two (the table prints a NOTE when it exceeds 0.1% of the fires);
//!    - **missed and duplicate fires**, from the events the API received: per rule, every
//!      tick between its first and last fire in the window is expected; gaps are missed,
//!      the same rule and `scheduled_at` twice are duplicates. Every whole-second tick of the
//!      window must also have been fired by every cron rule due in it;
//!    - **interval drift**: per interval rule, last − first `fired_at` − (ticks between) ×
//!      interval (the ticks between counted from the tick indices, so a lost event is not
//!      read as drift), and the same from the API's receive times; `execution_count` must
//!      advance by one per tick;
//!    - **CPU** of the process over the window (getrusage), split by thread into the fake
//!      API's threads, the bench's own threads and the rest (the daemon), per 1,000 fires
//!      (the fires the clock handed on in the window), and per thread name;
//!    - **RSS** of the whole process (the fake API and the bench's records included): before
//!      the scenario, once the daemon is ready, over the window, and the peak (`VmHWM`, reset
//!      at the start of each scenario; freed memory is returned with `malloc_trim` between
//!      scenarios);
//!    - how busy the rest of the machine was (/proc/stat: other processes' CPU, steal). A run
//!      with other processes busy is not a clean run.
//!
//! The daemon's logs go through its production subscriber (JSON, `info`): `--log null`
//! (default) writes each line to /dev/null with its own write(2), as the daemon writes
//! stderr; `--log file` to `target/bench/fire_accuracy.log`; `--log off` installs none.
//!
//! # Output
//!
//! - a table on stdout per scenario;
//! - JSON with every scenario in `target/bench/fire_accuracy.json` (`--out`; rewritten after
//!   each scenario), and the same report appended as one line to
//!   `target/bench/fire_accuracy.history.jsonl`;
//! - per scenario, a plot `target/bench/lateness_<scenario>.png` (`lateness_10k.png`,
//!   `lateness_100k.png`, …; next to `--out`): the fraction of fires later than x against
//!   x, on log axes, for the clock's lateness and the arrival lateness. The bench draws it
//!   with `plotters` into memory, with text in DejaVu Sans from the `dejavu` crate, and
//!   writes it with `png`: no system library or font is needed.
//!
//! # Options
//!
//! | option | env | default |
//! |---|---|---|
//! | `--scenario LIST` | `FIRE_BENCH_SCENARIO` | `1k,10k,100k` |
//! | `--seconds S` (measured window, after the warm-up) | `FIRE_BENCH_SECONDS` | 60 |
//! | `--warmup W` | `FIRE_BENCH_WARMUP` | 5 |
//! | `--interval-rules M` | `FIRE_BENCH_INTERVAL_RULES` | 100 |
//! | `--log null\|file\|off` | `FIRE_BENCH_LOG` | `null` |
//! | `--out PATH` | `FIRE_BENCH_OUT` | `target/bench/fire_accuracy.json` |
//!
//! `--rules N` is kept for older command lines: the same as `--scenario N`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use attune_testkit::daemon::TestDaemon;
use attune_testkit::fake_api::{FakeApi, FakeOptions, RecordedEvent};
use attune_testkit::machine::{
    clk_tck, cpu_model, git_commit, loadavg, machine_ticks, workspace_root,
};
use attune_timer::daemon::config::LogFormat;
use attune_timer::schedule::ON_TIME;

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

/// One scenario: `rules` cron rules, each firing every `period` seconds.
#[derive(Debug, Clone)]
struct Scenario {
    name: String,
    rules: usize,
    /// Seconds between two fires of one rule; divides 60.
    period: i64,
}

impl Scenario {
    /// `1k`, `10k`, `100k` (every 10 s), or `N[/P]` with `N` a count (`k` for thousands).
    fn parse(text: &str) -> Scenario {
        let text = text.trim();
        let (count, period) = match (text, text.split_once('/')) {
            ("100k", _) => ("100k", "10"),
            (_, Some((c, p))) => (c, p),
            (_, None) => (text, "1"),
        };
        let count = count.replace('_', "");
        let rules = match count.strip_suffix(['k', 'K']) {
            Some(k) => k.parse::<usize>().map(|k| k * 1000),
            None => count.parse::<usize>(),
        }
        .unwrap_or_else(|_| panic!("bad scenario {text:?}: expected 1k, 10k, 100k, N or N/P"));
        let period: i64 = period
            .parse()
            .unwrap_or_else(|_| panic!("bad period in scenario {text:?}"));
        assert!(
            rules > 0 && (1..=60).contains(&period) && 60 % period == 0,
            "scenario {text:?}: need at least one rule and a period that divides 60"
        );
        Scenario {
            name: text.to_string(),
            rules,
            period,
        }
    }

    /// The cron expression of rule `id` (ids start at 1).
    fn expression(&self, id: i64) -> String {
        if self.period == 1 {
            "* * * * * *".to_string()
        } else {
            format!("{}/{} * * * * *", id % self.period, self.period)
        }
    }

    /// The expressions, as the report states them.
    fn expression_doc(&self) -> String {
        if self.period == 1 {
            "* * * * * *".to_string()
        } else {
            format!("{{id % {p}}}/{p} * * * * *", p = self.period)
        }
    }

    /// How many cron rules are due in a second `s` (UTC, since the epoch), by `s % period`.
    fn due_by_phase(&self) -> Vec<usize> {
        let mut due = vec![0usize; self.period as usize];
        for id in 1..=self.rules as i64 {
            due[(id % self.period) as usize] += 1;
        }
        due
    }

    fn fires_per_second(&self) -> f64 {
        self.rules as f64 / self.period as f64
    }

    /// For file names: `100k`, `50k_5`.
    fn tag(&self) -> String {
        self.name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    /// "10,000 rules every second" / "100,000 rules every 10 s (10,000 a second)".
    fn describe(&self) -> String {
        if self.period == 1 {
            format!("{} rules every second", thousands(self.rules as u64))
        } else {
            format!(
                "{} rules every {} s ({} a second)",
                thousands(self.rules as u64),
                self.period,
                thousands(self.fires_per_second().round() as u64)
            )
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    scenarios: Vec<Scenario>,
    interval_rules: usize,
    seconds: u64,
    warmup: u64,
    log: LogMode,
    out: PathBuf,
}

fn parse_args() -> Args {
    let env = |k: &str| std::env::var(k).ok();
    let mut scenario = env("FIRE_BENCH_SCENARIO");
    let mut rules = None;
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
            "--scenario" | "--scenarios" => &mut scenario,
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
                    "fire_accuracy [--scenario 1k,10k,100k|N|N/P,...] [--seconds S] [--warmup W] \
                     [--interval-rules M] [--log null|file|off] [--out PATH]"
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
    let list = match (scenario, rules) {
        (Some(_), Some(_)) => panic!("give --scenario or --rules, not both"),
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => "1k,10k,100k".to_string(),
    };
    let args = Args {
        scenarios: list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Scenario::parse)
            .collect(),
        interval_rules: num(interval_rules, 100, "--interval-rules") as usize,
        seconds: num(seconds, 60, "--seconds"),
        warmup: num(warmup, 5, "--warmup"),
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
    assert!(!args.scenarios.is_empty(), "no scenario given");
    assert!(args.seconds >= 2, "--seconds must be at least 2");
    for sc in &args.scenarios {
        if (args.seconds as i64) < 2 * sc.period {
            eprintln!(
                "note: scenario {}: a {} s window holds fewer than two fires per rule, so \
                 missed fires between a rule's fires cannot show; only the per-tick counts \
                 check it",
                sc.name, args.seconds
            );
        }
    }
    args
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

impl LogCounters {
    /// The counts so far, as JSON; starts counting from zero again.
    fn take(&self) -> Value {
        let t = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        json!({
            "lines": t(&self.lines),
            "bytes": t(&self.bytes),
            "errors": t(&self.errors),
            "warnings": t(&self.warnings),
            "failed_to_create_event": t(&self.failed_events),
        })
    }
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
        attune_timer::app::logging::subscriber("info", LogFormat::Json, sink).expect("subscriber");
    tracing::subscriber::set_global_default(subscriber).expect("global subscriber");
    counters
}

// ---------------------------------------------------------------------------------------
// Process and machine figures (Linux).

/// CPU time (user + system) of this process so far.
fn process_cpu() -> Duration {
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
fn rss_kib() -> (u64, u64) {
    let [rss, hwm] = attune_testkit::machine::status_values("/proc/self/status", ["VmRSS:", "VmHWM:"]);
    (rss, hwm)
}

/// Between scenarios: gives freed heap back to the OS and resets the peak RSS (`VmHWM`), so
/// each scenario's memory figures are its own as far as possible.
fn release_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    // "5" resets the peak resident set size (Linux 4.0+); nothing happens elsewhere.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
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
    use attune_timer::component::{CompileCache, Fire, Rule, TimerRuntime};
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

/// The clock's lateness histogram (ns) as the report states it, in ms.
fn hist_dist(h: &Histogram<u64>) -> Value {
    let q = |p: f64| ms(h.value_at_quantile(p) as i64);
    let on_time_ns = ON_TIME.as_nanos() as u64;
    json!({
        "n": h.len(),
        "min_ms": ms(h.min() as i64),
        "p50_ms": q(0.5),
        "p90_ms": q(0.9),
        "p99_ms": q(0.99),
        "p99_9_ms": q(0.999),
        "max_ms": ms(h.max() as i64),
        "mean_ms": (h.mean() / 1e6 * 1000.0).round() / 1000.0,
        "later_than_on_time": h.len() - h.count_between(0, on_time_ns).min(h.len()),
        "on_time_ms": ON_TIME.as_secs_f64() * 1000.0,
    })
}

/// How many of the clock's fires fall into each lateness bucket (upper bounds in ms).
fn hist_buckets(h: &Histogram<u64>) -> Value {
    const EDGES: [f64; 13] = [
        0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, 1000.0,
    ];
    let mut out = Vec::new();
    let mut lo = 0.0;
    let mut below_lo = 0u64;
    for hi in EDGES {
        // Values up to just under `hi`.
        let below_hi = h.count_between(0, ((hi * 1e6) as u64).saturating_sub(1));
        out.push(json!([
            format!("{lo}-{hi} ms"),
            below_hi.saturating_sub(below_lo)
        ]));
        below_lo = below_hi;
        lo = hi;
    }
    out.push(json!([
        format!(">={lo} ms"),
        h.len().saturating_sub(below_lo)
    ]));
    Value::Array(out)
}

// ---------------------------------------------------------------------------------------
// The plot: fraction of fires later than x, against x, on log axes.

/// One line of the lateness plot.
struct Curve {
    label: String,
    color: plotters::style::RGBColor,
    /// (lateness ms, fraction of fires later than that), every fraction > 0.
    points: Vec<(f64, f64)>,
}

/// Log-spaced lateness values (ms) from `lo` to `hi`, `per_decade` to a decade.
fn log_grid(lo: f64, hi: f64, per_decade: usize) -> Vec<f64> {
    let (a, b) = (lo.log10(), hi.log10());
    let n = ((b - a) * per_decade as f64).ceil().max(1.0) as usize;
    (0..=n)
        .map(|i| 10f64.powf(a + (b - a) * i as f64 / n as f64))
        .collect()
}

/// The fraction of a sorted list of ns values above each grid point (ms), ending at its max.
fn ccdf_sorted(sorted_ns: &[i64], grid_ms: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted_ns.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &x in grid_ms {
        let x_ns = (x * 1e6) as i64;
        let above = n - sorted_ns.partition_point(|v| *v <= x_ns);
        if above == 0 {
            break;
        }
        out.push((x, above as f64 / n as f64));
    }
    let max_ms = (sorted_ns[n - 1] as f64 / 1e6).max(grid_ms[0]);
    out.push((max_ms, 1.0 / n as f64));
    out
}

/// The same for a histogram of ns values.
fn ccdf_hist(h: &Histogram<u64>, grid_ms: &[f64]) -> Vec<(f64, f64)> {
    let n = h.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &x in grid_ms {
        let above = n - h.count_between(0, (x * 1e6) as u64).min(n);
        if above == 0 {
            break;
        }
        out.push((x, above as f64 / n as f64));
    }
    let max_ms = (h.max() as f64 / 1e6).max(grid_ms[0]);
    out.push((max_ms, 1.0 / n as f64));
    out
}

/// Draws the curves on log-log axes into a PNG: plotters' in-memory bitmap, written with
/// `png`; the text in DejaVu Sans from the `dejavu` crate, so no system font is needed.
fn plot_ccdf(
    path: &Path,
    title: &str,
    caption: &[String],
    curves: &[Curve],
    marks: &[(f64, &str)],
) -> Result<(), String> {
    use plotters::prelude::*;
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
    const W: u32 = 1200;
    const H: u32 = 800;
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let x_max = points().map(|p| p.0).fold(1.0f64, f64::max);
    let x_hi = 10f64.powf((x_max * 1.5).log10().ceil());
    let x_lo = 1e-3;
    let y_min = points().map(|p| p.1).fold(1.0f64, f64::min);
    let y_lo = 10f64.powf((y_min * 0.5).log10().floor());
    let err = |e: &dyn std::fmt::Display| e.to_string();

    let mut buf = vec![0u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (top, rest) = root.split_vertically(60 + 22 * caption.len() as u32);
        top.draw_text(
            title,
            &("sans-serif", 26).into_font().color(&BLACK),
            (20, 12),
        )
        .map_err(|e| err(&e))?;
        for (i, line) in caption.iter().enumerate() {
            top.draw_text(
                line,
                &("sans-serif", 17).into_font().color(&RGBColor(60, 60, 60)),
                (20, 50 + 22 * i as i32),
            )
            .map_err(|e| err(&e))?;
        }
        let mut chart = ChartBuilder::on(&rest)
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(90)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..1.0f64).log_scale())
            .map_err(|e| err(&e))?;
        // Label the powers of ten only.
        let decade = |v: &f64| (v.log10() - v.log10().round()).abs() < 1e-6;
        chart
            .configure_mesh()
            .x_desc("lateness (ms), log scale")
            .y_desc("fraction of fires later than that, log scale")
            .axis_desc_style(("sans-serif", 19))
            .label_style(("sans-serif", 16))
            .x_label_formatter(&|v| match () {
                _ if !decade(v) => String::new(),
                _ if *v >= 1.0 => format!("{}", v.round() as i64),
                _ => format!("{v}"),
            })
            .y_label_formatter(&|v| match () {
                _ if !decade(v) => String::new(),
                _ if *v >= 0.01 => format!("{v}"),
                _ => format!("1e{}", v.log10().round() as i32),
            })
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(|e| err(&e))?;
        let grey = RGBColor(110, 110, 110);
        for &(x, label) in marks {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x, y_lo), (x, 1.0)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.to_string(),
                    (x * 1.08, 0.5),
                    ("sans-serif", 16).into_font().color(&grey),
                )))
                .map_err(|e| err(&e))?;
        }
        for c in curves {
            let color = c.color;
            chart
                .draw_series(LineSeries::new(c.points.clone(), color.stroke_width(3)))
                .map_err(|e| err(&e))?
                .label(c.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 30, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font(("sans-serif", 17))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    let file = std::fs::File::create(path).map_err(|e| err(&e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), W, H);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| err(&e))?;
    writer.write_image_data(&buf).map_err(|e| err(&e))?;
    writer.finish().map_err(|e| err(&e))?;
    Ok(())
}

/// "0.123", "45.6", "789": three significant figures, for the plot's legend.
fn sig3(ms: f64) -> String {
    if ms == 0.0 {
        "0".into()
    } else {
        let digits = (2 - ms.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{ms:.digits$}")
    }
}

/// The plot of one scenario, from its report and the raw distributions.
fn plot_scenario(
    path: &Path,
    r: &Value,
    sc: &Scenario,
    clock: &Histogram<u64>,
    arrival_sorted: &[i64],
) -> Result<(), String> {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let legend = |d: &Value| {
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {} ms",
            sig3(f(&d["p50_ms"])),
            sig3(f(&d["p99_ms"])),
            sig3(f(&d["p99_9_ms"])),
            sig3(f(&d["max_ms"]))
        )
    };
    let hi = (arrival_sorted.last().copied().unwrap_or(0) as f64 / 1e6)
        .max(clock.max() as f64 / 1e6)
        .max(10.0);
    let grid = log_grid(1e-3, hi * 1.01, 100);
    let curves = [
        Curve {
            label: format!(
                "clock: the outbox had it − its tick     {}",
                legend(&r["lateness"])
            ),
            color: plotters::style::RGBColor(31, 119, 180),
            points: ccdf_hist(clock, &grid),
        },
        Curve {
            label: format!(
                "arrival: the API received it − its tick   {}",
                legend(&r["arrival_lateness"]["all"])
            ),
            color: plotters::style::RGBColor(214, 39, 40),
            points: ccdf_sorted(arrival_sorted, &grid),
        },
    ];
    let p = &r["params"];
    let m = &r["machine"];
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let sum = |key: &str| {
        r["cron"]["sequence"][key].as_i64().unwrap_or(0)
            + r["interval"]["sequence"][key].as_i64().unwrap_or(0)
    };
    let caption = [
        format!(
            "{} fires in a {} s window after {} s warm-up, {} interval rules included; \
             logs {}",
            thousands(r["lateness"]["n"].as_u64().unwrap_or(0)),
            s(&p["window_seconds"]),
            s(&p["warmup_seconds"]),
            s(&p["interval_rules"]),
            s(&p["logs"]),
        ),
        format!(
            "missed {}, duplicates {}; {} CPUs ({}), other processes {} cores busy; {}, \
             commit {}",
            sum("missed"),
            sum("duplicates"),
            s(&m["nproc"]),
            s(&m["cpu_model"]),
            s(&m["other_processes_cores_busy"]),
            s(&r["date_utc"]),
            s(&r["commit"]),
        ),
    ];
    let on_time_ms = ON_TIME.as_secs_f64() * 1000.0;
    plot_ccdf(
        path,
        &format!(
            "Fire lateness: {} (+{} interval rules)",
            sc.describe(),
            s(&p["interval_rules"])
        ),
        &caption,
        &curves,
        &[(on_time_ms, &format!("ON_TIME {on_time_ms} ms"))],
    )
}

// ---------------------------------------------------------------------------------------
// One scenario

/// The notes in the JSON report.
const NOTE_CALIBRATION: &str = "component work (next-fire + build-payload) of one fire alone \
    on one thread: how fast the machine was; × fires per second = the cores the prebuilding \
    takes";
const NOTE_LATENESS: &str = "Clock::take_lateness over the window: every fire (cron and \
    interval), the instant the sink (outbox) had it − its tick, monotonic clock, 3 significant \
    digits";
const NOTE_PAYLOAD: &str = "payload fired_at − scheduled_at (interval: − the tick at or before \
    fired_at), events scheduled in the window: the tick itself for a prebuilt fire, the real \
    time for one built when it fired; never earlier. fired_at_after_tick should be close to \
    clock_fires_later_than_on_time (fires handed on in the window); the difference is fires \
    handed on later than ON_TIME whose payload says they fired on their tick";

struct Outcome {
    report: Value,
    clock: Histogram<u64>,
    /// Arrival lateness of every fire in the window (cron and interval), ns, sorted.
    arrival: Vec<i64>,
}

struct Common<'a> {
    args: &'a Args,
    logs: &'a LogCounters,
    nproc: usize,
    commit: Option<String>,
}

fn run_scenario(common: &Common, sc: &Scenario) -> Outcome {
    let args = common.args;
    let nproc = common.nproc;
    let _ = common.logs.take();
    release_memory();
    let rss_before = rss_kib();
    let started_utc = chrono::Utc::now();
    eprintln!(
        "\n== fire_accuracy {}: {} cron rules `{}` + {} interval rules; {} s warm-up, {} s \
         window; logs {:?}; {} CPUs; load {}",
        sc.name,
        sc.rules,
        sc.expression_doc(),
        args.interval_rules,
        args.warmup,
        args.seconds,
        args.log,
        nproc,
        loadavg()
    );

    // How fast the machine is today: the component work of one fire, alone.
    let compute_us = calibrate(10_000);
    let component_cores = sc.fires_per_second() * compute_us / 1e6;
    eprintln!(
        "component work per fire (one thread, alone): {compute_us:.2} µs -> {:.0} fires/s \
         take {component_cores:.3} cores of component work",
        sc.fires_per_second()
    );

    // The API and its rules.
    let api = FakeApi::start(FakeOptions::default());
    let n_cron = sc.rules as i64;
    for id in 1..=n_cron {
        api.add_rule(
            id,
            "core.crontimer",
            json!({"expression": sc.expression(id)}),
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
    let cron_rules: Vec<(i64, i64)> = (1..=n_cron).map(|id| (id, sc.period * NS)).collect();

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
            let want = sc.rules + args.interval_rules;
            let deadline = Instant::now() + Duration::from_secs(60 + sc.rules as u64 / 1000);
            while daemon.clock.len() < want {
                assert!(
                    Instant::now() < deadline,
                    "only {} timers running",
                    daemon.clock.len()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let all_running = t0.elapsed();
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
                "daemon started in {:.1} s, all {} timers running after {:.1} s (RSS {} MiB); \
                 {} s warm-up, then {} s measured...",
                startup.as_secs_f64(),
                daemon.clock.len(),
                all_running.as_secs_f64(),
                rss_ready.0 / 1024,
                args.warmup,
                args.seconds
            );

            tokio::time::sleep_until((ready + Duration::from_secs(args.warmup)).into()).await;
            // Discard the warm-up's lateness; the window starts now.
            let _ = daemon.clock.take_lateness();
            let begin = snapshot();
            in_window.store(true, Ordering::Relaxed);
            tokio::time::sleep_until((begin.at + Duration::from_secs(args.seconds)).into()).await;
            let clock_lateness = daemon.clock.take_lateness();
            let end = snapshot();
            in_window.store(false, Ordering::Relaxed);

            let stopping = Instant::now();
            daemon.stop().await.expect("the daemon shut down cleanly");
            let shutdown = stopping.elapsed();
            (
                map,
                (startup, all_running),
                rss_ready,
                begin,
                end,
                shutdown,
                clock_lateness,
            )
        });
        stop_collecting.store(true, Ordering::Release);
        collector.join().expect("collector");
        result
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    let (map, (startup, all_running), rss_ready, begin, end, shutdown, clock) = outcome;
    let logs = common.logs.take();

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

    // The payloads: `fired_at` is the tick for a fire released on time (prebuilt), later for
    // one built when it fired. Never earlier.
    let early = in_win.iter().filter(|r| r.fired < r.sched).count();
    let at_tick = in_win.iter().filter(|r| r.fired == r.sched).count();
    let built_late = in_win.iter().filter(|r| r.fired > r.sched).count();
    let payload_cron: Vec<i64> = cron.iter().map(|r| r.fired - r.sched).collect();
    let payload_cron_max = payload_cron.iter().copied().max().unwrap_or(0);
    let payload_cron_min = payload_cron.iter().copied().min().unwrap_or(0);
    let clock_dist = hist_dist(&clock);
    let clock_late = clock_dist["later_than_on_time"].as_u64().unwrap_or(0);
    // Fires the clock handed on later than ON_TIME whose payload still says `fired_at` = the
    // tick. An estimate: the two counts cover the same window by different instants (hand-off
    // vs tick), so a burst at either edge can fall in one and not the other.
    let understated = clock_late.saturating_sub(built_late as u64);
    // A late-built payload names the moment it was computed, before the sink had it: no
    // payload may show more lateness than the clock measured (3 significant digits, so
    // allow 0.2%).
    let payload_max_within_clock =
        early == 0 && payload_cron_max <= (clock.max() + clock.max() / 500 + 1000) as i64;

    // Every whole-second tick of the window that ended at least 1 s before the stop: how
    // many cron rules fired it (each should be fired by every rule due in it).
    let due = sc.due_by_phase();
    let mut per_tick: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    let first_tick = (w0 + NS - 1).div_euclid(NS) * NS;
    let mut t = first_tick;
    while t <= w1 - NS {
        let expected = due[(t / NS).rem_euclid(sc.period) as usize];
        per_tick.insert(t, (0, expected));
        t += NS;
    }
    for r in &cron {
        if let Some((c, _)) = per_tick.get_mut(&r.sched) {
            *c += 1;
        }
    }
    let ticks_short = per_tick.values().filter(|(c, e)| c < e).count();
    let ticks_over = per_tick.values().filter(|(c, e)| c > e).count();
    let fires_short: usize = per_tick.values().map(|(c, e)| e.saturating_sub(*c)).sum();
    let per_tick_min = per_tick.values().map(|(c, _)| *c).min().unwrap_or(0);
    let per_tick_max = per_tick.values().map(|(c, _)| *c).max().unwrap_or(0);
    // How long after its tick each second's last event arrived.
    let mut last_arrival: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &cron {
        let e = last_arrival.entry(r.sched).or_insert(i64::MIN);
        *e = (*e).max(r.received - r.sched);
    }
    let tick_last_arrival: Vec<i64> = last_arrival.values().copied().collect();

    let cron_arrival: Vec<i64> = cron.iter().map(|r| r.received - r.sched).collect();
    let int_arrival: Vec<i64> = interval.iter().map(|r| r.received - r.sched).collect();
    let mut all_arrival: Vec<i64> = in_win.iter().map(|r| r.received - r.sched).collect();
    all_arrival.sort_unstable();

    // Drift of each interval rule over the window: last − first fire − (the ticks between
    // them) × interval, from the payloads' `fired_at` and from the API's receive times. The
    // ticks between them are (n − 1) when nothing was missed; a missed fire must not read as
    // an interval of drift, so they are counted from the tick indices (missed ticks are in
    // the interval sequence figures).
    let mut by_rule: HashMap<i64, Vec<&Rec>> = HashMap::new();
    for r in &interval {
        by_rule.entry(r.rule).or_default().push(r);
    }
    let mut drifts = Vec::new();
    let mut drifts_arrival = Vec::new();
    let mut count_mismatch = 0usize;
    for &(id, every) in &interval_rules {
        let Some(v) = by_rule.get_mut(&id) else {
            continue;
        };
        v.sort_by_key(|r| r.sched);
        if v.len() < 2 {
            continue;
        }
        let (first, last) = (v[0], v[v.len() - 1]);
        drifts.push(last.fired - first.fired - (last.sched - first.sched));
        drifts_arrival.push(last.received - first.received - (last.sched - first.sched));
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
    let drift_arrival_abs_max = drifts_arrival.iter().map(|d| d.abs()).max().unwrap_or(0);

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
    // The fires the clock handed on in the window.
    let fires_in_cpu_window = clock.len();
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
    let mib = |kib: u64| round3(kib as f64 / 1024.0);
    let by_thread: serde_json::Map<String, Value> = by_name
        .iter()
        .map(|(k, v)| (k.clone(), json!(round3(*v))))
        .collect();
    let records_bytes = records.capacity() * std::mem::size_of::<Rec>();
    let rss_window_max = rss_max_in_window.load(Ordering::Relaxed).max(end.rss.0);

    let report = json!({
        "scenario": sc.name,
        "date_utc": started_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "commit": common.commit,
        "machine": {
            "nproc": nproc,
            "cpu_model": cpu_model(),
            "load_avg_at_start": begin.load,
            "load_avg_at_end": end.load,
            "other_processes_cores_busy": round3(others_cores),
            "steal_seconds": round3(steal_s),
        },
        "params": {
            "cron_rules": sc.rules,
            "cron_expression": sc.expression_doc(),
            "cron_period_seconds": sc.period,
            "cron_fires_per_second": sc.fires_per_second(),
            "interval_rules": args.interval_rules,
            "interval_seconds": INTERVALS,
            "warmup_seconds": args.warmup,
            "window_seconds": round3(window_s),
            "logs": format!("{:?}", args.log).to_lowercase(),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        },
        "calibration": {
            "component_us_per_fire_one_thread": round3(compute_us),
            "component_cores_at_this_fire_rate": round3(component_cores),
            "note": NOTE_CALIBRATION,
        },
        "startup_seconds": round3(startup.as_secs_f64()),
        "all_timers_running_seconds": round3(all_running.as_secs_f64()),
        "shutdown_seconds": round3(shutdown.as_secs_f64()),
        "lateness": clock_dist,
        "lateness_histogram": hist_buckets(&clock),
        "lateness_note": NOTE_LATENESS,
        "arrival_lateness": {
            "cron": dist(cron_arrival.clone()),
            "interval": dist(int_arrival),
            "all": dist(all_arrival.clone()),
            "cron_last_event_of_each_tick": dist(tick_last_arrival),
            "cron_histogram": histogram(&cron_arrival),
        },
        "payload": {
            "cron_fired_minus_scheduled_min_ms": ms(payload_cron_min),
            "cron_fired_minus_scheduled_max_ms": ms(payload_cron_max),
            "early_fires": early,
            "fired_at_equals_tick": at_tick,
            "fired_at_after_tick": built_late,
            "clock_fires_later_than_on_time": clock_late,
            "late_fires_payload_says_on_time_estimate": understated,
            "max_within_clock_max": payload_max_within_clock,
            "note": NOTE_PAYLOAD,
        },
        "cron": {
            "sequence": sequences(&cron, &cron_rules),
            "ticks_in_window": per_tick.len(),
            "rules_due_per_tick": sc.rules as i64 / sc.period,
            "ticks_short_of_rules_due": ticks_short,
            "ticks_over_rules_due": ticks_over,
            "fires_missing_from_ticks": fires_short,
            "rules_per_tick_min": per_tick_min,
            "rules_per_tick_max": per_tick_max,
        },
        "interval": {
            "sequence": sequences(&interval, &interval_rules),
            "drift_rules": drifts.len(),
            "drift_abs_max_ms": ms(drift_abs_max),
            "drift": dist(drifts),
            "drift_arrival_abs_max_ms": ms(drift_arrival_abs_max),
            "drift_arrival": dist(drifts_arrival),
            "execution_count_mismatches": count_mismatch,
        },
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
            "fake_api_cores_busy": round3(fake_cpu / wall),
            "by_thread_name_seconds": by_thread,
        },
        "memory": {
            "rss_before_mib": mib(rss_before.0),
            "rss_ready_mib": mib(rss_ready.0),
            "rss_window_start_mib": mib(begin.rss.0),
            "rss_window_end_mib": mib(end.rss.0),
            "rss_window_max_mib": mib(rss_window_max),
            "rss_peak_hwm_mib": mib(end.rss.1),
            "bench_records_mib": round3(records_bytes as f64 / 1048576.0),
        },
        "logs": logs,
    });
    drop(api);
    Outcome {
        report,
        clock,
        arrival: all_arrival,
    }
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args = parse_args();
    let bench_dir = args
        .out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&bench_dir).expect("create the output directory");
    let logs = install_logging(args.log, &bench_dir.join("fire_accuracy.log"));
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let started_utc = chrono::Utc::now();
    let common = Common {
        args: &args,
        logs: &logs,
        nproc,
        commit: git_commit(),
    };
    eprintln!(
        "fire_accuracy: scenarios {}; {} s warm-up + {} s window each; {} CPUs ({})",
        args.scenarios
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        args.warmup,
        args.seconds,
        nproc,
        cpu_model()
    );

    let mut reports = Vec::new();
    let mut plots = Vec::new();
    for sc in &args.scenarios {
        let Outcome {
            mut report,
            clock,
            arrival,
        } = run_scenario(&common, sc);
        let plot = bench_dir.join(format!("lateness_{}.png", sc.tag()));
        match plot_scenario(&plot, &report, sc, &clock, &arrival) {
            Ok(()) => {
                report["plot"] = json!(plot.display().to_string());
                plots.push(plot);
            }
            Err(e) => eprintln!("the plot {} failed: {e}", plot.display()),
        }
        print_table(&report);
        reports.push(report);
        // Written after every scenario, so a failure later keeps what was measured.
        let all = json!({
            "bench": "fire_accuracy",
            "date_utc": started_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "commit": common.commit,
            "scenarios": reports,
        });
        let text = serde_json::to_string_pretty(&all).unwrap();
        std::fs::write(&args.out, format!("{text}\n")).expect("write the JSON report");
        if reports.len() == args.scenarios.len() {
            let history = bench_dir.join("fire_accuracy.history.jsonl");
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&history)
            {
                let _ = writeln!(f, "{}", serde_json::to_string(&all).unwrap());
            }
        }
    }
    println!("\nJSON: {}", args.out.display());
    for p in plots {
        println!("plot: {}", p.display());
    }
}

fn print_table(r: &Value) {
    let f = |v: &Value| match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let p = &r["params"];
    let m = &r["machine"];
    println!();
    println!(
        "=== fire_accuracy {}: {} cron rules `{}` ({} fires/s) + {} interval rules ===",
        f(&r["scenario"]),
        f(&p["cron_rules"]),
        f(&p["cron_expression"]),
        f(&p["cron_fires_per_second"]),
        f(&p["interval_rules"])
    );
    println!(
        "{}  commit {}  {} CPUs ({}); window {} s after {} s warm-up; logs {}",
        f(&r["date_utc"]),
        f(&r["commit"]),
        f(&m["nproc"]),
        f(&m["cpu_model"]),
        f(&p["window_seconds"]),
        f(&p["warmup_seconds"]),
        f(&p["logs"])
    );
    println!(
        "component work per fire {} µs (one thread, alone) -> {} cores at this fire rate; \
         startup {} s (all timers running {} s), shutdown {} s",
        f(&r["calibration"]["component_us_per_fire_one_thread"]),
        f(&r["calibration"]["component_cores_at_this_fire_rate"]),
        f(&r["startup_seconds"]),
        f(&r["all_timers_running_seconds"]),
        f(&r["shutdown_seconds"])
    );
    println!(
        "other processes kept {} cores busy (steal {} s); load {} -> {}",
        f(&m["other_processes_cores_busy"]),
        f(&m["steal_seconds"]),
        f(&m["load_avg_at_start"]),
        f(&m["load_avg_at_end"])
    );
    println!();
    println!(
        "{:<40} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "(ms)", "n", "p50", "p99", "p99.9", "max", "mean"
    );
    let row = |name: &str, d: &Value| {
        println!(
            "{:<40} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name,
            f(&d["n"]),
            f(&d["p50_ms"]),
            f(&d["p99_ms"]),
            f(&d["p99_9_ms"]),
            f(&d["max_ms"]),
            f(&d["mean_ms"])
        )
    };
    let a = &r["arrival_lateness"];
    row("lateness (clock: outbox had it − tick)", &r["lateness"]);
    row("arrival, cron (API received − tick)", &a["cron"]);
    row("arrival, interval", &a["interval"]);
    row(
        "arrival, last event of each cron tick",
        &a["cron_last_event_of_each_tick"],
    );
    row("interval drift (payload fired_at)", &r["interval"]["drift"]);
    row("interval drift (arrival)", &r["interval"]["drift_arrival"]);
    let pl = &r["payload"];
    println!(
        "payload fired_at − scheduled_at (cron): min {} max {} ms (within the clock's max: {}); \
         early fires {}; payloads with fired_at = tick {}, after the tick {}; clock: {} fires \
         later than ON_TIME",
        f(&pl["cron_fired_minus_scheduled_min_ms"]),
        f(&pl["cron_fired_minus_scheduled_max_ms"]),
        f(&pl["max_within_clock_max"]),
        f(&pl["early_fires"]),
        f(&pl["fired_at_equals_tick"]),
        f(&pl["fired_at_after_tick"]),
        f(&pl["clock_fires_later_than_on_time"])
    );
    let understated = pl["late_fires_payload_says_on_time_estimate"]
        .as_u64()
        .unwrap_or(0);
    let fires = r["lateness"]["n"].as_u64().unwrap_or(0);
    if understated * 1000 > fires {
        println!(
            "NOTE: about {} fires ({:.1}%) reached the outbox more than ON_TIME after their tick \
             while their payload says fired_at = scheduled_at",
            thousands(understated),
            understated as f64 * 100.0 / fires.max(1) as f64
        );
    }
    println!();
    println!(
        "{:<10} {:>9} {:>9} {:>8} {:>10} {:>14}",
        "", "fires", "expected", "missed", "duplicates", "rules w/o fire"
    );
    for name in ["cron", "interval"] {
        let s = &r[name]["sequence"];
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
    let c = &r["cron"];
    println!(
        "cron ticks in window {} (each due for {} rules): fired by min {} max {}; short {} \
         ({} fires missing), over {}; execution_count mismatches {}; unparsed events {}",
        f(&c["ticks_in_window"]),
        f(&c["rules_due_per_tick"]),
        f(&c["rules_per_tick_min"]),
        f(&c["rules_per_tick_max"]),
        f(&c["ticks_short_of_rules_due"]),
        f(&c["fires_missing_from_ticks"]),
        f(&c["ticks_over_rules_due"]),
        f(&r["interval"]["execution_count_mismatches"]),
        f(&r["events_unparsed"])
    );
    let cpu = &r["cpu"];
    println!();
    println!(
        "CPU over {} s and {} fires: process {} s ({} s / 1,000 fires), daemon {} s ({} s / \
         1,000 fires, {} cores), fake API {} s ({} s / 1,000 fires), bench {} s",
        f(&cpu["window_wall_seconds"]),
        f(&cpu["fires_in_window"]),
        f(&cpu["process_seconds"]),
        f(&cpu["process_per_1000_fires_seconds"]),
        f(&cpu["daemon_seconds"]),
        f(&cpu["daemon_per_1000_fires_seconds"]),
        f(&cpu["daemon_cores_busy"]),
        f(&cpu["fake_api_seconds"]),
        f(&cpu["fake_api_per_1000_fires_seconds"]),
        f(&cpu["bench_seconds"])
    );
    let by_name: Vec<String> = cpu["by_thread_name_seconds"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {}", f(v)))
        .collect();
    println!("CPU s by thread name: {}", by_name.join(", "));
    let mem = &r["memory"];
    println!(
        "RSS (whole process, fake API included): before {} MiB, ready {} MiB, window {} -> {} \
         MiB (max {}), peak {} MiB",
        f(&mem["rss_before_mib"]),
        f(&mem["rss_ready_mib"]),
        f(&mem["rss_window_start_mib"]),
        f(&mem["rss_window_end_mib"]),
        f(&mem["rss_window_max_mib"]),
        f(&mem["rss_peak_hwm_mib"])
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
    hist("lateness histogram    ", &r["lateness_histogram"]);
    hist("cron arrival histogram", &a["cron_histogram"]);
    if let Some(p) = r["plot"].as_str() {
        println!("plot: {p}");
    }
}
