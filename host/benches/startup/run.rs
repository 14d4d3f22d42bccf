//! One run of the real binary: spawn it against the fake API and the broker, read its
//! stderr until the readiness line, measure, settle (memory runs), stop it with SIGTERM.
//!
//! What marks each moment is stable, not a log message's wording:
//! - the process is up: its first line on stderr, whatever it says;
//! - the API was checked: the fake API's record of `GET /health`;
//! - the listing: the fake's records of the first and the last `GET /api/v1/rules`;
//! - ready: the readiness line `Timer sensor ready: N rules running` (README), read as JSON
//!   by its `rules_running` field, which must equal N.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use attune_testkit::bench::rules_running;
use attune_testkit::daemon::{delete_now, test_env, unique};
use attune_testkit::fake_api::FakeApi;
use attune_testkit::machine::{
    cpu_total, machine_busy, proc_cpu, proc_mem, self_cpu, threads_cpu, Mem,
};

/// How long a daemon may take to become ready before the run is failed.
const READY_WITHIN: Duration = Duration::from_secs(180);
/// How long it may take to exit after SIGTERM (its outbox flush alone may take 10 s).
const EXIT_WITHIN: Duration = Duration::from_secs(30);
/// How much longer than `--idle` a memory run waits for the daemon to go quiet.
const IDLE_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cache {
    Cold,
    Warm,
}

impl Cache {
    pub fn as_str(self) -> &'static str {
        match self {
            Cache::Cold => "cold",
            Cache::Warm => "warm",
        }
    }
}

pub struct RunSpec<'a> {
    pub api: &'a FakeApi,
    pub rules: usize,
    pub cache_dir: &'a Path,
    pub cache: Cache,
    /// Seconds to stay idle after ready before measuring memory again (0: stop at once).
    pub idle: u64,
    pub log_level: &'a str,
    pub label: String,
    pub log_dir: Option<&'a Path>,
    pub perf_dir: Option<&'a Path>,
    pub wrap: &'a [String],
}

/// When each moment of the start-up was seen, in ms after `spawn`.
#[derive(Debug, Clone, Serialize)]
pub struct Phases {
    /// The daemon's first line on stderr.
    pub first_log: Option<f64>,
    /// The fake API received `GET /health`.
    pub api_verified: Option<f64>,
    /// The fake API received the first and the last listing request before ready.
    pub first_page_requested: Option<f64>,
    pub last_page_requested: Option<f64>,
    /// The readiness line was read.
    pub ready: f64,
}

