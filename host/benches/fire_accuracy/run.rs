//! One scenario: fill the fake API, run the daemon on its own runtime while a collector
//! drains the API's events, measure the window, then turn the records into the report.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use attune_testkit::daemon::TestDaemon;
use attune_testkit::fake_api::{FakeApi, FakeOptions};
use attune_testkit::machine::{clk_tck, cpu_model, loadavg};

use crate::exported::{window, Exported};
use crate::logs::LogCounters;
use crate::process::{calibrate, release_memory, rss_kib, snapshot, thread_group, Snapshot};
use crate::records::{to_rec, IntervalStarts, Kind, Rec, TimeMap};
use crate::report::{
    Arrival, CalibrationFigures, CpuFigures, CronFigures, IntervalFigures, MachineFigures,
    MemoryFigures, Params, PayloadCheck, ScenarioReport, NOTE_CALIBRATION, NOTE_LATENESS,
    NOTE_PAYLOAD,
};
use crate::scenario::{Scenario, INTERVALS, NS};
use crate::stats::{dist, hist_buckets, hist_dist, histogram, ms, sequences, ClockDist};
use crate::Args;

pub struct Outcome {
    pub report: ScenarioReport,
    pub clock: Histogram<u64>,
    /// Arrival lateness of every fire in the window (cron and interval), ns, sorted.
    pub arrival: Vec<i64>,
}

pub struct Common<'a> {
    pub args: &'a Args,
    pub logs: &'a LogCounters,
    pub nproc: usize,
    pub commit: Option<String>,
}

/// The rules of a scenario: (id, period ns) of the cron rules and of the interval rules.
struct RuleSet {
    cron: Vec<(i64, i64)>,
    interval: Vec<(i64, i64)>,
}

/// The fake API holding the scenario's cron rules and `interval_rules` interval rules.
fn fill_api(sc: &Scenario, interval_rules: usize) -> (FakeApi, RuleSet) {
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
    let mut interval = Vec::new();
    for i in 0..interval_rules as i64 {
        let id = n_cron + 1 + i;
        let every = INTERVALS[i as usize % INTERVALS.len()];
        api.add_rule(
            id,
            "core.intervaltimer",
            json!({"interval": every, "unit": "seconds"}),
            true,
        );
        interval.push((id, every * NS));
    }
    let cron = (1..=n_cron).map(|id| (id, sc.period * NS)).collect();
    (api, RuleSet { cron, interval })
}

/// What the run of the daemon measured, besides the records.
struct Timeline {
    map: TimeMap,
    startup: Duration,
    all_running: Duration,
    rss_ready: (u64, u64),
    begin: Snapshot,
    end: Snapshot,
    shutdown: Duration,
    clock: Histogram<u64>,
    /// What the daemon's `/metrics` said about the window.
    exported: Exported,
}

/// What the collector and the daemon's run share.
#[derive(Default)]
struct Shared {
    stop_collecting: AtomicBool,
    records: Mutex<Vec<Rec>>,
    rss_max_in_window: AtomicU64,
    in_window: AtomicBool,
    context: Mutex<Option<(TimeMap, IntervalStarts)>>,
    unparsed: AtomicU64,
}

