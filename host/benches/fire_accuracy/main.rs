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
//! 1. starts the in-process fake Attune API (the test kit's `fake_api`) holding the rules;
//! 2. starts the daemon in-process (the test kit's `TestDaemon`: `Daemon::start`, then its run
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

//!
//! The code: `scenario.rs` (what a scenario is), `run.rs` (one scenario, from filling the
//! fake API to the report), `records.rs` (the events as records), `stats.rs`, `process.rs`
//! (CPU, memory, calibration), `logs.rs` (the daemon's log subscriber), `report.rs` (the
//! typed report and its table), `plot.rs`.

mod exported;
mod ideal;
mod logs;
mod plot;
mod process;
mod records;
mod report;
mod run;
mod scenario;
mod stats;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use attune_testkit::bench::{write_json, Opt, Options};
use attune_testkit::machine::{cpu_model, git_commit, workspace_root};

use logs::{install_logging, LogMode};
use plot::plot_scenario;
use report::{print_table, BenchReport};
use run::{run_scenario, Common, Outcome};
use scenario::Scenario;

#[derive(Debug, Clone)]
pub struct Args {
    pub scenarios: Vec<Scenario>,
    pub interval_rules: usize,
    pub seconds: u64,
    pub warmup: u64,
    pub log: LogMode,
    pub out: PathBuf,
    /// `--store on|off`: the daemon with its state store (the default) or without.
    pub store: bool,
    /// `--concurrency N`: `ATTUNE_OUTBOX_CONCURRENCY` (default: the daemon's).
    pub concurrency: Option<u64>,
}

const USAGE: &str = "fire_accuracy [--scenario 1k,10k,100k|N|N/P,...] [--seconds S] [--warmup W] \
    [--interval-rules M] [--log null|file|off] [--out PATH] [--store on|off] [--concurrency N]";

const OPTIONS: &[Opt] = &[
    Opt::new(&["--scenario", "--scenarios"], Some("FIRE_BENCH_SCENARIO")),
    Opt::new(&["--rules"], None),
    Opt::new(&["--interval-rules"], Some("FIRE_BENCH_INTERVAL_RULES")),
    Opt::new(&["--seconds"], Some("FIRE_BENCH_SECONDS")),
    Opt::new(&["--warmup"], Some("FIRE_BENCH_WARMUP")),
    Opt::new(&["--log"], Some("FIRE_BENCH_LOG")),
    Opt::new(&["--out"], Some("FIRE_BENCH_OUT")),
    Opt::new(&["--store"], Some("FIRE_BENCH_STORE")),
    Opt::new(&["--concurrency"], Some("FIRE_BENCH_CONCURRENCY")),
];

fn parse_args() -> Args {
    let o = Options::parse(USAGE, OPTIONS);
    let list = match (o.get("--scenario"), o.get("--rules")) {
        (Some(_), Some(_)) => panic!("give --scenario or --rules, not both"),
        (Some(s), None) | (None, Some(s)) => s.to_string(),
        (None, None) => "1k,10k,100k".to_string(),
    };
    let args = Args {
        scenarios: list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Scenario::parse)
            .collect(),
        interval_rules: o.num("--interval-rules", 100) as usize,
        seconds: o.num("--seconds", 60),
        warmup: o.num("--warmup", 5),
        log: match o.get("--log").unwrap_or("null") {
            "null" => LogMode::Null,
            "file" => LogMode::File,
            "off" => LogMode::Off,
            other => panic!("--log must be null, file or off, not {other}"),
        },
        store: match o.get("--store").unwrap_or("on") {
            "on" => true,
            "off" => false,
            other => panic!("--store must be on or off, not {other}"),
        },
        concurrency: o.get("--concurrency").map(|_| o.num("--concurrency", 64)),
        out: o
            .get("--out")
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
                report.plot = Some(plot.display().to_string());
                plots.push(plot);
            }
            Err(e) => eprintln!("the plot {} failed: {e}", plot.display()),
        }
        print_table(&report);
        reports.push(report);
        // Written after every scenario, so a failure later keeps what was measured.
        let all = BenchReport {
            bench: "fire_accuracy",
            date_utc: started_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            commit: common.commit.clone(),
            scenarios: &reports,
        };
        write_json(&args.out, &all);
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
