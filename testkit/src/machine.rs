//! Process and machine figures the benchmarks report next to their results (Linux only).
//!
//! Reads this process's CPU time (`getrusage`), per-process and per-thread CPU ticks
//! (`/proc/<pid>/stat`, `/proc/<pid>/task/*/stat`), resident memory (`/proc/<pid>/status`),
//! the whole machine's busy, total and steal ticks (`/proc/stat`), the load average, the CPU
//! model and the commit being measured. A timing is only as good as the machine it was taken
//! on: these say how busy the machine was meanwhile and what was built, so that a figure can
//! be judged (and compared between runs) without guessing.

use std::path::{Path, PathBuf};

/// The workspace root (the kit's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the kit lives in the workspace")
        .to_path_buf()
}

/// Clock ticks per second, the unit of the CPU times in `/proc`.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Resource usage of this process so far (`getrusage(RUSAGE_SELF)`).
pub fn self_rusage() -> libc::rusage {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    ru
}

/// The command name and the user and system CPU ticks in the text of a `/proc/<pid>/stat` or
/// `/proc/<pid>/task/<tid>/stat` file; `None` if it has no `(name)`.
pub fn stat_ticks(stat: &str) -> Option<(&str, u64, u64)> {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return None;
    };
    // After ") ": the state is field 3; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let field = |n: usize| {
        rest.get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((&stat[open + 1..close], field(14), field(15)))
}

/// The values of the `keys` lines (e.g. `"VmRSS:"`) of a `/proc/<pid>/status` file, in its
/// units (KiB for memory); 0 for a line that is missing or a file that cannot be read.
pub fn status_values<const N: usize>(path: &str, keys: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string(path).unwrap_or_default();
    keys.map(|key| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// (busy, total, steal) CPU ticks of the whole machine so far, from `/proc/stat`.
pub fn machine_ticks() -> (u64, u64, u64) {
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

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` has them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first `model name` of `/proc/cpuinfo`, or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The workspace's `HEAD` commit (12 hex digits), if git can tell.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// CPU seconds (user + system) of this process so far.
pub fn self_cpu() -> f64 {
    let ru = self_rusage();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (user, system) CPU seconds of process `pid` so far, from `/proc/<pid>/stat`.
pub fn proc_cpu(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match stat_ticks(&stat) {
        Some((_, user, system)) => (user as f64 / clk_tck(), system as f64 / clk_tck()),
        None => (0.0, 0.0),
    }
}

/// User + system CPU seconds of process `pid` so far.
pub fn cpu_total(pid: u32) -> f64 {
    let (user, sys) = proc_cpu(pid);
    user + sys
}

/// CPU seconds of each thread of `pid` so far, summed by thread name (tokio's workers,
/// its blocking threads, the epoch ticker, …): (name, threads, seconds), largest first.
pub fn threads_cpu(pid: u32) -> Vec<(String, usize, f64)> {
    let mut by_name: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((name, user, system)) = stat_ticks(&stat) else {
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

/// Busy CPU seconds of the whole machine so far, from `/proc/stat`.
pub fn machine_busy() -> f64 {
    machine_ticks().0 as f64 / clk_tck()
}

/// KiB as MiB, to one decimal.
pub fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// The memory lines of `/proc/<pid>/status` that matter to the benches (KiB), the thread
/// count, and the two main ones in MiB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Mem {
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub threads: u64,
    pub vm_rss_mib: f64,
    pub vm_hwm_mib: f64,
}

/// [`Mem`] of process `pid` now (zeros when it cannot be read).
pub fn proc_mem(pid: u32) -> Mem {
    let [rss, hwm, anon, file, threads] = status_values(
        &format!("/proc/{pid}/status"),
        ["VmRSS:", "VmHWM:", "RssAnon:", "RssFile:", "Threads:"],
    );
    Mem {
        vm_rss_kib: rss,
        vm_hwm_kib: hwm,
        rss_anon_kib: anon,
        rss_file_kib: file,
        threads,
        vm_rss_mib: mib(rss),
        vm_hwm_mib: mib(hwm),
    }
}

/// Files of the daemon's source that differ from the commit (the figures belong to the
/// binary as built, not to the commit alone).
pub fn modified_sources() -> Vec<String> {
    std::process::Command::new("git")
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

/// Statistics of a figure over runs: median, min, max and how many finite values.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stats {
    /// Of the finite values, to 0.1; `None` when there is none.
    pub fn of(v: impl IntoIterator<Item = f64>) -> Option<Stats> {
        let mut v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let r = |x: f64| (x * 10.0).round() / 10.0;
        Some(Stats {
            median: r(median),
            min: r(v[0]),
            max: r(v[n - 1]),
            n,
        })
    }
}