/// Sets the flag when dropped: stops the collector even when the run panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Drains the API's recordings every 250 ms into compact records, once the daemon's
/// timeline is known, until told to stop.
fn collect(api: &FakeApi, shared: &Shared) {
    let (map, starts) = loop {
        if let Some(c) = shared.context.lock().unwrap().clone() {
            break c;
        }
        if shared.stop_collecting.load(Ordering::Acquire) {
            return; // the daemon never became ready
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    loop {
        let last = shared.stop_collecting.load(Ordering::Acquire);
        let drained = api.drain_events();
        let mut parsed = Vec::with_capacity(drained.len());
        for ev in &drained {
            match to_rec(ev, &map, &starts) {
                Some(r) => parsed.push(r),
                None => {
                    shared.unparsed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        drop(drained);
        shared.records.lock().unwrap().extend(parsed);
        if shared.in_window.load(Ordering::Relaxed) {
            shared
                .rss_max_in_window
                .fetch_max(rss_kib().0, Ordering::Relaxed);
        }
        if last {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The daemon's UTC timeline: reads both clocks together, keeps the tightest pair.
fn time_map(daemon: &TestDaemon) -> TimeMap {
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
    best.unwrap().1
}

/// Starts the daemon, waits for every timer, warms up, measures the window, stops it.
async fn drive_daemon(
    args: &Args,
    sc: &Scenario,
    api: &FakeApi,
    rules: &RuleSet,
    shared: &Shared,
) -> Timeline {
    let t0 = Instant::now();
    let concurrency = args.concurrency.map(|n| n.to_string());
    let mut extra = Vec::new();
    if !args.store {
        extra.push(("ATTUNE_STATE_DIR", "off"));
    }
    if let Some(n) = &concurrency {
        extra.push(("ATTUNE_OUTBOX_CONCURRENCY", n.as_str()));
    }
    let daemon = TestDaemon::start(api, &extra).await;
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
    let map = time_map(&daemon);
    let mut starts = IntervalStarts::new();
    for &(id, every) in &rules.interval {
        let t = daemon.clock.timer(id).expect("interval timer running");
        starts.insert(id, (t.started_at.timestamp_nanos_opt().unwrap(), every));
    }
    *shared.context.lock().unwrap() = Some((map, starts));
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
    let admin = daemon.admin.expect("the admin listener is on");
    let metrics_before = attune_testkit::admin::scrape(admin).await;
    let begin = snapshot();
    shared.in_window.store(true, Ordering::Relaxed);
    tokio::time::sleep_until((begin.at + Duration::from_secs(args.seconds)).into()).await;
    let clock = daemon.clock.take_lateness();
    let metrics_after = attune_testkit::admin::scrape(admin).await;
    let end = snapshot();
    shared.in_window.store(false, Ordering::Relaxed);

    let stopping = Instant::now();
    daemon.stop().await.expect("the daemon shut down cleanly");
    Timeline {
        map,
        startup,
        all_running,
        rss_ready,
        begin,
        end,
        shutdown: stopping.elapsed(),
        clock,
        exported: window(&metrics_before, &metrics_after),
    }
}

/// Runs the daemon on its own runtime (as the binary builds it) beside the collector.
fn measure(args: &Args, sc: &Scenario, api: &FakeApi, rules: &RuleSet) -> (Timeline, Shared) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("attune-timer")
        .build()
        .expect("tokio runtime");
    let shared = Shared::default();
    let timeline = std::thread::scope(|scope| {
        let collector = std::thread::Builder::new()
            .name("bench-collector".into())
            .spawn_scoped(scope, || collect(api, &shared))
            .expect("spawn the collector");
        let _stop = SetOnDrop(&shared.stop_collecting);
        let timeline = runtime.block_on(drive_daemon(args, sc, api, rules, &shared));
        shared.stop_collecting.store(true, Ordering::Release);
        collector.join().expect("collector");
        timeline
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    (timeline, shared)
}

/// The payloads: `fired_at` is the tick for a fire released on time (prebuilt), later for
/// one built when it fired. Never earlier.
fn payload_check(in_win: &[&Rec], cron: &[&Rec], clock: &Histogram<u64>) -> PayloadCheck {
    let early = in_win.iter().filter(|r| r.fired < r.sched).count();
    let at_tick = in_win.iter().filter(|r| r.fired == r.sched).count();
    let built_late = in_win.iter().filter(|r| r.fired > r.sched).count();
    let payload_cron: Vec<i64> = cron.iter().map(|r| r.fired - r.sched).collect();
    let payload_cron_max = payload_cron.iter().copied().max().unwrap_or(0);
    let payload_cron_min = payload_cron.iter().copied().min().unwrap_or(0);
    let clock_late = hist_dist(clock).later_than_on_time;
    PayloadCheck {
        cron_fired_minus_scheduled_min_ms: ms(payload_cron_min),
        cron_fired_minus_scheduled_max_ms: ms(payload_cron_max),
        early_fires: early,
        fired_at_equals_tick: at_tick,
        fired_at_after_tick: built_late,
        clock_fires_later_than_on_time: clock_late,
        // Fires the clock handed on later than ON_TIME whose payload still says `fired_at`
        // = the tick. An estimate: the two counts cover the same window by different
        // instants (hand-off vs tick), so a burst at either edge can fall in one and not the
        // other.
        late_fires_payload_says_on_time_estimate: clock_late.saturating_sub(built_late as u64),
        // A late-built payload names the moment it was computed, before the sink had it: no
        // payload may show more lateness than the clock measured (3 significant digits, so
        // allow 0.2%).
        max_within_clock_max: early == 0
            && payload_cron_max <= (clock.max() + clock.max() / 500 + 1000) as i64,
        note: NOTE_PAYLOAD,
    }
}

/// Every whole-second tick of the window that ended at least 1 s before the stop: how many
/// cron rules fired it (each should be fired by every rule due in it). Also how long after
/// its tick each second's last event arrived.
fn cron_figures(
    sc: &Scenario,
    cron: &[&Rec],
    rules: &[(i64, i64)],
    (w0, w1): (i64, i64),
) -> (CronFigures, Vec<i64>) {
    let due = sc.due_by_phase();
    let mut per_tick: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    let first_tick = (w0 + NS - 1).div_euclid(NS) * NS;
    let mut t = first_tick;
    while t <= w1 - NS {
        let expected = due[(t / NS).rem_euclid(sc.period) as usize];
        per_tick.insert(t, (0, expected));
        t += NS;
    }
    for r in cron {
        if let Some((c, _)) = per_tick.get_mut(&r.sched) {
            *c += 1;
        }
    }
    let mut last_arrival: BTreeMap<i64, i64> = BTreeMap::new();
    for r in cron {
        let e = last_arrival.entry(r.sched).or_insert(i64::MIN);
        *e = (*e).max(r.received - r.sched);
    }
    let figures = CronFigures {
        sequence: sequences(cron, rules),
        ticks_in_window: per_tick.len(),
        rules_due_per_tick: sc.rules as i64 / sc.period,
        ticks_short_of_rules_due: per_tick.values().filter(|(c, e)| c < e).count(),
        ticks_over_rules_due: per_tick.values().filter(|(c, e)| c > e).count(),
        fires_missing_from_ticks: per_tick.values().map(|(c, e)| e.saturating_sub(*c)).sum(),
        rules_per_tick_min: per_tick.values().map(|(c, _)| *c).min().unwrap_or(0),
        rules_per_tick_max: per_tick.values().map(|(c, _)| *c).max().unwrap_or(0),
    };
    (figures, last_arrival.into_values().collect())
}

/// Drift of each interval rule over the window: last − first fire − (the ticks between
/// them) × interval, from the payloads' `fired_at` and from the API's receive times. The
/// ticks between them are (n − 1) when nothing was missed; a missed fire must not read as
/// an interval of drift, so they are counted from the tick indices (missed ticks are in
/// the interval sequence figures).
fn interval_figures(interval: &[&Rec], rules: &[(i64, i64)]) -> IntervalFigures {
    let mut by_rule: HashMap<i64, Vec<&Rec>> = HashMap::new();
    for r in interval {
        by_rule.entry(r.rule).or_default().push(r);
    }
    let mut drifts = Vec::new();
    let mut drifts_arrival = Vec::new();
    let mut count_mismatch = 0usize;
    for &(id, every) in rules {
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
    let abs_max = |v: &[i64]| v.iter().map(|d| d.abs()).max().unwrap_or(0);
    IntervalFigures {
        sequence: sequences(interval, rules),
        drift_rules: drifts.len(),
        drift_abs_max_ms: ms(abs_max(&drifts)),
        drift_arrival_abs_max_ms: ms(abs_max(&drifts_arrival)),
        drift: dist(drifts),
        drift_arrival: dist(drifts_arrival),
        execution_count_mismatches: count_mismatch,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round5(x: f64) -> f64 {
    format!("{x:.5}").parse::<f64>().unwrap_or(x)
}

fn mib(kib: u64) -> f64 {
    round3(kib as f64 / 1024.0)
}

/// CPU over the window, split by thread into the fake API, the bench and the daemon; and
/// the cores other processes kept busy and the steal time, for the machine figures.
fn cpu_figures(begin: &Snapshot, end: &Snapshot, fires: u64) -> (CpuFigures, f64, f64) {
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
    let per_1000 = |cpu: f64| {
        if fires == 0 {
            0.0
        } else {
            cpu / fires as f64 * 1000.0
        }
    };
    let machine_busy = (end.machine.0 - begin.machine.0) as f64 / tck;
    let others_cores = ((machine_busy - process_cpu) / wall).max(0.0);
    let steal_s = (end.machine.2 - begin.machine.2) as f64 / tck;
    let cpu = CpuFigures {
        window_wall_seconds: round3(wall),
        fires_in_window: fires,
        process_seconds: round3(process_cpu),
        daemon_seconds: round3(daemon_cpu),
        fake_api_seconds: round3(fake_cpu),
        bench_seconds: round3(bench_cpu),
        process_per_1000_fires_seconds: round5(per_1000(process_cpu)),
        daemon_per_1000_fires_seconds: round5(per_1000(daemon_cpu)),
        fake_api_per_1000_fires_seconds: round5(per_1000(fake_cpu)),
        daemon_cores_busy: round3(daemon_cpu / wall),
        fake_api_cores_busy: round3(fake_cpu / wall),
        by_thread_name_seconds: by_name.into_iter().map(|(k, v)| (k, round3(v))).collect(),
    };
    (cpu, round3(others_cores), round3(steal_s))
}

/// The figures the clock and the API's records give, for the window.
struct Analysis {
    window_s: f64,
    lateness: ClockDist,
    arrival: Arrival,
    all_arrival_sorted: Vec<i64>,
    payload: PayloadCheck,
    cron: CronFigures,
    interval: IntervalFigures,
}

fn analyse(sc: &Scenario, rules: &RuleSet, records: &[Rec], tl: &Timeline) -> Analysis {
    let w0 = tl.map.utc_ns(tl.begin.at);
    let w1 = tl.map.utc_ns(tl.end.at);
    let in_win: Vec<&Rec> = records
        .iter()
        .filter(|r| r.sched >= w0 && r.sched < w1)
        .collect();
    let of_kind =
        |kind: Kind| -> Vec<&Rec> { in_win.iter().copied().filter(|r| r.kind == kind).collect() };
    let cron = of_kind(Kind::Cron);
    let interval = of_kind(Kind::Interval);
    let (cron_figures, tick_last_arrival) = cron_figures(sc, &cron, &rules.cron, (w0, w1));
    let cron_arrival: Vec<i64> = cron.iter().map(|r| r.received - r.sched).collect();
    let int_arrival: Vec<i64> = interval.iter().map(|r| r.received - r.sched).collect();
    let mut all_arrival: Vec<i64> = in_win.iter().map(|r| r.received - r.sched).collect();
    all_arrival.sort_unstable();
    Analysis {
        window_s: (w1 - w0) as f64 / 1e9,
        lateness: hist_dist(&tl.clock),
        arrival: Arrival {
            cron: dist(cron_arrival.clone()),
            interval: dist(int_arrival),
            all: dist(all_arrival.clone()),
            cron_last_event_of_each_tick: dist(tick_last_arrival),
            cron_histogram: histogram(&cron_arrival),
        },
        all_arrival_sorted: all_arrival,
        payload: payload_check(&in_win, &cron, &tl.clock),
        cron: cron_figures,
        interval: interval_figures(&interval, &rules.interval),
    }
}

pub fn run_scenario(common: &Common, sc: &Scenario) -> Outcome {
    let args = common.args;
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
        common.nproc,
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

    let (api, rules) = fill_api(sc, args.interval_rules);
    let (tl, shared) = measure(args, sc, &api, &rules);
    let logs = common.logs.take();
    let records = shared.records.into_inner().unwrap();
    let a = analyse(sc, &rules, &records, &tl);
    let (cpu, others_cores, steal_s) = cpu_figures(&tl.begin, &tl.end, tl.clock.len());
    let records_bytes = records.capacity() * std::mem::size_of::<Rec>();
    // The ideal client, against the same API now that the daemon has stopped: a burst the
    // size of the scenario's rules due together, on as many connections as the daemon's cap.
    let ideal_client = crate::ideal::measure(
        &api,
        &attune_testkit::daemon::default_token(),
        sc.rules / sc.period.max(1) as usize,
        args.concurrency.map_or(
            attune_timer::platform::outbox::OutboxOptions::default().concurrency,
            |n| n as usize,
        ),
        a.arrival.cron.p99_ms,
    );
    let rss_window_max = shared
        .rss_max_in_window
        .load(Ordering::Relaxed)
        .max(tl.end.rss.0);

    let report = ScenarioReport {
        scenario: sc.name.clone(),
        date_utc: started_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        commit: common.commit.clone(),
        machine: MachineFigures {
            nproc: common.nproc,
            cpu_model: cpu_model(),
            load_avg_at_start: tl.begin.load.clone(),
            load_avg_at_end: tl.end.load.clone(),
            other_processes_cores_busy: others_cores,
            steal_seconds: steal_s,
        },
        params: Params {
            cron_rules: sc.rules,
            cron_expression: sc.expression_doc(),
            cron_period_seconds: sc.period,
            cron_fires_per_second: sc.fires_per_second(),
            interval_rules: args.interval_rules,
            interval_seconds: INTERVALS,
            warmup_seconds: args.warmup,
            window_seconds: round3(a.window_s),
            logs: args.log,
            state_store: args.store,
            outbox_concurrency: args.concurrency,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        },
        calibration: CalibrationFigures {
            component_us_per_fire_one_thread: round3(compute_us),
            component_cores_at_this_fire_rate: round3(component_cores),
            note: NOTE_CALIBRATION,
        },
        startup_seconds: round3(tl.startup.as_secs_f64()),
        all_timers_running_seconds: round3(tl.all_running.as_secs_f64()),
        shutdown_seconds: round3(tl.shutdown.as_secs_f64()),
        lateness: a.lateness,
        lateness_histogram: hist_buckets(&tl.clock),
        exported: tl.exported.clone(),
        lateness_note: NOTE_LATENESS,
        arrival_lateness: a.arrival,
        payload: a.payload,
        cron: a.cron,
        interval: a.interval,
        events_received_total: records.len(),
        events_unparsed: shared.unparsed.load(Ordering::Relaxed),
        cpu,
        memory: MemoryFigures {
            rss_before_mib: mib(rss_before.0),
            rss_ready_mib: mib(tl.rss_ready.0),
            rss_window_start_mib: mib(tl.begin.rss.0),
            rss_window_end_mib: mib(tl.end.rss.0),
            rss_window_max_mib: mib(rss_window_max),
            rss_peak_hwm_mib: mib(tl.end.rss.1),
            bench_records_mib: round3(records_bytes as f64 / 1048576.0),
        },
        disk_write_bytes_per_fire: round3(
            tl.end.write_bytes.saturating_sub(tl.begin.write_bytes) as f64
                / (tl.clock.len().max(1)) as f64,
        ),
        ideal_client,
        logs,
        plot: None,
    };
    drop(api);
    Outcome {
        report,
        clock: tl.clock,
        arrival: a.all_arrival_sorted,
    }
}
