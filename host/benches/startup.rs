//! Start-up time and resident memory of the daemon with many timer rules.
//!
//! ```text
//! cargo bench -p attune-core-timer-sensor --bench startup
//! cargo bench -p attune-core-timer-sensor --bench startup -- --rules 10000,100000 --runs 3
//! ```
//!
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest), like `make test`. Every daemon gets its
//! own sensor ref, exchange and queue, deleted after its run; cache directories are
//! temporary. The defaults take about 3–4 minutes on the 2-core machine.
//!
//! What it does:
//! 0. **Calibration.** The component work of applying one rule (`validate`, then
//!    `next-fire` for its first fire), and of the clock building that first fire ahead,
//!    timed per rule shape on one thread of the bench: the floor of the apply phase.
//! 1. **Start-up.** For each `--rules N` (default 10,000 and 100,000) the test suite's
//!    in-process fake Attune API (`tests/support/fake_api.rs`) holds N enabled rules of a
//!    realistic mix (see [`mix_params`]): 60 % `core.intervaltimer` of 10–60 s, 40 %
//!    `core.crontimer` in seven shapes (6-, 5- and 7-field, hourly to monthly, five zones),
//!    minutes spread so that no minute boundary fires more than about 1 % of them. The
//!    daemon lists them page by page (`page_size=100`: 1,000 pages at 100,000), either from
//!    the fake itself (`--listing fake`) or from a front that serves the fake's own pages,
//!    fetched beforehand, from memory (`--listing prerendered`; default: both). The fake
//!    answers in-process, sharing the 2 cores with the daemon (the bench times its paging
//!    with its own client first); `prerendered` shows the daemon's own start-up time.
//!
//!    Then, `--runs R` times (default 3), it runs the real binary as a child process twice:
//!    **cold** (an empty compiled-component cache directory) and **warm** (the same directory
//!    again, now holding the compiled component). Each run is timed from just before
//!    `spawn` to the moment the bench reads the daemon's `Timer sensor ready: N rules
//!    running` log line (JSON on stderr), whose `rules_running` must equal N, as must the
//!    `listed` and `started` counts of `Rules re-synced from the API`, with no ERROR line
//!    before it. The instant each startup phase's line was read, and the daemon's CPU time
//!    then (`/proc/<pid>/stat`, 10 ms ticks), are recorded too:
//!    - `Starting Attune Timer Sensor` (the process is up and logging),
//!    - `API connectivity verified` (`GET /health`),
//!    - `Timer component loaded` (compiled, or read from the cache),
//!    - `Connected to RabbitMQ; consuming rule lifecycle messages`,
//!    - `Fetched rules page`, first and last: a `debug` line of `attune_timer::platform::api`, enabled
//!      with `ATTUNE_LOG_LEVEL=info,attune_timer::platform::api=debug` (1 line per 100 rules, against
//!      the `Timer started for rule` line per rule the daemon logs at `info` anyway);
//!      `--page-log off` keeps plain `info`, and the listing then ends at the first
//!      `Timer started for rule`, which follows closely; `--log-level` sets any directive,
//!    - the first and last `Timer started for rule`, `Rules re-synced from the API` (the
//!      apply phase ends) and `Timer sensor ready`.
//!
//!    A dedicated thread reads stderr as it comes (parsing only the lines it needs), so the
//!    daemon never blocks on a full pipe and read instants are write instants within
//!    microseconds. Also recorded per run: the daemon's CPU per thread name at ready, the
//!    bench process's own CPU meanwhile (it hosts the fake API), and the CPU other processes
//!    used meanwhile (`/proc/stat`), so that runs disturbed by other work on this shared
//!    machine can be told apart. The bench sends SIGTERM once `/proc/<pid>/status` shows it
//!    caught (the daemon installs its handlers first thing) and checks the daemon exits 0
//!    within 30 s.
//! 2. **Resident memory.** For each `--memory-rules M` (default 0 and the `--rules` values)
//!    one warm-cache run against the fake with a *quiet* variant of the mix — intervals of
//!    10–60 *minutes* and daily/weekday/weekly/monthly UTC cron rules at an hour 3–20 hours
//!    ahead — so no rule fires while it is measured (checked: the fake must receive no
//!    event). `VmRSS` and `VmHWM` (peak) of the daemon (`/proc/<pid>/status`) are read when
//!    it is ready, and idle: at least `--idle S` seconds later (default 3) and once the
//!    daemon has used at most 2 % of a core for a whole second. The marginal memory per
//!    rule is (RSS at the largest M − RSS at 0) / largest M.
//!
//! Output: a table on stdout and JSON in `target/bench/startup.json`. The product owner's
//! targets are checked: start-up to 100,000 rules with a warm cache ≤ 3 s, and RSS at
//! 100,000 rules ≤ 200 MB.
//!
//! Options (and environment variables): `--rules LIST` (`STARTUP_BENCH_RULES`), `--runs R`
//! (`STARTUP_BENCH_RUNS`), `--cache cold,warm` (`STARTUP_BENCH_CACHE`), `--listing
//! fake,prerendered` (`STARTUP_BENCH_LISTING`), `--memory-rules LIST|none`
//! (`STARTUP_BENCH_MEMORY_RULES`), `--idle S` (`STARTUP_BENCH_IDLE`), `--page-log on|off`
//! (`STARTUP_BENCH_PAGE_LOG`), `--log-level DIRECTIVE` (`STARTUP_BENCH_LOG_LEVEL`, the
//! daemon's `ATTUNE_LOG_LEVEL`; e.g. `info,attune_timer::platform::api=debug,attune_timer::schedule::clock=warn`
//! drops the per-rule lines), `--out PATH` (`STARTUP_BENCH_OUT`). For investigation, not
//! for figures: `--log-dir DIR` keeps each run's stderr; `--perf-dir DIR` attaches `perf
//! record` (cpu-clock, DWARF call graphs) to each daemon; `--wrap 'CMD ARGS'` runs the
//! daemon under a tool (e.g. `valgrind --tool=massif`; the bench then waits 3 s after ready
//! before SIGTERM, as the wrapper catches every signal itself).

#[path = "../tests/support/daemon.rs"]
mod daemon_support;
#[path = "support/machine.rs"]
mod machine;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use daemon_support::{delete_now, test_env, unique, Broker, ALL_REFS};
use machine::{clk_tck, cpu_model, git_commit, loadavg, machine_ticks, workspace_root};
use support::fake_api::{FakeApi, FakeOptions};

/// How long a daemon may take to become ready before the run is failed.
const READY_WITHIN: Duration = Duration::from_secs(180);
/// How long it may take to exit after SIGTERM (its outbox flush alone may take 10 s).
const EXIT_WITHIN: Duration = Duration::from_secs(30);
/// How much longer than `--idle` a memory run waits for the daemon to go quiet.
const IDLE_MAX: Duration = Duration::from_secs(30);
/// Targets from the product owner.
const TARGET_WARM_STARTUP_MS: f64 = 3000.0;
const TARGET_RSS_MB: f64 = 200.0;
const TARGET_RULES: usize = 100_000;

