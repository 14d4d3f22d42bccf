//! The deployment files under `deploy/`, checked by the tools that will read them, so that a
//! broken one fails `make test` rather than an operator's install:
//!
//! - the Prometheus alert rules load, and their unit tests (each alert fires when it should
//!   and stays quiet on a healthy daemon) pass — `promtool`;
//! - systemd accepts every line of the unit (`systemd-analyze verify`), and the unit leaves
//!   wasmtime's JIT the writable-then-executable memory it needs;
//! - the Grafana dashboard is valid JSON with its two variables.
//!
//! Every metric the dashboard and the alerts use ([`referenced_metric_names`]) is declared
//! by a real daemon's `/metrics`: a renamed metric would otherwise leave an alert that never
//! fires and a panel that stays empty, silently.
//!
//! A missing tool fails its test saying how to get it, never skips it: a check that skips
//! itself on the machine that lacks the tool is a check that quietly never runs. `make
//! test` fetches promtool and passes it in `PROMTOOL`; systemd-analyze comes with systemd.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const UNIT: &str = "deploy/systemd/attune-core-timer-sensor.service";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const ALERT_TESTS: &str = "deploy/prometheus/alerts_test.yml";
const DASHBOARD: &str = "deploy/grafana/attune-timer-sensor.json";
const METRIC_PREFIX: &str = "attune_timer_";

/// The repository's root: `deploy/` sits beside this crate.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---- Alert rules ------------------------------------------------------------------------

fn promtool() -> PathBuf {
    let path = match std::env::var_os("PROMTOOL") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "PROMTOOL is not set: run the tests through `make test`, which fetches promtool \
             (or set PROMTOOL to a promtool binary)"
        ),
    };
    assert!(
        path.is_file(),
        "PROMTOOL={} does not exist: run the tests through `make test`, which fetches promtool",
        path.display()
    );
    path
}

/// Runs promtool in the repository's root, so the paths it prints are the repository's.
fn run_promtool(args: &[&str]) {
    let tool = promtool();
    let output = Command::new(&tool)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        output_text(&output)
    );
}

#[test]
fn the_alert_rules_load() {
    run_promtool(&["check", "rules", ALERTS]);
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    run_promtool(&["test", "rules", ALERT_TESTS]);
}

// ---- systemd unit -----------------------------------------------------------------------

/// The unit's `Key=value` lines with their line numbers, sections and comments left out.
fn directives(unit: &str) -> Vec<(usize, &str, &str)> {
    unit.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let line = line.trim();
            if line.is_empty() || line.starts_with(['#', ';', '[']) {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            Some((index + 1, key.trim(), value.trim()))
        })
        .collect()
}

/// The unit as `systemd-analyze verify` can check it here: ExecStart names the binary this
/// test run built (verify insists the executable exists) and EnvironmentFile an empty file
/// (the real one exists only on an installed machine).
fn unit_for_verify(unit: &str, binary: &Path, environment_file: &Path) -> String {
    let mut rewritten = (0, 0);
    let lines: Vec<String> = unit
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                rewritten.0 += 1;
                // Quoted for a path with spaces; `%` would start a specifier.
                format!(
                    "ExecStart=\"{}\"",
                    binary.display().to_string().replace('%', "%%")
                )
            } else if line.starts_with("EnvironmentFile=") {
                rewritten.1 += 1;
                format!(
                    "EnvironmentFile={}",
                    environment_file.display().to_string().replace('%', "%%")
                )
            } else {
                line.to_string()
            }
        })
        .collect();
    // Otherwise a changed unit would be verified against paths that do not exist here,
    // and the check would fail for the wrong reason, or pass without checking those lines.
    assert_eq!(
        rewritten,
        (1, 1),
        "{UNIT} should have one ExecStart= and one EnvironmentFile= line"
    );
    lines.join("\n") + "\n"
}