/// The start-up cut at those moments (ms).
#[derive(Debug, Clone, Serialize)]
pub struct Segments {
    /// spawn → first log line.
    pub process_start: Option<f64>,
    /// → `GET /health` at the fake.
    pub health: Option<f64>,
    /// → the first listing request: the component loaded, the token read, the broker
    /// connected and the queue declared.
    pub component_and_broker: Option<f64>,
    /// → the last listing request.
    pub listing: Option<f64>,
    /// → ready: the last page answered and every rule applied (validate, first fire,
    /// install, one log line per rule).
    pub apply: Option<f64>,
    pub total: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadCpu {
    pub name: String,
    pub threads: usize,
    pub cpu_s: f64,
}

/// CPU used from `spawn` to ready.
#[derive(Debug, Clone, Serialize)]
pub struct CpuToReady {
    pub daemon_user_s: f64,
    pub daemon_sys_s: f64,
    pub daemon_cores: f64,
    /// The bench process (it hosts the fake API).
    pub bench_process_s: f64,
    pub other_processes_s: f64,
    pub other_processes_cores: f64,
}

impl CpuToReady {
    pub fn daemon_s(&self) -> f64 {
        self.daemon_user_s + self.daemon_sys_s
    }
}

/// How a memory run settled after ready.
#[derive(Debug, Clone, Serialize)]
pub struct Settle {
    pub quiet_from_ms_after_ready: Option<f64>,
    pub measured_at_ms_after_ready: Option<f64>,
    pub daemon_cpu_after_ready_s: Option<f64>,
    /// Every 500 ms: [ms after ready, daemon CPU s since ready, VmRSS KiB].
    pub timeline: Vec<(f64, f64, u64)>,
}

/// What the daemon wrote on stderr.
#[derive(Debug, Clone, Serialize)]
pub struct LogFigures {
    pub lines: u64,
    pub bytes: u64,
    pub warnings: u64,
    pub errors_after_ready: usize,
    pub first_error_after_ready: Option<Value>,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub label: String,
    pub rules: usize,
    pub cache: Cache,
    /// `fake` or `prerendered` (start-up runs only).
    pub listing: Option<&'static str>,
    pub ready_ms: f64,
    pub phases_ms: Phases,
    pub segments_ms: Segments,
    /// The daemon's CPU seconds when its first line was read (10 ms ticks).
    pub daemon_cpu_at_first_log_s: Option<f64>,
    pub daemon_threads_cpu_at_ready_s: Vec<ThreadCpu>,
    pub listing_requests: usize,
    pub sigterm_handler_seen_after_ready_ms: Option<f64>,
    pub exit_after_sigterm_ms: f64,
    pub exit_status: Option<i32>,
    pub cpu_to_ready: CpuToReady,
    pub memory_ready: Mem,
    pub memory_idle: Option<Mem>,
    pub idle_seconds: u64,
    pub events_during_idle: Option<usize>,
    pub settle_after_ready: Option<Settle>,
    pub events_until_exit: usize,
    pub logs: LogFigures,
    /// The readiness line as the daemon wrote it.
    pub ready_line: Value,
}

// ---------------------------------------------------------------------------------------
// Reading the daemon's stderr

/// What the reader thread saw.
#[derive(Default)]
struct LogRecord {
    lines: u64,
    bytes: u64,
    /// When the first line was read, and the daemon's CPU seconds then.
    first_line: Option<(Instant, f64)>,
    /// ERROR lines, with the instant they were read.
    errors: Vec<(Instant, Value)>,
    warnings: u64,
    /// The last lines of any kind, for a failure message.
    tail: VecDeque<String>,
}

/// The level of a JSON log line, from the start of the line, without parsing it: the
/// daemon's JSON format writes `timestamp` then `level` first.
fn level_of(line: &str) -> Option<&'static str> {
    let head = &line[..line.len().min(96)];
    ["ERROR", "WARN"]
        .into_iter()
        .find(|level| head.contains(&format!("\"level\":\"{level}\"")))
}

/// Reads the daemon's stderr to its end. Cheap per line: 100,000 per-rule lines must not
/// make the reader (which shares the machine's 2 cores) a bottleneck, so a line is parsed
/// only when it is an error or warning, or carries the readiness field `rules_running`.
fn read_logs(
    pid: u32,
    stderr: std::process::ChildStderr,
    ready: mpsc::Sender<(Instant, Value)>,
    mut keep: Option<std::fs::File>,
) -> LogRecord {
    let mut reader = BufReader::with_capacity(1 << 20, stderr);
    let mut rec = LogRecord::default();
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let at = Instant::now();
        if rec.first_line.is_none() {
            rec.first_line = Some((at, cpu_total(pid)));
        }
        rec.lines += 1;
        rec.bytes += buf.len() as u64;
        if let Some(file) = keep.as_mut() {
            let _ = file.write_all(&buf);
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if rec.tail.len() == 40 {
            rec.tail.pop_front();
        }
        rec.tail.push_back(line.to_string());
        let level = level_of(line);
        if level.is_none() && !line.contains("\"rules_running\"") {
            continue;
        }
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match level {
            Some("ERROR") => rec.errors.push((at, value.clone())),
            Some(_) => rec.warnings += 1,
            None => {}
        }
        if rules_running(&value).is_some() {
            let _ = ready.send((at, value));
        }
    }
    rec
}

// ---------------------------------------------------------------------------------------
// The child process

/// The daemon child: killed (if still running) and its queue and exchange deleted when
/// dropped, so a failed run leaves nothing behind.
struct DaemonChild {
    child: Child,
    queue: String,
    exchange: String,
    exited: bool,
}

