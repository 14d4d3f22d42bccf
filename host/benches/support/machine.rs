//! Process and machine figures the benchmarks report next to their results (Linux only).
//!
//! Reads this process's CPU time (`getrusage`), per-process and per-thread CPU ticks
//! (`/proc/<pid>/stat`, `/proc/<pid>/task/*/stat`), resident memory (`/proc/<pid>/status`),
//! the whole machine's busy, total and steal ticks (`/proc/stat`), the load average, the CPU
//! model and the commit being measured. A timing is only as good as the machine it was taken
//! on: these say how busy the machine was meanwhile and what was built, so that a figure can
//! be judged (and compared between runs) without guessing.
//!
//! Included by each bench with `#[path = "support/machine.rs"] mod machine;`.

use std::path::{Path, PathBuf};

/// The workspace root (the host crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate lives in the workspace")
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