#[test]
fn systemd_accepts_every_line_of_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let environment_file = dir.path().join("timer-sensor.env");
    std::fs::write(&environment_file, "").unwrap();
    // The copy keeps the unit's name: systemd derives the unit's name and type from it.
    let unit_name = Path::new(UNIT).file_name().unwrap().to_str().unwrap();
    let copy = dir.path().join(unit_name);
    let binary = Path::new(env!("CARGO_BIN_EXE_attune-core-timer-sensor"));
    std::fs::write(
        &copy,
        unit_for_verify(&read(UNIT), binary, &environment_file),
    )
    .unwrap();

    let output = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "systemd-analyze is not on PATH: it comes with systemd (Debian: the systemd \
             package), and this test needs it to check {UNIT}"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    };
    // verify exits 0 after warnings such as `Unknown key` or `Failed to parse`, each of
    // which means a line systemd ignores: a sandboxing option silently off. Every such
    // line names the unit; lines about other units (its dependencies on this machine) do not.
    let text = output_text(&output);
    let about_unit: Vec<&str> = text.lines().filter(|l| l.contains(unit_name)).collect();
    assert!(
        output.status.success() && about_unit.is_empty(),
        "systemd-analyze verify {UNIT} ({}):\n{text}",
        output.status
    );
}

#[test]
fn the_unit_leaves_the_jit_its_executable_memory() {
    let unit = read(UNIT);
    for (line, key, value) in directives(&unit) {
        let on =
            ["1", "yes", "y", "true", "t", "on"].contains(&value.to_ascii_lowercase().as_str());
        assert!(
            !(key == "MemoryDenyWriteExecute" && on),
            "{UNIT}:{line} sets MemoryDenyWriteExecute={value}: wasmtime's Cranelift JIT writes \
             the compiled timer component into memory and then makes that memory executable, \
             which the option forbids, so the daemon could not load any component (the \
             built-in one included)"
        );
    }
}

#[test]
fn the_unit_is_what_the_daemon_expects_of_systemd() {
    let unit = read(UNIT);
    let directives = directives(&unit);
    let value = |key: &str| {
        let values: Vec<&str> = directives
            .iter()
            .filter(|(_, k, _)| *k == key)
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(values.len(), 1, "{UNIT} should set {key}= once: {values:?}");
        values[0]
    };
    // READY=1, WATCHDOG=1 and STOPPING=1 come from the daemon itself.
    assert_eq!(value("Type"), "notify");
    assert_eq!(value("NotifyAccess"), "main");
    assert!(!value("WatchdogSec").is_empty());
    // SIGHUP swaps the component.
    assert_eq!(value("ExecReload"), "/bin/kill -HUP $MAINPID");
    // The daemon keeps its state in $STATE_DIRECTORY, which this sets.
    assert_eq!(value("StateDirectory"), "attune-timer-sensor");
    assert_eq!(value("EnvironmentFile"), "/etc/attune/timer-sensor.env");
}

// ---- Dashboard --------------------------------------------------------------------------

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

#[test]
fn the_dashboard_is_valid_json_with_its_variables() {
    let dashboard = dashboard();
    assert_eq!(dashboard["schemaVersion"], 39, "{DASHBOARD}: schemaVersion");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{DASHBOARD}: no templating.list"));
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{DASHBOARD}: no `{name}` variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert_eq!(
        variable("instance")["definition"],
        "label_values(attune_timer_build_info, instance)"
    );

    let panels = dashboard["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{DASHBOARD}: no panels"));
    assert!(!panels.is_empty(), "{DASHBOARD}: no panels");
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        // Each panel follows the datasource variable, so the dashboard imports anywhere.
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{DASHBOARD}: panel {title:?}"
        );
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(
            !targets.is_empty(),
            "{DASHBOARD}: panel {title:?} has no query"
        );
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or("");
            assert!(
                expr.contains(METRIC_PREFIX),
                "{DASHBOARD}: panel {title:?} has a query without a timer sensor metric: {expr:?}"
            );
        }
    }
}