impl Drop for DaemonChild {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        delete_now(self.queue.clone(), self.exchange.clone());
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Whether process `pid` catches SIGTERM (its `SigCgt` mask in `/proc/<pid>/status`).
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

/// Waits until the daemon catches SIGTERM; returns when that was first seen, in ms after
/// `ready_at` (0 when it already did).
fn wait_for_sigterm_handler(pid: u32, ready_at: Instant, label: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !catches_sigterm(pid) {
        if Instant::now() > deadline {
            panic!("{label}: the daemon installed no SIGTERM handler within 10 s of ready");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    ms_since(ready_at, Instant::now().max(ready_at))
}

fn ms_since(t0: Instant, at: Instant) -> f64 {
    (at.duration_since(t0).as_secs_f64() * 1e6).round() / 1e3
}

/// The binary as `spec` runs it: under `--wrap` if given, with the test environment of the
/// fake API and nothing of the bench's own `ATTUNE_*` variables.
fn command(spec: &RunSpec) -> (Command, String, String) {
    let cache_dir = spec.cache_dir.display().to_string();
    let env = test_env(
        spec.api,
        &[
            ("ATTUNE_SENSOR_REF", &unique("bench.startup")),
            ("ATTUNE_MQ_EXCHANGE", &unique("bench.startup.events")),
            ("ATTUNE_TIMER_CACHE_DIR", &cache_dir),
            ("ATTUNE_LOG_LEVEL", spec.log_level),
            ("ATTUNE_LOG_FORMAT", "json"),
        ],
    );
    let daemon_bin = env!("CARGO_BIN_EXE_attune-core-timer-sensor");
    let mut cmd = match spec.wrap.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(daemon_bin);
            c
        }
        None => Command::new(daemon_bin),
    };
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ATTUNE_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let queue = format!("sensor.{}", env["ATTUNE_SENSOR_REF"]);
    (cmd, queue, env["ATTUNE_MQ_EXCHANGE"].clone())
}

/// `perf record` attached to the daemon (`--perf-dir`); it ends when the daemon exits. It
/// slows the daemon: not for the figures.
fn attach_perf(dir: &Path, pid: u32, label: &str) -> Child {
    std::fs::create_dir_all(dir).expect("create the perf directory");
    Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "--call-graph",
            "dwarf,8192",
        ])
        .arg("-p")
        .arg(pid.to_string())
        .arg("-o")
        .arg(dir.join(format!("{label}.perf.data")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run perf (is it installed?)")
}

/// Idle: at least `idle` seconds, and until the daemon has been quiet (at most 2 % of a
/// core) for a whole second: it keeps working after ready (the clock builds every new
/// timer's first fire ahead), and the idle figure is meant to be after that. At most
/// [`IDLE_MAX`] more.
fn settle(pid: u32, ready_at: Instant, cpu_ready: f64, idle: u64) -> Settle {
    let mut samples: Vec<(f64, f64, u64)> = Vec::new();
    let mut quiet_from = None;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let since = ready_at.elapsed().as_secs_f64();
        samples.push((since, cpu_total(pid) - cpu_ready, proc_mem(pid).vm_rss_kib));
        let window = samples
            .iter()
            .rev()
            .find(|(t, _, _)| *t <= since - 1.0)
            .copied();
        if let Some((t, cpu, _)) = window {
            let now_cpu = samples.last().map_or(0.0, |x| x.1);
            if now_cpu - cpu <= 0.02 {
                quiet_from.get_or_insert(t);
            } else {
                quiet_from = None;
            }
        }
        let long_enough = since >= idle as f64;
        if (long_enough && quiet_from.is_some()) || since >= idle as f64 + IDLE_MAX.as_secs_f64() {
            break;
        }
    }
    Settle {
        quiet_from_ms_after_ready: quiet_from.map(|t| (t * 1e3).round()),
        measured_at_ms_after_ready: samples.last().map(|x| (x.0 * 1e3).round()),
        daemon_cpu_after_ready_s: samples.last().map(|x| x.1),
        timeline: samples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 5 == 4)
            .map(|(_, (t, cpu, rss))| ((t * 1e3).round(), *cpu, *rss))
            .collect(),
    }
}

