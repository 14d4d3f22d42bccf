//! The start-up bench's report: typed, written as JSON, and printed as tables.

use serde::Serialize;

use attune_testkit::machine::{mib, Stats};

use crate::mix::Calibration;
use crate::run::{Cache, Run};

/// Targets from the product owner.
pub const TARGET_WARM_STARTUP_MS: f64 = 3000.0;
pub const TARGET_RSS_MB: f64 = 200.0;
pub const TARGET_RULES: usize = 100_000;

/// Medians (and ranges) of the segments over the runs of one group.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentStats {
    pub process_start: Option<Stats>,
    pub health: Option<Stats>,
    pub component_and_broker: Option<Stats>,
    pub listing: Option<Stats>,
    pub apply: Option<Stats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub ready_ms: Option<Stats>,
    pub segments_ms: SegmentStats,
    pub daemon_cpu_s: Option<Stats>,
    pub bench_process_cpu_s: Option<Stats>,
    pub other_processes_cores: Option<Stats>,
    pub rss_ready_mib: Option<Stats>,
    pub hwm_ready_mib: Option<Stats>,
    pub exit_after_sigterm_ms: Option<Stats>,
}

impl Summary {
    pub fn of(runs: &[Run]) -> Summary {
        let col = |f: &dyn Fn(&Run) -> Option<f64>| Stats::of(runs.iter().filter_map(f));
        Summary {
            ready_ms: col(&|r| Some(r.ready_ms)),
            segments_ms: SegmentStats {
                process_start: col(&|r| r.segments_ms.process_start),
                health: col(&|r| r.segments_ms.health),
                component_and_broker: col(&|r| r.segments_ms.component_and_broker),
                listing: col(&|r| r.segments_ms.listing),
                apply: col(&|r| r.segments_ms.apply),
            },
            daemon_cpu_s: col(&|r| Some(r.cpu_to_ready.daemon_s())),
            bench_process_cpu_s: col(&|r| Some(r.cpu_to_ready.bench_process_s)),
            other_processes_cores: col(&|r| Some(r.cpu_to_ready.other_processes_cores)),
            rss_ready_mib: col(&|r| Some(r.memory_ready.vm_rss_mib)),
            hwm_ready_mib: col(&|r| Some(r.memory_ready.vm_hwm_mib)),
            exit_after_sigterm_ms: col(&|r| Some(r.exit_after_sigterm_ms)),
        }
    }
}

/// The runs of one rule count, listing and cache, and their summary.
#[derive(Debug, Clone, Serialize)]
pub struct StartupGroup {
    pub rules: usize,
    pub listing: &'static str,
    pub cache: Cache,
    pub summary: Summary,
    pub runs: Vec<Run>,
}

/// The fake API's listing timed with the bench's own client.
#[derive(Debug, Clone, Serialize)]
pub struct ListingBaseline {
    pub rules: usize,
    pub pages: usize,
    pub bytes_only_ms: f64,
    pub parsed_ms: f64,
}

/// Memory per rule: (largest M − 0 rules) / M.
#[derive(Debug, Clone, Serialize)]
pub struct Marginal {
    pub rules: usize,
    pub rss_ready_bytes_per_rule: i64,
    pub rss_idle_bytes_per_rule: i64,
    pub hwm_bytes_per_rule: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub runs: Vec<Run>,
    pub marginal: Option<Marginal>,
}

