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
//!    in-process fake Attune API (the test kit's `fake_api`) holds N enabled rules of a
//!    realistic mix (see [`mix_params`]): 60 % `core.intervaltimer` of 10–60 s, 40 %
//!    `core.crontimer` in seven shapes (6-, 5- and 7-field, hourly to monthly, five zones),
//!    minutes spread so that no minute boundary fires more than about 1 % of them. The
//!    daemon lists them page by page (`page_size=100`: 1,000 pages at 100,000), either from
//!    the fake building each page (`--listing fake`) or from the fake answering every page
//!    with the bytes it rendered the first time, fetched beforehand
//!    (`FakeApi::render_listings_once`; `--listing prerendered`; default: both). The fake
//!    answers in-process, sharing the 2 cores with the daemon (the bench times its paging
//!    with its own client first); `prerendered` shows the daemon's own start-up time.
//!
//!    Then, `--runs R` times (default 3), it runs the real binary as a child process twice:
//!    **cold** (an empty compiled-component cache directory) and **warm** (the same directory
//!    again, now holding the compiled component). Each run is timed from just before
//!    `spawn` to the moment the bench reads the daemon's readiness line, `Timer sensor
//!    ready: N rules running` (README), a JSON line on stderr read by its `rules_running`
//!    field, which must equal N, with no ERROR line before it. The moments in between come
//!    from stable signals, not from the wording of log lines:
//!    - the daemon's first line on stderr (the process is up and logging; the daemon's CPU
//!      time then is recorded too, from `/proc/<pid>/stat`, 10 ms ticks),
//!    - the fake API's record of `GET /health` (the API was checked),
//!    - its records of the first and the last `GET /api/v1/rules` (the listing; what lies
//!      between the health check and the first page is loading the component and
//!      connecting to the broker),
//!    - the readiness line (the rules applied).
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
//! (`STARTUP_BENCH_MEMORY_RULES`), `--idle S` (`STARTUP_BENCH_IDLE`), `--log-level
//! DIRECTIVE` (`STARTUP_BENCH_LOG_LEVEL`, the daemon's `ATTUNE_LOG_LEVEL`, default `info`;
//! e.g. `info,attune_timer::schedule::clock=warn` drops the per-rule lines), `--out PATH`
//! (`STARTUP_BENCH_OUT`). For investigation, not for figures: `--log-dir DIR` keeps each
//! run's stderr; `--perf-dir DIR` attaches `perf record` (cpu-clock, DWARF call graphs) to
//! each daemon; `--wrap 'CMD ARGS'` runs the daemon under a tool (e.g. `valgrind
//! --tool=massif`; the bench then waits 3 s after ready before SIGTERM, as the wrapper
//! catches every signal itself).
//!
//! The code: `mix.rs` (the rules and the component calibration), `run.rs` (one daemon
//! run), `report.rs` (the typed report and its tables).

mod mix;
mod report;
mod run;

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};

use attune_testkit::bench::{parse_choices, parse_list, write_json, Opt, Options};
use attune_testkit::daemon::{default_token, Broker, ALL_REFS};
use attune_testkit::fake_api::FakeApi;
use attune_testkit::machine::{cpu_model, git_commit, loadavg, modified_sources, workspace_root};

use mix::{api_with_rules, calibrate, interval_share};
use report::{
    print_report, print_run, targets, ListingBaseline, MachineInfo, Memory, OptionsUsed, Report,
    RuleMix, StartupGroup, Summary,
};
use run::{run_daemon, Cache, Run, RunSpec};

// ---------------------------------------------------------------------------------------
// Options

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

const USAGE: &str = "startup [--rules N,N..] [--runs R] [--memory-rules M,M..|none] [--idle S] \
    [--log-level DIRECTIVE] [--cache cold,warm] [--listing fake,prerendered] [--log-dir DIR] \
    [--perf-dir DIR] [--wrap 'CMD ARGS'] [--out PATH]";

const OPTIONS: &[Opt] = &[
    Opt::new(&["--rules"], Some("STARTUP_BENCH_RULES")),
    Opt::new(&["--runs"], Some("STARTUP_BENCH_RUNS")),
    Opt::new(&["--memory-rules"], Some("STARTUP_BENCH_MEMORY_RULES")),
    Opt::new(&["--idle"], Some("STARTUP_BENCH_IDLE")),
    Opt::new(&["--log-level"], Some("STARTUP_BENCH_LOG_LEVEL")),
    Opt::new(&["--cache"], Some("STARTUP_BENCH_CACHE")),
    Opt::new(&["--listing"], Some("STARTUP_BENCH_LISTING")),
    Opt::new(&["--log-dir"], Some("STARTUP_BENCH_LOG_DIR")),
    Opt::new(&["--perf-dir"], Some("STARTUP_BENCH_PERF_DIR")),
    Opt::new(&["--wrap"], Some("STARTUP_BENCH_WRAP")),
    Opt::new(&["--out"], Some("STARTUP_BENCH_OUT")),
];