/// Sends SIGTERM once the daemon catches it, and waits for its exit. The daemon installs
/// its handler only once its run begins, a moment after the readiness line; a SIGTERM
/// before that kills it (status 143, no graceful shutdown). Returns when the handler was
/// seen (ms after ready; `None` under a wrapper), the exit status and how long the exit
/// took (ms).
fn stop(
    daemon: &mut DaemonChild,
    ready_at: Instant,
    spec: &RunSpec,
) -> (Option<f64>, ExitStatus, f64) {
    let pid = daemon.child.id();
    let handler_after_ready_ms = if spec.wrap.is_empty() {
        Some(wait_for_sigterm_handler(pid, ready_at, &spec.label))
    } else {
        // A wrapper (valgrind, …) catches every signal itself, so the mask says nothing:
        // give the daemon ample time to install its handler instead.
        std::thread::sleep(Duration::from_secs(3));
        None
    };
    let stop_at = Instant::now();
    signal(pid, libc::SIGTERM);
    let status = loop {
        if let Some(status) = daemon.child.try_wait().expect("wait for the daemon") {
            break status;
        }
        if stop_at.elapsed() > EXIT_WITHIN {
            panic!(
                "{}: the daemon did not exit within {EXIT_WITHIN:?} of SIGTERM",
                spec.label
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    daemon.exited = true;
    let exit_ms = stop_at.elapsed().as_secs_f64() * 1e3;
    (
        handler_after_ready_ms,
        status,
        (exit_ms * 10.0).round() / 10.0,
    )
}

/// The moments of the start-up the fake API saw (`/health`, the listing), and how many
/// listing requests there were, between `t0` and `ready_at`.
fn api_phases(api: &FakeApi, t0: Instant, ready_at: Instant) -> (Option<f64>, Vec<f64>) {
    let during = |path: &str| -> Vec<f64> {
        api.requests_to(path)
            .iter()
            .filter(|r| r.received_at >= t0 && r.received_at <= ready_at)
            .map(|r| ms_since(t0, r.received_at))
            .collect()
    };
    (during("/health").first().copied(), during("/api/v1/rules"))
}

fn segments(phases: &Phases) -> Segments {
    let seg = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(((b - a) * 1e3).round() / 1e3),
        _ => None,
    };
    Segments {
        process_start: phases.first_log,
        health: seg(phases.first_log, phases.api_verified),
        component_and_broker: seg(phases.api_verified, phases.first_page_requested),
        listing: seg(phases.first_page_requested, phases.last_page_requested),
        apply: seg(phases.last_page_requested, Some(phases.ready)),
        total: phases.ready,
    }
}

/// Starts the daemon, waits for it to be ready, measures, stops it. Panics (after
/// cleaning up) on anything unexpected.
pub fn run_daemon(spec: &RunSpec) -> Run {
    let (mut cmd, queue, exchange) = command(spec);
    let keep = spec.log_dir.map(|dir| {
        std::fs::create_dir_all(dir).expect("create the log directory");
        std::fs::File::create(dir.join(format!("{}.log", spec.label))).expect("a log file")
    });
    let events_before = spec.api.events().len();
    let (self_cpu0, busy0) = (self_cpu(), machine_busy());

    let t0 = Instant::now();
    let child = cmd.spawn().expect("spawn the daemon");
    let pid = child.id();
    let mut daemon = DaemonChild {
        child,
        queue,
        exchange,
        exited: false,
    };
    let mut perf = spec.perf_dir.map(|dir| attach_perf(dir, pid, &spec.label));
    let stderr = daemon.child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::Builder::new()
        .name("daemon-stderr".into())
        .spawn(move || read_logs(pid, stderr, tx, keep))
        .expect("spawn the log reader");

    let (ready_at, ready_line) = match rx.recv_timeout(READY_WITHIN) {
        Ok(ready) => ready,
        Err(e) => {
            // Exited (the reader saw EOF) or stuck: say what the daemon said.
            let _ = daemon.child.kill();
            let status = daemon.child.wait();
            daemon.exited = true;
            let rec = reader.join().expect("the log reader");
            panic!(
                "{}: the daemon did not become ready ({e}; exit: {status:?}). Its last lines:\n{}",
                spec.label,
                rec.tail.iter().cloned().collect::<Vec<_>>().join("\n")
            );
        }
    };
    // Read at once: these are the figures "at ready".
    let memory_ready = proc_mem(pid);
    let (cpu_user, cpu_sys) = proc_cpu(pid);
    let (self_cpu1, busy1) = (self_cpu(), machine_busy());
    let threads_at_ready = threads_cpu(pid);
    let ready_ms = ms_since(t0, ready_at);

    let running = rules_running(&ready_line);
    if running != Some(spec.rules as u64) {
        panic!(
            "{}: the readiness line says rules_running = {running:?}, expected {}: {ready_line}",
            spec.label, spec.rules
        );
    }

    let (memory_idle, events_idle, settled) = if spec.idle > 0 {
        let idle_from = spec.api.events().len();
        let settled = settle(pid, ready_at, cpu_user + cpu_sys, spec.idle);
        (
            Some(proc_mem(pid)),
            Some(spec.api.events().len() - idle_from),
            Some(settled),
        )
    } else {
        (None, None, None)
    };

    let (handler_after_ready_ms, status, exit_ms) = stop(&mut daemon, ready_at, spec);
    if let Some(perf) = perf.as_mut() {
        let _ = perf.wait();
    }
    let rec = reader.join().expect("the log reader");
    if !status.success() {
        panic!(
            "{}: the daemon exited with {status} after SIGTERM (expected 0). Its last lines:\n{}",
            spec.label,
            rec.tail.iter().cloned().collect::<Vec<_>>().join("\n")
        );
    }
    // An error before ready is a failed start-up. After it, rules may fire (interval rules
    // of 10 s, when start-up took about that long) and events still pending at shutdown are
    // abandoned, logged as errors: reported, not fatal.
    let (before_ready, after_ready): (Vec<_>, Vec<_>) =
        rec.errors.iter().partition(|(at, _)| *at <= ready_at);
    if let Some((_, first_error)) = before_ready.first() {
        panic!(
            "{}: the daemon logged {} ERROR line(s) before ready, e.g. {first_error}",
            spec.label,
            before_ready.len()
        );
    }

    let (api_verified, pages) = api_phases(spec.api, t0, ready_at);
    let phases = Phases {
        first_log: rec.first_line.map(|(at, _)| ms_since(t0, at)),
        api_verified,
        first_page_requested: pages.first().copied(),
        last_page_requested: pages.last().copied(),
        ready: ready_ms,
    };
    let wall = ready_at.duration_since(t0).as_secs_f64();
    let daemon_cpu = cpu_user + cpu_sys;
    let bench_cpu = self_cpu1 - self_cpu0;
    let others = (busy1 - busy0 - daemon_cpu - bench_cpu).max(0.0);
    Run {
        label: spec.label.clone(),
        rules: spec.rules,
        cache: spec.cache,
        listing: None,
        ready_ms,
        segments_ms: segments(&phases),
        phases_ms: phases,
        daemon_cpu_at_first_log_s: rec.first_line.map(|(_, cpu)| cpu),
        daemon_threads_cpu_at_ready_s: threads_at_ready
            .into_iter()
            .map(|(name, threads, cpu_s)| ThreadCpu {
                name,
                threads,
                cpu_s,
            })
            .collect(),
        listing_requests: pages.len(),
        sigterm_handler_seen_after_ready_ms: handler_after_ready_ms,
        exit_after_sigterm_ms: exit_ms,
        exit_status: status.code(),
        cpu_to_ready: CpuToReady {
            daemon_user_s: cpu_user,
            daemon_sys_s: cpu_sys,
            daemon_cores: daemon_cpu / wall,
            bench_process_s: bench_cpu,
            other_processes_s: others,
            other_processes_cores: others / wall,
        },
        memory_ready,
        memory_idle,
        idle_seconds: spec.idle,
        events_during_idle: events_idle,
        settle_after_ready: settled,
        events_until_exit: spec.api.events().len() - events_before,
        logs: LogFigures {
            lines: rec.lines,
            bytes: rec.bytes,
            warnings: rec.warnings,
            errors_after_ready: after_ready.len(),
            first_error_after_ready: after_ready.first().map(|(_, v)| v.clone()),
        },
        ready_line,
    }
}
