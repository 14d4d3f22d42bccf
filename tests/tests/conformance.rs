//! Runs the whole conformance suite against the built-in timer component, loaded both the
//! embedded way and from a component file, and fails with the full report on any difference.

use std::time::Duration;

use attune_timer::component::{Limits, TimerRuntime, EMBEDDED_COMPONENT};
use conformance::{default_cases_dir, load_cases, run_cases, Report};

/// The suite checks what the component answers, not how fast: its slowest case (an RRULE
/// that never matches, which the rrule crate searches to its limit) takes about half the
/// default 100 ms deadline here, and a machine busy with other tests must not turn that
/// into a fault. The deadline itself is the sandbox tests' subject.
fn limits() -> Limits {
    Limits {
        call_deadline: Duration::from_secs(1),
        ..Limits::default()
    }
}

const MIN_CASES: usize = 150;

fn check(how: &str, report: &Report) {
    println!("--- {how} ---\n{report}");
    assert!(
        report.ran() >= MIN_CASES,
        "{how}: only {} cases ran (at least {MIN_CASES} expected)\n{report}",
        report.ran()
    );
    assert!(
        report.is_success(),
        "{how}: {} case(s) failed\n\n{report}",
        report.failed()
    );
}

#[test]
fn embedded_component_conforms() {
    let cases = load_cases(default_cases_dir()).expect("cases load");
    let rt = TimerRuntime::builder()
        .limits(limits())
        .embedded()
        .expect("embedded component loads");
    check("embedded component", &run_cases(&rt, &cases));
}

#[test]
fn component_loaded_from_file_conforms() {
    let cases = load_cases(default_cases_dir()).expect("cases load");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("timer.wasm");
    std::fs::write(&path, EMBEDDED_COMPONENT).expect("write component file");
    let rt = TimerRuntime::builder()
        .limits(limits())
        .file(&path)
        .expect("component file loads");
    check("component from file", &run_cases(&rt, &cases));
}
