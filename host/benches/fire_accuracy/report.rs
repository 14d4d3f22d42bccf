//! The fire-accuracy report: typed, written as JSON, and printed as a table.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::exported::Exported;
use crate::ideal::IdealFigures;

use crate::logs::{LogFigures, LogMode};
use crate::scenario::thousands;
use crate::stats::{Buckets, ClockDist, Dist, Sequence};

/// The notes in the JSON report.
pub const NOTE_CALIBRATION: &str = "component work (next-fire + build-payload) of one fire alone \
    on one thread: how fast the machine was; × fires per second = the cores the prebuilding \
    takes";
pub const NOTE_LATENESS: &str = "Clock::take_lateness over the window: every fire (cron and \
    interval), the instant the sink (outbox) had it − its tick, monotonic clock, 3 significant \
    digits";
pub const NOTE_PAYLOAD: &str =
    "payload fired_at − scheduled_at (interval: − the tick at or before \
    fired_at), events scheduled in the window: the tick itself for a prebuilt fire, the real \
    time for one built when it fired; never earlier. fired_at_after_tick should be close to \
    clock_fires_later_than_on_time (fires handed on in the window); the difference is fires \
    handed on later than ON_TIME whose payload says they fired on their tick";

#[derive(Debug, Clone, Serialize)]
pub struct MachineFigures {
    pub nproc: usize,
    pub cpu_model: String,
    pub load_avg_at_start: String,
    pub load_avg_at_end: String,
    pub other_processes_cores_busy: f64,
    pub steal_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub cron_rules: usize,
    pub cron_expression: String,
    pub cron_period_seconds: i64,
    pub cron_fires_per_second: f64,
    pub interval_rules: usize,
    pub interval_seconds: [i64; 4],
    pub warmup_seconds: u64,
    pub window_seconds: f64,
    pub logs: LogMode,
    pub profile: &'static str,
    /// The daemon ran with its state store.
    pub state_store: bool,
    /// `ATTUNE_OUTBOX_CONCURRENCY`, when the bench set it.
    pub outbox_concurrency: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CalibrationFigures {
    pub component_us_per_fire_one_thread: f64,
    pub component_cores_at_this_fire_rate: f64,
    pub note: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Arrival {
    pub cron: Dist,
    pub interval: Dist,
    pub all: Dist,
    pub cron_last_event_of_each_tick: Dist,
    pub cron_histogram: Buckets,
}

#[derive(Debug, Clone, Serialize)]
pub struct PayloadCheck {
    pub cron_fired_minus_scheduled_min_ms: f64,
    pub cron_fired_minus_scheduled_max_ms: f64,
    pub early_fires: usize,
    pub fired_at_equals_tick: usize,
    pub fired_at_after_tick: usize,
    pub clock_fires_later_than_on_time: u64,
    pub late_fires_payload_says_on_time_estimate: u64,
    pub max_within_clock_max: bool,
    pub note: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct CronFigures {
    pub sequence: Sequence,
    pub ticks_in_window: usize,
    pub rules_due_per_tick: i64,
    pub ticks_short_of_rules_due: usize,
    pub ticks_over_rules_due: usize,
    pub fires_missing_from_ticks: usize,
    pub rules_per_tick_min: usize,
    pub rules_per_tick_max: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct IntervalFigures {
    pub sequence: Sequence,
    pub drift_rules: usize,
    pub drift_abs_max_ms: f64,
    pub drift: Dist,
    pub drift_arrival_abs_max_ms: f64,
    pub drift_arrival: Dist,
    pub execution_count_mismatches: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuFigures {
    pub window_wall_seconds: f64,
    pub fires_in_window: u64,
    pub process_seconds: f64,
    pub daemon_seconds: f64,
    pub fake_api_seconds: f64,
    pub bench_seconds: f64,
    pub process_per_1000_fires_seconds: f64,
    pub daemon_per_1000_fires_seconds: f64,
    pub fake_api_per_1000_fires_seconds: f64,
    pub daemon_cores_busy: f64,
    pub fake_api_cores_busy: f64,
    pub by_thread_name_seconds: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryFigures {
    pub rss_before_mib: f64,
    pub rss_ready_mib: f64,
    pub rss_window_start_mib: f64,
    pub rss_window_end_mib: f64,
    pub rss_window_max_mib: f64,
    pub rss_peak_hwm_mib: f64,
    pub bench_records_mib: f64,
}

/// Everything one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub date_utc: String,
    pub commit: Option<String>,
    pub machine: MachineFigures,
    pub params: Params,
    pub calibration: CalibrationFigures,
    pub startup_seconds: f64,
    pub all_timers_running_seconds: f64,
    pub shutdown_seconds: f64,
    pub lateness: ClockDist,
    pub lateness_histogram: Buckets,
    pub lateness_note: &'static str,
    /// The daemon's own `/metrics` over the window.
    pub exported: Exported,
    pub arrival_lateness: Arrival,
    pub payload: PayloadCheck,
    pub cron: CronFigures,
    pub interval: IntervalFigures,
    pub events_received_total: usize,
    pub events_unparsed: u64,
    pub cpu: CpuFigures,
    pub memory: MemoryFigures,
    /// Bytes written to storage in the window (the state store), per fire.
    pub disk_write_bytes_per_fire: f64,
    pub ideal_client: IdealFigures,
    pub logs: LogFigures,
    /// The lateness plot, once drawn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plot: Option<String>,
}

/// `target/bench/fire_accuracy.json`: every scenario run so far.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport<'a> {
    pub bench: &'static str,
    pub date_utc: String,
    pub commit: Option<String>,
    pub scenarios: &'a [ScenarioReport],
}

fn opt<T: ToString>(x: &Option<T>) -> String {
    x.as_ref().map_or_else(|| "-".into(), |x| x.to_string())
}

fn print_header(r: &ScenarioReport) {
    let p = &r.params;
    let m = &r.machine;
    println!();
    println!(
        "=== fire_accuracy {}: {} cron rules `{}` ({} fires/s) + {} interval rules ===",
        r.scenario, p.cron_rules, p.cron_expression, p.cron_fires_per_second, p.interval_rules
    );
    println!(
        "{}  commit {}  {} CPUs ({}); window {} s after {} s warm-up; logs {}",
        r.date_utc,
        opt(&r.commit),
        m.nproc,
        m.cpu_model,
        p.window_seconds,
        p.warmup_seconds,
        format!("{:?}", p.logs).to_lowercase()
    );
    println!(
        "component work per fire {} µs (one thread, alone) -> {} cores at this fire rate; \
         startup {} s (all timers running {} s), shutdown {} s",
        r.calibration.component_us_per_fire_one_thread,
        r.calibration.component_cores_at_this_fire_rate,
        r.startup_seconds,
        r.all_timers_running_seconds,
        r.shutdown_seconds
    );
    println!(
        "other processes kept {} cores busy (steal {} s); load {} -> {}",
        m.other_processes_cores_busy, m.steal_seconds, m.load_avg_at_start, m.load_avg_at_end
    );
}

fn print_lateness(r: &ScenarioReport) {
    println!();
    println!(
        "{:<40} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "(ms)", "n", "p50", "p99", "p99.9", "max", "mean"
    );
    let row = |name: &str, d: &Dist| {
        println!(
            "{:<40} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name, d.n, d.p50_ms, d.p99_ms, d.p99_9_ms, d.max_ms, d.mean_ms
        )
    };
    let a = &r.arrival_lateness;
    row("lateness (clock: outbox had it − tick)", &r.lateness.dist);
    row("arrival, cron (API received − tick)", &a.cron);
    row("arrival, interval", &a.interval);
    row(
        "arrival, last event of each cron tick",
        &a.cron_last_event_of_each_tick,
    );
    let ideal = &r.ideal_client;
    println!(
        "ideal client (same API, same run): {} posts on {} connections in {:?} ms (median {} ms); \
         arrival p99 / ideal = {}",
        ideal.events_per_burst,
        ideal.connections,
        ideal.burst_ms,
        ideal.burst_median_ms,
        ideal.arrival_p99_ratio
    );
    println!(
        "bytes written to storage per fire (the state store): {}",
        r.disk_write_bytes_per_fire
    );
    let e = &r.exported;
    let at_most = |v: Option<f64>| v.map_or_else(|| "-".into(), |ms| format!("≤ {ms}"));
    println!(
        "/metrics over the window: fires {} (clock: {}; on time {}, late {}, catch-up {}, \
         faulted {}), delivered {}, lost {}, retries {}; hand-over p50 {} ms, p99 {} ms; \
         event requests {} (p99 {} ms); store commits {} (p99 {} ms); outbox at the end {}",
        e.fires_total(),
        r.lateness.dist.n,
        e.fires["on_time"],
        e.fires["late"],
        e.fires["catch_up"],
        e.fires["faulted"],
        e.events_delivered,
        e.events_lost,
        e.event_retries,
        at_most(e.handover_lateness_p50_at_most_ms),
        at_most(e.handover_lateness_p99_at_most_ms),
        e.event_requests,
        at_most(e.event_request_p99_at_most_ms),
        e.store_commits,
        at_most(e.store_commit_p99_at_most_ms),
        e.outbox_events_at_end
    );
    row("interval drift (payload fired_at)", &r.interval.drift);
    row("interval drift (arrival)", &r.interval.drift_arrival);
    let pl = &r.payload;
    println!(
        "payload fired_at − scheduled_at (cron): min {} max {} ms (within the clock's max: {}); \
         early fires {}; payloads with fired_at = tick {}, after the tick {}; clock: {} fires \
         later than ON_TIME",
        pl.cron_fired_minus_scheduled_min_ms,
        pl.cron_fired_minus_scheduled_max_ms,
        pl.max_within_clock_max,
        pl.early_fires,
        pl.fired_at_equals_tick,
        pl.fired_at_after_tick,
        pl.clock_fires_later_than_on_time
    );
    let understated = pl.late_fires_payload_says_on_time_estimate;
    let fires = r.lateness.dist.n;
    if understated * 1000 > fires {
        println!(
            "NOTE: about {} fires ({:.1}%) reached the outbox more than ON_TIME after their tick \
             while their payload says fired_at = scheduled_at",
            thousands(understated),
            understated as f64 * 100.0 / fires.max(1) as f64
        );
    }
}

fn print_sequences(r: &ScenarioReport) {
    println!();
    println!(
        "{:<10} {:>9} {:>9} {:>8} {:>10} {:>14}",
        "", "fires", "expected", "missed", "duplicates", "rules w/o fire"
    );
    for (name, s) in [
        ("cron", &r.cron.sequence),
        ("interval", &r.interval.sequence),
    ] {
        println!(
            "{:<10} {:>9} {:>9} {:>8} {:>10} {:>14}",
            name, s.fires, s.expected, s.missed, s.duplicates, s.rules_without_a_fire
        );
    }
    let c = &r.cron;
    println!(
        "cron ticks in window {} (each due for {} rules): fired by min {} max {}; short {} \
         ({} fires missing), over {}; execution_count mismatches {}; unparsed events {}",
        c.ticks_in_window,
        c.rules_due_per_tick,
        c.rules_per_tick_min,
        c.rules_per_tick_max,
        c.ticks_short_of_rules_due,
        c.fires_missing_from_ticks,
        c.ticks_over_rules_due,
        r.interval.execution_count_mismatches,
        r.events_unparsed
    );
}

fn print_resources(r: &ScenarioReport) {
    let cpu = &r.cpu;
    println!();
    println!(
        "CPU over {} s and {} fires: process {} s ({} s / 1,000 fires), daemon {} s ({} s / \
         1,000 fires, {} cores), fake API {} s ({} s / 1,000 fires), bench {} s",
        cpu.window_wall_seconds,
        cpu.fires_in_window,
        cpu.process_seconds,
        cpu.process_per_1000_fires_seconds,
        cpu.daemon_seconds,
        cpu.daemon_per_1000_fires_seconds,
        cpu.daemon_cores_busy,
        cpu.fake_api_seconds,
        cpu.fake_api_per_1000_fires_seconds,
        cpu.bench_seconds
    );
    let by_name: Vec<String> = cpu
        .by_thread_name_seconds
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("CPU s by thread name: {}", by_name.join(", "));
    let mem = &r.memory;
    println!(
        "RSS (whole process, fake API included): before {} MiB, ready {} MiB, window {} -> {} \
         MiB (max {}), peak {} MiB",
        mem.rss_before_mib,
        mem.rss_ready_mib,
        mem.rss_window_start_mib,
        mem.rss_window_end_mib,
        mem.rss_window_max_mib,
        mem.rss_peak_hwm_mib
    );
    let l = &r.logs;
    println!(
        "daemon logs: {} lines, {} errors, {} warnings, {} `Failed to create event`",
        l.lines, l.errors, l.warnings, l.failed_to_create_event
    );
}

fn print_histograms(r: &ScenarioReport) {
    let hist = |name: &str, h: &Buckets| {
        let parts: Vec<String> = h
            .iter()
            .filter(|(_, n)| *n != 0)
            .map(|(bucket, n)| format!("{bucket}: {n}"))
            .collect();
        println!("{name}: {}", parts.join(", "));
    };
    hist("lateness histogram    ", &r.lateness_histogram);
    hist("cron arrival histogram", &r.arrival_lateness.cron_histogram);
    if let Some(p) = &r.plot {
        println!("plot: {p}");
    }
}

/// The table of one scenario, on stdout.
pub fn print_table(r: &ScenarioReport) {
    print_header(r);
    print_lateness(r);
    print_sequences(r);
    print_resources(r);
    print_histograms(r);
}