// ---- Metric names -----------------------------------------------------------------------

/// The `attune_timer_*` metric names in `text`, a histogram's series (`_bucket`, `_sum`,
/// `_count`) reduced to the histogram's own name, which is what /metrics declares.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices(METRIC_PREFIX) {
        // Only at the start of a name, not inside a longer one.
        let inside = text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if inside {
            continue;
        }
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |length| start + length);
        let name = &text[start..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(name.to_string());
    }
    names
}

/// The PromQL of a dashboard: the panels' `expr`, and the variables' `query` and
/// `definition` (the `instance` variable reads its values from a metric too).
fn dashboard_queries(value: &Value, queries: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", Value::String(query)) => {
                        queries.push(query.clone())
                    }
                    _ => dashboard_queries(value, queries),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, queries)),
        _ => {}
    }
}

fn dashboard_metric_names() -> BTreeSet<String> {
    let mut queries = Vec::new();
    dashboard_queries(&dashboard(), &mut queries);
    queries
        .iter()
        .flat_map(|query| metric_names(query))
        .collect()
}

/// The names in the alert rules; comments are left out, since they may mention a metric
/// that no rule queries.
fn alert_metric_names() -> BTreeSet<String> {
    read(ALERTS)
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(metric_names)
        .collect()
}

/// Every `attune_timer_*` metric the dashboard's queries and the alert rules use, sorted;
/// histograms by their own name (without `_bucket`, `_sum`, `_count`).
fn referenced_metric_names() -> BTreeSet<String> {
    let mut names = dashboard_metric_names();
    names.extend(alert_metric_names());
    names
}

#[test]
fn metric_names_are_read_as_prometheus_declares_them() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(attune_timer_lateness_seconds_bucket[5m]))) \
         / attune_timer_lateness_seconds_count + attune_timer_up2{x=\"y\"} \
         and my_attune_timer_thing",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["attune_timer_lateness_seconds", "attune_timer_up2"]
    );
}

#[test]
fn the_referenced_metric_names_cover_the_dashboard_and_the_alerts() {
    let names = referenced_metric_names();
    for name in [
        // From the alerts: a histogram by its own name, and counters.
        "attune_timer_handover_lateness_seconds",
        "attune_timer_events_failed_total",
        "attune_timer_token_expiry_timestamp_seconds",
        // From the dashboard's instance variable.
        "attune_timer_build_info",
        // From a panel only.
        "attune_timer_component_swaps_total",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
}

/// An operator paged by an alert finds what it measured on the dashboard.
#[test]
fn every_metric_an_alert_uses_is_on_the_dashboard() {
    let on_dashboard = dashboard_metric_names();
    let missing: Vec<String> = alert_metric_names()
        .difference(&on_dashboard)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "{ALERTS} uses metrics {DASHBOARD} does not show: {missing:?}"
    );
}

/// The names `/metrics` declares (`# TYPE` lines): a family is declared before anything is
/// counted in it, so this holds on a daemon that has done nothing yet.
fn declared_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    use attune_testkit::daemon::TestDaemon;
    use attune_testkit::fake_api::{FakeApi, FakeOptions};
    let api = FakeApi::start(FakeOptions::default());
    let daemon = TestDaemon::start(&api, &[]).await;
    let addr = daemon.admin.expect("the admin listener is on");
    let metrics = attune_testkit::admin::scrape(addr).await;
    let declared = declared_names(&metrics.text);
    let referenced = referenced_metric_names();
    assert!(referenced.len() > 10, "too few names found: {referenced:?}");
    let missing: Vec<_> = referenced.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "used by {ALERTS} or {DASHBOARD} but not exported by the daemon: {missing:?}\n\
         exported: {declared:?}"
    );
    daemon.stop().await.expect("a clean stop");
}