impl Memory {
    pub fn of(runs: Vec<Run>) -> Memory {
        let zero = runs.iter().find(|r| r.rules == 0);
        let largest = runs.iter().filter(|r| r.rules > 0).max_by_key(|r| r.rules);
        let marginal = zero.zip(largest).map(|(z, l)| {
            let n = l.rules as f64;
            let per = |a: u64, b: u64| ((a as f64 - b as f64) * 1024.0 / n).round() as i64;
            let idle = |r: &Run| r.memory_idle.unwrap_or_default();
            Marginal {
                rules: l.rules,
                rss_ready_bytes_per_rule: per(l.memory_ready.vm_rss_kib, z.memory_ready.vm_rss_kib),
                rss_idle_bytes_per_rule: per(idle(l).vm_rss_kib, idle(z).vm_rss_kib),
                hwm_bytes_per_rule: per(idle(l).vm_hwm_kib, idle(z).vm_hwm_kib),
            }
        });
        Memory { runs, marginal }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    pub measured: Option<String>,
    pub met: Option<bool>,
}

/// The product owner's targets, where this run measured them.
pub fn targets(startup: &[StartupGroup], memory: &Memory) -> Vec<Target> {
    let warm_100k = |listing: &str| {
        startup
            .iter()
            .find(|s| s.rules == TARGET_RULES && s.cache == Cache::Warm && s.listing == listing)
            .and_then(|s| s.summary.ready_ms.map(|x| x.median))
    };
    let rss_100k = memory
        .runs
        .iter()
        .find(|r| r.rules == TARGET_RULES)
        .map(|r| {
            let ready = r.memory_ready.vm_rss_kib;
            let idle = r.memory_idle.unwrap_or_default().vm_rss_kib;
            ready.max(idle) as f64 * 1024.0 / 1e6
        });
    let startup_target = |listing: &str, what: &str| {
        let x = warm_100k(listing);
        Target {
            what: format!(
                "start-up to {TARGET_RULES} rules, warm cache <= {TARGET_WARM_STARTUP_MS} ms \
                 (median; {what})"
            ),
            measured: x.map(|x| format!("{x:.0} ms")),
            met: x.map(|x| x <= TARGET_WARM_STARTUP_MS),
        }
    };
    vec![
        startup_target("fake", "the fake API's listing"),
        startup_target("prerendered", "prerendered listing: the daemon's own time"),
        Target {
            what: format!(
                "RSS at {TARGET_RULES} rules <= {TARGET_RSS_MB} MB (ready or idle, whichever \
                 is larger)"
            ),
            measured: rss_100k.map(|x| format!("{x:.0} MB")),
            met: rss_100k.map(|x| x <= TARGET_RSS_MB),
        },
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub cpus: usize,
    pub cpu_model: String,
    pub loadavg_at_end: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OptionsUsed {
    pub rules: Vec<usize>,
    pub runs: usize,
    pub memory_rules: Vec<usize>,
    pub idle_seconds: u64,
    pub daemon_log_level: String,
    pub caches: Vec<Cache>,
    pub listings: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleMix {
    pub startup: &'static str,
    pub memory: &'static str,
    pub token_trigger_types: [&'static str; 4],
}

/// Everything the bench measured: `target/bench/startup.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bench: &'static str,
    pub started_at: String,
    pub commit: Option<String>,
    pub modified_sources: Vec<String>,
    pub machine: MachineInfo,
    pub options: OptionsUsed,
    pub rule_mix: RuleMix,
    pub component_calibration: Calibration,
    pub listing_baseline: Vec<ListingBaseline>,
    pub startup: Vec<StartupGroup>,
    pub memory: Memory,
    pub targets: Vec<Target>,
}

fn opt(x: Option<impl ToString>) -> String {
    x.map_or_else(|| "-".into(), |x| x.to_string())
}

fn fmt_stat(s: &Option<Stats>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 => format!("{:.0}", s.median),
        Some(s) => format!("{:.0} [{:.0}–{:.0}]", s.median, s.min, s.max),
    }
}

fn fmt_med(s: &Option<Stats>, decimals: usize) -> String {
    s.map(|s| format!("{:.decimals$}", s.median))
        .unwrap_or_else(|| "-".into())
}

/// One line per start-up run, as it ends.
pub fn print_run(r: &Run) {
    let s = &r.segments_ms;
    eprintln!(
        "[{}] ready {:.0} ms (exec {}, health {}, component+broker {}, listing {}, apply {}); \
         daemon CPU {:.2} s; RSS {} MiB; other processes {:.2} cores",
        r.label,
        r.ready_ms,
        opt(s.process_start),
        opt(s.health),
        opt(s.component_and_broker),
        opt(s.listing),
        opt(s.apply),
        r.cpu_to_ready.daemon_s(),
        r.memory_ready.vm_rss_mib,
        r.cpu_to_ready.other_processes_cores,
    );
}

fn print_startup(report: &Report) {
    println!();
    println!(
        "Start-up: spawn -> `Timer sensor ready` with every rule scheduled; ms, median [min–max] \
         over {} run(s); phases are medians",
        report.options.runs
    );
    println!(
        "{:>7} {:>11} {:>5} {:>19} {:>6} {:>6} {:>16} {:>8} {:>7} {:>8} {:>8} {:>8} {:>7}",
        "rules",
        "listing",
        "cache",
        "ready",
        "exec",
        "health",
        "component+broker",
        "listing",
        "apply",
        "cpu s",
        "rss MiB",
        "hwm MiB",
        "other"
    );
    for row in &report.startup {
        let s = &row.summary;
        let g = &s.segments_ms;
        println!(
            "{:>7} {:>11} {:>5} {:>19} {:>6} {:>6} {:>16} {:>8} {:>7} {:>8} {:>8} {:>8} {:>7}",
            row.rules,
            row.listing,
            row.cache.as_str(),
            fmt_stat(&s.ready_ms),
            fmt_med(&g.process_start, 0),
            fmt_med(&g.health, 0),
            fmt_med(&g.component_and_broker, 0),
            fmt_med(&g.listing, 0),
            fmt_med(&g.apply, 0),
            fmt_med(&s.daemon_cpu_s, 2),
            fmt_med(&s.rss_ready_mib, 1),
            fmt_med(&s.hwm_ready_mib, 1),
            fmt_med(&s.other_processes_cores, 2),
        );
    }
    println!(
        "(exec: spawn -> first log line; health: -> the fake API received `GET /health`; \
         component+broker: -> the first listing request (component loaded, broker connected); \
         listing: -> the last listing request; apply: -> `Timer sensor ready` (the last page, \
         then validate + first fire + install + 1 log line per rule); cpu s: the daemon's CPU \
         to ready; other: cores used by other processes meanwhile; listing `fake`: the fake \
         API's paged listing, `prerendered`: the same pages served again as first rendered)"
    );
    for b in &report.listing_baseline {
        println!(
            "fake API listing alone ({} rules, {} pages, bench's own client): {:.0} ms reading \
             bodies only, {:.0} ms with a JSON parse of each page",
            b.rules, b.pages, b.bytes_only_ms, b.parsed_ms
        );
    }
}

fn print_calibration(report: &Report) {
    let cal = &report.component_calibration;
    println!();
    println!(
        "Component work per rule at start-up (validate + next-fire, one thread of the bench, \
         alone; µs):"
    );
    println!(
        "{:<24} {:>6} {:>9} {:>10} {:>22}",
        "shape", "share", "validate", "next-fire", "build ahead (clock)"
    );
    for row in &cal.by_shape {
        println!(
            "{:<24} {:>5.0}% {:>9} {:>10} {:>22}",
            row.shape,
            row.share * 100.0,
            row.validate_us,
            row.next_fire_us,
            row.build_ahead_us
        );
    }
    let per_rule = cal.mix_per_rule_us;
    let cpus = report.machine.cpus.max(1);
    println!(
        "mix: {per_rule:.1} µs per rule -> the apply phase needs at least {:.0} ms per 100,000 \
         rules on {cpus} CPUs for the component calls alone; building each first fire ahead \
         (the clock, concurrently) adds {} µs per rule",
        per_rule * 100_000.0 / 1e3 / cpus as f64,
        cal.mix_build_ahead_us
    );
}

fn print_memory(report: &Report) {
    let mem = &report.memory;
    if mem.runs.is_empty() {
        return;
    }
    println!();
    println!(
        "Resident memory of the daemon (quiet rules, warm cache; MiB): ready, and idle (at \
         least {} s later, after 1 s at <= 2 % of a core; `quiet from`: when that second \
         began, after ready)",
        report.options.idle_seconds
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
    for r in &mem.runs {
        let idle = r.memory_idle;
        let settle = r.settle_after_ready.as_ref();
        println!(
            "{:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>11} {:>15}",
            r.rules,
            r.memory_ready.vm_rss_mib,
            r.memory_ready.vm_hwm_mib,
            opt(idle.map(|m| m.vm_rss_mib)),
            opt(idle.map(|m| m.vm_hwm_mib)),
            mib(idle.map_or(0, |m| m.rss_anon_kib)),
            opt(idle.map(|m| m.threads)),
            opt(r.events_during_idle),
            format!(
                "{} ms",
                opt(settle.and_then(|s| s.quiet_from_ms_after_ready))
            ),
            format!(
                "{:.2} s",
                settle
                    .and_then(|s| s.daemon_cpu_after_ready_s)
                    .unwrap_or(f64::NAN)
            ),
        );
    }
    if let Some(m) = &mem.marginal {
        println!(
            "marginal memory per rule ({} vs 0 rules): RSS ready {} B, RSS idle {} B, peak \
             (HWM) {} B",
            m.rules, m.rss_ready_bytes_per_rule, m.rss_idle_bytes_per_rule, m.hwm_bytes_per_rule
        );
    }
}

pub fn print_report(report: &Report) {
    print_startup(report);
    print_calibration(report);
    print_memory(report);
    println!();
    for target in &report.targets {
        println!(
            "target {}: {} (measured {})",
            target.what,
            match target.met {
                Some(true) => "MET",
                Some(false) => "MISSED",
                None => "not measured",
            },
            opt(target.measured.as_ref())
        );
    }
}