fn parse_args() -> Args {
    let o = Options::parse(USAGE, OPTIONS);
    let rules = parse_list(o.get("--rules").unwrap_or("10000,100000"), "--rules");
    let memory_rules = match o.get("--memory-rules") {
        Some(list) => parse_list(list, "--memory-rules"),
        None => {
            let mut m = vec![0];
            m.extend(rules.iter().copied().filter(|n| *n > 0));
            m
        }
    };
    Args {
        rules,
        runs: (o.num("--runs", 3) as usize).max(1),
        memory_rules,
        idle: o.num("--idle", 3),
        log_level: o.get("--log-level").unwrap_or("info").to_string(),
        caches: parse_choices(
            o.get("--cache").unwrap_or("cold,warm"),
            "--cache",
            &[("cold", Cache::Cold), ("warm", Cache::Warm)],
        ),
        listings: parse_choices(
            o.get("--listing").unwrap_or("fake,prerendered"),
            "--listing",
            &[
                ("fake", Listing::Fake),
                ("prerendered", Listing::Prerendered),
            ],
        ),
        log_dir: o.get("--log-dir").map(PathBuf::from),
        perf_dir: o.get("--perf-dir").map(PathBuf::from),
        wrap: o
            .get("--wrap")
            .map(|w| w.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        out: o
            .get("--out")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/bench/startup.json")),
    }
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

// ---------------------------------------------------------------------------------------
// The runs

/// A fresh, empty cache directory.
fn cache_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("attune-startup-cache")
        .tempdir()
        .expect("a temporary cache directory")
}

/// `--runs` pairs of cold and warm runs against `api` holding `n` rules; each pair shares a
/// cache directory. Returns the cold runs and the warm runs.
fn cold_and_warm_runs(args: &Args, api: &FakeApi, n: usize, listing: Listing) -> [Vec<Run>; 2] {
    let mut by_cache: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for run in 1..=args.runs {
        let cache = cache_dir();
        if !args.caches.contains(&Cache::Cold) {
            // Warm runs only: fill the cache here (the same library and engine settings as
            // the daemon's, so the same cache entry).
            attune_timer::component::TimerRuntime::builder()
                .cache(attune_timer::component::CompileCache::in_dir(cache.path()))
                .embedded()
                .expect("load the embedded component");
        }
        for (i, kind) in [Cache::Cold, Cache::Warm].into_iter().enumerate() {
            if !args.caches.contains(&kind) {
                continue;
            }
            let mut r = run_daemon(&RunSpec {
                api,
                rules: n,
                cache_dir: cache.path(),
                cache: kind,
                idle: 0,
                log_level: &args.log_level,
                label: format!("{n}-{}-{}-{run}", listing.as_str(), kind.as_str()),
                log_dir: args.log_dir.as_deref(),
                perf_dir: args.perf_dir.as_deref(),
                wrap: &args.wrap,
            });
            r.listing = Some(listing.as_str());
            print_run(&r);
            by_cache[i].push(r);
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
    by_cache
}

/// For each `--rules N`: the fake's listing alone, then the runs of each listing.
fn startup_runs(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    token: &str,
) -> (Vec<StartupGroup>, Vec<ListingBaseline>) {
    let mut groups = Vec::new();
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
        let (bytes_ms, pages, _) = rt.block_on(list_everything(&api, token, false));
        let (parsed_ms, _, items) = rt.block_on(list_everything(&api, token, true));
        assert_eq!(items, n, "the fake lists every rule");
        eprintln!(
            "[{n} rules] listing alone: {pages} pages, {bytes_ms:.0} ms (bodies only), \
             {parsed_ms:.0} ms (parsed)"
        );
        baselines.push(ListingBaseline {
            rules: n,
            pages,
            bytes_only_ms: bytes_ms,
            parsed_ms,
        });
        for &listing in &args.listings {
            // `prerendered`: the fake renders each page once, here, and sends the daemon the
            // same bytes again, so its per-page cost is out of the measurement.
            let prerendered = listing == Listing::Prerendered;
            api.render_listings_once(prerendered);
            if prerendered {
                rt.block_on(list_everything(&api, token, false));
            }
            let [cold, warm] = cold_and_warm_runs(args, &api, n, listing);
            for (cache, runs) in [(Cache::Cold, cold), (Cache::Warm, warm)] {
                if !runs.is_empty() {
                    groups.push(StartupGroup {
                        rules: n,
                        listing: listing.as_str(),
                        cache,
                        summary: Summary::of(&runs),
                        runs,
                    });
                }
            }
        }
    }
    (groups, baselines)
}

/// One warm-cache run per `--memory-rules M`, with the quiet rules, idle before measuring.
fn memory_runs(args: &Args) -> Memory {
    let mut runs = Vec::new();
    if args.memory_rules.is_empty() {
        return Memory::of(runs);
    }
    let cache = cache_dir();
    let spec = |api: &FakeApi, rules: usize, cache_kind: Cache, idle: u64, label: String| {
        run_daemon(&RunSpec {
            api,
            rules,
            cache_dir: cache.path(),
            cache: cache_kind,
            idle,
            log_level: &args.log_level,
            label,
            log_dir: args.log_dir.as_deref(),
            perf_dir: args.perf_dir.as_deref(),
            wrap: &args.wrap,
        })
    };
    // Fill the cache first, so the memory runs do not carry the compiler's allocations.
    spec(
        &api_with_rules(0, true),
        0,
        Cache::Cold,
        0,
        "memory-cache-fill".into(),
    );
    for &m in &args.memory_rules {
        let label = format!("memory-{m}");
        let r = spec(
            &api_with_rules(m, true),
            m,
            Cache::Warm,
            args.idle,
            label.clone(),
        );
        let idle = r.memory_idle.unwrap_or_default();
        eprintln!(
            "[{label}] ready {:.0} ms; RSS ready {} MiB (peak {}), idle {} MiB (peak {}); \
             events while idle {:?}",
            r.ready_ms,
            r.memory_ready.vm_rss_mib,
            r.memory_ready.vm_hwm_mib,
            idle.vm_rss_mib,
            idle.vm_hwm_mib,
            r.events_during_idle
        );
        if r.events_during_idle != Some(0) {
            eprintln!("[{label}] warning: rules fired while idle; the idle figure is not quiet");
        }
        runs.push(r);
    }
    Memory::of(runs)
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args = parse_args();
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
    let token = default_token();
    let calibration = calibrate(500);
    eprintln!(
        "component work per rule at start (validate + next-fire, one thread, alone): {} µs for \
         the mix",
        calibration.mix_per_rule_us
    );

    let (startup, baselines) = startup_runs(&args, &rt, &token);
    let memory = memory_runs(&args);
    let targets = targets(&startup, &memory);
    let report = Report {
        bench: "startup",
        started_at: started_utc.to_rfc3339(),
        commit: git_commit(),
        modified_sources: modified_sources(),
        machine: MachineInfo {
            cpus: nproc,
            cpu_model: cpu_model(),
            loadavg_at_end: loadavg(),
        },
        options: OptionsUsed {
            rules: args.rules.clone(),
            runs: args.runs,
            memory_rules: args.memory_rules.clone(),
            idle_seconds: args.idle,
            daemon_log_level: args.log_level.clone(),
            caches: args.caches.clone(),
            listings: args.listings.iter().map(|l| l.as_str()).collect(),
        },
        rule_mix: RuleMix {
            startup: "60% core.intervaltimer {interval: 10..=60, unit: seconds}; 40% \
                core.crontimer in 7 shapes (hourly 6-field, daily 5-field, weekdays, monthly, \
                every 6 h, weekly, daily 7-field) with the minute/hour spread by rule id and \
                zones UTC, Europe/Berlin, America/New_York, Asia/Tokyo, Australia/Sydney",
            memory: "quiet variant: 60% core.intervaltimer {interval: 10..=60, unit: \
                minutes}; 40% core.crontimer daily/weekdays/monthly/weekly/7-field in UTC at an \
                hour 3-20 h after the current hour (no fire during the measurement)",
            token_trigger_types: ALL_REFS,
        },
        component_calibration: calibration,
        listing_baseline: baselines,
        startup,
        memory,
        targets,
    };
    print_report(&report);
    write_json(&args.out, &report);
    println!("\nJSON report: {}", args.out.display());
}