// ---------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Args {
    rules: Vec<usize>,
    runs: usize,
    memory_rules: Vec<usize>,
    idle: u64,
    /// `ATTUNE_LOG_LEVEL` of the daemon.
    log_level: String,
    caches: Vec<Cache>,
    listings: Vec<Listing>,
    log_dir: Option<PathBuf>,
    perf_dir: Option<PathBuf>,
    /// A command (and its arguments) the daemon is run under, e.g. a profiler.
    wrap: Vec<String>,
    out: PathBuf,
}

fn parse_list(s: &str, what: &str) -> Vec<usize> {
    if matches!(s.trim(), "" | "none" | "off") {
        return Vec::new();
    }
    s.split(',')
        .map(|x| {
            x.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("bad {what}: {s}"))
        })
        .collect()
}

/// A comma-separated list of `option`'s two choices, e.g. `cold,warm`.
fn parse_choices<T: Copy>(s: &str, option: &str, [(a, va), (b, vb)]: [(&str, T); 2]) -> Vec<T> {
    s.split(',')
        .map(|x| match x.trim() {
            x if x == a => va,
            x if x == b => vb,
            other => panic!("{option} takes {a} and/or {b}, not {other}"),
        })
        .collect()
}

fn parse_args() -> Args {
    let env = |k: &str| std::env::var(k).ok();
    let mut rules = env("STARTUP_BENCH_RULES");
    let mut runs = env("STARTUP_BENCH_RUNS");
    let mut memory_rules = env("STARTUP_BENCH_MEMORY_RULES");
    let mut idle = env("STARTUP_BENCH_IDLE");
    let mut page_log = env("STARTUP_BENCH_PAGE_LOG");
    let mut log_level = env("STARTUP_BENCH_LOG_LEVEL");
    let mut caches = env("STARTUP_BENCH_CACHE");
    let mut listing = env("STARTUP_BENCH_LISTING");
    let mut log_dir = env("STARTUP_BENCH_LOG_DIR");
    let mut perf_dir = env("STARTUP_BENCH_PERF_DIR");
    let mut wrap = env("STARTUP_BENCH_WRAP");
    let mut out = env("STARTUP_BENCH_OUT");
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let slot = match key.as_str() {
            "--rules" => &mut rules,
            "--runs" => &mut runs,
            "--memory-rules" => &mut memory_rules,
            "--idle" => &mut idle,
            "--page-log" => &mut page_log,
            "--log-level" => &mut log_level,
            "--cache" => &mut caches,
            "--listing" => &mut listing,
            "--log-dir" => &mut log_dir,
            "--perf-dir" => &mut perf_dir,
            "--wrap" => &mut wrap,
            "--out" => &mut out,
            // `cargo bench` passes `--bench`; filters are not used here.
            "--bench" => continue,
            "-h" | "--help" => {
                println!(
                    "startup [--rules N,N..] [--runs R] [--memory-rules M,M..|none] [--idle S] \
                     [--page-log on|off] [--log-level DIRECTIVE] [--cache cold,warm] \
                     [--listing fake,prerendered] [--log-dir DIR] [--perf-dir DIR] [--wrap 'CMD ARGS'] \
                     [--out PATH]"
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
    let rules = parse_list(rules.as_deref().unwrap_or("10000,100000"), "--rules");
    let memory_rules = match memory_rules {
        Some(list) => parse_list(&list, "--memory-rules"),
        None => {
            let mut m = vec![0];
            m.extend(rules.iter().copied().filter(|n| *n > 0));
            m
        }
    };
    Args {
        rules,
        runs: runs
            .map(|r| r.trim().parse().expect("--runs: a number"))
            .unwrap_or(3)
            .max(1),
        memory_rules,
        idle: idle
            .map(|s| s.trim().parse().expect("--idle: seconds"))
            .unwrap_or(3),
        log_level: log_level.unwrap_or_else(|| match page_log.as_deref().unwrap_or("on") {
            "on" => "info,attune_timer::platform::api=debug".into(),
            "off" => "info".into(),
            other => panic!("--page-log must be on or off, not {other}"),
        }),
        caches: parse_choices(
            caches.as_deref().unwrap_or("cold,warm"),
            "--cache",
            [("cold", Cache::Cold), ("warm", Cache::Warm)],
        ),
        listings: parse_choices(
            listing.as_deref().unwrap_or("fake,prerendered"),
            "--listing",
            [
                ("fake", Listing::Fake),
                ("prerendered", Listing::Prerendered),
            ],
        ),
        log_dir: log_dir.map(PathBuf::from),
        perf_dir: perf_dir.map(PathBuf::from),
        wrap: wrap
            .map(|w| w.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        out: out
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/bench/startup.json")),
    }
}

// ---------------------------------------------------------------------------------------
// The rules

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
fn mix_params(id: i64, quiet: bool, now_hour: u32) -> (&'static str, Value, &'static str) {
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
fn api_with_rules(n: usize, quiet: bool) -> FakeApi {
    let api = FakeApi::start(FakeOptions::default());
    let now_hour = chrono::Timelike::hour(&chrono::Utc::now());
    for id in 1..=n as i64 {
        let (trigger_ref, params, _) = mix_params(id, quiet, now_hour);
        api.add_rule(id, trigger_ref, params, true);
    }
    api
}

/// How many rules of 1..=n are interval rules (the rest are cron rules).
fn interval_share(n: usize) -> usize {
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
fn calibrate(per_shape: usize) -> Value {
    use attune_timer::component::{CompileCache, Fire, Rule, TimerRuntime};
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
        let rule = Rule {
            id,
            r#ref: format!("test.rule_{id}"),
            trigger_ref: Some(trigger_ref.to_string()),
            trigger_params: params,
        };
        (rule, shape)
    };
    // Shares of each shape in the mix (over the first 100,000 ids), and ids of each.
    let mut shares: std::collections::BTreeMap<&str, (usize, Vec<i64>)> = Default::default();
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
        rows.push(json!({
            "shape": shape, "share": share,
            "validate_us": r2(us(validate)),
            "next_fire_us": r2(us(next_fire)),
            "build_ahead_us": r2(us(ahead)),
        }));
    }
    json!({
        "rules_per_shape": per_shape,
        "by_shape": rows,
        "mix_validate_us": r2(weighted.0),
        "mix_next_fire_us": r2(weighted.1),
        "mix_per_rule_us": r2(weighted.0 + weighted.1),
        "mix_build_ahead_us": r2(weighted.2),
    })
}

// ---------------------------------------------------------------------------------------
// The fake's share of the listing: the bench pages through it itself.

/// Milliseconds to page through every listing the daemon asks for (the token's four refs,
/// `enabled=true`, `page_size=100`) with one keep-alive client, sequentially as the daemon
/// does. With `parse`, each page is also parsed as JSON.
async fn list_everything(api: &FakeApi, token: &str, parse: bool) -> (f64, usize, usize) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (mut pages, mut items) = (0usize, 0usize);
    for trigger_ref in ALL_REFS {
        let mut page = 1u32;
        loop {
            let page_s = page.to_string();
            let resp = client
                .get(format!("{}/api/v1/rules", api.url()))
                .query(&[
                    ("trigger_ref", trigger_ref),
                    ("enabled", "true"),
                    ("page", page_s.as_str()),
                    ("page_size", "100"),
                ])
                .bearer_auth(token)
                .send()
                .await
                .expect("list rules from the fake API");
            assert!(resp.status().is_success(), "listing: {}", resp.status());
            let bytes = resp.bytes().await.expect("a listing body");
            pages += 1;
            // `has_next` is near the end of the body; finding it needs no full parse.
            let has_next = if parse {
                let v: Value = serde_json::from_slice(&bytes).expect("a JSON listing");
                items += v["items"].as_array().map_or(0, Vec::len);
                v["pagination"]["has_next"] == json!(true)
            } else {
                let tail = &bytes[bytes.len().saturating_sub(200)..];
                String::from_utf8_lossy(tail).contains("\"has_next\":true")
            };
            if !has_next {
                break;
            }
            page += 1;
        }
    }
    (started.elapsed().as_secs_f64() * 1e3, pages, items)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Listing {
    Fake,
    Prerendered,
}

impl Listing {
    fn as_str(self) -> &'static str {
        match self {
            Listing::Fake => "fake",
            Listing::Prerendered => "prerendered",
        }
    }
}

/// A front for the fake API (`--listing prerendered`): it answers `GET /api/v1/rules` from
/// the fake's own pages, fetched once beforehand (the same bytes the fake sends), and
/// forwards every other request to the fake. The front shows what the daemon does with an
/// API whose paging costs (almost) nothing. Stops when dropped.
struct Front {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct FrontState {
    /// (trigger_ref, page) → body, for `enabled=true&page_size=100`.
    pages: std::collections::HashMap<(String, u32), axum::body::Bytes>,
    upstream: String,
    client: reqwest::Client,
}

impl Front {
    fn start(api: &FakeApi, token: &str, rt: &tokio::runtime::Runtime) -> Front {
        use axum::body::Bytes;
        use axum::extract::{RawQuery, Request, State};
        use axum::http::StatusCode;
        use axum::response::{IntoResponse, Response};
        use std::sync::Arc;

        let client = reqwest::Client::new();
        let mut pages = std::collections::HashMap::new();
        rt.block_on(async {
            for trigger_ref in ALL_REFS {
                for page in 1u32.. {
                    let body = client
                        .get(format!("{}/api/v1/rules", api.url()))
                        .query(&[
                            ("trigger_ref", trigger_ref),
                            ("enabled", "true"),
                            ("page", page.to_string().as_str()),
                            ("page_size", "100"),
                        ])
                        .bearer_auth(token)
                        .send()
                        .await
                        .and_then(|r| r.error_for_status())
                        .expect("a page from the fake API")
                        .bytes()
                        .await
                        .expect("a page body");
                    let v: Value = serde_json::from_slice(&body).expect("a JSON page");
                    pages.insert((trigger_ref.to_string(), page), body);
                    if v["pagination"]["has_next"] != json!(true) {
                        break;
                    }
                }
            }
        });
        let state = Arc::new(FrontState {
            pages,
            upstream: api.url(),
            // A client of its own: pooled connections belong to the runtime that opened
            // them, and the bench's runtime is not driven while a daemon runs.
            client: reqwest::Client::new(),
        });

        async fn rules(
            State(state): State<Arc<FrontState>>,
            RawQuery(raw): RawQuery,
            request: Request,
        ) -> Response {
            let query: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let key = query.get("trigger_ref").cloned().zip(
                query
                    .get("page")
                    .and_then(|p| p.parse::<u32>().ok())
                    .filter(|_| {
                        query.get("enabled").map(String::as_str) == Some("true")
                            && query.get("page_size").map(String::as_str) == Some("100")
                    }),
            );
            match key.and_then(|k| state.pages.get(&k)) {
                Some(body) => (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    body.clone(),
                )
                    .into_response(),
                None => forward(State(state), request).await,
            }
        }

        /// Anything else goes to the fake as it came (method, path, query, auth, body).
        async fn forward(State(state): State<Arc<FrontState>>, request: Request) -> Response {
            let (parts, body) = request.into_parts();
            let body: Bytes = axum::body::to_bytes(body, 1 << 24)
                .await
                .unwrap_or_default();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut upstream = state.client.request(
                reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap(),
                format!("{}{path}", state.upstream),
            );
            for name in ["authorization", "content-type"] {
                if let Some(v) = parts.headers.get(name) {
                    upstream = upstream.header(name, v.as_bytes());
                }
            }
            match upstream.body(body).send().await {
                Ok(resp) => {
                    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                    let bytes = resp.bytes().await.unwrap_or_default();
                    (status, [("content-type", "application/json")], bytes).into_response()
                }
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }

        let app = axum::Router::new()
            .route("/api/v1/rules", axum::routing::get(rules))
            .fallback(forward)
            .with_state(state);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("listing-front".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        r = axum::serve(listener, app) => { r.unwrap(); }
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn the listing front");
        Front {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Process and machine figures (Linux)

/// CPU seconds (user + system) of this process so far.
fn self_cpu() -> f64 {
    let ru = machine::self_rusage();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (user, system) CPU seconds of process `pid` so far, from `/proc/<pid>/stat`.
fn proc_cpu(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match machine::stat_ticks(&stat) {
        Some((_, user, system)) => (user as f64 / clk_tck(), system as f64 / clk_tck()),
        None => (0.0, 0.0),
    }
}

fn cpu_total(pid: u32) -> f64 {
    let (user, sys) = proc_cpu(pid);
    user + sys
}

/// CPU seconds of each thread of `pid` so far, summed by thread name (tokio's workers,
/// its blocking threads, the epoch ticker, …), largest first.
fn threads_cpu(pid: u32) -> Vec<(String, usize, f64)> {
    let mut by_name: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((name, user, system)) = machine::stat_ticks(&stat) else {
            continue;
        };
        let slot = by_name.entry(name.to_string()).or_default();
        slot.0 += 1;
        slot.1 += user as f64 / clk_tck() + system as f64 / clk_tck();
    }
    let mut out: Vec<_> = by_name.into_iter().map(|(n, (c, s))| (n, c, s)).collect();
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    out
}

/// The memory lines of `/proc/<pid>/status` that matter here, in KiB (and the thread count).
#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

fn proc_mem(pid: u32) -> Mem {
    let [rss, hwm, anon, file, threads] = machine::status_values(
        &format!("/proc/{pid}/status"),
        ["VmRSS:", "VmHWM:", "RssAnon:", "RssFile:", "Threads:"],
    );
    Mem {
        rss,
        hwm,
        anon,
        file,
        threads,
    }
}

fn mem_json(m: &Mem) -> Value {
    json!({
        "vm_rss_kib": m.rss, "vm_hwm_kib": m.hwm, "rss_anon_kib": m.anon,
        "rss_file_kib": m.file, "threads": m.threads,
        "vm_rss_mib": mib(m.rss), "vm_hwm_mib": mib(m.hwm),
    })
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Busy CPU seconds of the whole machine so far, from `/proc/stat`.
fn machine_busy() -> f64 {
    machine_ticks().0 as f64 / clk_tck()
}

/// Files of the daemon's source that differ from the commit (the tree is shared while
/// others work on it: the figures belong to the binary as built, not to the commit alone).
fn modified_sources() -> Vec<String> {
    Command::new("git")
        .args([
            "status",
            "--porcelain",
            "--",
            "host/src",
            "guest-timer/src",
            "wit",
        ])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Reading the daemon's stderr

/// The startup lines whose read instant is recorded (message prefixes).
const PHASES: [(&str, &str); 8] = [
    ("first_log", "Starting Attune Timer Sensor"),
    ("api_verified", "API connectivity verified"),
    ("component_loaded", "Timer component loaded"),
    (
        "broker_connected",
        "Connected to RabbitMQ; consuming rule lifecycle messages",
    ),
    ("page_fetched", "Fetched rules page"),
    ("resynced", "Rules re-synced from the API"),
    ("ready", "Timer sensor ready"),
    ("shut_down", "Timer sensor has shut down gracefully"),
];
const TIMER_STARTED: &str = "Timer started for rule";

/// What the reader thread saw.
#[derive(Default)]
struct LogRecord {
    lines: u64,
    bytes: u64,
    timers_started: u64,
    /// When the first `Timer started for rule` was read, and the daemon's CPU seconds then.
    first_timer_started: Option<(Instant, f64)>,
    last_timer_started: Option<Instant>,
    /// Every line except `Timer started for rule` (the only per-rule line at startup),
    /// parsed, with the instant it was read and the daemon's CPU seconds then.
    notable: Vec<(Instant, f64, Value)>,
    /// ERROR lines, with the instant they were read.
    errors: Vec<(Instant, Value)>,
    warnings: u64,
    /// The last lines of any kind, for a failure message.
    tail: VecDeque<String>,
}

enum ReaderMsg {
    Ready(Instant, Value),
}

/// The message of a JSON log line, without parsing the line: `"message":"…"` comes right
/// after the timestamp and the level in the daemon's JSON format.
fn message_of(line: &str) -> Option<&str> {
    const KEY: &str = "\"message\":\"";
    let start = line.find(KEY)? + KEY.len();
    Some(&line[start..])
}

/// Reads the daemon's stderr to its end. Cheap per line: 100,000 `Timer started` lines must
/// not make the reader (which shares the machine's 2 cores) a bottleneck, so only the other
/// lines are parsed.
fn read_logs(
    pid: u32,
    stderr: std::process::ChildStderr,
    ready: mpsc::Sender<ReaderMsg>,
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
        let Some(message) = message_of(line) else {
            continue;
        };
        if message.starts_with(TIMER_STARTED) {
            rec.timers_started += 1;
            if rec.first_timer_started.is_none() {
                rec.first_timer_started = Some((at, cpu_total(pid)));
            }
            rec.last_timer_started = Some(at);
            continue;
        }
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match value["level"].as_str() {
            Some("ERROR") => rec.errors.push((at, value.clone())),
            Some("WARN") => rec.warnings += 1,
            _ => {}
        }
        if message.starts_with("Timer sensor ready") {
            let _ = ready.send(ReaderMsg::Ready(at, value.clone()));
        }
        // The daemon's CPU at each phase line tells which phase used it (10 ms ticks).
        rec.notable.push((at, cpu_total(pid), value));
    }
    rec
}

// ---------------------------------------------------------------------------------------
// One daemon run

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

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cache {
    Cold,
    Warm,
}

impl Cache {
    fn as_str(self) -> &'static str {
        match self {
            Cache::Cold => "cold",
            Cache::Warm => "warm",
        }
    }
}

struct RunSpec<'a> {
    api: &'a FakeApi,
    rules: usize,
    cache_dir: &'a Path,
    cache: Cache,
    /// Seconds to stay idle after ready before measuring memory again (0: stop at once).
    idle: u64,
    log_level: &'a str,
    /// Where the daemon's API is: the fake, or a front answering the listing from pages
    /// rendered beforehand ([`Front`]).
    api_url: String,
    label: String,
    log_dir: Option<&'a Path>,
    perf_dir: Option<&'a Path>,
    wrap: &'a [String],
}

fn ms_since(t0: Instant, at: Instant) -> f64 {
    (at.duration_since(t0).as_secs_f64() * 1e6).round() / 1e3
}

/// Starts the daemon, waits for it to be ready, measures, stops it. Panics (after
/// cleaning up) on anything unexpected.
fn run_daemon(spec: &RunSpec) -> Value {
    let cache_dir = spec.cache_dir.display().to_string();
    let level = spec.log_level;
    let env = test_env(
        spec.api,
        &[
            ("ATTUNE_API_URL", &spec.api_url),
            ("ATTUNE_SENSOR_REF", &unique("bench.startup")),
            ("ATTUNE_MQ_EXCHANGE", &unique("bench.startup.events")),
            ("ATTUNE_TIMER_CACHE_DIR", &cache_dir),
            ("ATTUNE_LOG_LEVEL", level),
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
    // Nothing from the bench's own environment may change the daemon's settings.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ATTUNE_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
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
        queue: format!("sensor.{}", env["ATTUNE_SENSOR_REF"]),
        exchange: env["ATTUNE_MQ_EXCHANGE"].clone(),
        exited: false,
    };
    // Profiling (optional): `perf record` attached to the daemon right after it started; it
    // ends when the daemon exits. It slows the daemon: not for the figures.
    let mut perf = spec.perf_dir.map(|dir| {
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
            .arg(dir.join(format!("{}.perf.data", spec.label)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run perf (is it installed?)")
    });
    let stderr = daemon.child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::Builder::new()
        .name("daemon-stderr".into())
        .spawn(move || read_logs(pid, stderr, tx, keep))
        .expect("spawn the log reader");

    let (ready_at, ready_line) = match rx.recv_timeout(READY_WITHIN) {
        Ok(ReaderMsg::Ready(at, line)) => (at, line),
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
    let mem_ready = proc_mem(pid);
    let (cpu_user, cpu_sys) = proc_cpu(pid);
    let (self_cpu1, busy1) = (self_cpu(), machine_busy());
    let threads_at_ready = threads_cpu(pid);
    let ready_ms = ms_since(t0, ready_at);

    let running = ready_line["rules_running"].as_u64();
    if running != Some(spec.rules as u64) {
        panic!(
            "{}: `Timer sensor ready` says rules_running = {running:?}, expected {}: {ready_line}",
            spec.label, spec.rules
        );
    }

    // Idle: at least `idle` seconds, and until the daemon has been quiet (at most 2 % of a
    // core) for a whole second: it keeps working after ready (the clock builds every new
    // timer's first fire ahead), and the idle figure is meant to be after that. At most
    // IDLE_MAX more.
    let mut mem_idle = None;
    let mut events_idle = None;
    let mut settle = Value::Null;
    if spec.idle > 0 {
        let idle_from = spec.api.events().len();
        let cpu_ready = cpu_user + cpu_sys;
        let mut samples: Vec<(f64, f64, u64)> = Vec::new();
        let mut quiet_from = None;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let since = ready_at.elapsed().as_secs_f64();
            samples.push((since, cpu_total(pid) - cpu_ready, proc_mem(pid).rss));
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
            let long_enough = since >= spec.idle as f64;
            if (long_enough && quiet_from.is_some())
                || since >= spec.idle as f64 + IDLE_MAX.as_secs_f64()
            {
                break;
            }
        }
        mem_idle = Some(proc_mem(pid));
        events_idle = Some(spec.api.events().len() - idle_from);
        settle = json!({
            "quiet_from_ms_after_ready": quiet_from.map(|t| (t * 1e3).round()),
            "measured_at_ms_after_ready": samples.last().map(|x| (x.0 * 1e3).round()),
            "daemon_cpu_after_ready_s": samples.last().map(|x| x.1),
            // Every 500 ms: [ms after ready, daemon CPU s since ready, VmRSS KiB].
            "timeline": samples
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 5 == 4)
                .map(|(_, (t, cpu, rss))| json!([(t * 1e3).round(), cpu, rss]))
                .collect::<Vec<_>>(),
        });
    }

    // The daemon installs its SIGTERM handler only once its run begins, a moment after it
    // logs `Timer sensor ready`; a SIGTERM before that kills it (status 143, no graceful
    // shutdown). Wait until the kernel shows the signal as caught, and record how long that
    // took after ready.
    let handler_after_ready_ms = if spec.wrap.is_empty() {
        wait_for_sigterm_handler(pid, ready_at, &spec.label)
    } else {
        // A wrapper (valgrind, …) catches every signal itself, so the mask says nothing:
        // give the daemon ample time to install its handler instead.
        std::thread::sleep(Duration::from_secs(3));
        f64::NAN
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
    let exit_ms = stop_at.elapsed().as_secs_f64() * 1e3;
    daemon.exited = true;
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

    // The startup phases, as read.
    let first = |prefix: &str| {
        rec.notable
            .iter()
            .find(|(_, _, v)| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .map(|(at, cpu, v)| (*at, *cpu, v))
    };
    let last_before_ready = |prefix: &str| {
        rec.notable
            .iter()
            .filter(|(at, _, _)| *at <= ready_at)
            .rev()
            .find(|(_, _, v)| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .map(|(at, cpu, v)| (*at, *cpu, v))
    };
    // Each phase: when its line was read (ms after spawn), and the daemon's CPU then (s).
    let mut phases = serde_json::Map::new();
    let mut phases_cpu = serde_json::Map::new();
    let mut put = |name: &str, x: Option<(Instant, f64)>| {
        phases.insert(name.into(), json!(x.map(|(at, _)| ms_since(t0, at))));
        phases_cpu.insert(name.into(), json!(x.map(|(_, cpu)| cpu)));
    };
    for (name, prefix) in PHASES {
        if name == "page_fetched" {
            put(
                "first_page_fetched",
                first(prefix).map(|(at, cpu, _)| (at, cpu)),
            );
            put(
                "last_page_fetched",
                last_before_ready(prefix).map(|(at, cpu, _)| (at, cpu)),
            );
        } else {
            put(name, first(prefix).map(|(at, cpu, _)| (at, cpu)));
        }
    }
    put("first_timer_started", rec.first_timer_started);
    phases.insert(
        "last_timer_started".into(),
        json!(rec.last_timer_started.map(|at| ms_since(t0, at))),
    );
    let resync = first("Rules re-synced from the API")
        .map(|(_, _, v)| v.clone())
        .unwrap_or(Value::Null);
    for key in ["listed", "started"] {
        if resync[key].as_u64() != Some(spec.rules as u64) {
            panic!(
                "{}: `Rules re-synced from the API` has {key} = {}, expected {}: {resync}",
                spec.label, resync[key], spec.rules
            );
        }
    }
    let pages = rec
        .notable
        .iter()
        .filter(|(_, _, v)| v["message"] == "Fetched rules page")
        .count();

    // Segments between consecutive phases (ms); the listing ends with its last page, or,
    // without the page lines, where applying the rules begins.
    let segments_of = |table: &serde_json::Map<String, Value>, start: Value, total: Value| {
        let p = |k: &str| table.get(k).and_then(Value::as_f64);
        let listed = p("last_page_fetched").or(p("first_timer_started"));
        let seg = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => json!(((b - a) * 1e3).round() / 1e3),
            _ => Value::Null,
        };
        json!({
            "process_start": start,
            "health": seg(p("first_log"), p("api_verified")),
            "component_load": seg(p("api_verified"), p("component_loaded")),
            "broker_connect": seg(p("component_loaded"), p("broker_connected")),
            "listing": seg(p("broker_connected"), listed),
            "apply": seg(listed, p("resynced")),
            "ready_after_resync": seg(p("resynced"), p("ready")),
            "total": total,
        })
    };
    let segments = segments_of(&phases, phases["first_log"].clone(), json!(ready_ms));
    // The daemon's CPU per phase, in s (10 ms resolution).
    let cpu_segments = segments_of(
        &phases_cpu,
        phases_cpu["first_log"].clone(),
        json!(cpu_user + cpu_sys),
    );
    let wall = ready_at.duration_since(t0).as_secs_f64();
    let daemon_cpu = cpu_user + cpu_sys;
    let bench_cpu = self_cpu1 - self_cpu0;
    json!({
        "label": spec.label,
        "rules": spec.rules,
        "cache": spec.cache.as_str(),
        "ready_ms": ready_ms,
        "phases_ms": phases,
        "segments_ms": segments,
        "daemon_cpu_at_phase_s": phases_cpu,
        "daemon_cpu_segments_s": cpu_segments,
        "daemon_threads_cpu_at_ready_s": threads_at_ready
            .iter()
            .map(|(name, n, cpu)| json!({"name": name, "threads": n, "cpu_s": cpu}))
            .collect::<Vec<_>>(),
        "sigterm_handler_seen_after_ready_ms": handler_after_ready_ms,
        "exit_after_sigterm_ms": (exit_ms * 10.0).round() / 10.0,
        "exit_status": status.code(),
        "cpu_to_ready": {
            "daemon_user_s": cpu_user, "daemon_sys_s": cpu_sys,
            "daemon_cores": daemon_cpu / wall,
            "bench_process_s": bench_cpu,
            "other_processes_s": (busy1 - busy0 - daemon_cpu - bench_cpu).max(0.0),
            "other_processes_cores": ((busy1 - busy0 - daemon_cpu - bench_cpu) / wall).max(0.0),
        },
        "memory_ready": mem_json(&mem_ready),
        "memory_idle": mem_idle.as_ref().map(mem_json),
        "idle_seconds": spec.idle,
        "events_during_idle": events_idle,
        "settle_after_ready": settle,
        "events_until_exit": spec.api.events().len() - events_before,
        "logs": {
            "lines": rec.lines, "bytes": rec.bytes, "timers_started_lines": rec.timers_started,
            "page_lines": pages, "warnings": rec.warnings,
            "errors_after_ready": after_ready.len(),
            "first_error_after_ready": after_ready.first().map(|(_, v)| v.clone()),
        },
        "ready_line": ready_line,
        "resync_line": resync,
    })
}

// ---------------------------------------------------------------------------------------
// Statistics and the report

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn stats(v: Vec<f64>) -> Value {
    let v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Value::Null;
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let r = |x: f64| (x * 10.0).round() / 10.0;
    json!({"median": r(median(v.clone())), "min": r(min), "max": r(max), "n": v.len()})
}

fn summarize(runs: &[Value]) -> Value {
    let col = |f: &dyn Fn(&Value) -> Option<f64>| stats(runs.iter().filter_map(f).collect());
    let mut segments = serde_json::Map::new();
    for key in [
        "process_start",
        "health",
        "component_load",
        "broker_connect",
        "listing",
        "apply",
        "ready_after_resync",
    ] {
        segments.insert(key.into(), col(&|r: &Value| r["segments_ms"][key].as_f64()));
    }
    json!({
        "ready_ms": col(&|r: &Value| r["ready_ms"].as_f64()),
        "segments_ms": segments,
        "daemon_cpu_s": col(&|r: &Value| Some(
            r["cpu_to_ready"]["daemon_user_s"].as_f64()? + r["cpu_to_ready"]["daemon_sys_s"].as_f64()?)),
        "bench_process_cpu_s": col(&|r: &Value| r["cpu_to_ready"]["bench_process_s"].as_f64()),
        "other_processes_cores": col(&|r: &Value| r["cpu_to_ready"]["other_processes_cores"].as_f64()),
        "rss_ready_mib": col(&|r: &Value| r["memory_ready"]["vm_rss_mib"].as_f64()),
        "hwm_ready_mib": col(&|r: &Value| r["memory_ready"]["vm_hwm_mib"].as_f64()),
        "exit_after_sigterm_ms": col(&|r: &Value| r["exit_after_sigterm_ms"].as_f64()),
    })
}

/// A JSON value as plain text (no quotes), so that `{:>N}` widths apply.
fn t(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn fmt_stat(s: &Value) -> String {
    if s.is_null() {
        return "-".into();
    }
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    if s["n"].as_u64() == Some(1) {
        format!("{:.0}", f("median"))
    } else {
        format!("{:.0} [{:.0}–{:.0}]", f("median"), f("min"), f("max"))
    }
}

fn fmt_med(s: &Value, decimals: usize) -> String {
    s["median"]
        .as_f64()
        .map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

fn print_report(report: &Value) {
    println!();
    println!(
        "Start-up: spawn -> `Timer sensor ready` with every rule scheduled; ms, median [min–max] \
         over {} run(s); phases are medians",
        report["options"]["runs"]
    );
    println!(
        "{:>7} {:>11} {:>5} {:>19} {:>6} {:>6} {:>9} {:>7} {:>8} {:>7} {:>8} {:>8} {:>8} {:>7}",
        "rules",
        "listing",
        "cache",
        "ready",
        "exec",
        "health",
        "component",
        "broker",
        "listing",
        "apply",
        "cpu s",
        "rss MiB",
        "hwm MiB",
        "other"
    );
    for row in report["startup"].as_array().into_iter().flatten() {
        let s = &row["summary"];
        let g = |k: &str| fmt_med(&s["segments_ms"][k], 0);
        println!(
            "{:>7} {:>11} {:>5} {:>19} {:>6} {:>6} {:>9} {:>7} {:>8} {:>7} {:>8} {:>8} {:>8} {:>7}",
            t(&row["rules"]),
            t(&row["listing"]),
            t(&row["cache"]),
            fmt_stat(&s["ready_ms"]),
            g("process_start"),
            g("health"),
            g("component_load"),
            g("broker_connect"),
            g("listing"),
            g("apply"),
            fmt_med(&s["daemon_cpu_s"], 2),
            fmt_med(&s["rss_ready_mib"], 1),
            fmt_med(&s["hwm_ready_mib"], 1),
            fmt_med(&s["other_processes_cores"], 2),
        );
    }
    println!(
        "(exec: spawn -> first log line; health: -> `API connectivity verified`; component: -> \
         `Timer component loaded`; broker: -> consuming; listing: -> last `Fetched rules page`; \
         apply: -> `Rules re-synced` (validate + first fire + install + 1 log line per rule); \
         cpu s: the daemon's CPU to ready; other: cores used by other processes meanwhile; \
         listing `fake`: the fake API's paged listing, `prerendered`: the same pages served \
         from memory by a front)"
    );
    for b in report["listing_baseline"].as_array().into_iter().flatten() {
        println!(
            "fake API listing alone ({} rules, {} pages, bench's own client): {:.0} ms reading \
             bodies only, {:.0} ms with a JSON parse of each page",
            t(&b["rules"]),
            t(&b["pages"]),
            b["bytes_only_ms"].as_f64().unwrap_or(f64::NAN),
            b["parsed_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }

    let cal = &report["component_calibration"];
    println!();
    println!(
        "Component work per rule at start-up (validate + next-fire, one thread of the bench, \
         alone; µs):"
    );
    println!(
        "{:<24} {:>6} {:>9} {:>10} {:>22}",
        "shape", "share", "validate", "next-fire", "build ahead (clock)"
    );
    for row in cal["by_shape"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:>5.0}% {:>9} {:>10} {:>22}",
            t(&row["shape"]),
            row["share"].as_f64().unwrap_or(0.0) * 100.0,
            t(&row["validate_us"]),
            t(&row["next_fire_us"]),
            t(&row["build_ahead_us"])
        );
    }
    let per_rule = cal["mix_per_rule_us"].as_f64().unwrap_or(f64::NAN);
    let cpus = report["machine"]["cpus"].as_f64().unwrap_or(1.0);
    println!(
        "mix: {per_rule:.1} µs per rule -> the apply phase needs at least {:.0} ms per 100,000 \
         rules on {cpus} CPUs for the component calls alone; building each first fire ahead \
         (the clock, concurrently) adds {} µs per rule",
        per_rule * 100_000.0 / 1e3 / cpus,
        t(&cal["mix_build_ahead_us"])
    );

    let mem = &report["memory"];
    if let Some(runs) = mem["runs"].as_array().filter(|r| !r.is_empty()) {
        println!();
        println!(
            "Resident memory of the daemon (quiet rules, warm cache; MiB): ready, and idle (at \
             least {} s later, after 1 s at <= 2 % of a core; `quiet from`: when that second \
             began, after ready)",
            report["options"]["idle_seconds"]
        );
        println!(
            "{:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>11} {:>15}",
            "rules",
            "RSS ready",
            "HWM ready",
            "RSS idle",
            "HWM idle",
            "anon idle",
            "threads",
            "events idle",
            "quiet from",
            "CPU after ready"
        );
        for r in runs {
            println!(
                "{:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>11} {:>15}",
                t(&r["rules"]),
                t(&r["memory_ready"]["vm_rss_mib"]),
                t(&r["memory_ready"]["vm_hwm_mib"]),
                t(&r["memory_idle"]["vm_rss_mib"]),
                t(&r["memory_idle"]["vm_hwm_mib"]),
                mib(r["memory_idle"]["rss_anon_kib"].as_u64().unwrap_or(0)),
                t(&r["memory_idle"]["threads"]),
                t(&r["events_during_idle"]),
                format!(
                    "{} ms",
                    t(&r["settle_after_ready"]["quiet_from_ms_after_ready"])
                ),
                format!(
                    "{:.2} s",
                    r["settle_after_ready"]["daemon_cpu_after_ready_s"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
                ),
            );
        }
        if let Some(m) = mem["marginal"].as_object() {
            println!(
                "marginal memory per rule ({} vs 0 rules): RSS ready {} B, RSS idle {} B, peak \
                 (HWM) {} B",
                t(&m["rules"]),
                t(&m["rss_ready_bytes_per_rule"]),
                t(&m["rss_idle_bytes_per_rule"]),
                t(&m["hwm_bytes_per_rule"])
            );
        }
    }
    println!();
    for target in report["targets"].as_array().into_iter().flatten() {
        println!(
            "target {}: {} (measured {})",
            t(&target["what"]),
            match target["met"].as_bool() {
                Some(true) => "MET",
                Some(false) => "MISSED",
                None => "not measured",
            },
            t(&target["measured"])
        );
    }
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args = parse_args();
    let out_dir = args
        .out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out_dir).expect("create the output directory");
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let started_utc = chrono::Utc::now();
    eprintln!(
        "startup bench: rules {:?} x {} run(s) cold and warm; memory at {:?} (idle {} s); {} \
         CPUs ({}); load {}",
        args.rules,
        args.runs,
        args.memory_rules,
        args.idle,
        nproc,
        cpu_model(),
        loadavg()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the bench's broker and HTTP calls");
    // Fails with a clear message when the broker is missing, before anything is started.
    rt.block_on(async { Broker::connect().await.close().await });
    let token = daemon_support::default_token();
    let calibration = calibrate(500);
    eprintln!(
        "component work per rule at start (validate + next-fire, one thread, alone): {} µs for \
         the mix",
        calibration["mix_per_rule_us"]
    );

    let mut startup = Vec::new();
    let mut baselines = Vec::new();
    for &n in &args.rules {
        let t = Instant::now();
        let api = api_with_rules(n, false);
        eprintln!(
            "[{n} rules] fake API filled in {:.1} s ({} interval, {} cron rules)",
            t.elapsed().as_secs_f64(),
            interval_share(n),
            n - interval_share(n)
        );
        let (bytes_ms, pages, _) = rt.block_on(list_everything(&api, &token, false));
        let (parsed_ms, _, items) = rt.block_on(list_everything(&api, &token, true));
        assert_eq!(items, n, "the fake lists every rule");
        eprintln!(
            "[{n} rules] listing alone: {pages} pages, {bytes_ms:.0} ms (bodies only), \
             {parsed_ms:.0} ms (parsed)"
        );
        baselines.push(json!({
            "rules": n, "pages": pages, "bytes_only_ms": bytes_ms, "parsed_ms": parsed_ms,
        }));
        for &listing in &args.listings {
            // `prerendered`: the daemon talks to a front that answers the listing from the
            // fake's own pages, fetched once here, so the fake's per-page cost (a scan of
            // every rule) is out of the measurement.
            let front = (listing == Listing::Prerendered).then(|| Front::start(&api, &token, &rt));
            let api_url = front.as_ref().map_or_else(|| api.url(), |f| f.url.clone());
            let mut cold_runs = Vec::new();
            let mut warm_runs = Vec::new();
            for run in 1..=args.runs {
                // A fresh, empty cache directory for the cold run; the warm run reuses it.
                let cache = tempfile::Builder::new()
                    .prefix("attune-startup-cache")
                    .tempdir()
                    .expect("a temporary cache directory");
                if !args.caches.contains(&Cache::Cold) {
                    // Warm runs only: fill the cache here (the same library and engine
                    // settings as the daemon's, so the same cache entry).
                    attune_timer::component::TimerRuntime::builder()
                        .cache(attune_timer::component::CompileCache::in_dir(cache.path()))
                        .embedded()
                        .expect("load the embedded component");
                }
                for (kind, runs) in [(Cache::Cold, &mut cold_runs), (Cache::Warm, &mut warm_runs)] {
                    if !args.caches.contains(&kind) {
                        continue;
                    }
                    let label = format!("{n}-{}-{}-{run}", listing.as_str(), kind.as_str());
                    let mut r = run_daemon(&RunSpec {
                        api: &api,
                        rules: n,
                        cache_dir: cache.path(),
                        cache: kind,
                        idle: 0,
                        log_level: &args.log_level,
                        api_url: api_url.clone(),
                        label: label.clone(),
                        log_dir: args.log_dir.as_deref(),
                        perf_dir: args.perf_dir.as_deref(),
                        wrap: &args.wrap,
                    });
                    let s = &r["segments_ms"];
                    eprintln!(
                        "[{label}] ready {:.0} ms (exec {}, health {}, component {}, broker {}, \
                         listing {}, apply {}); daemon CPU {:.2} s; RSS {} MiB; other \
                         processes {:.2} cores",
                        r["ready_ms"].as_f64().unwrap_or(0.0),
                        s["process_start"],
                        s["health"],
                        s["component_load"],
                        s["broker_connect"],
                        s["listing"],
                        s["apply"],
                        r["cpu_to_ready"]["daemon_user_s"].as_f64().unwrap_or(0.0)
                            + r["cpu_to_ready"]["daemon_sys_s"].as_f64().unwrap_or(0.0),
                        r["memory_ready"]["vm_rss_mib"],
                        r["cpu_to_ready"]["other_processes_cores"]
                            .as_f64()
                            .unwrap_or(0.0),
                    );
                    r["listing"] = json!(listing.as_str());
                    runs.push(r);
                }
                let cached = std::fs::read_dir(cache.path())
                    .map(|d| {
                        d.flatten()
                            .any(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
                    })
                    .unwrap_or(false);
                assert!(
                    cached,
                    "the runs left no compiled component in their cache directory"
                );
            }
            drop(front);
            for (kind, runs) in [(Cache::Cold, cold_runs), (Cache::Warm, warm_runs)] {
                if !runs.is_empty() {
                    startup.push(json!({
                        "rules": n, "listing": listing.as_str(), "cache": kind.as_str(),
                        "summary": summarize(&runs), "runs": runs,
                    }));
                }
            }
        }
    }

    let mut memory_runs = Vec::new();
    if !args.memory_rules.is_empty() {
        let cache = tempfile::Builder::new()
            .prefix("attune-startup-cache")
            .tempdir()
            .expect("a temporary cache directory");
        // Fill the cache first, so the memory runs do not carry the compiler's allocations.
        {
            let api = api_with_rules(0, true);
            run_daemon(&RunSpec {
                api: &api,
                rules: 0,
                cache_dir: cache.path(),
                cache: Cache::Cold,
                idle: 0,
                log_level: &args.log_level,
                api_url: api.url(),
                label: "memory-cache-fill".into(),
                log_dir: args.log_dir.as_deref(),
                perf_dir: args.perf_dir.as_deref(),
                wrap: &args.wrap,
            });
        }
        for &m in &args.memory_rules {
            let api = api_with_rules(m, true);
            let label = format!("memory-{m}");
            let r = run_daemon(&RunSpec {
                api: &api,
                rules: m,
                cache_dir: cache.path(),
                cache: Cache::Warm,
                idle: args.idle,
                log_level: &args.log_level,
                api_url: api.url(),
                label: label.clone(),
                log_dir: args.log_dir.as_deref(),
                perf_dir: args.perf_dir.as_deref(),
                wrap: &args.wrap,
            });
            eprintln!(
                "[{label}] ready {:.0} ms; RSS ready {} MiB (peak {}), idle {} MiB (peak {}); \
                 events while idle {}",
                r["ready_ms"].as_f64().unwrap_or(0.0),
                r["memory_ready"]["vm_rss_mib"],
                r["memory_ready"]["vm_hwm_mib"],
                r["memory_idle"]["vm_rss_mib"],
                r["memory_idle"]["vm_hwm_mib"],
                r["events_during_idle"]
            );
            if r["events_during_idle"].as_u64() != Some(0) {
                eprintln!(
                    "[{label}] warning: rules fired while idle; the idle figure is not quiet"
                );
            }
            memory_runs.push(r);
        }
    }
    let kib = |r: &Value, which: &str, key: &str| r[which][key].as_u64().unwrap_or(0) as f64;
    let zero = memory_runs.iter().find(|r| r["rules"] == 0);
    let largest = memory_runs
        .iter()
        .filter(|r| r["rules"].as_u64().unwrap_or(0) > 0)
        .max_by_key(|r| r["rules"].as_u64());
    let marginal = match (zero, largest) {
        (Some(z), Some(l)) => {
            let n = l["rules"].as_f64().unwrap_or(1.0);
            let per = |which: &str, key: &str| {
                ((kib(l, which, key) - kib(z, which, key)) * 1024.0 / n).round() as i64
            };
            json!({
                "rules": l["rules"],
                "rss_ready_bytes_per_rule": per("memory_ready", "vm_rss_kib"),
                "rss_idle_bytes_per_rule": per("memory_idle", "vm_rss_kib"),
                "hwm_bytes_per_rule": per("memory_idle", "vm_hwm_kib"),
            })
        }
        _ => Value::Null,
    };

    // The targets, where this run measured them.
    let warm_100k = |listing: &str| {
        startup
            .iter()
            .find(|s| s["rules"] == TARGET_RULES && s["cache"] == "warm" && s["listing"] == listing)
            .and_then(|s| s["summary"]["ready_ms"]["median"].as_f64())
    };
    let rss_100k = memory_runs
        .iter()
        .find(|r| r["rules"] == TARGET_RULES)
        .map(|r| {
            let ready = kib(r, "memory_ready", "vm_rss_kib");
            let idle = kib(r, "memory_idle", "vm_rss_kib");
            ready.max(idle) * 1024.0 / 1e6
        });
    let targets = json!([
        {
            "what": format!("start-up to {TARGET_RULES} rules, warm cache <= {TARGET_WARM_STARTUP_MS} ms (median; the fake API's listing)"),
            "measured": warm_100k("fake").map(|x| format!("{x:.0} ms")),
            "met": warm_100k("fake").map(|x| x <= TARGET_WARM_STARTUP_MS),
        },
        {
            "what": format!("start-up to {TARGET_RULES} rules, warm cache <= {TARGET_WARM_STARTUP_MS} ms (median; prerendered listing: the daemon's own time)"),
            "measured": warm_100k("prerendered").map(|x| format!("{x:.0} ms")),
            "met": warm_100k("prerendered").map(|x| x <= TARGET_WARM_STARTUP_MS),
        },
        {
            "what": format!("RSS at {TARGET_RULES} rules <= {TARGET_RSS_MB} MB (ready or idle, whichever is larger)"),
            "measured": rss_100k.map(|x| format!("{x:.0} MB")),
            "met": rss_100k.map(|x| x <= TARGET_RSS_MB),
        },
    ]);

    let report = json!({
        "bench": "startup",
        "started_at": started_utc.to_rfc3339(),
        "commit": git_commit(),
        "modified_sources": modified_sources(),
        "machine": {"cpus": nproc, "cpu_model": cpu_model(), "loadavg_at_end": loadavg()},
        "options": {
            "rules": args.rules, "runs": args.runs, "memory_rules": args.memory_rules,
            "idle_seconds": args.idle,
            "daemon_log_level": args.log_level,
            "caches": args.caches.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "listings": args.listings.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        },
        "rule_mix": {
            "startup": "60% core.intervaltimer {interval: 10..=60, unit: seconds}; 40% \
                core.crontimer in 7 shapes (hourly 6-field, daily 5-field, weekdays, monthly, \
                every 6 h, weekly, daily 7-field) with the minute/hour spread by rule id and \
                zones UTC, Europe/Berlin, America/New_York, Asia/Tokyo, Australia/Sydney",
            "memory": "quiet variant: 60% core.intervaltimer {interval: 10..=60, unit: \
                minutes}; 40% core.crontimer daily/weekdays/monthly/weekly/7-field in UTC at an \
                hour 3-20 h after the current hour (no fire during the measurement)",
            "token_trigger_types": ALL_REFS,
        },
        "component_calibration": calibration,
        "listing_baseline": baselines,
        "startup": startup,
        "memory": {"runs": memory_runs, "marginal": marginal},
        "targets": targets,
    });
    print_report(&report);
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&report).expect("serialize the report"),
    )
    .expect("write the JSON report");
    println!("\nJSON report: {}", args.out.display());
}
