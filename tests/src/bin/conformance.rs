//! `conformance --component PATH [--cases DIR] [--filter SUBSTRING]`
//!
//! Holds a timer component file to the conformance suite: loads it with the host runtime,
//! runs every case (the suite's own `tests/cases` unless `--cases` says otherwise), prints
//! the report and exits 0 when no case failed, 1 when some did, 2 on a usage or load error.
//! `--embedded` runs the component built into the host instead of a file.

use std::path::PathBuf;
use std::process::ExitCode;

use attune_timer::component::TimerRuntime;
use conformance::{default_cases_dir, load_cases, run_cases};

const USAGE: &str =
    "usage: conformance (--component PATH | --embedded) [--cases DIR] [--filter SUBSTRING]";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let mut component: Option<PathBuf> = None;
    let mut embedded = false;
    let mut cases_dir = default_cases_dir();
    let mut filter: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--component" => component = Some(value("--component")?.into()),
            "--cases" => cases_dir = value("--cases")?.into(),
            "--filter" => filter = Some(value("--filter")?),
            "--embedded" => embedded = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            other => anyhow::bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let rt = match (component, embedded) {
        (Some(path), false) => TimerRuntime::from_file(&path)
            .map_err(|e| anyhow::anyhow!("cannot load {}: {e}", path.display()))?,
        (None, true) => TimerRuntime::embedded()
            .map_err(|e| anyhow::anyhow!("cannot load the embedded component: {e}"))?,
        _ => anyhow::bail!("give exactly one of --component PATH and --embedded\n{USAGE}"),
    };
    let mut cases = load_cases(&cases_dir)?;
    if let Some(f) = &filter {
        cases.retain(|c| c.name.contains(f.as_str()));
    }
    let report = run_cases(&rt, &cases);
    println!("{report}");
    Ok(report.is_success())
}
